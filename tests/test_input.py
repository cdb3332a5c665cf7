"""The URL-list reader: every way a list of URLs arrives broken, and none of them crash."""

from __future__ import annotations

import codecs
import doctest
import errno
import gc
import io
import itertools
import random
import sys
import tracemalloc
from pathlib import Path
from typing import IO, Any

import pytest

from freepik_bg import _decode, _input
from freepik_bg._input import (
    BadLine,
    Entry,
    InputError,
    InputLine,
    count_entries,
    read_entries,
)

A, B, C, D, E = (f"https://example.com/{name}.png" for name in "abcde")


def entries(source: Any, **options: Any) -> list[Entry]:
    return list(read_entries(source, **options))


def urls(found: list[Entry]) -> list[str]:
    return [entry.url for entry in found if isinstance(entry, InputLine)]


def bad_lines(found: list[Entry]) -> list[BadLine]:
    return [entry for entry in found if isinstance(entry, BadLine)]


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8", newline="")
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[IO[bytes]]:
    """Every file read_entries opens, to check that it closes them."""
    files: list[IO[bytes]] = []
    real_open = open

    def recording_open(*args: Any, **kwargs: Any) -> Any:
        file = real_open(*args, **kwargs)
        files.append(file)
        return file

    monkeypatch.setattr(_input, "open", recording_open, raising=False)
    return files


class Trickle(io.RawIOBase):
    """A pipe-like stream: a few bytes a read, then maybe an I/O error."""

    def __init__(self, data: bytes, *, step: int = 3, fail_at: int | None = None) -> None:
        super().__init__()
        self._data, self._step, self._fail_at, self._at = data, step, fail_at, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._fail_at is not None and self._at >= self._fail_at:
            raise OSError(errno.EIO, "Input/output error")
        chunk = self._data[self._at : self._at + min(self._step, len(buffer))]
        buffer[: len(chunk)] = chunk
        self._at += len(chunk)
        return len(chunk)


# -- text: bytes and encodings -------------------------------------------------------


def test_a_bad_byte_in_line_3_of_5_is_one_bad_line_and_reading_goes_on(tmp_path: Path) -> None:
    data = f"{A}\n{B}\nhttps://example.com/\xff.png\n{D}\n{E}\n".encode("latin-1")
    found = entries(write(tmp_path, "urls.txt", data))
    assert found == [
        InputLine(1, A),
        InputLine(2, B),
        BadLine(3, "not valid UTF-8 (byte 0xff at column 21)", "https://example.com/\ufffd.png"),
        InputLine(4, D),
        InputLine(5, E),
    ]
    assert str(found[2]) == "line 3: not valid UTF-8 (byte 0xff at column 21)"


def test_a_latin1_file_gives_bad_lines_only_where_it_is_not_ascii(tmp_path: Path) -> None:
    text = "# catálogo de verano\nhttps://e.com/café.png\nhttps://e.com/plain.png\n  https://e.com/naïve.png\n"
    found = entries(write(tmp_path, "urls.txt", text.encode("latin-1")))
    # The accented comment is skipped like any comment: it holds no entry.
    assert found == [
        BadLine(2, "not valid UTF-8 (byte 0xe9 at column 18)", "https://e.com/caf\ufffd.png"),
        InputLine(3, "https://e.com/plain.png"),
        BadLine(4, "not valid UTF-8 (byte 0xef at column 19)", "https://e.com/na\ufffdve.png"),
    ]


def test_a_utf8_bom_is_not_part_of_the_first_url(tmp_path: Path) -> None:
    path = write(tmp_path, "urls.txt", codecs.BOM_UTF8 + f"{A}\n{B}\n".encode())
    assert entries(path) == [InputLine(1, A), InputLine(2, B)]


def test_a_bom_in_the_middle_from_joined_files_is_ignored() -> None:
    data = f"{A}\n\ufeff{B}\n\ufeff\n".encode()
    assert entries(io.BytesIO(data)) == [InputLine(1, A), InputLine(2, B)]


LISTING = "# shots\r\nhttps://e.com/café.png\r\n\r\nhttps://e.com/日本/ü.png\r\n"
UNICODE_URLS = [InputLine(2, "https://e.com/café.png"), InputLine(4, "https://e.com/日本/ü.png")]


