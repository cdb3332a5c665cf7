"""The work behind a POST: fetching the source, and image work on worker threads.

Holds what outlives a request: the HTTP client that fetches ``image_url``, the thread
pool for CPU-bound image work, generated samples, and the ``fast`` mode's cache.
Pillow and numpy are imported lazily, on the first image actually processed.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import hashlib
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import anyio
import httpx

from freepik_bg.testing._config import EmulatorConfig
from freepik_bg.testing._exchange import Reject

if TYPE_CHECKING:
    from freepik_bg.testing._matte import MattedImage

__all__ = ["ImageWork"]

T = TypeVar("T")

_FAST_CACHE_SIZE = 32


class ImageWork:
    """Source fetches and image work for one app; safe to share between its requests."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._samples: dict[str, bytes] = {}
        self._sample_locks: collections.defaultdict[str, threading.Lock] = collections.defaultdict(
            threading.Lock
        )
        self._fast_cache: collections.OrderedDict[str, MattedImage] = collections.OrderedDict()
        self._fast_pending: dict[str, anyio.Event] = {}

    def sample_bytes(self, name: str) -> bytes:
        """The bytes of sample ``name``, generated on first use and then cached."""
        with self._sample_locks[name]:
            data = self._samples.get(name)
            if data is None:
                from freepik_bg.testing._render import generate_sample

                data = self._samples[name] = generate_sample(name)
            return data

    async def fetch_source(
        self, image_url: str, cfg: EmulatorConfig, *, own_sample: str | None = None
    ) -> bytes:
        """The bytes at ``image_url``, or those of ``own_sample`` without a round trip.

        Raises Reject (400) when the fetch fails or the source is over the size limit.
        """
        too_large = Reject(
            400,
            {"message": f"Image too large: the limit is {cfg.max_source_bytes // 2**20} MB"},
        )
        failed = Reject(400, {"message": "Failed to download the image"})
        if own_sample is not None:
            data = await self.run_cpu(functools.partial(self.sample_bytes, own_sample))
            if len(data) > cfg.max_source_bytes:
                raise too_large
            return data
        if self._client is None:
            # trust_env=False: a developer's proxy settings must not reroute loopback.
            self._client = httpx.AsyncClient(
                follow_redirects=True,
                max_redirects=5,
                trust_env=False,
                headers={"user-agent": "freepik-bg-emulator", "accept": "image/*,*/*;q=0.5"},
            )
        try:
            with anyio.fail_after(cfg.fetch_timeout):
                async with self._client.stream(
                    "GET", image_url, timeout=cfg.fetch_timeout
                ) as response:
                    if not response.is_success:
                        raise failed
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > cfg.max_source_bytes:
                        raise too_large
                    buffer = bytearray()
                    async for piece in response.aiter_bytes():
                        buffer += piece
                        if len(buffer) > cfg.max_source_bytes:
                            raise too_large  # leaving the block closes the response
                    return bytes(buffer)
        except (httpx.HTTPError, httpx.InvalidURL, TimeoutError):
            raise failed from None

    async def matte(self, data: bytes, cfg: EmulatorConfig) -> MattedImage:
        """Remove the background of ``data``; raises Reject (400) if it does not decode.

        In ``fast`` mode one result per distinct source is computed, then reused.
        """
        from freepik_bg.testing._matte import ImageDecodeError, remove_background

        make = functools.partial(remove_background, data, compress_level=cfg.png_compress_level)
        if not cfg.fast:
            try:
                return await self.run_cpu(make)
            except ImageDecodeError as exc:
                raise Reject(400, {"message": f"Invalid image: {exc}"}) from None

        digest = hashlib.sha256(data).hexdigest()
        while True:
            cached = self._fast_cache.get(digest)
            if cached is not None:
                self._fast_cache.move_to_end(digest)
                return cached
            pending = self._fast_pending.get(digest)
            if pending is None:
                break
            await pending.wait()  # another request is computing this very result
        done = self._fast_pending[digest] = anyio.Event()
        try:
            matted = await self.run_cpu(make)
        except ImageDecodeError as exc:
            raise Reject(400, {"message": f"Invalid image: {exc}"}) from None
        finally:
            del self._fast_pending[digest]
            done.set()
        self._fast_cache[digest] = matted
        while len(self._fast_cache) > _FAST_CACHE_SIZE:
            self._fast_cache.popitem(last=False)
        return matted

    async def run_cpu(self, func: Callable[[], T]) -> T:
        """Run image work in a worker thread, so the loop keeps serving other requests."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # served by a trio-based server
            return await anyio.to_thread.run_sync(func)
        with self._executor_lock:
            if self._executor is None:
                # Our own pool, rather than anyio's, so that shutdown can join its threads.
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=max(2, os.cpu_count() or 2),
                    thread_name_prefix="freepik-emulator-cpu",
                )
            executor = self._executor
        return await loop.run_in_executor(executor, func)

    async def aclose(self) -> None:
        """Release the fetch client; call on the loop that served requests."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def close_executor(self) -> None:
        """Wait for running image work and stop the worker threads."""
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
