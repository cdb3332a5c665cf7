"""A fault-injecting TCP relay on 127.0.0.1, for network-level chaos.

Each accepted connection draws a :class:`ConnFault` from a seeded
:class:`FaultSchedule`: pass everything, or strike once ``after_bytes`` bytes of
the server's answer have been relayed, by resetting the client connection
(RST), closing it (a FIN mid-response: a truncated body) or stalling it (no
byte more until the client gives up). Written with anyio, so it runs on
asyncio and trio inside the test's own event loop.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
from collections import Counter
from typing import Literal

import anyio
import attrs
from anyio.abc import SocketAttribute, SocketStream, TaskStatus

__all__ = ["ConnFault", "FaultProxy", "FaultSchedule"]

Kind = Literal["pass", "reset", "close", "stall"]
_BUFFER = 65536


@attrs.frozen
class ConnFault:
    """What happens to one connection: ``kind`` once ``after_bytes`` bytes went back."""

    kind: Kind
    after_bytes: int = 0


class FaultSchedule:
    """A seeded, repeatable sequence of per-connection faults.

    ``weights`` maps each striking kind to its probability per connection; the
    rest pass. ``max_after`` bounds the response bytes relayed before a strike.
    """

    def __init__(
        self, seed: int, weights: dict[Kind, float] | None = None, *, max_after: int = 40_000
    ) -> None:
        self._random = random.Random(seed)
        self._weights = dict(weights or {})
        if sum(self._weights.values()) > 1.0:
            raise ValueError("fault probabilities add up to more than 1")
        self._max_after = max_after

    def next(self) -> ConnFault:
        roll = self._random.random()
        after = self._random.randrange(0, self._max_after + 1)
        for kind, probability in self._weights.items():
            if roll < probability:
                return ConnFault(kind, after)
            roll -= probability
        return ConnFault("pass")


class FaultProxy:
    """Relays 127.0.0.1:``port`` to ``upstream`` and breaks connections by schedule.

    Start it with ``port = await task_group.start(proxy.serve)``; ``strikes``
    counts the faults that actually happened, by kind.
    """

    def __init__(
        self,
        upstream_port: int,
        schedule: FaultSchedule,
        *,
        upstream_host: str = "127.0.0.1",
        stall_limit: float = 10.0,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.schedule = schedule
        self.stall_limit = stall_limit
        self.connections = 0
        self.strikes: Counter[str] = Counter()

    async def serve(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        async with listener:
            task_status.started(int(listener.extra(SocketAttribute.local_port)))
            await listener.serve(self._handle)

    async def _handle(self, client: SocketStream) -> None:
        self.connections += 1
        fault = self.schedule.next()
        async with client:
            try:
                upstream = await anyio.connect_tcp(*self.upstream)
            except OSError:
                _abort(client)
                return
            client_gone = anyio.Event()
            async with upstream, anyio.create_task_group() as tg:
                tg.start_soon(self._pump_requests, client, upstream, client_gone)
                await self._pump_answers(upstream, client, fault, client_gone)
                tg.cancel_scope.cancel()

    @staticmethod
    async def _pump_requests(
        client: SocketStream, upstream: SocketStream, client_gone: anyio.Event
    ) -> None:
        try:
            async for data in client:
                await upstream.send(data)
            await upstream.send_eof()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            client_gone.set()

    async def _pump_answers(
        self,
        upstream: SocketStream,
        client: SocketStream,
        fault: ConnFault,
        client_gone: anyio.Event,
    ) -> None:
        relayed = 0
        try:
            async for data in upstream:
                if fault.kind != "pass" and relayed + len(data) >= fault.after_bytes:
                    head = data[: max(0, fault.after_bytes - relayed)]
                    if head:
                        await client.send(head)
                    await self._strike(client, fault, client_gone)
                    return
                await client.send(data)
                relayed += len(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return

    async def _strike(
        self, client: SocketStream, fault: ConnFault, client_gone: anyio.Event
    ) -> None:
        self.strikes[fault.kind] += 1
        if fault.kind == "reset":
            _abort(client)
        elif fault.kind == "stall":
            # Say nothing more until the client hangs up (its read timeout), bounded.
            with anyio.move_on_after(self.stall_limit):
                await client_gone.wait()
        # "close": leaving the context managers sends a FIN mid-response.


def _abort(stream: SocketStream) -> None:
    """Make the coming close an RST instead of an orderly FIN."""
    sock: socket.socket = stream.extra(SocketAttribute.raw_socket)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