@pytest.mark.parametrize(
    "encoded",
    [
        codecs.BOM_UTF16_LE + LISTING.encode("utf-16-le"),
        codecs.BOM_UTF16_BE + LISTING.encode("utf-16-be"),
        codecs.BOM_UTF32_LE + LISTING.encode("utf-32-le"),
        codecs.BOM_UTF32_BE + LISTING.encode("utf-32-be"),
        codecs.BOM_UTF8 + LISTING.encode("utf-8"),
        LISTING.encode("utf-8"),
    ],
    ids=["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be", "utf-8-bom", "utf-8"],
)
def test_a_bom_chooses_the_encoding(tmp_path: Path, encoded: bytes) -> None:
    assert entries(write(tmp_path, "urls.txt", encoded)) == UNICODE_URLS
    assert entries(io.BytesIO(encoded)) == UNICODE_URLS
    # A pipe that hands over a byte at a time, the BOM split across reads.
    assert entries(Trickle(encoded, step=1)) == UNICODE_URLS


@pytest.mark.parametrize(
    ("codec", "shown"),
    [("utf-16-le", "UTF-16 LE"), ("utf-16-be", "UTF-16 BE"), ("utf-32-le", "UTF-32 LE")],
)
def test_utf16_without_a_bom_is_refused_at_call_time(
    tmp_path: Path, codec: str, shown: str
) -> None:
    path = write(tmp_path, "urls.txt", LISTING.encode(codec))
    with pytest.raises(InputError) as caught:
        read_entries(path)  # no next(): the check runs at call time
    message = str(caught.value)
    assert str(path) in message
    assert f"looks like {shown} text without a byte-order mark" in message
    assert "re-save it as UTF-8" in message


def test_a_utf16_file_cut_mid_character_ends_in_a_bad_line() -> None:
    data = codecs.BOM_UTF16_LE + f"{A}\n{B}\n".encode("utf-16-le") + b"x"
    found = entries(io.BytesIO(data))
    assert found == [
        InputLine(1, A),
        InputLine(2, B),
        BadLine(3, "not valid UTF-16 (byte 0x78 at column 1)", "\ufffd"),
    ]


def test_a_lone_surrogate_in_utf16_is_a_bad_line() -> None:
    data = codecs.BOM_UTF16_LE + "a\n".encode("utf-16-le") + b"\x00\xd8b\x00\n\x00c\x00"
    found = entries(io.BytesIO(data))
    assert found[0] == InputLine(1, "a")
    assert found[1].line == 2
    assert isinstance(found[1], BadLine)
    assert found[1].reason.startswith("not valid UTF-16 (byte 0x00 at column 1")
    assert found[2] == InputLine(3, "c")


@pytest.mark.parametrize(
    ("head", "what"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x02", "a PNG image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "a JPEG image"),
        (b"PK\x03\x04\x14\x00\x06\x00", "a ZIP archive (an .xlsx workbook? export it as CSV)"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "an image or video file"),
        (bytes(range(256)) * 8, "a binary file (NUL bytes)"),
    ],
    ids=["png", "jpeg", "xlsx", "webp", "nuls"],
)
def test_a_binary_file_is_refused_at_call_time(tmp_path: Path, head: bytes, what: str) -> None:
    path = write(tmp_path, "urls.txt", head + b"\x00" * 64)
    with pytest.raises(InputError, match="looks like") as caught:
        read_entries(path)
    assert str(caught.value) == f"{path} looks like {what}, not a list of URLs"


# -- text: lines ----------------------------------------------------------------------


def test_crlf_lone_cr_and_lf_endings_all_split_lines() -> None:
    data = f"{A}\r\n{B}\r{C}\n\r\n{D}\r\r{E}"
    expected = [InputLine(1, A), InputLine(2, B), InputLine(3, C), InputLine(5, D), InputLine(7, E)]
    assert entries(io.BytesIO(data.encode())) == expected
    assert entries(io.StringIO(data)) == expected
    assert entries(io.StringIO(data, newline="")) == expected


