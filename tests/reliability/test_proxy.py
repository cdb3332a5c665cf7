"""A real HTTP proxy on loopback (proxy.py, in a child process) carries the traffic."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import attrs
import pytest

import freepik_bg
from freepik_bg.testing import Emulator

from .conftest import HTTP_BACKENDS, KEY, assert_outputs_valid

pytestmark = pytest.mark.anyio

SAMPLE = "ball-small.png"


@attrs.define
class RunningProxy:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def wait_for(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        tick.wait(0.02)


@pytest.fixture
def http_proxy(tmp_path: Path) -> Iterator[RunningProxy]:
    port_file, log = tmp_path / "proxy.port", tmp_path / "proxy.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "proxy",
            "--hostname",
            "127.0.0.1",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--num-acceptors",
            "1",
            "--num-workers",
            "1",
            "--log-level",
            "INFO",
            "--log-file",
            str(log),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proxy = RunningProxy(process, 0, log)
    try:
        wait_for(lambda: port_file.exists() and port_file.read_text().strip(), timeout=20)
        proxy.port = int(port_file.read_text().strip())
        yield proxy
    finally:
        proxy.stop()


@HTTP_BACKENDS
async def test_batch_through_a_real_http_proxy(
    tmp_path: Path, http_proxy: RunningProxy, http_backend: str
) -> None:
    async with Emulator(api_key=KEY, fast=True) as emu:
        urls = [emu.image_url(SAMPLE) + f"?p={i}" for i in range(8)]
        async with freepik_bg.AsyncClient(
            KEY,
            base_url=emu.base_url,
            proxy=http_proxy.url,
            max_retries=1,
            http_backend=http_backend,
        ) as client:
            with anyio.fail_after(30):
                report = await client.run_batch(urls, tmp_path / "out", concurrency=4, rate=None)
        assert len(report.stored) == 8, [r.error for r in report.failed]
        assert emu.stats.count("post", 200) == 8  # the emulator saw them...

        # ...and they came through the proxy, which logged each connection it carried.
        access = re.compile(rf"POST 127\.0\.0\.1:{emu.port}/v1/ai/beta/remove-background - 200")
        wait_for(lambda: access.search(http_proxy.log.read_text()), timeout=20)

        # With the proxy gone the client fails, though the emulator is still up:
        # nothing bypasses the proxy.
        http_proxy.stop()
        posts_before = emu.stats.posts
        async with freepik_bg.AsyncClient(
            KEY,
            base_url=emu.base_url,
            proxy=http_proxy.url,
            max_retries=0,
            http_backend=http_backend,
        ) as client:
            with pytest.raises(freepik_bg.APIConnectionError) as caught:
                await client.remove_background(urls[0])
        assert caught.value.maybe_processed is False
        assert emu.stats.posts == posts_before
    assert len(assert_outputs_valid(tmp_path / "out")) == 8
    assert KEY not in http_proxy.log.read_text()


@HTTP_BACKENDS
async def test_the_proxy_from_the_environment_and_no_proxy(
    tmp_path: Path,
    http_proxy: RunningProxy,
    http_backend: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``HTTP(S)_PROXY`` carries the traffic; ``NO_PROXY`` hosts go direct; nothing else does."""
    import socket

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    with socket.socket() as sock:  # a port nobody listens on: a dead proxy
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def one(url: str) -> bytes:
        async with freepik_bg.AsyncClient(
            KEY, base_url=emu.base_url, max_retries=0, http_backend=http_backend
        ) as client:
            return await client.download(await client.remove_background(url))

    async with Emulator(api_key=KEY, fast=True) as emu:
        url = emu.image_url(SAMPLE)
        monkeypatch.setenv("HTTP_PROXY", http_proxy.url)
        assert (await one(url + "?via=proxy")).startswith(b"\x89PNG")
        access = re.compile(rf"POST 127\.0\.0\.1:{emu.port}/v1/ai/beta/remove-background - 200")
        wait_for(lambda: access.search(http_proxy.log.read_text()), timeout=20)

        monkeypatch.setenv("HTTP_PROXY", dead)
        posts = emu.stats.posts
        with pytest.raises(freepik_bg.APIConnectionError) as caught:
            await one(url + "?via=dead")
        assert caught.value.maybe_processed is False
        assert emu.stats.posts == posts  # nothing went around the proxy

        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert (await one(url + "?via=none")).startswith(b"\x89PNG")
    assert KEY not in http_proxy.log.read_text()
