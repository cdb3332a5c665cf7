"""Transforms in batches and on the command line, with real cutouts from the emulator."""

from __future__ import annotations

import io
import re
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from PIL import Image

import freepik_bg
from freepik_bg import AsyncClient, ConfigurationError, MemorySink, TransformError
from freepik_bg._cli import main
from freepik_bg._output_stage import TRANSFORM_WORKERS
from freepik_bg.testing import Emulator

from .conftest import FakeService, run_cli, urls
from .images import cutout, opened

pytestmark = pytest.mark.anyio

BALL = "ball-radial.png"  # a red ball in the middle of a 640x640 vignette


@pytest.fixture
async def real(emu: Emulator) -> AsyncIterator[AsyncClient]:
    """A client of the emulator (``client`` is the mocked service's)."""
    async with AsyncClient(emu.api_key, base_url=emu.base_url, timeout=10) as c:
        yield c


def close(a: tuple[int, ...], b: tuple[int, ...], tolerance: int) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


async def test_jpeg_on_white_trimmed_from_a_real_cutout(
    emu: Emulator, real: AsyncClient, tmp_path: Path
) -> None:
    url = emu.image_url(BALL)
    untouched = await real.download(await real.remove_background(url))
    with Image.open(io.BytesIO(untouched)) as cut:
        subject_box = cut.getchannel("A").getbbox()
        centre = cut.convert("RGB").getpixel((320, 320))
    assert subject_box is not None
    report = await real.run_batch(
        [url], tmp_path, output_format="jpeg", trim=True, margin=16, keep_png=True
    )
    assert report.ok
    location = Path(report.stored[0].location or "")
    assert location.suffix == ".jpg"
    image = opened(location.read_bytes())
    assert image.format == "JPEG"
    width, height = subject_box[2] - subject_box[0], subject_box[3] - subject_box[1]
    assert image.size == (width + 32, height + 32)
    for corner in ((0, 0), (image.width - 1, 0), (0, image.height - 1)):
        assert close(image.getpixel(corner), (255, 255, 255), 6), corner  # type: ignore[arg-type]
    middle = image.getpixel((image.width // 2, image.height // 2))
    assert close(middle, centre, 12)  # type: ignore[arg-type]
    assert middle[0] > 2 * middle[2]  # type: ignore[index]  # red, the subject's colour
    # --keep-png: the service's bytes, untouched, beside it.
    assert location.with_suffix(".png").read_bytes() == untouched


async def test_trimmed_png_alpha_box_touches_the_margin(emu: Emulator, real: AsyncClient) -> None:
    sink = MemorySink()
    report = await real.run_batch([emu.image_url(BALL)], sink, trim=True, margin="5%")
    assert report.ok
    (name, data), *_ = sink.data.items()
    assert name.endswith(".png")
    image = opened(data)
    box = image.getchannel("A").getbbox()
    assert box is not None
    pads = (box[0], box[1], image.width - box[2], image.height - box[3])
    assert len(set(pads)) == 1
    assert pads[0] == round(0.05 * max(box[2] - box[0], box[3] - box[1]))


async def test_webp_keeps_alpha_and_max_side_caps_the_size(
    emu: Emulator, real: AsyncClient
) -> None:
    sink = MemorySink()
    url = emu.image_url("mug-plain.jpg")  # 800x600
    report = await real.run_batch([url], sink, output_format="webp", max_side=200)
    assert report.ok
    (name, data), *_ = sink.data.items()
    assert name.endswith(".webp")
    image = opened(data)
    assert (image.format, image.mode, image.size) == ("WEBP", "RGBA", (200, 150))
    assert image.getpixel((1, 1))[3] == 0  # type: ignore[index]
    assert image.getpixel((91, 75))[3] == 255  # type: ignore[index]  # the mug's body


async def test_default_png_is_the_service_bytes_untouched(emu: Emulator, real: AsyncClient) -> None:
    url = emu.image_url(BALL)
    untouched = await real.download(await real.remove_background(url))
    sink = MemorySink()
    assert (await real.run_batch([url], sink, quality=10)).ok
    assert list(sink.data.values()) == [untouched]


def _service_images(service: FakeService, empty: set[str]) -> list[str]:
    """Serve an empty cutout for URLs in ``empty``, a red subject otherwise; log the GETs."""
    gets: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        token = request.url.path.split("/")[2]
        gets.append(token)
        body = cutout(box=(0, 0, 0, 0)) if token in empty else cutout()
        return httpx.Response(200, content=body)

    service.get_route.side_effect = answer
    return gets


async def test_a_transform_error_fails_its_item_alone_and_is_not_retried(
    service: FakeService, client: AsyncClient
) -> None:
    batch = urls(6)
    empty = {batch[1].rsplit("/", 1)[-1], batch[4].rsplit("/", 1)[-1]}
    gets = _service_images(service, empty)
    sink = MemorySink()
    async with client.batch(batch, sink, output_format="jpeg", trim=True, concurrency=2) as results:
        items = [item async for item in results]
        assert results.stopped_by is None
    failed = sorted(item.index for item in items if not item.ok)
    assert failed == [1, 4]
    for item in items:
        if not item.ok:
            assert isinstance(item.error, TransformError)
            assert "fully transparent" in str(item.error)
    assert len(sink.data) == 4
    assert all(name.endswith(".jpg") for name in sink.data)
    assert sorted(gets) == sorted(u.rsplit("/", 1)[-1] for u in batch)  # one GET each


async def test_without_pillow_a_batch_fails_before_any_post(
    service: FakeService, client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)
    batch = client.batch(urls(3), MemorySink(), output_format="jpeg")
    with pytest.raises(ConfigurationError, match=r"freepik-bg\[image\]"):
        await batch.__aenter__()
    assert service.posts == []


async def test_a_rerun_after_a_transform_error_downloads_again_without_a_post(
    emu: Emulator, real: AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from freepik_bg import _output_stage

    original = _output_stage.apply
    calls: list[int] = []

    def fails_once(source: Any, options: Any) -> bytes:
        calls.append(1)
        if len(calls) == 1:
            raise TransformError("simulated: this transform failed")
        return original(source, options)

    monkeypatch.setattr(_output_stage, "apply", fails_once)
    url, journal = emu.image_url(BALL), tmp_path / "journal.jsonl"
    first = await real.run_batch([url], tmp_path / "out", journal=journal, output_format="jpeg")
    assert isinstance(first.failed[0].error, TransformError)
    assert emu.stats.posts == 1
    second = await real.run_batch([url], tmp_path / "out", journal=journal, output_format="jpeg")
    assert second.ok
    assert emu.stats.posts == 1  # the paid links were downloaded again
    assert Path(second.stored[0].location or "").suffix == ".jpg"


async def test_many_transforms_at_once_all_finish(emu: Emulator, real: AsyncClient) -> None:
    sink = MemorySink()
    batch = [f"{emu.image_url('ball-small.png')}?i={i}" for i in range(3 * TRANSFORM_WORKERS)]
    report = await real.run_batch(batch, sink, output_format="jpeg", background="black")
    assert report.ok
    assert len(sink.data) == len(batch)
    for data in sink.data.values():
        image = opened(data)
        assert close(image.getpixel((0, 0)), (0, 0, 0), 6)  # type: ignore[arg-type]


# -- the command line ----------------------------------------------------------------


BAD_VALUES = [
    (["--format", "gif"], "argument --format: expected png, webp or jpeg, got 'gif'"),
    (["--background", "notacolor"], "argument --background: not a colour: 'notacolor'"),
    (["--trim", "--margin", "-5"], "argument --margin: margin must be 0 or more"),
    (["--max-side", "0"], "argument --max-side: max_side (pixels) must be a whole number"),
    (["--quality", "0"], "argument --quality: quality must be a whole number from 1 to 100"),
    (["--margin", "5"], "add trim (--trim)"),
    (["--keep-png"], "--keep-png"),
    (["--trim", "--margin", "30", "--max-side", "60"], "leaves no room for the subject"),
]


def _remove_args(emu: Emulator, tmp_path: Path) -> list[str]:
    listing = tmp_path / "urls.txt"
    listing.write_text(emu.image_url(BALL) + "\n")
    return ["remove", str(listing), "-o", str(tmp_path / "out"), "--base-url", emu.base_url]


@pytest.mark.parametrize(("flags", "message"), [*BAD_VALUES[:4], BAD_VALUES[5]])
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_cli_bad_values_exit_2_before_any_post(
    emu: Emulator, tmp_path: Path, flags: list[str], message: str
) -> None:
    result = run_cli([*_remove_args(emu, tmp_path), *flags])
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert emu.stats.posts == 0


@pytest.mark.parametrize(("flags", "message"), BAD_VALUES)
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_every_bad_value_is_a_usage_error_in_process(
    emu: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
) -> None:
    # The same parser in this process (a subprocess each would cost seconds).
    try:
        code = main([*_remove_args(emu, tmp_path), *flags])
    except SystemExit as exit:
        code = exit.code  # type: ignore[assignment]
    assert code == 2
    assert message in capsys.readouterr().err
    assert emu.stats.posts == 0
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_cli_writes_jpeg_on_white_trimmed(emu: Emulator, tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text(emu.image_url("ball-small.png") + "\n")
    out = tmp_path / "out"
    args = ["remove", str(listing), "-o", str(out), "--base-url", emu.base_url, "-q"]
    result = run_cli([*args, "--format", "JPG", "--trim", "--margin", "10%", "--quality", "80"])
    assert result.returncode == 0, result.stderr
    (written,) = out.glob("*.jpg")
    image = opened(written.read_bytes())
    assert close(image.getpixel((0, 0)), (255, 255, 255), 6)  # type: ignore[arg-type]
    middle = image.getpixel((image.width // 2, image.height // 2))
    assert middle[0] > 2 * middle[2]  # type: ignore[index]
    assert not list(out.glob("*.png"))


def test_transform_is_public_with_its_error() -> None:
    assert freepik_bg.transform.__module__ == "freepik_bg"
    assert issubclass(freepik_bg.TransformError, freepik_bg.FreepikError)
    assert not issubclass(freepik_bg.TransformError, freepik_bg.SinkError)  # no breaker trip


async def test_the_batching_page_example_runs(
    emu: Emulator, real: AsyncClient, tmp_path: Path
) -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "batching.md").read_text()
    section = page.split("## Output formats and transforms", 1)[1]
    (source,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)[:1]
    body = "".join(f"    {line}\n" for line in source.splitlines())
    namespace: dict[str, Any] = {"freepik_bg": freepik_bg}
    exec(
        compile(
            f"async def example(client, urls, out, png):\n{body}    return report, jpeg\n",
            "docs/batching.md",
            "exec",
        ),
        namespace,
    )
    url = emu.image_url("mug-plain.jpg")
    png = await real.download(await real.remove_background(url))
    report, jpeg = await namespace["example"](real, [url], tmp_path, png)
    assert report.ok
    stored = opened(Path(report.stored[0].location).read_bytes())
    assert stored.format == "JPEG"
    assert jpeg.startswith(b"\xff\xd8\xff")
    assert opened(jpeg).size == stored.size  # the function and the batch agree


def _hold_transforms(
    service: FakeService, monkeypatch: pytest.MonkeyPatch
) -> tuple[threading.Event, threading.Event]:
    """Transforms wait in their worker thread until ``release``; ``started`` says one runs."""
    from freepik_bg import _output_stage

    _service_images(service, empty=set())
    original = _output_stage.apply
    started, release = threading.Event(), threading.Event()

    def held(source: Any, options: Any) -> bytes:
        started.set()
        release.wait(10)
        return original(source, options)

    monkeypatch.setattr(_output_stage, "apply", held)
    return started, release


async def test_stopping_mid_transform_still_stores_every_paid_item(
    service: FakeService, client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release = _hold_transforms(service, monkeypatch)
    sink = MemorySink()
    async with client.batch(
        urls(20), sink, output_format="jpeg", concurrency=2, rate=None
    ) as results:
        await anyio.to_thread.run_sync(started.wait, 10)
        results.stop()  # a transform is running: it must finish, and be stored
        release.set()
        items = [item async for item in results]
    paid = set(service.posts)
    assert 1 <= len(paid) < 20
    assert {item.image_url for item in items if item.ok} == paid
    assert len(sink.data) == len(paid)
    assert all(opened(data).format == "JPEG" for data in sink.data.values())


async def test_named_outputs_take_the_format_extension(emu: Emulator, real: AsyncClient) -> None:
    from freepik_bg._input import InputLine

    url = emu.image_url("ball-small.png")
    entries = [InputLine(2, url, "SKU 42.v2"), InputLine(3, url + "?b", "SKU-7")]
    sink = MemorySink()
    report = await real.run_batch(entries, sink, output_format="webp", keep_png=True, rate=None)
    assert report.ok
    # The name's own dot stays; the extension follows the format; the kept PNG sits beside.
    assert sorted(sink.data) == ["SKU 42.v2.png", "SKU 42.v2.webp", "SKU-7.png", "SKU-7.webp"]


async def test_large_downloads_wait_on_disk_and_transform_the_same(
    emu: Emulator, real: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from freepik_bg import _output_stage

    url = emu.image_url(BALL)
    in_memory = MemorySink()
    assert (await real.run_batch([url], in_memory, output_format="jpeg", trim=True)).ok
    monkeypatch.setattr(_output_stage, "_SPOOL_BYTES", 1024)  # every cutout rolls over to disk
    on_disk = MemorySink()
    assert (await real.run_batch([url], on_disk, output_format="jpeg", trim=True)).ok
    assert on_disk.data == in_memory.data


async def test_abort_mid_transform_stores_nothing_of_that_item(
    service: FakeService, client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release = _hold_transforms(service, monkeypatch)
    sink = MemorySink()
    async with client.batch(urls(4), sink, output_format="jpeg", concurrency=1) as results:
        await anyio.to_thread.run_sync(started.wait, 10)
        results.abort()
        release.set()  # the worker thread ends; its result is dropped, not half-stored
        items = [item async for item in results]
    assert sink.data == {}
    assert all(not item.ok for item in items)


async def test_a_dry_run_knows_the_transformed_outputs(
    emu: Emulator, real: AsyncClient, tmp_path: Path
) -> None:
    urls = [f"{emu.image_url('ball-small.png')}?dry={i}" for i in range(3)]
    options: dict[str, Any] = {"output_format": "jpeg", "trim": True}
    assert (await real.run_batch(urls[:2], tmp_path, **options)).ok
    posts = emu.stats.posts
    plan = await freepik_bg.plan_batch(urls, tmp_path, **options)
    assert (plan.done, plan.to_submit) == (2, 1)
    # Asked for PNGs instead, nothing of that is there yet.
    assert (await freepik_bg.plan_batch(urls, tmp_path)).to_submit == 3
    assert emu.stats.posts == posts


async def test_each_rendition_is_transformed_from_one_post(
    emu: Emulator, real: AsyncClient
) -> None:
    sink = MemorySink()
    url = emu.image_url("mug-plain.jpg")
    report = await real.run_batch(
        [url], sink, size=("high_resolution", "preview"), output_format="jpeg", keep_png=True
    )
    assert report.ok
    assert emu.stats.posts == 1
    stem = freepik_bg.output_name(url).removesuffix(".png")
    assert sorted(sink.data) == sorted(
        f"{stem}{end}" for end in (".jpg", ".png", ".preview.jpg", ".preview.png")
    )
    assert report.stored[0].locations["preview"] == f"{stem}.preview.jpg"
    assert opened(sink.data[f"{stem}.preview.jpg"]).format == "JPEG"


async def test_a_rerun_in_another_format_is_not_taken_for_done(
    emu: Emulator, real: AsyncClient, tmp_path: Path
) -> None:
    url, out = emu.image_url("ball-small.png") + "?format", tmp_path / "out"
    journal = tmp_path / "journal.jsonl"
    assert (await real.run_batch([url], out, journal=journal)).ok  # the plain PNG
    posts = emu.stats.posts
    second = await real.run_batch([url], out, journal=journal, output_format="jpeg")
    assert (len(second.stored), len(second.skipped)) == (1, 0)
    assert Path(second.stored[0].location or "").suffix == ".jpg"
    assert emu.stats.posts == posts  # from the links the first run paid for
    third = await real.run_batch([url], out, journal=journal, output_format="jpeg")
    assert len(third.skipped) == 1
    # Once those links expired, another format costs a credit: only when asked to pay.
    emu.advance_time(301)
    fourth = await real.run_batch([url], out, journal=journal, output_format="webp")
    assert "--repay-missing-renditions" in str(fourth.failed[0].error)
    assert emu.stats.posts == posts
