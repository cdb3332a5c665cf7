"""An input with no usable line still lists, reports and counts every bad one (exit 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from freepik_bg.testing import Emulator

from .conftest import run_cli


@pytest.mark.parametrize(
    ("name", "content", "flags", "bad"),
    [
        ("bad.txt", b"ftp://x/y.jpg\nhttp://a b/c.jpg\nhttp://127.0.0.1:9/n\x00ul.jpg\n", [], 3),
        ("bad.csv", b"sku,image\nS1,\nS2,ftp://x/y.jpg\n", ["--column", "image"], 2),
    ],
)
def test_an_input_of_only_bad_lines_fails_them_all_without_a_post(
    emu: Emulator, tmp_path: Path, name: str, content: bytes, flags: list[str], bad: int
) -> None:
    (tmp_path / name).write_bytes(content)
    posts = emu.stats.posts
    args = ["remove", name, "-o", "out", "--base-url", emu.base_url, "--report", "r.json"]
    result = run_cli([*args, *flags], cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "nothing to do" not in result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["failed"] == bad
    assert report["summary"]["not_attempted"] == 0
    assert all(item["attempts"] == 0 for item in report["items"])
    assert emu.stats.posts == posts


def test_an_empty_input_is_still_nothing_to_do(emu: Emulator, tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("# nothing yet\n\n")
    result = run_cli(["remove", "empty.txt", "-o", "out", "--base-url", emu.base_url], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "found 0 URLs or images" in result.stderr
