"""A checkpoint beside a journal (``<journal>.idx``): resuming a long journal reads a few
megabytes instead of parsing a million JSON lines.

It holds what `Journal` builds from the journal's first ``offset`` bytes (the done keys,
as the `U64Set` hash table they are in memory; the posted records that may still be
live; the torn-line count) and the CRC-32 of those bytes. A load trusts it only if the
journal's first ``offset`` bytes still have that CRC (reading them costs ~0.1 s per
400 MB), and then parses only the lines after ``offset``. Anything else (no checkpoint,
another format, a damaged or foreign one, a journal rewritten, truncated or replaced)
means a full parse: a wrong checkpoint could skip an item that is not stored, a missing
one only costs time.

It is written atomically (temp file, then rename) and only after the journal lines it
covers were flushed, so a kill -9 between the two leaves one covering fewer bytes than
the journal holds, and the lines after it are replayed. No fsync: a checkpoint that a
power loss leaves empty or torn fails its own checksum and is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import zlib
from array import array
from pathlib import Path
from typing import IO, Any

import attrs

from ._u64map import U64Set

__all__ = ["Checkpoint", "extend_crc", "index_path", "read_checkpoint", "write_checkpoint"]

logger = logging.getLogger("freepik_bg")

_MAGIC = b"freepik-bg journal index\n"
# Bump when the journal's key functions (_journal_keys) or this layout change: an old checkpoint is
# then ignored (full parse) instead of read wrongly. 2: keys are of the URL's identity;
# 3: the done keys are a U64Set's table.
_FORMAT = 3
_DIGEST = 32
_CHUNK = 1 << 20


def index_path(journal: Path) -> Path:
    """Where ``journal``'s checkpoint lives: beside it, with ``.idx`` appended."""
    return journal.with_name(journal.name + ".idx")


@attrs.frozen(slots=True)
class Checkpoint:
    """A journal's state after its first ``offset`` bytes (whose CRC-32 is ``crc``)."""

    offset: int
    crc: int
    torn_lines: int
    done: U64Set = attrs.field(eq=False)
    posted: list[dict[str, Any]]


def _pack(keys: U64Set) -> bytes:
    # The table whole, empty slots and all: one copy to write, one to load, where
    # packing the keys alone took a pass in Python over every slot.
    table = keys.table()
    if sys.byteorder == "big":  # pragma: no cover - stored little-endian everywhere
        table = array("Q", table)
        table.byteswap()
    return table.tobytes()


def _unpack(data: bytes) -> U64Set | None:
    packed = array("Q")
    packed.frombytes(data)
    if sys.byteorder == "big":  # pragma: no cover
        packed.byteswap()
    return U64Set.from_table(packed)


def write_checkpoint(
    journal: Path,
    *,
    offset: int,
    crc: int,
    torn_lines: int,
    done: U64Set,
    posted: list[dict[str, Any]],
) -> None:
    """Write ``journal``'s checkpoint atomically; a failure only costs the next resume time."""
    keys = _pack(done)
    posted_json = json.dumps(posted, ensure_ascii=False, separators=(",", ":")).encode()
    header = {
        "format": _FORMAT,
        "offset": offset,
        "crc": crc,
        "torn_lines": torn_lines,
        "keys": len(keys) // 8,
        "posted_bytes": len(posted_json),
    }
    body = b"".join([_MAGIC, json.dumps(header).encode() + b"\n", keys, posted_json])
    target = index_path(journal)
    temp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with temp.open("wb") as fh:
            fh.write(body)
            fh.write(hashlib.blake2b(body, digest_size=_DIGEST).digest())
        os.replace(temp, target)
    except OSError as exc:
        logger.debug("journal %s: checkpoint not written (%s)", journal, exc)
        with contextlib.suppress(OSError):
            temp.unlink()


def _parse(data: bytes) -> tuple[dict[str, Any], bytes, bytes] | None:
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if not body.startswith(_MAGIC) or hashlib.blake2b(body, digest_size=_DIGEST).digest() != digest:
        return None
    end = body.find(b"\n", len(_MAGIC))
    try:
        header = json.loads(body[len(_MAGIC) : end])
        keys_end = end + 1 + 8 * int(header["keys"])
        fields = [header[k] for k in ("format", "offset", "crc", "torn_lines", "posted_bytes")]
    except (ValueError, KeyError, TypeError):
        return None
    if not all(isinstance(v, int) and v >= 0 for v in fields) or header["format"] != _FORMAT:
        return None
    if keys_end + header["posted_bytes"] != len(body):
        return None
    return header, body[end + 1 : keys_end], body[keys_end:]


def extend_crc(fh: IO[bytes], crc: int, start: int, end: int) -> int:
    """``crc`` (of the file's first ``start`` bytes) extended over its bytes up to ``end``.

    A run keeps the CRC of what it loaded and reads the lines it appended back only when
    it writes a checkpoint: a CRC per line costs each item more than this costs a run.
    `OSError` if the file is shorter.

    Examples:
        >>> import io
        >>> extend_crc(io.BytesIO(b"ab"), zlib.crc32(b"a"), 1, 2) == zlib.crc32(b"ab")
        True
    """
    fh.seek(start)
    left = end - start
    while left > 0:
        chunk = fh.read(min(_CHUNK, left))
        if not chunk:
            raise OSError(f"the journal is {left} bytes shorter than its lines")
        crc = zlib.crc32(chunk, crc)
        left -= len(chunk)
    return crc


def _prefix_crc(fh: IO[bytes], offset: int) -> int | None:
    try:
        return extend_crc(fh, 0, 0, offset)
    except OSError:
        return None  # the journal is shorter than the checkpoint says


def read_checkpoint(journal: Path, fh: IO[bytes]) -> Checkpoint | None:
    """``journal``'s checkpoint if it matches the journal open as ``fh``, else None.

    On a match, ``fh`` is left at the checkpoint's offset: the lines after it are the
    caller's to replay.
    """
    try:
        data = index_path(journal).read_bytes()
    except OSError:
        return None
    parsed = _parse(data)
    if parsed is None:
        logger.info("journal %s: its checkpoint is unreadable; reading the whole journal", journal)
        return None
    header, keys, posted_json = parsed
    try:
        posted = json.loads(posted_json)
    except ValueError:
        return None
    if not isinstance(posted, list) or not all(isinstance(r, dict) for r in posted):
        return None
    if _prefix_crc(fh, header["offset"]) != header["crc"]:
        logger.info("journal %s changed since its checkpoint; reading the whole journal", journal)
        return None
    done = _unpack(keys)
    if done is None:
        logger.info("journal %s: its checkpoint is unreadable; reading the whole journal", journal)
        return None
    return Checkpoint(
        offset=header["offset"],
        crc=header["crc"],
        torn_lines=header["torn_lines"],
        done=done,
        posted=posted,
    )
