"""An append-only JSON-lines journal that makes long batches resumable.

Each line is one event:

* ``posted``: the service answered with links (written before the download,
  so a crash between the two does not lose what was paid for: a rerun within
  the links' lifetime downloads them without a new POST);
* ``stored``: the item is stored (``location`` says where; journals written
  before 0.2 say ``done``, which is read the same way);
* ``failed``: the item failed (``error`` says why); a rerun tries it again.

Lines are written whole, one unbuffered ``write()`` each; a torn last line (from a
crash mid-write) is ignored on load. The journal holds URLs, results and
error messages, never the API key.

While a run has it open, the journal holds 1 MiB of its disk in a file beside
it (``<journal>.reserve``, removed on close). When the disk fills, the reserve is given
back and the lines of the answers still in flight are written into that room: an answer
paid for is never left neither stored nor journaled, which the rerun would pay for again.

A journal past `INDEX_MIN_BYTES` gets a checkpoint beside it (``<journal>.idx``,
see `_journal_index`), written on close and every `CHECKPOINT_LINES` lines, so
that a resume parses only the lines after it.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import sys
import time
import weakref
import zlib
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from . import _journal_reserve as reserve
from ._errors import FreepikError, JournalError
from ._journal_index import extend_crc, read_checkpoint, write_checkpoint
from ._journal_keys import DEFAULT_SIZE, done_key, recent_done_key, recent_url_key, url_key
from ._journal_lines import (
    dumps_line,
    item_record,
    posted_line,
    posted_record,
    stored_line,
    utc_stamp,
)
from ._models import LINK_TTL, SIZES, Cutout, ItemResult
from ._u64map import U64Set

__all__ = ["Journal"]

logger = logging.getLogger("freepik_bg")

_LINK_SECONDS = LINK_TTL.total_seconds()

INDEX_MIN_BYTES = 1 << 20
"""Below this size a journal parses in well under 0.1 s and gets no checkpoint file."""
CHECKPOINT_LINES = 100_000
"""A run writes a checkpoint every this many lines, so that after a kill -9 a resume
replays at most about this many (~1 s) instead of the whole journal."""


class Journal:
    """Records finished items and tells a rerun which ones to skip.

    Examples:
        >>> journal = Journal("run.jsonl")  # an earlier run's journal, if any
        >>> journal.is_stored("https://example.com/a.jpg")
        False
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        # Unboxed: ~12-24 bytes a stored rendition, where a set of ints costs ~75.
        self._done = U64Set()
        # Paid-for links that may still live, stored or not (a later run may want
        # another rendition): raw records, parsed only when asked for. Records
        # are dropped once expired, oldest first, so memory stays at what one
        # LINK_TTL of posting holds, however long the journal.
        self._posted: dict[int, dict[str, Any]] = {}
        self._expiries: collections.deque[tuple[float, int, dict[str, Any]]] = collections.deque()
        self.torn_lines = 0
        self._fh: IO[bytes] | None = None
        # The bytes the state above reflects, and the CRC-32 of the first _crc_offset of
        # them (a checkpoint's identity check: the lines this run appends are added only
        # when a checkpoint is written, read back from the file, not on every append);
        # whether a checkpoint may be written (not after a failed write, which may have
        # left part of a line), and where the last one was.
        self._offset = 0
        self._crc = 0
        self._crc_offset = 0
        self._indexable = True
        self._checkpointed = 0
        self._unchecked_lines = 0
        # The reserve file while we hold it; whether a failed write left part of a line.
        self._reserve: weakref.finalize[[Path | None], Journal] | None = None
        self._torn = False
        self._load()

    def _load(self) -> None:
        # Only a regular file holds earlier runs; a device or a pipe (/dev/full,
        # /dev/null) would read forever or block.
        if not self.path.is_file():
            return
        with self.path.open("rb") as fh:
            checkpoint = read_checkpoint(self.path, fh)
            if checkpoint is not None:
                self._done = checkpoint.done
                for record in checkpoint.posted:
                    self._remember(url_key(str(record.get("url"))), record)
                self.torn_lines = checkpoint.torn_lines
                self._offset = self._checkpointed = checkpoint.offset
                self._crc = checkpoint.crc
            else:
                fh.seek(0)
            for line in fh:
                self._offset += len(line)
                self._crc = zlib.crc32(line, self._crc)
                self._apply(line.decode("utf-8", "replace"))
        self._crc_offset = self._offset
        if self.torn_lines:
            logger.warning("journal %s: ignored %d unreadable line(s)", self.path, self.torn_lines)

    def _apply(self, line: str) -> None:
        try:
            record = json.loads(line)
            event = record["event"]
            url = record["url"]
        except (ValueError, KeyError, TypeError):
            self.torn_lines += 1
            return
        if event in ("stored", "done"):
            # Journals before several renditions per item name one "size".
            sizes = record.get("sizes") or [record.get("size", DEFAULT_SIZE)]
            name = record.get("name")
            for size in sizes:
                self._done.add(done_key(str(url), str(size), None if name is None else str(name)))
        elif event == "posted":
            self._remember(url_key(str(url)), record)

    def _remember(self, key: int, record: dict[str, Any], received: float | None = None) -> None:
        if received is None:
            try:
                received = datetime.fromisoformat(record["received_at"]).timestamp()
            except (KeyError, TypeError, ValueError):
                return
        now = time.time()
        expires = received + _LINK_SECONDS
        if expires > now:
            self._posted[key] = record
            self._expiries.append((expires, key, record))
        # Posting order is expiry order: the front is the oldest.
        while self._expiries and self._expiries[0][0] <= now:
            _, old_key, old = self._expiries.popleft()
            if self._posted.get(old_key) is old:
                del self._posted[old_key]

    @staticmethod
    def _cutout_from(record: dict[str, Any]) -> Cutout | None:
        try:
            links = record["links"]
            received = datetime.fromisoformat(record["received_at"])
            return Cutout.from_response(links, image_url=record["url"], received_at=received)
        except (KeyError, TypeError, ValueError, FreepikError):
            return None

    @property
    def completed(self) -> int:
        """How many distinct (URL, rendition) pairs are stored."""
        return len(self._done)

    def is_stored(self, url: str, size: str = DEFAULT_SIZE, name: str | None = None) -> bool:
        """Whether ``url``'s ``size`` rendition (under the chosen ``name``) was stored before."""
        return recent_done_key(url, size, name) in self._done

    def live_cutout(self, url: str) -> Cutout | None:
        """The links last paid for ``url``, stored or not, if they are still alive."""
        record = self._posted.get(recent_url_key(url))
        cutout = self._cutout_from(record) if record is not None else None
        if cutout is None or cutout.seconds_left() <= 5:
            return None
        return cutout

    def pending_cutout(self, url: str) -> Cutout | None:
        """Links paid for but no rendition of them stored, if they are still alive."""
        if any(recent_done_key(url, size, None) in self._done for size in SIZES):
            return None
        return self.live_cutout(url)

    def open(self) -> None:
        """Open for appending and take the run's exclusive lock; before any credit is spent.

        Two runs writing one journal (and so, by default, one output folder)
        would each pay for the same items: the second is refused with a
        `JournalError` instead. The lock goes with the process, even on ``kill -9``.
        """
        if self._fh is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("ab", buffering=0)
        except OSError as exc:
            raise JournalError(f"cannot open the journal {self.path}: {exc.strerror}") from exc
        self._lock()
        try:
            self._catch_up()
        except OSError as exc:
            self._indexable = False
            self.close()
            raise JournalError(f"cannot read the journal {self.path}: {exc.strerror}") from exc
        self._hold_reserve()

    def _hold_reserve(self) -> None:
        assert self._fh is not None
        try:
            held = reserve.hold(self.path, self._fh.fileno())
        except OSError as exc:
            self.close()
            raise JournalError(
                f"not enough free space beside the journal {self.path}: it needs "
                f"{reserve.RESERVE_BYTES >> 20} MiB, besides room for the results; free some "
                "space and run again (nothing was sent)"
            ) from exc
        if held is not None:
            # Given back on close, or else when the journal is collected or the
            # interpreter exits: a journal left open leaves no reserve behind.
            self._reserve = weakref.finalize(self, reserve.give_back, held)

    def _give_back_reserve(self) -> bool:
        held, self._reserve = self._reserve, None
        return held is not None and bool(held())

    def _catch_up(self) -> None:
        assert self._fh is not None
        size = os.fstat(self._fh.fileno()).st_size
        if size != self._offset:
            # Another run wrote it between our load and our lock: load again, now that
            # the lock keeps it still, so memory, file and checkpoint agree.
            fresh = Journal(self.path)
            names = (
                "_done",
                "_posted",
                "_expiries",
                "torn_lines",
                "_offset",
                "_crc",
                "_crc_offset",
            )
            for name in names:
                setattr(self, name, getattr(fresh, name))
            self._checkpointed = fresh._checkpointed
        if self._offset > 0:
            # A crash mid-write leaves a torn last line: start on a fresh one.
            with self.path.open("rb") as fh:
                fh.seek(self._offset - 1)
                if fh.read(1) != b"\n":
                    self._append(b"\n")

    def _lock(self) -> None:
        if sys.platform == "win32" or self._fh is None:  # pragma: no cover - POSIX only
            return
        import fcntl

        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._fh.close()
            self._fh = None
            raise JournalError(
                f"another run is using the journal {self.path} (and so, most likely, the same "
                "output folder): wait for it to finish, or give this run its own output "
                "and journal"
            ) from exc

    def _write(self, line: str) -> None:
        if self._fh is None:
            self.open()
            assert self._fh is not None
        try:
            data = line.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate (a str from undecodable bytes) has no UTF-8: write it as
            # JSON's \udcxx escape instead, which loads back as the same str.
            data = json.dumps(json.loads(line), separators=(",", ":")).encode() + b"\n"
        self._append(data)
        self._unchecked_lines += 1
        if self._unchecked_lines >= CHECKPOINT_LINES:
            self._checkpoint()

    def _append(self, data: bytes) -> None:
        assert self._fh is not None
        if self._torn:
            data = b"\n" + data  # after part of a line: start a fresh one
        # One unbuffered write per line (the file has no buffer): when it returns, the
        # line is with the OS and survives a kill -9 of this process.
        try:
            written = os.write(self._fh.fileno(), data)
        except OSError:
            written = 0  # tried again below, where the error is handled
        if written != len(data):
            self._append_rest(data, written)
        self._offset += len(data)

    def _append_rest(self, data: bytes, written: int) -> None:
        # A short write (a signal, a nearly full disk) goes on from where it stopped; a
        # full disk gets the reserve's room, once.
        assert self._fh is not None
        fd, full = self._fh.fileno(), False
        while written < len(data):
            try:
                written += os.write(fd, data[written:])
            except OSError as exc:
                if exc.errno in reserve.NO_SPACE and self._give_back_reserve():
                    full = True
                    continue  # the reserve's room is the disk's now: write the rest there
                # Part of the line may be in the file: no checkpoint can describe it now.
                self._indexable = False
                self._torn = self._torn or written > 0
                raise JournalError(f"cannot write the journal {self.path}: {exc.strerror}") from exc
        self._torn = False
        if full:
            self._offset += len(data)  # the line is whole in the file; _append stops here
            logger.warning("journal %s: its disk is full; writing into its reserve", self.path)
            raise JournalError(
                f"the disk of the journal {self.path} is full: nothing more is sent, and every "
                "answer already paid for is in the journal (in the room it had reserved); "
                "free some space and rerun within 5 minutes to download those without paying "
                "again"
            )

    def _checkpoint(self) -> None:
        # Only while we hold the lock (nobody else appends) and every line we wrote is
        # whole; memory then reflects exactly the journal's first _offset bytes.
        self._unchecked_lines = 0
        if (
            self._fh is None
            or not self._indexable
            or self._offset == self._checkpointed
            or self._offset < INDEX_MIN_BYTES
        ):
            return
        try:
            with self.path.open("rb") as fh:
                self._crc = extend_crc(fh, self._crc, self._crc_offset, self._offset)
            self._crc_offset = self._offset
        except OSError as exc:
            self._indexable = False  # no checkpoint then: a resume parses every line
            logger.warning("journal %s: no checkpoint written: %s", self.path, exc)
            return
        live = [rec for _, key, rec in self._expiries if self._posted.get(key) is rec]
        write_checkpoint(
            self.path,
            offset=self._offset,
            crc=self._crc,
            torn_lines=self.torn_lines,
            done=self._done,
            posted=live,
        )
        self._checkpointed = self._offset

    def record_posted(self, index: int, cutout: Cutout) -> None:
        """Note that ``cutout`` was paid for, before downloading it.

        The line is with the OS (written, not fsynced) when this returns. `JournalError`
        if it could not be written, and once when the disk filled and the line went
        into the journal's reserve: the line is written then, and the run should stop.
        """
        received_at = cutout.received_at.isoformat()
        record = posted_record(utc_stamp(), index, received_at, cutout)
        self._remember(recent_url_key(cutout.image_url), record, cutout.received_at.timestamp())
        self._write(posted_line(record["ts"], index, received_at, cutout))

    def record(self, result: ItemResult, size: str = DEFAULT_SIZE, name: str | None = None) -> None:
        """Append a finished item, under the chosen output ``name`` (skipped ones are not
        written again).

        The renditions stored are ``result.locations``' sizes, else ``size``.
        A failed item that stored some renditions first gets a ``stored``
        line for those, so that a rerun downloads only the rest.
        """
        if result.skipped:
            return
        sizes: list[str] = [*result.locations] or [size]
        if result.ok or result.locations:
            for stored in sizes:
                self._done.add(recent_done_key(result.image_url, stored, name))
            self._write(stored_line(utc_stamp(), sizes, name, result))
        if not result.ok:
            # A failed item stays retryable, and links it paid for stay usable.
            self._write(dumps_line(item_record(utc_stamp(), "failed", sizes, name, result)))

    def close(self) -> None:
        """Flush and close the file (and so release the run's lock and its reserve)."""
        self._give_back_reserve()
        if self._fh is not None:
            self._checkpoint()
            fh, self._fh = self._fh, None
            # Every line went to the OS as written: what is left is a line whose write
            # already failed and was raised as a JournalError.
            with contextlib.suppress(OSError):
                fh.close()

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}, completed={self.completed})"
