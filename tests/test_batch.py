"""The batch runner against a mocked transport (respx), on asyncio and trio."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import pytest

import freepik_bg
from freepik_bg import (
    AsyncClient,
    AuthenticationError,
    ConfigurationError,
    InvalidRequestError,
    ItemResult,
    MemorySink,
    output_name,
)
from freepik_bg._atomic import SPILL_BYTES
from freepik_bg._ratelimit import AdaptiveConcurrency, RateGate
from freepik_bg.testing import Emulator

from .conftest import API, KEY, PNG, FakeService, urls

pytestmark = pytest.mark.anyio


# One image, spelled four ways: the fragment is never sent, scheme and host are
# case-insensitive, and 443 is https's port with or without saying so.
SPELLINGS = [
    "https://img.test/a.png",
    "HTTPS://IMG.test/a.png",
    "https://img.test:443/a.png",
    "https://img.test/a.png#x",
]


async def test_run_batch_to_directory(
    service: FakeService, client: AsyncClient, tmp_path: Path
) -> None:
    report = await client.run_batch(urls(20), tmp_path, rate=None)
    assert len(report.stored) == 20
    assert report.ok
    assert report.posts == 20
    for item in report.stored:
        assert item.location == str(tmp_path / output_name(item.image_url))
        assert Path(item.location).read_bytes() == PNG
        assert item.attempts == 1
        assert item.queued_at is not None
        assert item.posted_at is not None
        assert item.stored_at is not None
        assert item.queued_at <= item.posted_at <= item.stored_at
    assert sorted(os.listdir(tmp_path)) == sorted(output_name(u) for u in urls(20))
    assert sorted(i.index for i in report.stored) == list(range(20))


async def test_concurrency_bound_as_server_sees_it(
    service: FakeService, client: AsyncClient
) -> None:
    service.hold_until = 6
    # A rate that paces nothing here: with rate=None the batch would start slow (4 at once).
    report = await client.run_batch(urls(40), MemorySink(), concurrency=6, rate=1e6, burst=100)
    assert len(report.stored) == 40
    assert service.max_in_flight == 6


async def test_lazy_input_endless_generator(service: FakeService, client: AsyncClient) -> None:
    pulled = 0

    def endless() -> Iterator[str]:
        nonlocal pulled
        while True:
            pulled += 1
            yield f"https://img.test/{pulled}.jpg"

    received: list[ItemResult] = []
    async with client.batch(endless(), MemorySink(), concurrency=4, rate=None) as results:
        async for item in results:
            received.append(item)
            if len(received) == 10:
                break
    assert all(item.ok for item in received)
    # Never more than the in-flight items plus the result buffer ahead of the consumer.
    assert pulled <= 10 + 4 + 4 + 1


async def test_async_iterable_input(service: FakeService, client: AsyncClient) -> None:
    async def source() -> AsyncIterator[str]:
        for url in urls(5):
            yield url

    report = await client.run_batch(source(), MemorySink(), rate=None)
    assert len(report.stored) == 5


async def test_bad_items_do_not_stop_the_batch(service: FakeService, client: AsyncClient) -> None:
    items: list[object] = ["ftp://x/a.jpg", *urls(3), "", None, "not a url"]
    service.fail[urls(3)[1]] = httpx.Response(400, json={"message": "Failed to download the image"})
    report = await client.run_batch(items, MemorySink(), rate=None)  # type: ignore[arg-type]
    assert len(report.stored) == 2
    assert len(report.failed) == 5
    errors = {r.index: r.error for r in report.failed}
    assert isinstance(errors[0], InvalidRequestError)
    assert isinstance(errors[2], freepik_bg.BadRequestError)
    assert isinstance(errors[5], InvalidRequestError)
    assert len(service.posts) == 3


async def test_stop_on_401_sends_nothing_more(service: FakeService, client: AsyncClient) -> None:
    for url in urls(50):
        service.fail[url] = httpx.Response(401, json={"message": "Invalid API key"})
    report = await client.run_batch(urls(50), MemorySink(), concurrency=4, rate=None)
    assert len(report.failed) == 50
    refused = [r for r in report.failed if isinstance(r.error, AuthenticationError)]
    assert 1 <= len(refused) == len(service.posts) <= 4
    # The others were never sent: one shared reason, naming what to check.
    others = [r.error for r in report.failed if r not in refused]
    assert all(isinstance(e, freepik_bg.SkippedError) for e in others)
    assert {str(e) for e in others} == {f"not attempted: {report.stop_reason}"}
    assert "Invalid API key" in str(report.stop_reason)
    assert "FREEPIK_API_KEY" in str(report.stop_reason)
    assert isinstance(report.stopped_by, AuthenticationError)


async def test_fail_fast(service: FakeService, client: AsyncClient) -> None:
    service.fail[urls(30)[0]] = httpx.Response(400, json={"message": "bad"})
    report = await client.run_batch(
        urls(30), MemorySink(), concurrency=1, rate=None, fail_fast=True
    )
    assert len(report.failed) == 30
    assert len(service.posts) == 1
    first, *rest = sorted(report.failed, key=lambda r: r.index)
    assert isinstance(first.error, freepik_bg.BadRequestError)
    # Valid items that were never attempted are not blamed for item 0's error.
    assert all(isinstance(r.error, freepik_bg.SkippedError) for r in rest)
    assert all("bad" not in str(r.error).split("fail_fast")[0] for r in rest)
    assert all(r.attempts == 0 for r in rest)


async def test_skip_existing_without_a_credit(
    service: FakeService, client: AsyncClient, tmp_path: Path
) -> None:
    done = urls(4)[:2]
    for url in done:
        (tmp_path / output_name(url)).write_bytes(b"old")
    report = await client.run_batch(urls(4), tmp_path, rate=None)
    assert {r.image_url for r in report.skipped} == set(done)
    assert len(report.stored) == 2
    assert sorted(service.posts) == sorted(urls(4)[2:])
    assert (tmp_path / output_name(done[0])).read_bytes() == b"old"

    report = await client.run_batch(urls(4), tmp_path, rate=None, overwrite=True)
    assert len(report.stored) == 4
    assert (tmp_path / output_name(done[0])).read_bytes() == PNG


async def test_journal_resume_posts_only_unfinished(
    service: FakeService, client: AsyncClient, tmp_path: Path
) -> None:
    journal = tmp_path / "run.jsonl"
    bad = urls(10)[3]
    service.fail[bad] = httpx.Response(400, json={"message": "Failed to download the image"})
    first = await client.run_batch(urls(10), MemorySink(), rate=None, journal=journal)
    assert (len(first.stored), len(first.failed)) == (9, 1)

    del service.fail[bad]
    service.posts.clear()
    second = await client.run_batch(urls(10), MemorySink(), rate=None, journal=journal)
    assert service.posts == [bad]
    assert len(second.skipped) == 9
    assert len(second.stored) == 1

    records = [json.loads(line) for line in journal.read_text().splitlines()]
    assert {r["event"] for r in records} == {"posted", "stored", "failed"}
    assert all(KEY not in line for line in journal.read_text().splitlines())


async def test_a_resume_spelling_urls_otherwise_posts_nothing(
    service: FakeService, client: AsyncClient, tmp_path: Path
) -> None:
    journal = tmp_path / "run.jsonl"
    first = await client.run_batch(SPELLINGS[:1], MemorySink(), rate=None, journal=journal)
    assert len(first.stored) == 1
    # Stored: the journal says so whatever the spelling.
    again = await client.run_batch(SPELLINGS[1:], MemorySink(), rate=None, journal=journal)
    assert len(again.skipped) == 3
    assert service.posts == SPELLINGS[:1]

    # Paid for, never stored: another spelling downloads the live links, with no POST.
    service.posts.clear()
    service.get_route.side_effect = [httpx.Response(503)] * 10
    url = "https://img.test/b.png"
    failed = await client.run_batch([url], MemorySink(), rate=None, journal=journal)
    assert len(failed.failed) == 1
    service.get_route.side_effect = lambda request: httpx.Response(200, content=PNG)
    report = await client.run_batch(
        ["HTTPS://IMG.TEST:443/b.png#top"], MemorySink(), rate=None, journal=journal
    )
    assert len(report.stored) == 1
    assert report.stored[0].attempts == 0
    assert service.posts == [url]
    # The journal keeps each URL as the user wrote it.
    written = {json.loads(line)["url"] for line in journal.read_text().splitlines()}
    assert written == {SPELLINGS[0], url, "HTTPS://IMG.TEST:443/b.png#top"}


async def test_a_rerun_without_a_journal_finds_the_file_of_another_spelling(
    service: FakeService, client: AsyncClient, tmp_path: Path
) -> None:
    # No journal (an SDK batch into a folder): the only memory is the folder. The file is
    # named after the image, not its spelling, so the rerun finds it and pays nothing.
    first = await client.run_batch(SPELLINGS[:1], tmp_path, rate=None)
    assert len(first.stored) == 1
    for spelling in SPELLINGS[1:]:
        again = await client.run_batch([spelling], tmp_path, rate=None)
        assert len(again.skipped) == 1, spelling
        assert again.skipped[0].location == first.stored[0].location
    assert service.posts == SPELLINGS[:1]
    assert [p.name for p in tmp_path.iterdir()] == [output_name(SPELLINGS[0])]


async def test_an_item_the_journal_knows_by_another_spelling_reports_its_file(
    service: FakeService, client: AsyncClient, tmp_path: Path
) -> None:
    journal = tmp_path / "run.jsonl"
    out = tmp_path / "out"
    first = await client.run_batch(SPELLINGS[:1], out, rate=None, journal=journal)
    again = await client.run_batch(SPELLINGS[1:], out, rate=None, journal=journal)
    assert service.posts == SPELLINGS[:1]
    # A results table joined on location must find the cutout, whatever the spelling.
    for result in again.skipped:
        assert result.location == first.stored[0].location
        assert Path(result.location).is_file()


async def test_journal_downloads_paid_links_without_posting(
    service: FakeService, client: AsyncClient, tmp_path: Path
) -> None:
    journal = tmp_path / "run.jsonl"
    url = urls(1)[0]
    service.get_route.side_effect = [httpx.Response(503)] * 10
    report = await client.run_batch([url], MemorySink(), rate=None, journal=journal)
    assert len(report.failed) == 1
    assert len(service.posts) == 1

    # The links are still alive: the rerun fetches them, spending no credit.
    service.get_route.side_effect = lambda request: httpx.Response(200, content=PNG)
    service.posts.clear()
    # A crash mid-write leaves a torn last line; it must be ignored.
    with journal.open("a") as fh:
        fh.write('{"v":1,"event":"done","url":"https://img.test/pho')
    report = await client.run_batch([url], MemorySink(), rate=None, journal=journal)
    assert len(report.stored) == 1
    assert service.posts == []
    assert report.stored[0].attempts == 0
    lines = journal.read_text().splitlines()
    assert json.loads(lines[-1])["event"] == "stored"


async def test_expired_link_is_resubmitted_once(service: FakeService, client: AsyncClient) -> None:
    service.get_route.side_effect = [httpx.Response(404), httpx.Response(200, content=PNG)]
    report = await client.run_batch(urls(1), MemorySink(), rate=None)
    assert report.stored[0].resubmits == 1
    assert report.stored[0].attempts == 2
    assert len(service.posts) == 2

    service.get_route.side_effect = lambda request: httpx.Response(410)
    report = await client.run_batch(urls(1), MemorySink(), rate=None, resubmit_expired=0)
    assert isinstance(report.failed[0].error, freepik_bg.LinkExpiredError)


async def test_breaking_out_cancels_cleanly(
    service: FakeService, client: AsyncClient, tmp_path: Path
) -> None:
    journal = tmp_path / "run.jsonl"
    out = tmp_path / "out"
    async with client.batch(urls(200), out, concurrency=8, rate=None, journal=journal) as results:
        async for _ in results:
            break
    assert not [name for name in os.listdir(out) if name.endswith(".part")]
    for line in journal.read_text().splitlines():
        json.loads(line)
    assert len(service.posts) < 200


async def test_progress_events(service: FakeService, client: AsyncClient) -> None:
    events: list[freepik_bg.ProgressEvent] = []
    service.fail[urls(3)[0]] = httpx.Response(400, json={"message": "bad"})
    await client.run_batch(urls(3), MemorySink(), rate=None, progress=events.append)
    kinds = [e.kind.value for e in events]
    assert kinds.count("queued") == 3
    assert kinds.count("posted") == 2
    assert kinds.count("stored") == 2
    assert kinds.count("failed") == 1


@pytest.mark.real_backoff
@pytest.mark.virtual_clock
async def test_429_pauses_every_submission(service: FakeService, client: AsyncClient) -> None:
    throttled = False

    async def on_post(request: httpx.Request) -> httpx.Response:
        nonlocal throttled
        if not throttled:
            throttled = True
            return httpx.Response(429, headers={"retry-after-ms": "300"})
        return await service.on_post(request)

    service.post_route.side_effect = on_post
    start = anyio.current_time()
    report = await client.run_batch(urls(12), MemorySink(), concurrency=4, rate=None)
    assert len(report.stored) == 12
    times = sorted(t - start for t in service.post_times)
    # Only the first wave, sent before the 429 came back, went out at once: every
    # later POST, from any task, waited out the server's 300 ms.
    assert sum(t < 0.3 for t in times) <= 3
    assert min(t for t in times if t > 0) == pytest.approx(0.3)


@pytest.mark.virtual_clock
async def test_default_rate_is_freepik_limit(service: FakeService, client: AsyncClient) -> None:
    start = anyio.current_time()
    report = await client.run_batch(urls(60), MemorySink(), concurrency=64)
    assert len(report.stored) == 60
    times = sorted(t - start for t in service.post_times)
    # 50 at once, then 10 per second (paced 2% under it).
    assert times[49] == pytest.approx(0.0)
    for i in range(50, 60):
        assert times[i] == pytest.approx((i - 49) / 9.8)


@pytest.mark.virtual_clock
async def test_rate_gate_bounds_throughput() -> None:
    gate = RateGate(rate=200, burst=5)
    start = anyio.current_time()
    times = []
    for _ in range(25):
        await gate.wait()
        times.append(anyio.current_time() - start)
    assert times == pytest.approx([max(0, i - 4) / (200 * 0.98) for i in range(25)])


@pytest.mark.virtual_clock
async def test_rate_gate_pause_holds_back_every_caller() -> None:
    gate = RateGate(rate=None)
    start = anyio.current_time()
    gate.pause(2.0)
    woke: list[float] = []

    async def caller() -> None:
        await gate.wait()
        woke.append(anyio.current_time() - start)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(caller)
        await anyio.sleep(1.0)
        gate.pause(2.0)  # a second 429 while they wait extends the pause
    assert woke == pytest.approx([3.0, 3.0, 3.0])


async def test_adaptive_concurrency_aimd() -> None:
    limit = AdaptiveConcurrency(16, cooldown=10)
    limit.throttled()
    limit.throttled()  # same burst of 429s: counted once
    assert limit.limit == 8
    for _ in range(8):
        limit.succeeded()
    assert limit.limit == 9
    with pytest.raises(ValueError, match="concurrency"):
        AdaptiveConcurrency(0)
    with pytest.raises(ValueError, match="rate"):
        RateGate(rate=0)


@pytest.mark.parametrize("dest", ["", "   "])
async def test_an_empty_dest_is_refused_before_any_credit(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dest: str
) -> None:
    # os.environ.get("CUTOUT_DIR", ""): never the current directory.
    monkeypatch.chdir(tmp_path)
    url = emu.image_url("ball-small.png")
    async with AsyncClient(KEY, base_url=emu.base_url) as c:
        with pytest.raises(ConfigurationError, match="is empty: give an output directory"):
            await c.run_batch([url], dest)
    assert emu.stats.posts == 0
    assert emu.stats.credits_charged == 0
    assert list(tmp_path.iterdir()) == []


def test_remove_backgrounds_refuses_an_empty_dest_before_any_credit(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = emu.image_url("ball-small.png")
    with pytest.raises(ConfigurationError, match="is empty"):
        freepik_bg.remove_backgrounds([url], "", api_key=KEY, base_url=emu.base_url)
    assert emu.stats.posts == 0
    assert list(tmp_path.iterdir()) == []


async def test_single_string_is_rejected(client: AsyncClient) -> None:
    with pytest.raises(TypeError, match="single string"):
        async with client.batch("https://img.test/a.jpg", MemorySink()):  # type: ignore[arg-type]
            pass


class _HangingBody(httpx.AsyncByteStream):
    def __init__(self, first: bytes, reached: anyio.Event) -> None:
        self.first = first
        self.reached = reached

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.first
        self.reached.set()
        await anyio.sleep_forever()


@pytest.mark.virtual_clock
async def test_cancelled_batch_drains_then_abandons_stuck_downloads(
    service: FakeService, client: AsyncClient, tmp_path: Path
) -> None:
    reached = anyio.Event()
    # Over SPILL_BYTES before the hang: each download has gone to its temp file
    # (a small one is gathered in memory and written whole at its end).
    first = PNG + bytes(SPILL_BYTES + 100_000)
    service.get_route.side_effect = lambda request: httpx.Response(
        200, stream=_HangingBody(first, reached)
    )
    journal = tmp_path / "run.jsonl"
    out = tmp_path / "out"

    async def consume() -> None:
        async with client.batch(
            urls(50), out, concurrency=4, rate=None, journal=journal, drain_timeout=2.0
        ) as results:
            async for _ in results:
                pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await reached.wait()
        # Downloads are mid-file: temp files exist right now.
        assert list(out.glob("*.part"))
        tg.cancel_scope.cancel()
        started = anyio.current_time()
    # The paid downloads were given drain_timeout to finish, then abandoned.
    assert anyio.current_time() - started == pytest.approx(2.0)
    assert list(out.iterdir()) == []
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    # Every POST that was answered is in the journal as paid: a resume downloads it.
    assert sorted(e["url"] for e in events if e["event"] == "posted") == sorted(service.posts)
    assert 1 <= len(service.posts) <= 4


@pytest.mark.virtual_clock
async def test_cancelled_batch_finishes_what_was_sent_and_sends_nothing_more(
    service: FakeService, client: AsyncClient, tmp_path: Path
) -> None:
    sent = anyio.Event()
    on_the_wire = 0

    async def slow_post(request: httpx.Request) -> httpx.Response:
        nonlocal on_the_wire
        on_the_wire += 1
        if on_the_wire == 4:
            sent.set()
        await anyio.sleep(5)  # well under the drain timeout
        return await service.on_post(request)

    service.post_route.side_effect = slow_post
    journal = tmp_path / "run.jsonl"
    with anyio.CancelScope() as scope:
        async with client.batch(urls(50), tmp_path, concurrency=4, journal=journal) as results:
            await sent.wait()
            scope.cancel()  # as a deadline or a sibling's failure would
            async for _ in results:
                pass
    assert scope.cancelled_caught
    assert len(service.posts) == 4
    stored = [json.loads(line) for line in journal.read_text().splitlines()]
    assert sorted(e["url"] for e in stored if e["event"] == "stored") == sorted(service.posts)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(
        output_name(u) for u in service.posts
    )


async def test_leaving_the_block_early_stores_what_was_sent(
    service: FakeService, client: AsyncClient, tmp_path: Path
) -> None:
    # On both backends, in real time: break out while POSTs are on the wire.
    async def slow_post(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.05)
        return await service.on_post(request)

    service.post_route.side_effect = slow_post
    journal = tmp_path / "run.jsonl"
    async with client.batch(urls(40), tmp_path, concurrency=8, journal=journal) as results:
        async for _ in results:
            break
    stored = {
        e["url"]
        for e in map(json.loads, journal.read_text().splitlines())
        if e["event"] == "stored"
    }
    # Every POST that was made is stored: none was paid for and thrown away.
    assert stored == set(service.posts)
    assert len(service.posts) < 40


@pytest.mark.virtual_clock
async def test_stop_drains_and_abort_abandons_at_once(
    service: FakeService, client: AsyncClient
) -> None:
    posted = anyio.Event()
    hanging: list[httpx.Request] = []

    async def hang(request: httpx.Request) -> httpx.Response:
        hanging.append(request)
        posted.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    service.post_route.side_effect = hang
    async with client.batch(urls(10), MemorySink(), rate=None, drain_timeout=30) as results:
        await posted.wait()
        results.stop()
        await anyio.sleep(1)
        assert results.stats.in_flight > 0  # still draining the POSTs on the wire
        started = anyio.current_time()
        results.abort()
        items = [item async for item in results]
    assert anyio.current_time() - started == pytest.approx(0.0)
    assert all(isinstance(item.error, freepik_bg.SkippedError) for item in items)
    abandoned = [item for item in items if "interrupted while posting" in str(item.error)]
    assert len(abandoned) == len(hanging) >= 1
    for item in abandoned:
        # Sent, maybe billed, and no links: not "not attempted", and no free resume promised.
        assert item.attempts == 1
        assert "no links to resume from" in str(item.error)
        assert "a resume sends it again" in str(item.error)
    never_sent = [item for item in items if item not in abandoned]
    assert all(item.attempts == 0 for item in never_sent)


async def test_long_retry_after_stops_the_batch(service: FakeService, client: AsyncClient) -> None:
    for url in urls(20):
        service.fail[url] = httpx.Response(429, headers={"retry-after": "3600"})
    report = await client.run_batch(urls(20), MemorySink(), concurrency=2, rate=None)
    assert len(report.failed) == 20
    blocked = [r.error for r in report.failed if isinstance(r.error, freepik_bg.RateLimitError)]
    assert 1 <= len(blocked) == len(service.posts) <= 2
    assert all(e.retry_after == 3600 for e in blocked)
    assert "temporary block" in str(report.stop_reason)


class _MetricsDown(Exception):
    pass


def _broken_metrics(event: freepik_bg.RetryEvent) -> None:
    raise _MetricsDown("statsd unreachable")


def _each_download_fails_once(service: FakeService) -> None:
    failed: set[str] = set()

    def download(request: httpx.Request) -> httpx.Response:
        if request.url.path in failed:
            return httpx.Response(200, content=PNG)
        failed.add(request.url.path)
        return httpx.Response(503)  # free, and retried: the retry hook runs

    service.get_route.side_effect = download


async def test_a_raising_on_retry_hook_ends_the_batch_as_itself_and_keeps_what_was_paid(
    service: FakeService, tmp_path: Path
) -> None:
    """A metrics hook that breaks (docs/async.md) mid-download: it was an ExceptionGroup,
    and the POSTs it interrupted were paid and never stored. Now it ends the batch as a
    raising progress hook does."""
    _each_download_fails_once(service)
    async with AsyncClient(KEY, base_url=API, on_retry=_broken_metrics) as client:
        with pytest.raises(_MetricsDown):
            await client.run_batch(urls(8), tmp_path, concurrency=4, rate=None)
    assert len(service.posts) >= 1
    stored = sorted(path.name for path in tmp_path.glob("*.png"))
    assert stored == sorted(output_name(url) for url in service.posts)  # every credit stored
    assert len(service.posts) < 8  # and nothing more was sent once the hook broke

    # Outside a batch, the hook fails the call that ran it, as itself.
    async with AsyncClient(KEY, base_url=API, on_retry=_broken_metrics) as client:
        cutout = await client.remove_background(urls(9)[8])
        with pytest.raises(_MetricsDown):
            await client.download(cutout)


class _DownSink(MemorySink):
    async def exists(self, item: freepik_bg.SinkItem) -> str | None:
        await anyio.lowlevel.checkpoint()
        raise _MetricsDown("HEAD failed: storage is down")


async def test_a_sink_whose_lookup_raises_stops_the_batch_with_a_typed_error(
    service: FakeService, client: AsyncClient
) -> None:
    # With two workers it came out as an ExceptionGroup of the sink's exceptions.
    report = await client.run_batch(urls(6), _DownSink(), concurrency=2, rate=None)
    assert len(report.failed) == 6
    first = report.failed[0].error
    assert isinstance(first, freepik_bg.SinkError)
    assert isinstance(first.__cause__, _MetricsDown)
    assert "results cannot be stored" in str(report.stop_reason)
    assert service.posts == []  # checked before any POST


class _BrokenSink(MemorySink):
    async def store(self, item: freepik_bg.SinkItem, chunks: AsyncIterator[bytes]) -> str:
        async for _ in chunks:
            pass
        raise OSError(28, "No space left on device")


async def test_failing_sink_is_typed_and_stops_the_batch(
    service: FakeService, client: AsyncClient
) -> None:
    report = await client.run_batch(urls(20), _BrokenSink(), concurrency=1, rate=None)
    assert len(report.failed) == 20
    first = report.failed[0].error
    assert isinstance(first, freepik_bg.SinkError)
    assert isinstance(first.__cause__, OSError)
    assert "No space left" in str(first)
    assert len(service.posts) == 1  # no more credits spent on results we cannot store


@pytest.mark.virtual_clock
async def test_rate_gate_paces_just_under_the_given_rate() -> None:
    gate = RateGate(rate=10, burst=1)
    start = anyio.current_time()
    for _ in range(11):
        await gate.wait()
    # Ten intervals at 98% of 10/s: a server at exactly 10/s always has its token back.
    assert anyio.current_time() - start == pytest.approx(10 / 9.8)


async def test_duplicates_share_one_post_and_one_output(
    service: FakeService, client: AsyncClient, tmp_path: Path
) -> None:
    a, b, c = urls(3)
    service.fail[c] = httpx.Response(400, json={"message": "Failed to download the image"})
    listing = [a, b, a, c, a, c, b]
    report = await client.run_batch(listing, tmp_path, concurrency=4, rate=None)
    # One POST per distinct URL, one result per input line, and the counts add up.
    assert sorted(service.posts) == sorted([a, b, c])
    assert report.total == len(listing)
    results = {r.index: r for r in (*report.stored, *report.skipped, *report.failed)}
    firsts = {a: 0, b: 1, c: 3}
    for index, url in enumerate(listing):
        result = results[index]
        if index == firsts[url]:
            assert result.duplicate_of is None
        else:
            assert result.duplicate_of == firsts[url]
            assert result.attempts == 0
    assert {results[i].status for i in (2, 4, 6)} == {"skipped"}
    assert isinstance(results[5].error, freepik_bg.BadRequestError)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([output_name(a), output_name(b)])


async def test_spellings_of_one_url_share_one_post(
    service: FakeService, client: AsyncClient, tmp_path: Path
) -> None:
    report = await client.run_batch(SPELLINGS, tmp_path, concurrency=4, rate=None)
    assert service.posts == SPELLINGS[:1]  # as written
    assert report.posts == 1
    results = sorted((*report.stored, *report.skipped), key=lambda r: r.index)
    assert [r.duplicate_of for r in results] == [None, 0, 0, 0]
    # Each reports the URL as written, and where the one cutout is.
    assert [r.image_url for r in results] == SPELLINGS
    assert {r.location for r in results} == {str(tmp_path / output_name(SPELLINGS[0]))}
    assert [p.name for p in tmp_path.iterdir()] == [output_name(SPELLINGS[0])]
