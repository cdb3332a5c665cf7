"""One memory case in a fresh process: ``python -m benchmarks._memchild URL KEY N [C [BACKEND]]``.

Runs the SDK batch over N lazily generated URLs into a discarding sink, dropping each
result as it arrives, and prints one JSON line with the peak RSS (``ru_maxrss``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import anyio

import freepik_bg
from benchmarks._common import SAMPLE, DiscardSink, child_report
from freepik_bg._transport import HttpBackend


def _urls(base_url: str, n: int) -> Iterator[str]:
    sample = f"{base_url}/samples/{SAMPLE}"
    for i in range(n):
        yield f"{sample}?m={i}"


async def _main(
    base_url: str, api_key: str, n: int, concurrency: int, backend: HttpBackend
) -> dict[str, float]:
    ok = failed = 0
    sink = DiscardSink()
    async with (
        freepik_bg.AsyncClient(api_key=api_key, base_url=base_url, http_backend=backend) as client,
        client.batch(
            _urls(base_url, n), sink, concurrency=concurrency, rate=None, overwrite=True
        ) as results,
    ):
        async for item in results:
            if item.ok:
                ok += 1
            else:
                failed += 1
    return {"ok": ok, "failed": failed}


def main(argv: list[str]) -> None:
    base_url, api_key, n = argv[0], argv[1], int(argv[2])
    concurrency = int(argv[3]) if len(argv) > 3 else 32
    backend: HttpBackend = "aiohttp" if len(argv) > 4 and argv[4] == "aiohttp" else "httpx"
    started = time.perf_counter()
    counts = anyio.run(_main, base_url, api_key, n, concurrency, backend)
    child_report(counts, n, time.perf_counter() - started)


if __name__ == "__main__":
    main(sys.argv[1:])
