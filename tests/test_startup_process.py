"""The `freepik-bg` process starts with its garbage collector paused (#15).

The console script (`freepik_bg._entry`) pauses the cyclic garbage collector while the
SDK loads, and the CLI turns it back on (start-up's objects frozen) before the run. It
must not change what a run does: the collector is on while the batch runs, however the
command line ends it is on again, and an application's collector is its own.
"""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest

from freepik_bg import _cli, _entry
from tests.conftest import KEY, cli_env
from tests.test_startup import at_first_post

# -- the collector --------------------------------------------------------------------


def test_the_process_loads_the_sdk_with_the_collector_paused_and_runs_with_it_on(
    tmp_path: Path,
) -> None:
    state = at_first_post(tmp_path, "--progress", "plain")
    assert state["paused_at"] == {"httpx": True, "freepik_bg._runner": True}
    assert state["gc"] is True  # on again before the first POST, for the whole run
    assert state["frozen"] > 10_000  # start-up's objects, out of every later collection


def _entry_point(*args: str, prelude: str = "") -> str:
    code = (
        "import gc, sys\n"
        f"{prelude}\n"
        f"sys.argv = ['freepik-bg', *{list(args)!r}]\n"
        "from freepik_bg._entry import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["remove", "--bogus-flag"]])
def test_the_collector_is_back_on_however_the_command_line_ends_early(args: list[str]) -> None:
    # These end in the parser, before the SDK loads: main's `finally` turns it on.
    assert _entry_point(*args) == "True True"


def test_a_collector_the_caller_turned_off_stays_off() -> None:
    assert _entry_point("--version", prelude="gc.disable()") == "False False"


def test_calling_the_cli_from_an_application_leaves_its_collector_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FREEPIK_API_KEY", KEY)
    frozen = gc.get_freeze_count()
    missing = tmp_path / "no-such-list.txt"
    assert _cli.main(["remove", str(missing), "-o", str(tmp_path / "out")]) == 2
    _entry.resume()  # not paused by this process: nothing to do
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen
