"""The CLI's INPUT: a URL list, a CSV/TSV, or a folder of local images, checked before any POST.

Everything that would stop a run anyway, or cost a credit for nothing, is
found in one streaming pass before the first request: local files with no
staging bucket, a name column with an empty or path-like cell, two inputs
that would be stored under one name, an output that would land on an input.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import anyio
import attrs

from ._dedupe import duplicate_key
from ._errors import FreepikError
from ._input import BadLine, InputError, InputLine, read_entries
from ._models import Size
from ._targets import LocalImage, Target, local_images, resolve, safe_name
from ._urls import MAX_URL_LENGTH

__all__ = ["Input", "UsageError", "open_input", "open_stream", "plain_url", "streamed"]

# Collisions are reported by the first few; the rest would only repeat the point.
_SHOWN = 3
# Resolved folders kept by the scan: images come folder by folder, and a list of local
# files in a million folders must not hold them all.
_FOLDERS_KEPT = 4096

# Most lines of a big list: an http(s) URL in printable ASCII with a plain host and at most
# a 4-digit port. `validate_image_url` accepts every one of these as it is (urlsplit cannot
# refuse them), none is a local file, and with no name column none names its output.
_PLAIN_URL = re.compile(r"[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9.-]+(?::[0-9]{1,4})?(?:[/?#][!-~]*)?")


def plain_url(text: str) -> bool:
    """Whether ``text`` is an http(s) URL the scan can count without parsing it.

    True only for URLs that `validate_image_url` accepts unchanged and that are no
    local reference; False says nothing (the line takes the full check).

    Examples:
        >>> plain_url("https://cdn.example.com/p/1.jpg?w=800"), plain_url("photos/a.jpg")
        (True, False)
    """
    return len(text) <= MAX_URL_LENGTH and _PLAIN_URL.fullmatch(text) is not None


class UsageError(Exception):
    """A problem the user fixes by changing the command or the environment."""


@attrs.define(slots=True)
class Input:
    """The entries to run, how many usable ones there are (``None``: unknown, stdin), and
    how many will fail without a POST (bad lines, bad URLs, missing files)."""

    entries: Iterator[Any]
    total: int | None
    unusable: int = 0
    # A pipe INPUT opened by `open_stream`: read_entries never closes a stream it is given.
    stream: IO[bytes] | None = None

    def close(self) -> None:
        """Close the input file, if one is open."""
        close = getattr(self.entries, "close", None)
        if close is not None:
            close()
        if self.stream is not None:
            self.stream.close()


def streamed(path: str) -> bool:
    """Whether INPUT can be read only once: ``-``, or a path that is neither a regular file
    nor a folder (``<(...)``, ``/dev/stdin`` fed by a pipe, a FIFO, a terminal).

    Such an input is read as it comes, as ``-`` is, with no scan first: the scan would
    drain it, and the run would then find nothing (or wait on the FIFO forever).

    Examples:
        >>> streamed("-"), streamed("."), streamed("no/such/file.txt")
        (True, False, False)
    """
    if path == "-":
        return True
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False  # missing or unreadable: reading it says so
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


async def open_stream(path: str) -> IO[bytes] | None:
    """A streamed INPUT, opened once its first bytes (or its end) arrived; None for ``-``
    (stdin is open already) and for files and folders.

    Opened without blocking, then waited for on the event loop: a blocking ``open`` of a
    FIFO nobody writes to yet, or a read of an idle pipe, would hold the main thread where
    the first Ctrl-C cannot stop it. ``-`` is waited for here too, without being opened.

    Raises:
        UsageError: the path cannot be opened; nothing was spent.
    """
    if not streamed(path):
        return None
    if path == "-":
        # No stdin, or one that cannot be polled (a file, /dev/null): read_entries reads it.
        with contextlib.suppress(AttributeError, OSError, ValueError):
            await anyio.wait_readable(sys.stdin.fileno())
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        with contextlib.suppress(OSError):  # a device that cannot be polled: read it as is
            await anyio.wait_readable(fd)
        os.set_blocking(fd, True)
        # Named after the path, for read_entries' messages. No I/O: the opener hands over
        # the descriptor opened above.
        return open(path, "rb", opener=lambda _path, _flags: fd)  # noqa: ASYNC230
    except BaseException:
        os.close(fd)
        raise


def _is_url(text: str) -> bool:
    return "://" in text


def _overlaps(one: Path, other: Path) -> bool:
    a, b = one.resolve(), other.resolve()
    return a == b or a in b.parents or b in a.parents


def _same_file(one: Path, other: Path) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:  # one of them does not exist yet: the same path, spelled otherwise
        return one.resolve() == other.resolve()


def check_own_files(args: Any, journal: Path | None) -> None:
    """Refuse a ``--report`` or journal that is the input file, or each other.

    The report replaces its file and the journal appends to its own: either one on the
    input would destroy the list being worked through, and a report over the journal
    would lose what a rerun needs to pay nothing twice.

    Raises:
        UsageError: two of them are one file; nothing was spent.
    """
    report = None if args.report is None or str(args.report) == "-" else Path(args.report)
    source = None if args.input == "-" or _is_url(args.input) else Path(args.input)
    named = [
        ("--report", report, "replaced by the report"),
        ("the journal", journal, "appended to"),
    ]
    for flag, path, fate in named:
        if path is not None and source is not None and _same_file(path, source):
            raise UsageError(
                f"{flag} {path} is the input file {args.input}: it would be {fate}; "
                "write it somewhere else"
            )
    if report is not None and journal is not None and _same_file(report, journal):
        raise UsageError(
            f"--report {report} is the journal: the report would replace what a rerun "
            "needs to pay nothing twice; write the report somewhere else"
        )


def _read(args: Any, stream: IO[bytes] | None = None) -> Iterator[Any]:
    root = Path(args.input)
    if stream is None and args.input != "-" and root.is_dir():
        if args.column or getattr(args, "name_column", None):
            raise UsageError("--column and --name-column are for CSV input, not a folder")
        if not _is_url(args.output) and _overlaps(root, Path(args.output)):
            raise UsageError(
                f"the output {args.output} and the input folder {args.input} overlap: "
                "outputs must never land next to or over the inputs; choose another -o"
            )
        return local_images(root)
    try:
        return read_entries(
            args.input if stream is None else stream,
            column=args.column,
            name_column=getattr(args, "name_column", None),
            delimiter=args.delimiter,
        )
    except InputError as exc:
        # The parser speaks the SDK's option names; here they are flags.
        message = str(exc).replace("name_column", "--name-column")
        message = message.replace("column=NAME", "--column NAME")
        raise UsageError(message) from None


def open_input(
    args: Any,
    *,
    stage: str | None,
    sizes: Sequence[Size],
    rename: Callable[[str], str] | None = None,
    stream: IO[bytes] | None = None,
) -> Input:
    """Open INPUT and check all of it before any POST (but stdin or a pipe, read as it comes).

    ``sizes``: the renditions asked for; ``rename``: what the output stage makes
    of a name (``--format jpg``: ``x.png`` to ``x.jpg``). Names are compared as
    the files will be called, rendition suffix and extension included. ``stream``:
    INPUT as `open_stream` opened it, if it is a pipe; it is read once, like ``-``.

    Raises:
        UsageError: the input cannot be used as it is; nothing was spent.
    """
    if stream is not None or streamed(args.input):
        try:
            return Input(_read(args, stream), None, stream=stream)
        except BaseException:
            if stream is not None:
                stream.close()
            raise
    checker = _Checker(args, stage=stage, sizes=tuple(sizes), rename=rename)
    named = getattr(args, "name_column", None) is not None
    scan = _read(args)
    try:
        for entry in scan:
            # ~1 µs for a plain URL line instead of ~15 µs through `resolve`: the scan
            # of a list of millions is what the first POST waits for.
            if not named and isinstance(entry, InputLine) and plain_url(entry.url):
                checker.usable += 1
            else:
                checker.add(entry)
    finally:
        close = getattr(scan, "close", None)
        if close is not None:
            close()
    checker.finish()
    return Input(_read(args), checker.usable, checker.unusable)


@attrs.define(slots=True)
class _Checker:
    args: Any
    stage: str | None
    sizes: tuple[Size, ...]
    rename: Callable[[str], str] | None = None
    usable: int = 0
    unusable: int = 0
    # Name -> (64-bit key of the URL or path, where it was first seen): a feed of
    # millions of SKUs is checked without holding its URLs.
    _names: dict[str, tuple[int, str]] = attrs.field(factory=dict)
    _collisions: list[str] = attrs.field(factory=list)
    _folders: dict[str, str] = attrs.field(factory=dict)

    def add(self, entry: Any) -> None:
        where = f"line {entry.line}" if isinstance(entry, InputLine | BadLine) else "INPUT"
        if isinstance(entry, LocalImage):
            where = f"the folder {self.args.input}"
        name_column = getattr(self.args, "name_column", None)
        if isinstance(entry, BadLine):
            if name_column is not None and repr(name_column) in entry.reason:
                raise UsageError(f"{entry}: every row needs a name in --name-column {name_column}")
            self.unusable += 1
            return  # reported per line; the run goes on past it
        if isinstance(entry, InputLine) and entry.name is not None:
            try:
                safe_name(entry.name)
            except FreepikError as exc:
                raise UsageError(f"{where}: {exc}") from None
        try:
            target = resolve(entry)
        except FreepikError:
            self.unusable += 1
            return  # a bad URL: a per-item error, no credit spent
        if target.local is not None and not target.local.exists():
            # Neither a URL nor a file ("not a url", a typo): a per-item error, not a
            # reason to refuse the whole run as a local file without --stage.
            self.unusable += 1
            return
        self.usable += 1
        if target.local is not None:
            self._local(target, where)
        if target.stem is not None:
            self._claim(target, where)

    def _local(self, target: Target, where: str) -> None:
        assert target.local is not None
        if self.stage is None:
            raise UsageError(
                f"{where}: {target.local} is a local file, and the API only fetches public "
                "URLs: pass --stage s3://bucket/prefix/ (or gs://, az://) to upload local "
                "images for the service, or list their http(s) URLs instead"
            )
        if not _is_url(self.args.output):
            for name in self._outputs(target):
                out = Path(self.args.output) / name
                if self._resolved(out) == self._resolved(target.local):
                    raise UsageError(
                        f"{where}: the output {out} would replace the input itself; "
                        "choose another -o"
                    )

    def _outputs(self, target: Target) -> list[str]:
        """The final names of ``target``'s outputs, one per rendition, as the sink gets them."""
        names = [target.output(size) for size in self.sizes]
        return names if self.rename is None else [self.rename(name) for name in names]

    def _resolved(self, path: Path) -> str:
        """``str(path.resolve())``, with its folder's resolution reused: a scan of a folder
        of images does one ``lstat`` per file instead of one per component of its path.

        The same path as ``resolve``: realpath resolves the folder, then follows the last
        component only if it is a symlink (the one case handed to ``resolve`` whole).
        """
        folder, name = os.path.split(path)
        if name in ("", ".", ".."):
            return str(path.resolve())
        real = self._folders.get(folder)
        if real is None:
            if len(self._folders) >= _FOLDERS_KEPT:
                self._folders.clear()
            real = self._folders[folder] = str(Path(folder or ".").resolve())
        candidate = os.path.join(real, name)
        return str(Path(candidate).resolve()) if os.path.islink(candidate) else candidate

    def _claim(self, target: Target, where: str) -> None:
        # Every rendition's final name: 'x' with its preview and 'x.preview' are
        # both x.preview.png, and one would overwrite the other's paid output.
        identity = duplicate_key(target.identity, "")
        if target.local is not None:
            where = str(target.local)  # two files of one folder: name the files
        for name in self._outputs(target):
            first = self._names.setdefault(name, (identity, where))
            if first[0] != identity and len(self._collisions) < _SHOWN:
                self._collisions.append(f"{first[1]} and {where} are both named {name!r}")

    def finish(self) -> None:
        if self._collisions:
            raise UsageError(
                "two inputs would be stored under one name ("
                + "; ".join(self._collisions)
                + "): names must be unique, so that no output overwrites another"
            )
