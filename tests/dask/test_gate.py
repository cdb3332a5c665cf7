"""The shared budget: slots, the pause, and a 429 on one worker holding back the other."""

from __future__ import annotations

import anyio
import httpx
import pytest
from distributed import Client

import freepik_bg
from freepik_bg._dask_gate import Bucket, BudgetSpec
from freepik_bg._ratelimit import Gate

from ..conftest import API, KEY, FakeService, urls

pytestmark = pytest.mark.dask


def test_the_bucket_hands_out_a_burst_then_slots_at_the_rate() -> None:
    bucket = Bucket(rate=10, burst=3)
    delays = [bucket.reserve() for _ in range(6)]
    assert delays[:3] == [0.0, 0.0, 0.0]
    interval = 1 / (10 * 0.98)
    # Reserved back to back: each later slot is one interval after the one before.
    for k, delay in enumerate(delays[3:], start=1):
        assert delay == pytest.approx(k * interval, abs=0.05)


def test_a_pause_holds_every_slot_and_ends_paced_not_in_a_burst() -> None:
    bucket = Bucket(rate=10, burst=50)
    bucket.pause(5)
    assert bucket.paused_for() == pytest.approx(5, abs=0.1)
    first, second, third = (bucket.reserve() for _ in range(3))
    assert first == pytest.approx(5, abs=0.1)
    interval = 1 / (10 * 0.98)
    assert second - first == pytest.approx(interval, abs=0.02)
    assert third - second == pytest.approx(interval, abs=0.02)
    unlimited = Bucket(rate=None, burst=1)
    unlimited.pause(3)
    assert unlimited.reserve() == pytest.approx(3, abs=0.1)


def test_bad_budgets_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        Bucket(rate=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        Bucket(rate=1, burst=0)


def _pause_here(spec: BudgetSpec) -> float:
    gate = spec.connect()

    async def main() -> float:
        gate.pause(30)  # as the retry hook does on a 429: tells the scheduler from a thread
        with anyio.fail_after(30):
            while (left := gate._budget.paused_for()) == 0:
                await anyio.sleep(0.01)  # until that thread's call has landed
        return left

    return anyio.run(main)


def _slot_there(spec: BudgetSpec) -> float:
    return spec.connect()._budget.reserve()


def test_a_429_pause_on_one_worker_holds_back_the_other(cluster: Client) -> None:
    first, second = sorted(cluster.scheduler_info()["workers"])
    spec = BudgetSpec("test-pause-propagates", rate=10, burst=50)
    assert cluster.submit(_slot_there, spec, workers=[second], pure=False).result() == 0.0
    paused = cluster.submit(_pause_here, spec, workers=[first], pure=False).result()
    assert paused > 25
    # The other worker process: its next slot waits out the pause.
    assert cluster.submit(_slot_there, spec, workers=[second], pure=False).result() > 25


class _RecordingGate:
    def __init__(self) -> None:
        self.waits = 0
        self.pauses: list[float] = []

    async def wait(self) -> None:
        self.waits += 1

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)


@pytest.mark.anyio
async def test_a_client_paces_on_the_gate_it_is_given_and_tells_it_of_429s(
    service: FakeService,
) -> None:
    gate = _RecordingGate()
    assert isinstance(gate, Gate)
    service.fail[urls(1)[0]] = httpx.Response(429, headers={"retry-after": "2"})
    async with freepik_bg.AsyncClient(KEY, base_url=API, gate=gate, max_retries=1) as client:
        await client.remove_background(urls(2)[1])
        assert (gate.waits, gate.pauses) == (1, [])
        with pytest.raises(freepik_bg.RateLimitError):
            await client.remove_background(urls(1)[0])
    assert gate.waits == 3  # the first try and its retry both waited on the gate
    assert len(gate.pauses) == 1  # the 429 paused everyone sharing the gate
    with pytest.raises(ValueError, match="either rate"):
        freepik_bg.AsyncClient(KEY, base_url=API, gate=gate, rate=5)


class _Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


def test_without_a_rate_the_bucket_learns_one_from_429s(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr("freepik_bg._dask_gate.time", clock)
    bucket = Bucket(rate=None, burst=1)
    assert [bucket.reserve() for _ in range(32)] == [0.0] * 32  # nothing known yet
    clock.now += 0.01
    for _ in range(12):  # 20 got through; 12 were answered 429 with Retry-After: 1
        bucket.pause(1.0)
    assert bucket.learner is not None
    rate = bucket.learner.rate
    assert rate == pytest.approx(20 / 1.01)
    # After the pause, one slot at a time at the learned rate (2 % under it), not a burst.
    delays = [bucket.reserve() for _ in range(5)]
    assert delays == pytest.approx([1.0 + k / (rate * 0.98) for k in range(5)])
