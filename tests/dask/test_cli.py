"""``freepik-bg remove`` on Dask: --workers, --scheduler, a .parquet INPUT with --column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pandas as pd
import pytest
from distributed import Client

from freepik_bg import JournalError, output_name
from freepik_bg._cli import main
from freepik_bg.testing import Emulator

from ..conftest import KEY
from .conftest import Terminal, image_urls

pytestmark = pytest.mark.dask


@attrs.frozen
class Done:
    returncode: int
    stderr: str
    stdout: str


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """``freepik-bg ARGS`` in this process (a subprocess would spend seconds importing dask)."""
    monkeypatch.setenv("FREEPIK_API_KEY", KEY)

    def run_main(args: list[str]) -> Done:
        try:
            code = main(args)
        except SystemExit as exc:  # argparse refusing a flag
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Done(code, captured.err, captured.out)

    return run_main


def test_a_parquet_input_on_an_existing_cluster(
    cluster: Client, emu: Emulator, tmp_path: Path, run: Any
) -> None:
    urls = [*image_urls(emu, 5, "cli"), "not a url"]
    pd.DataFrame({"sku": range(6), "image": urls}).to_parquet(tmp_path / "products.parquet")
    out = tmp_path / "cutouts"
    args = ["remove", str(tmp_path / "products.parquet"), "--column", "image", "-o", str(out)]
    args += ["--scheduler", cluster.scheduler.address, "--base-url", emu.base_url]
    args += ["--report", str(tmp_path / "report.json"), "--rate", "20"]
    done = run(args)
    assert done.returncode == 1, done.stderr  # one bad URL
    assert "5 ok, 0 skipped, 1 failed" in done.stderr
    assert "failed not a url" in done.stderr
    assert sorted(p.name for p in out.glob("*.png")) == sorted(output_name(u) for u in urls[:5])
    report = json.loads((tmp_path / "report.json").read_text())
    assert [item["index"] for item in report["items"]] == list(range(6))
    # The plain run's report shape (`ItemResult.to_record`): one parser reads both.
    assert [item["url"] for item in report["items"]] == urls
    assert report["items"][5]["error"]["type"] == "InvalidRequestError"
    assert "image_url" in report["items"][5]["error"]["message"]
    assert report["items"][0]["error"] is None
    summary = {"ok": 5, "skipped": 0, "failed": 1, "total": 6, "not_attempted": 0}
    assert report["summary"] == {**summary, "interrupted": False, "stop_reason": None}
    again = run(args)
    assert "0 ok, 5 skipped, 1 failed" in again.stderr
    assert emu.stats.posts == 5  # the rerun paid for nothing


def test_workers_start_a_local_cluster(emu: Emulator, tmp_path: Path, run: Any) -> None:
    urls = image_urls(emu, 4, "workers")
    listing = tmp_path / "urls.txt"
    listing.write_text("# a comment\n" + "\n".join(urls) + "\n")
    out = tmp_path / "cutouts"
    args = ["remove", str(listing), "-o", str(out), "--workers", "2", "--base-url", emu.base_url]
    done = run(args)
    assert done.returncode == 0, done.stderr
    assert "4 ok" in done.stderr
    assert len(list(out.glob("*.png"))) == 4


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "either --workers or --scheduler"),
        (["--workers", "0"], "must be at least 1"),
        (["--workers", "2", "--journal", "j.jsonl"], "--journal is not used on Dask"),
        (["--workers", "2", "--timeout", "3"], "--timeout cannot be used with Dask"),
        (
            ["--workers", "2", "--format", "jpeg", "--background", "red", "--trim"],
            "--format, --background, --trim cannot be used with Dask yet",
        ),
        (["--workers", "2", "--trim", "--margin", "4"], "--trim, --margin cannot be used"),
        (["--workers", "2", "--max-side", "800"], "--max-side cannot be used with Dask"),
        (["--workers", "2", "--format", "jpeg", "--quality", "70"], "--quality cannot be used"),
        (["--workers", "2", "--keep-png", "--format", "webp"], "--keep-png cannot be used"),
        (["--workers", "2", "--stage", "s3://b/p/"], "--stage cannot be used with Dask"),
        (["--workers", "2", "--repay-missing-renditions"], "--repay-missing-renditions cannot"),
        (["--workers", "2", "--progress", "bar"], "--progress cannot be used with Dask"),
        (["--workers", "2", "--drain-timeout", "5"], "--drain-timeout cannot be used with"),
        (
            ["--workers", "2", "--column", "url", "--name-column", "sku"],
            "--name-column cannot be used with Dask",
        ),
        (
            ["--workers", "2", "--http-backend", "aiohttp"],
            "--http-backend cannot be used with Dask",
        ),
    ],
)
def test_dask_flags_are_checked_before_anything_starts(
    tmp_path: Path, extra: list[str], message: str, run: Any
) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("https://example.com/a.jpg\n")
    done = run(["remove", str(listing), "-o", str(tmp_path / "out"), *extra])
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_dry_run_of_a_parquet_input_sends_nothing(
    emu: Emulator, tmp_path: Path, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A .parquet INPUT goes to Dask without --workers (the local scheduler): its dry run
    # was refused, and before that it was a paid run.
    urls = image_urls(emu, 3, "dry")
    pd.DataFrame({"image": [*urls, urls[0], "ftp://example.com/a.jpg"]}).to_parquet(
        tmp_path / "in.parquet"
    )
    out = tmp_path / "out"
    args = ["remove", str(tmp_path / "in.parquet"), "--column", "image", "-o", str(out)]
    args += ["--base-url", emu.base_url]
    done = run([*args, "--dry-run"])
    assert done.returncode == 0, done.stderr
    plan = done.stdout
    assert plan.startswith("Dry run: nothing was sent.\n5 item(s) read\n3 to submit: 3 credit")
    assert "1 duplicate(s)" in plan
    assert "1 invalid\n  item 4: " in plan
    assert emu.stats.posts == 0
    assert not out.exists()
    # On a terminal, past --confirm-over: asked (the column counted, then planned).
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    declined = run([*args, "--confirm-over", "2"])
    assert declined.returncode == 2
    assert "would spend 3 credits, more than --confirm-over 2" in declined.stderr
    assert emu.stats.posts == 0
    assert run([*args, "--yes"]).returncode == 1  # the ftp:// URL
    assert emu.stats.posts == 3


def test_a_parquet_input_needs_a_column(tmp_path: Path, run: Any) -> None:
    pd.DataFrame({"image": ["https://example.com/a.jpg"]}).to_parquet(tmp_path / "p.parquet")
    done = run(["remove", str(tmp_path / "p.parquet"), "-o", str(tmp_path / "out")])
    assert done.returncode == 2
    assert "needs --column" in done.stderr


def test_a_journal_failing_in_a_partition_is_a_stopped_run(
    tmp_path: Path, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Other partitions may have spent credits by then: exit 3 ("stopped"), not the usage
    # error's 2 ("nothing was sent").
    def partition_fails(*args: Any) -> int:
        raise JournalError("cannot write the journal p.jsonl: No space left on device")

    monkeypatch.setattr("freepik_bg._cli.run_dask_remove", partition_fails)
    listing = tmp_path / "urls.txt"
    listing.write_text("https://example.com/a.jpg\n")
    done = run(["remove", str(listing), "-o", str(tmp_path / "out"), "--workers", "2"])
    assert done.returncode == 3
    assert "freepik-bg: stopped: cannot write the journal p.jsonl" in done.stderr


def test_bad_lines_fail_without_a_request(
    cluster: Client, emu: Emulator, tmp_path: Path, run: Any
) -> None:
    # The plain path refuses these lines; Dask POSTed them with U+FFFD for the bad bytes.
    good = image_urls(emu, 1, "bad-lines")[0]
    listing = tmp_path / "urls.txt"
    sample = emu.image_url("ball-small.png").encode()
    listing.write_bytes(sample + b"?n\x00ul\n" + sample + b"?bad\xff\xfe\n" + good.encode() + b"\n")
    out = tmp_path / "out"
    args = ["remove", str(listing), "-o", str(out), "--base-url", emu.base_url]
    done = run(
        [*args, "--scheduler", cluster.scheduler.address, "--report", str(tmp_path / "r.json")]
    )
    assert done.returncode == 1, done.stderr
    assert "1 ok, 0 skipped, 2 failed" in done.stderr
    assert "line 1: " in done.stderr
    assert "line 2: not valid UTF-8" in done.stderr
    assert emu.stats.posts == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert [item["status"] for item in report["items"]] == ["failed", "failed", "ok"]
