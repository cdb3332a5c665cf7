"""Dry runs and the spending confirmation: what would be spent, found without a request."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import freepik_bg
from freepik_bg import Plan, output_name, plan_batch
from freepik_bg._input import BadLine, InputLine
from freepik_bg.testing import Emulator

from .conftest import CLI, cli_env, links, run_cli

BOTH = ("high_resolution", "preview")


def journal_lines(path: Path, *records: dict[str, object]) -> None:
    path.write_text("".join(json.dumps({"v": 1, **record}) + "\n" for record in records))


def posted(url: str, age: timedelta) -> dict[str, object]:
    received = datetime.now().astimezone() - age
    return {"event": "posted", "url": url, "received_at": received.isoformat(), "links": links()}


def stored(url: str, *sizes: str) -> dict[str, object]:
    return {"event": "stored", "url": url, "size": sizes[0], "sizes": list(sizes)}


@pytest.mark.anyio
async def test_a_plan_counts_every_kind_of_item(tmp_path: Path) -> None:
    live, expired, done, on_disk, new, other = (f"https://img.test/{n}.jpg" for n in "abcdef")
    journal = tmp_path / "j.jsonl"
    journal_lines(
        journal,
        posted(live, timedelta(seconds=30)),
        stored(live, "high_resolution"),
        posted(expired, timedelta(minutes=10)),
        stored(expired, "high_resolution"),
        stored(done, *BOTH),
    )
    out = tmp_path / "out"
    out.mkdir()
    for size in BOTH:
        (out / output_name(on_disk, size)).write_bytes(b"png")  # type: ignore[arg-type]
    entries = [
        InputLine(1, live),
        InputLine(2, expired),
        BadLine(3, "empty 'image' cell", "SKU-3,"),
        done,
        on_disk,
        new,
        "ftp://img.test/x.jpg",
        InputLine(8, new),  # a duplicate
        other,
    ]
    plan = await plan_batch(entries, out, size=BOTH, journal=journal, rate=2.0, burst=1)
    assert plan == Plan(
        total=9,
        to_submit=2,
        to_download=1,
        done=2,
        duplicates=1,
        invalid=2,
        invalid_reasons=(
            "line 3: empty 'image' cell",
            "item 6: image_url must be an http(s) URL, got scheme 'ftp'",
        ),
        need_repay=1,
        rate=2.0,
        burst=1,
    )
    assert plan.credits == 2
    assert plan.estimated_seconds == 0.5
    text = plan.summary()
    assert "2 to submit: 2 credit(s)" in text
    assert "1 need --repay-missing-renditions" in text
    assert "estimated time: at least 1 s at 2 POSTs/s" in text

    # Paying for the expired one is one more credit; overwriting pays for all but live links.
    repay = await plan_batch(
        entries, out, size=BOTH, journal=journal, repay_missing_renditions=True
    )
    assert (repay.to_submit, repay.need_repay) == (3, 0)
    every = await plan_batch(entries, out, size=BOTH, journal=journal, overwrite=True)
    assert (every.to_submit, every.to_download, every.done) == (5, 1, 0)
    # Nothing was written: no journal lock, no new file.
    assert sorted(p.name for p in out.iterdir()) == sorted(
        output_name(on_disk, size)
        for size in BOTH  # type: ignore[arg-type]
    )


@pytest.mark.anyio
async def test_a_plan_keeps_the_first_reasons_in_input_order() -> None:
    entries = [f"ftp://img.test/{i}.jpg" for i in range(50)]
    plan = await plan_batch(entries, freepik_bg.MemorySink(), concurrency=4, rate=None)
    assert plan.invalid == 50
    assert [reason.split(":")[0] for reason in plan.invalid_reasons] == [
        f"item {i}" for i in range(5)
    ]
    assert "... and 45 more" in plan.summary()
    assert "unknown without a rate limit" in plan.summary()
    with pytest.raises(TypeError, match="not a single string"):
        await plan_batch("https://img.test/a.jpg", freepik_bg.MemorySink())


@pytest.mark.anyio
async def test_a_plan_counts_what_a_batch_fails_without_a_request_as_invalid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries with a scheme other than http(s) (``data:``, ``javascript:``), files that do
    not exist, and local files without a stage: each fails in a batch without a request, so
    a plan must not count a credit for it."""
    monkeypatch.chdir(tmp_path)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff")
    entries = [
        InputLine(1, "data:image/png;base64,AAAA"),
        InputLine(2, "javascript:alert(1)"),
        InputLine(3, str(tmp_path / "missing.jpg")),
        InputLine(4, str(photo)),
        InputLine(5, "https://img.test/a.jpg"),
    ]
    plan = await plan_batch(entries, freepik_bg.MemorySink(), rate=None)
    assert (plan.invalid, plan.to_submit, plan.credits) == (4, 1, 1)
    assert "its scheme is 'data'" in plan.invalid_reasons[0]
    assert "its scheme is 'javascript'" in plan.invalid_reasons[1]
    assert "neither an http(s) URL nor a local file" in plan.invalid_reasons[2]
    assert "--stage" in plan.invalid_reasons[3]
    # Each named by its line, as a dry run of a file shows it.
    assert [reason.split(":")[0] for reason in plan.invalid_reasons] == [
        "line 1",
        "line 2",
        "line 3",
        "line 4",
    ]

    # With a stage, the file that exists is submitted (staged first), the others stay invalid.
    staged = await plan_batch(
        entries, freepik_bg.MemorySink(), rate=None, stage="s3://bucket/staging/"
    )
    assert (staged.invalid, staged.to_submit, staged.credits) == (3, 2, 2)


