"""Disk space held back beside a journal while a run has it open (``<journal>.reserve``).

When the disk fills, the answers still in flight have been paid for, and their lines must
reach the journal, or the rerun pays for them again. The journal then gives the reserve
back and writes those lines into its room (`give_back`), and the run stops sending.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

__all__ = ["NO_SPACE", "RESERVE_BYTES", "give_back", "hold"]

RESERVE_BYTES = 1 << 20
"""Disk space a run holds back for its journal: ~1,300 ``posted`` lines, far more than the
answers in flight when a disk fills."""

_BLOCK = 128 * 1024  # a compressing filesystem's unit (btrfs, ZFS's default record)

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
"""The errors of a full disk (or a used-up quota)."""


def hold(journal: Path, fd: int) -> Path | None:
    """Write the reserve beside ``journal`` (open as ``fd``); its path, or None when there
    is no disk of ours to hold (a device) or no folder we may create in. `OSError` with
    an errno in `NO_SPACE` when there is no room for it, and nothing is left behind.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     journal = Path(folder, "j.jsonl")
        ...     fd = os.open(journal, os.O_CREAT | os.O_WRONLY)
        ...     reserve = hold(journal, fd)
        ...     os.close(fd)
        ...     print(reserve.stat().st_size == RESERVE_BYTES, give_back(reserve))
        True True
    """
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return None  # /dev/null and the like
    path = journal.with_name(journal.name + ".reserve")
    try:
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            # Random bytes: a compressing filesystem would store zeros in no space. One
            # random block (1 MiB from the kernel takes ~4 ms of start-up here), numbered
            # so that no two blocks are alike for a deduplicating one.
            noise = os.urandom(_BLOCK)
            for number in range(RESERVE_BYTES // _BLOCK):
                data, written = number.to_bytes(8, "big") + noise[8:], 0
                while written < len(data):
                    written += os.write(out, data[written:])
        finally:
            os.close(out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(path)
        if exc.errno in NO_SPACE:
            raise
        return None  # run as before, without a reserve
    return path


def give_back(reserve: Path | None) -> bool:
    """Delete the reserve, if there is one; whether that made room.

    Examples:
        >>> give_back(None)
        False
    """
    if reserve is None:
        return False
    try:
        os.unlink(reserve)
    except OSError:
        return False
    return True
