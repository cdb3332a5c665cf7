"""The emulator as a hand-written ASGI 3 application: routing and the API's behaviour.

Endpoints:

* ``POST /v1/ai/beta/remove-background`` -- the API.
* ``GET|HEAD /v1/ai/beta/images/download/<token>/{high,preview}.png`` and
  ``/v1/ai/beta/images/original/<token>/original.{jpg,png}`` -- the returned links.
* ``GET|HEAD /samples`` and ``/samples/<name>`` -- generated sample images.
* ``/_emulator/...`` -- emulator-only admin API (stats, config, faults, time).

The plumbing lives elsewhere: `_exchange` (ASGI messages), `_links` (the
link store), `_work` (fetches and image work), `_admin` (admin routes).
"""

from __future__ import annotations

import functools
import json
import logging
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from freepik_bg.testing._admin import ADMIN_PREFIX, serve_admin
from freepik_bg.testing._clock import Clock
from freepik_bg.testing._config import EmulatorConfig
from freepik_bg.testing._exchange import (
    CHUNK,
    ClientGone,
    ConnectionRegistry,
    Exchange,
    Receive,
    Reject,
    Scope,
    Send,
)
from freepik_bg.testing._faults import Endpoint, Fault, FaultBook, FaultKind
from freepik_bg.testing._links import (
    DOWNLOAD_PREFIX,
    ORIGINAL_PREFIX,
    Job,
    LinkStore,
    link_urls,
    variant,
)
from freepik_bg.testing._ratelimit import RateLimiter, retry_after_seconds
from freepik_bg.testing._samples import sample_info, sample_names
from freepik_bg.testing._sniff import sniff_format
from freepik_bg.testing._stats import RequestRecord, StatsRecorder, key_digest
from freepik_bg.testing._validate import authenticate, read_image_url
from freepik_bg.testing._work import ImageWork

__all__ = ["API_PATH", "EmulatorApp"]

API_PATH = "/v1/ai/beta/remove-background"
SAMPLES_PATH = "/samples"
LOOP_PREFIX = ADMIN_PREFIX + "redirect-loop/"

_log = logging.getLogger("freepik_bg.testing")
_HTML_NOT_PNG = (
    b"<!doctype html>\n<html><head><title>Access denied</title></head>"
    b"<body><h1>Access denied</h1></body></html>\n"
)