@pytest.mark.anyio
async def test_a_plan_counts_other_spellings_of_a_url_as_duplicates(tmp_path: Path) -> None:
    # As the batch pays: once per image, however its URL is spelled.
    spellings = [
        "https://img.test/a.png",
        "HTTPS://IMG.test/a.png",
        "https://img.test:443/a.png",
        "https://img.test/a.png#x",
    ]
    plan = await plan_batch([*spellings, "https://img.test/A.png"], tmp_path / "out", rate=None)
    assert (plan.total, plan.to_submit, plan.duplicates, plan.credits) == (5, 2, 3, 2)
    # ... and a journal's URL spelled otherwise is done.
    journal = tmp_path / "j.jsonl"
    journal_lines(journal, stored("HTTPS://IMG.TEST:443/a.png#top", "high_resolution"))
    resumed = await plan_batch(spellings[2:], tmp_path / "out", journal=journal, rate=None)
    assert (resumed.done, resumed.duplicates, resumed.credits) == (1, 1, 0)


@pytest.mark.anyio
@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("blocker", ["a file", "a broken symbolic link"])
async def test_a_plan_refuses_an_output_under_a_file_as_a_batch_would(
    tmp_path: Path, overwrite: bool, blocker: str
) -> None:
    photos = tmp_path / "photos"
    (photos / "shoes" / "kids").mkdir(parents=True)
    for name in ("shoes/red", "shoes/kids/blue", "cover"):
        (photos / f"{name}.png").write_bytes(b"\x89PNG")
    out = tmp_path / "out"
    out.mkdir()
    # Where the folder of two outputs should be: the write could only fail.
    if blocker == "a file":
        (out / "shoes").write_bytes(b"")
    else:
        (out / "shoes").symlink_to(tmp_path / "nowhere")
    entries = list(freepik_bg.local_images(photos))
    plan = await plan_batch(
        entries, out, stage="s3://bucket/staging/", overwrite=overwrite, rate=None
    )
    assert (plan.invalid, plan.to_submit) == (2, 1)
    for reason in plan.invalid_reasons:
        assert f"{blocker} in place of the folder {out / 'shoes'} is in the way at" in reason


def urls_for(emu: Emulator, n: int, tag: str) -> list[str]:
    return [f"{emu.image_url('ball-small.png')}?{tag}={i}" for i in range(n)]


def test_cli_dry_run_sends_nothing_and_needs_no_key(emu: Emulator, tmp_path: Path) -> None:
    good = urls_for(emu, 3, "dry")
    table = tmp_path / "shots.csv"
    rows = ["sku;image", *(f"S{i};{url}" for i, url in enumerate(good)), f"S9;{good[0]}", "S10;"]
    table.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    args = ["remove", str(table), "--column", "image", "--delimiter", ";", "-o", str(out)]
    result = run_cli([*args, "--base-url", emu.base_url, "--dry-run"], key=None)
    assert result.returncode == 0, result.stderr
    assert "Dry run: nothing was sent." in result.stdout
    assert "5 item(s) read" in result.stdout
    assert "3 to submit: 3 credit(s)" in result.stdout
    assert "1 duplicate(s)" in result.stdout
    assert "line 6: empty 'image' cell" in result.stdout
    assert "estimated time: at least 0 s at 10 POSTs/s" in result.stdout
    assert emu.stats.requests == {}
    assert not out.exists()

    # The same plan, once the run happened: all done.
    run = run_cli([*args, "--base-url", emu.base_url, "-q"])
    assert run.returncode == 1  # the empty cell
    emu.reset_stats()
    again = run_cli([*args, "--dry-run"], key=None)
    assert "0 to submit: 0 credit(s)" in again.stdout
    assert "3 already done" in again.stdout
    assert emu.stats.requests == {}


