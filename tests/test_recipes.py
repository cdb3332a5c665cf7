"""The recipes in docs/recipes/, run as the reader would run them, against the emulator.

(The FastAPI recipe's app.py is the README's example, run by
tests/test_client_rate.py::test_readme_fastapi_app_survives_a_burst.)
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from freepik_bg.testing import Emulator

from .conftest import cli_env
from .recipes import RECIPES, recipe_files, write_recipe

TESTS = Path(__file__).parent


@pytest.mark.parametrize("page", sorted(RECIPES.glob("*.md")), ids=lambda p: p.stem)
def test_every_recipe_is_run_by_a_test(page: Path) -> None:
    assert recipe_files(page.stem)  # it has files to run
    uses = re.compile(rf"(recipe_files|write_recipe)\(\s*\"{re.escape(page.stem)}\"")
    tests = [p for p in TESTS.rglob("*.py") if uses.search(p.read_text())]
    assert tests, f"no test runs docs/recipes/{page.name}"


def test_recipe_files_are_read_as_written(tmp_path: Path) -> None:
    page = tmp_path / "demo.md"
    page.write_text('Intro\n\n```python title="a.py"\nx = 1\n```\n\n```bash\nls\n```\n')
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("tests.recipes.RECIPES", tmp_path)
        assert recipe_files("demo") == {"a.py": "x = 1\n"}
        (tmp_path / "none.md").write_text("```python\nx = 1\n```\n")
        with pytest.raises(ValueError, match="no titled code block"):
            recipe_files("none")


def test_testing_your_code_recipe_passes(tmp_path: Path) -> None:
    files = write_recipe("testing-your-code", tmp_path)
    assert set(files) == {"catalogue.py", "test_catalogue.py"}
    # A fresh directory, its own pytest run: the fixture comes from the installed plugin.
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:asyncio"],
        cwd=tmp_path,
        env=cli_env(key=None),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout


def _start(script: Path, emu: Emulator) -> subprocess.Popen[str]:
    # Unbuffered, as on a terminal: the test reads the items as they are printed.
    env = {**cli_env(emu.api_key), "FREEPIK_BASE_URL": emu.base_url, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, script.name],
        cwd=script.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_resume_recipe_pays_once_per_url_across_a_ctrl_c(emu: Emulator, tmp_path: Path) -> None:
    script = write_recipe("resume", tmp_path)["cutouts.py"]
    n = 60
    urls = [f"{emu.image_url('ball-small.png')}?item={i}" for i in range(n)]
    (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
    # Slow answers, so that requests are in flight when the signal comes.
    emu.configure(latency=0.3)

    first = _start(script, emu)
    assert first.stdout is not None
    lines = []
    for line in first.stdout:
        lines.append(line)
        if len(lines) == 3:  # three items stored: the batch is in full swing
            first.send_signal(signal.SIGINT)
            break
    out, err = first.communicate(timeout=60)
    lines += out.splitlines(keepends=True)
    assert first.returncode == 130, err
    stored_first = sum(1 for line in lines if re.match(r"\d+ ok ", line))
    # Every request paid for before the stop was finished and stored: none was lost.
    assert emu.stats.credits_charged == stored_first
    assert 3 <= stored_first < n
    assert "interrupted: run the same command again to resume" in out

    second = _start(script, emu)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert f"{n - stored_first} stored, {stored_first} already done, 0 failed" in out
    # One credit per URL across both runs, and every cutout on disk.
    assert emu.stats.credits_charged == n
    assert len(list((tmp_path / "cutouts").glob("*.png"))) == n