class EmulatorApp:
    """The ASGI 3 application. Normally driven through [`Emulator`][freepik_bg.testing.Emulator].

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
        self._links = LinkStore()
        self._limiter = RateLimiter()
        self._work = ImageWork()
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
        await self._work.aclose()

    def close_executor(self) -> None:
        """Wait for running image work and stop the worker threads."""
        self._work.close_executor()

    def sample_bytes(self, name: str) -> bytes:
        """The bytes of sample ``name``, generated on first use and then cached."""
        return self._work.sample_bytes(name)

    # ------------------------------------------------------------------ ASGI entry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        ex = Exchange(scope, receive, send, self.connections)
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
                except ClientGone:
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

    def _route(self, ex: Exchange) -> tuple[str, Callable[[Exchange], Awaitable[None]]]:
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
            return "admin", functools.partial(serve_admin, self)
        return "other", _not_found

    # ------------------------------------------------------------------ the API

    async def _post(self, ex: Exchange) -> None:
        self.stats.post_started()
        ex.on_finish(self.stats.post_finished)
        await self._remove_background(ex, self.config)

    async def _remove_background(self, ex: Exchange, cfg: EmulatorConfig) -> None:
        fault = self._draw("post", cfg)
        if fault is not None and _before_processing(fault):
            await self._replace(ex, fault, cfg)
            return
        job: Job | None = None
        try:
            key = authenticate(ex.headers, cfg)
            self._rate_limit(key, cfg)
            image_url = ex.image_url = await read_image_url(ex, cfg)
            delay = self.faults.uniform(*cfg.latency)
            await self._sleep(delay)
            job = await self._process(ex, image_url, cfg)
        except Reject as reject:
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
        links = link_urls(ex.origin, job)
        if fault is not None and fault.kind is FaultKind.MALFORMED_JSON:
            text = json.dumps(links).encode()
            await ex.respond(200, text[: len(text) // 2], "application/json")
            return
        if fault is not None and fault.kind is FaultKind.MISSING_FIELDS:
            links = {k: v for k, v in links.items() if k not in fault.fields}
        self.stats.issued(len(links))
        await ex.json(200, links, fault=fault)

    def _charge(self, ex: Exchange) -> None:
        ex.charged = True
        self.stats.charged()

    def _rate_limit(self, key: str, cfg: EmulatorConfig) -> None:
        wait = self._limiter.acquire(key, cfg.rate_limits, self.clock.now())
        if wait is not None:
            headers: tuple[tuple[str, str], ...] = ()
            if cfg.retry_after_header:
                headers = (("retry-after", str(retry_after_seconds(wait))),)
            raise Reject(429, {"message": "Rate limit exceeded"}, headers)

    async def _process(self, ex: Exchange, image_url: str, cfg: EmulatorConfig) -> Job:
        own = self._own_sample(ex, image_url) if cfg.fast else None
        data = await self._work.fetch_source(image_url, cfg, own_sample=own)
        fmt = sniff_format(data)
        if fmt not in ("jpeg", "png"):
            raise Reject(
                400,
                {"message": f"Unsupported image format ({fmt}): only JPEG and PNG are accepted"},
            )
        matted = await self._work.matte(data, cfg)
        now = self.clock.now()
        ext = "jpg" if fmt == "jpeg" else "png"
        job = Job(
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

    def _own_sample(self, ex: Exchange, image_url: str) -> str | None:
        parts = urllib.parse.urlsplit(image_url)
        if f"{parts.scheme}://{parts.netloc}" != ex.origin:
            return None
        prefix = SAMPLES_PATH + "/"
        name = urllib.parse.unquote(parts.path[len(prefix) :])
        if parts.path.startswith(prefix) and name in sample_names():
            return name
        return None

    # ------------------------------------------------------------------ faults

    def _draw(self, endpoint: Endpoint, cfg: EmulatorConfig) -> Fault | None:
        fault = self.faults.draw(endpoint, cfg.fault_rules)
        if fault is not None:
            self.stats.fault(endpoint, fault.kind.value)
        return fault

    async def _replace(self, ex: Exchange, fault: Fault, cfg: EmulatorConfig) -> None:
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

    async def _redirect_loop(self, ex: Exchange) -> None:
        tail = ex.path[len(LOOP_PREFIX) :]
        step = int(tail) + 1 if tail.isdigit() else 1
        query = urllib.parse.parse_qs(ex.query)
        status = int(query.get("status", ["307"])[0])
        if status not in (301, 302, 303, 307, 308):
            status = 307
        location = f"{ex.origin}{LOOP_PREFIX}{step}?status={status}"
        await ex.respond(status, b"", "text/plain", [("location", location)])

    # ------------------------------------------------------------------ links

    async def _download(self, ex: Exchange) -> None:
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
        file = variant(found, is_original, filename)
        if found is None or file is None:
            await ex.json(404, {"message": "Not found"}, fault=fault)
            return
        job = found[0]
        delay = self.faults.uniform(*cfg.download_latency)
        await self._sleep(delay)
        if file == "original":
            body, content_type = job.original, job.original_type
        else:
            body, content_type = (job.preview if file == "preview" else job.high), "image/png"
        if fault is not None and fault.kind is FaultKind.NOT_PNG:
            body = _HTML_NOT_PNG
        downloaded = functools.partial(self.stats.downloaded, file)
        await ex.respond(200, body, content_type, fault=fault, on_complete=downloaded)

    # ------------------------------------------------------------------ samples

    async def _sample(self, ex: Exchange) -> None:
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
        data = await self._work.run_cpu(functools.partial(self.sample_bytes, name))
        content_type = sample_info(name).content_type
        if "chunked=1" not in ex.query.split("&"):
            await ex.respond(200, data, content_type)
            return
        # Without Content-Length, h11 uses chunked encoding: a source whose size is only
        # known by counting, to test the streaming size check.
        await ex.start(200, [("content-type", content_type)])
        last = max(0, (len(data) - 1) // CHUNK * CHUNK)
        for offset in range(0, last, CHUNK):
            await ex.chunk(data[offset : offset + CHUNK], more=True)
        await ex.chunk(data[last:], more=False)


def _before_processing(fault: Fault) -> bool:
    if fault.kind in (FaultKind.REDIRECT, FaultKind.REDIRECT_LOOP):
        return True
    return fault.replaces_response and not fault.after_processing


def _not_allowed(allow: str) -> Callable[[Exchange], Awaitable[None]]:
    async def handler(ex: Exchange) -> None:
        await ex.json(405, {"message": "Method not allowed"}, [("allow", allow)])

    return handler


async def _not_found(ex: Exchange) -> None:
    await ex.json(404, {"message": "Not found"})
