"""The README's promises, attacked as a user would: interrupt, repeat, mistype, misconfigure.

Each test drives the real CLI in a child process (or the SDK) against the emulator
and checks what the user paid for (the emulator's credit counter) and what they got
(files, report, exit code, one clear message).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import stat
import subprocess
from pathlib import Path

import pytest

import freepik_bg
from freepik_bg import output_name
from freepik_bg._breaker import AMBIGUOUS_RUN_LIMIT, GARBAGE_RUN_LIMIT
from freepik_bg.testing import Emulator, Fault

from ..conftest import CLI, KEY, cli_env, run_cli
from ._servers import OriginServer

JOURNAL = ".freepik-bg-journal.jsonl"


def urls_for(emu: Emulator, n: int, tag: str = "i") -> list[str]:
    return [f"{emu.image_url('ball-small.png')}?{tag}={i}" for i in range(n)]


def remove_args(listing: Path, out: Path, emu: Emulator, *extra: str) -> list[str]:
    return [
        "remove",
        str(listing),
        "-o",
        str(out),
        "--base-url",
        emu.base_url,
        "--rate",
        "off",
        "--progress",
        "plain",
        *extra,
    ]


def start(args: list[str], **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [*CLI, *args],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def read_until_stored(proc: subprocess.Popen[str], count: int) -> None:
    """Block until the CLI has printed ``count`` more stored items (its plain display)."""
    assert proc.stdout is not None
    seen = 0
    for line in proc.stdout:
        if line.startswith("ok"):
            seen += 1
            if seen == count:
                return
    raise AssertionError(f"the run ended after {seen} stored items")


def journal_events(out: Path) -> list[dict[str, object]]:
    path = out / JOURNAL
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def slow_emu(emu: Emulator) -> Emulator:
    """The shared emulator with slow POSTs: many are on the wire when a signal comes."""
    emu.configure(latency=0.25)  # the emu fixture resets it after the test
    return emu


# -- 1. interrupting pays for nothing twice ---------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_and_resume_three_times_pays_once_per_image(
    slow_emu: Emulator, tmp_path: Path, sig: signal.Signals
) -> None:
    distinct = urls_for(slow_emu, 120)
    lines = [*distinct, *distinct[:15], "# a comment", ""]
    random.Random(7).shuffle(lines)
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    args = remove_args(listing, out, slow_emu, "--concurrency", "16")

    for _ in range(3):
        proc = start(args)
        read_until_stored(proc, 8)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
        assert "Resume with:" in stderr
        assert "Traceback" not in stderr
        assert not list(out.glob("*.part"))

    final = run_cli(args)
    assert final.returncode == 0, final.stderr
    # The promise: interrupting and resuming costs exactly one POST per distinct image.
    assert slow_emu.stats.credits_charged == len(distinct)
    assert all((out / output_name(u)).read_bytes().startswith(b"\x89PNG") for u in distinct)


def test_a_second_signal_aborts_but_keeps_every_answer_that_arrived(
    slow_emu: Emulator, tmp_path: Path
) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls_for(slow_emu, 80)) + "\n")
    out = tmp_path / "out"
    args = remove_args(listing, out, slow_emu, "--concurrency", "16")
    proc = start(args)
    read_until_stored(proc, 5)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr

    events = journal_events(out)
    stored = {e["url"] for e in events if e["event"] == "stored"}
    paid = {e["url"] for e in events if e["event"] == "posted"} - stored
    slow_emu.reset_stats()
    assert run_cli(args).returncode == 0
    reposted = {r.image_url for r in slow_emu.stats.log if r.endpoint == "post"}
    # Answers that had arrived are downloaded from the journal's links, not bought again.
    assert not reposted & (paid | stored)


# -- 2. duplicates, 4. stray bytes --------------------------------------------------


def test_duplicates_and_a_broken_line_in_one_file(emu: Emulator, tmp_path: Path) -> None:
    a, b = urls_for(emu, 2)
    listing = tmp_path / "urls.txt"
    listing.write_bytes(
        b"\n".join([a.encode(), a.encode(), b"https://x.test/\xffbad.jpg", b.encode(), a.encode()])
        + b"\n"
    )
    out, report = tmp_path / "out", tmp_path / "report.json"
    result = run_cli(remove_args(listing, out, emu, "--report", str(report)))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert emu.stats.credits_charged == 2  # a and b, once each
    items = sorted(json.loads(report.read_text())["items"], key=lambda i: i["index"])
    assert [i["status"] for i in items] == ["ok", "skipped", "failed", "ok", "skipped"]
    assert [i["duplicate_of"] for i in items] == [None, 0, None, None, 0]
    assert items[2]["error"]["message"].startswith("line 3: not valid UTF-8 (byte 0xff")
    summary = json.loads(report.read_text())["summary"]
    assert (summary["total"], summary["duplicates"]) == (5, 2)


def test_a_utf16_list_is_read_whole(emu: Emulator, tmp_path: Path) -> None:
    urls = urls_for(emu, 3)
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls) + "\n", encoding="utf-16")
    result = run_cli(remove_args(listing, tmp_path / "out", emu))
    assert result.returncode == 0, result.stderr
    assert emu.stats.credits_charged == 3


# -- 5. permissions -----------------------------------------------------------------


def test_outputs_report_and_journal_follow_the_umask(emu: Emulator, tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls_for(emu, 2)) + "\n")
    out, report = tmp_path / "out", tmp_path / "report.json"
    proc = subprocess.run(
        [*CLI, *remove_args(listing, out, emu, "--report", str(report))],
        env=cli_env(),
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=lambda: os.umask(0o027),
    )
    assert proc.returncode == 0, proc.stderr
    for path in [*out.glob("*.png"), report, out / JOURNAL]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path


# -- 6. bad destinations are found before paying ------------------------------------


@pytest.mark.parametrize("where", ["output is a file", "report is a directory", "s3 URL"])
def test_bad_destination_is_refused_before_any_credit(
    emu: Emulator, tmp_path: Path, where: str
) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls_for(emu, 3)) + "\n")
    out: str = str(tmp_path / "out")
    extra: list[str] = []
    if where == "output is a file":
        Path(out).write_text("not a folder")
    elif where == "report is a directory":
        (tmp_path / "reports").mkdir()
        extra = ["--report", str(tmp_path / "reports")]
    else:
        out = "s3://bucket/x"
    result = run_cli(
        ["remove", str(listing), "-o", out, "--base-url", emu.base_url, *extra], cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("freepik-bg: error:")
    assert "Traceback" not in result.stderr
    assert emu.stats.posts == 0
    assert not (tmp_path / "s3:").exists()
    assert not list(tmp_path.rglob("*.part"))


# -- 7. a misconfigured or dead API stops early, with one message --------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("problem", ["wrong path", "nothing listens", "wrong key"])
def test_misconfiguration_stops_the_run_with_one_line(
    emu: Emulator, tmp_path: Path, problem: str
) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls_for(emu, 300)) + "\n")
    base, key, hint = emu.base_url, KEY, ""
    if problem == "wrong path":
        base, hint = emu.base_url + "/api/v2", "check base_url"
    elif problem == "nothing listens":
        port = _free_port()
        base, hint = f"http://127.0.0.1:{port}", f"cannot connect to http://127.0.0.1:{port}"
    else:
        key, hint = "sk-revoked", "check $FREEPIK_API_KEY"
    args = ["remove", str(listing), "-o", str(tmp_path / "out"), "--base-url", base]
    result = run_cli([*args, "--rate", "off", "--concurrency", "4", "--progress", "plain"], key=key)
    assert result.returncode == 3, result.stderr
    assert hint in result.stderr
    assert "not attempted" in result.stderr
    assert "Traceback" not in result.stderr
    # One FAIL line per request that was really refused, not one per input line.
    assert len(result.stdout.splitlines()) <= 10
    assert emu.stats.posts <= 4


@pytest.mark.parametrize("problem", ["a web server", "billed garbage"])
def test_posts_answered_with_garbage_stop_the_run(
    emu: Emulator, tmp_path: Path, problem: str
) -> None:
    """A base URL at a web server, or an API answering 200 with a broken body (billed):
    the run stops after a bounded number of POSTs instead of paying for every line."""
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls_for(emu, 300)) + "\n")
    out = tmp_path / "out"
    flags = ["--rate", "off", "--concurrency", "4", "--progress", "plain"]
    if problem == "a web server":
        with OriginServer(b"<html>Welcome</html>", "text/html", post_ok=True) as site:
            result = run_cli(
                ["remove", str(listing), "-o", str(out), "--base-url", site.base_url, *flags]
            )
            posts = sum(r.method == "POST" for r in site.requests)
    else:
        charged = emu.stats.credits_charged
        emu.inject("post", *[Fault.malformed_json()] * 300)
        try:
            result = run_cli(
                ["remove", str(listing), "-o", str(out), "--base-url", emu.base_url, *flags]
            )
        finally:
            emu.clear_faults()
        posts = emu.stats.credits_charged - charged
    assert result.returncode == 3, result.stderr
    assert "POSTs in a row were answered with a body that is not the API's" in result.stderr
    assert "check base_url" in result.stderr
    assert "Traceback" not in result.stderr
    # The run (4 at a time) stopped within its in-flight POSTs of the limit.
    assert GARBAGE_RUN_LIMIT <= posts <= GARBAGE_RUN_LIMIT + 4


def test_posts_that_keep_failing_after_processing_stop_the_run(
    emu: Emulator, tmp_path: Path
) -> None:
    """Every POST answered 500 after the service processed it (billed): each item paid for
    six attempts, 240 credits for 40 URLs and nothing stored, and the run went on. It now
    stops after a bounded run of such failures, with exit 3."""
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls_for(emu, 60)) + "\n")
    charged = emu.stats.credits_charged
    emu.inject("post", *[Fault.http_error(500, after_processing=True)] * 400)
    args = ["remove", str(listing), "-o", str(tmp_path / "out"), "--base-url", emu.base_url]
    try:
        result = run_cli([*args, "--rate", "off", "--concurrency", "4", "--progress", "plain"])
    finally:
        emu.clear_faults()
    paid = emu.stats.credits_charged - charged
    assert result.returncode == 3, result.stderr
    assert "POSTs in a row failed after the service may have processed them" in result.stderr
    assert "resume later" in result.stderr
    # Stopped within its in-flight POSTs of the limit (4 at a time: the limit is 20).
    assert AMBIGUOUS_RUN_LIMIT <= paid <= AMBIGUOUS_RUN_LIMIT + 4


def test_a_base_url_that_does_not_take_posts_stops_the_run(tmp_path: Path) -> None:
    """A web server answering 501 to a POST (``python -m http.server``): every line was
    POSTed, key and all, and the run ended with exit 1 and no hint."""
    listing = tmp_path / "urls.txt"
    listing.write_text("".join(f"https://img.example/{i}.jpg\n" for i in range(50)))
    with OriginServer(b"<html>nope</html>", "text/html", post_status=501) as site:
        args = ["remove", str(listing), "-o", str(tmp_path / "out"), "--base-url", site.base_url]
        result = run_cli([*args, "--rate", "off", "--concurrency", "2", "--progress", "plain"])
        posts = sum(r.method == "POST" for r in site.requests)
    assert result.returncode == 3, result.stderr
    assert "check base_url" in result.stderr
    assert posts <= 2


# -- 9. the key ----------------------------------------------------------------------


def test_a_key_pasted_with_curly_quotes_is_refused_without_echoing_it(
    emu: Emulator, tmp_path: Path
) -> None:
    secret = "\u201csk-7f3a9c1e-SECRET\u201d"
    listing = tmp_path / "urls.txt"
    listing.write_text(urls_for(emu, 1)[0] + "\n")
    result = run_cli(["remove", str(listing), "-o", str(tmp_path / "out")], key=secret)
    assert result.returncode == 2
    assert "non-ASCII character (U+201C) at position 1" in result.stderr
    assert "SECRET" not in result.stdout + result.stderr
    assert len(result.stderr.splitlines()) == 1
    with pytest.raises(freepik_bg.ConfigurationError) as caught:
        freepik_bg.AsyncClient(secret)
    assert "SECRET" not in repr(caught.value) + str(caught.value)


# -- 10. two runs into one folder ------------------------------------------------------


def test_a_second_run_into_the_same_folder_is_refused(slow_emu: Emulator, tmp_path: Path) -> None:
    urls = urls_for(slow_emu, 30)
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls) + "\n")
    out = tmp_path / "out"
    args = remove_args(listing, out, slow_emu, "--concurrency", "4")
    first = start(args)
    read_until_stored(first, 1)
    # Keep the first run busy, however slowly the second one starts on a loaded machine.
    slow_emu.configure(latency=5.0)
    second = run_cli(args)
    slow_emu.configure(latency=0.0)
    assert second.returncode == 2
    assert "another run is using the journal" in second.stderr
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 0, stderr
    assert slow_emu.stats.credits_charged == len(urls)


# -- 11. errors that are not items ------------------------------------------------------


@pytest.mark.anyio
async def test_a_journal_that_cannot_be_written_is_a_typed_error(emu: Emulator) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full to simulate a full disk")
    sink = freepik_bg.MemorySink()
    async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as client:
        with pytest.raises(freepik_bg.JournalError, match="No space left"):
            await client.run_batch(urls_for(emu, 5), sink, journal="/dev/full", rate=None)
    # What was paid for before the failure was still stored.
    assert len(sink.data) == emu.stats.credits_charged >= 1


# -- 12. the smaller ones ----------------------------------------------------------------


def test_sdk_reads_a_file_object_like_the_cli(emu: Emulator, tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("# product shots\n\n" + "\n".join(urls_for(emu, 3)) + "\n\n# end\n")
    with listing.open() as urls:
        report = freepik_bg.remove_backgrounds(
            urls, tmp_path / "out", api_key=KEY, base_url=emu.base_url, rate=None
        )
    assert (len(report.stored), len(report.failed)) == (3, 0)


def test_an_empty_csv_cell_is_reported_and_an_empty_input_says_so(
    emu: Emulator, tmp_path: Path
) -> None:
    table = tmp_path / "products.csv"
    table.write_text(f"sku,image\nA1,{urls_for(emu, 1)[0]}\nB2,\n")
    flags = ["--base-url", emu.base_url, "--report", "-", "--progress", "none"]
    result = run_cli(
        ["remove", str(table), "--column", "image", "-o", str(tmp_path / "out"), *flags]
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)  # --report - writes the JSON to stdout
    failed = [i for i in report["items"] if i["status"] == "failed"]
    assert [i["error"]["message"] for i in failed] == ["line 3: empty 'image' cell"]

    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n")
    nothing = run_cli(["remove", str(empty), "-o", str(tmp_path / "out2")])
    assert nothing.returncode == 0
    assert "found 0 URLs" in nothing.stderr
