"""What people write without the SDK: a raw httpx loop, and naive fan-outs.

All of them do the same requests as the SDK's batch: a form POST to the API, then a
streamed GET of the ``high_resolution`` link, read in 256 KiB chunks and counted (not
kept), so the SDK's ``DiscardSink`` and these loops do the same I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

import anyio
import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from benchmarks._common import Outcome

ENDPOINT = "/v1/ai/beta/remove-background"
CHUNK = 256 * 1024


def make_http(concurrency: int, max_connections: int = 64) -> httpx.AsyncClient:
    """The pool both sides use: as many connections as the SDK's default."""
    size = max(concurrency, max_connections)
    return httpx.AsyncClient(
        timeout=httpx.Timeout(60.0, pool=None),
        limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
    )


class _Throttled(Exception):
    pass


async def _post(http: httpx.AsyncClient, base_url: str, api_key: str, url: str) -> httpx.Response:
    return await http.post(
        base_url + ENDPOINT,
        data={"image_url": url},
        headers={"x-freepik-api-key": api_key, "accept": "application/json"},
    )


async def _download(http: httpx.AsyncClient, link: str, out: Outcome) -> bool:
    async with http.stream("GET", link) as response:
        if response.status_code != 200:
            await response.aread()
            if response.status_code in (403, 404, 410):
                out.expired += 1
            return False
        async for chunk in response.aiter_bytes(CHUNK):
            out.bytes += len(chunk)
    return True


async def raw_httpx(
    base_url: str, api_key: str, urls: Iterable[str], *, concurrency: int = 32
) -> Outcome:
    """A hand-written loop: one task per URL under an ``anyio.Semaphore``, POST then GET."""
    out = Outcome()
    sem = anyio.Semaphore(concurrency)

    async def one(http: httpx.AsyncClient, url: str) -> None:
        try:
            response = await _post(http, base_url, api_key, url)
            out.posts += 1
            if response.status_code != 200:
                out.failed += 1
                return
            ok = await _download(http, response.json()["high_resolution"], out)
            out.ok += ok
            out.failed += not ok
        finally:
            sem.release()

    async with make_http(concurrency) as http, anyio.create_task_group() as tg:
        for url in urls:
            await sem.acquire()
            tg.start_soon(one, http, url)
    return out


async def raw_aiohttp(
    base_url: str, api_key: str, urls: Iterable[str], *, concurrency: int = 32
) -> Outcome:
    """The same loop on aiohttp (asyncio only): one session, a pool as large as httpx's."""
    import aiohttp

    out = Outcome()
    sem = anyio.Semaphore(concurrency)
    headers = {"x-freepik-api-key": api_key, "accept": "application/json"}

    async def one(session: aiohttp.ClientSession, url: str) -> None:
        try:
            async with session.post(
                base_url + ENDPOINT, data={"image_url": url}, headers=headers
            ) as response:
                out.posts += 1
                if response.status != 200:
                    out.failed += 1
                    return
                link = (await response.json())["high_resolution"]
            async with session.get(link) as download:
                if download.status != 200:
                    out.failed += 1
                    return
                async for chunk in download.content.iter_chunked(CHUNK):
                    out.bytes += len(chunk)
            out.ok += 1
        finally:
            sem.release()

    connector = aiohttp.TCPConnector(limit=max(concurrency, 64))
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        anyio.create_task_group() as tg,
    ):
        for url in urls:
            await sem.acquire()
            tg.start_soon(one, session, url)
    return out


async def naive_tenacity(
    base_url: str,
    api_key: str,
    urls: Iterable[str],
    *,
    concurrency: int = 32,
    max_attempts: int = 30,
    give_up_after: float = 120.0,
) -> Outcome:
    """A semaphore plus per-task tenacity retries on 429 (random exponential backoff).

    Each task retries on its own schedule, ignoring ``Retry-After``: the usual first try.
    """
    out = Outcome()
    sem = anyio.Semaphore(concurrency)

    async def one(http: httpx.AsyncClient, url: str) -> None:
        try:
            retrying = AsyncRetrying(
                sleep=anyio.sleep,
                retry=retry_if_exception(lambda e: isinstance(e, _Throttled)),
                wait=wait_random_exponential(multiplier=0.25, max=8),
                stop=stop_after_attempt(max_attempts) | stop_after_delay(give_up_after),
                reraise=True,
            )
            try:
                async for attempt in retrying:
                    with attempt:
                        response = await _post(http, base_url, api_key, url)
                        out.posts += 1
                        if response.status_code == 429:
                            out.throttled += 1
                            raise _Throttled
            except _Throttled:
                out.failed += 1
                return
            if response.status_code != 200:
                out.failed += 1
                return
            ok = await _download(http, response.json()["high_resolution"], out)
            out.ok += ok
            out.failed += not ok
        finally:
            sem.release()

    async with make_http(concurrency) as http, anyio.create_task_group() as tg:
        for url in urls:
            await sem.acquire()
            tg.start_soon(one, http, url)
    return out


async def gather_then_download(
    base_url: str, api_key: str, urls: Iterable[str], *, concurrency: int = 32
) -> Outcome:
    """Two phases: POST everything (under a semaphore), then download every link.

    ``gaps`` gets, per item, the seconds from its POST answer to the start of its GET.
    """
    out = Outcome()
    links: list[tuple[str, float]] = []

    async with make_http(concurrency) as http:
        sem = anyio.Semaphore(concurrency)

        async def post(url: str) -> None:
            async with sem:
                response = await _post(http, base_url, api_key, url)
                out.posts += 1
                if response.status_code == 200:
                    links.append((response.json()["high_resolution"], anyio.current_time()))
                else:
                    out.failed += 1

        async with anyio.create_task_group() as tg:
            for url in urls:
                tg.start_soon(post, url)

        async def get(link: str, answered_at: float) -> None:
            async with sem:
                out.gaps.append(anyio.current_time() - answered_at)
                ok = await _download(http, link, out)
                out.ok += ok
                out.failed += not ok

        async with anyio.create_task_group() as tg:
            for link, answered_at in links:
                tg.start_soon(get, link, answered_at)
    return out
