"""The transport's pacer: at most one heavy send step per event-loop iteration."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from asyncmailer import Limits, Message
from asyncmailer.limits import Grant, LocalRateLimiter
from asyncmailer.result import ComposedMessage
from asyncmailer.transports._pacer import LoopPacer
from asyncmailer.transports.base import Delivery, Transport


class _Iterations:
    """Counts event-loop iterations: a callback that re-schedules itself once per pass."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.count = 0
        self._loop = loop
        self._running = True
        loop.call_soon(self._tick)

    def _tick(self) -> None:
        self.count += 1
        if self._running:
            self._loop.call_soon(self._tick)

    def stop(self) -> None:
        self._running = False


async def test_one_step_per_iteration_and_urgent_steps_first() -> None:
    loop = asyncio.get_running_loop()
    pacer = LoopPacer(loop)
    iterations = _Iterations(loop)
    ran: list[tuple[str, int]] = []

    async def step(name: str, urgent: bool) -> None:
        await pacer.turn(urgent=urgent)
        ran.append((name, iterations.count))

    tasks = [asyncio.create_task(step(f"n{i}", False)) for i in range(5)]
    tasks += [asyncio.create_task(step(f"u{i}", True)) for i in range(2)]
    await asyncio.gather(*tasks)
    iterations.stop()
    # The first task found the pacer idle and went at once; the others waited, urgent first.
    assert [name for name, _ in ran] == ["n0", "u0", "u1", "n1", "n2", "n3", "n4"]
    passes = [count for _, count in ran]
    assert len(set(passes)) == len(passes), passes  # never two steps in one iteration
    assert pacer.waiting == 0


async def test_the_task_holding_the_turn_runs_its_next_step_in_the_same_iteration() -> None:
    loop = asyncio.get_running_loop()
    pacer = LoopPacer(loop)
    iterations = _Iterations(loop)
    ran: list[tuple[str, int]] = []

    async def send(name: str) -> None:
        await pacer.turn()  # composing
        ran.append((f"{name}-compose", iterations.count))
        await pacer.turn(urgent=True)  # writing the request, same task
        ran.append((f"{name}-request", iterations.count))

    await asyncio.gather(*(send(name) for name in ("a", "b", "c")))
    iterations.stop()
    # Each task composes and writes in one iteration; no two tasks share an iteration.
    assert [name for name, _ in ran] == [
        "a-compose",
        "a-request",
        "b-compose",
        "b-request",
        "c-compose",
        "c-request",
    ]
    passes = [count for _, count in ran]
    assert passes[0] == passes[1] and passes[2] == passes[3] and passes[4] == passes[5]
    assert len({passes[0], passes[2], passes[4]}) == 3


async def test_the_holder_waits_like_anyone_once_its_iteration_is_over() -> None:
    loop = asyncio.get_running_loop()
    pacer = LoopPacer(loop)
    order: list[str] = []

    async def holder() -> None:
        await pacer.turn()
        order.append("holder-1")
        await asyncio.sleep(0)  # suspends: the turn passes on meanwhile
        await pacer.turn()
        order.append("holder-2")

    async def other() -> None:
        await pacer.turn()
        order.append("other")

    # Same iteration: the holder gets the turn, the other task queues. The holder then
    # suspends; when it comes back, the turn has moved to the other task.
    await asyncio.gather(holder(), other())
    assert order == ["holder-1", "other", "holder-2"]


async def test_an_idle_pacer_does_not_suspend() -> None:
    loop = asyncio.get_running_loop()
    pacer = LoopPacer(loop)
    other_ran: list[bool] = []
    loop.call_soon(other_ran.append, True)
    await pacer.turn()
    assert other_ran == []  # returned without yielding to the loop
    await asyncio.sleep(0.01)  # the hand-off chain ends when nobody waits
    await pacer.turn()
    assert pacer.waiting == 0


async def test_cancelled_waiters_are_skipped_and_the_turn_moves_on() -> None:
    loop = asyncio.get_running_loop()
    pacer = LoopPacer(loop)
    await pacer.turn()  # busy for this iteration
    ran: list[int] = []

    async def step(i: int) -> None:
        await pacer.turn()
        ran.append(i)

    tasks = [asyncio.create_task(step(i)) for i in range(4)]
    await asyncio.sleep(0)  # all four are queued now
    tasks[1].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert ran == [0, 2, 3]
    assert tasks[1].cancelled()


class _CancellingPacer(LoopPacer):
    """Cancels ``victim`` right after handing it the turn, before it can run."""

    __slots__ = ("victim",)

    def _pass_on(self) -> None:
        super()._pass_on()
        victim = self.victim
        if victim is not None and not victim.done():
            victim.cancel()
            self.victim = None


