"""An item's life in a batch, and what the runner needs from a client to live it.

`Phase` names where an item is (QUEUED -> POSTING -> PAID, then stored); a
`Flight` ties that phase to the item's cancel scope, shielded exactly while a
credit is owed; `BatchClient` is the small protocol the runner drives, which
`AsyncClient` satisfies through its public methods.
"""

from __future__ import annotations

import enum
import os
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Sequence,
)
from typing import Any, Protocol, TypeVar

import anyio
import attrs

from ._errors import FreepikError, SkippedError
from ._input import BadLine, InputLine
from ._models import Cutout, ItemResult, Size
from ._retries import RetryHook, RetryPolicy

__all__ = ["BatchClient", "Flight", "Phase", "iterate", "label"]

T = TypeVar("T")


class BatchClient(Protocol):
    """What the runner needs from a client: submit with hooks, download into a consumer."""

    @property
    def retry_policy(self) -> RetryPolicy:
        """The policy whose public knobs (``max_retry_after``) the runner reads."""
        ...

    @property
    def paces_posts(self) -> bool:
        """Whether the client paces POSTs itself (its ``rate``, or a shared gate)."""
        ...

    async def remove_background(
        self,
        image_url: str,
        *,
        on_retry: RetryHook | Sequence[RetryHook] = (),
        before_attempt: Callable[[], Awaitable[None]] | None = None,
    ) -> Cutout:
        """POST ``image_url``; ``before_attempt`` runs before every attempt."""
        ...

    async def download_with(
        self,
        cutout: Cutout,
        consumer: Callable[[AsyncIterator[bytes]], Awaitable[T]],
        *,
        size: Size = "high_resolution",
        on_retry: RetryHook | Sequence[RetryHook] = (),
    ) -> T:
        """Stream one rendition of ``cutout`` into ``consumer``."""
        ...


class Phase(enum.Enum):
    """Where an item is in its life; what stopping may do to it depends on this."""

    QUEUED = "queued"
    """Not sent (or between attempts): stopping drops it at once."""
    POSTING = "posting"
    """A POST is on the wire: it may be billed, so it is finished."""
    PAID = "paid"
    """The links arrived: the result is downloaded and stored."""


@attrs.define(slots=True, eq=False)
class Flight:
    """An item in flight: its phase, and the scope that is shielded while it is owed."""

    scope: anyio.CancelScope
    phase: Phase = Phase.QUEUED
    index: int = 0
    queued_at: float | None = None
    posted_at: float | None = None
    attempts: int = 0
    ambiguous: int = 0
    resubmits: int = 0

    def count(self, source: FreepikError | Cutout) -> None:
        """Add the requests that an answer (or a failure) took."""
        self.attempts += source.attempts
        self.ambiguous += source.ambiguous_retries

    def result(self, url: str, **fields: Any) -> ItemResult:
        """This item's result, with its counters and timestamps."""
        return ItemResult(
            index=self.index,
            image_url=url,
            attempts=self.attempts,
            ambiguous_retries=self.ambiguous,
            resubmits=self.resubmits,
            queued_at=self.queued_at,
            posted_at=self.posted_at,
            **fields,
        )

    def interruption(self) -> SkippedError:
        """Why the item ended when the batch was stopped in this phase."""
        if self.phase is Phase.QUEUED and self.attempts:
            return SkippedError("not retried: the batch was stopped between two attempts")
        if self.phase is Phase.QUEUED:
            return SkippedError("not attempted: the batch was stopped before it was sent")
        if self.phase is Phase.POSTING:
            # Its answer never came, so nobody has its links: say so, rather than
            # promise a free resume that would in fact pay again.
            return SkippedError(
                "interrupted while posting: its answer never arrived, so there are no links "
                "to resume from; if the service processed it, that credit is spent, and a "
                "resume sends it again"
            )
        return SkippedError(
            "interrupted while downloading: its links arrived and are in the journal (if the "
            "batch keeps one); a resume within 5 minutes of the answer downloads them "
            "without a new POST"
        )

    def result_when_interrupted(self, url: str) -> ItemResult:
        """This item's result when the batch stopped before it ended: a POST on the wire
        counts as an attempt (it may have been billed), though its answer never came."""
        if self.phase is Phase.POSTING:
            self.attempts += 1
        return self.result(url, ok=False, error=self.interruption())

    def enter(self, phase: Phase) -> None:
        self.phase = phase
        self.scope.shield = phase is not Phase.QUEUED


async def iterate(urls: Iterable[Any] | AsyncIterable[Any]) -> AsyncGenerator[Any, None]:
    """Any iterable or async iterable, as an async generator (pulled one item at a time)."""
    if isinstance(urls, AsyncIterable):
        async for url in urls:
            yield url
    else:
        for url in urls:
            yield url


def label(entry: object) -> str:
    """How an input entry is shown in results: its URL, or a bad line's text."""
    if isinstance(entry, str):
        return entry
    if isinstance(entry, InputLine):
        return entry.url
    if isinstance(entry, BadLine):
        return entry.text
    path = getattr(entry, "path", entry)  # a LocalImage from a folder input
    if isinstance(path, os.PathLike):
        return os.fspath(path)  # type: ignore[no-any-return]
    return repr(entry)
