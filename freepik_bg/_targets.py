"""What an input entry stands for: an identity, an output name, maybe a local file to stage.

A URL is its own identity. A local file's identity is its absolute path: the
presigned link it is submitted through changes every run (and carries a
signature), so it never reaches the journal, the reports or the outputs'
source records. An entry may also choose its output name: a CSV's name
column (a SKU), or the file's place under a folder given as input.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import attrs

from ._errors import InvalidRequestError
from ._input import BadLine, InputLine
from ._models import Size
from ._sinks import NAME_BYTES, PART_BYTES, fit_name, named_output, output_name
from ._urls import validate_image_url

__all__ = ["LocalImage", "Target", "is_local_reference", "local_images", "resolve", "safe_name"]

_MAX_NAME = 150
# Characters that some filesystem or object store refuses or treats specially.
_UNSAFE_IN_NAME = re.compile(r'[\x00-\x1f\x7f<>:"|?*]')
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@attrs.frozen(slots=True)
class LocalImage:
    """A local image and the output name it gets (its folders kept, no extension).

    `local_images` makes them from a folder; a batch stages each through
    ``stage=`` and stores its cutout under ``name``.

    Examples:
        >>> from pathlib import Path
        >>> LocalImage(Path("photos/shoes/red.jpg"), "shoes/red").name
        'shoes/red'
    """

    path: Path
    name: str


def local_images(folder: str | os.PathLike[str]) -> Iterator[LocalImage]:
    """The .jpg, .jpeg and .png files under ``folder``, each named by its place below it.

    Walked recursively in a stable order (each folder's files by name, then
    its subfolders); a symlink loop ends, an unreadable folder is skipped with
    a warning, and names that are not UTF-8 are percent-encoded in outputs.
    ``photos/shoes/red.jpg`` under ``photos`` is stored as ``shoes/red.png``.
    A batch takes them with a staging bucket: ``client.run_batch(local_images("photos/"),
    "s3://shop/cutouts/", stage="s3://shop/staging/")``.

    Examples:
        >>> from pathlib import Path
        >>> Path("photos/shoes").mkdir(parents=True)
        >>> _ = Path("photos/shoes/red.jpg").write_bytes(b"")
        >>> [image.name for image in local_images("photos")]
        ['shoes/red']
    """
    from ._staging import relative_output_name, walk_images

    for path in walk_images(folder):
        yield LocalImage(path, relative_output_name(path, folder, suffix=""))


@attrs.frozen(slots=True)
class Target:
    """One item's identity, chosen output name and local file, from its input entry.

    Attributes:
        identity: what the journal, duplicates, reports and the outputs' source
            records use: the URL, or a local file's absolute path.
        stem: the output name without its extension, when the input chose one.
        local: the local image to stage before the POST.
    """

    identity: str
    stem: str | None = None
    local: Path | None = None

    def output(self, size: Size) -> str:
        """The output name for rendition ``size``."""
        if self.stem is None:
            return output_name(self.identity, size)
        return named_output(self.stem, size)


def is_local_reference(text: str) -> bool:
    """Whether an input line names a local file: no URL scheme, or ``file://``."""
    return not _SCHEME.match(text) or text[:7].lower() == "file://"


def safe_name(text: str) -> str:
    """A name column's cell as an output name: trimmed, made safe, never a path.

    Raises:
        InvalidRequestError: the cell is empty, holds a folder separator or
            ``..`` (a name must not choose where the file goes), or is too long
            for a file name once its rendition suffix is added.

    Examples:
        >>> safe_name(" SKU 42: red ")
        'SKU 42_ red'
    """
    name = _cleaned(text)
    _check_length(name, name)
    return name


def _check_length(name: str, part: str, limit: int = NAME_BYTES) -> None:
    size = len(part.encode("utf-8", "surrogatepass"))
    if size > limit:
        # Never shortened silently: two long names could become one, and a rerun
        # after a fix would not find the outputs under their old names.
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise InvalidRequestError(
            f"the output name {shown!r} is too long: {size} bytes in UTF-8 where at most "
            f"{limit} fit (a file name's 255, less room for '.preview.png' and the like); "
            "shorten it"
        )


def _cleaned(text: str) -> str:
    name = text.strip()
    if not name:
        raise InvalidRequestError("the output name is empty")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise InvalidRequestError(
            f"the output name {name!r} holds a folder separator or '..': a name column "
            "must hold plain names (SKU-123), not paths"
        )
    name = _UNSAFE_IN_NAME.sub("_", name)[:_MAX_NAME].rstrip(". ")
    if name.startswith("."):
        name = "_" + name[1:]  # a dot file would be hidden, and skipped by many tools
    return name or "_"


def _local(path: Path, stem: str | None) -> Target:
    # Names that are not UTF-8 get a readable, writable identity (journals are UTF-8).
    identity = os.fsencode(os.path.abspath(path)).decode("utf-8", "backslashreplace")
    if stem is None:  # derived from the file's name: shortened, never refused
        stem = fit_name(_cleaned(path.stem or path.name))
    else:  # chosen by the caller (LocalImage): refused, per item, when too long
        *folders, last = stem.split("/")
        for folder in folders:
            _check_length(stem, folder, PART_BYTES)
        _check_length(stem, last)
    return Target(identity=identity, stem=stem, local=path)


def resolve(entry: object) -> Target:
    """The target an input entry stands for; `InvalidRequestError` when it stands for none."""
    if isinstance(entry, BadLine):
        raise InvalidRequestError(str(entry))
    if isinstance(entry, LocalImage):
        return _local(entry.path, entry.name)
    if isinstance(entry, os.PathLike) and not isinstance(entry, str):
        return _local(Path(entry), None)
    if isinstance(entry, InputLine):
        stem = safe_name(entry.name) if entry.name is not None else None
        if is_local_reference(entry.url):
            url = entry.url
            path = Path(unquote(urlsplit(url).path) if url[:7].lower() == "file://" else url)
            return _local(path, stem)
        return Target(validate_image_url(entry.url), stem)
    try:
        return Target(validate_image_url(entry))
    except InvalidRequestError as exc:
        if isinstance(entry, str) and "relative" in str(exc):
            raise InvalidRequestError(
                f"{exc}; for a local file, pass pathlib.Path({entry!r}) with stage=..."
            ) from None
        raise