def test_a_crlf_split_by_the_sniffed_head_is_one_line_ending() -> None:
    # The first 4 KiB are read up front and replayed: "\r" ends the head, "\n" starts the rest.
    first = "https://example.com/" + "x" * (_decode._HEAD_SIZE - 21) + "\r"
    data = (first + f"\n{B}\r\n").encode()
    assert data[_decode._HEAD_SIZE - 1 : _decode._HEAD_SIZE + 1] == b"\r\n"
    assert entries(Trickle(data, step=_decode._HEAD_SIZE)) == [
        InputLine(1, first.strip()),
        InputLine(2, B),
    ]


def test_comments_blank_lines_and_whitespace_are_skipped_silently() -> None:
    data = f"# header\n\n   \n\t\n  # indented comment\n#\n  {A}  \n\t{B}#frag\t\n{C}"
    assert entries(io.StringIO(data)) == [
        InputLine(7, A),
        InputLine(8, f"{B}#frag"),
        InputLine(9, C),
    ]


def test_a_nul_or_control_character_in_a_line_is_a_bad_line() -> None:
    data = f"{A}\nhttps://example.com/\x00b.png\n{C}\nhttps://e.com/\x1b[31mred\n  https://e.com/a\tb\n"
    found = entries(io.BytesIO(data.encode()))
    assert found == [
        InputLine(1, A),
        BadLine(
            2, "control character U+0000 (NUL) at column 21", "https://example.com/\ufffdb.png"
        ),
        InputLine(3, C),
        BadLine(4, "control character U+001B at column 15", "https://e.com/\ufffd[31mred"),
        BadLine(5, "control character U+0009 (tab) at column 18", "https://e.com/a\tb"),
    ]


def test_a_no_break_space_is_left_to_url_validation() -> None:
    # Not a control character: not this module's business.
    assert entries(io.StringIO("https://e.com/a\u00a0b\n")) == [
        InputLine(1, "https://e.com/a\u00a0b")
    ]


def test_bad_line_text_is_cut_to_200_characters() -> None:
    [bad] = entries(io.StringIO("https://e.com/" + "x" * 1000 + "\x00\n"))
    assert isinstance(bad, BadLine)
    assert bad.reason == "control character U+0000 (NUL) at column 1015"
    assert len(bad.text) == 200
    assert bad.text.endswith("x\u2026")


def test_a_trickling_stream_reads_the_same_as_a_whole_one() -> None:
    data = f"# list\r\n{A}\r\n{B}\rhttps://e.com/\xe9\n{C}".encode("latin-1")
    assert entries(Trickle(data, step=1)) == entries(io.BytesIO(data))
    assert urls(entries(Trickle(data, step=1))) == [A, B, C]


def test_an_io_error_mid_stream_is_a_last_bad_line() -> None:
    data = f"{A}\n{B}\n{C}\n".encode()
    found = entries(io.BufferedReader(Trickle(data, step=4, fail_at=len(A) + 1), buffer_size=4))
    assert found == [
        InputLine(1, A),
        BadLine(2, "reading stopped: Input/output error", ""),
    ]


# -- text streams ------------------------------------------------------------------------


def test_string_and_bytes_streams() -> None:
    data = f"# shots\n{A}\n\n{B}\n"
    expected = [InputLine(2, A), InputLine(4, B)]
    assert entries(io.StringIO(data)) == expected
    assert entries(io.BytesIO(data.encode())) == expected


def test_a_file_opened_in_text_mode(tmp_path: Path) -> None:
    path = write(tmp_path, "urls.txt", f"# shots\n{A}\n\n{B}\n")
    with path.open(encoding="utf-8") as stream:
        assert entries(stream) == [InputLine(2, A), InputLine(4, B)]


def test_a_text_stream_with_escaped_bad_bytes_gives_bad_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "urls.txt", f"{A}\nhttps://e.com/\xff\n{C}\n".encode("latin-1"))
    with path.open(encoding="utf-8", errors="surrogateescape") as stream:
        assert entries(stream) == [
            InputLine(1, A),
            BadLine(
                2, "not valid text (undecodable byte 0xff at column 15)", "https://e.com/\ufffd"
            ),
            InputLine(3, C),
        ]


