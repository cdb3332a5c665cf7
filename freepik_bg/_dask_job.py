"""One Dask partition: a batch of the SDK, paced by the cluster's budget, as a pandas frame.

This runs on a worker (or in a thread of the local scheduler). It does not
re-implement the runner: it opens an `AsyncClient` whose gate is the
cluster's `ClusterGate` and runs an ordinary batch, with a journal per
partition next to the outputs, then turns the `ItemResult` objects into rows.
The batch asks the computation's claims (`_dask_claims`) before it pays for an
image, so that an image in several partitions is paid for once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import anyio
import attrs
import pandas as pd

from ._batch import Dest, open_batch, raise_single
from ._config import BatchConfig
from ._dask_claims import connect
from ._dask_gate import BudgetSpec
from ._dask_secret import KeyRef
from ._errors import ConfigurationError
from ._lifecycle import BatchClient
from ._models import ItemResult
from ._sync import batch_client

if sys.version_info < (3, 11):  # pragma: no cover - anyio installs the backport there
    from exceptiongroup import BaseExceptionGroup

__all__ = [
    "COLUMNS",
    "JOURNAL_DIR",
    "JobSpec",
    "empty_frame",
    "partition_journal",
    "run_partition",
]

JOURNAL_DIR = ".freepik-bg-dask"
"""Under a directory ``dest``: one journal per partition, and the marker of each job."""

# Stable dtypes, the same for every partition (empty ones too), so that
# concatenating partitions and `.to_parquet()` never meet a mixed column.
COLUMNS: dict[str, str] = {
    "index": "int64",
    "image_url": "string",
    "status": "string",
    "location": "string",
    "error": "string",
    "error_type": "string",
    "attempts": "int64",
    "duplicate_of": "Int64",
}


def empty_frame() -> pd.DataFrame:
    """The result frame with no rows: Dask's ``meta``."""
    frame: pd.DataFrame = pd.DataFrame(
        {name: pd.Series([], dtype=dtype) for name, dtype in COLUMNS.items()}
    )
    return frame


@attrs.frozen(slots=True, kw_only=True)
class JobSpec:
    """Everything a partition needs, and nothing secret: it travels in the task graph."""

    dest: Dest
    config: BatchConfig
    budget: BudgetSpec
    key: KeyRef | None = None
    base_url: str | None = None
    marker: str | None = None
    """For a directory ``dest``: a file the caller wrote there, proof that it is shared."""

    def journal_dir(self) -> Path | None:
        """Where the partitions' journals go: next to the outputs, when they are files."""
        if self.marker is None or not isinstance(self.dest, str | os.PathLike):
            return None
        return Path(self.dest) / JOURNAL_DIR


def _check_shared(spec: JobSpec) -> None:
    folder = spec.journal_dir()
    if folder is None or spec.marker is None or (folder / spec.marker).is_file():
        return
    raise ConfigurationError(
        f"dest {folder.parent} is not the caller's directory on this worker "
        f"({socket.gethostname()}): every worker must see the same directory. On a cluster "
        "of several machines, use a shared filesystem or object storage (s3://, gs://, az://)."
    )


def partition_journal(folder: Path, number: int, urls: list[Any]) -> Path:
    """The journal in ``folder`` of the ``number``-th partition, holding ``urls``.

    Named by content as well as position: the same partition of a rerun resumes
    from it (and its plan reads it), and another job's partition of the same
    number never shares it.
    """
    digest = hashlib.sha256("\n".join(map(str, urls)).encode("utf-8", "surrogatepass"))
    return folder / f"partition-{number:05d}-{digest.hexdigest()[:16]}.jsonl"


def _journal_for(spec: JobSpec, number: int, urls: list[Any]) -> Path | None:
    folder = spec.journal_dir()
    return None if folder is None else partition_journal(folder, number, urls)


def _rows(items: Iterable[ItemResult], offset: int) -> pd.DataFrame:
    ordered = sorted(items, key=lambda item: item.index)
    data: dict[str, list[Any]] = {
        "index": [offset + item.index for item in ordered],
        "image_url": [item.image_url for item in ordered],
        "status": [item.status for item in ordered],
        "location": [item.location for item in ordered],
        "error": [None if item.error is None else str(item.error) for item in ordered],
        "error_type": [
            None if item.error is None else type(item.error).__name__ for item in ordered
        ],
        "attempts": [item.attempts for item in ordered],
        "duplicate_of": [
            None if item.duplicate_of is None else offset + item.duplicate_of for item in ordered
        ],
    }
    frame: pd.DataFrame = pd.DataFrame(
        {name: pd.Series(data[name], dtype=COLUMNS[name]) for name in COLUMNS}
    )
    return frame


async def _run_batch(
    urls: list[Any], spec: JobSpec, journal: Path | None, number: int, offset: int
) -> list[ItemResult]:
    config = spec.config.evolve(journal=journal)
    gate, claims = connect(spec.budget, number, offset, ",".join(config.sizes))
    api_key = spec.key.resolve() if spec.key is not None else None
    items: list[ItemResult] = []
    await claims.start()
    try:
        async with (
            batch_client(config, api_key=api_key, base_url=spec.base_url, gate=gate) as client,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(claims.send_due)
            batch = open_batch(cast(BatchClient, client), urls, spec.dest, config, claims)
            async with batch as results:
                told = False
                async for item in results:
                    items.append(item)
                    if results.stop_reason is not None and not told:
                        # What stops this batch (a refused key, nothing listening, ...)
                        # would fail every partition's items the same way: stop them all
                        # at their next POST.
                        told = True
                        await gate.stop(results.stop_reason)
            tg.cancel_scope.cancel()
    except BaseException as exc:
        # Never leave a claim held: the other partitions would wait for it forever.
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await claims.finish([])
        if isinstance(exc, BaseExceptionGroup):
            raise_single(exc)
        raise
    # Its last settlements; and the items it found stored that another partition stored.
    return await claims.finish(items)


def run_partition(urls: Iterable[Any], offset: int, number: int, spec: JobSpec) -> pd.DataFrame:
    """Run one partition's URLs (the ``number``-th, starting at row ``offset``); its rows."""
    items = list(urls.tolist() if isinstance(urls, pd.Series) else urls)
    if not items:
        return empty_frame()
    _check_shared(spec)
    journal = _journal_for(spec, number, items)
    if journal is not None:
        journal.parent.mkdir(parents=True, exist_ok=True)
    return _rows(anyio.run(_run_batch, items, spec, journal, number, offset), offset)
