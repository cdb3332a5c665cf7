r"""Reading URL lists: text, CSV/TSV, stdin, bytes or text streams, line by line,
never crashing on a bad line.

`read_entries` yields one `InputLine` per usable entry and one
`BadLine` per line that holds none (a byte that is not UTF-8, a control
character, an empty or missing CSV cell), and goes on reading. Problems with
the input as a whole (a missing file, a CSV without the asked-for column, a
UTF-16 file without a byte-order mark, an image where a list was expected)
raise `InputError` when `read_entries` is called, before a single
entry, and so before any credit is spent. ``Entry`` is ``InputLine | BadLine``.

Nothing here checks that a URL is a valid image URL: that is the SDK's
``validate_image_url``, later. This module only deals with text.

Examples:
    >>> import io
    >>> data = io.BytesIO(b"https://example.com/a.png\r\nhttps://example.com/\xff.png\r\n")
    >>> [str(entry) if isinstance(entry, BadLine) else entry.url for entry in read_entries(data)]
    ['https://example.com/a.png', 'line 2: not valid UTF-8 (byte 0xff at column 21)']
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Generator, Iterator
from typing import IO, cast

import attrs

from ._decode import (
    SUSPECT,
    TEXT_MAX,
    Unreadable,
    decoded_lines,
    describe,
    os_reason,
    shown_text,
)

__all__ = ["BadLine", "Entry", "InputError", "InputLine", "count_entries", "read_entries"]


@attrs.frozen(slots=True)
class InputLine:
    """One usable entry of the input.

    Attributes:
        line: the 1-based physical line where the entry starts (for CSV, the row's first line).
        url: the URL, stripped of surrounding whitespace; not validated here.
        name: the stripped value of the name column, when one was asked for; else None.

    Examples:
        >>> InputLine(3, "https://example.com/a.png")
        InputLine(line=3, url='https://example.com/a.png', name=None)
        >>> InputLine(2, "https://example.com/b.png", "SKU-2").name
        'SKU-2'
    """

    line: int
    url: str
    name: str | None = None


@attrs.frozen(slots=True)
class BadLine:
    """A line that holds no usable entry: reported per line, never a crash.

    Attributes:
        line: the 1-based physical line (for CSV, the row's first line).
        reason: what is wrong, e.g. ``"not valid UTF-8 (byte 0xff at column 12)"``.
        text: the offending text on one line, at most 200 characters, with
            undecodable bytes and control characters shown as U+FFFD.

    Examples:
        >>> bad = BadLine(7, "empty 'image' cell", "SKU-7,")
        >>> str(bad)
        "line 7: empty 'image' cell"
        >>> bad.text
        'SKU-7,'
    """

    line: int
    reason: str
    text: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class InputError(ValueError):
    """The input as a whole cannot be read.

    Raised by `read_entries` when it is called, before anything is
    yielded, so before any credit is spent.

    Examples:
        >>> import io
        >>> read_entries(io.StringIO("sku,url\\n"), column="image")
        Traceback (most recent call last):
            ...
        freepik_bg._input.InputError: CSV has no column 'image' (found: sku, url)
    """


Entry = InputLine | BadLine


def read_entries(
    source: str | os.PathLike[str] | IO[bytes] | IO[str],
    *,
    column: str | None = None,
    name_column: str | None = None,
    delimiter: str | None = None,
) -> Generator[Entry, None, None]:
    r"""The entries of a URL list, lazily, one `InputLine` or `BadLine` at a time.

    Without ``column`` the input is text: one URL a line, surrounding
    whitespace stripped, blank lines and ``#`` comments skipped. With
    ``column`` it is CSV (TSV for a ``.tsv`` path) with a header row, and the
    URL is that column's cell. Bytes are UTF-8 unless a UTF-16 or UTF-32
    byte-order mark says otherwise; a line with a bad byte becomes a BadLine
    and reading goes on. Lines may end in ``\n``, ``\r\n`` or ``\r``.

    The input is opened, sniffed and (for CSV) its header read when this is
    called, so `InputError` comes before any entry. A file opened here
    is closed when the entries run out or the generator is closed; streams
    passed in are never closed. Memory stays flat whatever the input's size.

    Args:
        source: a path; ``"-"`` for standard input; or an open binary or text stream.
        column: read CSV, taking URLs from the column with this header.
        name_column: with ``column``, also carry this column into ``InputLine.name``;
            an empty cell there is then a BadLine.
        delimiter: the CSV delimiter: ``","`` by default, ``"\t"`` for a ``.tsv`` path.

    Raises:
        InputError: the input cannot be read at all (missing, a directory, a
            binary file, UTF-16 without a byte-order mark, a CSV path without
            ``column``, a CSV header without the column asked for).

    Examples:
        >>> import io
        >>> data = io.BytesIO(b"# shots\nhttps://example.com/a.png\n\nhttps://example.com/\xff.png\n")
        >>> for entry in read_entries(data):
        ...     print(entry)
        InputLine(line=2, url='https://example.com/a.png', name=None)
        line 4: not valid UTF-8 (byte 0xff at column 21)
        >>> rows = io.StringIO("sku,image\nA1, https://example.com/a.png\nA2,\n")
        >>> for entry in read_entries(rows, column="image", name_column="sku"):
        ...     print(entry)
        InputLine(line=2, url='https://example.com/a.png', name='A1')
        line 3: empty 'image' cell
    """
    entries = _entries(source, column, name_column, delimiter)
    # Run the generator to its first yield now: that opens and sniffs the input
    # and reads the CSV header, so InputError is raised at call time; and from
    # here on its finally clause closes what it opened, however the caller lets
    # go (exhausted, .close(), or dropped), which an unstarted generator never does.
    next(entries)
    return cast("Generator[Entry, None, None]", entries)


def count_entries(
    source: str | os.PathLike[str] | IO[bytes] | IO[str],
    *,
    column: str | None = None,
    name_column: str | None = None,
    delimiter: str | None = None,
) -> int | None:
    """How many InputLine entries a file holds, counted in one streaming pass (for an ETA).

    Returns None for standard input and streams (reading them would use them
    up) and for an input `read_entries` refuses.

    Examples:
        >>> import io
        >>> count_entries(os.devnull)
        0
        >>> count_entries(io.BytesIO(b"https://example.com/a.png\\n")) is None
        True
        >>> count_entries("no/such/file.txt") is None
        True
    """
    if not isinstance(source, (str, os.PathLike)) or os.fspath(source) == "-":
        return None
    try:
        entries = read_entries(source, column=column, name_column=name_column, delimiter=delimiter)
    except InputError:
        return None
    return sum(isinstance(entry, InputLine) for entry in entries)


# -- opening and sniffing --------------------------------------------------------


def _entries(
    source: str | os.PathLike[str] | IO[bytes] | IO[str],
    column: str | None,
    name_column: str | None,
    delimiter: str | None,
) -> Generator[Entry | None, None, None]:
    """The entries, after a first None once the input is open and checked."""
    if column is None and name_column is not None:
        raise InputError("name_column needs column: names come from a CSV column")
    if column is None and delimiter is not None:
        raise InputError("delimiter applies to CSV input: say which column holds the URLs")
    if delimiter is not None and len(delimiter) != 1:
        raise InputError(f"delimiter must be one character, not {delimiter!r}")
    opened: IO[bytes] | None = None
    try:
        stream: IO[bytes] | IO[str]
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if path == "-":
                stream, label = _stdin(), "standard input"
            else:
                try:
                    opened = open(path, "rb")  # noqa: SIM115 - closed in the finally below
                except OSError as exc:
                    raise InputError(f"cannot read {path}: {os_reason(exc)}") from None
                stream, label = opened, path
                suffix = os.path.splitext(path)[1].lower()
                if column is None and suffix in (".csv", ".tsv"):
                    raise InputError(
                        f"{path} looks like a CSV file: "
                        "say which column holds the URLs (column=NAME)"
                    )
                if delimiter is None and suffix == ".tsv":
                    delimiter = "\t"
        else:
            stream, label = source, _stream_label(source)
        try:
            text, encoding = decoded_lines(stream, label, owned=opened is not None)
        except Unreadable as exc:
            raise InputError(str(exc)) from None
        if column is None:
            yield None
            yield from _text_entries(text, encoding)
        else:
            lines = _Lines(text)
            yield from _csv_entries(lines, encoding, label, column, name_column, delimiter or ",")
    finally:
        if opened is not None:
            opened.close()


def _stdin() -> IO[bytes] | IO[str]:
    # Bytes when there are any, so that bad input is a BadLine, not a decode error.
    stdin = getattr(sys, "stdin", None)
    if stdin is None:
        raise InputError("there is no standard input to read from")
    stream: IO[bytes] | IO[str] = getattr(stdin, "buffer", stdin)
    return stream


def _stream_label(stream: IO[bytes] | IO[str]) -> str:
    name = getattr(stream, "name", None)
    return name if isinstance(name, str) else "the input stream"


def _stopped(after: int, exc: OSError | ValueError) -> BadLine:
    """The last BadLine when reading fails after ``after`` lines.

    The entries before were good, and a crash would lose track of them.
    """
    if isinstance(exc, UnicodeDecodeError):
        # Only a text stream decodes strictly (bytes never raise here), a chunk
        # at a time: the bad byte is somewhere in the lines that follow.
        where = f"after line {after}" if after else "in the first lines"
        reason = (
            f"not valid {exc.encoding} (byte 0x{exc.object[exc.start]:02x} {where}); "
            "pass the path or a binary stream to read past bad bytes"
        )
    else:
        reason = os_reason(exc) if isinstance(exc, OSError) else str(exc)
    return BadLine(after + 1, f"reading stopped: {reason}", "")


class _Lines:
    """The physical lines for csv.reader, counted; a read error ends them instead of raising.

    The error is kept in ``error`` for a last BadLine. ``raw`` collects the
    start of the current row's text, for BadLine.text.
    """

    __slots__ = ("_lines", "count", "error", "raw")

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.count = 0
        self.raw = ""
        self.error: OSError | ValueError | None = None

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        try:
            line = next(self._lines)
        except (OSError, ValueError) as exc:
            self.error = exc
            raise StopIteration from None
        self.count += 1
        # One character past the limit, so that BadLine.text shows it was cut.
        if len(self.raw) <= TEXT_MAX:
            self.raw += line[: TEXT_MAX + 1]
        return line


# -- entries ---------------------------------------------------------------------


def _text_entries(lines: Iterator[str], encoding: str | None) -> Iterator[Entry]:
    # The loop of a list with millions of lines: no wrapper around the lines,
    # and a cheap test in C before the regex.
    number = 0
    while True:
        try:
            line = next(lines)
        except StopIteration:
            return
        except (OSError, ValueError) as exc:
            yield _stopped(number, exc)
            return
        number += 1
        text = line.strip()
        if not text:
            continue
        if text[0] == "\ufeff":
            # A byte-order mark mid-file: files joined with cat.
            text = text.lstrip("\ufeff").strip()
            if not text:
                continue
        if text[0] == "#":
            continue
        # isprintable() is False for controls and lone surrogates, but also
        # for a no-break space and the like, which are for URL validation.
        flaw = None if text.isprintable() else SUSPECT.search(text)
        if flaw is None:
            yield InputLine(number, text)
        else:
            column = line.index(text) + flaw.start() + 1
            reason = describe(flaw.group(), encoding, f"at column {column}")
            yield BadLine(number, reason, shown_text(text))


def _csv_entries(
    lines: _Lines,
    encoding: str | None,
    label: str,
    column: str,
    name_column: str | None,
    delimiter: str,
) -> Generator[Entry | None, None, None]:
    reader = csv.reader(lines, delimiter=delimiter)
    header = _header(reader, lines, label)
    found = ", ".join(shown_text(name) for name in header) or "no header"
    for wanted in (column, name_column):
        if wanted is not None and wanted not in header:
            raise InputError(f"CSV has no column {wanted!r} (found: {found})")
    url_at = header.index(column)
    name_at = None if name_column is None else header.index(name_column)
    width = len(header)
    yield None
    while True:
        start = lines.count + 1
        lines.raw = ""
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if lines.count < start:
                # Nothing consumed: asking again would fail the same way forever.
                yield BadLine(start, f"reading stopped: {exc}", shown_text(lines.raw))
                return
            yield BadLine(start, f"unreadable CSV row ({exc})", shown_text(lines.raw))
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != width:
            reason = f"row has {len(row)} field{'s' * (len(row) != 1)}, header has {width}"
            yield BadLine(start, reason, shown_text(lines.raw))
            continue
        url, problem = _cell(row[url_at], column, encoding)
        name = None
        if problem is None and name_at is not None and name_column is not None:
            name, problem = _cell(row[name_at], name_column, encoding)
        if problem is None:
            yield InputLine(start, url, name)
        else:
            yield BadLine(start, problem, shown_text(lines.raw))
    if lines.error is not None:
        yield _stopped(lines.count, lines.error)


def _header(reader: Iterator[list[str]], lines: _Lines, label: str) -> list[str]:
    """The header row's names, stripped; [] for an input with no rows at all."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            if lines.error is not None:
                raise InputError(f"cannot read {label}: {lines.error}") from None
            return []
        except csv.Error as exc:
            raise InputError(f"cannot read the CSV header of {label}: {exc}") from None
        if any(cell.strip() for cell in row):
            # A BOM left by a text stream would hide the first column's name.
            return [cell.strip().lstrip("\ufeff").strip() for cell in row]


def _cell(value: str, column: str, encoding: str | None) -> tuple[str, str | None]:
    """A cell's stripped text, and what makes it unusable, if anything."""
    text = value.strip()
    if not text:
        return text, f"empty {column!r} cell"
    flaw = SUSPECT.search(text)
    if flaw is None:
        return text, None
    where = f"in the {column!r} cell, character {flaw.start() + 1}"
    return text, describe(flaw.group(), encoding, where)
