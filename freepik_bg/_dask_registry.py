"""Which partition of a Dask computation pays for each image: a registry of claims.

Each partition of a computation is one batch, which shares a POST among the
repeats of an image inside itself only. So before a partition pays for an image
(a 64-bit key of its `url_identity`), it claims it here. The first claim wins;
a claim on an image that another partition holds waits for it to end, then
shares its outcome, as a duplicate in a batch does; a claim on an image already
stored in this computation is a duplicate at once. The registry lives beside the
computation's rate budget (`_dask_gate.Bucket`): in the scheduler's process on a
cluster, in this process on Dask's local threaded scheduler.

A claim is held by one attempt of one partition (`start` names it). A worker
that dies, or a partition Dask runs again, must not hold a claim forever: a
claim is void once another attempt of its partition starts, once its worker
has left the cluster, or once its attempt ends (`finish`). The next claimant of
a void claim takes it over.

Memory: the claims in flight (as many as the items in flight), the failures
with their errors (rare, as a batch keeps them), and, for every image stored,
its key and the index of the item that stored it, unboxed (`U64Map`, 24-48
bytes an image: 256 MiB for 10 million, where a dict would hold over 1 GB).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from ._u64map import U64Map

__all__ = ["DONE", "FAILED", "HELD", "MINE", "Answer", "ClaimRegistry", "Settlement"]

MINE, HELD, DONE, FAILED = "mine", "held", "done", "failed"

Answer = tuple[Any, ...]
"""``(MINE,)``, ``(HELD, index)``, ``(DONE, index)`` or ``(FAILED, index, error)``:
``index`` is the global input position of the item that holds, stored or failed it."""

Settlement = tuple[int, int, str, int, Any]
"""``(key, partition, attempt, index, outcome)``: how a claimed item ended; ``outcome``
is True (stored), ``None`` (interrupted before it ended) or its error."""


@attrs.define(slots=True, eq=False)
class _Holder:
    partition: int
    attempt: str
    index: int
    waiters: list[Callable[[], None]] = attrs.field(factory=list)


class ClaimRegistry:
    """The claims of one computation (see the module's docstring); thread-safe.

    Examples:
        >>> claims = ClaimRegistry()
        >>> claims.start(0, "a", None)
        >>> claims.start(1, "b", None)
        >>> claims.claim(7, 0, "a", 3), claims.claim(7, 1, "b", 12)
        (('mine',), ('held', 3))
        >>> claims.settle([(7, 0, "a", 3, True)])
        >>> claims.claim(7, 1, "b", 12)
        ('done', 3)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, _Holder] = {}
        self._stored = U64Map()
        self._failed: dict[int, tuple[int, Any]] = {}
        # Partition -> its current attempt and the worker it runs on (None: this process).
        self._attempts: dict[int, tuple[str, str | None]] = {}

    def start(self, partition: int, attempt: str, worker: str | None) -> None:
        """``attempt`` of ``partition`` starts on ``worker``: earlier attempts' claims are void."""
        with self._lock:
            self._attempts[partition] = (attempt, worker)
            wake = self._drop(lambda held: held.partition == partition and held.attempt != attempt)
        _wake(wake)

    def claim(
        self,
        key: int,
        partition: int,
        attempt: str,
        index: int,
        alive: Callable[[str], bool] | None = None,
    ) -> Answer:
        """Claim ``key`` for the item at ``index``; ``alive(worker)`` says whether a
        worker is still in the cluster (by default every one is)."""
        with self._lock:
            stored = self._stored.get(key)
            # The item itself, again (its partition rerun, or the frame computed twice):
            # it does the work again, as it would without claims.
            if stored is not None and stored != index:
                return (DONE, stored)
            failed = self._failed.get(key)
            if failed is not None and failed[0] != index:
                return (FAILED, *failed)
            holder = self._held.get(key)
            if holder is not None and holder.index != index and self._live(holder, alive):
                return (HELD, holder.index)
            self._held[key] = _Holder(partition, attempt, index)
        if holder is not None:
            _wake(holder.waiters)  # a void claim taken over: they wait for the new holder
        return (MINE,)

    def _live(self, holder: _Holder, alive: Callable[[str], bool] | None) -> bool:
        attempt, worker = self._attempts.get(holder.partition, (None, None))
        if attempt != holder.attempt:
            return False
        return worker is None or alive is None or alive(worker)

    def watch(self, key: int, index: int, wake: Callable[[], None]) -> bool:
        """Call ``wake`` once the item at ``index`` no longer holds ``key``; False (and no
        call) if it holds it no more already."""
        with self._lock:
            holder = self._held.get(key)
            if holder is None or holder.index != index:
                return False
            holder.waiters.append(wake)
            return True

    def settle(self, settled: Iterable[Settlement]) -> None:
        """Record how claimed items ended, and wake what waited for them."""
        wake: list[Callable[[], None]] = []
        with self._lock:
            for key, _partition, attempt, index, outcome in settled:
                holder = self._held.get(key)
                if holder is None or holder.attempt != attempt or holder.index != index:
                    if outcome is True and holder is None and self._stored.get(key) is None:
                        self._stored[key] = index  # a void claim's item stored it after all
                    continue
                del self._held[key]
                if outcome is True:
                    self._stored[key] = index
                    self._failed.pop(key, None)
                elif outcome is not None:
                    self._failed[key] = (index, outcome)
                wake.extend(holder.waiters)
        _wake(wake)

    def finish(
        self, partition: int, attempt: str, settled: Iterable[Settlement], asked: Sequence[int]
    ) -> list[int]:
        """``attempt`` of ``partition`` ended: its last settlements, and its claims left void.

        ``asked``: keys of items it skipped, stored already: for each, the index of
        the item of this computation that stored it (or holds it), else -1.
        """
        self.settle(settled)
        with self._lock:
            wake = self._drop(lambda held: held.partition == partition and held.attempt == attempt)
            found = []
            for key in asked:
                stored, holder = self._stored.get(key), self._held.get(key)
                if stored is None:
                    stored = -1 if holder is None else holder.index
                found.append(stored)
        _wake(wake)
        return found

    def _drop(self, void: Callable[[_Holder], bool]) -> list[Callable[[], None]]:
        """Drop the claims ``void`` says are void; their waiters, to wake (lock held)."""
        wake: list[Callable[[], None]] = []
        for key in [key for key, held in self._held.items() if void(held)]:
            wake.extend(self._held.pop(key).waiters)
        return wake

    def snapshot(self) -> dict[str, Any]:
        """Counts, for tests and debugging: claims held (and by which partitions, on which
        workers), waiters, images stored and failed, and the bytes of the stored table."""
        with self._lock:
            holders = list(self._held.values())
            return {
                "held": len(holders),
                "holders": sorted({held.partition for held in self._held.values()}),
                "workers": sorted(
                    {self._attempts.get(held.partition, ("", ""))[1] or "" for held in holders}
                ),
                "waiters": sum(len(held.waiters) for held in self._held.values()),
                "stored": len(self._stored),
                "failed": len(self._failed),
                "nbytes": self._stored.nbytes,
            }


def _wake(callbacks: Iterable[Callable[[], None]]) -> None:
    for callback in callbacks:
        callback()
