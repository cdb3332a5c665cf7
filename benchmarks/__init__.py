"""Benchmarks: the freepik_bg SDK against raw httpx and naive fan-out, side by side.

Run ``python -m benchmarks`` (or ``nox -s bench``) from the repository root; it starts the
emulator in a child process in fast mode, runs every scenario with A and B alternating,
and writes ``docs/benchmarks.md`` with plots under ``docs/img/``.

Each scenario module has a ``run(...)`` function returning a :class:`ScenarioResult`, and
the smoke tests call them with a tiny ``n`` and one round.
"""

from __future__ import annotations

from benchmarks._common import (
    Comparison,
    RunStats,
    ScenarioResult,
    Settings,
    emulator,
    machine_info,
    summarize,
)

__all__ = [
    "Comparison",
    "RunStats",
    "ScenarioResult",
    "Settings",
    "emulator",
    "machine_info",
    "summarize",
]
