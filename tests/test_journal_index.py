"""The journal's checkpoint (``<journal>.idx``): a resume from it knows exactly what a full
parse knows, and a checkpoint that does not match its journal is never trusted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from freepik_bg import (
    Cutout,
    InternalServerError,
    ItemResult,
    Journal,
    _journal as journal_module,
    _journal_index as journal_index,
)
from freepik_bg._journal_index import _FORMAT, index_path, read_checkpoint, write_checkpoint
from freepik_bg._journal_keys import digest64
from freepik_bg._u64map import U64Set

from .conftest import links


@pytest.fixture(autouse=True)
def small_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    # Checkpoint tiny journals, and often, so that every path runs on a few lines.
    monkeypatch.setattr(journal_module, "INDEX_MIN_BYTES", 0)
    monkeypatch.setattr(journal_module, "CHECKPOINT_LINES", 4)


def cutout(url: str, age: float = 0.0) -> Cutout:
    received = datetime.now(timezone.utc) - timedelta(seconds=age)
    return Cutout.from_response(links(), image_url=url, received_at=received)


def state(journal: Journal) -> tuple[Any, ...]:
    posted = {
        key: (rec["url"], rec["received_at"], rec["links"]) for key, rec in journal._posted.items()
    }
    return sorted(journal._done), posted, journal.torn_lines, journal._offset, journal._crc


def full_parse(path: Path) -> Journal:
    """The journal read line by line, its checkpoint out of the way."""
    idx = index_path(path)
    saved = idx.read_bytes() if idx.exists() else None
    idx.unlink(missing_ok=True)
    try:
        return Journal(path)
    finally:
        if saved is not None:
            idx.write_bytes(saved)


def every_kind(journal: Journal, tag: str = "") -> None:
    """Posted (live, expired), stored (renditions, names), failed, partly stored."""
    a, b, c = (f"https://a.test/{tag}{x}.jpg" for x in "abc")
    journal.record_posted(0, cutout(a))
    journal.record(ItemResult(index=0, image_url=a, ok=True, location="a.png"))
    journal.record_posted(1, cutout(b, age=600))  # long expired
    journal.record(
        ItemResult(
            index=1,
            image_url=b,
            ok=True,
            location="b.png",
            locations={"high_resolution": "b.png", "preview": "b-p.png"},
        )
    )
    journal.record(ItemResult(index=2, image_url=a, ok=True, location="sku.png"), name="SKU-1")
    journal.record_posted(3, cutout(c))  # paid, never stored: its links must survive
    failure = InternalServerError("boom", status_code=500)
    journal.record(
        ItemResult(
            index=4,
            image_url=c,
            ok=False,
            error=failure,
            locations={"preview": "c-p.png"},
        )
    )


def legacy_and_torn_lines(path: Path) -> None:
    with path.open("a") as fh:
        fh.write('{"v":1,"event":"done","url":"https://a.test/old.jpg","size":"original"}\n')
        fh.write("not json at all\n")


def test_a_resume_from_the_checkpoint_knows_what_a_full_parse_knows(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    legacy_and_torn_lines(path)
    journal = Journal(path)
    every_kind(journal)
    journal.close()
    assert index_path(path).exists()

    resumed = Journal(path)
    assert state(resumed) == state(full_parse(path))
    assert resumed._checkpointed == path.stat().st_size  # nothing was parsed line by line
    assert resumed.is_stored("https://a.test/a.jpg")
    assert resumed.is_stored("https://a.test/b.jpg", "preview")
    assert resumed.is_stored("https://a.test/a.jpg", name="SKU-1")
    assert resumed.is_stored("https://a.test/c.jpg", "preview")
    assert not resumed.is_stored("https://a.test/c.jpg")
    assert resumed.is_stored("https://a.test/old.jpg", "original")
    assert resumed.torn_lines == 1
    paid = resumed.live_cutout("https://a.test/c.jpg")
    assert paid is not None
    assert paid.high_resolution == links()["high_resolution"]
    assert resumed.live_cutout("https://a.test/b.jpg") is None

    # A second run appends; the next resume replays only its lines after the checkpoint.
    resumed.open()
    every_kind(resumed, tag="2-")
    resumed.close()
    again = Journal(path)
    assert state(again) == state(full_parse(path))
    assert again.is_stored("https://a.test/2-a.jpg")


def test_lines_after_the_checkpoint_are_replayed_after_a_kill(tmp_path: Path) -> None:
    # A real kill -9 mid-run: checkpoints every 4 lines, then lines it never covered.
    path = tmp_path / "j.jsonl"
    script = textwrap.dedent(
        f"""
        import os, signal
        from freepik_bg import ItemResult, Journal
        from freepik_bg import _journal
        _journal.INDEX_MIN_BYTES = 0
        _journal.CHECKPOINT_LINES = 4
        journal = Journal({str(path)!r})
        for i in range(10):
            url = f"https://a.test/{{i}}.jpg"
            journal.record(ItemResult(index=i, image_url=url, ok=True, location="x"))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    resumed = Journal(path)
    assert 0 < resumed._checkpointed < path.stat().st_size  # an older checkpoint
    assert state(resumed) == state(full_parse(path))
    assert all(resumed.is_stored(f"https://a.test/{i}.jpg") for i in range(10))


