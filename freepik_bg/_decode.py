r"""Bytes to text for the URL-list reader: sniffing, never-failing decoding, naming bad bytes.

`decoded_lines` turns a byte or text stream into physical lines of
text. A byte-order mark picks UTF-16 or UTF-32, else it is UTF-8; an image,
an archive or UTF-16 without a byte-order mark is refused with
`Unreadable` before a line is read. Undecodable bytes never raise:
each becomes a lone surrogate, which `describe` names in a BadLine's
reason and `shown_text` shows as U+FFFD.

Examples:
    >>> import io
    >>> data = io.BytesIO(b"a.png\r\nb\xff.png\n")
    >>> lines, encoding = decoded_lines(data, "list.txt", owned=False)
    >>> encoding, list(lines)
    ('UTF-8', ['a.png\r\n', 'b\udcff.png\n'])
    >>> describe("\udcff", encoding, "at column 2")
    'not valid UTF-8 (byte 0xff at column 2)'
    >>> shown_text("b\udcff.png\n")
    'b\ufffd.png'
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, cast

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = [
    "SUSPECT",
    "TEXT_MAX",
    "Unreadable",
    "decoded_lines",
    "describe",
    "os_reason",
    "shown_text",
]

# How much of a byte input is looked at up front to tell text from UTF-16 or an image.
_HEAD_SIZE = 4096
# BadLine.text is for a report line, not a copy of a runaway line or CSV field.
TEXT_MAX = 200

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
SUSPECT = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
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


class Unreadable(Exception):
    """The input is not text that can be read; the message says why.

    `freepik_bg._input` raises it again as an InputError, with the same message.
    """


def os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def decoded_lines(
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
        reason = os_reason(exc) if isinstance(exc, OSError) else str(exc)
        raise Unreadable(f"cannot read {label}: {reason}") from None
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
        raise Unreadable(f"cannot read {label}: {os_reason(exc)}") from None
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
    """The codec and display name of the encoding, from a BOM; Unreadable if it is not text."""
    for bom, codec, shown in _BOMS:
        if head.startswith(bom):
            return codec, shown
    for signature, what in _SIGNATURES:
        if head.startswith(signature):
            raise Unreadable(f"{label} looks like {what}, not a list of URLs")
    if head[4:8] == b"ftyp" or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        raise Unreadable(f"{label} looks like an image or video file, not a list of URLs")
    nuls = head.count(0)
    if nuls:
        wide = _wide_encoding(head)
        if wide is not None:
            raise Unreadable(
                f"{label} looks like {wide} text without a byte-order mark: re-save it as UTF-8"
            )
        # One stray NUL is a bad line; NULs all over are not text at all.
        if nuls >= 2 and nuls * 32 > len(head):
            raise Unreadable(f"{label} looks like a binary file (NUL bytes), not a list of URLs")
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


def describe(char: str, encoding: str | None, where: str) -> str:
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


def shown_text(text: str) -> str:
    """Text fit for a one-line report: bad bytes and controls as U+FFFD, at most 200 chars."""
    text = _UNPRINTABLE.sub("\ufffd", text.rstrip("\r\n"))
    return text if len(text) <= TEXT_MAX else text[: TEXT_MAX - 1] + "\u2026"