def test_a_strict_text_stream_that_fails_to_decode_stops_with_a_bad_line(tmp_path: Path) -> None:
    # The stream decodes a chunk at a time, so the lines before the bad byte in
    # that chunk are lost too; the BadLine says how to read past it.
    good = "".join(f"https://e.com/{i}.png\n" for i in range(2000))
    path = write(tmp_path, "urls.txt", good.encode() + b"https://e.com/\xff\n" + good.encode())
    with path.open(encoding="utf-8") as stream:
        found = entries(stream)
    *good_ones, last = found
    assert 0 < len(good_ones) < 2000
    assert all(isinstance(entry, InputLine) for entry in good_ones)
    assert isinstance(last, BadLine)
    assert last.line == len(good_ones) + 1
    assert last.reason.startswith(
        f"reading stopped: not valid utf-8 (byte 0xff after line {len(good_ones)}); "
        "pass the path or a binary stream"
    )
    # The same file by path loses only the bad line.
    assert len(entries(path)) == 4001


def test_streams_passed_in_are_not_closed() -> None:
    for stream in (io.BytesIO(f"{A}\n{B}\n".encode()), io.StringIO(f"{A}\n{B}\n")):
        iterator = read_entries(stream)
        next(iterator)
        iterator.close()
        assert not stream.closed
        stream.read()  # still open
    stream = io.BytesIO(f"{A}\n".encode())
    assert urls(entries(stream)) == [A]
    del iterator
    gc.collect()
    assert not stream.closed


def test_a_closed_stream_is_refused_at_call_time() -> None:
    stream = io.BytesIO(b"x")
    stream.close()
    with pytest.raises(InputError, match="cannot read the input stream: I/O operation on closed"):
        read_entries(stream)


# -- stdin --------------------------------------------------------------------------------


def test_dash_reads_stdin_as_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    data = f"{A}\nhttps://e.com/\xe9\n{C}\n".encode("latin-1")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    found = entries("-")
    assert urls(found) == [A, C]
    assert bad_lines(found) == [
        BadLine(2, "not valid UTF-8 (byte 0xe9 at column 15)", "https://e.com/\ufffd")
    ]
    assert not sys.stdin.closed


def test_dash_without_a_binary_stdin_reads_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{A}\n{B}\n"))
    assert urls(entries("-")) == [A, B]


def test_dash_without_any_stdin_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(InputError, match="no standard input"):
        read_entries("-")


# -- paths ----------------------------------------------------------------------------------


def test_a_missing_path_is_refused_at_call_time(tmp_path: Path) -> None:
    path = tmp_path / "nope.txt"
    with pytest.raises(InputError) as caught:
        read_entries(path)
    assert str(caught.value) == f"cannot read {path}: No such file or directory"


