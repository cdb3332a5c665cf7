"""Where downloaded bytes go: atomic files, a directory, memory, or your own sink."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

import attrs

from ._models import Cutout, Size

__all__ = [
    "DirectorySink",
    "MemorySink",
    "Sink",
    "SinkItem",
    "output_name",
    "write_atomic",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_STEM = 60
_SUFFIX = {"high_resolution": ".png", "preview": ".preview.png"}


def output_name(image_url: str, size: Size = "high_resolution") -> str:
    """A deterministic, filesystem-safe file name for ``image_url``'s cutout.

    The URL path's stem (sanitised, shortened) plus a hash of the whole URL,
    so distinct URLs never collide and the same URL always maps to the same
    name; no separators, so no path traversal.

    Examples:
        >>> output_name("https://cdn.example.com/shoes/red%20shoe.jpg?w=2000")
        'red_shoe-11a89b3375.png'
    """
    digest = hashlib.sha256(image_url.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    path = PurePosixPath(unquote(urlsplit(image_url).path))
    stem = _UNSAFE.sub("_", path.stem).strip("._-")[:_MAX_STEM] or "image"
    if size == "original":
        ext = path.suffix.lower() if path.suffix.lower() in (".jpg", ".jpeg", ".png") else ".img"
        return f"{stem}-{digest}.original{ext}"
    return f"{stem}-{digest}{_SUFFIX[size]}"


async def write_atomic(path: Path, chunks: AsyncIterable[bytes]) -> Path:
    """Stream ``chunks`` into ``path`` atomically: a temp file beside it, then a rename.

    Whatever fails (the stream, the disk, a cancellation), the temp file is
    removed and ``path`` is untouched, so readers never see a partial file.
    Writes are plain buffered writes: local disks absorb them into the page
    cache far faster than a thread hop per chunk would.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in chunks:
                fh.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


@attrs.frozen(slots=True)
class SinkItem:
    """What a sink is told about the bytes it receives.

    Attributes:
        index: the item's position in the batch input.
        image_url: the submitted URL.
        name: the suggested, safe file name (see :func:`output_name`).
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
    without spending a credit; return the location, or ``None``.

    Examples:
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

    Examples:
        >>> sink = DirectorySink("out/")
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path_for(self, item: SinkItem) -> Path:
        """The file an item is written to; never outside ``directory``."""
        name = item.name
        if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            raise ValueError(f"unsafe output name {name!r}")
        return self.directory / name

    async def exists(self, item: SinkItem) -> str | None:
        """The path if the file is already there."""
        path = self.path_for(item)
        return str(path) if path.is_file() else None

    async def store(self, item: SinkItem, chunks: AsyncIterator[bytes]) -> str:
        """Write atomically; return the path."""
        return str(await write_atomic(self.path_for(item), chunks))

    def __repr__(self) -> str:
        return f"DirectorySink({str(self.directory)!r})"


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
