"""The emulator as a hand-written ASGI 3 application.

Endpoints:

* ``POST /v1/ai/beta/remove-background`` -- the API.
* ``GET|HEAD /v1/ai/beta/images/download/<token>/{high,preview}.png`` and
  ``/v1/ai/beta/images/original/<token>/original.{jpg,png}`` -- the returned links.
* ``GET|HEAD /samples`` and ``/samples/<name>`` -- generated sample images.
* ``/_emulator/...`` -- emulator-only admin API (stats, config, faults, time).

Pillow and numpy are imported lazily, on the first image actually processed.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import hashlib
import json
import logging
import os
import socket
import struct
import threading
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
import attrs
import httpx

from freepik_bg.testing._config import (
    Clock,
    EmulatorConfig,
    RateLimiter,
    retry_after_seconds,
)
from freepik_bg.testing._faults import ENDPOINTS, Endpoint, Fault, FaultBook, FaultKind
from freepik_bg.testing._samples import sample_info, sample_names
from freepik_bg.testing._stats import RequestRecord, StatsRecorder, key_digest

if TYPE_CHECKING:
    from freepik_bg.testing._matte import MattedImage

__all__ = ["API_PATH", "ConnectionRegistry", "EmulatorApp", "sniff_format"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
T = TypeVar("T")

API_PATH = "/v1/ai/beta/remove-background"
DOWNLOAD_PREFIX = "/v1/ai/beta/images/download/"
ORIGINAL_PREFIX = "/v1/ai/beta/images/original/"
SAMPLES_PATH = "/samples"
ADMIN_PREFIX = "/_emulator/"
LOOP_PREFIX = "/_emulator/redirect-loop/"

_log = logging.getLogger("freepik_bg.testing")
_FORM = "application/x-www-form-urlencoded"
_MAX_FORM_BYTES = 64 * 1024
_MAX_ADMIN_BYTES = 1024 * 1024
_MAX_URL_LENGTH = 2048
_CHUNK = 256 * 1024
_FAST_CACHE_SIZE = 32
_TOMBSTONES = 100_000
_HTML_NOT_PNG = (
    b"<!doctype html>\n<html><head><title>Access denied</title></head>"
    b"<body><h1>Access denied</h1></body></html>\n"
)


def sniff_format(data: bytes) -> str:
    """The format of ``data`` from its magic bytes: "jpeg", "png", "gif", "html"...

    The service decides by content, never by file name or Content-Type.
    """
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM":
        return "bmp"
    if data[4:8] == b"ftyp":
        return "heif/avif"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    head = data[:1024].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "html"
    if head.startswith((b"<?xml", b"<svg")):
        return "svg/xml"
    return "unknown"


class ConnectionRegistry:
    """Open transports by client address, so the app can drop a connection on purpose.

    ASGI has no way to reset a connection: an app that raises gets a tidy 500 from the
    server. The emulator's server registers each transport here (see ``_server.py``).
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


class _ClientGone(Exception):
    """The client disconnected while we still wanted to talk to it."""