def test_a_directory_is_refused_at_call_time(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        read_entries(str(tmp_path))
    assert str(caught.value).startswith(f"cannot read {tmp_path}: ")


@pytest.mark.parametrize("name", ["urls.csv", "URLS.TSV"])
def test_a_csv_path_without_a_column_is_refused_at_call_time(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, f"image\n{A}\n")
    with pytest.raises(InputError) as caught:
        read_entries(path)
    assert str(caught.value) == (
        f"{path} looks like a CSV file: say which column holds the URLs (column=NAME)"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name_column": "sku"}, "name_column needs column"),
        ({"delimiter": ";"}, "delimiter applies to CSV input"),
        ({"column": "image", "delimiter": ";;"}, "delimiter must be one character, not ';;'"),
    ],
)
def test_options_that_do_not_fit_are_refused(options: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_entries(io.StringIO(f"image\n{A}\n"), **options)


def test_input_error_is_a_value_error() -> None:
    assert issubclass(InputError, ValueError)


# -- closing ----------------------------------------------------------------------------------


def test_closing_a_half_read_iterator_closes_the_file(
    tmp_path: Path, opened: list[IO[bytes]]
) -> None:
    path = write(tmp_path, "urls.txt", "".join(f"https://e.com/{i}.png\n" for i in range(5000)))
    iterator = read_entries(path)
    assert next(iterator) == InputLine(1, "https://e.com/0.png")
    assert next(iterator) == InputLine(2, "https://e.com/1.png")
    [file] = opened
    assert not file.closed
    iterator.close()
    assert file.closed


def test_files_are_closed_when_read_out_unstarted_or_dropped(
    tmp_path: Path, opened: list[IO[bytes]]
) -> None:
    path = write(tmp_path, "urls.txt", f"{A}\n{B}\n")
    assert urls(entries(path)) == [A, B]
    read_entries(path).close()  # never iterated
    dropped = read_entries(path)
    next(dropped)
    del dropped
    gc.collect()
    assert len(opened) == 3
    assert all(file.closed for file in opened)


@pytest.mark.parametrize(
    ("name", "data", "options"),
    [
        ("urls.csv", f"sku,url\nA1,{A}\n", {"column": "image"}),
        ("urls.csv", f"image\n{A}\n", {}),
        ("urls.txt", b"\x89PNG\r\n\x1a\n\x00\x00", {}),
        ("urls.txt", LISTING.encode("utf-16-le"), {}),
    ],
    ids=["missing-column", "csv-without-column", "png", "utf-16-no-bom"],
)
def test_a_refused_file_is_closed(
    tmp_path: Path,
    opened: list[IO[bytes]],
    name: str,
    data: str | bytes,
    options: dict[str, str],
) -> None:
    with pytest.raises(InputError):
        read_entries(write(tmp_path, name, data), **options)
    [file] = opened
    assert file.closed


# -- CSV ------------------------------------------------------------------------------------


def test_csv_with_quoted_commas_and_an_embedded_newline_keeps_line_numbers(
    tmp_path: Path,
) -> None:
    data = (
        "sku,image,title\r\n"
        f'A1,{A},"Red, large"\r\n'
        f'A2,"{B}","two\r\nline, title"\r\n'
        f"A3,{C},plain\r\n"
        "\r\n"
        f'A4,{D},"three\nline\ntitle"\r\n'
        f"A5,{E},end"
    )
    found = entries(write(tmp_path, "shots.csv", data), column="image", name_column="sku")
    assert found == [
        InputLine(2, A, "A1"),
        InputLine(3, B, "A2"),
        InputLine(5, C, "A3"),
        InputLine(7, D, "A4"),
        InputLine(10, E, "A5"),
    ]


def test_csv_empty_cells_are_bad_lines_and_blank_rows_are_skipped() -> None:
    data = f"sku,image,note\nA1,{A},\nA2,,x\nA3,   ,x\n,,\n\n  \nA6,{B},\n,{C},x\n"
    found = entries(io.StringIO(data), column="image", name_column="sku")
    assert found == [
        InputLine(2, A, "A1"),
        BadLine(3, "empty 'image' cell", "A2,,x"),
        BadLine(4, "empty 'image' cell", "A3,   ,x"),
        InputLine(8, B, "A6"),
        BadLine(9, "empty 'sku' cell", f",{C},x"),
    ]
    # Without name_column an empty name is nobody's business.
    assert urls(entries(io.StringIO(data), column="image")) == [A, B, C]


def test_csv_ragged_rows_are_bad_lines() -> None:
    data = f"sku,image,note\nA1,{A}\nA2,{B},x,y\nA3\nA4,{C},x\n"
    assert entries(io.StringIO(data), column="image") == [
        BadLine(2, "row has 2 fields, header has 3", f"A1,{A}"),
        BadLine(3, "row has 4 fields, header has 3", f"A2,{B},x,y"),
        BadLine(4, "row has 1 field, header has 3", "A3"),
        InputLine(5, C),
    ]


def test_csv_missing_columns_are_refused_at_call_time_listing_the_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "shots.csv", f"sku, image ,title\nA1,{A},t\n")
    with pytest.raises(InputError) as caught:
        read_entries(path, column="url")
    assert str(caught.value) == "CSV has no column 'url' (found: sku, image, title)"
    with pytest.raises(InputError, match=r"CSV has no column 'name' \(found: sku, image, title\)"):
        read_entries(path, column="image", name_column="name")
    # Header names are matched stripped.
    assert entries(path, column="image", name_column="sku") == [InputLine(2, A, "A1")]


def test_an_empty_csv_has_no_header() -> None:
    for data in ("", "\n\n", " , \n"):
        with pytest.raises(InputError, match=r"CSV has no column 'image' \(found: no header\)"):
            read_entries(io.StringIO(data), column="image")


