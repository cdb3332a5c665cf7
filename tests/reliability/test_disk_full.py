"""A disk that fills mid-run: every answer paid for ends up stored or journaled, never neither.

The journal's writes go through `FakeDisk`, a stand-in for the ``os`` module that gives
a fixed number of bytes and then ``ENOSPC``, as a full filesystem does (short writes
first). The sink draws on the same disk. Without the journal's reserve, the answers in
flight when the disk fills could be neither stored nor journaled, and the rerun paid
for them again.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import freepik_bg
from freepik_bg import (
    Cutout,
    ItemResult,
    Journal,
    JournalError,
    MemorySink,
    SinkItem,
    _journal,
    _journal_reserve,
    _report,
)
from freepik_bg._cli import main
from freepik_bg.testing import Emulator

from ..conftest import CLI, KEY, cli_env, links, run_cli


class FakeDisk:
    """``os`` for the journal, on a disk with ``free`` bytes left."""

    def __init__(self, free: int) -> None:
        self.free = free

    def write(self, fd: int, data: bytes) -> int:
        if self.free <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        part = bytes(data[: self.free])  # a short write, as a nearly full disk gives
        written = os.write(fd, part)
        self.free -= written
        return written

    def unlink(self, path: str | os.PathLike[str]) -> None:
        size = os.path.getsize(path)
        os.unlink(path)
        self.free += size

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


class DiskSink(MemorySink):
    """Keeps results in memory, as long as they fit on `disk`."""

    def __init__(self, disk: FakeDisk) -> None:
        super().__init__()
        self.disk = disk

    async def store(self, item: SinkItem, chunks: AsyncIterator[bytes]) -> str:
        data = b"".join([chunk async for chunk in chunks])
        if len(data) > self.disk.free:
            self.disk.free = 0  # the part written before the failure, and everyone else's
            raise OSError(errno.ENOSPC, "No space left on device")
        self.disk.free -= len(data)
        self.data[item.name] = data
        return item.name


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> FakeDisk:
    fake = FakeDisk(free=10**9)
    monkeypatch.setattr(_journal, "os", fake)
    monkeypatch.setattr(_journal_reserve, "os", fake)
    return fake


def cutout(url: str) -> Cutout:
    return Cutout.from_response(links(), image_url=url)


def paid(journal_path: Path) -> list[str]:
    reloaded = Journal(journal_path)
    return [u for u in URLS if reloaded.pending_cutout(u) or reloaded.is_stored(u)]


URLS = [f"https://shop.test/{i}.jpg" for i in range(40)]


def test_a_run_holds_a_reserve_and_gives_it_back_on_close(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.open()
    reserve = tmp_path / "j.jsonl.reserve"
    assert reserve.stat().st_size == _journal_reserve.RESERVE_BYTES
    journal.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.jsonl"]


def test_a_journal_left_open_leaves_no_reserve_behind(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.record_posted(0, cutout(URLS[0]))  # opens it, and so holds the reserve
    assert (tmp_path / "j.jsonl.reserve").exists()
    del journal  # never closed
    gc.collect()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.jsonl"]
    # ... nor at the interpreter's exit.
    script = "import sys; from freepik_bg import Journal; kept = Journal(sys.argv[1]); kept.open()"
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "k.jsonl")], check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.jsonl", "k.jsonl"]


def test_the_lines_of_answers_in_flight_go_into_the_reserve(tmp_path: Path, disk: FakeDisk) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    journal.open()
    journal.record_posted(0, cutout(URLS[0]))
    disk.free = 100  # less than a line: the disk fills during the next one
    with pytest.raises(JournalError, match="is full: nothing more is sent"):
        journal.record_posted(1, cutout(URLS[1]))
    for i in range(2, 30):  # the others in flight: written into the reserve's room
        journal.record_posted(i, cutout(URLS[i]))
    journal.close()
    assert paid(path) == URLS[:30]
    assert not (tmp_path / "j.jsonl.reserve").exists()
    assert Journal(path).torn_lines == 0


def test_a_line_cut_short_is_not_glued_to_the_next(tmp_path: Path, disk: FakeDisk) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    journal.open()
    disk.free = 0
    with pytest.raises(JournalError, match="is full"):
        journal.record_posted(0, cutout(URLS[0]))  # into the reserve
    disk.free = 100  # the reserve is spent, and 100 bytes are left
    with pytest.raises(JournalError, match="cannot write the journal"):
        journal.record_posted(1, cutout(URLS[1]))  # 100 bytes of it land
    disk.free = 10**9  # room again (another program deleted something)
    journal.record_posted(2, cutout(URLS[2]))
    journal.close()
    reloaded = Journal(path)
    assert reloaded.torn_lines == 1  # the cut line, on its own
    assert paid(path) == [URLS[0], URLS[2]]


def test_no_room_for_the_reserve_is_an_error_before_anything_is_sent(
    tmp_path: Path, disk: FakeDisk
) -> None:
    disk.free = _journal_reserve.RESERVE_BYTES // 2
    journal = Journal(tmp_path / "j.jsonl")
    with pytest.raises(JournalError, match=r"not enough free space.*nothing was sent"):
        journal.open()
    assert not (tmp_path / "j.jsonl.reserve").exists()
    assert disk.free == _journal_reserve.RESERVE_BYTES // 2  # the part it wrote is given back


def test_a_journal_on_a_device_holds_no_reserve(tmp_path: Path) -> None:
    journal = Journal(os.devnull)
    journal.open()
    journal.record_posted(0, cutout(URLS[0]))
    journal.close()
    assert not Path(os.devnull + ".reserve").exists()


@pytest.mark.anyio
async def test_a_disk_that_fills_mid_batch_costs_nothing_twice(
    emu: Emulator, tmp_path: Path, disk: FakeDisk
) -> None:
    emu.configure(latency=0.02)  # answers overlap: several in flight when the disk fills
    urls = [f"{emu.image_url('ball-small.png')}?full={i}" for i in range(40)]
    path = tmp_path / "j.jsonl"
    sink = DiskSink(disk)
    size = len(await _one_result(emu))
    emu.reset_stats()
    disk.free = _journal_reserve.RESERVE_BYTES + 10 * size  # the reserve, and ten results
    stopped: freepik_bg.FreepikError | None = None
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        try:
            await client.run_batch(urls, sink, journal=path, rate=None, concurrency=8)
        except freepik_bg.FreepikError as exc:
            stopped = exc
        first = emu.stats.credits_charged
        assert 10 <= first < 40  # it stopped sending, and some paid answers were not stored
        disk.free = 10**9  # the user frees space and reruns at once
        report = await client.run_batch(urls, sink, journal=path, rate=None, concurrency=8)
    assert len(report.stored) + len(report.skipped) == 40
    assert len(sink.data) == 40
    assert emu.stats.credits_charged == 40  # every answer was bought once
    assert isinstance(stopped, JournalError)
    assert "is full: nothing more is sent" in str(stopped)


async def _one_result(emu: Emulator) -> bytes:
    sink = MemorySink()
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        await client.run_batch([emu.image_url("ball-small.png") + "?probe"], sink, rate=None)
    (data,) = sink.data.values()
    return data


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_the_cli_says_a_journal_that_fails_mid_run_stopped_it(
    emu: Emulator, tmp_path: Path
) -> None:
    # Credits were spent by then: a stopped run (exit 3, its summary and report), not the
    # usage error (exit 2, "nothing was sent") it used to be reported as.
    listing = tmp_path / "urls.txt"
    listing.write_text("".join(f"{emu.image_url('ball-small.png')}?j={i}\n" for i in range(5)))
    out, report = tmp_path / "out", tmp_path / "report.jsonl"
    flags = ["--base-url", emu.base_url, "--rate", "off", "--progress", "plain"]
    flags += ["--journal", "/dev/full", "--report", str(report)]
    done = run_cli(["remove", str(listing), "-o", str(out), *flags])
    assert done.returncode == 3, done.stderr
    assert "freepik-bg: stopped: cannot write the journal /dev/full" in done.stderr
    assert "done:" in done.stdout + done.stderr  # the summary
    summary = json.loads(report.read_text())["summary"]
    assert summary["stop_reason"].startswith("cannot write the journal /dev/full")
    # What was paid for before it stopped was still stored.
    assert len(list(out.glob("*.png"))) == emu.stats.credits_charged >= 1


class _ReportOs:
    """``os`` for the report writer, whose files take ``room`` characters and then fail
    as a full disk does."""

    def __init__(self, room: int) -> None:
        self.room = room

    def fdopen(self, fd: int, *args: Any, **kwargs: Any) -> Any:
        disk, real = self, os.fdopen(fd, *args, **kwargs)

        class Full:
            def write(self, text: str) -> int:
                if len(text) > disk.room:
                    raise OSError(errno.ENOSPC, "No space left on device")
                disk.room -= len(text)
                return real.write(text)

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

        return Full()

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def test_a_report_that_fills_the_disk_is_dropped_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_report, "os", _ReportOs(room=150))
    writer = _report.ReportWriter(tmp_path / "report.json")
    for i in range(5):  # the third one does not fit: no error here, the batch goes on
        writer.add(ItemResult(index=i, image_url=URLS[i], ok=True, location=f"{i}.png"))
    with pytest.raises(OSError, match="No space left"):
        writer.finish({"total": 5})
    assert list(tmp_path.iterdir()) == []  # no report, and no temp file beside it


def test_the_cli_says_a_report_it_could_not_write_and_the_rerun_writes_it(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("FREEPIK_API_KEY", KEY)
    urls = [f"{emu.image_url('ball-small.png')}?report={i}" for i in range(6)]
    listing = tmp_path / "urls.txt"
    listing.write_text("".join(f"{url}\n" for url in urls))
    out, report = tmp_path / "out", tmp_path / "report.json"
    args = ["remove", str(listing), "-o", str(out), "--report", str(report)]
    args += ["--base-url", emu.base_url, "--rate", "off", "--progress", "plain"]
    with monkeypatch.context() as patch:
        patch.setattr(_report, "os", _ReportOs(room=400))  # full after a couple of items
        code = main(args)
    stderr = capsys.readouterr().err
    # Every item was stored all the same; the run says what happened and exits 3.
    assert code == 3, stderr
    assert f"cannot write the report {report}: No space left on device" in stderr
    assert len(list(out.glob("*.png"))) == emu.stats.credits_charged == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "urls.txt"]
    # With room again, the rerun writes it and pays for nothing.
    assert main(args) == 0
    written = json.loads(report.read_text())
    assert [item["status"] for item in written["items"]] == ["skipped"] * 6
    assert emu.stats.credits_charged == 6


def test_a_report_that_cannot_be_created_is_refused_before_any_post(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    def no_room(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setenv("FREEPIK_API_KEY", KEY)
    monkeypatch.setattr(_report, "tempfile", SimpleNamespace(mkstemp=no_room))
    listing = tmp_path / "urls.txt"
    listing.write_text(f"{emu.image_url('ball-small.png')}?nocreate\n")
    report = tmp_path / "report.json"
    args = ["remove", str(listing), "-o", str(tmp_path / "out"), "--report", str(report)]
    code = main([*args, "--base-url", emu.base_url, "--progress", "plain"])
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    assert f"--report {report}: cannot create it: No space left on device" in stderr
    assert emu.stats.posts == 0


def test_a_report_failure_adds_to_why_the_run_stopped(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("FREEPIK_API_KEY", "not-the-key")  # the batch stops at the first 401
    monkeypatch.setattr(_report, "os", _ReportOs(room=0))
    listing = tmp_path / "urls.txt"
    listing.write_text(f"{emu.image_url('ball-small.png')}?wrongkey\n")
    report = tmp_path / "report.json"
    args = ["remove", str(listing), "-o", str(tmp_path / "out"), "--report", str(report)]
    code = main([*args, "--base-url", emu.base_url, "--progress", "plain"])
    stopped = [line for line in capsys.readouterr().err.splitlines() if "stopped:" in line]
    assert code == 3
    assert len(stopped) == 1
    assert "FREEPIK_API_KEY" in stopped[0]  # the first reason, still said
    assert f"; cannot write the report {report}" in stopped[0]


def test_a_report_to_a_pipe_closed_early_is_said_once(emu: Emulator, tmp_path: Path) -> None:
    # `freepik-bg remove ... --report - | head`: the reader goes away before the report.
    listing = tmp_path / "urls.txt"
    listing.write_text("".join(f"{emu.image_url('ball-small.png')}?pipe={i}\n" for i in range(4)))
    args = ["remove", str(listing), "-o", str(tmp_path / "out"), "--report", "-"]
    reader, writer = os.pipe()
    os.close(reader)  # gone before the command starts: every write to it fails
    try:
        proc = subprocess.Popen(
            [*CLI, *args, "--base-url", emu.base_url, "--progress", "plain"],
            env=cli_env(),
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        os.close(writer)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 3, stderr
    assert "cannot write the report -: Broken pipe" in stderr
    assert "stored and journaled: a rerun writes it)" in stderr
    assert "Traceback" not in stderr
    assert "Exception ignored" not in stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == emu.stats.credits_charged == 4
