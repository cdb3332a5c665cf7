"""A dry run: what a batch would do and spend, found without a single request to the API.

`plan_batch` reads and validates the whole input, drops duplicates, and asks
the journal and the destination what is already stored, exactly as the
runner would (`Renditions.assess`); the CLI's ``--dry-run`` prints its
`Plan`, and ``--confirm-over`` asks before spending more than a given number
of credits. Memory stays flat: counters, the first few reasons, and one
64-bit key per distinct URL for the duplicates.
"""

from __future__ import annotations

import math
import os
from array import array
from collections.abc import AsyncIterable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import attrs
from anyio.abc import ObjectReceiveStream

from ._batch import Dest, _entries, make_sink
from ._config import BatchConfig
from ._dedupe import duplicate_key
from ._errors import FreepikError
from ._file_targets import found_at
from ._input import BadLine, InputLine
from ._journal import Journal
from ._lifecycle import iterate
from ._output_stage import OutputStage
from ._renditions import Renditions
from ._sinks import DirectorySink, Sink, SinkItem
from ._staging_items import local_problem
from ._targets import Target, resolve

__all__ = ["Plan", "plan_batch", "plan_entries"]

_REASONS = 5
"""How many reasons for invalid items a plan keeps: enough to see the pattern."""


@attrs.frozen(slots=True)
class Plan:
    """What a batch would do, found without a request to the API (see `plan_batch`).

    Attributes:
        total: entries read from the input (URLs and unusable lines).
        to_submit: items that need a POST: each costs one credit.
        to_download: items paid for by an earlier run whose missing renditions
            are downloaded from links that still live: no credit.
        done: items whose every asked-for rendition is already stored.
        duplicates: later occurrences of a URL, which share the first one's POST.
        invalid: entries that would fail without a request (a bad line, a
            URL that is not http(s), an output holding another URL's cutout).
        invalid_reasons: the first few of those reasons, in input order.
        need_repay: items that would fail because only a new POST could store
            their missing renditions, and ``repay_missing_renditions`` is off.
        rate: the batch's POSTs per second (``None``: no limit).
        burst: POSTs that may go at once before ``rate`` applies.

    Examples:
        >>> plan = Plan(total=30, to_submit=25, done=5, rate=10.0, burst=5)
        >>> plan.credits, plan.estimated_seconds
        (25, 2.0)
    """

    total: int = 0
    to_submit: int = 0
    to_download: int = 0
    done: int = 0
    duplicates: int = 0
    invalid: int = 0
    invalid_reasons: tuple[str, ...] = ()
    need_repay: int = 0
    rate: float | None = None
    burst: int = 0

    @property
    def credits(self) -> int:
        """Credits the batch would spend: one per POST, retries of unbilled failures aside."""
        return self.to_submit

    @property
    def estimated_seconds(self) -> float | None:
        """The shortest time the POSTs take at ``rate`` (``None`` without a rate limit).

        A burst goes at once; the rest are paced. Downloads overlap with the
        POSTs, so this is a lower bound that a healthy service comes close to.
        """
        if self.rate is None:
            return None
        return max(0, self.to_submit - self.burst) / self.rate

    def summary(self) -> str:
        """A few human lines: what would be sent, what is done, what is wrong."""
        lines = [
            f"{self.total} item(s) read",
            f"{self.to_submit} to submit: {self.credits} credit(s)",
            f"{self.to_download} to download from links already paid for (no credit)",
            f"{self.done} already done",
            f"{self.duplicates} duplicate(s), sharing the first one's POST",
            f"{self.invalid} invalid",
        ]
        lines.extend(f"  {reason}" for reason in self.invalid_reasons)
        if self.invalid > len(self.invalid_reasons):
            lines.append(f"  ... and {self.invalid - len(self.invalid_reasons)} more")
        if self.need_repay:
            lines.append(
                f"{self.need_repay} need --repay-missing-renditions: their links expired, and "
                "storing the missing renditions costs one more credit each"
            )
        lines.append(f"estimated time: {self._time()}")
        return "\n".join(lines)

    def _time(self) -> str:
        seconds = self.estimated_seconds
        if seconds is None:
            return "unknown without a rate limit (set --rate)"
        return f"at least {_duration(seconds)} at {self.rate:g} POSTs/s"


def _duration(seconds: float) -> str:
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


@attrs.define(slots=True)
class _Tally:
    counts: dict[str, int] = attrs.field(
        factory=lambda: dict.fromkeys(
            ("total", "to_submit", "to_download", "done", "duplicates", "invalid", "need_repay"),
            0,
        )
    )
    reasons: list[tuple[int, str]] = attrs.field(factory=list)

    def invalid(self, index: int, reason: str) -> None:
        self.counts["invalid"] += 1
        # Checks run concurrently: keep the earliest ones, in input order.
        self.reasons.append((index, reason))
        self.reasons.sort()
        del self.reasons[_REASONS:]


async def plan_batch(
    urls: Iterable[Any] | AsyncIterable[Any],
    dest: Dest,
    config: BatchConfig | None = None,
    **options: Any,
) -> Plan:
    """What ``client.batch(urls, dest, config)`` would do, without a request to the API.

    Reads the whole input, validates each URL, drops duplicates and asks
    the journal (read, not locked) and the destination (``exists``, up to
    ``concurrency`` at once) what is already stored. Nothing is written.

    Examples:
        >>> async def main(urls: list[str]) -> None:
        ...     plan = await plan_batch(urls, "out/", journal="run.jsonl")
        ...     print(plan.summary())
        ...     if plan.credits > 1000:
        ...         raise SystemExit("too expensive")
    """
    if isinstance(urls, str | bytes):
        raise TypeError("urls must be an iterable of URLs, not a single string")
    config = BatchConfig.build(config, options)
    sink = make_sink(dest, overwrite=config.overwrite)
    if type(sink) is DirectorySink:
        sink = _ListedFolders(sink.directory, overwrite=sink.overwrite)
    return await plan_entries(urls, sink, config)