def test_the_header_may_follow_blank_lines_and_a_bom() -> None:
    data = codecs.BOM_UTF8 + f"\n\nimage\n{A}\n".encode()
    assert entries(io.BytesIO(data), column="image") == [InputLine(4, A)]
    # A text stream decoded as plain UTF-8 keeps the BOM; it must not hide the column.
    assert entries(io.StringIO(f"\ufeffimage\n{A}\n"), column="image") == [InputLine(2, A)]


def test_a_tsv_path_is_tab_delimited(tmp_path: Path) -> None:
    path = write(tmp_path, "shots.tsv", f"sku\timage\nA,1\t{A}\n")
    assert entries(path, column="image", name_column="sku") == [InputLine(2, A, "A,1")]
    # An explicit delimiter wins.
    path = write(tmp_path, "commas.tsv", f"sku,image\nA1,{A}\n")
    assert entries(path, column="image", delimiter=",") == [InputLine(2, A)]


def test_an_explicit_delimiter(tmp_path: Path) -> None:
    path = write(tmp_path, "shots.csv", f'sku;image\n"A;1";{A}\nA2;{B}\n')
    assert entries(path, column="image", name_column="sku", delimiter=";") == [
        InputLine(2, A, "A;1"),
        InputLine(3, B, "A2"),
    ]


def test_excel_unicode_text_export_utf16_tab_delimited(tmp_path: Path) -> None:
    data = codecs.BOM_UTF16_LE + f"sku\timage\r\nÄ1\t{A}\r\n".encode("utf-16-le")
    path = write(tmp_path, "export.txt", data)
    assert entries(path, column="image", name_column="sku", delimiter="\t") == [
        InputLine(2, A, "Ä1")
    ]


def test_csv_bad_bytes_matter_only_in_the_cells_used() -> None:
    data = f"sku,image,note\nA1,{A},caf\xe9\nA2,https://e.com/\xe9.png,x\nA\xe93,{C},x\n"
    found = entries(io.BytesIO(data.encode("latin-1")), column="image", name_column="sku")
    assert found == [
        InputLine(2, A, "A1"),
        BadLine(
            3,
            "not valid UTF-8 (byte 0xe9 in the 'image' cell, character 15)",
            "A2,https://e.com/\ufffd.png,x",
        ),
        BadLine(4, "not valid UTF-8 (byte 0xe9 in the 'sku' cell, character 2)", f"A\ufffd3,{C},x"),
    ]


def test_csv_a_line_break_inside_the_url_cell_is_a_bad_line() -> None:
    data = f'sku,image\nA1,"https://e.com/\na.png"\nA2,{B}\n'
    assert entries(io.StringIO(data), column="image") == [
        BadLine(
            2,
            "control character U+000A (line feed) in the 'image' cell, character 15",
            'A1,"https://e.com/\ufffda.png"',
        ),
        InputLine(4, B),
    ]


def test_csv_a_nul_in_the_url_cell_is_a_bad_line_and_reading_goes_on() -> None:
    # Python 3.10's csv refuses the line, 3.11 reads it: a BadLine either way.
    data = f"sku,image\nA1,https://e.com/\x00.png\nA2,{B}\n".encode()
    bad, good = entries(io.BytesIO(data), column="image")
    assert isinstance(bad, BadLine)
    assert (bad.line, bad.text) == (2, "A1,https://e.com/\ufffd.png")
    assert good == InputLine(3, B)


def test_csv_a_field_over_the_csv_limit_is_a_bad_line_and_reading_goes_on() -> None:
    data = f"sku,image\nA1,https://e.com/{'x' * 200_000}\nA2,{B}\n"
    bad, good = entries(io.StringIO(data), column="image")
    assert bad == BadLine(
        2,
        "unreadable CSV row (field larger than field limit (131072))",
        "A1,https://e.com/" + "x" * 182 + "\u2026",
    )
    assert good == InputLine(3, B)


def test_csv_an_unclosed_quote_swallows_the_rest_without_a_crash() -> None:
    data = f'sku,image\nA1,"{A}\nA2,{B}\n'
    assert entries(io.StringIO(data), column="image") == [
        BadLine(
            2,
            "control character U+000A (line feed) in the 'image' cell, character 26",
            f'A1,"{A}\ufffdA2,{B}',
        )
    ]


