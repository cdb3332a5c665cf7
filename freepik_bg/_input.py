r"""Reading URL lists: text, CSV/TSV, stdin, bytes or text streams, line by line,
never crashing on a bad line.

:func:`read_entries` yields one :class:`InputLine` per usable entry and one
:class:`BadLine` per line that holds none (a byte that is not UTF-8, a control
character, an empty or missing CSV cell), and goes on reading. Problems with
the input as a whole (a missing file, a CSV without the asked-for column, a
UTF-16 file without a byte-order mark, an image where a list was expected)
raise :class:`InputError` when :func:`read_entries` is called, before a single
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

import codecs
import csv
import io
import os
import re
import sys
from collections.abc import Callable, Generator, Iterator
from typing import IO, TYPE_CHECKING, cast

import attrs

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["BadLine", "Entry", "InputError", "InputLine", "count_entries", "read_entries"]

# How much of a byte input is looked at up front to tell text from UTF-16 or an image.
_HEAD_SIZE = 4096
# BadLine.text is for a report line, not a copy of a runaway line or CSV field.
_TEXT_MAX = 200

# Undecodable bytes must never raise. "surrogateescape" cannot stand for bytes
# below 0x80, which UTF-16 and UTF-32 can get wrong (a lone surrogate, a cut-off
# last code unit), so every bad byte b becomes U+DC00 + b here. A decoder never
# yields a lone low surrogate for valid input, so such a character always means
# "this byte was bad", and the BadLine can name it.
_ESCAPE = "freepik_bg.input-escape"


def _escape_bytes(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    bad = error.object[error.start : error.end]
    return "".join(chr(0xDC00 + byte) for byte in bad), error.end


codecs.register_error(_ESCAPE, _escape_bytes)

# Characters that make a line or cell unusable: C0 and C1 controls (a tab or a
# line break inside a URL included) and lone surrogates (undecodable bytes).
_SUSPECT = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# For BadLine.text: everything a terminal would mangle, except the tab of a TSV row.
_UNPRINTABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_NAMES = {0x00: "NUL", 0x09: "tab", 0x0A: "line feed", 0x0D: "carriage return"}

# A text stream splits lines its own way (io.StringIO only at "\n"); lines are
# split again at "\r", "\r\n" and "\n", the way the files are read.
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")

_BOMS = (
    # UTF-32 LE first: its BOM starts with UTF-16 LE's.
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)

# Files people pass by mistake: a cutout, the spreadsheet instead of its CSV export.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (an .xlsx workbook? export it as CSV)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Office document (export it as CSV)"),
    (b"\x1f\x8b", "a gzip file (decompress it first)"),
    (b"\xfd7zXZ\x00", "an xz file (decompress it first)"),
    (b"\x28\xb5\x2f\xfd", "a zstd file (decompress it first)"),
)


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

    Raised by :func:`read_entries` when it is called, before anything is
    yielded, so before any credit is spent.

    Examples:
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
    r"""The entries of a URL list, lazily, one :class:`InputLine` or :class:`BadLine` at a time.

    Without ``column`` the input is text: one URL a line, surrounding
    whitespace stripped, blank lines and ``#`` comments skipped. With
    ``column`` it is CSV (TSV for a ``.tsv`` path) with a header row, and the
    URL is that column's cell. Bytes are UTF-8 unless a UTF-16 or UTF-32
    byte-order mark says otherwise; a line with a bad byte becomes a BadLine
    and reading goes on. Lines may end in ``\n``, ``\r\n`` or ``\r``.

    The input is opened, sniffed and (for CSV) its header read when this is
    called, so :class:`InputError` comes before any entry. A file opened here
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
    up) and for an input :func:`read_entries` refuses.

    Examples:
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
                    raise InputError(f"cannot read {path}: {_os_reason(exc)}") from None
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
        text, encoding = _decoded_lines(stream, label, owned=opened is not None)
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


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _decoded_lines(
    stream: IO[bytes] | IO[str], label: str, *, owned: bool
) -> tuple[Iterator[str], str | None]:
    """The physical lines of a stream as text, and the encoding bytes were decoded from.

    The encoding is None for a text stream: it was decoded before it got here.
    ``owned`` says the stream was opened here, so a wrapper may close it.
    """
    try:
        # read(0) consumes nothing and tells a text stream from a binary one,
        # whatever class implements it.
        probe = stream.read(0)
    except (OSError, ValueError) as exc:
        reason = _os_reason(exc) if isinstance(exc, OSError) else str(exc)
        raise InputError(f"cannot read {label}: {reason}") from None
    if isinstance(probe, str):
        return _split_lines(cast("IO[str]", stream)), None
    binary = cast("IO[bytes]", stream)
    # read1 returns what is there without waiting for more: a slow pipe on
    # stdin yields its first lines as they come.
    read: Callable[[int], bytes | None] = getattr(binary, "read1", binary.read)
    head = b""
    try:
        # At least 4 bytes, for any byte-order mark, however a pipe splits them.
        while len(head) < 4:
            chunk = read(_HEAD_SIZE - len(head))
            if not chunk:
                break
            head += chunk
    except OSError as exc:
        raise InputError(f"cannot read {label}: {_os_reason(exc)}") from None
    encoding, shown = _sniff(head, label)
    raw: IO[bytes]
    if owned and binary.seekable():
        # Our own file: go back over the head rather than replay it, which is
        # the faster read of a big list.
        binary.seek(0)
        raw = binary
    else:
        # Someone else's stream, maybe a pipe: replay the head, and keep the
        # wrapper from closing the stream when it is collected.
        raw = io.BufferedReader(_Replay(head, read))
    text = io.TextIOWrapper(
        raw,
        encoding=encoding,
        errors=_ESCAPE,
        # Split at "\r", "\r\n" and "\n" but leave the endings in: csv needs them.
        newline="",
    )
    return text, shown


