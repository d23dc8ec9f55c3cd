"""The ordered fan-out shared by send_many and send_bulk (transports/_fanout.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest

from asyncmailer.transports._fanout import ordered_fanout


def _source(items: list[int], pulled: list[int]) -> Callable[[], Awaitable[int]]:
    iterator = iter(items)

    async def pull() -> int:
        for item in iterator:
            pulled.append(item)
            return item
        raise StopAsyncIteration

    return pull


async def test_outcomes_come_in_input_order_whatever_finishes_first() -> None:
    pulled: list[int] = []

    async def work(item: int) -> int:
        await asyncio.sleep((10 - item % 10) / 1000)  # later items finish first
        return item * 2

    results = [r async for r in ordered_fanout(_source(list(range(40)), pulled), work, 4)]
    assert results == [i * 2 for i in range(40)]
    assert pulled == list(range(40))


async def test_read_ahead_is_bounded_by_twice_the_workers() -> None:
    pulled: list[int] = []
    release = asyncio.Event()

    async def work(item: int) -> int:
        await release.wait()
        return item

    fanout = ordered_fanout(_source(list(range(1000)), pulled), work, 3)
    first = asyncio.ensure_future(fanout.__anext__())
    for _ in range(50):
        await asyncio.sleep(0)
    # 2 × 3 futures queued, plus one pulled by a worker waiting for room in the queue.
    assert len(pulled) <= 2 * 3 + 1
    release.set()
    assert await first == 0
    await fanout.aclose()


async def test_a_failing_source_is_raised_after_the_items_before_it() -> None:
    items = iter([1, 2, 3])

    async def pull() -> int:
        for item in items:
            return item
        raise RuntimeError("source broke")

    async def work(item: int) -> int:
        return item

    seen: list[int] = []
    with pytest.raises(RuntimeError, match="source broke"):
        async for result in ordered_fanout(pull, work, 2):
            seen.append(result)
    assert seen == [1, 2, 3]


async def test_leaving_early_cancels_the_work_in_progress() -> None:
    started: list[int] = []
    cancelled: list[int] = []

    async def work(item: int) -> int:
        started.append(item)
        try:
            await asyncio.sleep(0 if item == 0 else 10)
        except asyncio.CancelledError:
            cancelled.append(item)
            raise
        return item

    async with contextlib.aclosing(
        ordered_fanout(_source(list(range(10)), []), work, 3)
    ) as results:
        async for result in results:
            assert result == 0
            break
    assert cancelled and sorted(cancelled) == sorted(set(started) - {0})