def test_csv_an_io_error_mid_stream_is_a_last_bad_line() -> None:
    data = f"image\n{A}\n{B}\n{C}\n".encode()
    stream = io.BufferedReader(Trickle(data, step=4, fail_at=len(A) + 10), buffer_size=4)
    assert entries(stream, column="image") == [
        InputLine(2, A),
        BadLine(3, "reading stopped: Input/output error", ""),
    ]


# -- count_entries ----------------------------------------------------------------------------


def test_count_entries_counts_input_lines(tmp_path: Path) -> None:
    text = write(
        tmp_path, "urls.txt", f"# c\n{A}\n\n{B}\nhttps://e.com/\xff\n{C}\n".encode("latin-1")
    )
    assert count_entries(text) == 3
    table = write(tmp_path, "shots.csv", f"sku,image\nA1,{A}\nA2,\nA3,{C}\n")
    assert count_entries(table, column="image") == 2
    assert count_entries(str(table), column="image", name_column="sku") == 2


def test_count_entries_is_none_where_it_cannot_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{A}\n"))
    assert count_entries("-") is None
    assert sys.stdin.read() == f"{A}\n"  # stdin was left alone
    assert count_entries(io.BytesIO(f"{A}\n".encode())) is None
    assert count_entries(tmp_path / "missing.txt") is None
    assert count_entries(tmp_path) is None
    assert count_entries(write(tmp_path, "shots.csv", f"image\n{A}\n")) is None
    assert count_entries(write(tmp_path, "x.txt", b"\x89PNG\r\n\x1a\n")) is None


# -- scale and fuzz -----------------------------------------------------------------------------


def test_a_million_lines_stream_in_flat_memory(tmp_path: Path) -> None:
    lines, traced = 1_000_000, 100_000
    path = tmp_path / "big.txt"
    with path.open("w", encoding="utf-8") as out:
        for start in range(0, lines, traced):
            out.write(
                "".join(f"https://example.com/{i}.png\n" for i in range(start, start + traced))
            )
    assert path.stat().st_size > 30_000_000
    # tracemalloc slows every allocation several times over, and a million
    # lines traced take over 10 s on a slow box: trace the call (where a
    # reader that loads the file whole would hold all 30 MB) and the first
    # 100,000 entries (where one that keeps its lines would hold some 8 MB),
    # then read the rest untraced.
    tracemalloc.start()
    try:
        entries = read_entries(path)
        entry = next(itertools.islice(entries, traced - 1, None))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024
    assert entry == InputLine(traced, f"https://example.com/{traced - 1}.png")
    for count, entry in enumerate(entries, traced + 1):  # noqa: B007 - checked below
        pass
    assert count == lines
    assert entry == InputLine(lines, f"https://example.com/{lines - 1}.png")


ALPHABET = b'ab:/.#, \t\r\n"\x00\xff\xe9\xc3\xa9\xef\xbb\xbf\x1b'


@pytest.mark.parametrize("seed", range(4))
def test_random_bytes_never_crash(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(250):
        body = bytes(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 300)))
        for data, options in ((body, {}), (b"x,image\n" + body, {"column": "image"})):
            try:
                found = entries(Trickle(data, step=rng.randrange(1, 64)), **options)
            except InputError:  # refused as a whole: a wall of NULs, say
                continue
            lines = [entry.line for entry in found]
            assert lines == sorted(lines)
            assert all(1 <= line <= data.count(b"\n") + data.count(b"\r") + 1 for line in lines)
            for entry in found:
                if isinstance(entry, BadLine):
                    assert entry.reason
                    assert len(entry.text) <= 200
                else:
                    assert entry.url == entry.url.strip()
                    assert entry.url


# -- docs ---------------------------------------------------------------------------------------


def test_the_docstring_examples_hold() -> None:
    result = doctest.testmod(_input, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 5
    assert result.failed == 0


def test_every_public_name_is_documented_with_examples() -> None:
    for name in _input.__all__:
        if name == "Entry":
            continue
        doc: str | None = getattr(_input, name).__doc__
        assert doc is not None
        assert "Examples:" in doc, name
