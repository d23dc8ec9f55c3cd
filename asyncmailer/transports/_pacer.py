"""Keep a burst of sends from holding the event loop: one heavy step per loop iteration.

A send has two CPU-heavy steps: composing the message, and building, signing and writing
the request. When many sends become ready together (a batch of responses, a ``gather`` of
a thousand ``send_mail`` calls) the event loop would run every ready step back to back
before it gets to anything else: an HTTP handler of the application, a timer, or the task
that writes a request already granted by the rate limiter. :class:`LoopPacer` lets the
first step of an iteration run at once and queues the others; each later iteration hands
the turn to one waiter (``urgent`` ones, about to write a rate-limited request, first).
No timers and no polling: a waiting step costs one future.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["LoopPacer"]


class LoopPacer:
    """At most one heavy step starts per event-loop iteration; the others wait their turn."""

    __slots__ = ("_busy", "_loop", "_normal", "_urgent")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # True from a step's start until an iteration passes with nobody waiting.
        self._busy = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """Steps waiting for their turn (cancelled ones included until skipped)."""
        return len(self._urgent) + len(self._normal)

    async def turn(self, *, urgent: bool = False) -> None:
        """Return when this task may run its step (at once if no step ran this iteration)."""
        if not self._busy:
            self._busy = True
            self._loop.call_soon(self._pass_on)
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        (self._urgent if urgent else self._normal).append(waiter)
        # Cancelled while waiting: the future is cancelled too and skipped by _pass_on.
        # Cancelled after being handed the turn: _pass_on is already scheduled, so the
        # turn moves on one iteration later.
        await waiter

    def _pass_on(self) -> None:
        """Runs once per iteration while steps wait: hand the turn to the next one."""
        for queue in (self._urgent, self._normal):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    # Scheduled after the waiter's wake-up: the next hand-off happens in
                    # the iteration where that step runs, so the step after it runs in
                    # the iteration after.
                    self._loop.call_soon(self._pass_on)
                    return
        self._busy = False
