"""Build the lazy Dask frame of `freepik_bg.dask.remove_backgrounds`.

One task per input partition runs `run_partition`; it learns its first row's
global position from the lengths of the partitions before it (a chain of
small tasks, `per_partition`), so the ``index`` column numbers the whole input
from 0. The CLI's plan (`_dask_plan`) is built the same way.
"""

from __future__ import annotations

import operator
import os
import secrets
from pathlib import Path
from typing import Any

import dask.bag as db
import dask.dataframe as dd
from dask.delayed import Delayed, delayed

from ._batch import _URL_LIKE, Dest, make_sink
from ._config import BatchConfig
from ._dask_gate import Bucket, BudgetSpec
from ._dask_job import JOURNAL_DIR, JobSpec, empty_frame, run_partition
from ._dask_secret import share_key
from ._sinks import Sink
from ._urls import is_storage_url

__all__ = ["budget_spec", "build_frame", "partitions", "per_partition", "shared_dest"]

# Options the Dask integration decides itself (why, in the error below).
_NOT_OPTIONS = {
    "journal": "each partition keeps its own journal next to the outputs",
    "progress": "a callback cannot run on the workers; watch the Dask dashboard instead",
}


def partitions(urls: object, column: str | None) -> list[Delayed]:
    if isinstance(urls, dd.DataFrame):
        if column is None:
            raise TypeError("urls is a Dask DataFrame: name the column of URLs with column=...")
        if column not in urls.columns:
            found = ", ".join(map(str, urls.columns))
            raise KeyError(f"column {column!r} is not in the DataFrame (its columns: {found})")
        return list(urls[column].to_delayed())
    if column is not None:
        raise TypeError("column= is only for a Dask DataFrame of URLs")
    if isinstance(urls, dd.Series | db.Bag):
        return list(urls.to_delayed())
    raise TypeError(
        "urls must be a dask.bag.Bag of URL strings, a dask.dataframe.Series, or a "
        f"dask.dataframe.DataFrame with column=...; got {type(urls).__name__}"
    )


def shared_dest(dest: Dest) -> tuple[Dest, Path | None]:
    """``dest`` as the workers get it, and, for a directory, that directory; nothing is made."""
    if isinstance(dest, Sink):
        return dest, None  # pickled to every worker: it must reach shared storage itself
    if isinstance(dest, str) and (_URL_LIKE.match(dest) or not dest.strip()):
        if not is_storage_url(dest):
            # Raises the batch's own error for a URL that cannot hold outputs, or for an
            # empty dest (never the workers' current directory).
            make_sink(dest)
        return dest, None
    if not isinstance(dest, str | os.PathLike):
        raise TypeError("dest must be a directory path, a storage URL or a Sink")
    # Workers may have another working directory: send them the absolute path.
    folder = Path(dest).expanduser().absolute()
    return str(folder), folder


def _prepare_dest(dest: Dest, job: str) -> tuple[Dest, str | None]:
    """``dest`` as the workers get it, and the name of the marker proving it is shared."""
    shared, folder = shared_dest(dest)
    if folder is None:
        return shared, None
    marker = f"job-{job}"
    (folder / JOURNAL_DIR).mkdir(parents=True, exist_ok=True)
    (folder / JOURNAL_DIR / marker).write_text("freepik-bg dask job marker\n", encoding="utf-8")
    return shared, marker


def per_partition(task: Any, parts: list[Delayed], spec: object, name: str) -> list[Delayed]:
    """``task(part, offset, number, spec)`` on each partition, lazily: ``offset`` is the
    position of the partition's first row in the whole input, from the lengths of the
    partitions before it (a chain of small tasks)."""
    results: list[Delayed] = []
    offset: Any = 0
    for number, part in enumerate(parts):
        results.append(
            delayed(task, pure=False)(
                part, offset, number, spec, dask_key_name=f"freepik-bg-{name}-{number}"
            )
        )
        length = delayed(len, pure=True)(part, dask_key_name=f"freepik-bg-len-{name}-{number}")
        offset = delayed(operator.add, pure=True)(
            offset, length, dask_key_name=f"freepik-bg-offset-{name}-{number}"
        )
    return results


def budget_spec(job: str, rate: float | None, burst: int) -> BudgetSpec:
    """The shared budget of job ``job``: the CLI stops a run through it."""
    return BudgetSpec(f"freepik-bg-{job}", rate, burst)


def build_frame(
    urls: object,
    dest: Dest,
    *,
    column: str | None,
    rate: float | None,
    burst: int,
    api_key: str | None,
    base_url: str | None,
    options: dict[str, Any],
    job: str | None = None,
) -> dd.DataFrame:
    """The lazy result frame; see `freepik_bg.dask.remove_backgrounds`.

    ``job`` names the computation (random by default): its `budget_spec` reaches the
    shared budget, to stop every partition at its next POST.
    """
    for name, why in _NOT_OPTIONS.items():
        if name in options:
            raise TypeError(f"{name}= is not an option of freepik_bg.dask: {why}")
    for name in ("rate", "burst"):
        options.pop(name, None)
    Bucket(rate, burst)  # checks both before anything is built
    # The batch in each partition paces nothing itself (rate=None keeps its 429 pause):
    # the cluster's gate does, for every partition at once.
    config = BatchConfig.build(None, options).evolve(rate=None)
    parts = partitions(urls, column)
    job = job or secrets.token_hex(8)
    shared, marker = _prepare_dest(dest, job)
    spec = JobSpec(
        dest=shared,
        config=config,
        budget=budget_spec(job, rate, burst),
        key=share_key(api_key),
        base_url=base_url,
        marker=marker,
    )
    results = per_partition(run_partition, parts, spec, job)
    if not results:
        frame: dd.DataFrame = dd.from_pandas(empty_frame(), npartitions=1)
        return frame
    frame = dd.from_delayed(results, meta=empty_frame(), verify_meta=False)
    return frame  # noqa: RET504 - typed here: dask's own annotations are loose
