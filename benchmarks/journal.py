"""Scenario "journal": resuming over a long journal, and what journaling costs a batch.

- Resume: a journal of N lines (half ``posted``, half ``stored``; the last ~2% of the
  links still live) is loaded in a fresh subprocess, from its checkpoint
  (``<journal>.idx``) and, with the checkpoint moved aside, line by line. Seconds to
  load and the process's peak RSS.
- Append cost: the same batch with and without ``journal=``, ABBA, as a same-run ratio
  (throughput, and CPU per item), over an even number of rounds so that each side runs
  first as often as second; measured before the long journal is generated, so that
  nothing of that (its pages, its writeback) runs under it. And, as context, the
  journal's own CPU per item in a loop (`journal_cpu_us`).
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path

from benchmarks._common import (
    Comparison,
    Log,
    RunStats,
    ScenarioResult,
    Settings,
    Summary,
    alternate,
    emulator,
    measure,
    quiet,
    run_child,
    summarize,
    urls,
    warm_up,
)
from benchmarks._sdk import sdk_batch
from freepik_bg import Cutout, ItemResult, Journal
from freepik_bg._journal_index import index_path

RESUME_S = 3.0
RSS_MIB = 200.0
CONCURRENCY = 32
SIDES = ("checkpoint", "full")


def make_journal(path: Path, lines: int) -> None:
    """``lines`` journal lines, as a batch writes them: posted, then stored, per item."""
    links = {k: f"https://cdn.test/{k}/{{}}.png?sig=0123456789abcdef" for k in ("o", "h", "p")}
    now = datetime.now(timezone.utc)
    items = lines // 2
    journal = Journal(path)
    for i in range(items):
        url = f"https://images.example.com/catalog/{i % 997:04d}/photo-{i}.jpg"
        # Spread over a day; the last ~2% fall in the links' 5 minutes.
        received = now - timedelta(seconds=(items - i) * 15_000 / items)
        answer = {
            "original": links["o"].format(i),
            "high_resolution": links["h"].format(i),
            "preview": links["p"].format(i),
            "url": links["h"].format(i),
        }
        journal.record_posted(i, Cutout.from_response(answer, image_url=url, received_at=received))
        journal.record(ItemResult(index=i, image_url=url, ok=True, location=f"out/photo-{i}.png"))
    journal.close()


def journal_cpu_us(tmp: Path, n: int = 20_000, repeats: int = 3) -> float:
    """CPU microseconds per item of what a batch asks of its journal (links before the
    POST, the posted line, the stored line), in a loop; the best of ``repeats``."""
    answer = {k: f"https://cdn.test/{k}/{{}}.png?sig=0123456789abcdef" for k in ("o", "h", "p")}
    items = []
    for i in range(n):
        url = f"https://images.example.com/catalog/photo-{i}.jpg"
        found = {
            "original": answer["o"].format(i),
            "high_resolution": answer["h"].format(i),
            "preview": answer["p"].format(i),
            "url": answer["h"].format(i),
        }
        result = ItemResult(i, url, ok=True, location=f"out/{i}.png", attempts=1)
        items.append((url, Cutout.from_response(found, image_url=url), result))
    best = float("inf")
    for r in range(repeats):
        journal = Journal(tmp / f"cpu-{r}.jsonl")
        journal.open()
        gc.collect()
        started = time.process_time()
        for i, (url, cutout, result) in enumerate(items):
            journal.live_cutout(url)
            journal.record_posted(i, cutout)
            journal.record(result)
        best = min(best, time.process_time() - started)
        journal.close()
    return best / n * 1e6


def _resume(path: Path) -> dict[str, float]:
    return run_child("benchmarks._journalchild", [path], timeout=600)


def run(settings: Settings, log: Log = quiet) -> ScenarioResult:
    lines, n = settings.journal_lines, settings.journal_append_n
    result = ScenarioResult(
        key="journal",
        title="Journal at scale: resume time, its memory, and the cost of appending",
        description=(
            f"Resume: `Journal(path)` over a {lines:,}-line journal in a fresh subprocess, "
            "from its checkpoint and line by line (checkpoint moved aside); wall seconds "
            f"and peak RSS, {settings.rounds} rounds each. Append cost (measured first): "
            f"{n} items, concurrency {CONCURRENCY}, the same batch with and without "
            f"`journal=`, {_append_rounds(settings)} rounds, ABBA."
        ),
    )
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
        append, cpu_ratio, inside = _append_cost(settings, n, Path(tmp), log, result.notes)
        loop_n = 20_000 if n >= 1000 else 1000  # the smoke settings' tiny batch: a short loop
        cpu_us = journal_cpu_us(Path(tmp), loop_n)
        log(f"  journal CPU per item in a loop: {cpu_us:.1f} us")
        result.notes.append(
            "the journal's own CPU per item in a loop (links looked up, posted and stored "
            f"lines written; best of 3 x {loop_n:,} items): {cpu_us:.1f} µs"
        )
        path = Path(tmp) / "journal.jsonl"
        make_journal(path, lines)
        size_mib = path.stat().st_size / 2**20
        log(f"  journal: {lines:,} lines, {size_mib:.0f} MiB")
        aside = Path(tmp) / "aside.idx"
        for r, side in alternate(settings.rounds, SIDES):
            if side == "full":
                os.replace(index_path(path), aside)
            data = _resume(path)
            if side == "full":
                os.replace(aside, index_path(path))
            result.runs.append(
                RunStats(side, lines, int(data["completed"]), data["elapsed"], 0.0, extra=data)
            )
            log(
                f"  journal round {r} {side}: {data['elapsed']:.2f} s, "
                f"{data['peak_rss_mib']:.0f} MiB, {data['completed']:.0f} done"
            )
    by_side = {s: [r for r in result.runs if r.label == s] for s in SIDES}
    resume = tuple(r.elapsed for r in by_side["checkpoint"])
    rss = tuple(r.extra["peak_rss_mib"] for r in result.runs)
    result.comparisons = [
        Comparison(
            f"journal: resume from the checkpoint, {lines:,} lines, s",
            resume,
            f"< {RESUME_S:.0f} s",
            max(resume) < RESUME_S,
            note="an absolute value, not a ratio",
        ),
        Comparison(
            "journal: peak RSS of a resume, MiB",
            rss,
            f"< {RSS_MIB:.0f} MiB",
            max(rss) < RSS_MIB,
            note="an absolute value, checkpoint and full parse",
        ),
        Comparison(
            "journal: throughput with journal / without",
            append,
            ">= 0.98",
            summarize(append).median >= 0.98,
        ),
        Comparison("journal: CPU per item with journal / without", cpu_ratio, "(context)", None),
        Comparison(
            "journal: share of the batch's wall time inside the journal's calls",
            inside,
            "<= 0.02",
            summarize(inside).median <= 0.02,
            note="direct: the journal works on the event loop, so this is the throughput it "
            "takes when the loop is the bottleneck",
        ),
    ]
    result.header = ["resume", "wall s median (min-max)", "peak RSS MiB median (min-max)"]
    for side in SIDES:
        runs = by_side[side]
        result.table.append(
            [
                side,
                summarize([r.elapsed for r in runs]).fmt(".2f"),
                summarize([r.extra["peak_rss_mib"] for r in runs]).fmt(".0f"),
            ]
        )
    return result


class _TimedJournal(Journal):
    """A journal that adds up the time spent in its two calls a batch makes per item."""

    spent = 0.0

    def record_posted(self, index: int, cutout: Cutout) -> None:
        started = time.perf_counter()
        try:
            super().record_posted(index, cutout)
        finally:
            self.spent += time.perf_counter() - started

    def record(
        self, result: ItemResult, size: str = "high_resolution", name: str | None = None
    ) -> None:
        started = time.perf_counter()
        try:
            super().record(result, size, name)
        finally:
            self.spent += time.perf_counter() - started


def _append_rounds(settings: Settings) -> int:
    # ABBA needs an even number of rounds to put each side first as often as second.
    return settings.rounds + settings.rounds % 2


def _append_cost(
    settings: Settings, n: int, tmp: Path, log: Log, notes: list[str]
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Per round, journal / plain: (throughput ratios, CPU-per-item ratios); and per
    journal run, the share of its wall time spent inside the journal's calls."""
    by_round: dict[int, dict[str, tuple[float, float]]] = {}
    inside: list[float] = []
    with emulator() as emu:
        warm_up(emu)
        for r, side in alternate(_append_rounds(settings), ("plain", "journal")):
            journal = _TimedJournal(tmp / f"append-{r}.jsonl") if side == "journal" else None
            run = partial(
                sdk_batch,
                emu.base_url,
                emu.api_key,
                urls(emu, n, tag=f"j{side}{r}-"),
                concurrency=CONCURRENCY,
                journal=journal,
            )
            out, wall, cpu = measure(run)
            if journal is not None:
                journal.close()
                inside.append(journal.spent / wall)
            by_round.setdefault(r, {})[side] = (out.ok / wall, cpu / max(out.ok, 1))
            log(
                f"  journal append round {r} {side}: {out.ok / wall:.0f} items/s, "
                f"{cpu / max(out.ok, 1) * 1e3:.3f} ms CPU/item, {out.failed} failed"
            )
    rounds = [by_round[r] for r in sorted(by_round)]
    for side in ("plain", "journal"):
        tput: Summary = summarize([b[side][0] for b in rounds])
        cpu_ms: Summary = summarize([b[side][1] * 1e3 for b in rounds])
        notes.append(
            f"append, {side}: {tput.fmt('.0f')} items/s, {cpu_ms.fmt('.3f')} ms CPU/item "
            "(median (min-max) over rounds)"
        )
    return (
        tuple(b["journal"][0] / b["plain"][0] for b in rounds),
        tuple(b["journal"][1] / b["plain"][1] for b in rounds),
        tuple(inside),
    )