class _Reject(Exception):
    """Answer the request with this error instead of going on."""

    def __init__(
        self, status: int, payload: dict[str, Any], headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(status, payload)
        self.status = status
        self.payload = payload
        self.headers = headers


@attrs.define
class _Job:
    token: str
    url_token: str
    expires: float
    original: bytes
    original_name: str
    original_type: str
    high: bytes
    preview: bytes


class _LinkStore:
    """Issued links. Lives on the server's loop: no locking needed."""

    def __init__(self) -> None:
        self._by_token: dict[str, tuple[_Job, str]] = {}
        self._order: collections.deque[_Job] = collections.deque()
        self._expired: collections.OrderedDict[str, None] = collections.OrderedDict()

    def add(self, job: _Job) -> None:
        self._by_token[job.token] = (job, "main")
        self._by_token[job.url_token] = (job, "url")
        self._order.append(job)

    def lookup(self, token: str, now: float) -> tuple[_Job, str] | Literal["expired"] | None:
        self._sweep(now)
        entry = self._by_token.get(token)
        if entry is not None and now >= entry[0].expires:
            self._retire(entry[0])
            return "expired"
        if entry is not None:
            return entry
        return "expired" if token in self._expired else None

    def _sweep(self, now: float) -> None:
        # Jobs are ordered by creation, which is expiry order unless link_ttl changed;
        # lookups re-check expiry, so a late sweep is harmless.
        while self._order and self._order[0].expires <= now:
            self._retire(self._order.popleft())

    def _retire(self, job: _Job) -> None:
        for token in (job.token, job.url_token):
            if self._by_token.pop(token, None) is not None:
                self._expired[token] = None
        while len(self._expired) > _TOMBSTONES:
            self._expired.popitem(last=False)


class _Exchange:
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
                raise _ClientGone
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
        step = fault.chunk_size if fault is not None and kind is FaultKind.TRICKLE else _CHUNK
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


class EmulatorApp:
    """The ASGI 3 application. Normally driven through :class:`Emulator`.

    It can also be mounted on any ASGI server (``EmulatorApp()`` is the app), except
    that connection resets and truncations need the emulator's own uvicorn setup.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        seed: int | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.clock = Clock(clock)
        self.stats = StatsRecorder()
        self.faults = FaultBook(seed)
        self.connections = ConnectionRegistry()
        self._links = _LinkStore()
        self._limiter = RateLimiter()
        self._client: httpx.AsyncClient | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._samples: dict[str, bytes] = {}
        self._sample_locks: collections.defaultdict[str, threading.Lock] = collections.defaultdict(
            threading.Lock
        )
        self._fast_cache: collections.OrderedDict[str, MattedImage] = collections.OrderedDict()
        self._fast_pending: dict[str, anyio.Event] = {}
        self._closing: anyio.Event | None = None
        self._shutting_down = False
        self._handlers: set[anyio.CancelScope] = set()

    # ------------------------------------------------------------------ public helpers

    def configure(self, **changes: Any) -> EmulatorConfig:
        """Swap in a new config; requests already running keep the one they started with."""
        self.config = self.config.with_changes(**changes)
        return self.config

    def begin_shutdown(self) -> None:
        """Cut latency delays short; call on the serving loop when stopping."""
        self._shutting_down = True
        if self._closing is not None:
            self._closing.set()

    def cancel_requests(self) -> None:
        """End every request still being handled; call on the serving loop when stopping.

        A request cancelled this way returns quietly, where cancelling the server's task
        would make the server log the CancelledError as a crash of the application.
        """
        for scope in list(self._handlers):
            scope.cancel()

    async def _sleep(self, seconds: float) -> None:
        """Latency that shutdown can interrupt, so stopping never waits for it."""
        if seconds <= 0 or self._shutting_down:
            return
        if self._closing is None:
            self._closing = anyio.Event()  # created lazily: it belongs to the serving loop
        with anyio.move_on_after(seconds):
            await self._closing.wait()

    async def aclose(self) -> None:
        """Release the fetch client; call on the loop that served requests."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def close_executor(self) -> None:
        """Wait for running image work and stop the worker threads."""
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def sample_bytes(self, name: str) -> bytes:
        """The bytes of sample ``name``, generated on first use and then cached."""
        with self._sample_locks[name]:
            data = self._samples.get(name)
            if data is None:
                from freepik_bg.testing._render import generate_sample

                data = self._samples[name] = generate_sample(name)
            return data

    # ------------------------------------------------------------------ ASGI entry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        ex = _Exchange(scope, receive, send, self.connections)
        endpoint, handler = self._route(ex)
        key = ex.headers.get("x-freepik-api-key")

        def record() -> None:
            self.stats.record(
                RequestRecord(
                    method=ex.method,
                    path=ex.path,
                    endpoint=endpoint,
                    status=ex.status,
                    api_key_sent=key is not None,
                    api_key_sha256=key_digest(key) if key is not None else None,
                    at=self.clock.now(),
                    image_url=ex.image_url,
                    charged=ex.charged,
                )
            )

        ex.on_finish(record)
        try:
            with anyio.CancelScope() as handling:
                self._handlers.add(handling)
                try:
                    await handler(ex)
                except _ClientGone:
                    pass
                except Exception:
                    _log.exception("emulator error on %s %s", ex.method, ex.path)
                    if not ex.started:
                        await ex.json(500, {"message": "Internal Server Error"})
                finally:
                    self._handlers.discard(handling)
        finally:
            ex.finish()  # for exchanges that ended without a last byte

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _route(self, ex: _Exchange) -> tuple[str, Callable[[_Exchange], Awaitable[None]]]:
        path, method = ex.path, ex.method
        if path == API_PATH:
            return "post", self._post if method == "POST" else _not_allowed("POST")
        if path.startswith((DOWNLOAD_PREFIX, ORIGINAL_PREFIX)):
            get = method in ("GET", "HEAD")
            return "download", self._download if get else _not_allowed("GET, HEAD")
        if path in (SAMPLES_PATH, SAMPLES_PATH + "/") or path.startswith(SAMPLES_PATH + "/"):
            get = method in ("GET", "HEAD")
            return "sample", self._sample if get else _not_allowed("GET, HEAD")
        if path.startswith(LOOP_PREFIX):
            return "redirect", self._redirect_loop
        if path.startswith(ADMIN_PREFIX):
            return "admin", self._admin
        return "other", _not_found

    # ------------------------------------------------------------------ the API

    async def _post(self, ex: _Exchange) -> None:
        self.stats.post_started()
        ex.on_finish(self.stats.post_finished)
        await self._remove_background(ex, self.config)

    async def _remove_background(self, ex: _Exchange, cfg: EmulatorConfig) -> None:
        fault = self._draw("post", cfg)
        if fault is not None and _before_processing(fault):
            await self._replace(ex, fault, cfg)
            return
        job: _Job | None = None
        try:
            key = self._authenticate(ex, cfg)
            self._rate_limit(key, cfg)
            image_url = ex.image_url = await self._parse_form(ex, cfg)
            delay = self.faults.uniform(*cfg.latency)
            await self._sleep(delay)
            job = await self._process(ex, image_url, cfg)
        except _Reject as reject:
            if fault is not None and fault.replaces_response:
                await self._replace(ex, fault, cfg)
            else:
                await ex.json(reject.status, reject.payload, reject.headers, fault=fault)
            return
        # Processed: billed, whatever happens to the answer from here on.
        self._charge(ex)
        if fault is not None and fault.replaces_response:
            await self._replace(ex, fault, cfg)
            return
        links = self._links_for(ex, job)
        if fault is not None and fault.kind is FaultKind.MALFORMED_JSON:
            text = json.dumps(links).encode()
            await ex.respond(200, text[: len(text) // 2], "application/json")
            return
        if fault is not None and fault.kind is FaultKind.MISSING_FIELDS:
            links = {k: v for k, v in links.items() if k not in fault.fields}
        self.stats.issued(len(links))
        await ex.json(200, links, fault=fault)

    def _charge(self, ex: _Exchange) -> None:
        ex.charged = True
        self.stats.charged()

    def _authenticate(self, ex: _Exchange, cfg: EmulatorConfig) -> str:
        key = ex.headers.get("x-freepik-api-key")
        if not key:
            raise _Reject(401, {"message": "Missing API key"})
        if key not in cfg.api_keys:
            raise _Reject(401, {"message": "Invalid API key"})
        return key

    def _rate_limit(self, key: str, cfg: EmulatorConfig) -> None:
        wait = self._limiter.acquire(key, cfg.rate_limits, self.clock.now())
        if wait is not None:
            headers: tuple[tuple[str, str], ...] = ()
            if cfg.retry_after_header:
                headers = (("retry-after", str(retry_after_seconds(wait))),)
            raise _Reject(429, {"message": "Rate limit exceeded"}, headers)

    async def _parse_form(self, ex: _Exchange, cfg: EmulatorConfig) -> str:
        content_type = ex.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != _FORM:
            raise _Reject(
                415,
                {"message": f"Unsupported Media Type: send the body as {_FORM}"},
            )
        body = await ex.read_body(_MAX_FORM_BYTES)
        if body is None:
            raise _Reject(413, {"message": "Request body too large"}, (("connection", "close"),))
        try:
            form = urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            raise _Reject(400, {"message": "The request body is not valid form data"}) from None
        values = form.get("image_url")
        if not values or not values[0].strip():
            raise self._invalid(cfg, "image_url is required")
        image_url = values[0].strip()
        if len(image_url) > _MAX_URL_LENGTH:
            raise self._invalid(cfg, f"image_url must be at most {_MAX_URL_LENGTH} characters")
        try:
            parts = urllib.parse.urlsplit(image_url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise self._invalid(cfg, "image_url must be an absolute http(s) URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self._invalid(cfg, "image_url must be an absolute http(s) URL")
        return image_url

    def _invalid(self, cfg: EmulatorConfig, reason: str) -> _Reject:
        message = "Your request has invalid parameters"
        params = [{"name": "image_url", "reason": reason}]
        if cfg.invalid_params_style == "problem":
            payload: dict[str, Any] = {
                "message": message,
                "problem": {"message": message, "invalid_params": params},
            }
        else:
            payload = {"message": message, "invalid_params": params}
        return _Reject(400, payload)

    async def _process(self, ex: _Exchange, image_url: str, cfg: EmulatorConfig) -> _Job:
        data = await self._fetch_source(ex, image_url, cfg)
        fmt = sniff_format(data)
        if fmt not in ("jpeg", "png"):
            raise _Reject(
                400,
                {"message": f"Unsupported image format ({fmt}): only JPEG and PNG are accepted"},
            )
        matted = await self._matte(data, cfg)
        now = self.clock.now()
        ext = "jpg" if fmt == "jpeg" else "png"
        job = _Job(
            token=str(uuid.uuid4()),
            url_token=str(uuid.uuid4()),
            expires=now + cfg.link_ttl,
            original=data,
            original_name=f"original.{ext}",
            original_type=f"image/{fmt}",
            high=matted.high_png,
            preview=matted.preview_png,
        )
        self._links.add(job)
        return job

    def _links_for(self, ex: _Exchange, job: _Job) -> dict[str, str]:
        base = ex.origin
        return {
            "original": f"{base}{ORIGINAL_PREFIX}{job.token}/{job.original_name}",
            "high_resolution": f"{base}{DOWNLOAD_PREFIX}{job.token}/high.png",
            "preview": f"{base}{DOWNLOAD_PREFIX}{job.token}/preview.png",
            "url": f"{base}{DOWNLOAD_PREFIX}{job.url_token}/high.png",
        }

    async def _fetch_source(self, ex: _Exchange, image_url: str, cfg: EmulatorConfig) -> bytes:
        too_large = _Reject(
            400,
            {"message": f"Image too large: the limit is {cfg.max_source_bytes // 2**20} MB"},
        )
        failed = _Reject(400, {"message": "Failed to download the image"})
        own = self._own_sample(ex, image_url) if cfg.fast else None
        if own is not None:
            data = await self._run_cpu(functools.partial(self.sample_bytes, own))
            if len(data) > cfg.max_source_bytes:
                raise too_large
            return data
        if self._client is None:
            # trust_env=False: a developer's proxy settings must not reroute loopback.
            self._client = httpx.AsyncClient(
                follow_redirects=True,
                max_redirects=5,
                trust_env=False,
                headers={"user-agent": "freepik-bg-emulator", "accept": "image/*,*/*;q=0.5"},
            )
        try:
            with anyio.fail_after(cfg.fetch_timeout):
                async with self._client.stream(
                    "GET", image_url, timeout=cfg.fetch_timeout
                ) as response:
                    if not response.is_success:
                        raise failed
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > cfg.max_source_bytes:
                        raise too_large
                    buffer = bytearray()
                    async for piece in response.aiter_bytes():
                        buffer += piece
                        if len(buffer) > cfg.max_source_bytes:
                            raise too_large  # leaving the block closes the response
                    return bytes(buffer)
        except (httpx.HTTPError, httpx.InvalidURL, TimeoutError):
            raise failed from None

    def _own_sample(self, ex: _Exchange, image_url: str) -> str | None:
        parts = urllib.parse.urlsplit(image_url)
        if f"{parts.scheme}://{parts.netloc}" != ex.origin:
            return None
        prefix = SAMPLES_PATH + "/"
        name = urllib.parse.unquote(parts.path[len(prefix) :])
        if parts.path.startswith(prefix) and name in sample_names():
            return name
        return None

    async def _matte(self, data: bytes, cfg: EmulatorConfig) -> MattedImage:
        from freepik_bg.testing._matte import ImageDecodeError, remove_background

        make = functools.partial(remove_background, data, compress_level=cfg.png_compress_level)
        if not cfg.fast:
            try:
                return await self._run_cpu(make)
            except ImageDecodeError as exc:
                raise _Reject(400, {"message": f"Invalid image: {exc}"}) from None

        digest = hashlib.sha256(data).hexdigest()
        while True:
            cached = self._fast_cache.get(digest)
            if cached is not None:
                self._fast_cache.move_to_end(digest)
                return cached
            pending = self._fast_pending.get(digest)
            if pending is None:
                break
            await pending.wait()  # another request is computing this very cutout
        done = self._fast_pending[digest] = anyio.Event()
        try:
            matted = await self._run_cpu(make)
        except ImageDecodeError as exc:
            raise _Reject(400, {"message": f"Invalid image: {exc}"}) from None
        finally:
            del self._fast_pending[digest]
            done.set()
        self._fast_cache[digest] = matted
        while len(self._fast_cache) > _FAST_CACHE_SIZE:
            self._fast_cache.popitem(last=False)
        return matted

    async def _run_cpu(self, func: Callable[[], T]) -> T:
        """Run image work in a worker thread, so the loop keeps serving other requests."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # served by a trio-based server
            return await anyio.to_thread.run_sync(func)
        with self._executor_lock:
            if self._executor is None:
                # Our own pool, rather than anyio's, so that shutdown can join its threads.
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=max(2, os.cpu_count() or 2),
                    thread_name_prefix="freepik-emulator-cpu",
                )
            executor = self._executor
        return await loop.run_in_executor(executor, func)

    # ------------------------------------------------------------------ faults

    def _draw(self, endpoint: Endpoint, cfg: EmulatorConfig) -> Fault | None:
        fault = self.faults.draw(endpoint, cfg.fault_rules)
        if fault is not None:
            self.stats.fault(endpoint, fault.kind.value)
        return fault

    async def _replace(self, ex: _Exchange, fault: Fault, cfg: EmulatorConfig) -> None:
        """Answer with a replacing fault (status, reset or redirect) instead."""
        if fault.kind is FaultKind.RESET:
            await ex.reset()
        elif fault.kind is FaultKind.REDIRECT:
            location = fault.location or ex.url
            await ex.respond(fault.status or 307, b"", "text/plain", [("location", location)])
        elif fault.kind is FaultKind.REDIRECT_LOOP:
            status = fault.status or 307
            location = f"{ex.origin}{LOOP_PREFIX}1?status={status}"
            await ex.respond(status, b"", "text/plain", [("location", location)])
        else:
            status = fault.status or 500
            headers: list[tuple[str, str]] = []
            if status == 429 and cfg.retry_after_header:
                headers.append(("retry-after", str(fault.retry_after or 1)))
            await ex.json(status, {"message": fault.default_message}, headers)

    async def _redirect_loop(self, ex: _Exchange) -> None:
        tail = ex.path[len(LOOP_PREFIX) :]
        step = int(tail) + 1 if tail.isdigit() else 1
        query = urllib.parse.parse_qs(ex.query)
        status = int(query.get("status", ["307"])[0])
        if status not in (301, 302, 303, 307, 308):
            status = 307
        location = f"{ex.origin}{LOOP_PREFIX}{step}?status={status}"
        await ex.respond(status, b"", "text/plain", [("location", location)])

    # ------------------------------------------------------------------ links

    async def _download(self, ex: _Exchange) -> None:
        cfg = self.config
        fault = self._draw("download", cfg)
        if fault is not None and fault.replaces_response:
            await self._replace(ex, fault, cfg)
            return
        is_original = ex.path.startswith(ORIGINAL_PREFIX)
        rest = ex.path[len(ORIGINAL_PREFIX if is_original else DOWNLOAD_PREFIX) :]
        token, _, filename = rest.partition("/")
        found = self._links.lookup(token, self.clock.now())
        if found == "expired":
            self.stats.expired()
            message = "Not found" if cfg.expired_status == 404 else "Link expired"
            await ex.json(cfg.expired_status, {"message": message}, fault=fault)
            return
        variant = _variant(found, is_original, filename)
        if found is None or variant is None:
            await ex.json(404, {"message": "Not found"}, fault=fault)
            return
        job = found[0]
        delay = self.faults.uniform(*cfg.download_latency)
        await self._sleep(delay)
        if variant == "original":
            body, content_type = job.original, job.original_type
        else:
            body, content_type = (job.preview if variant == "preview" else job.high), "image/png"
        if fault is not None and fault.kind is FaultKind.NOT_PNG:
            body = _HTML_NOT_PNG
        downloaded = functools.partial(self.stats.downloaded, variant)
        await ex.respond(200, body, content_type, fault=fault, on_complete=downloaded)

    # ------------------------------------------------------------------ samples

    async def _sample(self, ex: _Exchange) -> None:
        name = urllib.parse.unquote(ex.path[len(SAMPLES_PATH) :].lstrip("/"))
        if not name:
            listing = [
                {
                    "name": n,
                    "url": f"{ex.origin}{SAMPLES_PATH}/{n}",
                    "kind": sample_info(n).kind.value,
                    "content_type": sample_info(n).content_type,
                    "width": sample_info(n).width,
                    "height": sample_info(n).height,
                    "description": sample_info(n).description,
                }
                for n in sample_names()
            ]
            await ex.json(200, listing)
            return
        if name not in sample_names():
            await ex.json(404, {"message": "Not found"})
            return
        data = await self._run_cpu(functools.partial(self.sample_bytes, name))
        content_type = sample_info(name).content_type
        if "chunked=1" not in ex.query.split("&"):
            await ex.respond(200, data, content_type)
            return
        # Without Content-Length, h11 uses chunked encoding: a source whose size is only
        # known by counting, to test the streaming size check.
        await ex.start(200, [("content-type", content_type)])
        last = max(0, (len(data) - 1) // _CHUNK * _CHUNK)
        for offset in range(0, last, _CHUNK):
            await ex.chunk(data[offset : offset + _CHUNK], more=True)
        await ex.chunk(data[last:], more=False)

    # ------------------------------------------------------------------ admin

    async def _admin(self, ex: _Exchange) -> None:
        route = (ex.method, ex.path[len(ADMIN_PREFIX) :].rstrip("/"))
        try:
            if route == ("GET", "health"):
                await ex.json(200, {"status": "ok"})
            elif route == ("GET", "stats"):
                await ex.json(200, self.stats.snapshot().to_json())
            elif route == ("POST", "stats/reset"):
                self.stats.reset()
                await ex.json(200, {"status": "ok"})
            elif route == ("GET", "config"):
                await ex.json(200, self.config.to_json())
            elif route == ("POST", "config"):
                changes = EmulatorConfig.changes_from_json(await self._admin_json(ex))
                await ex.json(200, self.configure(**changes).to_json())
            elif route == ("GET", "faults"):
                pending = {e: [f.to_json() for f in self.faults.pending(e)] for e in ENDPOINTS}
                await ex.json(200, pending)
            elif route == ("POST", "faults"):
                data = await self._admin_json(ex)
                faults = [Fault.from_json(f) for f in data["faults"]]
                self.faults.push(data["endpoint"], faults)
                await ex.json(200, {"status": "ok"})
            elif route == ("DELETE", "faults"):
                self.faults.clear()
                await ex.json(200, {"status": "ok"})
            elif route == ("POST", "time"):
                data = await self._admin_json(ex)
                self.clock.advance(float(data["advance"]))
                await ex.json(200, {"now": self.clock.now()})
            else:
                await ex.json(404, {"message": "Not found"})
        except (KeyError, TypeError, ValueError) as exc:
            await ex.json(400, {"message": f"Bad admin request: {exc}"})

    async def _admin_json(self, ex: _Exchange) -> dict[str, Any]:
        body = await ex.read_body(_MAX_ADMIN_BYTES)
        if body is None:
            raise ValueError("body too large")
        data = json.loads(body or b"{}")
        if not isinstance(data, dict):
            raise TypeError("expected a JSON object")
        return data


# Body faults after which the client does not have the whole answer.
_INCOMPLETE = {FaultKind.TRUNCATE, FaultKind.HUGE_CONTENT_LENGTH}


def _before_processing(fault: Fault) -> bool:
    if fault.kind in (FaultKind.REDIRECT, FaultKind.REDIRECT_LOOP):
        return True
    return fault.replaces_response and not fault.after_processing


def _variant(found: tuple[_Job, str] | None, is_original: bool, filename: str) -> str | None:
    if found is None:
        return None
    job, role = found
    if is_original:
        return "original" if role == "main" and filename == job.original_name else None
    if filename == "high.png":
        return "url" if role == "url" else "high_resolution"
    if filename == "preview.png" and role == "main":
        return "preview"
    return None


def _not_allowed(allow: str) -> Callable[[_Exchange], Awaitable[None]]:
    async def handler(ex: _Exchange) -> None:
        await ex.json(405, {"message": "Method not allowed"}, [("allow", allow)])

    return handler


async def _not_found(ex: _Exchange) -> None:
    await ex.json(404, {"message": "Not found"})
