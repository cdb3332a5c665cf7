"""Several renditions from one POST: the emulator's counters prove who paid for what."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import anyio
import pytest

import freepik_bg
from freepik_bg import AsyncClient, DirectorySink, ItemResult, LinkExpiredError, SinkItem
from freepik_bg.testing import Emulator

pytestmark = pytest.mark.anyio

BOTH = ("high_resolution", "preview")


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(emu.api_key, base_url=emu.base_url, timeout=5) as c:
        yield c


def samples(emu: Emulator, n: int, tag: str, name: str = "ball-small.png") -> list[str]:
    return [f"{emu.image_url(name)}?{tag}={i}" for i in range(n)]


async def run(
    client: AsyncClient, urls: list[str], out: Path, **options: object
) -> list[ItemResult]:
    report = await client.run_batch(urls, out, journal=out / "j.jsonl", rate=None, **options)
    return sorted(report.stored + report.failed + report.skipped, key=lambda item: item.index)


def dimensions(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        assert image.mode == "RGBA"
        return image.size


async def test_two_renditions_from_one_post(
    emu: Emulator, client: AsyncClient, tmp_path: Path
) -> None:
    urls = samples(emu, 3, "both", "mug-plain.jpg")  # 800x600: its preview is smaller
    items = await run(client, urls, tmp_path, size=BOTH)

    assert emu.stats.posts == 3
    assert emu.stats.credits_charged == 3
    assert emu.stats.downloads == {"high_resolution": 3, "preview": 3}
    for item in items:
        assert item.status == "ok"
        assert set(item.locations) == set(BOTH)
        assert item.location == item.locations["high_resolution"]
        high, preview = item.locations["high_resolution"], item.locations["preview"]
        assert high != preview
        assert high.endswith(".png")
        assert preview.endswith(".preview.png")
        assert dimensions(high) == (800, 600)
        width, height = dimensions(preview)
        assert width * height <= 250_000
        assert abs(width / height - 800 / 600) < 0.02
    # The report and the journal say where both went.
    record = items[0].to_record()
    assert record["location"] == items[0].location
    assert record["locations"] == dict(items[0].locations)
    again = freepik_bg.Journal(tmp_path / "j.jsonl")
    assert all(again.is_stored(url, size) for url in urls for size in BOTH)


async def test_adding_a_rendition_on_rerun_posts_nothing(
    emu: Emulator, client: AsyncClient, tmp_path: Path
) -> None:
    urls = samples(emu, 3, "add")
    first = await run(client, urls, tmp_path)
    assert emu.stats.posts == 3
    assert emu.stats.downloads == {"high_resolution": 3}
    before = {item.location: Path(str(item.location)).read_bytes() for item in first}
    emu.reset_stats()

    items = await run(client, urls, tmp_path, size=BOTH)
    assert emu.stats.posts == 0
    assert emu.stats.downloads == {"preview": 3}  # only what was missing
    assert [item.status for item in items] == ["ok"] * 3
    assert all(Path(item.locations["preview"]).is_file() for item in items)
    assert {path: Path(str(path)).read_bytes() for path in before} == before

    emu.reset_stats()
    third = await run(client, urls, tmp_path, size=BOTH)
    assert [item.status for item in third] == ["skipped"] * 3
    assert emu.stats.posts == 0
    assert emu.stats.links_downloaded == 0
    assert third[0].locations == items[0].locations


async def test_expired_links_cost_nothing_without_the_flag_and_one_post_with_it(
    emu: Emulator, client: AsyncClient, tmp_path: Path
) -> None:
    urls = samples(emu, 2, "expired")
    await run(client, urls, tmp_path)
    emu.advance_time(301)  # the service's links expired; our clock still thinks they live
    emu.reset_stats()

    refused = await run(client, urls, tmp_path, size=BOTH)
    assert emu.stats.posts == 0
    for item in refused:
        assert item.status == "failed"
        assert isinstance(item.error, LinkExpiredError)
        assert "--repay-missing-renditions" in str(item.error)
        assert "preview" in str(item.error)
        assert Path(item.locations["high_resolution"]).is_file()  # still reported as there
    emu.reset_stats()

    paid = await run(client, urls, tmp_path, size=BOTH, repay_missing_renditions=True)
    assert [item.status for item in paid] == ["ok", "ok"]
    assert emu.stats.posts == 2
    assert emu.stats.downloads == {"preview": 2}  # the stored rendition is not fetched again
    assert all(Path(item.locations["preview"]).is_file() for item in paid)


async def test_links_expired_by_our_clock_send_nothing_at_all(
    emu: Emulator, client: AsyncClient, tmp_path: Path
) -> None:
    urls = samples(emu, 2, "clock")
    await run(client, urls, tmp_path, size="preview")
    journal = tmp_path / "j.jsonl"
    # The same journal, written ten minutes ago.
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    for record in records:
        if "received_at" in record:
            received = datetime.fromisoformat(record["received_at"]) - timedelta(minutes=10)
            record["received_at"] = received.isoformat()
    journal.write_text("".join(json.dumps(record) + "\n" for record in records))
    emu.reset_stats()

    # A rendition this run does not even ask for was stored: the URL was paid for.
    refused = await run(client, urls, tmp_path, size="high_resolution")
    assert emu.stats.posts == 0
    assert emu.stats.links_downloaded == 0
    assert all("--repay-missing-renditions" in str(item.error) for item in refused)

    emu.reset_stats()
    paid = await run(client, urls, tmp_path, repay_missing_renditions=True)
    assert [item.status for item in paid] == ["ok", "ok"]
    assert emu.stats.posts == 2
    assert emu.stats.downloads == {"high_resolution": 2}


async def test_overwrite_needs_no_flag_and_reuses_live_links(
    emu: Emulator, client: AsyncClient, tmp_path: Path
) -> None:
    urls = samples(emu, 2, "overwrite")
    await run(client, urls, tmp_path, size=BOTH)
    emu.reset_stats()
    items = await run(client, urls, tmp_path, size=BOTH, overwrite=True)
    assert [item.status for item in items] == ["ok", "ok"]
    assert emu.stats.posts == 0  # the journal's links still live
    assert emu.stats.downloads == {"high_resolution": 2, "preview": 2}


class HoldAfterHigh(DirectorySink):
    """Stores the full-resolution cutout, then holds on until released: between renditions."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.reached = anyio.Event()
        self.release = anyio.Event()

    async def store(self, item: SinkItem, chunks: AsyncIterator[bytes]) -> str:
        location = await super().store(item, chunks)
        if item.size == "high_resolution":
            self.reached.set()
            await self.release.wait()
        return location


