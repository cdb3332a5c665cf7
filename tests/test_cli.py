"""The freepik-bg command line, run as a subprocess against the loopback emulator."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from freepik_bg import output_name
from freepik_bg.testing import Emulator

from .conftest import CLI, KEY, cli_env, run_cli


def urls_for(emu: Emulator, n: int, sample: str = "ball-small.png") -> list[str]:
    return [f"{emu.image_url(sample)}?i={i}" for i in range(n)]


def test_remove_text_file_exit_0_with_report(emu: Emulator, tmp_path: Path) -> None:
    urls = urls_for(emu, 12)
    listing = tmp_path / "urls.txt"
    listing.write_text("# product shots\n\n" + "\n".join(urls) + "\n")
    out, report = tmp_path / "out", tmp_path / "report.json"
    result = run_cli(
        [
            "remove",
            str(listing),
            "-o",
            str(out),
            "--base-url",
            emu.base_url,
            "--report",
            str(report),
        ]
    )
    assert result.returncode == 0, result.stderr
    for url in urls:
        assert (out / output_name(url)).read_bytes().startswith(b"\x89PNG")
    data = json.loads(report.read_text())
    assert data["summary"]["ok"] == 12
    assert data["summary"]["failed"] == 0
    assert {item["url"] for item in data["items"]} == set(urls)
    assert all(item["status"] == "ok" and item["attempts"] == 1 for item in data["items"])
    assert "12 stored" in result.stdout
    assert KEY not in result.stdout + result.stderr + report.read_text()

    # The same command again: everything is already done, nothing is paid for.
    posts = emu.stats.posts
    again = run_cli(["remove", str(listing), "-o", str(out), "--base-url", emu.base_url, "-q"])
    assert again.returncode == 0
    assert emu.stats.posts == posts
    assert "12 skipped" in again.stdout


def test_some_failed_exit_1_and_typed_report(emu: Emulator, tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    good = urls_for(emu, 2)
    listing.write_text("\n".join([good[0], "ftp://example.com/x.png", good[1]]) + "\n")
    report = tmp_path / "r.json"
    result = run_cli(
        [
            "remove",
            str(listing),
            "-o",
            str(tmp_path / "out"),
            "--base-url",
            emu.base_url,
            "--report",
            str(report),
        ]
    )
    assert result.returncode == 1
    failed = [i for i in json.loads(report.read_text())["items"] if i["status"] == "failed"]
    assert failed == [
        {
            "index": 1,
            "url": "ftp://example.com/x.png",
            "status": "failed",
            "location": None,
            "locations": {},
            "error": {
                "type": "InvalidRequestError",
                "message": "image_url must be an http(s) URL, got scheme 'ftp'",
            },
            "attempts": 0,
            "ambiguous_retries": 0,
            "resubmits": 0,
            "duplicate_of": None,
        }
    ]
    assert "FAIL" in result.stdout
    assert "Traceback" not in result.stderr


def test_quiet_prints_failures_and_the_summary_as_its_help_says(
    emu: Emulator, tmp_path: Path
) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text(f"{urls_for(emu, 1)[0]}\nftp://example.com/x.png\n")
    args = ["remove", str(listing), "-o", str(tmp_path / "out"), "--base-url", emu.base_url]
    result = run_cli([*args, "-q", "--progress", "plain"])
    assert result.returncode == 1
    assert [line.split()[0] for line in result.stdout.splitlines()][:2] == ["FAIL", "done:"]
    shown = " ".join(run_cli(["remove", "--help"]).stdout.split())  # unwrapped
    assert "-q, --quiet no ok/skip lines: only FAIL lines and the summary" in shown


def test_stdin_input(emu: Emulator, tmp_path: Path) -> None:
    urls = urls_for(emu, 3)
    result = run_cli(
        ["remove", "-", "-o", str(tmp_path), "--base-url", emu.base_url],
        stdin="\n".join(urls) + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert all((tmp_path / output_name(u)).is_file() for u in urls)


def test_csv_input(emu: Emulator, tmp_path: Path) -> None:
    urls = urls_for(emu, 3)
    table = tmp_path / "products.csv"
    table.write_text("sku,image\n" + "".join(f"s{i},{u}\n" for i, u in enumerate(urls)))
    out = tmp_path / "out"
    args = ["remove", str(table), "-o", str(out), "--base-url", emu.base_url]
    result = run_cli([*args, "--column", "image"])
    assert result.returncode == 0, result.stderr
    assert all((out / output_name(u)).is_file() for u in urls)

    wrong = run_cli([*args, "--column", "url"])
    assert wrong.returncode == 2
    assert "no column 'url'" in wrong.stderr
    assert "sku, image" in wrong.stderr
    missing = run_cli(args)
    assert missing.returncode == 2
    assert "--column" in missing.stderr


@pytest.mark.parametrize(
    ("args", "key", "message"),
    [
        (["remove", "no-such-file.txt", "-o", "out"], KEY, "No such file"),
        (["remove", "urls.txt", "-o", "out"], None, "FREEPIK_API_KEY"),
        (["remove", "urls.txt", "-o", "out", "--api-key-file", "nope"], None, "--api-key-file"),
        (["remove", "urls.txt", "-o", "out", "--base-url", "ftp://x"], KEY, "base_url"),
        (["remove", "urls.txt", "-o", "out", "--concurrency", "0"], KEY, "at least 1"),
        (["remove", "urls.txt"], KEY, "--output"),
        # Had it been taken for the cwd, the POST would go to a port where nothing listens.
        (["remove", "urls.txt", "-o", "", "--base-url", "http://127.0.0.1:9"], KEY, "is empty"),
        (["frobnicate"], KEY, "invalid choice"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    tmp_path: Path, args: list[str], key: str | None, message: str
) -> None:
    (tmp_path / "urls.txt").write_text("https://example.com/a.jpg\n")
    result = run_cli(args, key=key, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_api_key_file_saved_with_a_byte_order_mark(tmp_path: Path) -> None:
    from freepik_bg._remove_command import read_api_key

    key_file = tmp_path / "key"
    key_file.write_bytes(("\ufeff" + KEY + "\r\n").encode())  # Windows Notepad's UTF-8
    assert read_api_key(key_file) == KEY


def test_api_key_file_and_key_never_echoed(emu: Emulator, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    listing = tmp_path / "urls.txt"
    listing.write_text(urls_for(emu, 1)[0] + "\n")
    result = run_cli(
        [
            "remove",
            str(listing),
            "-o",
            str(tmp_path / "out"),
            "--base-url",
            emu.base_url,
            "--api-key-file",
            str(key_file),
            "-vv",
        ],
        key=None,
    )
    assert result.returncode == 0, result.stderr
    assert "DEBUG" in result.stderr  # -vv really logs at debug level
    assert KEY not in result.stdout + result.stderr
    journal = (tmp_path / "out" / ".freepik-bg-journal.jsonl").read_text()
    assert KEY not in journal

    bad = run_cli(
        ["remove", str(listing), "-o", str(tmp_path / "o2"), "--base-url", emu.base_url],
        key="wrong-key",
    )
    # A refused key stops the run at once: exit 3, one line naming what to check.
    assert bad.returncode == 3
    assert "401" in bad.stdout
    assert "Invalid API key" in bad.stderr
    assert "check $FREEPIK_API_KEY" in bad.stderr


def test_sigint_then_resume_pays_nothing_twice(tmp_path: Path) -> None:
    with Emulator(fast=True, api_key=KEY, latency=0.05) as slow:
        urls = urls_for(slow, 40)
        listing = tmp_path / "urls.txt"
        listing.write_text("\n".join(urls) + "\n")
        out = tmp_path / "out"
        args = [
            "remove",
            str(listing),
            "-o",
            str(out),
            "--base-url",
            slow.base_url,
            "--concurrency",
            "2",
            "--progress",
            "plain",
        ]
        proc = subprocess.Popen(
            [*CLI, *args], env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        done_lines = 0
        for line in proc.stdout:  # each finished item prints a line
            if line.startswith("ok"):
                done_lines += 1
            if done_lines == 5:
                break
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 130, stderr
        assert "Resume with:" in stderr
        resume = stderr.split("Resume with:")[1].strip().splitlines()[0]
        assert resume.startswith("freepik-bg remove ")
        assert not list(out.glob("*.part"))

        journal = out / ".freepik-bg-journal.jsonl"
        first_done = {
            r["url"]
            for r in map(json.loads, journal.read_text().splitlines())
            if r["event"] == "stored"
        }
        assert 5 <= len(first_done) < 40
        slow.reset_stats()

        result = run_cli(args)
        assert result.returncode == 0, result.stderr
        assert all((out / output_name(u)).read_bytes().startswith(b"\x89PNG") for u in urls)
        second_posts = [r.image_url for r in slow.stats.log if r.endpoint == "post"]
        assert not first_done & set(second_posts)
        assert len(second_posts) <= 40 - len(first_done)


def test_demo_writes_cutouts_sheet_and_gallery(tmp_path: Path) -> None:
    result = run_cli(["demo", "-o", "demo"], key=None, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    demo = tmp_path / "demo"
    cutouts = sorted((demo / "cutouts").glob("*.png"))
    assert len(cutouts) >= 8
    assert (demo / "contact-sheet.png").read_bytes().startswith(b"\x89PNG")
    page = (demo / "index.html").read_text()
    assert page.count('class="cut"') == len(cutouts)
    assert "contact-sheet.png" in result.stdout
    from PIL import Image

    with Image.open(cutouts[0]) as image:
        assert image.mode == "RGBA"
        assert image.getpixel((0, 0))[3] == 0  # type: ignore[index]


def test_emulator_command_serves_until_interrupted() -> None:
    proc = subprocess.Popen(
        [*CLI, "emulator", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert match, first
        response = httpx.post(
            match.group(0) + "/v1/ai/beta/remove-background",
            data={"image_url": "not a url"},
            headers={"x-freepik-api-key": "test-key"},
        )
        assert response.status_code == 400
        assert response.json()["invalid_params"][0]["name"] == "image_url"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_remove_backgrounds_sync_helper(emu: Emulator, tmp_path: Path) -> None:
    import freepik_bg

    urls = [*urls_for(emu, 3), "file:///etc/passwd"]
    report = freepik_bg.remove_backgrounds(
        urls, tmp_path, api_key=KEY, base_url=emu.base_url, rate=None
    )
    assert len(report.stored) == 3
    assert isinstance(report.failed[0].error, freepik_bg.InvalidRequestError)
    assert "3 stored, 1 failed" in report.summary()
    again = freepik_bg.remove_backgrounds(
        urls[:3], tmp_path, api_key=KEY, base_url=emu.base_url, backend="trio"
    )
    assert len(again.skipped) == 3


def test_a_failed_check_closes_the_input_and_the_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from freepik_bg import _cli, _cli_inputs, _remove_command

    made: list[object] = []
    real_client, real_input = _remove_command.batch_client, _cli_inputs.Input.close
    monkeypatch.setattr(
        _remove_command,
        "batch_client",
        lambda *a, **k: made.append(real_client(*a, **k)) or made[-1],
    )
    closed: list[object] = []
    monkeypatch.setattr(
        _cli_inputs.Input, "close", lambda self: closed.append(self) or real_input(self)
    )
    listing = tmp_path / "urls.txt"
    listing.write_text("https://example.com/a.png\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FREEPIK_API_KEY", KEY)
    assert _cli.main(["remove", str(listing), "-o", str(blocker)]) == 2
    assert [client.is_closed for client in made] == [True]  # type: ignore[attr-defined]
    assert closed
