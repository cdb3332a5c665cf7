"""The SDK side of every comparison: ``client.batch`` into a discarding sink."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import anyio
import httpx

import freepik_bg
from benchmarks._common import DiscardSink, Outcome
from freepik_bg import Sink


async def sdk_batch(
    base_url: str,
    api_key: str,
    urls: Iterable[str],
    *,
    concurrency: int = 32,
    rate: float | None = None,
    burst: int = 50,
    measure_gaps: bool = False,
    sink: Sink | None = None,
    http_backend: Literal["httpx", "aiohttp"] = "httpx",
    journal: str | freepik_bg.Journal | None = None,
) -> Outcome:
    """Run ``client.batch`` over ``urls`` into ``sink``; by default results are counted,
    not kept.

    With ``measure_gaps``, an httpx request hook stamps when each result link's GET is
    sent, and ``gaps`` gets, per item, the seconds from its POST answer
    (``ItemResult.posted_at``) to that moment.
    """
    out = Outcome()
    sent: dict[str, float] = {}

    async def on_request(request: httpx.Request) -> None:
        if request.method == "GET":
            sent.setdefault(str(request.url), anyio.current_time())

    http: httpx.AsyncClient | None = None
    if measure_gaps:
        size = max(64, concurrency)
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(60.0, pool=None),
            limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            follow_redirects=False,
            event_hooks={"request": [on_request]},
        )
    counter = DiscardSink()
    if sink is None:
        sink = counter
    try:
        async with (
            freepik_bg.AsyncClient(
                api_key=api_key,
                base_url=base_url,
                max_connections=max(64, concurrency),
                http_client=http,
                http_backend=http_backend,
            ) as client,
            client.batch(
                urls,
                sink,
                concurrency=concurrency,
                rate=rate,
                burst=burst,
                overwrite=True,
                journal=journal,
            ) as results,
        ):
            async for item in results:
                if item.ok:
                    out.ok += 1
                else:
                    out.failed += 1
                out.resubmits += item.resubmits
                if measure_gaps and item.cutout is not None and item.posted_at is not None:
                    started = sent.get(item.cutout.high_resolution)
                    if started is not None:
                        out.gaps.append(started - item.posted_at)
            out.posts = results.stats.posts
            out.throttled = results.stats.throttled
    finally:
        if http is not None:
            await http.aclose()
    out.bytes = counter.bytes
    return out