def test_cli_tsv_and_named_delimiters(emu: Emulator, tmp_path: Path) -> None:
    good = urls_for(emu, 2, "tsv")
    tsv = tmp_path / "shots.tsv"
    tsv.write_text("sku\timage\n" + "".join(f"S{i}\t{url}\n" for i, url in enumerate(good)))
    dry = run_cli(["remove", str(tsv), "--column", "image", "-o", str(tmp_path), "--dry-run"])
    assert "2 to submit" in dry.stdout, dry.stderr
    named = tmp_path / "shots.txt.csv"
    named.write_text(tsv.read_text())
    flags = ["--column", "image", "--delimiter", "tab", "-o", str(tmp_path), "--dry-run"]
    tab = run_cli(["remove", str(named), *flags])
    assert "2 to submit" in tab.stdout, tab.stderr
    missing = run_cli(["remove", str(tsv), "--column", "url", "-o", str(tmp_path), "--dry-run"])
    assert missing.returncode == 2
    assert "CSV has no column 'url' (found: sku, image)" in missing.stderr
    bad = run_cli(["remove", str(tsv), "--column", "image", "-o", "x", "--delimiter", ";;"])
    assert bad.returncode == 2
    assert "argument --delimiter: expected one character or one of tab" in bad.stderr


def run_on_terminal(args: list[str], answer: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with a terminal as its standard input, typing ``answer``."""
    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer.encode())
        return subprocess.run(
            [*CLI, *args],
            stdin=terminal,
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(terminal)
        os.close(controller)


def test_confirm_over_asks_on_a_terminal_only(emu: Emulator, tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls_for(emu, 3, "confirm")) + "\n")
    out = tmp_path / "out"
    args = ["remove", str(listing), "-o", str(out), "--base-url", emu.base_url, "-q"]

    declined = run_on_terminal([*args, "--confirm-over", "2"], "n\n")
    assert declined.returncode == 2
    assert "would spend 3 credits, more than --confirm-over 2. Continue? [y/N]" in (declined.stderr)
    assert "not confirmed: nothing was sent" in declined.stderr
    assert emu.stats.posts == 0

    accepted = run_on_terminal([*args, "--confirm-over", "2"], "y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert "Continue? [y/N]" in accepted.stderr
    assert emu.stats.posts == 3


def test_confirm_over_counts_credits_not_lines(emu: Emulator, tmp_path: Path) -> None:
    urls = urls_for(emu, 3, "credits")
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls) + "\n")
    out = tmp_path / "out"
    args = ["remove", str(listing), "-o", str(out), "--base-url", emu.base_url, "-q"]
    assert run_cli([*args]).returncode == 0
    listing.write_text("\n".join([*urls, *urls_for(emu, 1, "more")]) + "\n")
    emu.reset_stats()
    # Four lines, one credit: no question, even with nothing typed.
    result = run_on_terminal([*args, "--confirm-over", "2"], "")
    assert result.returncode == 0, result.stderr
    assert "Continue?" not in result.stderr
    assert emu.stats.posts == 1


def test_no_question_without_a_terminal_or_with_yes(emu: Emulator, tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls_for(emu, 2, "pipe")) + "\n")
    args = ["remove", str(listing), "--base-url", emu.base_url, "-q", "--confirm-over", "0"]
    piped = run_cli([*args, "-o", str(tmp_path / "a")], stdin="n\n")
    assert piped.returncode == 0, piped.stderr
    assert "Continue?" not in piped.stderr
    yes = run_on_terminal([*args, "-o", str(tmp_path / "b"), "--yes"], "n\n")
    assert yes.returncode == 0, yes.stderr
    assert "Continue?" not in yes.stderr
    assert emu.stats.posts == 4


@pytest.mark.anyio
async def test_a_plan_lists_an_output_folder_once_and_checks_only_what_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker-thread hop per URL was most of a 200,000-line dry run's minutes: the folder
    is listed once, and only the names found there get the full check."""
    import freepik_bg._plan as plan_module

    entries = [f"https://img.test/{i}.jpg" for i in range(50)]
    out = tmp_path / "out"
    out.mkdir()
    for url in entries[:10]:
        (out / output_name(url)).write_bytes(b"\x89PNG")
    (out / output_name(entries[10])).mkdir()  # in the way: refused, as a batch would
    listed: list[Path] = []
    real = plan_module._names_in

    def names_in(folder: Path, top: Path) -> frozenset[str] | None:
        listed.append(folder)
        return real(folder, top)

    monkeypatch.setattr(plan_module, "_names_in", names_in)
    plan = await plan_batch(entries, out, concurrency=1, rate=None)
    assert (plan.done, plan.invalid, plan.to_submit) == (10, 1, 39)
    assert "a directory is in the way" in plan.invalid_reasons[0]
    assert listed == [out]
    # Overwriting replaces the files, and a directory is in the way all the same.
    listed.clear()
    plan = await plan_batch(entries, out, concurrency=1, rate=None, overwrite=True)
    assert (plan.done, plan.invalid, plan.to_submit) == (0, 1, 49)
    assert "a directory is in the way" in plan.invalid_reasons[0]
    assert listed == [out]
    assert not await plan_module._ListedFolders(tmp_path / "none").exists(
        freepik_bg.SinkItem(0, entries[0], output_name(entries[0]), "high_resolution")
    )
    assert not (tmp_path / "none").exists()  # a plan creates nothing