async def test_a_waiter_cancelled_after_its_turn_came_does_not_stall_the_rest() -> None:
    loop = asyncio.get_running_loop()
    pacer = _CancellingPacer(loop)
    pacer.victim = None
    await pacer.turn()
    ran: list[int] = []

    async def step(i: int) -> None:
        await pacer.turn()
        ran.append(i)

    first = asyncio.create_task(step(0))
    rest = [asyncio.create_task(step(i)) for i in (1, 2)]
    pacer.victim = first
    await asyncio.wait_for(asyncio.gather(*rest), 1.0)
    assert first.cancelled()
    assert ran == [1, 2]


# ----------------------------------------------------------------------- in a transport


class _StepTransport(Transport):
    """Records the loop iteration in which each composing and each request step ran."""

    name = "steps"

    def __init__(self, clock: Callable[[], int], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._clock = clock
        self.steps: list[tuple[str, int]] = []
        #: (step, iteration, task) of every step.
        self.by_task: list[tuple[str, int, object]] = []

    async def prepare(
        self, message: object = None, /, **fields: object
    ) -> tuple[ComposedMessage, Message | None]:
        self.steps.append(("compose", self._clock()))
        self.by_task.append(("compose", self._clock(), asyncio.current_task()))
        return await super().prepare(message, **fields)  # type: ignore[arg-type]

    async def _deliver(self, composed: ComposedMessage, message: Message | None) -> Delivery:
        self.steps.append(("request", self._clock()))
        self.by_task.append(("request", self._clock(), asyncio.current_task()))
        await asyncio.sleep(0)
        return Delivery(response="ok", message_id=composed.message_id)


@pytest.mark.parametrize("cooperative", [True, False])
async def test_a_burst_of_sends_runs_one_heavy_step_per_iteration(cooperative: bool) -> None:
    loop = asyncio.get_running_loop()
    iterations = _Iterations(loop)
    async with _StepTransport(
        lambda: iterations.count, limits=Limits(cooperative=cooperative), max_connections=10
    ) as transport:
        await asyncio.gather(
            *(
                transport.send_mail(from_="a@example.com", to=f"r{i}@example.org", text="x")
                for i in range(50)
            )
        )
    iterations.stop()
    per_iteration: dict[int, int] = {}
    tasks_per_iteration: dict[int, set[object]] = {}
    for _, count, task in transport.by_task:
        per_iteration[count] = per_iteration.get(count, 0) + 1
        tasks_per_iteration.setdefault(count, set()).add(task)
    assert len(transport.steps) == 100
    if cooperative:
        # One task's steps per iteration: at most its compose and its request.
        assert max(len(tasks) for tasks in tasks_per_iteration.values()) == 1
        assert max(per_iteration.values()) <= 2
    else:  # the control: without the pacer, the whole burst composes in one iteration
        assert max(per_iteration.values()) >= 50


class _RecordingLimiter(LocalRateLimiter):
    """A LocalRateLimiter that records the loop iteration and task of every grant."""

    def __init__(self, clock: Callable[[], int], rate: float) -> None:
        super().__init__(rate)
        self._clock = clock
        #: (iteration, task, whether acquire() returned without waiting) of every grant.
        self.granted: list[tuple[int, object, bool]] = []

    async def acquire(self, weight: int = 1) -> Grant:
        asked = self._clock()
        grant = await super().acquire(weight)
        self.granted.append((self._clock(), asyncio.current_task(), self._clock() == asked))
        return grant


@pytest.mark.parametrize("rate", [10_000.0, 500.0])
async def test_with_a_rate_limiter_grants_are_dated_in_their_requests_iteration(
    rate: float,
) -> None:
    # The urgent turn is taken before limiter.acquire(): a grant that needs no wait is
    # given in the iteration that writes its request. After a wait, the turn is taken
    # again, so one task's steps per iteration still holds.
    loop = asyncio.get_running_loop()
    iterations = _Iterations(loop)
    limiter = _RecordingLimiter(lambda: iterations.count, rate)
    async with _StepTransport(
        lambda: iterations.count, limits=Limits(rate_limiter=limiter), max_connections=10
    ) as transport:
        await asyncio.gather(
            *(
                transport.send_mail(from_="a@example.com", to=f"r{i}@example.org", text="x")
                for i in range(50)
            )
        )
    iterations.stop()
    tasks_per_iteration: dict[int, set[object]] = {}
    for _, count, task in transport.by_task:
        tasks_per_iteration.setdefault(count, set()).add(task)
    assert max(len(tasks) for tasks in tasks_per_iteration.values()) == 1
    requests = {task: count for step, count, task in transport.by_task if step == "request"}
    assert len(requests) == len(limiter.granted) == 50
    at_once = [(count, task) for count, task, no_wait in limiter.granted if no_wait]
    assert at_once  # the first grant at least
    assert all(requests[task] == count for count, task in at_once)
