"""The recipes' harness: each docs/recipes/<name>.md is a set of files, run by a test.

A recipe's files are its code blocks with a title, as Material renders them:

    ```python title="app.py"
    ...
    ```

`recipe_files(name)` returns them as written on the page and `write_recipe(name, dir)`
puts them in a directory, so a test runs exactly what the reader copies. Every recipe
page must be used by some test (tests/test_recipes.py checks it): a new recipe is a page
plus a test that calls `recipe_files("<name>")` or `write_recipe("<name>", ...)`.
"""

from __future__ import annotations

import re
from pathlib import Path

RECIPES = Path(__file__).parent.parent / "docs" / "recipes"
_TITLED_BLOCK = re.compile(
    r'^```[\w-]+ title="(?P<title>[^"]+)"\n(?P<code>.*?)^```$', re.DOTALL | re.MULTILINE
)


def recipe_files(name: str) -> dict[str, str]:
    """The titled code blocks of docs/recipes/<name>.md: {file name: its text}."""
    page = (RECIPES / f"{name}.md").read_text(encoding="utf-8")
    files: dict[str, str] = {}
    for match in _TITLED_BLOCK.finditer(page):
        title = match["title"]
        if title in files:
            raise ValueError(f"{name}.md has two blocks titled {title!r}")
        files[title] = match["code"]
    if not files:
        raise ValueError(f"{name}.md has no titled code block to run")
    return files


def write_recipe(name: str, directory: Path) -> dict[str, Path]:
    """Write a recipe's files into ``directory``; returns their paths by file name."""
    paths = {}
    for title, code in recipe_files(name).items():
        path = directory / title
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code, encoding="utf-8")
        paths[title] = path
    return paths