def _sniff(head: bytes, label: str) -> tuple[str, str]:
    """The codec and display name of the encoding, from a BOM; InputError if it is not text."""
    for bom, codec, shown in _BOMS:
        if head.startswith(bom):
            return codec, shown
    for signature, what in _SIGNATURES:
        if head.startswith(signature):
            raise InputError(f"{label} looks like {what}, not a list of URLs")
    if head[4:8] == b"ftyp" or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        raise InputError(f"{label} looks like an image or video file, not a list of URLs")
    nuls = head.count(0)
    if nuls:
        wide = _wide_encoding(head)
        if wide is not None:
            raise InputError(
                f"{label} looks like {wide} text without a byte-order mark: re-save it as UTF-8"
            )
        # One stray NUL is a bad line; NULs all over are not text at all.
        if nuls >= 2 and nuls * 32 > len(head):
            raise InputError(f"{label} looks like a binary file (NUL bytes), not a list of URLs")
    return "utf-8", "UTF-8"


def _wide_encoding(head: bytes) -> str | None:
    """UTF-16 or UTF-32 text of mostly ASCII, told by where its NUL bytes fall."""

    def nul_share(start: int, step: int) -> float:
        part = head[start::step]
        return part.count(0) / len(part) if part else 0.0

    if len(head) >= 8:
        shares = [nul_share(offset, 4) for offset in range(4)]
        if min(shares[1:]) > 0.9 and shares[0] < 0.5:
            return "UTF-32 LE"
        if min(shares[:3]) > 0.9 and shares[3] < 0.5:
            return "UTF-32 BE"
    if len(head) >= 4:
        even, odd = nul_share(0, 2), nul_share(1, 2)
        if odd > 0.5 and even < 0.1:
            return "UTF-16 LE"
        if even > 0.5 and odd < 0.1:
            return "UTF-16 BE"
    return None


class _Replay(io.RawIOBase):
    """A raw stream giving back the sniffed head, then reading on from the source.

    Closing it leaves the source alone: whoever opened the source closes it.
    """

    def __init__(self, head: bytes, read: Callable[[int], bytes | None]) -> None:
        super().__init__()
        self._pending = memoryview(head)
        self._read = read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if not self._pending:
            self._pending = memoryview(self._read(len(view)) or b"")
        size = min(len(view), len(self._pending))
        view[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def _split_lines(stream: IO[str]) -> Iterator[str]:
    for chunk in stream:
        if "\r" in chunk:
            yield from _LINE.findall(chunk)
        else:
            yield chunk


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
        reason = _os_reason(exc) if isinstance(exc, OSError) else str(exc)
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
        if len(self.raw) <= _TEXT_MAX:
            self.raw += line[: _TEXT_MAX + 1]
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
        flaw = None if text.isprintable() else _SUSPECT.search(text)
        if flaw is None:
            yield InputLine(number, text)
        else:
            column = line.index(text) + flaw.start() + 1
            reason = _describe(flaw.group(), encoding, f"at column {column}")
            yield BadLine(number, reason, _shown(text))


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
    found = ", ".join(_shown(name) for name in header) or "no header"
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
                yield BadLine(start, f"reading stopped: {exc}", _shown(lines.raw))
                return
            yield BadLine(start, f"unreadable CSV row ({exc})", _shown(lines.raw))
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != width:
            reason = f"row has {len(row)} field{'s' * (len(row) != 1)}, header has {width}"
            yield BadLine(start, reason, _shown(lines.raw))
            continue
        url, problem = _cell(row[url_at], column, encoding)
        name = None
        if problem is None and name_at is not None and name_column is not None:
            name, problem = _cell(row[name_at], name_column, encoding)
        if problem is None:
            yield InputLine(start, url, name)
        else:
            yield BadLine(start, problem, _shown(lines.raw))
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
    flaw = _SUSPECT.search(text)
    if flaw is None:
        return text, None
    where = f"in the {column!r} cell, character {flaw.start() + 1}"
    return text, _describe(flaw.group(), encoding, where)


def _describe(char: str, encoding: str | None, where: str) -> str:
    """The BadLine reason for a suspect character found ``where``."""
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        if encoding is not None:
            return f"not valid {encoding} (byte 0x{code - 0xDC00:02x} {where})"
        if 0xDC80 <= code <= 0xDCFF:
            # A text stream opened with errors="surrogateescape" keeps bad bytes this way.
            return f"not valid text (undecodable byte 0x{code - 0xDC00:02x} {where})"
        return f"not valid text (lone surrogate U+{code:04X} {where})"
    name = _CONTROL_NAMES.get(code)
    shown = f"U+{code:04X} ({name})" if name else f"U+{code:04X}"
    return f"control character {shown} {where}"


def _shown(text: str) -> str:
    """Text fit for a one-line report: bad bytes and controls as U+FFFD, at most 200 chars."""
    text = _UNPRINTABLE.sub("\ufffd", text.rstrip("\r\n"))
    return text if len(text) <= _TEXT_MAX else text[: _TEXT_MAX - 1] + "\u2026"
