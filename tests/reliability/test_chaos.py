"""Chaos: thousands of items through the emulator and a fault-injecting TCP proxy.

With only transient faults every item succeeds; with permanent ones every item
ends as a typed error. Either way: no partial or corrupt output, no temp file
left, one output per item, POSTs within budget, and the key in no error.
"""

from __future__ import annotations

import collections
import hashlib
from pathlib import Path

import anyio
import pytest

import freepik_bg
from freepik_bg.testing import Emulator, Fault, FaultRule

from ._proxy import FaultProxy, FaultSchedule
from ._servers import OriginServer
from .conftest import KEY, assert_no_key, assert_outputs_valid, error_texts

pytestmark = pytest.mark.anyio

ITEMS = 2000
CHAOS_RETRIES = 12  # per-attempt fault odds ~0.35: 13 failures in a row are ~1e-6
SAMPLE = "ball-small.png"


def transient_rules(other_origin: str) -> list[FaultRule]:
    """Every transient fault kind, ~28% of POSTs and ~30% of downloads."""
    post = [
        (Fault.http_error(500), 0.04),
        (Fault.http_error(502), 0.03),
        (Fault.http_error(503), 0.04),
        (Fault.http_error(504), 0.03),
        (Fault.http_error(429, retry_after=1), 0.04),
        (Fault.reset(), 0.02),
        (Fault.reset(after_processing=True), 0.02),
        (Fault.stall(3.0), 0.01),
        (Fault.truncate(0.5), 0.02),
        (Fault.huge_content_length(), 0.01),
        (Fault.trickle(chunk_size=64, interval=0.001), 0.01),
    ]
    download = [
        (Fault.http_error(500), 0.03),
        (Fault.http_error(503), 0.03),
        (Fault.http_error(429, retry_after=1), 0.03),
        (Fault.reset(), 0.03),
        (Fault.stall(3.0), 0.01),
        (Fault.truncate(0.3), 0.03),
        (Fault.not_png(), 0.03),
        (Fault.redirect(), 0.02),
        (Fault.redirect(f"{other_origin}/moved/high.png"), 0.02),
        (Fault.redirect_loop(), 0.02),
        (Fault.trickle(chunk_size=8192, interval=0.001), 0.02),
    ]
    return [FaultRule("post", f, p) for f, p in post] + [
        FaultRule("download", f, p) for f, p in download
    ]


def permanent_rules() -> list[FaultRule]:
    """Every POST or download meets a fault no retry can fix."""
    post = [
        (Fault.malformed_json(), 0.2),
        (Fault.missing_fields(), 0.1),
        (Fault.missing_fields("preview", "original"), 0.1),
        # (A 404 from the endpoint itself stops the batch: see test_bad_inputs.)
        (Fault.http_error(400, message="Bad Request"), 0.2),
        (Fault.http_error(501, message="Not Implemented"), 0.1),
        (Fault.redirect(), 0.1),  # a POST redirect is refused, never followed
    ]
    download = [(Fault.huge_content_length(), 0.5), (Fault.http_error(404), 0.5)]
    return [FaultRule("post", f, p) for f, p in post] + [
        FaultRule("download", f, p) for f, p in download
    ]


PERMANENT_ERRORS = (
    freepik_bg.APIResponseValidationError,
    freepik_bg.BadRequestError,
    freepik_bg.NotFoundError,
    freepik_bg.InternalServerError,
    freepik_bg.InvalidImageError,
    freepik_bg.LinkExpiredError,
    freepik_bg.APIStatusError,  # the 307 answered to a POST
)


async def run_chaos(
    tmp_path: Path,
    emu: Emulator,
    proxy: FaultProxy,
    port: int,
    items: int,
) -> tuple[freepik_bg.BatchReport, list[freepik_bg.RetryEvent]]:
    events: list[freepik_bg.RetryEvent] = []
    urls = [f"http://127.0.0.1:{port}/samples/{SAMPLE}?i={i}" for i in range(items)]
    async with freepik_bg.AsyncClient(
        KEY,
        base_url=f"http://127.0.0.1:{port}",
        timeout=1.0,
        max_retries=CHAOS_RETRIES,
        on_retry=events.append,
    ) as client:
        # A guard against a hang, not a pace: ~25 s on a quiet box, over 50 at load 5 and more.
        with anyio.fail_after(120):
            report = await client.run_batch(
                urls, tmp_path / "out", concurrency=48, rate=None, journal=tmp_path / "j.jsonl"
            )
    assert report.total == items
    assert sorted(r.index for r in (*report.stored, *report.failed)) == list(range(items))
    return report, events


