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

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

import anyio

__all__ = ["Intake"]


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

    def close(self) -> None:
        """Hand out nothing more, and stop waiting for an async input's next entry."""
        self.done = True
        for scope in self._pulls:
            scope.cancel()
