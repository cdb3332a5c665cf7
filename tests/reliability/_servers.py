"""Small loopback servers for the reliability tests.

* :class:`OriginServer`: a plain HTTP server standing as "another origin" (or
  an image host). It serves one image for any path and records every request
  with its headers, so a test can prove the API key never reached it.
* :class:`StallServer`: accepts TCP connections and then never answers, or
  sends response headers and then stalls the body.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Mapping
from typing import Literal

import anyio
import attrs
from anyio.abc import SocketAttribute, SocketStream, TaskStatus

__all__ = ["OriginServer", "Recorded", "StallServer"]


@attrs.frozen
class Recorded:
    """One request an :class:`OriginServer` answered."""

    method: str
    target: str  # path and query, as sent
    headers: Mapping[str, str]


class OriginServer:
    """Serves ``body`` (as ``content_type``) for every GET, on 127.0.0.1, in a thread.

    With ``set_cookie``, every GET answer sets that cookie; with ``post_ok``, every POST
    is answered 200 with the same body (else ``post_status``, 404 by default).
    """

    def __init__(
        self,
        body: bytes,
        content_type: str = "image/png",
        *,
        set_cookie: str | None = None,
        post_ok: bool = False,
        post_status: int = 404,
    ) -> None:
        self.body = body
        self.content_type = content_type
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer._record(self)
                self.send_response(200)
                self.send_header("content-type", outer.content_type)
                self.send_header("content-length", str(len(outer.body)))
                if set_cookie is not None:
                    self.send_header("set-cookie", set_cookie)
                self.end_headers()
                self.wfile.write(outer.body)

            def do_HEAD(self) -> None:
                outer._record(self)
                self.send_response(200)
                self.send_header("content-length", str(len(outer.body)))
                self.end_headers()

            def do_POST(self) -> None:
                outer._record(self)
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                if post_ok:  # a web server that answers any POST with its page
                    self.send_response(200)
                    self.send_header("content-type", outer.content_type)
                    self.send_header("content-length", str(len(outer.body)))
                    self.end_headers()
                    self.wfile.write(outer.body)
                    return
                self.send_response(post_status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _record(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self._requests.append(Recorded(handler.command, handler.path, headers))

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> OriginServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class StallServer:
    """Accepts, reads the request, then answers nothing (``"accept"``) or only
    the status line and headers of a 200 (``"headers"``), until the client leaves.

    Start it with ``port = await task_group.start(server.serve)``.
    """

    def __init__(self, mode: Literal["accept", "headers"], *, limit: float = 30.0) -> None:
        self.mode = mode
        self.limit = limit
        self.connections = 0

    async def serve(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        async with listener:
            task_status.started(int(listener.extra(SocketAttribute.local_port)))
            await listener.serve(self._handle)

    async def _handle(self, stream: SocketStream) -> None:
        self.connections += 1
        async with stream:
            with anyio.move_on_after(self.limit):
                try:
                    sent = False
                    async for _ in stream:
                        if self.mode == "headers" and not sent:
                            sent = True
                            await stream.send(
                                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                b"content-length: 1000\r\n\r\n"
                            )
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    return


class ThreadedUvicorn:
    """Serves an ASGI app with uvicorn on 127.0.0.1 in a thread, optionally over TLS."""

    def __init__(self, app: object, *, certfile: str | None = None, keyfile: str | None = None):
        import socket

        import uvicorn

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            lifespan="off",
            log_level="warning",
            log_config=None,
            access_log=False,
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def __enter__(self) -> ThreadedUvicorn:
        self._thread.start()
        tick = threading.Event()
        for _ in range(1000):  # up to 10 s
            if self._server.started or not self._thread.is_alive():
                break
            tick.wait(0.01)
        assert self._server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