async def test_chaos_transient_faults_all_succeed(tmp_path: Path) -> None:
    async with Emulator(api_key=KEY, fast=True, process=True, seed=7) as emu:
        # The cutout every item must end up with, fetched before the chaos starts.
        async with freepik_bg.AsyncClient(KEY, base_url=emu.base_url) as direct:
            expected = await direct.download(await direct.remove_background(emu.image_url(SAMPLE)))
        with OriginServer(expected) as other:
            emu.configure(fault_rules=transient_rules(other.base_url))
            emu.reset_stats()
            schedule = FaultSchedule(
                11, {"reset": 0.12, "close": 0.12, "stall": 0.02}, max_after=15_000
            )
            proxy = FaultProxy(emu.port, schedule)
            async with anyio.create_task_group() as tg:
                port = await tg.start(proxy.serve)
                report, events = await run_chaos(tmp_path, emu, proxy, port, ITEMS)
                tg.cancel_scope.cancel()
            stats = emu.stats
            other_requests = other.requests

    assert not report.failed, collections.Counter(type(r.error).__name__ for r in report.failed)
    assert len(report.stored) == ITEMS

    # Faults of every kind, at least a quarter of all requests.
    injected = sum(stats.faults_injected.values()) + sum(proxy.strikes.values())
    served = stats.count("post") + stats.count("download")
    assert injected / served >= 0.25, (injected, served, stats.faults_injected, proxy.strikes)
    kinds = {key.split(":")[1] for key in stats.faults_injected}
    assert kinds >= {
        "status",
        "reset",
        "stall",
        "truncate",
        "huge_content_length",
        "trickle",
        "not_png",
        "redirect",
        "redirect_loop",
    }, stats.faults_injected
    assert {"reset", "close", "stall"} <= set(proxy.strikes), proxy.strikes
    assert other_requests, "no download was redirected to the other origin"

    # Billing bound, and one complete, correct file per item.
    assert stats.posts <= ITEMS * (1 + CHAOS_RETRIES)
    assert stats.credits_charged >= ITEMS
    outputs = assert_outputs_valid(tmp_path / "out")
    assert len(outputs) == ITEMS
    assert len({r.location for r in report.stored}) == ITEMS
    digest = hashlib.sha256(expected).hexdigest()
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() == digest for p in outputs)

    # The key: never to the other origin, never in an error.
    assert not any("x-freepik-api-key" in r.headers for r in other_requests)
    assert {e.error.__class__ for e in events} >= {
        freepik_bg.InternalServerError,
        freepik_bg.RateLimitError,
        freepik_bg.APIConnectionError,
        freepik_bg.APITimeoutError,
        freepik_bg.InvalidImageError,
        freepik_bg.RedirectError,
    }
    assert assert_no_key(text for e in events for text in (repr(e), *error_texts(e.error)))
    assert KEY not in (tmp_path / "j.jsonl").read_text()


async def test_chaos_permanent_faults_end_typed(tmp_path: Path) -> None:
    items = 500
    async with Emulator(
        api_key=KEY, fast=True, process=True, seed=8, fault_rules=permanent_rules()
    ) as emu:
        schedule = FaultSchedule(12, {"reset": 0.1, "close": 0.1})
        proxy = FaultProxy(emu.port, schedule)
        async with anyio.create_task_group() as tg:
            port = await tg.start(proxy.serve)
            report, events = await run_chaos(tmp_path, emu, proxy, port, items)
            tg.cancel_scope.cancel()
        stats = emu.stats

    assert not report.stored
    errors = [r.error for r in report.failed]
    assert all(isinstance(e, PERMANENT_ERRORS) for e in errors), {type(e).__name__ for e in errors}
    by_type = collections.Counter(type(e).__name__ for e in errors)
    assert set(by_type) >= {
        "APIResponseValidationError",
        "BadRequestError",
        "InternalServerError",
        "APIStatusError",
        "InvalidImageError",
        "LinkExpiredError",
    }, by_type
    # Permanent POST failures are never retried; a lost link is resubmitted once.
    assert stats.posts <= items * 2 * (1 + CHAOS_RETRIES)
    assert not assert_outputs_valid(tmp_path / "out") if (tmp_path / "out").exists() else True
    assert_no_key(text for e in errors if e is not None for text in error_texts(e))
    assert_no_key(text for e in events for text in error_texts(e.error))
