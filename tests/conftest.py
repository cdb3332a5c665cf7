"""Shared fixtures: backends, no-backoff retries, and tiny valid images."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

import pytest

import freepik_bg

API = "https://api.test"
ENDPOINT = f"{API}/v1/ai/beta/remove-background"
KEY = "sk-test-SECRET-KEY-123"


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


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Core behaviours run on both asyncio and trio."""
    return str(request.param)


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
