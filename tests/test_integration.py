"""AsyncClient and the batch runner against the emulator, over real loopback sockets."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

import freepik_bg
from freepik_bg import AsyncClient, MemorySink
from freepik_bg.testing import Emulator, Fault

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(emu.api_key, base_url=emu.base_url, timeout=5) as c:
        yield c


def sample(emu: Emulator, i: int = 0, name: str = "ball-small.png") -> str:
    return f"{emu.image_url(name)}?i={i}"


async def test_real_cutout_end_to_end(tmp_path: Path) -> None:
    from PIL import Image

    async with (
        Emulator() as real,
        AsyncClient(real.api_key, base_url=real.base_url) as client,
    ):
        cutout = await client.remove_background(real.image_url("mug-plain.jpg"))
        path = await client.download_to(cutout, tmp_path / "mug.png")
        preview = await client.download(cutout, size="preview")
        original = await client.download(cutout, size="original")
        assert original == real.sample_bytes("mug-plain.jpg")
    with Image.open(path) as image:
        assert image.mode == "RGBA"
        assert image.size == (800, 600)
        assert image.getpixel((2, 2))[3] == 0  # type: ignore[index]
        assert image.getpixel((364, 300))[3] == 255  # type: ignore[index]
    with Image.open(io.BytesIO(preview)) as small:
        assert small.width * small.height <= 250_000


async def test_happy_path_and_key_only_to_api_origin(
    emu: Emulator, client: AsyncClient, tmp_path: Path
) -> None:
    cutout = await client.remove_background(sample(emu))
    assert cutout.expires_at > cutout.received_at
    data = await client.download(cutout)
    assert data.startswith(b"\x89PNG")
    posts = [r for r in emu.stats.log if r.endpoint == "post"]
    assert all(r.sent_key(emu.api_key) for r in posts)


@pytest.mark.parametrize(
    ("fault", "ambiguous", "charged"),
    [
        (Fault.http_error(500), 1, 2),
        (Fault.http_error(502), 1, 2),
        (Fault.http_error(503), 0, 1),
        (Fault.http_error(504), 1, 2),
        (Fault.http_error(429), 0, 1),
        # A reset looks the same to the client whether or not the server had
        # processed the request, so both count as ambiguous.
        (Fault.reset(), 1, 1),
        (Fault.reset(after_processing=True), 1, 2),
    ],
)
async def test_post_faults_are_retried_and_billing_counted(
    emu: Emulator, client: AsyncClient, fault: Fault, ambiguous: int, charged: int
) -> None:
    emu.inject("post", fault)
    cutout = await client.remove_background(sample(emu))
    assert cutout.attempts == 2
    assert cutout.ambiguous_retries == ambiguous
    # Every credit the service may have taken is flagged as ambiguous.
    assert emu.stats.credits_charged <= 1 + cutout.ambiguous_retries
    assert emu.stats.credits_charged == charged


@pytest.mark.parametrize("fault", [Fault.malformed_json(), Fault.missing_fields()])
async def test_bad_200_bodies_are_typed(emu: Emulator, client: AsyncClient, fault: Fault) -> None:
    emu.inject("post", fault)
    with pytest.raises(freepik_bg.APIResponseValidationError):
        await client.remove_background(sample(emu))


@pytest.mark.parametrize(
    "fault",
    [Fault.truncate(), Fault.not_png(), Fault.reset(), Fault.http_error(503), Fault.redirect()],
)
async def test_transient_download_faults_are_retried(
    emu: Emulator, client: AsyncClient, tmp_path: Path, fault: Fault
) -> None:
    cutout = await client.remove_background(sample(emu))
    emu.inject("download", fault)
    path = await client.download_to(cutout, tmp_path / "a.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


async def test_stalled_download_times_out_and_leaves_nothing(emu: Emulator, tmp_path: Path) -> None:
    async with AsyncClient(emu.api_key, base_url=emu.base_url, timeout=0.3, max_retries=1) as c:
        cutout = await c.remove_background(sample(emu))
        emu.inject("download", Fault.stall(3), Fault.stall(3))
        with anyio.fail_after(5), pytest.raises(freepik_bg.APITimeoutError) as info:
            await c.download_to(cutout, tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []
    # In words, with its limit: it read "Cancelled via cancel scope 7f99...; reason: ...".
    assert "timed out (ReadTimeout): no data received for 0.3 s" in str(info.value)
    assert "cancel scope" not in str(info.value)


async def test_huge_content_length_aborts(emu: Emulator, client: AsyncClient) -> None:
    cutout = await client.remove_background(sample(emu))
    emu.inject("download", Fault.huge_content_length())
    with pytest.raises(freepik_bg.InvalidImageError, match="cap"):
        await client.download(cutout)


async def test_expired_link(emu: Emulator, client: AsyncClient) -> None:
    cutout = await client.remove_background(sample(emu))
    emu.advance_time(301)
    with pytest.raises(freepik_bg.LinkExpiredError) as info:
        await client.download(cutout)
    assert info.value.status_code == 404
    assert emu.stats.links_expired == 1


async def test_server_errors_map_to_typed_errors(emu: Emulator, client: AsyncClient) -> None:
    with pytest.raises(freepik_bg.BadRequestError, match="Failed to download the image"):
        await client.remove_background("http://127.0.0.1:1/missing.jpg")
    with pytest.raises(freepik_bg.BadRequestError, match=r"GIF|JPEG|PNG|format"):
        await client.remove_background(emu.image_url("animated.gif"))
    async with AsyncClient("wrong", base_url=emu.base_url) as bad:
        with pytest.raises(freepik_bg.AuthenticationError, match="Invalid API key"):
            await bad.remove_background(sample(emu))


@pytest.mark.real_backoff
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_rate_limited_server_with_retry_after(emu: Emulator, client: AsyncClient) -> None:
    emu.configure(rate=20, burst=3)
    report = await client.run_batch(
        [sample(emu, i) for i in range(8)], MemorySink(), concurrency=8, rate=None
    )
    assert len(report.stored) == 8
    assert emu.stats.count("post", 429) >= 1
    assert emu.stats.credits_charged == 8


async def test_batch_concurrency_bound_as_server_sees_it(
    emu: Emulator, client: AsyncClient
) -> None:
    emu.configure(latency=0.2)
    report = await client.run_batch(
        [sample(emu, i) for i in range(24)], MemorySink(), concurrency=8, rate=None
    )
    assert len(report.stored) == 24
    assert emu.stats.max_posts_in_flight == 8


async def test_no_link_expires_under_load(emu: Emulator, client: AsyncClient) -> None:
    # Short links, but not so short that a loaded CI machine misses them by scheduling alone.
    emu.configure(link_ttl=10.0, latency=(0.0, 0.02), download_latency=(0.0, 0.02))
    report = await client.run_batch(
        [sample(emu, i) for i in range(300)], MemorySink(), concurrency=32, rate=None
    )
    assert len(report.stored) == 300
    assert sum(item.resubmits for item in report.stored) == 0
    assert emu.stats.links_expired == 0
    assert emu.stats.credits_charged == 300


async def test_batch_stops_on_401_without_more_requests(emu: Emulator) -> None:
    async with AsyncClient("revoked", base_url=emu.base_url) as client:
        report = await client.run_batch(
            [sample(emu, i) for i in range(100)], MemorySink(), concurrency=4, rate=None
        )
    assert len(report.failed) == 100
    refused = [r for r in report.failed if isinstance(r.error, freepik_bg.AuthenticationError)]
    assert 1 <= len(refused) == emu.stats.posts <= 4
    others = [r for r in report.failed if r not in refused]
    assert all(isinstance(r.error, freepik_bg.SkippedError) for r in others)
    assert "check $FREEPIK_API_KEY" in str(report.stop_reason)
