"""Background removal as a Dask operation, with one rate budget for the whole cluster.

Needs the ``dask`` extra: ``pip install 'freepik-bg[dask]'``. See ``docs/scale.md``.

Examples:
    >>> import dask.dataframe as dd
    >>> import freepik_bg.dask
    >>> def main() -> None:
    ...     products = dd.read_parquet("products.parquet")
    ...     results = freepik_bg.dask.remove_backgrounds(
    ...         products, "s3://bucket/cutouts/", column="image_url", rate=10
    ...     )
    ...     results.to_parquet("results.parquet")  # runs it, on the current distributed.Client
"""

from __future__ import annotations

import os
from typing import Any

import dask.dataframe as dd

from ._config import DEFAULT_BURST, DEFAULT_RATE
from ._dask_graph import build_frame
from ._sinks import Sink

__all__ = ["remove_backgrounds"]


def remove_backgrounds(
    urls: Any,
    dest: str | os.PathLike[str] | Sink,
    *,
    column: str | None = None,
    rate: float | None = DEFAULT_RATE,
    burst: int = DEFAULT_BURST,
    api_key: str | None = None,
    base_url: str | None = None,
    **options: Any,
) -> dd.DataFrame:
    """Remove the backgrounds of ``urls`` into ``dest``, lazily, as a Dask DataFrame.

    Each input partition runs as one ordinary batch of this SDK on a worker,
    and every partition paces its POSTs on one shared budget held by the
    Dask scheduler: ``rate`` and ``burst`` are for the whole computation, not
    per worker, and a 429 anywhere pauses every worker. Beside the budget,
    the partitions claim each image before paying for it, so an image in
    several partitions is POSTed once (see ``docs/scale.md``).

    Args:
        urls: a ``dask.bag.Bag`` of URL strings, a ``dask.dataframe.Series``,
            or a ``dask.dataframe.DataFrame`` with ``column=`` naming the URLs.
        dest: what every worker can reach: a shared directory or an object
            storage URL (``s3://bucket/prefix/``, ``gs://``, ``az://``). A
            directory a worker cannot see is a `ConfigurationError` there.
        column: the column of URLs when ``urls`` is a DataFrame.
        rate: POSTs per second for the whole computation; ``None`` for no limit.
        burst: POSTs that may go at once before ``rate`` applies.
        api_key: the key, handed to the workers outside the task graph; by
            default each worker reads ``$FREEPIK_API_KEY`` from its environment.
        base_url: the API's base URL (default: ``$FREEPIK_BASE_URL`` on the
            workers, then production).
        **options: the other fields of `BatchConfig` (``concurrency`` per
            partition, ``size``, ``overwrite``, ``fail_fast``, ...);
            ``journal`` and ``progress`` are managed here.

    Returns:
        A lazy frame with one row per input URL and
            the columns ``index`` (the URL's position in the input),
            ``image_url``, ``status`` (``"ok"``, ``"failed"`` or ``"skipped"``),
            ``location``, ``error`` (a message), ``error_type`` (the class of
            the error, as ``"BadRequestError"``), ``attempts`` and
            ``duplicate_of`` (the ``index`` of the item whose POST a repeat of
            an image shares, in any partition: each image is paid for once per
            computation), with fixed dtypes. ``.compute()`` runs it on the
            current ``distributed.Client``, else on Dask's local threaded
            scheduler.

    Raises:
        TypeError: ``urls`` is not one of the accepted kinds, or an option is unknown.
        KeyError: ``column`` is not a column of ``urls``.
        ConfigurationError: ``api_key`` is malformed, or ``dest`` is a URL
            that cannot hold outputs.

    Examples:
        >>> import dask.bag as db
        >>> import freepik_bg.dask
        >>> def main() -> None:
        ...     urls = db.from_sequence(["https://example.com/a.jpg"], npartitions=1)
        ...     # A folder that all workers can see; rate is for the whole cluster.
        ...     frame = freepik_bg.dask.remove_backgrounds(urls, "cutouts/", rate=10)
        ...     print(frame.compute()[["image_url", "status", "location"]])
    """
    return build_frame(
        urls,
        dest,
        column=column,
        rate=rate,
        burst=burst,
        api_key=api_key,
        base_url=base_url,
        options=dict(options),
    )
