"""Write the results as markdown, with plots (PNG) beside it."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from benchmarks._common import Comparison, ScenarioResult


def _cell(value: float) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3f}"


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "-"}[met]


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def summary_rows(results: Sequence[ScenarioResult]) -> list[list[str]]:
    rows = []
    for result in results:
        for c in result.comparisons:
            s = c.summary
            rows.append(
                [
                    c.name + (f" ({c.note})" if c.note else ""),
                    _cell(s.median),
                    _cell(s.low),
                    _cell(s.high),
                    str(len(c.ratios)),
                    c.target,
                    _verdict(c.met),
                ]
            )
    return rows


def _is_ratio(c: Comparison) -> bool:
    return not c.note and c.met is not None


def plot_ratios(results: Sequence[ScenarioResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comps = [c for r in results for c in r.comparisons if _is_ratio(c)]
    if not comps:
        return
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(comps) + 1.6), dpi=110)
    ys = list(range(len(comps)))[::-1]
    for y, c in zip(ys, comps, strict=True):
        s = c.summary
        color = "tab:green" if c.met else "tab:red"
        ax.barh(y, s.median, color=color, alpha=0.75, height=0.6)
        ax.errorbar(
            s.median,
            y,
            xerr=[[s.median - s.low], [s.high - s.median]],
            fmt="none",
            ecolor="black",
            capsize=3,
        )
        ax.text(s.high * 1.02 + 0.01, y, f"{s.median:.2f}  (target {c.target})", va="center")
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(ys)
    ax.set_yticklabels([c.name for c in comps])
    ax.set_xlabel("ratio (median of rounds; bars: min-max)  green = target met, red = missed")
    highest = max(c.summary.high for c in comps)
    ax.set_xlim(0, highest * 2.0)
    ax.set_title("freepik_bg benchmarks: ratios measured in the same run")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_scaling(result: ScenarioResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, dict[int, list[float]]] = result.plot["series"]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for label, style in (("sdk", "o-"), ("raw", "s--")):
        levels = sorted(series[label])
        medians = [sorted(series[label][c])[len(series[label][c]) // 2] for c in levels]
        lows = [min(series[label][c]) for c in levels]
        highs = [max(series[label][c]) for c in levels]
        ax.plot(levels, medians, style, label="SDK batch" if label == "sdk" else "raw httpx")
        ax.fill_between(levels, lows, highs, alpha=0.2)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(series["sdk"]))
    ax.set_xticklabels([str(c) for c in sorted(series["sdk"])])
    ax.set_xlabel("concurrency")
    ax.set_ylabel("items per second (POST + download)")
    ax.set_title("Scaling: SDK against raw httpx (median, band = min-max)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_expiry(result: ScenarioResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gaps: dict[str, list[float]] = result.plot["gaps"]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    floor = 1e-4  # a log axis: gaps under 0.1 ms are drawn at 0.1 ms
    for label, values in gaps.items():
        if not values:
            continue
        ordered = sorted(max(v, floor) for v in values)
        fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
        ax.step(ordered, fractions, where="post", label=label, linewidth=2)
    ax.axvline(result.plot["ttl"], color="red", linestyle="--", label="link TTL")
    ax.set_xlabel("seconds from POST answer to download request (log)")
    ax.set_ylabel("share of items (CDF)")
    ax.set_xscale("log")
    ax.set_xlim(floor, 30)
    ax.set_title("Expiry pressure: how long links wait before their download")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write(
    results: Sequence[ScenarioResult],
    machine: dict[str, str],
    out: Path,
    img_dir: Path,
    *,
    command: str,
    elapsed: float,
    notes: str = "",
) -> list[Path]:
    """Write ``out`` (markdown) and the plots; return the files written."""
    img_dir.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    images: dict[str, Path] = {}
    ratios_png = img_dir / "benchmarks-ratios.png"
    plot_ratios(results, ratios_png)
    if ratios_png.exists():
        images["ratios"] = ratios_png
    for result in results:
        if result.key == "scaling" and result.plot:
            images["scaling"] = img_dir / "benchmarks-scaling.png"
            plot_scaling(result, images["scaling"])
        if result.key == "expiry" and result.plot:
            images["expiry"] = img_dir / "benchmarks-expiry.png"
            plot_expiry(result, images["expiry"])
    written += images.values()

    def rel(path: Path) -> str:
        return Path(os.path.relpath(path, out.parent)).as_posix()

    parts = [
        "# Benchmarks",
        "",
        "The SDK's batch runner against what people write without it: a raw httpx loop "
        "under a semaphore, and naive fan-outs. "
        + (
            f"Generated by `nox -s bench`, i.e. `{command}`, in {elapsed / 60:.1f} min"
            if elapsed
            else f"Assembled by `{command}` from runs of `nox -s bench`'s scenarios, each "
            "section naming its run"
        )
        + "; do not edit by hand.",
        "",
        "How to read it: every comparison is a ratio measured in the same run, sides "
        "alternating (A B, then B A, ...), one ratio per round; the table gives the median "
        "of the rounds with the min and max. Absolute numbers (items/s, MiB) describe this "
        "machine and are context, not claims. The emulator (`freepik_bg.testing`) runs in a "
        "child process in fast mode (a cached 160x120 cutout, `ball-small.png`), so the "
        "client is what is measured; client CPU is `time.process_time()` of the client "
        "process.",
        "",
        "## Machine",
        "",
        _md_table(["", ""], [[k, v] for k, v in machine.items()]),
        "",
        "## Summary",
        "",
        _md_table(
            ["comparison", "median", "min", "max", "rounds", "target", "verdict"],
            summary_rows(results),
        ),
        "",
    ]
    if "ratios" in images:
        parts += [f"![ratios]({rel(images['ratios'])})", ""]
    for result in results:
        parts += [f"## {result.title}", "", result.description, ""]
        if result.header:
            parts += [_md_table(result.header, result.table), ""]
        if result.key in images:
            parts += [f"![{result.key}]({rel(images[result.key])})", ""]
        parts += [f"- {note}" for note in result.notes]
        if result.notes:
            parts.append("")
    if notes:
        parts += [notes.strip(), ""]
    out.write_text("\n".join(parts), encoding="utf-8")
    written.append(out)
    return written
