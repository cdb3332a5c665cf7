"""The aiohttp transport (``http_backend="aiohttp"``) keeps the guarantees httpx's does.

TLS, timeouts, the proxy, redirects (the key stays home) and truncation run on both
transports in their own files (`HTTP_BACKENDS`, `TRANSPORTS`); here: what the errors
mean for billing, cancellation, and the asyncio-only and missing-extra errors.
"""

from __future__ import annotations

import builtins
import socket
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx
import pytest

import freepik_bg
from freepik_bg._aiohttp import _httpx_error_for
from freepik_bg.testing import Emulator, Fault

from .conftest import HTTP_BACKENDS, KEY, assert_outputs_valid

pytestmark = pytest.mark.anyio

SAMPLE = "ball-small.png"


@HTTP_BACKENDS
@pytest.mark.parametrize("after_processing", [False, True])
async def test_a_reset_post_may_have_been_billed(http_backend: str, after_processing: bool) -> None:
    async with Emulator(api_key=KEY, fast=True) as emu:
        emu.inject("post", Fault.reset(after_processing=after_processing))
        async with freepik_bg.AsyncClient(
            KEY, base_url=emu.base_url, max_retries=0, http_backend=http_backend
        ) as client:
            with pytest.raises(freepik_bg.APIConnectionError) as caught:
                await client.remove_background(emu.image_url(SAMPLE))
    # The request went out: the service may have processed (and billed) it.
    assert caught.value.maybe_processed is True
    assert KEY not in str(caught.value)


@HTTP_BACKENDS
async def test_a_refused_connection_was_not_sent(http_backend: str) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with freepik_bg.AsyncClient(
        KEY, base_url=f"http://127.0.0.1:{port}", max_retries=2, http_backend=http_backend
    ) as client:
        with pytest.raises(freepik_bg.APIConnectionError) as caught:
            await client.remove_background("https://img.example/a.jpg")
    assert caught.value.maybe_processed is False
    assert caught.value.attempts == 3  # safe to retry: nothing was sent


def test_aiohttp_errors_map_to_what_they_mean_for_billing() -> None:
    import aiohttp

    key = aiohttp.client_reqrep.ConnectionKey(
        "h", 1, False, True, None, None, None
    )  # what aiohttp's connector errors carry
    cases: list[tuple[BaseException, type[httpx.TransportError]]] = [
        (aiohttp.ClientConnectorError(key, OSError(111, "refused")), httpx.ConnectError),
        (aiohttp.ConnectionTimeoutError(), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError(), httpx.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError("cut short"), httpx.RemoteProtocolError),
        (aiohttp.ClientOSError(104, "reset"), httpx.ReadError),
    ]
    for error, expected in cases:
        assert _httpx_error_for(error) is expected, error
    assert _httpx_error_for(ValueError("not aiohttp's")) is None


@HTTP_BACKENDS
async def test_cancelling_a_batch_mid_download_leaves_no_file(
    tmp_path: Path, http_backend: str
) -> None:
    out = tmp_path / "out"
    async with Emulator(api_key=KEY, fast=True) as emu:
        emu.inject("download", *[Fault.stall(30)] * 4)
        urls = [emu.image_url(SAMPLE) + f"?c={i}" for i in range(4)]
        async with freepik_bg.AsyncClient(
            KEY, base_url=emu.base_url, http_backend=http_backend
        ) as client:
            with anyio.move_on_after(1.0) as scope:
                await client.run_batch(urls, out, concurrency=4, rate=None, drain_timeout=0.2)
            # The pool survives a cancellation: the next call works.
            cutout = await client.remove_background(emu.image_url(SAMPLE))
        assert cutout.high_resolution.startswith(emu.base_url)
    assert scope.cancelled_caught
    if out.exists():
        assert assert_outputs_valid(out) == []  # nothing, not even a temp file


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_aiohttp_under_trio_is_a_clear_error() -> None:
    async with freepik_bg.AsyncClient(
        KEY, base_url="http://127.0.0.1:9", http_backend="aiohttp", max_retries=3
    ) as client:
        with pytest.raises(freepik_bg.ConfigurationError, match=r"asyncio only.*'httpx'"):
            await client.remove_background("https://img.example/a.jpg")


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_aiohttp_under_trio_stops_a_batch_at_once() -> None:
    # Each item failed on its own, paced by the rate limit: a million-line list crawled
    # through a million identical failures.
    listing = [f"https://img.example/{i}.jpg" for i in range(200)]
    async with freepik_bg.AsyncClient(
        KEY, base_url="http://127.0.0.1:9", http_backend="aiohttp"
    ) as client:
        report = await client.run_batch(listing, freepik_bg.MemorySink(), concurrency=4)
    assert report.stop_reason is not None
    assert "asyncio only" in report.stop_reason
    kinds = [type(item.error).__name__ for item in report.failed]
    assert kinds.count("ConfigurationError") <= 4  # the items in flight; the rest not sent
    assert kinds.count("SkippedError") == len(listing) - kinds.count("ConfigurationError")


