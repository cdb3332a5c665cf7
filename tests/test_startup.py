"""The CLI starts fast: what `freepik-bg --help` and a `remove` run import, and the lazy
package exports that make it so (`freepik_bg._lazy`). Timings are in the benchmarks
(scenario "startup"); here only which modules get imported, which cannot flake.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import freepik_bg
import freepik_bg.testing
from tests.conftest import cli_env

# Heavy, and not needed to print help: the SDK's HTTP stack, the bar, the emulator, and
# the distribution's metadata (`--version` reads `_version.py`).
NOT_FOR_HELP = {"httpx", "httpcore", "anyio", "tenacity", "rich", "numpy", "PIL", "uvicorn"}
NOT_FOR_HELP |= {"importlib.metadata"}
# --dask's parts (each of these is installed with the test extras, so a stray import shows).
ONLY_FOR_DASK = {"dask", "distributed", "pyarrow", "pandas", "freepik_bg.dask"}
NOT_FOR_HELP |= ONLY_FOR_DASK
NOT_FOR_REMOVE = {"rich", "numpy", "PIL", "uvicorn", "obstore", "httpx._main", "click"}
NOT_FOR_REMOVE |= ONLY_FOR_DASK | {"freepik_bg._demo"}
# What a plain run (a URL list into a folder) must not have imported when it connects to
# the API for its first POST: nothing it does not use before then (issue #15).
NOT_BEFORE_FIRST_POST = NOT_FOR_REMOVE | {
    "importlib.metadata",  # the version is a constant in _version.py
    "zipfile",
    "tenacity",  # imported at the first retry
    "trio",  # the CLI runs on asyncio; httpcore's trio support is left out
    "freepik_bg._plan",  # only to ask before a large spend, on a terminal
    "freepik_bg._storage",  # object storage: only for s3:// (etc.) outputs
    "freepik_bg._stores",
    "freepik_bg._staging",  # only with --stage
    "freepik_bg._dask_job",  # only with --dask
    "freepik_bg._dask_graph",
    "freepik_bg._aiohttp",  # only with --http-backend aiohttp
    "aiohttp",
    "freepik_bg.testing",
}

_PROBE = """
import json, sys
from freepik_bg._cli import main
try:
    code = main(json.loads(sys.argv[1]))
except SystemExit as exc:
    code = exc.code
with open(sys.argv[2], "w") as f:
    # A name set to None is one the process keeps from being imported, not a module.
    loaded = [name for name, module in sys.modules.items() if module is not None]
    json.dump({"code": code, "modules": sorted(loaded)}, f)
"""


def imports_of(args: list[str], tmp_path: Path, *, cwd: Path | None = None) -> set[str]:
    """The modules `freepik-bg ARGS` has imported when it is done (in a fresh interpreter)."""
    out = tmp_path / "modules.json"
    subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args), str(out)],
        env=cli_env(),
        cwd=cwd,
        capture_output=True,
        timeout=60,
        check=True,
    )
    result = json.loads(out.read_text())
    assert result["code"] in (0, 1), result["code"]  # it ran (1: items failed, by design)
    modules: list[str] = result["modules"]
    return {*modules, *(m.split(".")[0] for m in modules)}


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], ["remove", "--help"], ["emulator", "--help"], ["demo", "--help"]],
)
def test_help_imports_nothing_heavy(args: list[str], tmp_path: Path) -> None:
    loaded = imports_of(args, tmp_path)
    assert "freepik_bg._cli" in loaded
    assert not loaded & NOT_FOR_HELP, sorted(loaded & NOT_FOR_HELP)


def test_a_remove_run_imports_no_bar_emulator_or_httpx_cli(tmp_path: Path) -> None:
    (tmp_path / "urls.txt").write_text("https://example.com/a.png\n")
    # Nothing listens on port 9 (discard): the one POST fails fast, unretried.
    args = ["remove", "urls.txt", "-o", "out", "--base-url", "http://127.0.0.1:9"]
    loaded = imports_of(
        [*args, "--max-retries", "0", "--progress", "plain"], tmp_path, cwd=tmp_path
    )
    assert {"httpx", "anyio", "freepik_bg._runner"} <= loaded  # it did run a batch
    assert not loaded & NOT_FOR_REMOVE, sorted(loaded & NOT_FOR_REMOVE)


_ENTRY_PROBE = """
import json, os, sys
from freepik_bg._entry import main
sys.argv = ["freepik-bg", *json.loads(sys.argv[1])]
code = main()
loaded = [name for name, module in sys.modules.items() if module is not None]
with open(os.environ["PROBE_OUT"], "w") as f:
    json.dump({"code": code, "modules": sorted(loaded)}, f)
