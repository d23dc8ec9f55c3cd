"""Ordered fan-out: a few worker tasks send what one source yields; outcomes come out in order.

The shape shared by :meth:`Transport.send_many` (one message per item) and
``SESTransport.send_bulk`` (one ``SendBulkEmail`` batch per item). No I/O of its own.

- ``pull()`` gives the next item; it raises ``StopAsyncIteration`` at the end. Workers call
  it one at a time (under a lock), so items keep the source's order.
- ``work(item)`` does the item's job; its result (or exception) is the item's outcome.
- Each pulled item gets a future, queued before its work starts; the consumer awaits the
  futures in queue order. The queue holds at most ``2 × workers`` futures: a worker that
  finds it full waits before pulling, which is what keeps memory flat for any input length.
- An exception from ``pull()`` ends the fan-out and is raised to the consumer after the
  items pulled before it. An exception from ``work()`` is raised to the consumer at that
  item's place (callers turn the expected ones into outcomes inside ``work``).
- Leaving early (closing the generator) cancels the workers and waits for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from typing import TypeVar

__all__ = ["aiter_of", "ordered_fanout"]

T = TypeVar("T")
R = TypeVar("R")


async def aiter_of(items: Iterable[T] | AsyncIterable[T]) -> AsyncGenerator[T, None]:
    """``items`` as one async generator (a source for :func:`ordered_fanout`'s ``pull``)."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


async def ordered_fanout(
    pull: Callable[[], Awaitable[T]],
    work: Callable[[T], Awaitable[R]],
    workers: int,
) -> AsyncGenerator[R, None]:
    """Yield ``work(item)`` for every item ``pull()`` gives, in order, ``workers`` at a time."""
    loop = asyncio.get_running_loop()
    ordered: asyncio.Queue[asyncio.Future[R] | None] = asyncio.Queue(maxsize=2 * workers)
    pull_lock = asyncio.Lock()
    finished = False  # the end (or the source's failure) is queued: nobody pulls again

    async def worker() -> None:
        nonlocal finished
        while True:
            async with pull_lock:
                if finished:
                    return
                try:
                    item = await pull()
                except StopAsyncIteration:
                    finished = True
                    await ordered.put(None)
                    return
                except Exception as exc:
                    finished = True
                    failed: asyncio.Future[R] = loop.create_future()
                    failed.set_exception(exc)
                    await ordered.put(failed)
                    await ordered.put(None)
                    return
                future: asyncio.Future[R] = loop.create_future()
                await ordered.put(future)
            try:
                result = await work(item)
            except Exception as exc:
                future.set_exception(exc)
                continue
            except BaseException:
                future.cancel()
                raise
            future.set_result(result)

    tasks = [loop.create_task(worker()) for _ in range(workers)]
    try:
        while True:
            next_future = await ordered.get()
            if next_future is None:
                break
            yield await next_future
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Futures still queued belong to cancelled work: nobody will read them.
        while not ordered.empty():
            leftover = ordered.get_nowait()
            if leftover is not None and leftover.done() and not leftover.cancelled():
                leftover.exception()  # mark retrieved: no "never retrieved" warning
