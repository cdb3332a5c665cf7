"""Scenario 6, transforms: peak RSS of 32 concurrent 25-megapixel transforms (target < 2 GB).

The case runs in a fresh subprocess (``benchmarks._transformchild``) so its heap is its
own; peak RSS is that process's ``ru_maxrss``. The cutout is synthetic but shaped like a
real one: a 25 MP RGBA PNG whose subject (a noisy, shaded ellipse) covers about half of
the frame, the rest fully transparent.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._common import Comparison, Log, RunStats, ScenarioResult, Settings, quiet

LIMIT_MIB = 2048.0
ROOT = Path(__file__).resolve().parent.parent


def synthetic_cutout(megapixels: float) -> bytes:
    """A square RGBA PNG of about ``megapixels``: a textured ellipse on transparency."""
    import numpy as np
    from PIL import Image

    side = round((megapixels * 1_000_000) ** 0.5)
    rng = np.random.default_rng(7)
    y, x = np.ogrid[:side, :side]
    inside = ((x - side / 2) / (0.42 * side)) ** 2 + ((y - side / 2) / (0.36 * side)) ** 2 <= 1
    shade = (x * 160 // side + y * 60 // side).astype(np.uint8)
    rgba = np.zeros((side, side, 4), np.uint8)
    for channel, base in enumerate((60, 110, 170)):
        noise = rng.integers(0, 24, (side, side), dtype=np.uint8)
        rgba[..., channel] = np.where(inside, base // 2 + shade // 2 + noise, 0)
    rgba[..., 3] = np.where(inside, 255, 0)
    out = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(out, "PNG", compress_level=1)
    return out.getvalue()


def _python(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
        cwd=ROOT,
        check=True,
    )


def _write_cutout(png: Path, megapixels: float) -> None:
    # In a process of its own: a child's ru_maxrss starts from its parent's high-water
    # mark (the pages it was forked with), so this process must stay small.
    code = "import sys; from pathlib import Path; from benchmarks.transforms import "
    code += f"synthetic_cutout as s; Path(sys.argv[1]).write_bytes(s({megapixels!r}))"
    _python(["-c", code, str(png)])


def _child(png: Path, n: int) -> dict[str, float]:
    proc = _python(["-m", "benchmarks._transformchild", str(png), str(n)])
    data: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data


def run(settings: Settings, log: Log = quiet) -> ScenarioResult:
    megapixels, n = settings.transform_megapixels, settings.transform_n
    result = ScenarioResult(
        key="transforms",
        title="6. Transforms: peak RSS with concurrent 25 MP transforms",
        description=(
            f"{n} validated {megapixels:g} MP cutouts reach the store step at once (as {n} "
            "downloads finishing together would), each turned into a JPEG on white, trimmed "
            "with a 5% margin (`--format jpeg --trim --margin 5%`), into a sink that keeps "
            "nothing. Downloads wait for a worker in a spooled temporary file; transforms "
            "run in worker threads, one per core (at most 4). A fresh subprocess; peak RSS "
            "is its `ru_maxrss`, the baseline the same before the first transform."
        ),
    )
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "cutout.png"
        _write_cutout(png, megapixels)
        rounds = []
        for r in range(settings.rounds):
            data = _child(png, n)
            rounds.append(data)
            result.runs.append(
                RunStats("sdk", n, int(data["stored"]), data["elapsed"], 0.0, extra=data)
            )
            log(
                f"  transforms round {r}: peak {data['peak_rss_mib']:.0f} MiB "
                f"(baseline {data['baseline_rss_mib']:.0f}), {data['elapsed']:.1f} s"
            )
    peaks = tuple(d["peak_rss_mib"] for d in rounds)
    result.comparisons = [
        Comparison(
            f"transforms: peak RSS, {n} x {megapixels:g} MP at once, MiB",
            peaks,
            f"< {LIMIT_MIB:.0f} MiB",
            max(peaks) < LIMIT_MIB,
            note="an absolute value, not a ratio",
        )
    ]
    result.header = [
        "round",
        "cutout PNG MiB",
        "workers",
        "baseline RSS MiB",
        "peak RSS MiB",
        "wall s",
        "s per transform",
    ]
    for r, d in enumerate(rounds):
        result.table.append(
            [
                str(r),
                f"{d['png_mib']:.1f}",
                f"{d['workers']:.0f}",
                f"{d['baseline_rss_mib']:.0f}",
                f"{d['peak_rss_mib']:.0f}",
                f"{d['elapsed']:.1f}",
                f"{d['elapsed'] * d['workers'] / max(1, d['stored']):.2f}",
            ]
        )
    return result
