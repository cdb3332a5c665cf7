"""Atomic writes off the event loop (`freepik_bg._atomic`): every file system call in a
worker thread, small files in one hop, large ones spilled in batches, and nothing left
behind by a failure or a cancellation at any point.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

import freepik_bg._atomic as atomic
from freepik_bg import DirectorySink, OutputConflictError, SinkItem, output_name
from freepik_bg._atomic import BATCH_BYTES, SPILL_BYTES, write_atomic
from freepik_bg._sinks import recorded_source

from .conftest import PNG

pytestmark = pytest.mark.anyio

BIG = PNG + bytes(SPILL_BYTES + BATCH_BYTES + 12345)


async def pieces(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def pieces_then(
    at_chunk: int, then: Callable[[], Awaitable[None]], data: bytes = BIG
) -> AsyncIterator[bytes]:
    """`data` in 256 KiB chunks, and after chunk number `at_chunk`, `await then()`."""
    count = 0
    async for chunk in pieces(data):
        yield chunk
        count += 1
        if count == at_chunk:
            await then()


def _parts(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


@pytest.fixture
def disk_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(call, thread id) of each open, write, setxattr and rename the writer makes."""
    calls: list[tuple[str, int]] = []

    def spy(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append((name, threading.get_ident()))
            return real(*args, **kwargs)

        return call

    for name in ("open", "replace", "link", "setxattr", "fdopen"):
        monkeypatch.setattr(atomic.os, name, spy(name, getattr(os, name)))
    return calls


@pytest.mark.parametrize("data", [PNG, BIG], ids=["small", "spilled"])
async def test_the_event_loop_thread_never_touches_the_disk(
    tmp_path: Path, disk_calls: list[tuple[str, int]], data: bytes
) -> None:
    loop_thread = threading.get_ident()
    sink = DirectorySink(tmp_path / "new" / "dir")
    url = "https://a.test/shoe.jpg"
    item = SinkItem(index=0, image_url=url, name=output_name(url), size="high_resolution")
    location = await sink.store(item, pieces(data))
    assert Path(location).read_bytes() == data
    assert {name for name, _ in disk_calls} >= {"open", "link", "fdopen"}  # no-clobber: a link
    assert all(thread != loop_thread for _, thread in disk_calls), disk_calls
    if recorded_source(Path(location)) is not None:  # the filesystem keeps xattrs
        assert "setxattr" in {name for name, _ in disk_calls}
        assert recorded_source(Path(location)) == url


async def test_a_small_file_is_written_in_one_thread_hop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops: list[str] = []
    real = anyio.to_thread.run_sync

    async def counting(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(fn, "__name__", repr(fn)))
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    await write_atomic(tmp_path / "a.png", pieces(PNG + bytes(300_000), 64 * 1024))
    assert hops == ["finish"]
    hops.clear()
    await write_atomic(tmp_path / "b.png", pieces(BIG))
    # Spilled: one hop per batch of about BATCH_BYTES, never one per chunk.
    assert hops[-1] == "finish"
    assert 2 <= len(hops) <= 2 + len(BIG) // BATCH_BYTES
    assert (tmp_path / "b.png").read_bytes() == BIG


async def test_a_spilled_file_is_a_temp_file_until_it_is_whole(tmp_path: Path) -> None:
    target = tmp_path / "a.png"
    target.write_bytes(b"old")
    seen: list[tuple[list[str], bytes]] = []

    async def watched() -> AsyncIterator[bytes]:
        async for chunk in pieces(BIG):
            seen.append((_parts(tmp_path), target.read_bytes()))
            yield chunk

    await write_atomic(target, watched())
    assert seen[0] == ([], b"old")  # nothing on disk before the first spill
    assert seen[-1][0] != []  # spilled: the temp file exists mid-stream
    assert all(old == b"old" for _, old in seen)  # the target is untouched meanwhile
    assert target.read_bytes() == BIG
    assert _parts(tmp_path) == []


@pytest.mark.parametrize("fail_after", [1, 6], ids=["before-spill", "after-spill"])
async def test_a_broken_stream_leaves_the_old_file_and_no_temp(
    tmp_path: Path, fail_after: int
) -> None:
    target = tmp_path / "a.png"
    target.write_bytes(b"old")

    async def fail() -> None:
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        await write_atomic(target, pieces_then(fail_after, fail))
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


@pytest.mark.parametrize("at_chunk", [1, 6], ids=["before-spill", "after-spill"])
async def test_a_cancelled_write_leaves_nothing_behind(tmp_path: Path, at_chunk: int) -> None:
    target = tmp_path / "a.png"
    reached = anyio.Event()

    async def stall() -> None:
        reached.set()
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(write_atomic, target, pieces_then(at_chunk, stall))
        await reached.wait()
        assert (_parts(tmp_path) != []) == (at_chunk * 256 * 1024 > SPILL_BYTES)
        tg.cancel_scope.cancel()
    assert list(tmp_path.iterdir()) == []


async def test_a_failing_disk_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", full)
    with pytest.raises(OSError, match="No space"):
        await write_atomic(tmp_path / "a.png", pieces(PNG))
    assert list(tmp_path.iterdir()) == []


async def test_a_temp_name_taken_by_another_writer_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(atomic, "_serial", itertools.count(7))
    stale = tmp_path / f".a.png.{os.getpid()}-7.part"
    stale.write_bytes(b"someone else's")
    await write_atomic(tmp_path / "a.png", pieces(PNG))
    assert (tmp_path / "a.png").read_bytes() == PNG
    assert stale.read_bytes() == b"someone else's"  # O_EXCL: never opened, never removed


async def test_checking_and_looking_up_outputs_stay_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``check`` (once a batch) and ``exists`` (once an item, before its POST) stat the disk."""
    loop_thread = threading.get_ident()
    seen: list[tuple[str, int]] = []
    for name in ("stat", "mkdir", "getxattr"):
        real = getattr(os, name)

        def call(*args: Any, _real: Callable[..., Any] = real, _name: str = name, **kw: Any) -> Any:
            seen.append((_name, threading.get_ident()))
            return _real(*args, **kw)

        monkeypatch.setattr(os, name, call)
    sink = DirectorySink(tmp_path / "out")
    url = "https://a.test/shoe.jpg"
    item = SinkItem(index=0, image_url=url, name=output_name(url), size="high_resolution")
    await sink.check()
    assert await sink.exists(item) is None
    await sink.store(item, pieces(PNG))
    assert await sink.exists(item) == str(tmp_path / "out" / item.name)
    assert {name for name, _ in seen} >= {"stat", "mkdir"}
    assert all(thread != loop_thread for _, thread in seen), seen


@pytest.mark.parametrize("links", [True, False], ids=["hard-links", "no-hard-links"])
async def test_a_write_that_must_not_replace_never_overwrites_even_in_a_race(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, links: bool
) -> None:
    if not links:  # FAT, some network mounts: os.link refuses with EPERM

        def no_link(*args: Any, **kwargs: Any) -> None:
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr(atomic.os, "link", no_link)
    target = tmp_path / "x.preview.png"
    umask = os.umask(0o022)  # read by setting it, and put back
    os.umask(umask)
    mode = 0o666 & ~umask

    async def then_another_writer() -> None:
        # Another item of the batch stores the same name meanwhile (after the
        # sink's `exists` said there was none).
        target.write_bytes(b"the other one's paid cutout")

    with pytest.raises(FileExistsError):
        await write_atomic(target, pieces_then(1, then_another_writer), replace=False)
    assert target.read_bytes() == b"the other one's paid cutout"
    assert _parts(tmp_path) == []
    fresh = await write_atomic(tmp_path / "y.png", pieces(PNG), replace=False)
    assert fresh.read_bytes() == PNG
    assert fresh.stat().st_mode & 0o777 == mode  # the umask's mode, as open() gives
    assert _parts(tmp_path) == []


async def test_a_folder_sink_keeps_a_file_that_appeared_and_says_so(tmp_path: Path) -> None:
    a, b = "https://a.test/x.jpg", "https://a.test/x.preview.jpg"
    sink = DirectorySink(tmp_path)
    first = SinkItem(index=0, image_url=a, name="x.preview.png", size="preview")
    second = SinkItem(index=1, image_url=b, name="x.preview.png", size="high_resolution")
    await sink.store(first, pieces(PNG))
    with pytest.raises(OutputConflictError, match="was written by another item"):
        await sink.store(second, pieces(b"other bytes"))
    assert (tmp_path / "x.preview.png").read_bytes() == PNG
    if recorded_source(tmp_path / "x.preview.png") == a:  # where xattrs are kept
        # The same URL's cutout already there: stored, not a conflict.
        assert await sink.store(first, pieces(PNG)) == str(tmp_path / "x.preview.png")
    replacing = DirectorySink(tmp_path, overwrite=True)
    await replacing.store(second, pieces(b"other bytes"))
    assert (tmp_path / "x.preview.png").read_bytes() == b"other bytes"


@pytest.mark.parametrize("letter", ["x", "é"])
@pytest.mark.parametrize("replace", [True, False])
async def test_a_name_that_fits_its_folder_is_stored_however_long(
    tmp_path: Path, letter: str, replace: bool
) -> None:
    """Whether a name fits is known before the POST (`DirectorySink.exists` stats it): the
    temp name must then fit too, or the store fails after the credit was spent."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    stem = letter * ((limit - 4) // len(letter.encode()))
    sink = DirectorySink(tmp_path, overwrite=replace)
    item = SinkItem(
        index=0, image_url="https://example.com/a.png", name=stem + ".png", size="preview"
    )
    assert await sink.exists(item) is None  # the name fits: a longer one raises ENAMETOOLONG
    assert await sink.store(item, pieces(PNG)) == str(tmp_path / item.name)
    assert (tmp_path / item.name).read_bytes() == PNG
    assert _parts(tmp_path) == []


def test_a_temp_name_keeps_whole_characters() -> None:
    name = atomic.temp_name("a" * 39 + "é" * 10)
    assert name.startswith("." + "a" * 39 + ".")  # the é cut in two is dropped, not mangled
