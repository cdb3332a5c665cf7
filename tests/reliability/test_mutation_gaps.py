"""Tests that fail when the product is broken in one named way (a mutation).

A hand-made mutation run showed guarantees the suite did not prove (or proved
only through a mock, or only by hanging until the pytest timeout). Each test
here names its mutation in its docstring; docs/guarantees.md lists them all
("Mutations this suite must catch"). Timing is asserted only on the virtual
clock; everything else is counted or compared byte for byte.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import pytest
import respx

import freepik_bg
from freepik_bg import (
    AsyncClient,
    DirectorySink,
    InvalidImageError,
    ItemResult,
    MemorySink,
    OutputConflictError,
    RateLimitError,
    SinkItem,
    output_name,
)
from freepik_bg._sinks import SOURCE_XATTR, recorded_source, write_atomic
from freepik_bg._stream import _CHUNK_SIZE
from freepik_bg.testing import Emulator, Fault

from ..conftest import API, ENDPOINT, KEY, PNG, FakeService, links, run_cli, urls
from ._servers import OriginServer
from .conftest import assert_no_key

pytestmark = pytest.mark.anyio

SAMPLE = "ball-small.png"


def emu_urls(emu: Emulator, n: int, tag: str) -> list[str]:
    """``n`` distinct sample URLs; ``tag`` keeps them apart from other tests' outputs."""
    return [f"{emu.image_url(SAMPLE)}?{tag}={i}" for i in range(n)]


# -- 1. a 429 pauses every submission of the batch ------------------------------------


@pytest.mark.real_backoff
async def test_a_429_holds_back_every_task_against_the_emulator(emu: Emulator) -> None:
    """Mutations: the runner's ``gate.pause(event.wait)`` deleted; ``RateGate.pause`` a no-op.

    The first POST is answered 429 with ``Retry-After: 2``. With the shared pause,
    no task sends a new POST before the throttled one is retried: between the 429
    and that retry the emulator only sees POSTs that were already on their way
    (fewer than ``concurrency``) and those racing it when the pause ends. Without
    it, the other tasks push the rest of the batch through in the meantime.
    Counted from the emulator's log, in order: no clock is read.
    """
    concurrency, n = 4, 24
    emu.inject("post", Fault.http_error(429, retry_after=2))
    retried: list[str] = []

    def on_event(event: freepik_bg.ProgressEvent) -> None:
        if event.kind is freepik_bg.ProgressKind.RETRIED:
            retried.append(event.image_url)

    async with AsyncClient(KEY, base_url=emu.base_url, timeout=10) as client:
        with anyio.fail_after(30):
            report = await client.run_batch(
                emu_urls(emu, n, "pause"),
                MemorySink(),
                concurrency=concurrency,
                rate=None,
                progress=on_event,
            )
    assert len(report.stored) == n
    assert len(retried) == 1
    posts = [r for r in emu.stats.log if r.endpoint == "post"]
    assert [r.status for r in posts].count(429) == 1
    throttled = next(i for i, r in enumerate(posts) if r.status == 429)
    retry = next(i for i, r in enumerate(posts) if r.image_url == retried[0])
    others_in_between = retry - throttled - 1
    # Each task holds a slot, and the throttled one holds one all along: fewer than
    # `concurrency` were on their way, fewer than `concurrency` wake with it (one to
    # spare here). Without the pause, nearly all of the other 23 go in between.
    assert others_in_between <= 2 * concurrency, (
        f"{others_in_between} POSTs went out while the batch should have been paused"
    )


# -- 2. Content-Length must match what arrived -----------------------------------------