def test_an_older_checkpoint_is_completed_by_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    every_kind(journal)
    journal.close()
    old = index_path(path).read_bytes()
    journal = Journal(path)
    journal.record_posted(9, cutout("https://a.test/late.jpg"))
    journal.close()
    index_path(path).write_bytes(old)  # the sidecar write never happened

    resumed = Journal(path)
    assert state(resumed) == state(full_parse(path))
    assert resumed.live_cutout("https://a.test/late.jpg") is not None


def test_a_torn_last_line_after_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    every_kind(journal)
    journal.close()
    with path.open("a") as fh:
        fh.write('{"v":1,"event":"stored","url":"https://a.te')  # a crash mid-write

    resumed = Journal(path)
    assert resumed.torn_lines == 1
    assert state(resumed) == state(full_parse(path))
    resumed.record(ItemResult(index=7, image_url="https://a.test/7.jpg", ok=True, location="7"))
    resumed.close()
    final = Journal(path)
    assert final.torn_lines == 1
    assert final.is_stored("https://a.test/7.jpg")
    assert state(final) == state(full_parse(path))


def rewrite_same_size(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data.replace(b"a.test/a.jpg", b"a.test/z.jpg"))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"\n") + 1])


def replace_with_another_journal(path: Path) -> None:
    other = path.with_name("other.jsonl")
    journal = Journal(other)
    journal.record(ItemResult(index=0, image_url="https://b.test/1.jpg", ok=True, location="1"))
    journal.close()
    os.replace(other, path)


def truncate_and_grow(path: Path) -> None:
    size = path.stat().st_size
    truncate(path)
    with path.open("a") as fh:
        fh.write("x" * (size - path.stat().st_size - 1) + "\n")


@pytest.mark.parametrize(
    "change", [rewrite_same_size, truncate, replace_with_another_journal, truncate_and_grow]
)
def test_a_checkpoint_of_another_journal_is_never_trusted(tmp_path: Path, change: Any) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    every_kind(journal)
    journal.close()
    checkpoint = index_path(path).read_bytes()
    change(path)
    index_path(path).write_bytes(checkpoint)

    resumed = Journal(path)
    assert resumed._checkpointed == 0
    assert state(resumed) == state(full_parse(path))
    assert not resumed.is_stored("https://a.test/a.jpg")


def flip_a_key_byte(data: bytes) -> bytes:
    at = len(data) // 2
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


