"""Serving the app with uvicorn on a bound socket, and stopping fast and quietly."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable
from typing import Any

import anyio

from freepik_bg.testing._app import EmulatorApp
from freepik_bg.testing._exchange import ConnectionRegistry

__all__ = ["Serving", "bind", "serve_forever", "url_host"]

_STOP_GRACE = 3.0


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (0 picks a free port), not yet listening."""
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


def url_host(host: str) -> str:
    """``host`` as it goes in a URL: IPv6 addresses in brackets."""
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


class Serving:
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


async def serve_forever(
    app: EmulatorApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
    on_started: Callable[[int], None] | None = None,
) -> None:
    """Serve ``app`` on the current asyncio loop until cancelled or SIGINT/SIGTERM."""
    sock = bind(host, port)
    bound = int(sock.getsockname()[1])
    serving = Serving(app, sock, log_level)
    loop = asyncio.get_running_loop()
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