class _Body(httpx.AsyncByteStream):
    """Sends exactly ``data``, whatever the Content-Length header claims."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data


@pytest.mark.parametrize("declared", [len(PNG) + 100, len(PNG) - 10], ids=["longer", "shorter"])
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_complete_png_under_a_wrong_content_length_is_refused(
    respx_mock: respx.MockRouter, tmp_path: Path, declared: int
) -> None:
    """Mutation: the declared-vs-received check in ``ImageStream._finish`` deleted.

    The body is a whole, valid PNG (signature and trailer pass), so only the
    Content-Length comparison can tell that the transfer was not what the
    server meant to send. (Over real sockets h11 also enforces it; a mocked or
    exotic transport does not.)
    """
    route = respx_mock.get(links()["high_resolution"]).mock(
        side_effect=lambda request: httpx.Response(
            200, headers={"content-length": str(declared)}, stream=_Body(PNG)
        )
    )
    cutout = freepik_bg.Cutout.from_response(links(), image_url="https://img.test/a.jpg")
    async with AsyncClient(KEY, base_url=API, max_retries=1) as client:
        with pytest.raises(InvalidImageError, match=f"sent {len(PNG)} of {declared} bytes"):
            await client.download_to(cutout, tmp_path / "a.png")
    assert route.call_count == 2  # a broken transfer is retried, then reported
    assert os.listdir(tmp_path) == []


class _Oversized(httpx.AsyncByteStream):
    """2 MB that pass the PNG checks, without a Content-Length; counts the chunks pulled."""

    def __init__(self) -> None:
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield PNG[:-12]  # everything but the IEND chunk
        for _ in range(2_000):
            self.sent += 1
            yield b"\0" * 1000
            await anyio.lowlevel.checkpoint()
        yield PNG[-12:]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_body_without_a_content_length_is_cut_off_at_the_cap(
    respx_mock: respx.MockRouter, tmp_path: Path
) -> None:
    """Mutation: the running byte count against ``max_download_bytes`` removed.

    With no Content-Length only the count can stop the transfer: at the cap,
    not read to the end, and not retried (the body will not shrink). Without
    the count, all 2 MB are stored.
    """
    body = _Oversized()
    route = respx_mock.get(links()["high_resolution"]).mock(
        side_effect=lambda request: httpx.Response(200, stream=body)
    )
    cutout = freepik_bg.Cutout.from_response(links(), image_url="https://img.test/a.jpg")
    async with AsyncClient(KEY, base_url=API, max_download_bytes=10_000) as client:
        with anyio.fail_after(10), pytest.raises(InvalidImageError, match="cap") as caught:
            await client.download_to(cutout, tmp_path / "a.png")
    assert caught.value.transient is False
    assert route.call_count == 1
    # Stopped within one read chunk past the cap, not read on forever.
    assert body.sent * 1000 <= 10_000 + _CHUNK_SIZE
    assert os.listdir(tmp_path) == []


async def test_a_batch_stores_nothing_from_a_body_that_misses_its_content_length(
    service: FakeService, tmp_path: Path
) -> None:
    """The same mutation, seen through a batch into a directory: failed, no file."""
    service.get_route.side_effect = lambda request: httpx.Response(
        200, headers={"content-length": str(len(PNG) + 1)}, stream=_Body(PNG)
    )
    async with AsyncClient(KEY, base_url=API, max_retries=1) as client:
        report = await client.run_batch(urls(3), tmp_path, rate=None)
    assert len(report.failed) == 3
    assert all(isinstance(r.error, InvalidImageError) for r in report.failed)
    assert os.listdir(tmp_path) == []


# -- 3. CLI flags reach the batch ----------------------------------------------------


def _listing(tmp_path: Path, urls_: list[str]) -> Path:
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls_) + "\n")
    return listing


def test_cli_overwrite_replaces_an_existing_output(emu: Emulator, tmp_path: Path) -> None:
    """Mutation: the CLI drops ``--overwrite`` before building the `BatchConfig`."""
    url = emu_urls(emu, 1, "overwrite")[0]
    out = tmp_path / "out"
    out.mkdir()
    target = out / output_name(url)
    target.write_bytes(b"an older cutout")
    args = ["remove", str(_listing(tmp_path, [url])), "-o", str(out), "--base-url", emu.base_url]

    kept = run_cli(args)
    assert kept.returncode == 0, kept.stderr
    assert target.read_bytes() == b"an older cutout"  # skipped without a credit
    assert emu.stats.posts == 0

    replaced = run_cli([*args, "--overwrite"])
    assert replaced.returncode == 0, replaced.stderr
    assert emu.stats.posts == 1
    assert target.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("flags", "posts", "exit_code"),
    [([], 2, 0), (["--no-retry-ambiguous"], 1, 1)],
    ids=["retried", "not-retried"],
)
def test_cli_no_retry_ambiguous_stops_a_second_post(
    emu: Emulator, tmp_path: Path, flags: list[str], posts: int, exit_code: int
) -> None:
    """Mutation: the CLI passes ``retry_ambiguous=True`` whatever the flag says.

    A 500 may have been billed: retried by default, not with the flag.
    """
    url = emu_urls(emu, 1, "ambiguous")[0]
    emu.inject("post", Fault.http_error(500))
    args = ["remove", str(_listing(tmp_path, [url])), "-o", str(tmp_path / "out")]
    result = run_cli([*args, "--base-url", emu.base_url, *flags])
    assert result.returncode == exit_code, result.stderr
    assert emu.stats.posts == posts
    assert emu.stats.count("post", 500) == 1


# -- 4. the sync entry point runs on the backend it is given ---------------------------


def _running_library() -> str:
    """Which event loop runs the caller, without sniffio."""
    import trio

    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        pass
    else:
        return "trio"
    try:
        asyncio.current_task()
    except RuntimeError:
        return "none"
    return "asyncio"


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_remove_backgrounds_runs_on_the_backend_given(
    emu: Emulator, tmp_path: Path, backend: str
) -> None:
    """Mutation: ``remove_backgrounds`` ignores ``backend`` (always asyncio)."""
    seen: set[str] = set()
    report = freepik_bg.remove_backgrounds(
        emu_urls(emu, 2, f"backend-{backend}"),
        tmp_path,
        api_key=KEY,
        base_url=emu.base_url,
        rate=None,
        backend=backend,
        progress=lambda event: seen.add(_running_library()),
    )
    assert len(report.stored) == 2
    assert seen == {backend}


# -- 5. outputs are complete or absent, also while being written -------------------------


async def test_a_reader_never_sees_a_partial_or_truncated_output(tmp_path: Path) -> None:
    """Mutation: ``write_atomic`` writes straight to the final path (no temp + rename).

    While the stream is midway, the target still holds the old file; after the
    stream fails, it holds the old file byte for byte, and nothing else is left.
    """
    target = tmp_path / "a.png"
    old = PNG + b"old"
    target.write_bytes(old)
    fresh = tmp_path / "new.png"
    seen: list[tuple[bytes, bool]] = []

    async def broken(path: Path) -> AsyncIterator[bytes]:
        yield PNG[:20]
        # The writer has the first chunk: what does a reader see now?
        seen.append((path.read_bytes() if path.exists() else b"<absent>", path.exists()))
        yield PNG[20:40]
        raise OSError(5, "Input/output error")

    for path in (target, fresh):
        with pytest.raises(OSError, match="Input/output"):
            await write_atomic(path, broken(path))
    assert seen == [(old, True), (b"<absent>", False)]
    assert target.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


class _FailsMidway(httpx.AsyncByteStream):
    """Half a PNG, a look at the target on disk, then a broken connection."""

    def __init__(self, target: Path, seen: list[bytes]) -> None:
        self.target = target
        self.seen = seen

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield PNG[:40]
        await anyio.lowlevel.checkpoint()
        self.seen.append(self.target.read_bytes())
        raise httpx.ReadError("connection reset by peer")


async def test_a_failed_overwrite_in_a_batch_keeps_the_old_output(
    service: FakeService, tmp_path: Path
) -> None:
    """The same mutation, through a batch with ``overwrite=True`` whose downloads all break."""
    url = urls(1)[0]
    target = tmp_path / output_name(url)
    old = PNG + b"from the last run"
    target.write_bytes(old)
    seen: list[bytes] = []
    service.get_route.side_effect = lambda request: httpx.Response(
        200, stream=_FailsMidway(target, seen)
    )
    async with AsyncClient(KEY, base_url=API, max_retries=2) as client:
        report = await client.run_batch([url], tmp_path, rate=None, overwrite=True)
    assert isinstance(report.failed[0].error, freepik_bg.APIConnectionError)
    assert seen == [old, old, old]  # each attempt, midway: the old file, whole
    assert target.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


# -- 6. input is pulled lazily --------------------------------------------------------


async def test_input_is_pulled_as_slots_free_up_not_all_at_once(service: FakeService) -> None:
    """Mutation: the runner materialises the input (``list(urls)``) before starting.

    The generator is long but finite, so the mutation fails this test instead
    of eating memory forever.
    """
    concurrency, total = 4, 5_000
    pulled = 0

    def source() -> Iterator[str]:
        nonlocal pulled
        for i in range(total):
            pulled += 1
            yield f"https://img.test/lazy-{i}.jpg"

    first: ItemResult | None = None
    async with (
        AsyncClient(KEY, base_url=API) as client,
        client.batch(source(), MemorySink(), concurrency=concurrency, rate=None) as results,
    ):
        async for item in results:
            first = item
            pulled_at_first_result = pulled
            break
    assert first is not None
    assert first.ok
    # In flight, plus the results buffered ahead of the consumer, plus one.
    assert pulled_at_first_result <= 2 * concurrency + 1
    assert pulled < total


# -- 7. a Retry-After beyond the cap is not waited for ----------------------------------


@pytest.mark.real_backoff
@pytest.mark.virtual_clock
async def test_an_hour_long_retry_after_gives_up_at_once(respx_mock: respx.MockRouter) -> None:
    """Mutation: the ``max_retry_after`` cap removed (every Retry-After is waited out).

    On the virtual clock the mutant "waits" five hours instantly, so this fails
    at once instead of hitting the pytest timeout.
    """
    route = respx_mock.post(ENDPOINT).respond(429, headers={"retry-after": "3600"})
    async with AsyncClient(KEY, base_url=API) as client:
        start = anyio.current_time()
        with pytest.raises(RateLimitError) as caught:
            await client.remove_background("https://img.test/a.jpg")
        elapsed = anyio.current_time() - start
    assert elapsed == 0
    assert route.call_count == 1
    assert caught.value.retry_after == 3600


@pytest.mark.real_backoff
@pytest.mark.virtual_clock
async def test_a_batch_told_to_wait_an_hour_stops_without_waiting(service: FakeService) -> None:
    """The same mutation, through a batch: it stops (a temporary block) at virtual time 0."""
    for url in urls(10):
        service.fail[url] = httpx.Response(429, headers={"retry-after": "3600"})
    async with AsyncClient(KEY, base_url=API) as client:
        start = anyio.current_time()
        report = await client.run_batch(urls(10), MemorySink(), concurrency=2, rate=None)
        elapsed = anyio.current_time() - start
    assert elapsed == 0
    assert len(report.failed) == 10
    assert 1 <= len(service.posts) <= 2
    assert "temporary block" in str(report.stop_reason)


# -- 8. the key never reaches another origin --------------------------------------------


async def test_result_links_on_another_origin_never_get_the_key(
    emu: Emulator, tmp_path: Path
) -> None:
    """Mutation: ``ApiKeyAuth.headers_for`` returns the key for every URL.

    The emulator builds its links from the Host header it was reached by, as
    a service behind a CDN would. Presenting another loopback origin's address
    there makes every link point at that origin, a plain server that serves a
    PNG and records each request's headers.
    """
    with OriginServer(emu.sample_bytes(SAMPLE)) as cdn:

        async def links_on_the_cdn(request: httpx.Request) -> None:
            if request.method == "POST":
                request.headers["host"] = f"127.0.0.1:{cdn.port}"

        async with (
            httpx.AsyncClient(event_hooks={"request": [links_on_the_cdn]}, timeout=10) as http,
            AsyncClient(KEY, base_url=emu.base_url, http_client=http) as client,
        ):
            with anyio.fail_after(30):
                report = await client.run_batch(
                    emu_urls(emu, 6, "cdn"), tmp_path, concurrency=3, rate=None
                )
        downloads = cdn.requests

    assert len(report.stored) == 6
    assert all(
        Path(r.location or "").read_bytes() == emu.sample_bytes(SAMPLE) for r in report.stored
    )
    assert all(r.sent_key(KEY) for r in emu.stats.log if r.endpoint == "post")
    assert emu.stats.count("download") == 0  # every link was on the other origin
    assert len(downloads) == 6
    # Named, not shown: a failure must not print the key it found.
    given_the_key = [r.target for r in downloads if "x-freepik-api-key" in r.headers]
    assert given_the_key == []
    assert_no_key(value for r in downloads for value in r.headers.values())


# -- more guarantees without a test that failed when they broke --------------------------


async def test_outputs_record_their_source_url_where_the_filesystem_can(tmp_path: Path) -> None:
    """Mutation: ``_record_source`` does nothing.

    tests/test_sinks.py's conflict test skips when no source is recorded, so
    there the mutation looks like a filesystem without xattrs. Here the
    filesystem is probed first, and only a real lack of support skips.
    """
    setxattr = getattr(os, "setxattr", None)
    probe = tmp_path / "probe"
    probe.touch()
    try:
        if setxattr is None:
            raise OSError("no os.setxattr on this platform")
        setxattr(probe, SOURCE_XATTR, b"probe")
    except OSError as exc:
        pytest.skip(f"this filesystem keeps no user xattrs: {exc}")
    probe.unlink()
    url, other = "https://img.test/mine.jpg", "https://img.test/other.jpg"
    sink = DirectorySink(tmp_path)

    async def body() -> AsyncIterator[bytes]:
        yield PNG

    location = await sink.store(SinkItem(0, url, "shared.png", "high_resolution"), body())
    assert recorded_source(Path(location)) == url
    with pytest.raises(OutputConflictError, match=r"holds the cutout of https://img\.test/mine"):
        await sink.exists(SinkItem(1, other, "shared.png", "high_resolution"))


async def test_duplicates_are_posted_once_and_share_the_first_outcome(
    service: FakeService, tmp_path: Path
) -> None:
    """Mutations: ``Duplicates.claim`` always says "first"; a failed first is not remembered.

    ``test_promises.py`` checks duplicates through the CLI; this adds a first
    occurrence that fails (its duplicates share the error, without a POST) and
    the journal (one line per paid-for outcome).
    """
    a, b, c = urls(3)
    service.fail[b] = httpx.Response(400, json={"message": "Failed to download the image"})
    items = [a, b, a, c, b, a]
    journal = tmp_path / "run.jsonl"
    async with AsyncClient(KEY, base_url=API) as client:
        report = await client.run_batch(
            items, tmp_path / "out", concurrency=3, rate=None, journal=journal
        )
    assert sorted(service.posts) == sorted([a, b, c])
    results = {r.index: r for r in (*report.stored, *report.failed, *report.skipped)}
    assert sorted(results) == list(range(6))
    assert [results[i].duplicate_of for i in range(6)] == [None, None, 0, None, 1, 0]
    assert results[2].ok
    assert results[5].ok
    assert results[2].location == results[0].location
    assert isinstance(results[4].error, freepik_bg.BadRequestError)
    # Only first occurrences are journaled: one line per paid-for outcome.
    events = journal.read_text().splitlines()
    assert sum('"event":"posted"' in line for line in events) == 2
    assert sum('"event":"stored"' in line for line in events) == 2
