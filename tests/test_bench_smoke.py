"""Smoke tests of the benchmarks: each scenario runs with tiny N and one round.

They check that the code runs and produces well-formed results, never timings.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks import (
    ScenarioResult,
    Settings,
    cluster,
    expiry,
    journal,
    machine_info,
    memory,
    overhead,
    ratelimit,
    scaling,
    slowdisk,
    startup,
    storage,
    transforms,
    transports,
)
from benchmarks._report import write

SMOKE = Settings.smoke()
pytestmark = pytest.mark.timeout(60)


def _check(result: ScenarioResult) -> None:
    assert result.well_formed()
    assert result.runs
    assert result.comparisons
    for comparison in result.comparisons:
        assert all(math.isfinite(r) for r in comparison.ratios), comparison


@pytest.fixture(scope="module")
def results() -> dict[str, ScenarioResult]:
    return {}


def test_overhead(results: dict[str, ScenarioResult]) -> None:
    result = overhead.run(SMOKE)
    _check(result)
    assert {r.label for r in result.runs} == {"sdk", "raw", "raw again"}
    assert all(r.ok == SMOKE.overhead_n and r.cpu > 0 for r in result.runs)
    results["overhead"] = result


def test_memory(results: dict[str, ScenarioResult]) -> None:
    result = memory.run(SMOKE)
    _check(result)
    assert [r.n for r in result.runs] == list(SMOKE.memory_ns)
    assert all(r.ok == r.n and r.extra["peak_rss_mib"] > 1 for r in result.runs)
    results["memory"] = result


@pytest.mark.real_backoff
def test_ratelimit(results: dict[str, ScenarioResult]) -> None:
    result = ratelimit.run(SMOKE)
    _check(result)
    assert {r.label for r in result.runs} == set(ratelimit.SIDES)
    assert all(r.ok + r.extra["failed"] == SMOKE.rate_n for r in result.runs)
    assert all(0 <= r.extra["share_429"] <= 1 for r in result.runs)
    results["ratelimit"] = result


def test_expiry(results: dict[str, ScenarioResult]) -> None:
    result = expiry.run(SMOKE)
    _check(result)
    sdk = next(r for r in result.runs if r.label == "sdk")
    assert sdk.extra["gaps_measured"] == SMOKE.expiry_n
    results["expiry"] = result


def test_scaling(results: dict[str, ScenarioResult]) -> None:
    result = scaling.run(SMOKE)
    _check(result)
    assert len(result.table) == len(SMOKE.scaling_levels)
    results["scaling"] = result


def test_storage(results: dict[str, ScenarioResult]) -> None:
    pytest.importorskip("obstore")
    pytest.importorskip("moto.server")
    result = storage.run(SMOKE)
    _check(result)
    assert {r.label for r in result.runs} == {"folder", "s3"}
    assert all(r.ok == SMOKE.storage_n for r in result.runs)
    assert len(result.table) == 4
    results["storage"] = result


def test_transforms(results: dict[str, ScenarioResult]) -> None:
    result = transforms.run(SMOKE)
    _check(result)
    assert all(r.ok == SMOKE.transform_n for r in result.runs)
    assert all(r.extra["peak_rss_mib"] >= r.extra["baseline_rss_mib"] > 1 for r in result.runs)
    results["transforms"] = result


def test_startup(results: dict[str, ScenarioResult]) -> None:
    result = startup.run(SMOKE)
    _check(result)
    assert {r.label for r in result.runs} == set(startup.SIDES)
    assert all(r.elapsed > 0 for r in result.runs)
    results["startup"] = result


def test_slowdisk(results: dict[str, ScenarioResult]) -> None:
    result = slowdisk.run(SMOKE)
    _check(result)
    assert {r.label for r in result.runs} == set(slowdisk.SIDES)
    assert all(r.ok == SMOKE.slowdisk_n and r.extra["failed_paced"] == 0 for r in result.runs)
    results["slowdisk"] = result


def test_slow_disk_slows_os_replace_in_its_thread_only_while_on(tmp_path: Path) -> None:
    import os
    import time

    (tmp_path / "a").write_bytes(b"x")
    with slowdisk.slow_disk(0.05):
        started = time.perf_counter()
        os.replace(tmp_path / "a", tmp_path / "b")
        assert time.perf_counter() - started >= 0.05
    assert (tmp_path / "b").read_bytes() == b"x"
    assert os.replace.__module__ == "posix"


def test_transports(results: dict[str, ScenarioResult]) -> None:
    result = transports.run(SMOKE)
    _check(result)
    assert {r.label for r in result.runs} == set(transports.SIDES)
    assert all(r.ok == SMOKE.transports_n and r.extra["failed"] == 0 for r in result.runs)
    results["transports"] = result


def test_journal(results: dict[str, ScenarioResult]) -> None:
    result = journal.run(SMOKE)
    _check(result)
    assert {r.label for r in result.runs} == set(journal.SIDES)
    assert all(r.ok == SMOKE.journal_lines // 2 for r in result.runs)
    results["journal"] = result


def test_dask(results: dict[str, ScenarioResult]) -> None:
    pytest.importorskip("distributed")
    result = cluster.run(SMOKE)
    _check(result)
    assert [r.label for r in result.runs] == list(cluster.SIDES)
    assert all(r.ok == SMOKE.dask_n for r in result.runs)
    assert all(0 <= r.extra["share_429"] <= 1 and r.extra["posts"] >= r.n for r in result.runs)
    results["dask"] = result


def test_report(results: dict[str, ScenarioResult], tmp_path: Path) -> None:
    if "scaling" not in results:  # run on its own (-k report): make something to plot
        results["scaling"] = scaling.run(SMOKE)
    out = tmp_path / "docs" / "benchmarks.md"
    written = write(
        list(results.values()),
        machine_info(),
        out,
        tmp_path / "docs" / "img",
        command="smoke",
        elapsed=1.0,
    )
    text = out.read_text()
    assert "## Machine" in text
    assert "## Summary" in text
    pngs = [p for p in written if p.suffix == ".png"]
    assert pngs
    assert all(p.stat().st_size > 1000 for p in pngs)
    for png in pngs:
        assert f"img/{png.name}" in text


def test_results_survive_a_json_dump(results: dict[str, ScenarioResult], tmp_path: Path) -> None:
    """``--merge`` reports another run's scenarios as that run produced them."""
    import json

    import attrs

    from benchmarks._common import load_results

    if "scaling" not in results:
        results["scaling"] = scaling.run(SMOKE)
    dump = tmp_path / "run.json"
    dump.write_text(json.dumps([attrs.asdict(r) for r in results.values()], default=str))
    loaded = load_results(dump)
    for before, after in zip(results.values(), loaded, strict=True):
        assert (
            after.notes[-1]
            == "From a separate run (`benchmarks/analysis.md` says of which commit): `run.json`."
        )
        assert attrs.evolve(after, notes=after.notes[:-1]) == before
