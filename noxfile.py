"""Developer tasks: `nox` runs lint, typecheck, tests and docs; `nox -s bench` the benchmarks."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "docs"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
# uv (installed with nox by the README's `nox[uv]`) builds each session's environment in
# seconds where pip took minutes; plain virtualenv + pip where nox has no uv beside it.
nox.options.default_venv_backend = "uv|virtualenv"
# uv, unlike pip, leaves the .pyc files to the first import; where PYTHONDONTWRITEBYTECODE
# is set, every process of the suite (CLI runs, Dask workers, emulators) then compiled
# numpy, pandas and distributed from source: the tests took 8 min 52 s instead of 6 min 45 s.
os.environ.setdefault("UV_COMPILE_BYTECODE", "1")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    session.install(".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[typecheck]")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with --strict (warnings fail the build)."""
    session.install("-e", ".[docs]")
    session.env["NO_MKDOCS_2_WARNING"] = "1"
    session.run("mkdocs", "build", "--strict", "--site-dir", str(session.create_tmp() + "/site"))


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite, on asyncio and trio, against respx mocks and the loopback emulator."""
    session.install("-e", ".[test]")
    # Two workers halve the wall time (most tests wait on loopback servers); a
    # developer's own arguments (a file, -k, -n 0) come after and win.
    session.run("pytest", "-n", "2", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against raw httpx and naive fan-out; writes docs/benchmarks.md."""
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks", *session.posargs)
