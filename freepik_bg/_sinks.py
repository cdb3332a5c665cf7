"""Where downloaded bytes go: atomic files, a directory, memory, or your own sink."""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

import attrs

from ._atomic import SOURCE_XATTR, write_atomic
from ._errors import OutputConflictError, SinkError
from ._file_targets import check_file_target, found_at, in_the_way, refuse_in_the_way
from ._models import Cutout, Size
from ._urls import url_identity

__all__ = [
    "SOURCE_XATTR",
    "DirectorySink",
    "MemorySink",
    "Sink",
    "SinkItem",
    "check_file_target",
    "check_output_name",
    "fit_name",
    "named_output",
    "output_name",
    "same_image",
    "write_atomic",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_STEM = 60
_SUFFIX = {"high_resolution": ".png", "preview": ".preview.png"}
# 96 bits: among a billion URLs, the chance that two share a name is about 1e-11.
_HASH_HEX = 24
NAME_BYTES = 200
"""The most UTF-8 bytes of a name's last part before its rendition suffix and extension.

A file name may have 255 bytes on most filesystems; this leaves room for the
longest suffix (``.original.untouched.jpeg``). The atomic write's temp name beside it
repeats at most 40 bytes of the name, so it fits wherever the name does.
"""
PART_BYTES = 255
"""The most UTF-8 bytes of one folder of an output name."""


def fit_name(part: str, limit: int = NAME_BYTES) -> str:
    """``part`` if it fits in ``limit`` UTF-8 bytes, else a prefix and a hash of the whole.

    For derived names only (a file's name): distinct parts stay distinct, and
    names that fit are never changed, so reruns find what earlier runs stored.

    Examples:
        >>> fit_name("red"), len(fit_name("é" * 130).encode())
        ('red', 199)
    """
    raw = part.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return part
    digest = hashlib.sha256(raw).hexdigest()[:_HASH_HEX]
    prefix = raw[: limit - len(digest) - 1].decode("utf-8", "ignore")  # whole characters only
    return f"{prefix}-{digest}"


def output_name(image_url: str, size: Size = "high_resolution") -> str:
    """A deterministic, filesystem-safe file name for ``image_url``'s cutout.

    The URL path's stem (sanitised, shortened) plus 96 bits of a SHA-256 of
    the whole URL's `url_identity`, so distinct URLs do not collide in practice
    and one image always maps to one name, however it is spelled
    (``HTTPS://``, ``:443``, ``#top``); no separators, so no path traversal.

    Examples:
        >>> output_name("https://cdn.example.com/shoes/red%20shoe.jpg?w=2000")
        'red_shoe-11a89b337575fd3a0817470c.png'
        >>> output_name("HTTPS://CDN.example.com:443/shoes/red%20shoe.jpg?w=2000#top")
        'red_shoe-11a89b337575fd3a0817470c.png'
    """
    # Of the identity, as duplicates and the journal compare URLs: a rerun (or a batch
    # without a journal) that spells a URL otherwise finds the file, instead of paying
    # for the image again under a second name.
    identity = url_identity(image_url)
    digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_HEX]
    path = PurePosixPath(unquote(urlsplit(image_url).path))
    stem = _UNSAFE.sub("_", path.stem).strip("._-")[:_MAX_STEM] or "image"
    if size == "original":
        ext = path.suffix.lower() if path.suffix.lower() in (".jpg", ".jpeg", ".png") else ".img"
        return f"{stem}-{digest}.original{ext}"
    return f"{stem}-{digest}{_SUFFIX[size]}"


