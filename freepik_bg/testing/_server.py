"""Running the emulator: uvicorn on a background thread, or in a child process."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import types
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import httpx

from freepik_bg.testing._app import API_PATH, EmulatorApp
from freepik_bg.testing._config import (
    DEFAULT_API_KEY,
    MAX_SOURCE_BYTES,
    EmulatorConfig,
    LatencyLike,
    RateLimit,
    single_bucket,
)
from freepik_bg.testing._exchange import ConnectionRegistry
from freepik_bg.testing._faults import Endpoint, Fault, FaultRule
from freepik_bg.testing._samples import sample_names
from freepik_bg.testing._stats import EmulatorStats

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Emulator", "serve_forever"]

_START_TIMEOUT = 15.0
_STOP_GRACE = 3.0


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # An explicit IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets
    # whose proto says TCP, and without it every response waits ~40 ms for delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # Lets a fixed port be reused right after a previous emulator released it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _protocol_class(registry: ConnectionRegistry) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, registering each transport so the app can reset it."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class _TrackedH11Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            registry.add(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            registry.discard(self.transport)
            super().connection_lost(exc)

    return _TrackedH11Protocol


def _accepting_tasks() -> set[asyncio.Task[Any]]:
    """asyncio's own tasks that finish accepting a connection on this loop."""
    return {
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "").endswith("._accept_connection2")
    }


