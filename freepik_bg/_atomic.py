"""Atomic file writes that never block the event loop.

A file is written to a temp file beside its target and renamed over it, so readers
see the old file or the whole new one, never a part. Without ``replace``, it is
hard-linked into place instead, which fails if the target exists: two writers of
one name never overwrite each other, however they race. Every file system call runs in
a worker thread: on a slow or network disk a write, a rename or even an open can
take tens of milliseconds, and on the event loop that would stall every download
and timer of the batch (docs/benchmarks.md, "slow disk").

To keep thread hops few, chunks are gathered in memory and a cutout of up to
`SPILL_BYTES` (most of them) is written whole in a single hop: open, xattr, write,
close, rename. A larger one goes to its temp file in batches of `BATCH_BYTES`, one
hop each, so memory stays bounded whatever the file's size.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import sys
from collections.abc import AsyncIterable, Sequence
from pathlib import Path
from typing import BinaryIO

__all__ = ["BATCH_BYTES", "SOURCE_XATTR", "SPILL_BYTES", "temp_name", "write_atomic"]

SPILL_BYTES = 1 << 20
"""Up to this many bytes, a file is written whole, in one worker-thread hop."""
BATCH_BYTES = 1 << 20
"""Past `SPILL_BYTES`, chunks go to the temp file in batches of about this size."""

# Where a directory sink records whose cutout a file is, on filesystems with xattrs.
SOURCE_XATTR = "user.freepik_bg.source_url"

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
# Temp names are unique per process and write; O_EXCL settles the rest (a stale
# temp file of an earlier process with the same pid, another host on a shared mount).
# Cheaper than tempfile.mkstemp's random names (~0.1 ms of CPU each at high rates).
_serial = itertools.count()
# The most UTF-8 bytes of the target's name a temp name repeats. A temp name must fit
# wherever its target's does: `DirectorySink.exists` finds a name fine before its POST
# (a stat), and a temp name that is longer could still fail at store, after the credit,
# on a file system whose names are short (eCryptfs: 143 bytes).
_TEMP_LABEL_BYTES = 40


def temp_name(name: str) -> str:
    """The temp file's name for the target ``name``: ``.NAME.PID-N.part``, NAME at most
    `_TEMP_LABEL_BYTES` of it (whole characters), so it is never much longer than ~64 bytes.

    Examples:
        >>> temp_name("a.png").startswith(".a.png.")
        True
    """
    label = name.encode("utf-8", "surrogatepass")[:_TEMP_LABEL_BYTES]
    text = label.decode("utf-8", "ignore")  # a character cut in two is dropped
    return f".{text}.{os.getpid()}-{next(_serial)}.part"


# Why os.link may fail on a filesystem without hard links (FAT, some network and
# FUSE mounts), rather than because the target exists.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}


def _place_without_replacing(temp: Path, path: Path) -> None:
    """Move ``temp`` to ``path``; `FileExistsError` if ``path`` exists, never an overwrite."""
    try:
        os.link(temp, path)  # atomic, and refuses an existing target
    except OSError as exc:
        if isinstance(exc, FileExistsError) or exc.errno not in _NO_LINKS:
            raise
        # No hard links here: claim the name with an exclusive create, then rename
        # over the claim (readers may see it empty for a moment, never another file).
        os.close(os.open(path, _FLAGS, 0o666))
        try:
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        return
    # Linked: the temp name is left over (a failure here leaves an extra name, not data lost).
    with contextlib.suppress(OSError):
        temp.unlink()


def _record_source(fd: int, source: str) -> None:
    if sys.platform == "linux":
        # Not every filesystem keeps user xattrs (tmpfs before 6.6, some network
        # mounts); there the name's 96-bit hash alone tells outputs apart.
        with contextlib.suppress(OSError):
            os.setxattr(fd, SOURCE_XATTR, source.encode("utf-8", "surrogatepass"))


class _TempFile:
    """The temp file beside `path`. Made on the event loop without touching the disk;
    each other method runs in a worker thread, one hop each, and `discard` undoes
    whatever was done, whenever it stopped (a hop that a cancellation interrupts
    still runs to its end, and its result is dropped: the state stays here).
    """

    def __init__(self, path: Path, source: str | None, *, replace: bool = True) -> None:
        self.path = path
        self.source = source
        self.replace = replace
        self.temp: Path | None = None
        self.file: BinaryIO | None = None

    def _open(self) -> BinaryIO:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            temp = self.path.parent / temp_name(self.path.name)
            try:
                # 0o666 less the umask, as open() gives: a cutout is for a web
                # server or a colleague too (mkstemp would make it 0600).
                fd = os.open(temp, _FLAGS, 0o666)
            except FileExistsError:
                continue
            self.temp = temp
            break
        self.file = os.fdopen(fd, "wb")
        if self.source is not None:
            _record_source(fd, self.source)
        return self.file

    def write(self, parts: Sequence[bytes]) -> None:
        (self.file or self._open()).writelines(parts)

    def finish(self, parts: Sequence[bytes]) -> None:
        """Write the last parts, close, and rename over the target (or beside none)."""
        self.write(parts)
        assert self.file is not None
        assert self.temp is not None
        self.file.close()
        if self.replace:
            os.replace(self.temp, self.path)
        else:
            _place_without_replacing(self.temp, self.path)
        self.temp = None  # renamed: nothing left to discard

    def discard(self) -> None:
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.close()
        if self.temp is not None:
            with contextlib.suppress(OSError):
                self.temp.unlink()
            self.temp = None


async def write_atomic(
    path: Path, chunks: AsyncIterable[bytes], *, source: str | None = None, replace: bool = True
) -> Path:
    """Stream ``chunks`` into ``path`` atomically: a temp file beside it, then a rename.

    With ``replace=False``, an existing ``path`` is never overwritten: the write
    raises `FileExistsError` (and removes its temp file), even when another
    writer created ``path`` a moment before.

    Whatever fails (the stream, the disk, a cancellation), the temp file is
    removed and ``path`` is untouched, so readers never see a partial file.
    The file gets the permissions ``open()`` would give it under the umask,
    and ``source`` (the image URL) is recorded on it where xattrs exist.
    The disk is only touched from worker threads (see the module's docstring).

    Examples:
        >>> async def save(chunks: AsyncIterable[bytes]) -> None:
        ...     await write_atomic(Path("out/shoe.png"), chunks, source="https://a.test/shoe.jpg")
    """
    # Here, not at the top: `freepik-bg --help` imports this module (through the
    # config's renditions) and must not load anyio; after the first call it is a lookup.
    import anyio
    import anyio.to_thread

    temp = _TempFile(path, source, replace=replace)
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in chunks:
            parts.append(chunk)
            size += len(chunk)
            if size >= (SPILL_BYTES if temp.file is None else BATCH_BYTES):
                await anyio.to_thread.run_sync(temp.write, parts)
                parts, size = [], 0
        await anyio.to_thread.run_sync(temp.finish, parts)
    except BaseException:
        if temp.file is not None or temp.temp is not None:
            # Even when cancelled: a temp file must not be left behind.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(temp.discard)
        raise
    return path
