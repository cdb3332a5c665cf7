"""A worker preload for tests/dask/test_stop.py: every worker writes to stderr as it closes.

As distributed's own errors did, now and then, when an abandoned run's local cluster
closed under its tasks (a worker still sending a partition's data to one already gone
logged an ERROR and a traceback): here each time, so that the test cannot be lucky.
"""

from __future__ import annotations

import sys

NOISE = "Traceback (most recent call last): a worker closing (tests/dask/_noisy_worker.py)"


def dask_teardown(worker: object) -> None:
    """Called by distributed as a worker closes (its ``preload`` option)."""
    print(NOISE, file=sys.stderr, flush=True)
