"""The CLI's pre-POST scan of its input counts plain URL lines without parsing them (#15).

`freepik-bg remove` checks every line of its input before the first POST (a local file
without --stage, or two rows with one name, stop the run however far down they are). A
list of plain http(s) URLs takes `_cli_inputs.plain_url` (one regex) instead of
`validate_image_url` (urlsplit) per line. Here: that the shortcut never accepts a line the
full check would treat differently, that the count is the full check's count, and that
what stops a run is still found at the end of a long list.
"""

from __future__ import annotations

import argparse
import itertools
import random
from pathlib import Path

import pytest

from freepik_bg import _cli_inputs
from freepik_bg._cli_inputs import UsageError, _Checker, open_input, plain_url
from freepik_bg._errors import InvalidRequestError
from freepik_bg._input import read_entries
from freepik_bg._models import Size
from freepik_bg._targets import is_local_reference
from freepik_bg._urls import MAX_URL_LENGTH, validate_image_url

SIZE: Size = "high_resolution"  # the CLI's default
SCHEMES = ["http", "https", "HTTPS", "hTtP", "ftp", "file", "", "s3", "httpx", "http:"]
SEPARATORS = ["://", ":/", "//", ":///", ""]
HOSTS = [
    "example.com",
    "cdn.example.com",
    "a",
    ".",
    "-",
    "127.0.0.1",
    "[::1]",
    "[::1",
    "::1]",
    "user@host",
    "user:pw@host",
    "bücher.example",
    "xn--bcher-kva.example",
    "ex ample.com",
    "host\x00",
    "host\u00a0",
    "",
    "host:",
    "host:0",
    "host:80",
    "host:9999",
    "host:65535",
    "host:65536",
    "host:99999",
    "host:12a",
    "host:-1",
    "host:+1",
    "host:٣",  # an Arabic-Indic digit: isdigit() is true for it
]
TAILS = [
    "",
    "/",
    "/a.jpg",
    "/a/b/c.png?w=800&h=600",
    "?q=1",
    "#frag",
    "/a b.jpg",
    "/a\tb.jpg",
    "/é.png",
    "/%20.png",
    "/a\x7f.png",
    "/a\x1f.png",
    "\\x.png",
    "/[x].png",
    "/a.png ",
    " /a.png",
    "/\u2028.png",
    "@evil.example/a.png",
    ":8080/a.png",
]


def _corpus() -> list[str]:
    every = ["".join(parts) for parts in itertools.product(SCHEMES, SEPARATORS, HOSTS, TAILS)]
    # And some mangled at random (a fixed seed: the same cases every run).
    rng = random.Random(15)
    alphabet = "hHtTpPsS:/.-@[]?#%0123456789aé \t\x00\x7f\\"
    for _ in range(20_000):
        text = rng.choice(every)
        chars = list(text)
        for _ in range(rng.randint(1, 3)):
            where = rng.randrange(len(chars) + 1)
            chars.insert(where, rng.choice(alphabet))
        every.append("".join(chars))
    return every


def test_a_line_the_shortcut_accepts_is_a_url_the_full_check_accepts_as_it_is() -> None:
    accepted = 0
    for text in _corpus():
        if not plain_url(text):
            continue
        accepted += 1
        assert validate_image_url(text) == text, text
        assert not is_local_reference(text), text
    assert accepted > 300  # the shortcut is taken, not only ever declined


@pytest.mark.parametrize(
    "text",
    [
        "https://cdn.example.com/p/1/img-1.jpg?w=800",
        "HTTP://EXAMPLE.COM",
        "http://127.0.0.1:9999/a.png#x",
        "https://a/%E9.png",
    ],
)
def test_common_urls_take_the_shortcut(text: str) -> None:
    assert plain_url(text)


