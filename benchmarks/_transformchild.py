"""One transform case in a fresh process: ``python -m benchmarks._transformchild PNG N``.

Feeds the same validated cutout to N items' store step at once, exactly as N
downloads finishing together would (256 KiB chunks, the download stream's size),
with ``--format jpeg --trim --margin 5%`` (flattened on white), into a sink that
keeps only a byte count. Prints one JSON line: peak RSS (``ru_maxrss``) before and
after, wall time, and how many were stored.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from benchmarks._common import DiscardSink
from freepik_bg import SinkItem, TransformOptions
from freepik_bg._output_stage import TRANSFORM_WORKERS, OutputStage

_CHUNK = 256 * 1024
OPTIONS = TransformOptions(output_format="jpeg", trim=True, margin="5%")


def _peak_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    if sys.platform == "darwin":  # pragma: no cover - bytes there
        peak //= 1024
    return peak / 1024


async def _download(data: bytes) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(data), _CHUNK):
        await anyio.lowlevel.checkpoint()
        yield bytes(view[start : start + _CHUNK])


async def _main(data: bytes, n: int) -> DiscardSink:
    stage = OutputStage.create(OPTIONS)
    sink = DiscardSink()

    async def one(index: int) -> None:
        item = SinkItem(
            index=index,
            image_url=f"https://x.test/{index}",
            name=f"{index}.jpg",
            size="high_resolution",
        )
        await stage.store(sink, item, _download(data))

    async with anyio.create_task_group() as tg:
        for index in range(n):
            tg.start_soon(one, index)
    return sink


def main(argv: list[str]) -> None:
    data = Path(argv[0]).read_bytes()
    n = int(argv[1])
    import PIL.Image  # noqa: F401 - loaded before the baseline, as a batch would have it

    baseline = _peak_mib()
    started = time.perf_counter()
    sink = anyio.run(_main, data, n)
    elapsed = time.perf_counter() - started
    result = {
        "n": n,
        "stored": sink.stored,
        "out_mib": sink.bytes / 2**20,
        "png_mib": len(data) / 2**20,
        "workers": TRANSFORM_WORKERS,
        "elapsed": elapsed,
        "baseline_rss_mib": baseline,
        "peak_rss_mib": _peak_mib(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