async def test_aborted_between_renditions_resumes_without_a_post(
    emu: Emulator, client: AsyncClient, tmp_path: Path
) -> None:
    url = samples(emu, 1, "abort")[0]
    sink = HoldAfterHigh(tmp_path)
    journal = tmp_path / "j.jsonl"
    async with client.batch([url], sink, size=BOTH, journal=journal, rate=None) as results:
        await sink.reached.wait()
        results.abort()  # the CLI's second Ctrl-C
        [item] = [item async for item in results]
    assert not item.ok
    # Its answer arrived: the journal has its links, and the message says so.
    assert "interrupted while downloading: its links arrived" in str(item.error)
    assert item.attempts == 1
    assert emu.stats.posts == 1
    assert emu.stats.downloads == {"high_resolution": 1}
    assert not list(tmp_path.glob("*.preview.png"))
    emu.reset_stats()

    [resumed] = await run(client, [url], tmp_path, size=BOTH)
    assert resumed.status == "ok"
    assert emu.stats.posts == 0
    assert emu.stats.downloads == {"preview": 1}  # the stored one is found on disk
    assert Path(resumed.locations["preview"]).is_file()


async def test_stopping_between_renditions_drains_both(
    emu: Emulator, client: AsyncClient, tmp_path: Path
) -> None:
    url = samples(emu, 1, "drain")[0]
    sink = HoldAfterHigh(tmp_path)
    async with client.batch([url], sink, size=BOTH, rate=None) as results:
        await sink.reached.wait()
        results.stop()  # the CLI's first Ctrl-C: what was paid for is finished
        sink.release.set()
        [item] = [item async for item in results]
    assert item.status == "ok"
    assert set(item.locations) == set(BOTH)
    assert emu.stats.posts == 1
    assert emu.stats.downloads == {"high_resolution": 1, "preview": 1}


