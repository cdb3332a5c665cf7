"""The Dask suite's cluster: 2 worker processes on loopback, and an emulator in its own process."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("distributed")

from distributed import Client, LocalCluster

from freepik_bg.testing import Emulator

from ..conftest import KEY

#: The emulator's limit, per key, as the issue fixes it.
LIMIT = 20


@pytest.fixture(scope="package")
def cluster() -> Iterator[Client]:
    """A real LocalCluster: 2 worker processes, one thread each, no dashboard."""
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # The scheduler's HTTP server runs even without the dashboard, on port 8787
            # unless told: with another cluster there (a parallel run), a warning.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        ) as local,
        Client(local) as client,
    ):
        # The workers import the SDK once here, as any long-lived cluster has.
        client.run(lambda: __import__("freepik_bg._dask_job"))
        yield client


@pytest.fixture(scope="package")
def limited_emu() -> Iterator[Emulator]:
    """The emulator in its own process, limited to 20 POSTs/s per key (burst 20)."""
    with Emulator(fast=True, api_key=KEY, rate=LIMIT, process=True) as emulator:
        # Its cache of cutouts is warmed first: the emulator's start-up is not ours to measure.
        response = httpx.post(
            emulator.api_url,
            data={"image_url": emulator.image_url("ball-small.png")},
            headers={"x-freepik-api-key": KEY},
            timeout=60,
        )
        response.raise_for_status()
        yield emulator


@pytest.fixture
def emu20(limited_emu: Emulator) -> Iterator[Emulator]:
    limited_emu.reset_stats()
    yield limited_emu
    limited_emu.clear_faults()


def image_urls(emu: Emulator, n: int, tag: str = "d") -> list[str]:
    """``n`` distinct URLs of one cheap sample."""
    return [f"{emu.image_url('ball-small.png')}?{tag}={i}" for i in range(n)]


class Terminal(io.StringIO):
    """Standard input that is a terminal, holding what is typed into it."""

    def isatty(self) -> bool:
        return True


def count_429(emu: Emulator) -> int:
    return emu.stats.count("post", 429)


def frame_records(frame: Any) -> list[dict[str, Any]]:
    return list(frame.sort_values("index").to_dict("records"))