@pytest.mark.parametrize(
    "text",
    [
        "http://host:99999/a.png",  # a port out of range: urlsplit's to judge
        "http://[::1]/a.png",
        "http://user@host/a.png",
        "https://bücher.example/a.png",
        "https://example.com/é.png",
        "https://example.com/a b.png",
        "file:///tmp/a.png",
        "photos/a.png",
        "https://example.com/" + "a" * MAX_URL_LENGTH,
    ],
)
def test_anything_unusual_takes_the_full_check(text: str) -> None:
    assert not plain_url(text)


def _args(path: Path, tmp_path: Path, **extra: object) -> argparse.Namespace:
    values: dict[str, object] = {"column": None, "name_column": None, "delimiter": None}
    values.update(extra)
    values.setdefault("output", str(tmp_path / "out"))
    return argparse.Namespace(input=str(path), **values)


def test_the_count_is_the_one_the_full_check_makes(tmp_path: Path) -> None:
    (tmp_path / "here.png").write_bytes(b"")
    lines = [
        "https://example.com/a.png",
        "# a comment",
        "",
        "http://host:99999/b.png",  # refused by the full check: not counted
        "https://bücher.example/c.png",  # valid, by the full check
        "not a url",  # neither a URL nor a file: a bad line
        "ftp://example.com/d.png",
        "https://example.com/a.png",  # a duplicate is still an item
        "https://example.com/\x01.png",  # a control character: a bad line
        "https://[::1/e.png",
        "http:/example.com/f.png",
        str(tmp_path / "missing.png"),
    ]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = _args(listing, tmp_path)
    oracle = _Checker(args, stage=None, sizes=(SIZE,))
    for entry in read_entries(str(listing)):
        oracle.add(entry)  # every line through the full check
    source = open_input(args, stage=None, sizes=(SIZE,))
    source.close()
    assert source.total == oracle.usable == 3


def _long_list(tmp_path: Path, last: str) -> Path:
    listing = tmp_path / "list.txt"
    body = "".join(f"https://cdn.example.com/img-{i}.jpg\n" for i in range(5000))
    listing.write_text(body + last + "\n", encoding="utf-8")
    return listing


def test_a_local_file_at_the_end_of_a_long_list_still_stops_the_run(tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"")
    listing = _long_list(tmp_path, str(photo))
    with pytest.raises(UsageError, match=r"line 5001: .* is a local file.*--stage"):
        open_input(_args(listing, tmp_path), stage=None, sizes=(SIZE,))


def test_a_bad_url_at_the_end_of_a_long_list_is_one_bad_line(tmp_path: Path) -> None:
    listing = _long_list(tmp_path, "http://host:99999/a.png")
    source = open_input(_args(listing, tmp_path), stage=None, sizes=(SIZE,))
    source.close()
    assert source.total == 5000
    with pytest.raises(InvalidRequestError):
        validate_image_url("http://host:99999/a.png")


def test_a_name_clash_at_the_end_of_a_long_csv_still_stops_the_run(tmp_path: Path) -> None:
    # With a name column every row takes the full check: names must be unique.
    rows = "".join(f"https://cdn.example.com/img-{i}.jpg,sku-{i}\n" for i in range(5000))
    table = tmp_path / "feed.csv"
    table.write_text("url,sku\n" + rows + "https://cdn.example.com/other.jpg,sku-7\n")
    args = _args(table, tmp_path, column="url", name_column="sku")
    with pytest.raises(UsageError, match=r"line 9 and line 5002 are both named 'sku-7.png'"):
        open_input(args, stage=None, sizes=(SIZE,))