async def test_duplicates_share_every_rendition(
    emu: Emulator, client: AsyncClient, tmp_path: Path
) -> None:
    url = samples(emu, 1, "dup")[0]
    items = await run(client, [url, url], tmp_path, size=BOTH)
    assert emu.stats.posts == 1
    assert items[1].duplicate_of == 0
    assert items[1].locations == items[0].locations


class BrokenPreview(DirectorySink):
    """A destination that cannot take the preview (a full disk, say)."""

    async def store(self, item: SinkItem, chunks: AsyncIterator[bytes]) -> str:
        if item.size == "preview":
            # Read it all first (the disk fills at the end): the emulator has then
            # counted this download before the test resets its counters.
            async for _ in chunks:
                pass
            raise OSError(28, "No space left on device")
        return await super().store(item, chunks)


async def test_a_failed_rendition_keeps_the_stored_one_for_the_rerun(
    emu: Emulator, client: AsyncClient, tmp_path: Path
) -> None:
    url = samples(emu, 1, "half")[0]
    journal = tmp_path / "j.jsonl"
    report = await client.run_batch(
        [url], BrokenPreview(tmp_path), size=BOTH, journal=journal, rate=None
    )
    [item] = report.failed
    assert isinstance(item.error, freepik_bg.SinkError)
    assert list(item.locations) == ["high_resolution"]
    reloaded = freepik_bg.Journal(journal)
    assert reloaded.is_stored(url, "high_resolution")
    assert not reloaded.is_stored(url, "preview")
    emu.reset_stats()

    [again] = await run(client, [url], tmp_path, size=BOTH)
    assert again.status == "ok"
    assert emu.stats.posts == 0
    assert emu.stats.downloads == {"preview": 1}


def test_size_values(tmp_path: Path) -> None:
    config = freepik_bg.BatchConfig(size=["high_resolution", "preview"])  # type: ignore[arg-type]
    assert config.size == BOTH
    assert config.sizes == BOTH
    assert hash(config) == hash(freepik_bg.BatchConfig(size=BOTH))
    assert freepik_bg.BatchConfig().sizes == ("high_resolution",)
    for bad, message in [
        ((), "non-empty"),
        (("preview", "preview"), "twice"),
        (("preview", "huge"), "size must be one of"),
        (42, "non-empty"),
    ]:
        with pytest.raises(ValueError, match=message):
            freepik_bg.BatchConfig(size=bad)  # type: ignore[arg-type]


def test_a_journal_from_before_renditions_is_read_the_same(tmp_path: Path) -> None:
    from .conftest import links

    url = "https://a.test/old.jpg"
    received = datetime.now().astimezone() - timedelta(seconds=30)
    path = tmp_path / "old.jsonl"
    lines = [
        {"v": 1, "event": "posted", "url": url, "received_at": received.isoformat(),
         "links": links()},
        {"v": 1, "event": "done", "url": url, "location": "x.png"},
        {"v": 1, "event": "stored", "url": "https://a.test/p.jpg", "size": "preview"},
    ]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    journal = freepik_bg.Journal(path)
    assert journal.is_stored(url)
    assert not journal.is_stored(url, "preview")
    assert journal.is_stored("https://a.test/p.jpg", "preview")
    live = journal.live_cutout(url)
    assert live is not None
    assert live.preview == links()["preview"]
    assert journal.pending_cutout(url) is None  # stored: nothing is pending for a plain rerun


def test_the_journal_forgets_expired_links_as_it_reads(tmp_path: Path) -> None:
    import tracemalloc

    from .conftest import links

    path = tmp_path / "long.jsonl"
    old = (datetime.now().astimezone() - timedelta(minutes=6)).isoformat()
    with path.open("w") as fh:
        for i in range(20_000):
            record = {"v": 1, "event": "posted", "url": f"https://a.test/{i}.jpg",
                      "received_at": old, "links": links()}  # fmt: skip
            fh.write(json.dumps(record) + "\n")
    tracemalloc.start()
    try:
        journal = freepik_bg.Journal(path)
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Keeping those 20,000 expired records would hold about 20 MB.
    assert kept < 2_000_000
    assert journal.live_cutout("https://a.test/19999.jpg") is None
