"""``python -m benchmarks``: run every scenario and write docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import attrs

from benchmarks import (
    cluster,
    expiry,
    journal,
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
from benchmarks._common import ScenarioResult, Settings, load_results, machine_info
from benchmarks._report import write

SCENARIOS = {
    "overhead": overhead.run,
    "memory": memory.run,
    "ratelimit": ratelimit.run,
    "expiry": expiry.run,
    "scaling": scaling.run,
    "storage": storage.run,
    "transforms": transforms.run,
    "startup": startup.run,
    "slowdisk": slowdisk.run,
    "transports": transports.run,
    "journal": journal.run,
    "dask": cluster.run,
}
ROOT = Path(__file__).resolve().parent.parent
NOTES = Path(__file__).resolve().parent / "analysis.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help="comma-separated scenarios to run"
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds per comparison (3)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument(
        "--img-dir", type=Path, default=None, help="where the plots go (default: beside --out)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also dump raw results here")
    parser.add_argument(
        "--merge",
        type=Path,
        action="append",
        default=[],
        help="also report the scenarios in this --json file of another run (the long memory "
        "run, say, on its own); the report says which came from where",
    )
    parser.add_argument(
        "--memory-ns",
        default=None,
        help="comma-separated list sizes of the memory scenario, the first the baseline "
        "(default 1000,100000,1000000; the largest takes ~30 min)",
    )
    args = parser.parse_args(argv)
    if args.img_dir is None:  # so that --out /tmp/x.md leaves docs/img alone too
        args.img_dir = args.out.parent / "img"

    settings = Settings.smoke() if args.smoke else Settings()
    if args.rounds is not None:
        settings = attrs.evolve(settings, rounds=args.rounds)
    if args.memory_ns is not None:
        sizes = tuple(int(n) for n in args.memory_ns.split(","))
        settings = attrs.evolve(settings, memory_ns=sizes)
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    # Retries are expected here (429s); the SDK's warnings would drown the progress lines.
    logging.getLogger("freepik_bg").setLevel(logging.ERROR)

    started = time.perf_counter()
    results: list[ScenarioResult] = []
    for name in names:
        print(f"[{time.perf_counter() - started:6.0f} s] {name} ...", flush=True)
        results.append(SCENARIOS[name](settings, lambda m: print(m, flush=True)))
    elapsed = time.perf_counter() - started if names else 0.0  # 0: only merged runs
    notes = NOTES.read_text(encoding="utf-8") if NOTES.exists() else ""
    command = " ".join(["python -m benchmarks", *(sys.argv[1:] if argv is None else argv)])
    for path in args.merge:
        merged = load_results(path)
        results += merged
        print(f"merged {', '.join(r.key for r in merged)} from {path}")
    order = list(SCENARIOS)
    results.sort(key=lambda r: order.index(r.key) if r.key in order else len(order))
    written = write(
        results,
        machine_info(),
        args.out,
        args.img_dir,
        command=command,
        elapsed=elapsed,
        notes=notes,
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps([attrs.asdict(r) for r in results], indent=1, default=str),
            encoding="utf-8",
        )
    for result in results:
        for c in result.comparisons:
            verdict = {True: "met", False: "MISSED", None: "-"}[c.met]
            s = c.summary
            print(f"{c.name}: {s.fmt('.3f')} target {c.target}: {verdict}")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
