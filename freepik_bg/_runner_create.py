"""A batch's runner, built from its config: the journal opened, the pacing chosen."""

from __future__ import annotations

from ._breaker import AMBIGUOUS_RUN_LIMIT, Breaker
from ._claims import Claims
from ._config import BatchConfig
from ._journal import Journal
from ._lifecycle import BatchClient
from ._models import BatchStats
from ._output_stage import OutputStage
from ._ratelimit import SLOW_START, AdaptiveConcurrency, RateGate
from ._renditions import Renditions
from ._runner import Runner
from ._sinks import Sink
from ._staging_items import Staging

__all__ = ["create_runner"]


def create_runner(
    client: BatchClient, sink: Sink, config: BatchConfig, claims: Claims | None = None
) -> Runner:
    """A runner for ``config``; it opens (and locks) the journal when given a path.

    ``claims``: how the batch shares POSTs with batches running elsewhere (the other
    partitions of a Dask computation); ``None`` for a batch on its own.
    """
    output = OutputStage.create(config.transform_options, keep_png=config.keep_png)
    journal = config.journal
    if journal is not None and not isinstance(journal, Journal):
        journal = Journal(journal)
    if journal is not None:
        journal.open()
    # Without a rate, learn the server's from its 429s (and start slow), unless the
    # client paces POSTs itself (its own rate, or a Dask cluster's shared gate).
    learn = config.rate is None and not client.paces_posts
    return Runner(
        client=client,
        sink=sink,
        config=config,
        journal=journal,
        gate=RateGate(config.rate, config.burst, learn=learn),
        slots=AdaptiveConcurrency(config.concurrency, slow_start=SLOW_START if learn else None),
        stats=BatchStats(concurrency=config.concurrency),
        breaker=Breaker(
            client.retry_policy.max_retry_after,
            fail_fast=config.fail_fast,
            ambiguous_limit=max(AMBIGUOUS_RUN_LIMIT, 2 * config.concurrency),
        ),
        staging=Staging.create(config.stage, keep=config.keep_staged),
        claims=claims,
        renditions=Renditions(
            sink, config.sizes, journal, overwrite=config.overwrite, output=output
        ),
    )