async def plan_entries(
    urls: Iterable[Any] | AsyncIterable[Any],
    sink: Sink,
    config: BatchConfig,
    *,
    first: int = 0,
    submit_keys: array[int] | None = None,
) -> Plan:
    """`plan_batch` into a sink made already.

    ``first`` numbers the first entry in the reasons (a Dask partition's row in the
    whole input). ``submit_keys``, if given, gets the duplicate key of each item to
    submit: a caller that plans in parts (Dask) finds with them the items that more
    than one part counts. 8 bytes each, and only when asked: a plain plan stays flat.
    """
    journal = config.journal
    if journal is not None and not isinstance(journal, Journal):
        journal = Journal(journal)
    output = OutputStage.create(config.transform_options)  # the names the outputs will have
    renditions = Renditions(sink, config.sizes, journal, overwrite=config.overwrite, output=output)
    tally = _Tally()
    seen: set[int] = set()
    sizes_key = ",".join(config.sizes)
    send, receive = anyio.create_memory_object_stream[tuple[int, Target, int, object]](
        config.concurrency
    )

    async def check(items: ObjectReceiveStream[tuple[int, Target, int, object]]) -> None:
        async with items:
            async for index, target, key, entry in items:
                if target.local is not None:
                    # As the batch would fail it, without a request: no stage, no such file.
                    problem = await anyio.to_thread.run_sync(
                        partial(local_problem, target.local, staging=config.stage is not None)
                    )
                    if problem is not None:
                        tally.invalid(index, f"{_where(index, entry)}: {problem}")
                        continue
                try:
                    plan = await renditions.assess(index, target)
                except FreepikError as exc:
                    tally.invalid(index, f"{_where(index, entry)}: {exc}")
                    continue
                if not plan.missing:
                    kind = "done"
                elif not plan.needs_post:
                    kind = "to_download"
                elif plan.paid_before and not config.repay_missing_renditions:
                    kind = "need_repay"
                else:
                    kind = "to_submit"
                    if submit_keys is not None:
                        submit_keys.append(key)
                tally.counts[kind] += 1

    async with anyio.create_task_group() as tg:
        for _ in range(config.concurrency):
            tg.start_soon(check, receive.clone())
        receive.close()
        async with send:
            index = first
            async for entry in iterate(_entries(urls)):
                tally.counts["total"] += 1
                target, reason = _checked(index, entry)
                if target is None:
                    tally.invalid(index, str(reason))
                elif (key := duplicate_key(target.identity, sizes_key)) in seen:
                    tally.counts["duplicates"] += 1
                else:
                    seen.add(key)
                    await send.send((index, target, key, entry))
                index += 1
    return Plan(
        **tally.counts,
        invalid_reasons=tuple(reason for _, reason in tally.reasons),
        rate=config.rate,
        burst=config.burst,
    )


def _checked(index: int, entry: object) -> tuple[Target | None, str | None]:
    """The entry's target, or why it has none (as the runner would fail it)."""
    if isinstance(entry, BadLine):
        return None, str(entry)
    try:
        return resolve(entry), None
    except FreepikError as exc:
        return None, f"{_where(index, entry)}: {exc}"


def _where(index: int, entry: object) -> str:
    """How a reason names its entry: by its line in a file, else by its index."""
    return f"line {entry.line}" if isinstance(entry, InputLine) else f"item {index}"


class _ListedFolders(DirectorySink):
    """A folder sink for plans: each output folder is listed once, so an output that is
    not there (most of them) costs a set lookup, not a worker-thread hop (~0.2 ms each,
    most of a 200,000-line dry run's minutes). A name that is there gets the full check.
    For plans only: a batch must see files made after the listing."""

    def __init__(self, directory: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        super().__init__(directory, overwrite=overwrite)
        self._listed: dict[Path, frozenset[str] | None] = {}

    async def _absent(self, item: SinkItem) -> bool:
        """Whether the listing of its folder says nothing is at ``item``'s name."""
        path = self.path_for(item)
        if len(os.fsencode(path.name)) > _PLAIN_NAME_BYTES:
            return False  # longer: let the check say
        if path.parent not in self._listed:
            listed = await anyio.to_thread.run_sync(_names_in, path.parent, self.directory)
            self._listed[path.parent] = listed
        names = self._listed[path.parent]
        return names is not None and path.name not in names

    async def exists(self, item: SinkItem) -> str | None:
        return None if await self._absent(item) else await super().exists(item)

    async def check_replaceable(self, item: SinkItem) -> None:
        if not await self._absent(item):
            await super().check_replaceable(item)


_PLAIN_NAME_BYTES = 240


def _names_in(folder: Path, top: Path) -> frozenset[str] | None:
    """The names in ``folder`` (below ``top``); ``None`` if a file or a broken link is in
    place of it (or of a folder above): the full check names it, as a batch refuses it."""
    try:
        return frozenset(os.listdir(folder))
    except FileNotFoundError:
        return frozenset() if found_at(folder, top) is None else None
    except NotADirectoryError:
        return None