def test_one_image_under_one_name_twice_is_no_clash_however_spelled(tmp_path: Path) -> None:
    # The run pays for it once and stores it once: the scan must not refuse it.
    table = tmp_path / "feed.csv"
    rows = [
        "url,sku",
        "https://cdn.example.com/a.jpg,sku-1",
        "HTTPS://CDN.example.com/a.jpg#x,sku-1",
    ]
    table.write_text("\n".join(rows) + "\n")
    args = _args(table, tmp_path, column="url", name_column="sku")
    source = open_input(args, stage=None, sizes=(SIZE,))
    source.close()
    assert source.total == 2
    # Another image (a path's case counts) under that name is still a clash.
    table.write_text("\n".join([*rows, "https://cdn.example.com/A.jpg,sku-1"]) + "\n")
    with pytest.raises(UsageError, match=r"line 2 and line 4 are both named 'sku-1.png'"):
        open_input(args, stage=None, sizes=(SIZE,))


# -- local files: the scan's path resolution ------------------------------------------


def _tree(root: Path) -> list[Path]:
    """Paths of every shape the scan resolves: links to folders and files, loops, ``..``."""
    (root / "photos" / "shoes").mkdir(parents=True)
    (root / "photos" / "shoes" / "red.png").write_bytes(b"")
    (root / "photos" / "cover.png").write_bytes(b"")
    (root / "linked").symlink_to(root / "photos")
    (root / "photos" / "alias.png").symlink_to("shoes/red.png")
    (root / "dangling.png").symlink_to(root / "nowhere.png")
    (root / "loop").symlink_to(root / "loop")
    (root / "loopdir").symlink_to("loopdir")
    relative = [
        "photos/shoes/red.png",
        "linked/shoes/red.png",
        "linked/alias.png",
        "photos/alias.png",
        "photos/shoes/../cover.png",
        "photos/shoes/..",
        "photos/.",
        "cover.png",
        "dangling.png",
        "missing/deeper/a.png",
        "linked/missing.png",
        "loop",
        "loop/a.png",
        "loopdir/a.png",
        ".",
        "/",
    ]
    return [Path(text) for text in relative] + [root / text for text in relative]


@pytest.mark.parametrize("kept", [4096, 2])
def test_the_scans_resolution_of_a_path_is_resolve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kept: int
) -> None:
    paths = _tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_cli_inputs, "_FOLDERS_KEPT", kept)  # 2: forgets, and resolves anew
    checker = _Checker(_args(tmp_path / "list.txt", tmp_path), stage="s3://b/p/", sizes=(SIZE,))
    for path in [*paths, *paths]:  # the second time from the folders it keeps
        try:
            expected = str(path.resolve())
        except RuntimeError:  # a symlink loop: the scan meets it as resolve does
            with pytest.raises(RuntimeError):
                checker._resolved(path)
            continue
        assert checker._resolved(path) == expected, path
        assert len(checker._folders) <= kept


@pytest.mark.parametrize("link", ["folder", "file"])
def test_an_output_that_a_symlink_puts_on_its_input_is_refused(tmp_path: Path, link: str) -> None:
    photos = tmp_path / "photos"
    (photos / "shoes").mkdir(parents=True)
    (photos / "bags").mkdir()
    for i in range(50):  # walked first: the folders the scan keeps are in use by then
        (photos / "bags" / f"tote-{i}.png").write_bytes(b"")
    (photos / "shoes" / "red.png").write_bytes(b"")
    out = tmp_path / "out"
    out.mkdir()
    if link == "folder":
        (out / "shoes").symlink_to(photos / "shoes")  # out/shoes/red.png is the input
    else:
        (out / "shoes").mkdir()
        (out / "shoes" / "red.png").symlink_to(photos / "shoes" / "red.png")
    args = _args(photos, tmp_path, output=str(out))
    with pytest.raises(UsageError, match=r"shoes/red\.png would replace the input itself"):
        open_input(args, stage="s3://b/p/", sizes=(SIZE,))


def test_a_folder_staged_into_a_separate_output_passes(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    _tree(tmp_path)
    args = _args(photos, tmp_path, output=str(tmp_path / "out"))
    source = open_input(args, stage="s3://b/p/", sizes=(SIZE,))
    source.close()
    assert source.total == 3  # shoes/red.png, cover.png, and alias.png (a link to red)
