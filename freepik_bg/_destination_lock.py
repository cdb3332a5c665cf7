"""One run at a time into an object-storage destination, on this machine.

A folder output keeps its journal, and so the journal's lock, inside itself. A bucket's
journal stays in the working directory, so two runs started from two folders into one
``s3://`` prefix each held their own journal's lock, and each paid for the same images.
This lock is keyed by the destination instead, in a folder of the user's own under the
temp directory. Like the journal's, it is a ``flock``: it goes with the process, even on
``kill -9``, and nothing stale is left to clear. Runs on other machines are not seen.
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
    """Another run on this machine holds the destination."""


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
        raise DestinationBusy(
            f"another run on this machine is writing to {destination}: wait for it to "
            "finish (two runs into one destination would each pay for the same images)"
        ) from None
    return handle


def release(handle: IO[bytes] | None) -> None:
    """Give the lock back (closing its file releases the ``flock``)."""
    if handle is not None:
        handle.close()
