"""The cluster-budget designs of issue #14, each as a gate a partition can connect to.

Every design runs the same partition function, `run_part`: one ordinary batch of the
SDK whose client paces on the design's gate. Only the gate differs:

- ``scheduler``: the library's own, `freepik_bg._dask_gate.BudgetSpec` (a bucket held in
  the scheduler, reached with ``Client.run_on_scheduler``);
- ``actor``: the same `Bucket`, held by a Dask Actor on one worker (`BucketActor`);
- ``static``: no coordination, each partition at ``rate / workers`` (a static split);
- ``naive``: no coordination, each partition at the whole ``rate``.

This module must be importable on the workers (they unpickle `Design` and
`BucketActor` by reference), so it imports nothing from the benchmark runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import attrs

from freepik_bg import BatchConfig
from freepik_bg._dask_gate import Bucket, BudgetSpec, ClusterGate
from freepik_bg._ratelimit import Gate, RateGate
from freepik_bg._sync import batch_client

__all__ = ["BucketActor", "Design", "run_part"]


class BucketActor:
    """The library's `Bucket`, as a Dask Actor: it lives on the worker that created it."""

    def __init__(self, rate: float | None, burst: int) -> None:
        self._bucket = Bucket(rate, burst)

    def reserve(self) -> float:
        return self._bucket.reserve()

    def pause(self, seconds: float) -> None:
        self._bucket.pause(seconds)

    def paused_for(self) -> float:
        return self._bucket.paused_for()

    def take(self) -> tuple[float, str | None]:
        return self._bucket.take()

    def stop(self, reason: str) -> None:
        self._bucket.stop(reason)

    def stopped(self) -> str | None:
        return self._bucket.stopped()


@attrs.frozen(slots=True)
class _ActorBudget:
    """`ClusterGate`'s budget through an Actor handle: one actor call per question."""

    actor: Any  # distributed.Actor of BucketActor

    def reserve(self) -> float:
        return float(self.actor.reserve().result())

    def pause(self, seconds: float) -> None:
        self.actor.pause(seconds).result()

    def paused_for(self) -> float:
        return float(self.actor.paused_for().result())

    # A stop (a refused key, Ctrl-C) reaches every partition through the budget too.
    def take(self) -> tuple[float, str | None]:
        delay, reason = self.actor.take().result()
        return float(delay), reason

    def stop(self, reason: str) -> None:
        self.actor.stop(reason).result()

    def stopped(self) -> str | None:
        reason: str | None = self.actor.stopped().result()
        return reason


@attrs.frozen(slots=True)
class Design:
    """One design's gate, as it travels to a partition: ``kind`` and what it needs."""

    kind: str  # "scheduler", "actor", "static" or "naive"
    rate: float
    burst: int
    name: str = ""
    """The scheduler bucket's name (``scheduler``)."""
    actor: Any = None
    """The Actor handle (``actor``)."""

    def connect(self) -> Gate:
        """The gate for a partition running here, on a worker."""
        if self.kind == "scheduler":
            return BudgetSpec(self.name, self.rate, self.burst).connect()
        if self.kind == "actor":
            return ClusterGate(_ActorBudget(self.actor), remote=True)
        if self.kind in ("static", "naive"):
            return RateGate(self.rate, self.burst)
        raise ValueError(f"unknown design {self.kind!r}")


async def _batch(urls: list[str], dest: str, design: Design, key: str, base_url: str) -> int:
    config = BatchConfig()
    gate = design.connect()
    async with batch_client(config, api_key=key, base_url=base_url, gate=gate) as client:
        report = await client.run_batch(urls, Path(dest), config)
    return len(report.stored) + len(report.skipped)


def run_part(urls: list[str], dest: str, design: Design, key: str, base_url: str) -> list[int]:
    """One partition: an ordinary batch paced by ``design``'s gate; ``[items stored]``."""
    if not urls:
        return [0]
    return [anyio.run(_batch, list(urls), dest, design, key, base_url)]