class _Serving:
    """uvicorn serving ``app`` on a bound socket until asked to stop, then stopping fast.

    uvicorn's own ``Server.serve`` polls for exit every 0.1 s and sleeps during shutdown;
    a test suite starts an emulator per test, so we drive startup and shutdown directly.
    """

    def __init__(self, app: EmulatorApp, sock: socket.socket, log_level: str) -> None:
        self.app = app
        self.sock = sock
        self.log_level = log_level
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    async def serve(self, started: Callable[[], None]) -> None:
        import uvicorn

        config = uvicorn.Config(
            self.app,
            lifespan="off",
            interface="asgi3",
            http=_protocol_class(self.app.connections),
            log_level=self.log_level,
            # None: leave the host application's logging configuration alone.
            log_config=None,
            access_log=False,
            # Trusting X-Forwarded-For would rewrite the client address, which is how the
            # app finds a connection to reset.
            proxy_headers=False,
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await server.startup(sockets=[self.sock])
        try:
            await server.on_tick(0)  # sets the Date and Server headers
            started()
            await self._stop.wait()
        finally:
            await self._shutdown(server)

    def request_stop(self) -> None:
        """Ask the serving loop to stop; callable from any thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)

    async def _shutdown(self, server: Any) -> None:
        for listener in server.servers:
            listener.close()
        self.app.begin_shutdown()
        # Dropping every connection ends stalls and trickles at once; clients still
        # waiting see a closed connection, as they would if the real service went away.
        self.app.connections.abort_all()
        accepting = _accepting_tasks()
        if accepting:
            # Connections accepted just before the listener closed are still being set
            # up; left pending, their sockets would stay open with nobody answering.
            await asyncio.wait(accepting, timeout=_STOP_GRACE)
        await self._drain(server.server_state.tasks)
        await self.app.aclose()
        for listener in server.servers:
            await listener.wait_closed()
        self.sock.close()

    async def _drain(self, tasks: set[asyncio.Task[None]]) -> None:
        """Give running requests a grace period, then end them from inside the app."""
        running = {task for task in tasks if not task.done()}
        if not running:
            return
        _done, pending = await asyncio.wait(running, timeout=_STOP_GRACE)
        if not pending:
            return
        self.app.cancel_requests()
        _done, pending = await asyncio.wait(pending, timeout=_STOP_GRACE)
        for task in pending:  # a request stuck outside the app: the server logs it
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=_STOP_GRACE)


class _ThreadRunner:
    """The server on its own event loop in a daemon thread of this process."""

    def __init__(self, app: EmulatorApp, host: str, port: int, log_level: str) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._log_level = log_level
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._serving: _Serving | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        sock = _bind(self._host, self._port)
        port = int(sock.getsockname()[1])
        self._serving = _Serving(self._app, sock, self._log_level)
        self._thread = threading.Thread(
            target=self._run, name=f"freepik-emulator-{port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            raise RuntimeError("the emulator did not start in time")
        if self._error is not None:
            raise RuntimeError("the emulator failed to start") from self._error
        return port

    def _run(self) -> None:
        assert self._serving is not None
        try:
            asyncio.run(self._serving.serve(self._ready.set))
        except BaseException as exc:  # reported to start(), or lost at shutdown
            self._error = exc
        finally:
            self._app.close_executor()
            self._serving.sock.close()
            self._ready.set()

    def stop(self) -> None:
        if self._serving is not None:
            self._serving.request_stop()
        if self._thread is not None:
            self._thread.join(timeout=_START_TIMEOUT)


class _ProcessRunner:
    """The server in a child ``python -m freepik_bg.testing`` process."""

    def __init__(
        self, config: EmulatorConfig, host: str, port: int, seed: int | None, log_level: str
    ) -> None:
        self._config = config
        self._host = host
        self._port = port
        self._seed = seed
        self._log_level = log_level
        self._proc: subprocess.Popen[str] | None = None
        self.admin: httpx.Client | None = None

    def start(self) -> int:
        # The child must import this very copy of the package, installed or not.
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        command = [
            sys.executable,
            "-m",
            "freepik_bg.testing",
            "--host",
            self._host,
            "--port",
            str(self._port),
            "--log-level",
            self._log_level,
            "--config-json",
            json.dumps(self._config.to_json()),
            "--announce-json",
        ]
        if self._seed is not None:
            command += ["--seed", str(self._seed)]
        self._proc = subprocess.Popen(  # noqa: S603 - our own module, with our arguments
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env, text=True
        )
        line = self._read_announcement()
        try:
            announced = json.loads(line)
            port = int(announced["port"])
        except (ValueError, KeyError, TypeError):
            self.stop()
            raise RuntimeError(f"the emulator process did not start: {line!r}") from None
        self.admin = httpx.Client(
            base_url=f"http://{_url_host(self._host)}:{port}", trust_env=False, timeout=30.0
        )
        return port

    def _read_announcement(self) -> str:
        assert self._proc is not None
        assert self._proc.stdout is not None
        stdout = self._proc.stdout
        lines: list[str] = []
        # readline() has no timeout, and select() does not work on Windows pipes.
        reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(_START_TIMEOUT)
        if not lines:
            self.stop()
            raise RuntimeError("the emulator process did not start in time")
        return lines[0]

    def stop(self) -> None:
        if self.admin is not None:
            self.admin.close()
            self.admin = None
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=_START_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


class Emulator:
    """A local, faithful stand-in for Freepik's remove-background API.

    Runs uvicorn on 127.0.0.1 in a background thread (or, with ``process=True``, in a
    child process so benchmarks do not share the GIL). Every keyword below is a knob
    of :class:`EmulatorConfig` unless noted; change knobs later with :meth:`configure`.

    Args:
        host, port: where to listen; port 0 picks a free port (see :attr:`port`).
        api_key: the key to accept (:attr:`api_key`); ``extra_api_keys`` adds more.
        link_ttl: seconds returned links stay valid (300, like the real service).
        rate, burst: a per-key token bucket (None: unlimited); ``rate_limits`` sets
            several buckets, e.g. :data:`REAL_API_RATE_LIMITS`.
        retry_after_header: send ``Retry-After`` with 429 answers.
        latency, download_latency: seconds, or a (low, high) uniform range.
        fault_rules: random faults (:class:`FaultRule`); use ``seed`` for repeatability.
        fast: serve one cached cutout per source and skip HTTP for the emulator's own
            samples (for benchmarks of the client).
        invalid_params_style: "top" or "problem" (where 400s put ``invalid_params``).
        expired_status: status for a download of an expired link (404).
        fetch_timeout, max_source_bytes, png_compress_level: see :class:`EmulatorConfig`.
        seed: seeds random faults and latency.
        clock: a monotonic time source for link expiry and rate limits (thread mode
            only); :meth:`advance_time` works in both modes.
        process: run in a child process.
        log_level: uvicorn's log level.

    Example::

        with Emulator() as emu:
            response = httpx.post(
                emu.api_url,
                data={"image_url": emu.image_url("mug-plain.jpg")},
                headers={"x-freepik-api-key": emu.api_key},
            )
            assert response.status_code == 200

        async with Emulator(link_ttl=1) as emu:
            ...
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        extra_api_keys: Iterable[str] = (),
        link_ttl: float = 300.0,
        rate: float | None = None,
        burst: float | None = None,
        rate_limits: Sequence[RateLimit] | None = None,
        retry_after_header: bool = True,
        latency: LatencyLike = 0.0,
        download_latency: LatencyLike = 0.0,
        fault_rules: Iterable[FaultRule] = (),
        fast: bool = False,
        invalid_params_style: Literal["top", "problem"] = "top",
        expired_status: int = 404,
        fetch_timeout: float = 10.0,
        max_source_bytes: int = MAX_SOURCE_BYTES,
        png_compress_level: int = 1,
        seed: int | None = None,
        clock: Callable[[], float] | None = None,
        process: bool = False,
        log_level: str = "warning",
    ) -> None:
        if rate_limits is not None and (rate is not None or burst is not None):
            raise ValueError("give either rate/burst or rate_limits, not both")
        if process and clock is not None:
            raise ValueError("a clock cannot be passed to a child process; use advance_time()")
        limits = tuple(rate_limits) if rate_limits is not None else single_bucket(rate, burst)
        config = EmulatorConfig(
            api_keys=(api_key, *extra_api_keys),
            link_ttl=link_ttl,
            rate_limits=limits,
            retry_after_header=retry_after_header,
            latency=latency,
            download_latency=download_latency,
            fault_rules=tuple(fault_rules),
            fast=fast,
            invalid_params_style=invalid_params_style,
            expired_status=expired_status,
            fetch_timeout=fetch_timeout,
            max_source_bytes=max_source_bytes,
            png_compress_level=png_compress_level,
        )
        self._host = host
        self._requested_port = port
        self._seed = seed
        self._process = process
        self._log_level = log_level
        self._port: int | None = None
        self._state: Literal["new", "running", "stopped"] = "new"
        self._config = config  # process mode, before start
        self._pending_faults: list[tuple[Endpoint, tuple[Fault, ...]]] = []
        self._app: EmulatorApp | None = None
        self._runner: _ThreadRunner | _ProcessRunner | None = None
        if not process:
            self._app = EmulatorApp(config, seed=seed, clock=clock)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Start serving; returns once the port accepts connections."""
        if self._state != "new":
            raise RuntimeError("an Emulator can only be started once")
        if self._app is not None:
            self._runner = _ThreadRunner(
                self._app, self._host, self._requested_port, self._log_level
            )
        else:
            self._runner = _ProcessRunner(
                self._config, self._host, self._requested_port, self._seed, self._log_level
            )
        self._port = self._runner.start()
        self._state = "running"
        for endpoint, faults in self._pending_faults:
            self.inject(endpoint, *faults)
        self._pending_faults.clear()
        return self

    def stop(self) -> None:
        """Stop serving, dropping open connections; idempotent."""
        if self._runner is not None and self._state == "running":
            self._runner.stop()
        self._state = "stopped" if self._state != "new" else "new"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        # Starting takes a few milliseconds of blocking work: keep it off the event loop.
        return await anyio.to_thread.run_sync(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        await anyio.to_thread.run_sync(self.stop)

    # ------------------------------------------------------------------ addresses

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._state == "running"

    @property
    def host(self) -> str:
        """The address listened on."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for)."""
        if self._port is None:
            raise RuntimeError("the emulator is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://host:port``: pass it as the SDK's ``base_url``."""
        return f"http://{_url_host(self._host)}:{self.port}"

    @property
    def api_url(self) -> str:
        """The full URL of ``POST /v1/ai/beta/remove-background``."""
        return self.url_for(API_PATH)

    @property
    def api_key(self) -> str:
        """The (first) API key the emulator accepts."""
        return self.config.api_keys[0]

    def url_for(self, path: str) -> str:
        """An absolute URL on the emulator: ``url_for("/samples")``."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def image_url(self, name: str) -> str:
        """The URL of a generated sample (see :func:`sample_names`)."""
        if name not in sample_names():
            raise KeyError(f"unknown sample {name!r}; known: {', '.join(sample_names())}")
        return self.url_for(f"/samples/{name}")

    def sample_bytes(self, name: str) -> bytes:
        """The exact bytes served at :meth:`image_url` (generated on first use)."""
        if self._app is not None:
            return self._app.sample_bytes(name)
        response = self._admin().get(f"/samples/{name}")
        response.raise_for_status()
        return response.content

    # ------------------------------------------------------------------ knobs and state

    @property
    def app(self) -> EmulatorApp:
        """The ASGI app (thread mode only)."""
        if self._app is None:
            raise RuntimeError("the app lives in the child process (process=True)")
        return self._app

    @property
    def config(self) -> EmulatorConfig:
        """The current knobs."""
        if self._app is not None:
            return self._app.config
        if self._state == "running":
            response = self._admin().get("/_emulator/config")
            response.raise_for_status()
            return EmulatorConfig.from_json(response.json())
        return self._config

    def configure(self, **changes: Any) -> EmulatorConfig:
        """Change knobs at runtime: ``emu.configure(link_ttl=1, rate=5, burst=5)``.

        Takes the :class:`EmulatorConfig` field names, plus ``api_key`` (replace the
        keys) and ``rate``/``burst`` (one token bucket; ``rate=None`` for none). Requests
        already in flight keep the knobs they started with.
        """
        if self._app is not None:
            return self._app.configure(**changes)
        new = self._config.with_changes(**changes)  # validates before sending
        if self._state != "running":
            self._config = new
            return new
        payload = {k: v for k, v in new.to_json().items() if k in _json_keys(changes)}
        response = self._admin().post("/_emulator/config", json=payload)
        response.raise_for_status()
        self._config = EmulatorConfig.from_json(response.json())
        return self._config

    def inject(self, endpoint: Endpoint, *faults: Fault) -> None:
        """Queue ``faults`` for the next requests to ``endpoint`` ("post" or "download").

        Queued faults are used one per request, in order, before any random fault rule.
        """
        if self._app is not None:
            self._app.faults.push(endpoint, faults)
        elif self._state != "running":
            self._pending_faults.append((endpoint, faults))
        else:
            body = {"endpoint": endpoint, "faults": [f.to_json() for f in faults]}
            self._admin().post("/_emulator/faults", json=body).raise_for_status()

    def clear_faults(self) -> None:
        """Drop all queued faults (random fault rules stay: see :meth:`configure`)."""
        if self._app is not None:
            self._app.faults.clear()
        else:
            self._pending_faults.clear()
            if self._state == "running":
                self._admin().delete("/_emulator/faults").raise_for_status()

    def advance_time(self, seconds: float) -> None:
        """Move the emulator's clock forward: links expire, rate limits refill."""
        if self._app is not None:
            self._app.clock.advance(seconds)
        else:
            self._admin().post("/_emulator/time", json={"advance": seconds}).raise_for_status()

    @property
    def stats(self) -> EmulatorStats:
        """A snapshot of the counters (an HTTP call to the child in process mode)."""
        if self._app is not None:
            return self._app.stats.snapshot()
        response = self._admin().get("/_emulator/stats")
        response.raise_for_status()
        return EmulatorStats.from_json(response.json())

    def reset_stats(self) -> None:
        """Zero the counters and clear the request log."""
        if self._app is not None:
            self._app.stats.reset()
        else:
            self._admin().post("/_emulator/stats/reset").raise_for_status()

    def _admin(self) -> httpx.Client:
        runner = self._runner
        if not isinstance(runner, _ProcessRunner) or runner.admin is None:
            raise RuntimeError("the emulator is not running")
        return runner.admin

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "not started"
        mode = "process" if self._process else "thread"
        return f"<Emulator {where} ({mode}, {self._state})>"


def _json_keys(changes: dict[str, Any]) -> set[str]:
    keys = set(changes)
    if "api_key" in keys:
        keys.add("api_keys")
    if keys & {"rate", "burst"}:
        keys.add("rate_limits")
    return keys


async def serve_forever(
    app: EmulatorApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
    on_started: Callable[[int], None] | None = None,
) -> None:
    """Serve ``app`` on the current asyncio loop until cancelled or SIGINT/SIGTERM."""
    sock = _bind(host, port)
    bound = int(sock.getsockname()[1])
    serving = _Serving(app, sock, log_level)
    loop = asyncio.get_running_loop()
    import signal

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, serving.request_stop)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not main thread
            pass
    try:
        await serving.serve(lambda: on_started(bound) if on_started else None)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await anyio.to_thread.run_sync(app.close_executor)
