"""``rate=None`` learns the server's rate from 429s (`RateLearner` behind `RateGate`).

Most tests here drive a simulated server on trio's virtual clock: a token bucket
(or random 429s) in front of a batch of tasks that pace on the gate, pause it on
each 429 and retry, as the batch runner does.
"""

from __future__ import annotations

import math
import random
from typing import Any

import anyio
import attrs
import pytest

import freepik_bg
from freepik_bg._ratelearn import RateLearner
from freepik_bg._ratelimit import SLOW_START, AdaptiveConcurrency, RateGate

from .conftest import API, KEY, FakeService, urls

pytestmark = pytest.mark.anyio

LIMIT = 20.0
BURST = 20.0
CONCURRENCY = 32
#: Seconds from a POST to its answer (the server decides when the POST arrives).
RTT = 0.02


@attrs.define
class Bucket:
    """The emulator's token bucket: ``rate`` per second, up to ``burst`` at once."""

    rate: float
    burst: float
    tokens: float = attrs.field(init=False)
    updated: float = 0.0

    def __attrs_post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float) -> float | None:
        """None when a token was taken, else the seconds until one is back."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate


@attrs.define
class Server:
    """Answers each POST 429 when its bucket is empty, or at random with ``odds``."""

    bucket: Bucket | None = None
    odds: float = 0.0
    retry_after: bool = True  # send Retry-After (whole seconds, as the emulator does)
    rng: random.Random = attrs.field(factory=lambda: random.Random(7))
    posts: int = 0
    throttled: int = 0

    def answer(self, now: float) -> float | None:
        """None for a success, else the 429's Retry-After (whole seconds, as the emulator's).

        The batch waits for it only when the server sends it (``retry_after``).
        """
        self.posts += 1
        wait = self.bucket.take(now) if self.bucket is not None else None
        if wait is None and self.rng.random() < self.odds:
            wait = 1.0
        if wait is None:
            return None
        self.throttled += 1
        return float(max(1, math.ceil(wait - 1e-9)))


@attrs.define
class Outcome:
    items: int
    elapsed: float
    posts: int
    throttled: int

    @property
    def throughput(self) -> float:
        return self.items / self.elapsed

    @property
    def share(self) -> float:
        return self.throttled / self.posts


async def run(
    server: Server,
    items: int,
    *,
    learn: bool = True,
    instant_retries: bool = False,
    concurrency: int = CONCURRENCY,
    rtt: tuple[float, float] = (RTT, RTT),
) -> Outcome:
    """A batch through ``server``: the runner's gate, pause and AIMD, on the current clock.

    With ``instant_retries`` every retry and pause is 0 s long, as under
    ``freepik_bg.set_testing`` (the reliability suite's chaos run).
    """
    gate = RateGate(None, learn=learn)
    slots = AdaptiveConcurrency(concurrency, slow_start=SLOW_START if learn else None)
    backoff, latency = random.Random(11), random.Random(13)
    queue = iter(range(items))
    start = anyio.current_time()

    async def worker() -> None:
        for _ in queue:
            await slots.acquire()
            attempt = 0
            while True:
                attempt += 1
                await gate.wait()
                retry_after = server.answer(anyio.current_time())
                await anyio.sleep(latency.uniform(*rtt))
                if retry_after is None:
                    break
                if instant_retries:
                    wait = 0.0
                elif server.retry_after:
                    wait = retry_after
                else:  # the client's own backoff: RetryPolicy's defaults
                    wait = min(8.0, 0.5 * 2.0 ** (attempt - 1) + backoff.uniform(0, 0.5))
                gate.pause(wait)
                slots.throttled()
                await anyio.sleep(wait)
            slots.release()
            slots.succeeded()

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return Outcome(items, anyio.current_time() - start, server.posts, server.throttled)


def limited(*, retry_after: bool = True) -> Server:
    return Server(Bucket(LIMIT, BURST), retry_after=retry_after)


@pytest.mark.virtual_clock
@pytest.mark.parametrize("retry_after", [True, False], ids=["retry-after", "no-retry-after"])
@pytest.mark.parametrize("items", [240, 1000])
async def test_learns_a_token_bucket_limit(retry_after: bool, items: int) -> None:
    out = await run(limited(retry_after=retry_after), items)
    assert out.share <= 0.05
    assert out.throughput >= 0.95 * LIMIT


@pytest.mark.virtual_clock
@pytest.mark.parametrize("retry_after", [True, False], ids=["retry-after", "no-retry-after"])
async def test_without_learning_a_bucket_answers_many_429s(retry_after: bool) -> None:
    """Today's ``rate=None`` (pause only): the reason for the learner."""
    out = await run(limited(retry_after=retry_after), 240, learn=False)
    assert out.share > 0.1


@pytest.mark.virtual_clock
@pytest.mark.parametrize("instant", [True, False], ids=["instant-retries", "retry-after-1"])
async def test_random_429s_do_not_collapse_the_rate(instant: bool) -> None:
    """4 % of POSTs get a 429 whatever the pace: throughput within 10 % of no learning.

    With instant retries this is the chaos run's shape (2,000 items, concurrency 48,
    answers in 50-400 ms); with ``Retry-After: 1`` every 429 pauses the whole batch.
    """
    options: dict[str, Any] = {"instant_retries": instant}
    if instant:
        options.update(concurrency=48, rtt=(0.05, 0.4))
    items = 2000 if instant else 3000
    learned = await run(Server(odds=0.04), items, **options)
    plain = await run(Server(odds=0.04), items, learn=False, **options)
    assert learned.throttled == plain.throttled  # the same faults, whatever the pace
    assert learned.throughput >= 0.9 * plain.throughput


# -- the learner's decisions, one by one ---------------------------------------------


def burst_of(learner: RateLearner, sent: int, throttled: int, *, at: float, wait: float) -> None:
    """``sent`` POSTs at once at ``at``, of which ``throttled`` come back 429."""
    for _ in range(sent):
        learner.sent(at)
    for _ in range(throttled):
        learner.throttled(at + 0.01, wait)


def paced(learner: RateLearner, count: int, *, start: float) -> float:
    """``count`` POSTs at the learned rate from ``start``; returns when the last went."""
    now = start
    for _ in range(count):
        assert learner.rate is not None
        learner.sent(now)
        now += 1 / learner.rate
    return now


def test_a_burst_of_429s_sets_the_rate_the_server_accepted_over_its_pause() -> None:
    learner = RateLearner()
    assert learner.rate is None
    burst_of(learner, 32, 12, at=0.0, wait=1.0)
    # 20 got through between the first POST and the end of the pause the server asked for.
    assert learner.rate == pytest.approx(20 / 1.01)


def test_a_cut_after_which_no_429_comes_is_kept_and_grows_slowly() -> None:
    learner = RateLearner()
    burst_of(learner, 32, 12, at=0.0, wait=1.0)
    cut = learner.rate
    assert cut is not None
    end = paced(learner, 64, start=1.01)  # a trial lasts 64 POSTs at least
    assert learner.rate == pytest.approx(cut)  # no growth while on trial
    later = paced(learner, 50, start=end)
    assert learner.rate is not None
    assert cut < learner.rate < cut * (1 + 0.03 * (later - end))


def test_a_cut_that_does_not_lower_the_share_of_429s_is_undone() -> None:
    learner = RateLearner()
    # One 429 in 25 POSTs, before and after the cut: not about the rate.
    burst_of(learner, 25, 1, at=0.0, wait=0.0)
    assert learner.rate is not None
    end = paced(learner, 24, start=0.01)
    learner.throttled(end, 0.0)
    assert learner.rate is None


def test_after_an_undone_cut_more_429s_pass_before_the_next_trial() -> None:
    learner = RateLearner()
    burst_of(learner, 25, 1, at=0.0, wait=0.0)
    learner.throttled(paced(learner, 24, start=0.01), 0.0)  # undone: doubt 1
    now = 1.0
    trials = []
    for _ in range(8):
        for _ in range(25):
            learner.sent(now)
            now += 0.01
        learner.throttled(now, 0.0)
        trials.append(learner.rate is not None)
        if learner.rate is not None:  # on trial: the next 429 undoes it (doubt 2)
            for _ in range(25):
                learner.sent(now)
                now += 0.01
            learner.throttled(now, 0.0)
            assert learner.rate is None
    # Doubt 1 lets 3 episodes pass, then one trial; doubt 2 lets 15 pass.
    assert trials == [False, False, False, True, False, False, False, False]


def test_a_cut_that_helped_but_not_enough_is_cut_again() -> None:
    learner = RateLearner()
    burst_of(learner, 32, 12, at=0.0, wait=0.5)  # a short backoff: an estimate too high
    first = learner.rate
    assert first == pytest.approx(20 / 0.51)
    # At the first estimate, a server at 20/s takes 60 POSTs then answers 429 again:
    # far fewer 429s than before, and the server took only about 20/s of them.
    end = paced(learner, 60, start=0.51)
    learner.throttled(end, 1.0)
    assert learner.rate is not None
    assert learner.rate < first * 0.8
    assert learner.rate == pytest.approx(59 / (end + 1.0 - 0.51))


def test_a_window_of_too_few_posts_gives_no_estimate() -> None:
    learner = RateLearner()
    burst_of(learner, 5, 1, at=0.0, wait=0.0)
    assert learner.rate is None  # 4 POSTs say nothing about a rate
    burst_of(learner, 20, 1, at=0.5, wait=0.0)
    assert learner.rate == pytest.approx(23 / 0.51)  # the window went on


# -- the gate ----------------------------------------------------------------------


async def let_through(gate: RateGate, start: float, times: list[float]) -> None:
    """One caller of ``gate``: notes when (since ``start``) it was let through."""
    await gate.wait()
    times.append(anyio.current_time() - start)


@pytest.mark.virtual_clock
async def test_after_a_pause_a_learning_gate_releases_waiters_at_the_learned_rate() -> None:
    gate = RateGate(None, learn=True)
    assert gate.learner is not None
    start = anyio.current_time()
    for _ in range(32):
        await gate.wait()
    for _ in range(12):
        gate.pause(1.0)  # 20 got through; 12 answered 429 with Retry-After: 1
    rate = gate.learner.rate
    assert rate == pytest.approx(20.0)
    times: list[float] = []

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(let_through, gate, start, times)
    # Not all at once at the end of the pause: one slot after another, 2 % under the rate.
    assert sorted(times) == pytest.approx([1.0 + i / (rate * 0.98) for i in range(10)])


@pytest.mark.virtual_clock
async def test_a_pause_voids_the_slots_taken_before_it() -> None:
    gate = RateGate(None, learn=True)
    assert gate.learner is not None
    gate.learner.rate = 10.0
    start = anyio.current_time()
    times: list[float] = []

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(let_through, gate, start, times)  # slots at 0, 0.102, 0.204, ...
        await anyio.sleep(0.15)
        gate.pause(1.0)  # a 429: the three later slots are void
        gate.learner.rate = 10.0  # (whatever the learner made of it)
    slot = 1 / (10 * 0.98)
    # (The learned rate creeps up meanwhile: hence the 1 %.)
    expected = [0.0, slot, 1.15, 1.15 + slot, 1.15 + 2 * slot]
    assert sorted(times) == pytest.approx(expected, rel=0.01)


@pytest.mark.virtual_clock
async def test_without_learning_a_pause_ends_in_one_burst() -> None:
    gate = RateGate(None)
    assert gate.learner is None
    gate.pause(1.0)
    times: list[float] = []

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(let_through, gate, start, times)
    assert [t - start for t in times] == pytest.approx([1.0] * 5)


def test_a_given_rate_learns_nothing() -> None:
    assert RateGate(10, 5, learn=True).learner is None


# -- slow start ---------------------------------------------------------------------


async def test_slow_start_grows_by_half_per_round_trip_until_the_first_429() -> None:
    slots = AdaptiveConcurrency(32, slow_start=4)
    assert slots.limit == 4
    for _ in range(4):
        slots.succeeded()
    assert slots.limit == 6
    for _ in range(6):
        slots.succeeded()
    assert slots.limit == 9
    slots.throttled()
    # The rate gate paces from the first 429 on: AIMD goes on as if from the maximum.
    assert slots.limit == 16
    for _ in range(16):
        slots.succeeded()
    assert slots.limit == 17  # additive again
    full = AdaptiveConcurrency(8, slow_start=4)
    for _ in range(10):
        full.succeeded()
    assert full.limit == 8
    assert AdaptiveConcurrency(8).limit == 8


# -- the batch -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_rate", "batch_rate", "learns"),
    [(None, None, True), (None, 10.0, False), (10.0, None, False)],
    ids=["no-rate", "batch-rate", "client-rate"],
)
async def test_only_a_batch_paced_by_nothing_learns_and_starts_slow(
    service: FakeService, client_rate: float | None, batch_rate: float | None, learns: bool
) -> None:
    async with freepik_bg.AsyncClient(KEY, base_url=API, rate=client_rate) as client:
        sink = freepik_bg.MemorySink()
        async with client.batch(urls(3), sink, rate=batch_rate, concurrency=8) as results:
            runner = results._runner
            assert (runner.gate.learner is not None) is learns
            assert runner.slots.limit == (SLOW_START if learns else 8)
            stored = [item async for item in results if item.ok]
    assert len(stored) == 3