def test_aiohttp_without_the_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_import = builtins.__import__

    def no_aiohttp(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith(("httpx_aiohttp", "aiohttp")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_aiohttp)
    with pytest.raises(freepik_bg.ConfigurationError, match=r"pip install 'freepik-bg\[aiohttp\]'"):
        freepik_bg.AsyncClient(KEY, http_backend="aiohttp")


def test_an_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="http_backend must be one of httpx, aiohttp"):
        freepik_bg.AsyncClient(KEY, http_backend="requests")  # type: ignore[arg-type]


def test_the_cli_runs_on_aiohttp_when_asked(tmp_path: Path) -> None:
    from freepik_bg import output_name
    from tests.test_startup import imports_of

    with Emulator(api_key=KEY, fast=True) as emu:
        urls = [emu.image_url(SAMPLE) + f"?cli={i}" for i in range(3)]
        (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
        args = ["remove", "urls.txt", "-o", "out", "--base-url", emu.base_url, "--quiet"]
        loaded = imports_of([*args, "--http-backend", "aiohttp"], tmp_path, cwd=tmp_path)
        assert emu.stats.count("post", 200) == 3
    assert "httpx_aiohttp" in loaded
    for url in urls:
        assert (tmp_path / "out" / output_name(url)).read_bytes().startswith(b"\x89PNG")


@HTTP_BACKENDS
async def test_no_cookie_is_kept_or_sent_on(http_backend: str) -> None:
    """A result host that sets a cookie never sees it again, nor does the API.

    Named ``localhost`` (still 127.0.0.1): cookie jars drop cookies of bare IPs.
    """
    from ..conftest import PNG
    from ._servers import OriginServer

    with OriginServer(PNG, set_cookie="tracker=abc; Path=/") as origin:
        link = f"http://localhost:{origin.port}/r/high.png"
        cutout = freepik_bg.Cutout(
            original=link, high_resolution=link, preview=link, url=link, image_url=link
        )
        async with freepik_bg.AsyncClient(
            KEY, base_url=f"http://localhost:{origin.port}", http_backend=http_backend
        ) as client:
            for _ in range(3):
                assert await client.download(cutout) == PNG
            with pytest.raises(freepik_bg.APIStatusError):  # the API's origin: a 404 here
                await client.remove_background("https://img.example/a.jpg")
        seen = origin.requests
    assert [r.method for r in seen] == ["GET", "GET", "GET", "POST"]
    assert all("cookie" not in r.headers for r in seen), seen


class _GarbageServer:
    """Reads a request, then answers with a status line no HTTP client can parse."""

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        from anyio.abc import SocketAttribute

        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        async with listener:
            task_status.started(int(listener.extra(SocketAttribute.local_port)))
            await listener.serve(self._handle)

    async def _handle(self, stream: Any) -> None:
        async with stream:
            try:
                await stream.receive()
                await stream.send(b"HTTP/1.1 abc GARBAGE\r\n\r\n")
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        pending += [current.__cause__, current.__context__]
    return seen


@HTTP_BACKENDS
async def test_no_exception_in_the_chain_holds_the_key(http_backend: str) -> None:
    """aiohttp's errors for a malformed answer carry the request's headers (the key among
    them) in ``request_info``: none of the chain may hold it, in its repr or pickled, as
    error reporters and Dask (tblib) send causes along."""
    import pickle

    server = _GarbageServer()
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve)
        async with freepik_bg.AsyncClient(
            KEY, base_url=f"http://127.0.0.1:{port}", max_retries=0, http_backend=http_backend
        ) as client:
            with pytest.raises(freepik_bg.APIConnectionError) as caught:
                await client.remove_background("https://img.example/a.jpg")
        tg.cancel_scope.cancel()
    assert caught.value.maybe_processed is True  # the request went out
    chain = _chain(caught.value)
    assert len(chain) >= 2
    pickled: list[str] = []
    for error in chain:
        texts = [repr(error), str(error), repr(vars(error)) if hasattr(error, "__dict__") else ""]
        assert not [t for t in texts if KEY in t], (type(error), texts)
        try:
            dumped = pickle.dumps(error)
        except Exception:  # an error that cannot be pickled carries nothing further
            continue
        pickled.append(type(error).__name__)
        assert KEY.encode() not in dumped, type(error)
    assert pickled  # the check above ran on some
    if http_backend == "aiohttp":  # the one that held the headers was checked
        assert "ClientResponseError" in [type(error).__name__ for error in chain]


