"""The command refuses a report or journal that would overwrite its input or each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from freepik_bg.testing import Emulator

from .conftest import run_cli

JOURNAL = ".freepik-bg-journal.jsonl"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--report", "urls.txt"], "--report urls.txt is the input file"),
        (["--report", "./sub/../urls.txt"], "is the input file"),
        (["--journal", "urls.txt"], "the journal urls.txt is the input file"),
        (["--journal", "j.jsonl", "--report", "j.jsonl"], "--report j.jsonl is the journal"),
        (["--report", f"out/{JOURNAL}"], "is the journal"),
        # Dask: each partition keeps its own journal, but the report is the command's.
        (["--workers", "1", "--report", "urls.txt"], "--report urls.txt is the input file"),
    ],
)
def test_a_report_or_journal_over_the_input_is_refused_before_any_post(
    emu: Emulator, tmp_path: Path, flags: list[str], message: str
) -> None:
    (tmp_path / "sub").mkdir()
    listing = tmp_path / "urls.txt"
    text = "".join(f"{emu.image_url('ball-small.png')}?own={i}\n" for i in range(3))
    listing.write_text(text)
    if "j.jsonl" in flags:
        (tmp_path / "j.jsonl").write_text("")  # a journal from an earlier run
    posts = emu.stats.posts
    args = ["remove", "urls.txt", "-o", "out", "--base-url", emu.base_url, *flags]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert listing.read_text() == text  # the list being worked through is intact
    assert emu.stats.posts == posts


def test_a_report_beside_the_input_is_fine(emu: Emulator, tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text(f"{emu.image_url('ball-small.png')}?own=ok\n")
    result = run_cli(
        ["remove", "urls.txt", "-o", "out", "--base-url", emu.base_url, "--report", "r.json"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "r.json").exists()


@pytest.mark.parametrize(
    "flags",
    [
        # Another --journal: the journal's own lock does not see the first run.
        ["--journal", "other.jsonl"],
        # Dask keeps a journal per partition: nothing else locks the folder.
        ["--workers", "1"],
    ],
    ids=["another journal", "dask"],
)
def test_a_second_run_into_the_same_folder_is_refused_whatever_its_journal(
    emu: Emulator, tmp_path: Path, flags: list[str]
) -> None:
    from freepik_bg._destination_lock import release
    from freepik_bg._remove_command import lock_output

    listing = tmp_path / "urls.txt"
    listing.write_text(f"{emu.image_url('ball-small.png')}?busy=1\n")
    held = lock_output(str(tmp_path / "out"))  # a first run, mid-way, into ./out
    try:
        args = ["remove", "urls.txt", "-o", "out/", "--base-url", emu.base_url, *flags]
        result = run_cli(args, cwd=tmp_path)
    finally:
        release(held)
    assert result.returncode == 2, result.stderr
    assert "another run on this machine is writing to out/" in result.stderr
    assert emu.stats.posts == 0
