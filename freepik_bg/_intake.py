"""A batch's input, handed to its workers one entry at a time, in order, with its index.

The runner's workers pull from one shared `Intake` instead of an intake task
spawning a task per item: an item then costs no task, no wake-up of an intake
loop and no capacity-limiter borrower (~50 µs of CPU each on asyncio).

A plain iterable is pulled with ``next`` (it never waits, so no lock is
needed). An async iterable is pulled by one worker at a time (an async
generator refuses a second ``__anext__`` while one waits), inside a cancel
scope that `close` cancels, so that stopping a batch does not wait for input
that may never come.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import anyio

from ._ratelimit import AdaptiveConcurrency

__all__ = ["Crew", "Intake"]


class Intake:
    """Entries of ``urls`` with their indexes, pulled lazily; ``None`` once done or closed.

    Examples:
        >>> async def first(urls: list[str]) -> tuple[int, object] | None:
        ...     return await Intake(urls).next()
    """

    def __init__(self, urls: Iterable[Any] | AsyncIterable[Any]) -> None:
        self._sync: Iterator[Any] | None = None
        self._async: AsyncIterator[Any] | None = None
        if isinstance(urls, AsyncIterable):
            self._async = urls.__aiter__()
        else:
            self._sync = iter(urls)
        self._lock = anyio.Lock(fast_acquire=True)
        self._pulls: set[anyio.CancelScope] = set()
        self._index = 0
        self.done = False

    async def next(self) -> tuple[int, Any] | None:
        """The next entry and its index, or ``None`` if the input is used up or `close` came."""
        if self.done:
            return None
        try:
            entry = next(self._sync) if self._sync is not None else await self._next_async()
        except (StopIteration, StopAsyncIteration):
            self.done = True
            return None
        except BaseException:
            self.done = True
            raise
        # Numbered with no await since the pull: indexes follow the input's order.
        index = self._index
        self._index += 1
        return index, entry

    async def _next_async(self) -> Any:
        assert self._async is not None
        scope = anyio.CancelScope()
        self._pulls.add(scope)
        try:
            with scope:
                async with self._lock:
                    if not self.done:
                        return await self._async.__anext__()
        finally:
            self._pulls.discard(scope)
        raise StopAsyncIteration  # `close` came first, or cancelled the pull

    async def take(self, slots: AdaptiveConcurrency) -> tuple[int, Any] | None:
        """A slot of ``slots``, then the next entry; ``None`` (and no slot) once there is none."""
        if not await slots.acquire():
            return None
        try:
            pulled = await self.next()
        except BaseException:
            slots.release()
            raise
        if pulled is None:
            slots.release()
            slots.close()  # wake the waiting workers: there is nothing more to take
        return pulled

    def close(self) -> None:
        """Hand out nothing more, and stop waiting for an async input's next entry."""
        self.done = True
        for scope in self._pulls:
            scope.cancel()


class Crew:
    """How many workers a batch has: one always free for the next slot, up to ``limit``.

    So a concurrency of thousands costs tasks only as items fill it.

    Examples:
        >>> crew = Crew(limit=8)
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.workers = 0
        self._free = 0
        self._spawn: Callable[[], object] | None = None

    def start(self, spawn: Callable[[], object]) -> None:
        """Start the first worker; ``spawn`` starts one more."""
        self._spawn = spawn
        self._add()

    def _add(self) -> None:
        assert self._spawn is not None
        self.workers += 1
        self._free += 1
        self._spawn()

    def busy(self) -> None:
        """A worker took an item: start another if none is left free (and the limit allows)."""
        self._free -= 1
        if not self._free and self.workers < self.limit:
            self._add()

    def idle(self) -> None:
        """A worker is done with its item."""
        self._free += 1
