"""The docstrings' examples are real: every doctest passes, and every example the API
reference shows runs against the emulator.

An example is a ```python block or a doctest in a docstring. Those of public names (the
ones the reference renders) are run as programs: top-level ``await`` is allowed, the
example hosts (``https://example.com/...``) are swapped for the emulator's sample
images, ``$FREEPIK_API_KEY``/``$FREEPIK_BASE_URL`` point at the emulator, and every
function the example defines is then called, with its parameters taken by name from
`_fixtures` (``client``, ``cutout``, ``urls``, ``results``, ``emu``...). An example
that cannot run that way fails here.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import importlib.util
import inspect
import pkgutil
import re
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import anyio.to_thread
import pytest

import freepik_bg
import freepik_bg.testing
from freepik_bg.testing import Emulator

FENCED = re.compile(r"```python\n(.*?)```", re.DOTALL)
#: Example hosts in docstrings; each URL becomes a distinct emulator sample URL.
EXAMPLE_URL = re.compile(r"https://(?:[\w-]+\.)?example\.com/[^\s\"')]*")
SAMPLE = "ball-small.png"


def _modules() -> Iterator[ModuleType]:
    yield freepik_bg
    for info in pkgutil.walk_packages(freepik_bg.__path__, "freepik_bg."):
        if info.name.endswith("__main__"):
            continue
        yield importlib.import_module(info.name)


def _members(obj: type) -> Iterator[tuple[str, Any]]:
    # Own members, and those inherited from the package's own mixins (AsyncClient.batch).
    namespace: dict[str, Any] = {}
    for base in reversed(inspect.getmro(obj)):
        if base.__module__.startswith("freepik_bg"):
            namespace.update(vars(base))
    for name, member in namespace.items():
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        elif isinstance(member, property):
            member = member.fget
        if inspect.isfunction(member) or inspect.isclass(member):
            yield name, member


def _modules() -> list[ModuleType]:
    """The public modules; ``freepik_bg.dask`` when its extra is installed."""
    modules: list[ModuleType] = [freepik_bg, freepik_bg.testing]
    if importlib.util.find_spec("dask") is not None:
        modules.append(importlib.import_module("freepik_bg.dask"))
    return modules


def _public_objects() -> set[int]:
    """ids of the objects the API reference renders: public names and their public members."""
    public: set[int] = set()
    for module in _modules():
        if module.__name__ != "freepik_bg.dask":  # its page renders the function only
            public.add(id(module))
        for name in module.__all__:
            obj = getattr(module, name)
            public.add(id(obj))
            if inspect.isclass(obj):
                public.update(id(m) for n, m in _members(obj) if not n.startswith("_"))
    return public


def _docstrings() -> dict[str, tuple[str, ModuleType, bool]]:
    """Every docstring in the package by qualified name: (text, its module, rendered?)."""
    public = _public_objects()
    found: dict[str, tuple[str, ModuleType, bool]] = {}
    seen: set[int] = set()

    def add(name: str, obj: Any, module: ModuleType) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        doc = obj.__doc__ if isinstance(obj, ModuleType) else inspect.getdoc(obj)
        if doc and (">>>" in doc or "```python" in doc):
            found[name] = (inspect.cleandoc(doc), module, id(obj) in public)
        if inspect.isclass(obj):
            for member_name, member in _members(obj):
                add(f"{name}.{member_name}", member, module)

    for module in _modules():
        add(module.__name__, module, module)
        for name, obj in vars(module).items():
            home = getattr(obj, "__globals__", {}).get("__name__") or getattr(
                defining_module(obj), "__name__", None
            )
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and home == module.__name__:
                add(f"{module.__name__}.{name}", obj, module)
    return found


def defining_module(obj: Any) -> ModuleType | None:
    """The module that defines a class (its ``__module__`` may be the public one)."""
    if not inspect.isclass(obj):
        return None
    try:
        return inspect.getmodule(obj, inspect.getsourcefile(obj))
    except TypeError:
        return None


DOCSTRINGS = _docstrings()
RENDERED = sorted(name for name, (_, _, rendered) in DOCSTRINGS.items() if rendered)


def example_code(doc: str) -> list[str]:
    """The programs in a docstring: each ```python block, and its doctests joined as one."""
    programs = [textwrap.dedent(block) for block in FENCED.findall(doc)]
    doctests = doctest.DocTestParser().get_examples(doc)
    if doctests:
        programs.append("".join(example.source for example in doctests))
    return programs


# -- every doctest passes -----------------------------------------------------


@pytest.mark.parametrize("name", sorted(n for n, (d, _, _) in DOCSTRINGS.items() if ">>>" in d))
def test_doctest_passes(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc, module, _ = DOCSTRINGS[name]
    monkeypatch.chdir(tmp_path)
    test = doctest.DocTestParser().get_doctest(doc, dict(vars(module)), name, module.__file__, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test, out=lambda text: print(text, end=""))
    assert runner.failures == 0, f"a doctest of {name} failed (see the captured output)"


def test_rendered_examples_are_not_skipped() -> None:
    # A skipped doctest checks nothing: an example in the reference must run (top-level
    # await goes in a ```python block, which the test below runs).
    skipped = [name for name in RENDERED if "+SKIP" in DOCSTRINGS[name][0]]
    assert skipped == []


