"""The one test vocabulary: the key, backends, the mocked service, the emulator, the CLI."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import httpx
import pytest
import respx

import freepik_bg

if TYPE_CHECKING:
    from freepik_bg.testing import Emulator

API = "https://api.test"
ENDPOINT = f"{API}/v1/ai/beta/remove-background"
#: The one test key: distinctive, so any leak is found by a plain substring search.
KEY = "sk-test-7f3a9c1e-SECRET-do-not-leak"


def make_png(width: int = 2, height: int = 2) -> bytes:
    """A valid RGBA PNG, built by hand so unit tests need no Pillow."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = b"".join(b"\x00" + b"\x00\x00\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


PNG = make_png()


def links(base: str = API) -> dict[str, str]:
    return {
        "original": f"{base}/v1/ai/beta/images/original/abc/thumbnail.jpg",
        "high_resolution": f"{base}/v1/ai/beta/images/download/abc/high.png",
        "preview": f"{base}/v1/ai/beta/images/download/abc/preview.png",
        "url": f"{base}/v1/ai/beta/images/download/abc/high.png",
    }


# The emulator's own tests and the reliability suite drive servers, sockets and
# processes, where the backend matters less than the time: they run on asyncio,
# and a test there that is about the backend parametrizes trio itself.
_ASYNCIO_ONLY_DIRS = ("reliability", "testing")


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run async tests on asyncio and trio; ``virtual_clock`` ones on trio's MockClock.

    A virtual clock makes pacing tests exact and instant: time only moves when
    every task sleeps, and it jumps straight to the next deadline.
    """
    if "anyio_backend" not in metafunc.fixturenames:
        return
    for marker in metafunc.definition.iter_markers("parametrize"):
        if "anyio_backend" in str(marker.args[0]):
            return  # the test chose its backends itself
    if metafunc.definition.get_closest_marker("virtual_clock"):
        from trio.testing import MockClock

        clock = {"clock": MockClock(autojump_threshold=0)}
        backends = [pytest.param(("trio", clock), id="trio-virtual-clock")]
    elif any(part in _ASYNCIO_ONLY_DIRS for part in metafunc.definition.path.parts):
        backends = ["asyncio"]
    else:
        backends = ["asyncio", "trio"]
    # As a marker, so that it overrides the anyio plugin's parametrized fixture
    # exactly as a test's own @pytest.mark.parametrize would.
    metafunc.definition.add_marker(pytest.mark.parametrize("anyio_backend", backends))


@pytest.fixture(autouse=True)
def _no_backoff(request: pytest.FixtureRequest) -> Iterator[None]:
    """Retries happen at once unless a test asks for real waits."""
    real = request.node.get_closest_marker("real_backoff") is not None
    freepik_bg.set_testing(not real)
    yield
    freepik_bg.set_testing(False)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own key or base URL must never leak into a test."""
    monkeypatch.delenv("FREEPIK_API_KEY", raising=False)
    monkeypatch.delenv("FREEPIK_BASE_URL", raising=False)


def urls(n: int) -> list[str]:
    """``n`` distinct image URLs on a host the mocked service fetches nothing from."""
    return [f"https://img.test/photo-{i}.jpg" for i in range(n)]


class FakeService:
    """Answers POSTs with per-URL links and serves PNGs, counting what it sees."""

    def __init__(self, router: respx.MockRouter) -> None:
        self.posts: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.post_times: list[float] = []
        self.fail: dict[str, httpx.Response] = {}
        # Hold POSTs until this many are in flight at once, to prove overlap.
        self.hold_until = 0
        self.released: anyio.Event | None = None
        self.post_route = router.post(ENDPOINT).mock(side_effect=self.on_post)
        self.get_route = router.get(url__startswith=f"{API}/files/").mock(
            side_effect=lambda request: httpx.Response(200, content=PNG)
        )

    async def on_post(self, request: httpx.Request) -> httpx.Response:
        image_url = dict(httpx.QueryParams(request.content.decode()))["image_url"]
        self.posts.append(image_url)
        self.post_times.append(anyio.current_time())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.hold_until:
                if self.released is None:
                    self.released = anyio.Event()
                if self.in_flight >= self.hold_until:
                    self.released.set()
                with anyio.fail_after(5):
                    await self.released.wait()
            await anyio.lowlevel.checkpoint()
        finally:
            self.in_flight -= 1
        if image_url in self.fail:
            return self.fail[image_url]
        token = image_url.rsplit("/", 1)[-1]
        return httpx.Response(
            200, json={name: f"{API}/files/{token}/{name}.png" for name in links()}
        )


@pytest.fixture
def service() -> Iterator[FakeService]:
    with respx.mock(assert_all_called=False) as router:
        yield FakeService(router)


@pytest.fixture
async def client() -> AsyncIterator[freepik_bg.AsyncClient]:
    """A client of the mocked API at ``API``."""
    async with freepik_bg.AsyncClient(KEY, base_url=API) as c:
        yield c


# -- the emulator and the CLI ----------------------------------------------------


@pytest.fixture(scope="session")
def shared_emulator() -> Iterator[Emulator]:
    """One fast emulator for the session (see `emu`)."""
    from freepik_bg.testing import Emulator

    with Emulator(fast=True, api_key=KEY) as emulator:
        yield emulator


@pytest.fixture
def emu(shared_emulator: Emulator) -> Iterator[Emulator]:
    """The session's emulator, with faults, knobs and counters reset after each test."""
    yield shared_emulator
    shared_emulator.clear_faults()
    shared_emulator.configure(link_ttl=300.0, rate=None, latency=0.0, download_latency=0.0)
    shared_emulator.reset_stats()


#: (anyio backend, http backend) pairs for the tests of guarantees that every transport
#: must keep: httpx's own on asyncio and trio, aiohttp's on asyncio (it has no trio).
TRANSPORTS = pytest.mark.parametrize(
    ("anyio_backend", "http_backend"),
    [("asyncio", "httpx"), ("trio", "httpx"), ("asyncio", "aiohttp")],
)
#: The http backends, for tests that run on asyncio only.
HTTP_BACKENDS = pytest.mark.parametrize("http_backend", ["httpx", "aiohttp"])

CLI = (sys.executable, "-m", "freepik_bg")
"""The command line, run from this interpreter."""


def cli_env(key: str | None = KEY) -> dict[str, str]:
    """The environment for a CLI run: no developer FREEPIK_* settings, ``key`` if given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FREEPIK_")}
    if key is not None:
        env["FREEPIK_API_KEY"] = key
    return env


def run_cli(
    args: Sequence[str],
    *,
    key: str | None = KEY,
    stdin: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``freepik-bg ARGS`` to completion and capture its output."""
    return subprocess.run(
        [*CLI, *args],
        input=stdin,
        env=cli_env(key),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
