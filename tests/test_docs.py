"""The documentation cannot drift from the code: names, flags, generated pages.

The strict docs build (``nox -s docs``) fails on a `::: name` or a cross-reference
that does not resolve; these tests say the same faster, without mkdocs, and add what
the build cannot see: a CLI flag named in prose that the parser no longer has.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import freepik_bg
import freepik_bg.testing
from freepik_bg._cli import build_parser

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_tools" not in p.parts)
REFERENCE = sorted((DOCS / "reference").glob("*.md"))
PROSE = [ROOT / "README.md", *PAGES]

#: Flags of other tools that the pages mention, and where.
OTHER_TOOLS_FLAGS = {
    "--strict": "mkdocs build --strict (getting started)",
    "--only": "python -m benchmarks --only (benchmarks.md)",
    "--merge": "python -m benchmarks --merge (benchmarks.md)",
    "--rounds": "python -m benchmarks --rounds (scale.md)",
    "--memory-ns": "python -m benchmarks --memory-ns (benchmarks.md)",
    "--bucket": "aws s3api put-bucket-lifecycle-configuration (recipes/photos-to-s3.md)",
    "--lifecycle-configuration": "aws s3api put-bucket-lifecycle-configuration (the same)",
}


def load_hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "_tools" / "hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = load_hooks()


def resolve(identifier: str) -> Any:
    """The object a mkdocstrings identifier names (a module path, then attributes)."""
    parts = identifier.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attribute in parts[i:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(identifier)


def documented_identifiers() -> list[str]:
    return [
        match
        for page in REFERENCE
        for match in re.findall(r"^::: ([\w.]+)", page.read_text(), flags=re.MULTILINE)
    ]


# -- public names -------------------------------------------------------------


@pytest.mark.parametrize("identifier", documented_identifiers())
def test_reference_names_exist(identifier: str) -> None:
    resolve(identifier)


@pytest.mark.parametrize(
    "identifier",
    sorted(
        {ref for page in PROSE for ref in re.findall(r"\]\[(freepik_bg[\w.]*)\]", page.read_text())}
    ),
)
def test_cross_references_in_pages_exist(identifier: str) -> None:
    resolve(identifier)


def test_every_public_name_is_in_the_reference() -> None:
    documented = set(documented_identifiers())
    public = [f"freepik_bg.{name}" for name in freepik_bg.__all__ if name != "__version__"]
    public += [f"freepik_bg.testing.{name}" for name in freepik_bg.testing.__all__]
    dask = pytest.importorskip("freepik_bg.dask")
    public += [f"freepik_bg.dask.{name}" for name in dask.__all__]
    assert [name for name in public if name not in documented] == []


def test_private_helpers_are_not_in_the_reference() -> None:
    text = "\n".join(page.read_text() for page in REFERENCE)
    for helper in ("record_posted", "ImageStream", "parse_retry_after", "pending_cutout"):
        assert helper not in text
    # Journal's runner-facing methods are left out by an explicit member list.
    assert "members: [completed, is_stored]" in (DOCS / "reference" / "batches.md").read_text()


def test_no_sphinx_roles() -> None:
    role = re.compile(r":(?:meth|class|func|attr|exc|data|mod|obj|ref):`")
    sources = [*(ROOT / "freepik_bg").rglob("*.py"), *PROSE]
    offenders = [str(path.relative_to(ROOT)) for path in sources if role.search(path.read_text())]
    assert offenders == []


# -- the command line -----------------------------------------------------------


def all_parsers() -> list[argparse.ArgumentParser]:
    parser = build_parser()
    return [parser, *hooks.subcommands(parser).values(), freepik_bg.testing.build_parser()]


def known_flags() -> set[str]:
    return {
        flag
        for parser in all_parsers()
        for action in parser._actions
        for flag in action.option_strings
    }


def test_cli_reference_lists_every_option() -> None:
    page = hooks.cli_reference()
    parser = build_parser()
    for name, command in hooks.subcommands(parser).items():
        assert f"## `freepik-bg {name}`" in page
        for action in hooks.documented_actions(command):
            for flag in action.option_strings:
                assert re.search(rf"`([^`]*, )?{re.escape(flag)}[ `,]", page), (name, flag)


def test_cli_reference_is_generated_at_build_time() -> None:
    assert "docs/_tools/hooks.py" in (ROOT / "mkdocs.yml").read_text()
    assert hooks.CLI_MARKER in (DOCS / "reference" / "cli.md").read_text()
    assert hooks.ERROR_TREE_MARKER in (DOCS / "reference" / "errors.md").read_text()


@pytest.mark.parametrize("page", PROSE, ids=lambda p: str(p.relative_to(ROOT)))
def test_flags_named_in_the_docs_exist(page: Path) -> None:
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", page.read_text()))
    unknown = named - known_flags() - set(OTHER_TOOLS_FLAGS)
    assert unknown == set(), f"{page.name} names flags the CLI does not have"


def test_other_tools_flags_are_still_mentioned() -> None:
    text = "\n".join(page.read_text() for page in PROSE)
    assert [flag for flag in OTHER_TOOLS_FLAGS if flag not in text] == []


def test_error_tree_has_every_error() -> None:
    tree = hooks.error_tree()
    errors = [
        name
        for name in freepik_bg.__all__
        if isinstance(obj := getattr(freepik_bg, name), type) and issubclass(obj, Exception)
    ]
    assert len(errors) > 15
    for name in errors:
        assert re.search(rf"[─ ]{name}\b|^{name}$", tree, flags=re.MULTILINE), name
    assert "│   ├── APITimeoutError" in tree  # drawn under its parent
