"""Scenario: object storage. The S3 sink against the directory sink, and RSS with 25 MP cutouts.

Both run against moto's S3 server in its own process on 127.0.0.1 (so that it does not
share the client's GIL), and the fast-mode emulator in another.

1. Throughput: the same batch (concurrency 32, ``rate=None``) into a local folder and into
   ``s3://bench/run-N/`` (create-only), alternating ABBA, as a same-run ratio S3 / folder.
2. Memory: peak RSS of a fresh client process storing 25-megapixel cutouts into S3, for a
   few items and for four times as many: streaming keeps it flat (ratio <= 1.25).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import httpx

from benchmarks._common import (
    Comparison,
    Log,
    RunStats,
    ScenarioResult,
    Settings,
    alternate,
    emulator,
    measure,
    quiet,
    run_child,
    summarize,
    urls,
    warm_up,
)

BIG = "bottle-diagonal-25mp.jpg"
_AWS = {
    "AWS_ACCESS_KEY_ID": "AKIAFREEPIKBGBENCH01",
    "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ALLOW_HTTP": "true",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server in a child process on 127.0.0.1, with the AWS_* variables set."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    saved = {name: os.environ.get(name) for name in [*_AWS, "AWS_ENDPOINT_URL"]}
    os.environ.update(_AWS, AWS_ENDPOINT_URL=endpoint)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        import boto3  # type: ignore[import-untyped]

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def _batch(base_url: str, api_key: str, entries: Iterator[str], dest: str) -> int:
    import freepik_bg

    async with freepik_bg.AsyncClient(api_key=api_key, base_url=base_url) as client:
        report = await client.run_batch(entries, dest, concurrency=32, rate=None)
    return len(report.stored)


def _rss_child(base_url: str, api_key: str, n: int, dest: str) -> dict[str, float]:
    return run_child("benchmarks._storagechild", [base_url, api_key, n, dest], 1800)


def run(settings: Settings, log: Log = quiet) -> ScenarioResult:
    n = settings.storage_n
    small, large = settings.storage_big_ns
    result = ScenarioResult(
        key="storage",
        title="Object storage: S3 sink against the directory sink; RSS with 25 MP cutouts",
        description=(
            f"SDK `run_batch` of {n:,} small cutouts at concurrency 32, `rate=None`, into a "
            "temporary folder and into `s3://bench/` on moto's S3 server (its own process, "
            f"127.0.0.1), alternating ABBA for {settings.rounds} round(s). Then peak RSS of a "
            f"fresh client process storing {small} and {large} 25-megapixel cutouts "
            "(`bottle-diagonal-25mp.jpg`) into S3 at concurrency 4."
        ),
    )
    with emulator() as emu, moto_s3(), tempfile.TemporaryDirectory() as tmp:
        warm_up(emu)
        by_label: dict[str, list[RunStats]] = {"folder": [], "s3": []}
        for r, label in alternate(settings.rounds, ["folder", "s3"]):
            dest = f"{tmp}/run-{r}" if label == "folder" else f"s3://bench/run-{r}/"

            async def go(dest: str = dest, r: int = r) -> int:
                return await _batch(emu.base_url, emu.api_key, urls(emu, n, f"s{r}"), dest)

            ok, wall, cpu = measure(go)
            stats = RunStats(label, n, ok, wall, cpu)
            by_label[label].append(stats)
            result.runs.append(stats)
            log(f"  storage round {r} {label}: {stats.throughput:.0f} items/s")
        # The first big-image run also pays for the emulator's one-off cutout of the sample.
        _rss_child(emu.base_url, emu.api_key, 1, "s3://bench/warm/")
        rss = {
            count: _rss_child(emu.base_url, emu.api_key, count, f"s3://bench/big-{count}/")
            for count in (small, large)
        }
        for count, data in rss.items():
            log(f"  storage 25 MP x{count}: peak RSS {data['peak_rss_mib']:.0f} MiB")
    ratios = tuple(
        s3.throughput / folder.throughput
        for folder, s3 in zip(by_label["folder"], by_label["s3"], strict=True)
    )
    flat = rss[large]["peak_rss_mib"] / rss[small]["peak_rss_mib"]
    result.comparisons = [
        Comparison(
            "storage: throughput S3 sink / directory sink (c=32)",
            ratios,
            "informational",
            None,
            note="moto is a Python server: real S3 is slower per request, but in parallel",
        ),
        Comparison(
            f"storage: peak RSS {large} / {small} x 25 MP cutouts into S3",
            (flat,),
            "<= 1.25",
            flat <= 1.25,
        ),
    ]
    result.header = ["case", "runs", "items/s median (min-max)", "CPU ms/item", "peak RSS MiB"]
    for label, runs in by_label.items():
        result.table.append(
            [
                f"{n:,} small cutouts into {label}",
                str(len(runs)),
                summarize([s.throughput for s in runs]).fmt(".0f"),
                summarize([s.cpu_per_item_ms for s in runs]).fmt(".2f"),
                "-",
            ]
        )
    for count, data in rss.items():
        result.table.append(
            [
                f"{count} x 25 MP into s3",
                "1",
                f"{data['ok'] / data['elapsed']:.2f}",
                "-",
                f"{data['peak_rss_mib']:.0f}",
            ]
        )
    return result
