"""Keep a burst of sends from holding the event loop: heavy steps spread over loop iterations.

A send has two CPU-heavy steps: composing the message, and building, signing and writing
the request. When many sends become ready together (a batch of responses, a ``gather`` of
a thousand ``send_mail`` calls) the event loop would run every ready step back to back
before it gets to anything else: an HTTP handler of the application, a timer, or the task
that writes a request already granted by the rate limiter. :class:`LoopPacer` lets the
first step of an iteration run at once and queues the others; each later iteration hands
the turn to one waiter (``urgent`` ones, about to ask the rate limiter and write a request,
first).
The task holding the turn may run its next step in the same iteration (composing then
writing one message, ~0.2–0.6 ms) instead of queueing behind itself.

One step per iteration costs an iteration (a ``select()`` and a hand-off) per step, which
is most of the pacer's price when steps are cheap. So an iteration has a small time
*budget* (``budget``, 0.5 ms by default): while nobody waits and the steps run in this
iteration so far took less than the budget, a new step runs at once too. The loop is then
held for at most about the budget plus one step. No timers and no polling: a waiting step
costs one future.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

__all__ = ["DEFAULT_BUDGET", "LoopPacer"]

#: Seconds of steps one loop iteration may run back to back while nobody waits.
DEFAULT_BUDGET = 0.0005


class LoopPacer:
    """Heavy steps run back to back within a small per-iteration budget, then one per iteration."""

    __slots__ = (
        "_budget",
        "_busy",
        "_clock",
        "_handed",
        "_holder",
        "_loop",
        "_normal",
        "_since",
        "_urgent",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        budget: float = DEFAULT_BUDGET,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not budget >= 0.0:
            raise ValueError(f"budget must be >= 0 seconds, got {budget!r}")
        self._loop = loop
        self._budget = budget
        self._clock = clock
        # When this iteration's first step started (None: the turn was handed to a waiter
        # that has not run yet, so nobody else may start one).
        self._since: float | None = None
        # True from a step's start until an iteration passes with nobody waiting.
        self._busy = False
        # The task given the turn in this iteration (None: unknown or nobody).
        self._holder: asyncio.Task[object] | None = None
        # The turn was handed to a waiter whose step runs in the iteration of the next
        # _pass_on, ahead of it.
        self._handed = False
        self._urgent: deque[tuple[asyncio.Future[None], asyncio.Task[object] | None]] = deque()
        self._normal: deque[tuple[asyncio.Future[None], asyncio.Task[object] | None]] = deque()

    @property
    def waiting(self) -> int:
        """Steps waiting for their turn (cancelled ones included until skipped)."""
        return len(self._urgent) + len(self._normal)

    async def turn(self, *, urgent: bool = False) -> None:
        """Return when this task may run its step (at once if no step ran this iteration)."""
        task = asyncio.current_task(self._loop)
        if not self._busy:
            self._busy = True
            self._holder = task
            self._since = self._clock() if self._budget else None
            self._loop.call_soon(self._pass_on)
            return
        if task is not None and task is self._holder:
            return  # the same task, still in the iteration it was given: its next step
        since = self._since
        if (
            since is not None
            and not self._urgent
            and not self._normal
            and self._clock() - since < self._budget
        ):
            self._holder = task  # within this iteration's budget, and nobody is ahead
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        (self._urgent if urgent else self._normal).append((waiter, task))
        # Cancelled while waiting: the future is cancelled too and skipped by _pass_on.
        # Cancelled after being handed the turn: _pass_on is already scheduled, so the
        # turn moves on one iteration later.
        await waiter
        if self._budget:
            self._since = self._clock()  # this iteration's budget starts with this step

    def _pass_on(self) -> None:
        """Runs once per iteration while steps wait: hand the turn to the next one."""
        for queue in (self._urgent, self._normal):
            while queue:
                waiter, task = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    # Its step runs in the next iteration; this one has ended for the holder.
                    self._holder = task
                    self._since = None
                    # Scheduled after the waiter's wake-up: the next hand-off happens in
                    # the iteration where that step runs, so the step after it runs in
                    # the iteration after.
                    self._loop.call_soon(self._pass_on)
                    self._handed = True
                    return
        self._holder = None
        if self._handed:
            # The waiter handed the turn ran its step in this iteration, just before: a
            # task arriving later in it must not run one too. Free from the next one.
            self._handed = False
            self._loop.call_soon(self._pass_on)
            return
        self._busy = False
