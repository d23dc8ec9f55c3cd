"""The transport's pacer: one heavy send step per event-loop iteration, beyond a small budget.

The tests of the one-step rule build the pacer with ``budget=0`` (and the transport with
``_pacer_budget = 0``); the budget's own tests drive it with a controlled clock.
"""

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
    pacer = LoopPacer(loop, budget=0)
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
    pacer = LoopPacer(loop, budget=0)
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
    pacer = LoopPacer(loop, budget=0)
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
    pacer = LoopPacer(loop, budget=0)
    other_ran: list[bool] = []
    loop.call_soon(other_ran.append, True)
    await pacer.turn()
    assert other_ran == []  # returned without yielding to the loop
    await asyncio.sleep(0.01)  # the hand-off chain ends when nobody waits
    await pacer.turn()
    assert pacer.waiting == 0


async def test_cancelled_waiters_are_skipped_and_the_turn_moves_on() -> None:
    loop = asyncio.get_running_loop()
    pacer = LoopPacer(loop, budget=0)
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
    pacer = _CancellingPacer(loop, budget=0)
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


# ------------------------------------------------------------------------------- budget


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_steps_share_an_iteration_while_its_budget_lasts_and_nobody_waits() -> None:
    loop = asyncio.get_running_loop()
    clock = _Clock()
    pacer = LoopPacer(loop, budget=0.001, clock=clock)
    iterations = _Iterations(loop)
    ran: list[tuple[str, int]] = []

    async def step(name: str, cost: float) -> None:
        await pacer.turn()
        ran.append((name, iterations.count))
        clock.now += cost  # the step's CPU time

    # a, b and c fit in one millisecond (0.4 + 0.4 < 1 when c asks); d asks at 1.2 ms:
    # it and everything after it wait, one per iteration.
    tasks = [asyncio.create_task(step(name, 0.0004)) for name in ("a", "b", "c", "d", "e")]
    await asyncio.gather(*tasks)
    iterations.stop()
    assert [name for name, _ in ran] == ["a", "b", "c", "d", "e"]
    passes = dict(ran)
    assert passes["a"] == passes["b"] == passes["c"]
    assert len({passes["c"], passes["d"], passes["e"]}) == 3
    assert passes["d"] < passes["e"]


async def test_the_budget_never_lets_a_step_overtake_a_waiting_one() -> None:
    loop = asyncio.get_running_loop()
    clock = _Clock()
    pacer = LoopPacer(loop, budget=0.001, clock=clock)
    await pacer.turn()  # this iteration's first step
    clock.now = 0.002  # ... which used up the budget
    order: list[str] = []

    async def step(name: str) -> None:
        await pacer.turn(urgent=name.startswith("u"))
        order.append(name)

    first = asyncio.create_task(step("n1"))
    await asyncio.sleep(0)  # n1 waits now
    clock.now = 0.0  # budget left again, but n1 is ahead: the next ones queue
    second = asyncio.create_task(step("n2"))
    await asyncio.gather(first, second)
    assert order == ["n1", "n2"]


@pytest.mark.parametrize("budget", [0.001, 0.0])
async def test_a_handed_turn_starts_a_new_budget(budget: float) -> None:
    loop = asyncio.get_running_loop()
    clock = _Clock()
    pacer = LoopPacer(loop, budget=budget, clock=clock)
    iterations = _Iterations(loop)
    ran: dict[str, int] = {}
    suspended: list[bool] = []

    async def first() -> None:
        await pacer.turn()
        ran["first"] = iterations.count
        clock.now = 5.0  # its step used up the iteration's budget

    async def handed() -> None:
        await pacer.turn()  # waits, then is handed the turn at 5.0
        ran["handed"] = iterations.count

    async def late() -> None:
        # Asks two iterations later: in the iteration where the handed step runs, after it.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        other_ran: list[bool] = []
        loop.call_soon(other_ran.append, True)
        await pacer.turn()
        ran["late"] = iterations.count
        suspended.append(bool(other_ran))

    await asyncio.gather(first(), handed(), late())
    iterations.stop()
    assert ran["first"] < ran["handed"]
    # With a budget, the handed step started a new one at 5.0: the late step, asking at
    # 5.0 in the same iteration, runs at once. Without (the control), it waits a turn.
    if budget:
        assert suspended == [False] and ran["late"] == ran["handed"]
    else:
        assert suspended == [True] and ran["late"] > ran["handed"]


def test_the_budget_must_not_be_negative() -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError, match="budget"):
            LoopPacer(loop, budget=-1.0)
        with pytest.raises(ValueError, match="budget"):
            LoopPacer(loop, budget=float("nan"))
    finally:
        loop.close()


# ----------------------------------------------------------------------- in a transport


class _StepTransport(Transport):
    """Records the loop iteration in which each composing and each request step ran."""

    name = "steps"
    _pacer_budget = 0.0  # the one-step rule alone

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
