"""One 25 MP storage case in a fresh process: ``python -m benchmarks._storagechild URL KEY N DEST``.

Stores N distinct 25-megapixel cutouts into DEST (an object-storage URL) at concurrency 4
and prints one JSON line with the peak RSS (``ru_maxrss``).
"""

from __future__ import annotations

import sys
import time

import anyio

import freepik_bg
from benchmarks._common import child_report
from benchmarks.storage import BIG


async def _main(base_url: str, api_key: str, n: int, dest: str) -> dict[str, float]:
    entries = (f"{base_url}/samples/{BIG}?big={i}" for i in range(n))
    async with freepik_bg.AsyncClient(api_key=api_key, base_url=base_url) as client:
        report = await client.run_batch(entries, dest, concurrency=4, rate=None)
    return {"ok": len(report.stored), "failed": len(report.failed)}


def main(argv: list[str]) -> None:
    base_url, api_key, n, dest = argv[0], argv[1], int(argv[2]), argv[3]
    started = time.perf_counter()
    counts = anyio.run(_main, base_url, api_key, n, dest)
    child_report(counts, n, time.perf_counter() - started)


if __name__ == "__main__":
    main(sys.argv[1:])
