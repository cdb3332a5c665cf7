"""INPUT as a pipe (a FIFO, ``<(...)``, ``/dev/stdin``), and a stdout whose reader is gone."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

from freepik_bg import output_name
from freepik_bg.testing import Emulator

from .conftest import CLI, cli_env, run_cli


def _urls(emu: Emulator, n: int) -> list[str]:
    return [f"{emu.image_url('ball-small.png')}?pipe={i}" for i in range(n)]


def _stored_once_each(emu: Emulator, out: Path, urls: list[str], credits: int) -> None:
    assert all((out / output_name(url)).read_bytes().startswith(b"\x89PNG") for url in urls)
    assert emu.stats.credits_charged - credits == len(urls)


def test_a_named_fifo_is_read_once_and_every_url_is_processed(
    emu: Emulator, tmp_path: Path
) -> None:
    # The scan before the run used to drain the FIFO, then reopen it and wait forever.
    urls = _urls(emu, 5)
    fifo = tmp_path / "urls.fifo"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "w") as writer:  # blocks until the CLI opens the FIFO to read
            writer.write("\n".join(urls) + "\n")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    credits = emu.stats.credits_charged
    try:
        result = subprocess.run(
            [*CLI, "remove", str(fifo), "-o", str(tmp_path / "out"), "--base-url", emu.base_url],
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        if writer.is_alive():  # the CLI never opened it: let the writer go
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(timeout=10)
    assert result.returncode == 0, result.stderr
    assert "5 stored" in result.stdout
    _stored_once_each(emu, tmp_path / "out", urls, credits)


def test_a_pipe_passed_as_dev_fd_is_processed(emu: Emulator, tmp_path: Path) -> None:
    # `freepik-bg remove <(cat urls.txt) ...`: the shell passes /dev/fd/N.
    urls = _urls(emu, 5)
    read, write = os.pipe()
    os.write(write, ("\n".join(urls) + "\n").encode())
    os.close(write)
    credits = emu.stats.credits_charged
    out, report = tmp_path / "out", tmp_path / "r.json"
    try:
        args = ["remove", f"/dev/fd/{read}", "-o", str(out), "--base-url", emu.base_url]
        result = subprocess.run(
            [*CLI, *args, "--report", str(report)],
            env=cli_env(),
            pass_fds=(read,),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(read)
    assert result.returncode == 0, result.stderr
    assert '"total": 5' in report.read_text()
    _stored_once_each(emu, out, urls, credits)


def test_dev_stdin_fed_by_a_pipe_is_processed_and_planned(emu: Emulator, tmp_path: Path) -> None:
    urls = _urls(emu, 5)
    listing = "\n".join(urls) + "\n"
    args = ["remove", "/dev/stdin", "-o", str(tmp_path / "out"), "--base-url", emu.base_url]
    plan = run_cli([*args, "--dry-run"], stdin=listing)
    assert plan.returncode == 0, plan.stderr
    assert "5 item(s) read" in plan.stdout
    credits = emu.stats.credits_charged
    result = run_cli(args, stdin=listing)
    assert result.returncode == 0, result.stderr
    _stored_once_each(emu, tmp_path / "out", urls, credits)
