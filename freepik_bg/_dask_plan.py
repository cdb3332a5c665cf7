"""The plan of a run on Dask: what ``--dry-run`` prints and ``--confirm-over`` asks about.

A Dask run is one ordinary batch per partition, each with its own journal
(``DEST/.freepik-bg-dask/partition-NNNNN-<digest>.jsonl``), so its plan is made
the same way: `plan_partition` runs the plain plan (`plan_entries`) on a worker
over one partition, with the journal that partition's run resumes from and the
same sink, and the client adds the counts up (`add_up`). Nothing is sent, and
nothing is created: no marker, no journal folder.

A partition's plan counts its own duplicates, as a batch does (a text INPUT comes
without its repeats: `_dask_repeats`). The run pays once for an image in several
partitions too (the partitions claim each image before paying, `_dask_claims`), so
`add_up` counts an item to submit that repeats one of another partition as a
duplicate, from the 64-bit keys each partition's plan returns.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import anyio
import attrs
import numpy as np
import pandas as pd
from dask.delayed import Delayed

from ._batch import Dest, make_sink
from ._config import BatchConfig
from ._dask_graph import partitions, per_partition, shared_dest
from ._dask_job import JOURNAL_DIR, partition_journal
from ._input import InputLine
from ._plan import _REASONS, Plan, plan_entries
from ._sinks import DirectorySink, SinkItem

__all__ = ["PartitionPlan", "PlanSpec", "add_up", "build_plan", "plan_partition"]

_COUNTS = ("total", "to_submit", "to_download", "done", "duplicates", "invalid", "need_repay")
"""The fields of `Plan` that add up across partitions."""


@attrs.frozen(slots=True)
class PlanSpec:
    """What a partition's plan needs: it travels in the task graph, so nothing secret."""

    dest: Dest
    config: BatchConfig
    journals: Path | None
    """The partitions' journal folder, for a directory dest."""


@attrs.frozen(slots=True)
class PartitionPlan:
    """One partition's plan, and the duplicate keys of its items to submit."""

    plan: Plan
    submit_keys: np.ndarray[Any, np.dtype[np.uint64]]


class _Probed(DirectorySink):
    """A folder sink for a partition's plan: an output that is not there (most of them)
    costs one ``lstat`` on the loop, not a worker-thread hop (~0.2 ms each). The plain
    plan lists the folder once instead, which here would be once per partition: a
    10-million-line run's 20,000 partitions would each list up to 10 million names.
    A name that is there gets the full check."""

    async def exists(self, item: SinkItem) -> str | None:
        try:
            os.lstat(self.path_for(item))
        except FileNotFoundError:
            return None
        except OSError:
            pass  # a name too long, a folder in the way, ...: the full check says which
        return await super().exists(item)


def plan_partition(
    entries: Iterable[Any], offset: int, number: int, spec: PlanSpec
) -> PartitionPlan:
    """The plan of the ``number``-th partition, whose first entry is row ``offset``.

    ``entries`` are what the run's partition gets (URLs, unusable lines), or the
    `InputLine` they came from, so that a reason names its line as the plain plan's does.
    """
    items = list(entries.tolist() if isinstance(entries, pd.Series) else entries)
    # The journal is named by the URLs the run's partition holds, not by their lines.
    urls = [item.url if isinstance(item, InputLine) else item for item in items]
    journal = None
    if spec.journals is not None and urls:
        journal = partition_journal(spec.journals, number, urls)
    config = spec.config.evolve(journal=journal)
    sink = make_sink(spec.dest, overwrite=config.overwrite)
    if type(sink) is DirectorySink:
        sink = _Probed(sink.directory, overwrite=sink.overwrite)
    keys: array[int] = array("Q")
    plan = anyio.run(lambda: plan_entries(items, sink, config, first=offset, submit_keys=keys))
    return PartitionPlan(plan, np.frombuffer(keys, dtype=np.uint64))


def build_plan(urls: object, dest: str, options: dict[str, Any], job: str) -> list[Delayed]:
    """The lazy plans of the partitions of ``urls`` (a Bag or a Series) into ``dest``,
    partitioned as the run of the same ``urls`` is; ``options`` as for the run."""
    shared, folder = shared_dest(dest)
    # As the run's partitions are configured (`build_frame`): no pacing of their own.
    config = BatchConfig.build(None, options).evolve(rate=None)
    spec = PlanSpec(shared, config, None if folder is None else folder / JOURNAL_DIR)
    return per_partition(plan_partition, partitions(urls, None), spec, f"plan-{job}")


def add_up(parts: Sequence[PartitionPlan], rate: float | None, burst: int) -> Plan:
    """The whole run's plan, paced at ``rate``: an item to submit that repeats one of
    another partition is a duplicate, as the run shares its POST."""
    counts = {name: sum(getattr(part.plan, name) for part in parts) for name in _COUNTS}
    keys = np.concatenate([part.submit_keys for part in parts]) if parts else np.empty(0)
    repeats = int(len(keys) - len(np.unique(keys)))
    counts["to_submit"] -= repeats
    counts["duplicates"] += repeats
    # The partitions are the input in order: their first reasons are the input's first.
    reasons = tuple(reason for part in parts for reason in part.plan.invalid_reasons)
    return Plan(**counts, invalid_reasons=reasons[:_REASONS], rate=rate, burst=burst)