def named_output(stem: str, size: Size = "high_resolution") -> str:
    """The output name for an item named ``stem`` (a SKU, or ``shoes/red`` from a folder).

    Examples:
        >>> named_output("shoes/red")
        'shoes/red.png'
        >>> named_output("SKU-1", "preview")
        'SKU-1.preview.png'
    """
    if size == "original":
        return f"{stem}.original.img"
    return stem + _SUFFIX[size]


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_output_name(name: str) -> str:
    """``name`` if it is a safe relative output name (``/`` between folders), else ``ValueError``.

    Never absolute, never ``..`` or an empty part, no backslash or control
    character: a sink joins it under its folder or prefix and cannot escape.

    Examples:
        >>> check_output_name("shoes/red.png")
        'shoes/red.png'
        >>> check_output_name("../etc/passwd")
        Traceback (most recent call last):
        ...
        ValueError: unsafe output name '../etc/passwd'
    """
    parts = name.split("/")
    if (
        not name
        or "\\" in name
        or _CONTROL.search(name)
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise ValueError(f"unsafe output name {name!r}")
    return name


def file_mode() -> int:
    """What ``open()`` would create: 0o666 less the process umask."""
    # os.umask can only be read by setting it; do so once, at first use.
    global _MODE
    if _MODE is None:
        umask = os.umask(0o022)
        os.umask(umask)
        _MODE = 0o666 & ~umask
    return _MODE


_MODE: int | None = None


def same_image(recorded: str, image_url: str) -> bool:
    """Whether a cutout recorded as made from ``recorded`` is ``image_url``'s: the same URL,
    however it is spelled (`url_identity`, as names and duplicates compare them).

    Examples:
        >>> same_image("https://example.com/a.png", "HTTPS://Example.com:443/a.png#top")
        True
    """
    return recorded == image_url or url_identity(recorded) == url_identity(image_url)


def recorded_source(path: Path) -> str | None:
    """The source URL recorded on ``path`` by a directory sink, if the filesystem kept it."""
    if sys.platform != "linux":
        return None
    try:
        return os.getxattr(path, SOURCE_XATTR).decode("utf-8", "surrogatepass")
    except OSError:
        return None


@attrs.frozen(slots=True)
class SinkItem:
    """What a sink is told about the bytes it receives.

    Attributes:
        index: the item's position in the batch input.
        image_url: the submitted URL.
        name: the suggested, safe file name (see [`output_name`][freepik_bg.output_name]).
        size: which rendition the bytes are.
        cutout: the service's answer (``None`` when only checking existence).
    """

    index: int
    image_url: str
    name: str
    size: Size
    cutout: Cutout | None = None


@runtime_checkable
class Sink(Protocol):
    """Receives finished downloads: the seam for object storage and databases.

    ``store`` gets a stream of validated chunks; it must consume it and
    return where the bytes went (a path, a key). If iterating the stream
    raises (a broken transfer, a bad image), the sink must discard what it
    received and let the exception propagate: the runner retries with a
    fresh stream. ``exists`` lets the runner skip items already stored,
    without spending a credit: return the location when the output there is
    ``item.image_url``'s, ``None`` when there is none, and raise
    `OutputConflictError` when it holds another URL's cutout.

    A sink may also define ``async def check(self) -> None``, which the batch
    awaits before the first POST: raise `SinkError` there when the
    destination cannot be written (no bucket, no permission), so that no
    credit is spent on results that cannot be stored.

    Examples:
        >>> from collections.abc import AsyncIterator
        >>> class S3Sink:
        ...     async def exists(self, item: SinkItem) -> str | None:
        ...         return None
        ...     async def store(self, item: SinkItem, chunks: AsyncIterator[bytes]) -> str:
        ...         data = b"".join([c async for c in chunks])
        ...         ...  # upload data under item.name
        ...         return f"s3://bucket/{item.name}"
    """

    async def exists(self, item: SinkItem) -> str | None:
        """Where ``item`` is already stored, or ``None``."""
        ...

    async def store(self, item: SinkItem, chunks: AsyncIterator[bytes]) -> str:
        """Consume ``chunks`` and return where they went."""
        ...


class DirectorySink:
    """Writes each item to ``directory / item.name``, atomically.

    With ``overwrite=False`` (a batch's default) a file that exists is never
    replaced, even one another writer created a moment before: that store
    fails with `OutputConflictError`. ``overwrite=True`` replaces it; a directory
    (or anything but a file) at the name, or in place of one of its folders, is
    refused before the POST either way.

    Examples:
        >>> sink = DirectorySink("out/")
    """

    def __init__(self, directory: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        self.directory = Path(directory)
        self.overwrite = overwrite

    def path_for(self, item: SinkItem) -> Path:
        """The file an item is written to; never outside ``directory``."""
        return self.directory / check_output_name(item.name)

    async def check(self) -> None:
        """Create the directory if needed and make sure files can be written there."""
        import anyio.to_thread

        # File system calls run in a worker thread: on a slow or network disk they
        # would otherwise stall every download and timer of the batch.
        await anyio.to_thread.run_sync(self._check)

    def _check(self) -> None:
        directory = self.directory
        if directory.exists() and not directory.is_dir():
            raise SinkError(f"the output {directory} is a file, not a directory")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            # A real write: permission bits alone miss read-only mounts and ACLs.
            fd, probe = tempfile.mkstemp(prefix=".freepik-bg-check.", dir=directory)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise SinkError(f"cannot write to the output {directory}: {exc.strerror}") from exc

    async def exists(self, item: SinkItem) -> str | None:
        """The path if the file is already there and holds ``item``'s cutout.

        Raises:
            OutputConflictError: the file holds another URL's cutout, or something
                other than a file (a directory, ...) is at the name, or a file or a
                broken link is in place of one of its folders: no write could store
                the item there, so it is refused before its credit.
        """
        import anyio.to_thread

        path = self.path_for(item)  # an unsafe name fails here, before any thread
        return await anyio.to_thread.run_sync(self._exists, item, path)

    def _exists(self, item: SinkItem, path: Path) -> str | None:
        found = found_at(path, self.directory)
        if found is None:
            return None
        refuse_in_the_way(path, found)
        source = recorded_source(path)
        if source is not None and not same_image(source, item.image_url):
            raise OutputConflictError(
                f"{path} holds the cutout of {source}, not of {item.image_url}: "
                "move it away, or pass overwrite=True (--overwrite) to replace it"
            )
        return str(path)

    async def check_replaceable(self, item: SinkItem) -> None:
        """With ``overwrite=True``, before the POST: can ``item``'s file be written?

        A regular file there is replaced; `exists` is not asked (it would skip it).

        Raises:
            OutputConflictError: something other than a file (a directory, ...) is
                at the name, or a file or a broken link is in place of one of its
                folders: the write could only fail, after the credit.
        """
        import anyio.to_thread

        path = self.path_for(item)
        found = await anyio.to_thread.run_sync(found_at, path, self.directory)
        refuse_in_the_way(path, found)

    async def store(self, item: SinkItem, chunks: AsyncIterator[bytes]) -> str:
        """Write atomically, recording the source URL; return the path.

        Raises:
            OutputConflictError: without ``overwrite``, the file exists and holds
                another (or an unknown) URL's cutout; or a directory (or other non-file)
                is at the name. Either is left as it was.
        """
        path = self.path_for(item)
        try:
            await write_atomic(path, chunks, source=item.image_url, replace=self.overwrite)
        except (FileExistsError, IsADirectoryError) as exc:
            import anyio.to_thread

            # Not another writer's file: a directory made during the run, after the
            # check before its POST. Say which.
            blocking = await anyio.to_thread.run_sync(in_the_way, path, self.directory)
            if blocking is not None:
                raise OutputConflictError(
                    f"{blocking} is in the way at {path}: this cutout was not stored; move "
                    "it away or give the item another name, then rerun (with a journal, "
                    "without paying again while the links live)"
                ) from None
            if isinstance(exc, IsADirectoryError):
                raise
            source = await anyio.to_thread.run_sync(recorded_source, path)
            if source is not None and same_image(source, item.image_url):
                return str(path)  # this URL's cutout is there already: nothing lost
            raise OutputConflictError(
                f"{path} was written by another item or process while this one was being "
                "stored: it was kept, and this cutout was not stored; give one of them "
                "another name, then rerun (with a journal, without paying again while "
                "the links live)"
            ) from None
        return str(path)

    def __repr__(self) -> str:
        overwrite = ", overwrite=True" if self.overwrite else ""
        return f"DirectorySink({str(self.directory)!r}{overwrite})"


class MemorySink:
    """Keeps results in a dict, name to bytes: for tests and small jobs.

    Examples:
        >>> sink = MemorySink()
        >>> sink.data
        {}
    """

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def exists(self, item: SinkItem) -> str | None:
        """The name if already stored."""
        return item.name if item.name in self.data else None

    async def store(self, item: SinkItem, chunks: AsyncIterator[bytes]) -> str:
        """Collect the chunks; nothing is kept if the stream fails."""
        parts = [chunk async for chunk in chunks]
        self.data[item.name] = b"".join(parts)
        return item.name

    def __repr__(self) -> str:
        return f"MemorySink({len(self.data)} items)"
