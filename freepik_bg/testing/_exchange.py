"""Request/response plumbing over raw ASGI messages, and the registry of connections.

An `Exchange` is one HTTP request and its answer: reading the body, sending an
answer (possibly distorted by a body fault), pausing, closing or resetting the
connection. Resets and mid-response closes need the transport, which the emulator's
server records in a `ConnectionRegistry`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import anyio

from freepik_bg.testing._faults import Fault, FaultKind

__all__ = [
    "ClientGone",
    "ConnectionRegistry",
    "Exchange",
    "Receive",
    "Reject",
    "Scope",
    "Send",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Bytes per body message when no fault sets the pace.
CHUNK = 256 * 1024
# Body faults after which the client does not have the whole answer.
_INCOMPLETE = {FaultKind.TRUNCATE, FaultKind.HUGE_CONTENT_LENGTH}


class ConnectionRegistry:
    """Open transports by client address, so the app can drop a connection on purpose.

    ASGI has no way to reset a connection: an app that raises gets a tidy 500 from the
    server. The emulator's server registers each transport here (see ``_serving.py``).
    """

    def __init__(self) -> None:
        self._by_peer: dict[tuple[str, int], asyncio.Transport] = {}
        self._closed = False

    @staticmethod
    def _peer(transport: asyncio.Transport) -> tuple[str, int] | None:
        peer = transport.get_extra_info("peername")
        if isinstance(peer, (tuple, list)) and len(peer) >= 2:
            return (str(peer[0]), int(peer[1]))
        return None

    def add(self, transport: asyncio.Transport) -> None:
        if self._closed:
            # Accepted just before the listener closed: serving it would start a request
            # after shutdown stopped waiting for requests.
            transport.abort()
            return
        peer = self._peer(transport)
        if peer is not None:
            self._by_peer[peer] = transport

    def discard(self, transport: asyncio.Transport) -> None:
        peer = self._peer(transport)
        if peer is not None and self._by_peer.get(peer) is transport:
            del self._by_peer[peer]

    def get(self, client: Sequence[Any] | None) -> asyncio.Transport | None:
        if not client or len(client) < 2:
            return None
        return self._by_peer.get((str(client[0]), int(client[1])))

    def abort_all(self) -> None:
        """Abort every open connection, and any connection added from now on."""
        self._closed = True
        for transport in list(self._by_peer.values()):
            transport.abort()
        self._by_peer.clear()


class ClientGone(Exception):
    """The client disconnected while we still wanted to talk to it."""


class Reject(Exception):
    """Answer the request with this error instead of going on."""

    def __init__(
        self, status: int, payload: dict[str, Any], headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(status, payload)
        self.status = status
        self.payload = payload
        self.headers = headers


class Exchange:
    """One HTTP request/response on top of raw ASGI messages."""

    def __init__(
        self, scope: Scope, receive: Receive, send: Send, registry: ConnectionRegistry
    ) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self._registry = registry
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query: str = scope.get("query_string", b"").decode("latin-1")
        self.headers: dict[str, str] = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
        }
        self.status = 0
        self.started = False
        self.image_url: str | None = None
        self.charged = False
        self._finishers: list[Callable[[], None]] = []

    def on_finish(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` just before the client can see the exchange is over.

        Counters updated after the last byte would race with a test that reads them as
        soon as its response arrives.
        """
        self._finishers.append(callback)

    def finish(self) -> None:
        finishers, self._finishers = self._finishers, []
        for callback in finishers:
            callback()

    @property
    def origin(self) -> str:
        """The origin the client used to reach us, for building absolute links."""
        scheme = self.scope.get("scheme", "http")
        host = self.headers.get("host")
        if not host:
            server = self.scope.get("server") or ("127.0.0.1", 80)
            host = f"{server[0]}:{server[1]}"
        return f"{scheme}://{host}"

    @property
    def url(self) -> str:
        return self.origin + self.path + (f"?{self.query}" if self.query else "")

    async def read_body(self, limit: int) -> bytes | None:
        """The request body, or None when it is longer than ``limit``."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def start(self, status: int, headers: Sequence[tuple[str, str]]) -> None:
        self.status = status
        self.started = True
        await self._send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            }
        )

    async def chunk(self, data: bytes, *, more: bool) -> None:
        if not more:
            self.finish()
        await self._send({"type": "http.response.body", "body": data, "more_body": more})

    async def respond(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Sequence[tuple[str, str]] = (),
        *,
        fault: Fault | None = None,
        on_complete: Callable[[], None] | None = None,
    ) -> bool:
        """Send an answer, distorted by a body ``fault``; True if all of it was sent.

        ``on_complete`` runs just before the last byte of a complete answer.
        """
        if on_complete is not None and (fault is None or fault.kind not in _INCOMPLETE):
            self.on_finish(on_complete)
        kind = fault.kind if fault is not None else None
        length = len(body)
        if fault is not None and kind is FaultKind.HUGE_CONTENT_LENGTH:
            length = fault.content_length
        await self.start(
            status,
            [("content-type", content_type), ("content-length", str(length)), *headers],
        )
        if self.method == "HEAD":
            await self.chunk(b"", more=False)
            return True
        if fault is not None and kind is FaultKind.STALL and not await self.pause(fault.seconds):
            return False
        if fault is not None and kind is FaultKind.TRUNCATE:
            await self.chunk(body[: int(len(body) * fault.fraction)], more=True)
            await self.close()
            return False
        if fault is not None and kind is FaultKind.HUGE_CONTENT_LENGTH:
            await self.chunk(body, more=True)
            await self.close()
            return False
        step = fault.chunk_size if fault is not None and kind is FaultKind.TRICKLE else CHUNK
        interval = fault.seconds if fault is not None and kind is FaultKind.TRICKLE else 0.0
        # The last piece carries more_body=False itself: a client holding every byte
        # must find the exchange finished (and counted).
        last = max(0, (len(body) - 1) // step * step)
        for offset in range(0, last, step):
            await self.chunk(body[offset : offset + step], more=True)
            if interval and not await self.pause(interval):
                return False
        await self.chunk(body[last:], more=False)
        return True

    async def json(
        self,
        status: int,
        payload: Any,
        headers: Sequence[tuple[str, str]] = (),
        *,
        fault: Fault | None = None,
    ) -> bool:
        body = json.dumps(payload).encode()
        return await self.respond(status, body, "application/json", headers, fault=fault)

    async def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` unless the client leaves first; True if it is still there."""
        if seconds <= 0:
            return True
        with anyio.move_on_after(seconds):
            while True:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    return False
                # Otherwise it was left-over request body: keep draining.
        return True

    async def close(self) -> None:
        """Close the connection after what was sent so far (a FIN, mid-response)."""
        transport = self._registry.get(self.scope.get("client"))
        self.finish()
        if transport is not None:
            transport.close()
            await self._until_disconnected()
        # On a foreign server, returning without finishing makes it close the connection.

    async def reset(self) -> None:
        """Abort the connection with a TCP RST and no response at all."""
        transport = self._registry.get(self.scope.get("client"))
        if transport is None:
            raise RuntimeError("connection resets need the emulator's own server")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0 turns close() into an RST instead of an orderly FIN.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.status = 0
        self.finish()
        transport.abort()
        await self._until_disconnected()

    async def _until_disconnected(self) -> None:
        # The server learns of the close on its next loop iteration; waiting for it keeps
        # it from logging "returned without completing response".
        with anyio.move_on_after(2.0):
            while (await self._receive())["type"] != "http.disconnect":
                pass