@pytest.mark.parametrize(
    "damage",
    [
        flip_a_key_byte,
        lambda data: data[:-1],
        lambda data: data[: len(data) // 2],
        lambda data: b"",
        lambda data: b"garbage\n" * 40,
        lambda data: data.replace(b'"format": %d' % _FORMAT, b'"format": 99'),
    ],
    ids=["flipped", "short", "half", "empty", "garbage", "other-format"],
)
def test_a_damaged_checkpoint_means_a_full_parse(tmp_path: Path, damage: Any) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    every_kind(journal)
    journal.close()
    idx = index_path(path)
    idx.write_bytes(damage(idx.read_bytes()))

    resumed = Journal(path)
    assert resumed._checkpointed == 0
    assert state(resumed) == state(full_parse(path))
    # ... and the run after it writes a good one again.
    resumed.open()
    resumed.record(ItemResult(index=5, image_url="https://a.test/5.jpg", ok=True, location="5"))
    resumed.close()
    assert Journal(path)._checkpointed == path.stat().st_size


def reseal(data: bytes, change: Any) -> bytes:
    """A checkpoint changed by ``change(header, table) -> (header, table)``, with a valid
    digest again: what only a bug (or a hand) could write."""
    import hashlib
    import json

    body = data[:-32]
    magic_end = body.index(b"\n") + 1
    header_end = body.index(b"\n", magic_end) + 1
    header = json.loads(body[magic_end:header_end])
    table_end = header_end + 8 * header["keys"]
    header, table = change(header, body[header_end:table_end])
    body = body[:magic_end] + json.dumps(header).encode() + b"\n" + table + body[table_end:]
    return body + hashlib.blake2b(body, digest_size=32).digest()


def not_a_power_of_two(header: dict[str, Any], table: bytes) -> tuple[dict[str, Any], bytes]:
    return {**header, "keys": header["keys"] - 1}, table[:-8]


def over_full(header: dict[str, Any], table: bytes) -> tuple[dict[str, Any], bytes]:
    # Every slot taken: a lookup of a key not there would probe forever.
    return header, b"\x07" * len(table)


@pytest.mark.parametrize("change", [not_a_power_of_two, over_full])
def test_a_checkpoint_whose_table_is_not_one_means_a_full_parse(
    tmp_path: Path, change: Any
) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    every_kind(journal)
    journal.close()
    idx = index_path(path)
    idx.write_bytes(reseal(idx.read_bytes(), change))

    resumed = Journal(path)
    assert resumed._checkpointed == 0
    assert state(resumed) == state(full_parse(path))
    assert not resumed.is_stored("https://a.test/not-there.jpg")


def test_done_keys_take_a_table_not_a_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A journal of tens of millions of stored items is resumed: a set of ints (~75 bytes a
    # key) held gigabytes for it. Measured on what a resume keeps, both ways it loads.
    import tracemalloc

    monkeypatch.setattr(journal_module, "CHECKPOINT_LINES", 1_000_000)  # one, at close
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    journal.open()
    n = 20_000
    for i in range(n):
        journal.record(ItemResult(index=i, image_url=f"https://a.test/{i}.jpg", ok=True))
    journal.close()
    for resume in (lambda: Journal(path), lambda: full_parse(path)):
        tracemalloc.start()
        try:
            resumed = resume()
            kept, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert resumed.completed == n
        assert resumed.is_stored(f"https://a.test/{n - 1}.jpg")
        assert kept < 30 * n, kept  # a set of them: ~75 bytes a key


def test_a_checkpoint_from_before_url_identities_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Format 1 keyed URLs as written: trusted, it would not know HTTPS://A.test/x.jpg is
    # https://a.test/x.jpg. Its journal's lines are read again instead.
    path = tmp_path / "j.jsonl"
    url = "HTTPS://A.test/x.jpg"
    journal = Journal(path)
    journal.record(ItemResult(index=0, image_url=url, ok=True, location="x.png"))
    journal.close()
    with path.open("rb") as fh:
        current = read_checkpoint(path, fh)
    assert current is not None
    monkeypatch.setattr(journal_index, "_FORMAT", 1)
    old_key = digest64(url)  # what format 1's url_key made of it
    write_checkpoint(
        path,
        offset=current.offset,
        crc=current.crc,
        torn_lines=0,
        done=U64Set([old_key]),
        posted=[],
    )
    monkeypatch.undo()

    resumed = Journal(path)
    assert resumed._checkpointed == 0
    assert resumed.is_stored("https://a.test/x.jpg")
    assert resumed.is_stored(url)


def test_a_run_between_our_load_and_our_lock_is_caught_up(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    ours = Journal(path)
    theirs = Journal(path)
    every_kind(theirs)
    theirs.close()
    ours.open()  # the lock: now the journal holds still
    assert ours.is_stored("https://a.test/a.jpg")
    assert ours.live_cutout("https://a.test/c.jpg") is not None
    ours.record(ItemResult(index=8, image_url="https://a.test/8.jpg", ok=True, location="8"))
    ours.close()
    assert state(Journal(path)) == state(full_parse(path))


def test_small_journals_get_no_checkpoint_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "INDEX_MIN_BYTES", 1 << 20)
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    every_kind(journal)
    journal.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.jsonl"]