def test_examples_are_found() -> None:
    # The walk must see the examples of the main entry points, or the test below is empty.
    for name in ("freepik_bg.AsyncClient", "freepik_bg.AsyncClient.batch"):
        assert name in RENDERED


# -- every rendered example runs against the emulator -------------------------


def _with_emulator_urls(source: str, emu: Emulator) -> str:
    counter = iter(range(1_000_000))
    return EXAMPLE_URL.sub(lambda m: f"{emu.image_url(SAMPLE)}?example={next(counter)}", source)


@asynccontextmanager
async def _fixtures(emu: Emulator, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """What an example's functions may ask for, by parameter name."""
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            freepik_bg.AsyncClient(api_key=emu.api_key, base_url=emu.base_url)
        )
        urls = [f"{emu.image_url(SAMPLE)}?fixture={i}" for i in range(3)]
        cutout = await client.remove_background(urls[0])
        values: dict[str, Any] = {
            "client": client,
            "emu": emu,
            "freepik_emulator": emu,
            "tmp_path": tmp_path,
            "url": urls[0],
            "urls": urls,
            "cutout": cutout,
            "event": freepik_bg.ProgressEvent(freepik_bg.ProgressKind.POSTED, 0, urls[0]),
        }

        async def results() -> Any:
            return await stack.enter_async_context(client.batch(urls, tmp_path / "results"))

        values["results"] = results
        yield values


def _defined_functions(source: str) -> list[str]:
    tree = ast.parse(source)
    return [
        node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]


async def _call(function: Callable[..., Any], fixtures: dict[str, Any]) -> None:
    arguments = {}
    for parameter in inspect.signature(function).parameters:
        assert parameter in fixtures, f"an example's {function.__name__}() takes {parameter!r}"
        value = fixtures[parameter]
        arguments[parameter] = await value() if parameter == "results" else value
    if inspect.iscoroutinefunction(function):
        await function(**arguments)
    else:
        # A blocking example (remove_backgrounds) runs as a script would: off the loop.
        await anyio.to_thread.run_sync(lambda: function(**arguments))


async def _run_example(source: str, emu: Emulator, tmp_path: Path) -> None:
    namespace: dict[str, Any] = {"__name__": "example", **vars(freepik_bg)}
    namespace.update(
        {name: getattr(freepik_bg.testing, name) for name in freepik_bg.testing.__all__}
    )
    async with _fixtures(emu, tmp_path) as fixtures:
        namespace.update({k: v for k, v in fixtures.items() if k != "results"})
        code = compile(source, "<example>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)
        if inspect.iscoroutine(result):
            await result
        for name in _defined_functions(source):
            await _call(namespace[name], fixtures)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("name", RENDERED)
async def test_rendered_example_runs(
    name: str, emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc, _, _ = DOCSTRINGS[name]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FREEPIK_API_KEY", emu.api_key)
    monkeypatch.setenv("FREEPIK_BASE_URL", emu.base_url)
    (tmp_path / "urls.txt").write_text(f"{emu.image_url(SAMPLE)}?file=1\n")
    programs = example_code(doc)
    assert programs
    for source in programs:
        await _run_example(_with_emulator_urls(source, emu), emu, tmp_path)
