"""One run at a time into a destination (a folder or a bucket prefix), on this machine.

The journal's lock guards the journal, not the destination: a bucket's journal stays in
the working directory, a folder may be given another ``--journal``, and Dask keeps one
journal per partition, so two runs into one destination each held their own journal's
lock, and each paid for the same images. This lock is keyed by the destination instead,
in a folder of the user's own under the temp directory. Like the journal's, it is a
``flock``: it goes with the process, even on ``kill -9``, and nothing stale is left to
clear. Runs on other machines are not seen.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import IO

__all__ = ["DestinationBusy", "lock_destination", "release"]


class DestinationBusy(Exception):
    """Another run on this machine holds the destination (the exception's argument)."""


def lock_destination(destination: str) -> IO[bytes] | None:
    """Take ``destination``'s lock for this run; the open lock file, to `release`.

    ``None`` where no lock can be taken (no ``flock``, a temp folder that is not ours):
    the journal's own lock still guards its file.

    Raises:
        DestinationBusy: another run on this machine is writing to ``destination``.
    """
    if sys.platform == "win32":  # pragma: no cover - POSIX only, as the journal's lock
        return None
    import fcntl

    folder = Path(tempfile.gettempdir()) / f"freepik-bg-{os.getuid()}"
    digest = hashlib.sha256(destination.rstrip("/").encode("utf-8", "surrogatepass"))
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
        # Someone else's folder (or a symlink) in a shared /tmp: no lock rather than
        # a lock file they control.
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            return None
        handle = open(folder / f"{digest.hexdigest()[:24]}.lock", "ab")  # noqa: SIM115
    except OSError:
        return None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise DestinationBusy(destination) from None  # said to the user by the caller
    return handle


def release(handle: IO[bytes] | None) -> None:
    """Give the lock back (closing its file releases the ``flock``)."""
    if handle is not None:
        handle.close()
