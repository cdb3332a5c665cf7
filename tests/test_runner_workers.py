"""The runner's workers: the shared intake, the adaptive slots, and stopping while input waits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from freepik_bg import AsyncClient, ItemResult, MemorySink, ProgressEvent
from freepik_bg._intake import Crew, Intake
from freepik_bg._ratelimit import AdaptiveConcurrency

from .conftest import FakeService, urls

pytestmark = pytest.mark.anyio


# -- the slots --------------------------------------------------------------------


async def test_slots_are_handed_out_in_order_and_only_up_to_the_limit() -> None:
    slots = AdaptiveConcurrency(2)
    assert await slots.acquire()
    assert await slots.acquire()
    assert slots.in_flight == 2
    got: list[int] = []

    async def waiter(n: int) -> None:
        assert await slots.acquire()
        got.append(n)

    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(waiter, n)
            await anyio.wait_all_tasks_blocked()
        assert got == []  # the limit holds while both slots are taken
        slots.release()
        await anyio.wait_all_tasks_blocked()
        assert got == [0]
        # One release at a time: trio wakes tasks set ready together in a random order.
        slots.release()
        await anyio.wait_all_tasks_blocked()
        assert got == [0, 1]
        slots.release()
    assert got == [0, 1, 2]
    assert slots.in_flight == 2


async def test_raising_the_limit_wakes_waiters() -> None:
    slots = AdaptiveConcurrency(8, slow_start=1)
    assert await slots.acquire()
    woken: list[bool] = []
    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(lambda: _append(woken, slots.acquire()))
        await anyio.wait_all_tasks_blocked()
        assert woken == []
        slots.throttled()  # the first 429 ends slow start: the limit goes to the maximum
    assert woken == [True, True]
    assert slots.in_flight == 3


async def _append(into: list[bool], acquired: object) -> None:
    into.append(await acquired)  # type: ignore[misc]


async def test_close_turns_away_waiting_and_later_acquires() -> None:
    slots = AdaptiveConcurrency(1)
    assert await slots.acquire()
    answers: list[bool] = []
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(lambda: _append(answers, slots.acquire()))
        await anyio.wait_all_tasks_blocked()
        slots.close()
    assert answers == [False, False, False]
    assert not await slots.acquire()
    assert slots.in_flight == 1  # only the slot really taken


@pytest.mark.parametrize("cancel_first", [True, False])
async def test_a_slot_handed_to_a_cancelled_waiter_is_not_lost(cancel_first: bool) -> None:
    slots = AdaptiveConcurrency(1)
    assert await slots.acquire()
    scope = anyio.CancelScope()
    next_got: list[bool] = []

    async def cancelled_waiter() -> None:
        with scope:
            # Depending on the backend the cancellation or the slot wins; either
            # way the slot must end up with the next waiter, not vanish.
            if await slots.acquire():
                slots.release()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancelled_waiter)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(lambda: _append(next_got, slots.acquire()))
            await anyio.wait_all_tasks_blocked()
            # The first waiter is granted the slot and cancelled before it runs.
            if cancel_first:
                scope.cancel()
            slots.release()
            scope.cancel()
    assert next_got == [True]
    assert slots.in_flight == 1


# -- the intake -------------------------------------------------------------------


async def test_intake_numbers_entries_and_ends() -> None:
    intake = Intake(iter(["a", "b"]))
    assert await intake.next() == (0, "a")
    assert await intake.next() == (1, "b")
    assert await intake.next() is None
    assert intake.done


async def test_intake_close_interrupts_a_waiting_async_source() -> None:
    async def source() -> AsyncIterator[str]:
        yield "a"
        await anyio.sleep_forever()
        yield "never"

    intake = Intake(source())
    assert await intake.next() == (0, "a")
    ended: list[object] = []

    async def pull() -> None:
        ended.append(await intake.next())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pull)
            tg.start_soon(pull)  # waits for the first pull's lock
            await anyio.wait_all_tasks_blocked()
            intake.close()
    assert ended == [None, None]


def test_crew_keeps_one_worker_free_up_to_its_limit() -> None:
    started: list[int] = []
    crew = Crew(limit=3)
    crew.start(lambda: started.append(len(started)))
    assert crew.workers == 1
    crew.busy()  # the only worker took an item: one more waits for the next
    assert crew.workers == 2
    crew.idle()
    crew.busy()  # one was still free: no new worker
    assert crew.workers == 2
    crew.busy()
    crew.busy()  # the limit: no fourth worker, even with none free
    assert crew.workers == len(started) == 3


async def test_a_large_concurrency_starts_workers_only_as_items_need_them(
    service: FakeService, client: AsyncClient
) -> None:
    workers: list[int] = []

    def count(event: ProgressEvent) -> None:
        running = anyio.get_running_tasks()
        workers.append(sum(task.name == "freepik_bg batch item" for task in running))

    report = await client.run_batch(
        urls(3), MemorySink(), concurrency=5000, rate=1000, progress=count
    )
    assert len(report.stored) == 3
    assert 1 <= max(workers) <= 4  # three items, and one worker free for a fourth


# -- the batch ----------------------------------------------------------------------


async def test_async_source_shared_by_many_workers(
    service: FakeService, client: AsyncClient
) -> None:
    async def source() -> AsyncIterator[str]:
        for url in urls(40):
            await anyio.lowlevel.checkpoint()  # another worker asks for an entry meanwhile
            yield url

    report = await client.run_batch(source(), MemorySink(), concurrency=8, rate=None)
    assert len(report.stored) == 40
    assert {item.index: item.image_url for item in report.stored} == dict(enumerate(urls(40)))
    assert sorted(service.posts) == sorted(urls(40))


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_source_that_raises_ends_the_batch_with_its_own_error(
    service: FakeService, client: AsyncClient, kind: str
) -> None:
    def plain() -> Iterator[str]:
        yield from urls(3)
        raise LookupError("the input broke")

    async def asynchronous() -> AsyncIterator[str]:
        for url in plain():
            yield url

    with pytest.raises(LookupError, match="the input broke"):
        await client.run_batch(
            plain() if kind == "sync" else asynchronous(), MemorySink(), concurrency=4, rate=None
        )


@pytest.mark.parametrize("how", ["stop", "leave"])
async def test_stopping_while_an_async_source_waits(
    service: FakeService, client: AsyncClient, how: str
) -> None:
    async def source() -> AsyncIterator[str]:
        for url in urls(3):
            yield url
        await anyio.sleep_forever()  # more input that never comes
        yield "https://img.test/never.jpg"

    received: list[ItemResult] = []
    with anyio.fail_after(10):
        async with client.batch(source(), MemorySink(), concurrency=4, rate=None) as results:
            async for item in results:
                received.append(item)
                if len(received) == 3:
                    if how == "leave":
                        break
                    results.stop()
    assert sorted(item.index for item in received) == [0, 1, 2]
    assert all(item.ok for item in received)
    assert len(service.posts) == 3


async def test_stop_before_the_first_item_sends_nothing(
    service: FakeService, client: AsyncClient
) -> None:
    async with client.batch(urls(10), MemorySink(), concurrency=4, rate=None) as results:
        results.stop()
        received = [item async for item in results]
    assert received == []
    assert service.posts == []
    assert results.stats.queued == 0