"""


@pytest.mark.parametrize("entry", ["command", "application"])
def test_a_remove_run_that_retries_loads_tenacity_without_tornado(
    tmp_path: Path, entry: str
) -> None:
    # tornado (installed with dask) would cost the event loop ~30 ms at the first retry:
    # the command's own process keeps it out; an application calling the CLI keeps it.
    (tmp_path / "urls.txt").write_text("https://example.com/a.png\n")
    args = ["remove", "urls.txt", "-o", "out", "--base-url", "http://127.0.0.1:9"]
    args += ["--max-retries", "1", "--progress", "plain"]
    if entry == "application":
        loaded = imports_of(args, tmp_path, cwd=tmp_path)
        assert "tenacity" in loaded  # it did retry
        assert "tornado" in loaded
        return
    out = tmp_path / "modules.json"
    subprocess.run(
        [sys.executable, "-c", _ENTRY_PROBE, json.dumps(args)],
        env={**cli_env(), "PROBE_OUT": str(out)},
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=True,
    )
    state = json.loads(out.read_text())
    assert state["code"] == 1  # the one item failed, after its retry
    assert "tenacity" in state["modules"]
    assert "tornado" not in state["modules"]


# The `freepik-bg` process itself (its entry point), stopped as it connects to the API
# for its first POST: which modules it loaded by then, and its collector's state.
_FIRST_POST_PROBE = """
import gc, json, os, sys
out, port = sys.argv[1], int(sys.argv[2])
paused_at = {}
def audit(event, args):
    if event == "import" and args[0] in ("httpx", "freepik_bg._runner"):
        paused_at[args[0]] = not gc.isenabled()
    if event == "socket.connect" and isinstance(args[1], tuple) and args[1][1:2] == (port,):
        state = {"modules": sorted(sys.modules), "paused_at": paused_at,
                 "gc": gc.isenabled(), "frozen": gc.get_freeze_count()}
        with open(out, "w") as f:
            json.dump(state, f)
        os._exit(0)
sys.addaudithook(audit)
sys.argv = ["freepik-bg", *sys.argv[3:]]
from freepik_bg._entry import main
sys.exit(main())
"""


def at_first_post(tmp_path: Path, *extra: str) -> dict[str, Any]:
    """The state of a ``freepik-bg remove`` process as it connects for its first POST."""
    (tmp_path / "urls.txt").write_text("https://example.com/a.png\n")
    out = tmp_path / "state.json"
    port = 9  # discard: nothing listens, and the probe stops at the connect anyway
    args = ["remove", "urls.txt", "-o", "out", "--base-url", f"http://127.0.0.1:{port}"]
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_POST_PROBE, str(out), str(port), *args, *extra],
        env=cli_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.exists(), f"no connect to the API (exit {done.returncode}): {done.stderr}"
    state: dict[str, Any] = json.loads(out.read_text())
    modules = state["modules"]
    state["modules"] = {*modules, *(m.split(".")[0] for m in modules)}
    return state


def test_a_remove_run_loads_nothing_before_its_first_post_that_the_post_does_not_need(
    tmp_path: Path,
) -> None:
    loaded = at_first_post(tmp_path, "--progress", "plain")["modules"]
    assert {"httpx", "anyio", "freepik_bg._runner", "freepik_bg._journal"} <= loaded
    assert not loaded & NOT_BEFORE_FIRST_POST, sorted(loaded & NOT_BEFORE_FIRST_POST)


def test_the_bar_is_not_loaded_before_the_first_post_either(tmp_path: Path) -> None:
    # --progress bar: rich draws it, but only once the batch is under way.
    loaded = at_first_post(tmp_path, "--progress", "bar")["modules"]
    assert "freepik_bg._runner" in loaded
    assert not loaded & NOT_BEFORE_FIRST_POST, sorted(loaded & NOT_BEFORE_FIRST_POST)


# -- lazy exports --------------------------------------------------------------------


def test_importing_the_packages_loads_no_sdk(tmp_path: Path) -> None:
    code = (
        "import sys, freepik_bg, freepik_bg.testing; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *NOT_FOR_HELP],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "[]"


def test_the_first_public_name_binds_them_all(tmp_path: Path) -> None:
    code = (
        "import sys, freepik_bg\n"
        "assert 'AsyncClient' not in vars(freepik_bg)\n"
        "from freepik_bg import RateLimitError\n"
        "assert RateLimitError.__module__ == 'freepik_bg'\n"
        "missing = [n for n in freepik_bg.__all__ if n != 'ObjectStoreSink'"
        " and n not in vars(freepik_bg)]\n"
        "assert not missing, missing\n"
        "assert 'obstore' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], timeout=60, check=True)


def test_an_unknown_name_is_an_attribute_error_without_loading_anything() -> None:
    with pytest.raises(AttributeError, match="no attribute 'AsyncKlient'"):
        _ = freepik_bg.AsyncKlient  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="no attribute 'Emulater'"):
        _ = freepik_bg.testing.Emulater  # type: ignore[attr-defined]
    assert not hasattr(freepik_bg, "_private_thing")


def test_star_import_and_dir_list_every_public_name() -> None:
    namespace: dict[str, object] = {}
    exec("from freepik_bg import *", namespace)
    assert set(freepik_bg.__all__) <= set(namespace)
    assert set(freepik_bg.__all__) <= set(dir(freepik_bg))
    assert set(freepik_bg.testing.__all__) <= set(dir(freepik_bg.testing))


def _reexports(api: Path) -> set[str]:
    """Names `api` imports as themselves (``from m import X as X``): what type checkers see."""
    names = set()
    for node in ast.parse(api.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            for alias in node.names:
                assert alias.asname == alias.name, f"{api.name}: {alias.name} not re-exported"
                names.add(alias.name)
    return names


@pytest.mark.parametrize("package", [freepik_bg, freepik_bg.testing])
def test_the_typed_view_and_the_run_time_view_list_the_same_names(package: object) -> None:
    # `__init__` star-imports `_api` for type checkers and loads it at run time: both
    # must agree with `__all__`, or a name is typed but missing, or there but untyped.
    init = Path(package.__file__)  # type: ignore[attr-defined]
    lazy_of_their_own = {"ObjectStoreSink"}
    assert _reexports(init.parent / "_api.py") | lazy_of_their_own >= set(package.__all__)  # type: ignore[attr-defined]
    assert _reexports(init.parent / "_api.py") <= set(package.__all__)  # type: ignore[attr-defined]
