"""The look before a Dask run spends: ``--dry-run`` and the ``--confirm-over`` question."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import attrs
import pytest
from distributed import Client

from freepik_bg._cli import main
from freepik_bg.testing import Emulator, Fault

from ..conftest import KEY
from .conftest import Terminal, image_urls

pytestmark = pytest.mark.dask


@attrs.frozen
class Done:
    returncode: int
    stdout: str
    stderr: str

    def credits(self) -> int:
        found = re.search(r"^(\d+) to submit: \1 credit\(s\)$", self.stdout, re.MULTILINE)
        assert found is not None, self.stdout + self.stderr
        return int(found[1])


@pytest.fixture
def run(
    cluster: Client, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Any:
    """``freepik-bg ARGS --scheduler CLUSTER`` in this process, ``stdin`` its standard input.

    The package's cluster has 2 workers: a list of 10 lines is cut in 4 partitions,
    of 3, 3, 3 and 1 lines, as `_dask_cli._urls` cuts it for 2 workers.
    """
    monkeypatch.setenv("FREEPIK_API_KEY", KEY)

    def run_main(args: list[str], stdin: io.StringIO | None = None, dask: bool = True) -> Done:
        monkeypatch.setattr("sys.stdin", stdin if stdin is not None else io.StringIO())
        if dask:
            args = [*args, "--scheduler", cluster.scheduler.address]
        code = main(args)
        captured = capsys.readouterr()
        return Done(code, captured.out, captured.err)

    return run_main


def _listing(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_dry_run_counts_what_the_run_then_pays(emu: Emulator, tmp_path: Path, run: Any) -> None:
    a, b, c, d, e, f, g, h = image_urls(emu, 8, "plan")
    # Partitions [a a b] [c d e] [f bad g] [h]: a duplicate inside a partition shares
    # its POST; the bad line is the 8th entry, in the third partition.
    listing = _listing(tmp_path / "urls.txt", [a, a, b, c, d, e, f, "not a url", g, h])
    out = tmp_path / "out"
    args = ["remove", str(listing), "-o", str(out), "--base-url", emu.base_url, "-q"]
    # Part of it done by an earlier run (of another list: found in the folder).
    assert (
        run(["remove", str(_listing(tmp_path / "some.txt", [a, b, c])), *args[2:]]).returncode == 0
    )
    assert emu.stats.posts == 3
    emu.reset_stats()

    dry = run([*args, "--dry-run"])
    assert dry.returncode == 0, dry.stderr
    assert emu.stats.requests == {}
    assert dry.stdout.startswith("Dry run: nothing was sent.\n10 item(s) read\n")
    assert "3 already done\n1 duplicate(s)" in dry.stdout
    # Numbered in the whole input, not in its partition.
    assert "1 invalid\n  line 8: 'not a url' is neither an http(s) URL" in dry.stdout
    assert dry.credits() == 5
    # The same lines as the plain command's dry run of the same list.
    assert run([*args, "--dry-run"], dask=False).stdout == dry.stdout

    done = run(args)
    assert done.returncode == 1, done.stderr  # the bad line
    assert emu.stats.posts == dry.credits()
    assert run([*args, "--dry-run"]).credits() == 0


def test_a_dry_run_reads_each_partitions_journal(emu: Emulator, tmp_path: Path, run: Any) -> None:
    listing = _listing(tmp_path / "urls.txt", image_urls(emu, 5, "journal"))
    args = ["remove", str(listing), "-o", str(tmp_path / "out"), "--base-url", emu.base_url]
    args += ["--resubmit-expired", "0", "-q"]
    # One item paid for, its download refused: its links are in its partition's journal.
    emu.inject("download", Fault.http_error(404))
    assert run(args).returncode == 1
    assert emu.stats.posts == 5
    emu.reset_stats()

    dry = run([*args, "--dry-run"])
    assert "1 to download from links already paid for (no credit)\n4 already done" in dry.stdout
    assert dry.credits() == 0
    assert emu.stats.requests == {}
    again = run(args)
    assert again.returncode == 0, again.stderr
    assert emu.stats.posts == 0
    assert emu.stats.count("download", 200) == 1


def test_a_url_in_two_partitions_is_paid_once(emu: Emulator, tmp_path: Path, run: Any) -> None:
    urls = image_urls(emu, 9, "repeat")
    respelled = urls[0].replace("http://", "HTTP://") + "#top"  # the same image
    # Cut as read, [0 1 2] [3 4 5] [6 7 8] [9 10]: line 4 leads the second partition, which
    # runs at the same time as the first, and both paid for one image.
    lines = [*urls[:3], respelled, *urls[3:], urls[0]]
    listing = _listing(tmp_path / "urls.txt", lines)
    report = tmp_path / "report.json"
    args = ["remove", str(listing), "-o", str(tmp_path / "out"), "--base-url", emu.base_url]
    dry = run([*args, "--dry-run"])
    assert dry.credits() == 9
    assert "11 item(s) read" in dry.stdout
    assert "2 duplicate(s)" in dry.stdout
    assert "repeat a URL of another partition" not in dry.stdout
    emu.configure(latency=1.0)  # the first POSTs of two partitions overlap (they paid 10)
    done = run([*args, "--report", str(report)])
    assert done.returncode == 0, done.stderr
    assert emu.stats.posts == dry.credits()
    items = json.loads(report.read_text())["items"]
    # Every line has its row, in order, as written; a repeat is skipped at the first's file.
    assert [item["url"] for item in items] == lines
    assert [item["index"] for item in items] == list(range(len(lines)))
    for repeat in (3, 10):
        assert items[repeat]["status"] == "skipped"
        assert items[repeat]["attempts"] == 0
        assert items[repeat]["location"] == items[0]["location"]
    assert Path(items[0]["location"]).is_file()
    assert len(list((tmp_path / "out").glob("*.png"))) == 9


def test_a_dry_run_creates_nothing_and_needs_no_key(
    emu: Emulator, tmp_path: Path, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = _listing(tmp_path / "urls.txt", image_urls(emu, 3, "nothing"))
    out = tmp_path / "out"
    monkeypatch.delenv("FREEPIK_API_KEY")
    dry = run(["remove", str(listing), "-o", str(out), "--base-url", emu.base_url, "--dry-run"])
    assert dry.returncode == 0, dry.stderr
    assert dry.credits() == 3
    assert not out.exists()  # no marker, no journal folder
    assert emu.stats.requests == {}


def test_a_terminal_is_asked_and_no_sends_nothing(
    emu: Emulator, tmp_path: Path, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default limit (1000 credits) is lowered, not given: a Dask run from a terminal
    # spent past it with no question at all.
    monkeypatch.setattr("freepik_bg._cli_plan.DEFAULT_CONFIRM_OVER", 2)
    listing = _listing(tmp_path / "urls.txt", image_urls(emu, 3, "ask"))
    out = tmp_path / "out"
    args = ["remove", str(listing), "-o", str(out), "--base-url", emu.base_url, "-q"]

    declined = run(args, Terminal("n\n"))
    assert declined.returncode == 2
    assert "3 to submit: 3 credit(s)" in declined.stderr
    assert "would spend 3 credits, more than --confirm-over 2. Continue? [y/N]" in declined.stderr
    assert "not confirmed: nothing was sent" in declined.stderr
    assert emu.stats.posts == 0
    assert not out.exists()

    accepted = run([*args, "--confirm-over", "1"], Terminal("y\n"))
    assert accepted.returncode == 0, accepted.stderr
    assert "more than --confirm-over 1. Continue? [y/N]" in accepted.stderr
    assert emu.stats.posts == 3


def test_yes_a_pipe_or_a_short_list_ask_nothing_and_plan_nothing(
    emu: Emulator, tmp_path: Path, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The plan reads the whole input once more: a run that is not asked does without it.
    def no_plan(*args: object) -> None:
        raise AssertionError("planned a run that is not asked about")

    monkeypatch.setattr("freepik_bg._dask_cli._plan", no_plan)
    listing = _listing(tmp_path / "urls.txt", image_urls(emu, 2, "yes"))
    args = ["remove", str(listing), "--base-url", emu.base_url, "-q"]
    yes = run([*args, "-o", str(tmp_path / "a"), "--confirm-over", "0", "--yes"], Terminal("n\n"))
    assert yes.returncode == 0, yes.stderr
    piped = run([*args, "-o", str(tmp_path / "b"), "--confirm-over", "0"], io.StringIO("n\n"))
    assert piped.returncode == 0, piped.stderr
    short = run([*args, "-o", str(tmp_path / "c"), "--confirm-over", "2"], Terminal("n\n"))
    assert short.returncode == 0, short.stderr
    assert "Continue?" not in yes.stderr + piped.stderr + short.stderr
    assert emu.stats.posts == 6
