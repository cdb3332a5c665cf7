"""The package version: the one place it is written (pyproject reads it from here).

A plain constant, not `importlib.metadata`: the CLI's user-agent needs it before the
first POST, and reading the distribution's metadata costs ~10 ms of every start-up
(importlib.metadata, zipfile, a scan of sys.path). Hatchling takes the project's
version from this file (``[tool.hatch.version]``), so a build, and an editable
install, always agree with it.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