@HTTP_BACKENDS
async def test_error_answers_read_the_same_on(http_backend: str) -> None:
    """Status, message, body, lower-cased headers and Retry-After, whatever carried them."""
    async with Emulator(api_key=KEY, fast=True) as emu:
        emu.inject("post", Fault.http_error(429, retry_after=7))
        emu.inject("post", Fault.http_error(502, message="upstream fell over"))
        async with freepik_bg.AsyncClient(
            KEY, base_url=emu.base_url, max_retries=0, http_backend=http_backend
        ) as client:
            with pytest.raises(freepik_bg.RateLimitError) as throttled:
                await client.remove_background(emu.image_url(SAMPLE))
            with pytest.raises(freepik_bg.InternalServerError) as failed:
                await client.remove_background(emu.image_url(SAMPLE))
            with pytest.raises(freepik_bg.BadRequestError) as refused:
                await client.remove_background(emu.base_url + "/nowhere.png")
            cutout = await client.remove_background(emu.image_url(SAMPLE))
            gone = attrs.evolve(cutout, high_resolution=emu.base_url + "/no/such/link.png")
            with pytest.raises(freepik_bg.LinkExpiredError) as expired:
                await client.download(gone)
    assert throttled.value.retry_after == 7
    assert throttled.value.headers["retry-after"] == "7"
    assert failed.value.status_code == 502
    assert failed.value.message == "upstream fell over"
    assert "content-type" in failed.value.headers
    assert isinstance(refused.value.body, dict)
    assert refused.value.status_code == 400
    assert expired.value.status_code == 404


ORIGINS = [
    "HTTP://API.Example.com/x",
    "https://api.example.com:443/",
    "http://127.0.0.1:8080/a",
    "http://[::1]:9/x",
    "https://bücher.example/",
    "https://xn--bcher-kva.example/",
    "http://user:pw@host.example/",
    "http://h.example:80/",
]
LOCATIONS = ["d.png", "/root.png", "//other.example/x.png", "../up.png", "https://x:8443/y", "?q=2"]


def test_the_aiohttp_pool_places_and_joins_urls_as_httpx_does() -> None:
    """The key goes where the origin is the API's: both pools must agree on origins."""
    from freepik_bg._aiohttp import _YarlUrls
    from freepik_bg._transport import HTTPX_URLS

    ours = _YarlUrls()
    for url in ORIGINS:
        assert ours.origin(ours.parse(url)) == HTTPX_URLS.origin(HTTPX_URLS.parse(url)), url
    base = "https://cdn.example/a/b/c.png?x=1"
    for location in LOCATIONS:
        joined = ours.join(ours.parse(base), location)
        assert str(joined) == str(HTTPX_URLS.join(HTTPX_URLS.parse(base), location)), location
    for bad, why in (("/relative/only.png", "absolute"), ("http://[::1/x", "IPv6")):
        with pytest.raises(ValueError, match=why):
            ours.parse(bad)


@HTTP_BACKENDS
async def test_a_result_link_that_is_no_url_is_a_typed_error(http_backend: str) -> None:
    link = "http://[::1/broken.png"
    cutout = freepik_bg.Cutout(
        original=link, high_resolution=link, preview=link, url=link, image_url=link
    )
    async with freepik_bg.AsyncClient(KEY, http_backend=http_backend) as client:
        with pytest.raises(freepik_bg.APIResponseValidationError, match="not a valid URL"):
            await client.download(cutout)
