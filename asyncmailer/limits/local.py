"""The in-process rate limiter: an :class:`aiolimiter.AsyncLimiter` made exact.

``AsyncLimiter(R, 1)`` starts with a full bucket, so some one-second window can hold
about 2R−1 sends — enough for SES to throttle. ``AsyncLimiter(1, 1/R)`` has no burst but
loses every wake-up delay and sustains a few percent under R. This limiter combines:

1. an ``AsyncLimiter`` of one unit plus a small bank (2 ms of sending, at most one unit)
   that spaces units evenly, a hair under R (``pace``), and absorbs late wake-ups; and
2. a sliding log of the units granted in the last second (plus a small ``margin``) that
   refuses any unit that would put more than R units into one window.

Even spacing matters as much as the count: requests granted in a pair or a burst reach the
server spread out by the event loop's other work, and that is how a window overflows.

Callers queue in FIFO order behind an :class:`asyncio.Lock`; only the head of the queue
talks to the bucket, so heavy (many-recipient) messages are not starved by light ones and a
cancelled waiter simply leaves the queue. Waiting uses the event loop's timers (``loop.time``),
so there is no polling and tests can drive it with a controlled clock.
"""

from __future__ import annotations

import asyncio
from collections import deque

from aiolimiter import AsyncLimiter

from asyncmailer.errors import TransportStateError
from asyncmailer.limits.base import AdaptiveRate, RateLimiter, validate_rate

__all__ = ["LocalRateLimiter"]

# Floating-point slack when comparing sums of units against the window capacity.
_EPS = 1e-9


class LocalRateLimiter(RateLimiter):
    """At most ``rate`` units start in any sliding one-second window, sustained at ``rate``.

    Example::

        limiter = LocalRateLimiter(14)          # SES sandbox: 14 recipients/s
        await limiter.open()                    # inside the running loop
        waited = await limiter.acquire(3)       # a message with three recipients

    ``margin`` widens the window slightly (seconds) so that scheduling jitter between the
    grant and the request reaching the server cannot squeeze R+1 starts into a second.
    """

    __slots__ = (
        "_adaptive",
        "_bucket",
        "_cap",
        "_chunk",
        "_lock",
        "_log",
        "_log_units",
        "_loop",
        "bank",
        "margin",
        "pace",
        "window",
    )

    #: Length of the sliding window, seconds.
    window: float
    #: Extra seconds added to the window to absorb jitter after the grant.
    margin: float
    #: Seconds of sending the bucket may bank (at most one unit) to absorb late wake-ups.
    bank: float
    #: Fraction by which the steady pace stays under ``rate`` (slack for jitter).
    pace: float

    def __init__(
        self,
        rate: float,
        *,
        window: float = 1.0,
        margin: float = 0.002,
        pace: float = 0.004,
        bank: float = 0.002,
    ) -> None:
        self._adaptive = AdaptiveRate(validate_rate(rate))
        self.window = validate_rate(window, option="window")
        self.margin = margin
        self.pace = pace
        self.bank = bank
        self._bucket: AsyncLimiter | None = None
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._log: deque[tuple[float, float]] = deque()
        self._log_units = 0.0
        self._cap = 0.0
        self._chunk = 0.0

    def __repr__(self) -> str:
        return f"LocalRateLimiter(rate={self.rate!r}, configured={self._adaptive.configured!r})"

    @property
    def rate(self) -> float:
        """The rate currently enforced, units per second."""
        return self._adaptive.current

    @property
    def configured_rate(self) -> float:
        """The rate asked for, before any throttling back-off."""
        return self._adaptive.configured

    async def open(self) -> None:
        """Create the loop-bound state (bucket, lock) in the running loop."""
        self._loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        self._log.clear()
        self._log_units = 0.0
        self._rebuild()

    async def aclose(self) -> None:
        """Forget the loop-bound state; :meth:`open` may be called again later."""
        self._bucket = None
        self._lock = None
        self._loop = None

    def set_rate(self, rate: float) -> None:
        """Change the configured rate; takes effect for the next unit granted."""
        self._adaptive.reconfigure(validate_rate(rate))
        if self._loop is not None:
            self._rebuild()

    def throttled(self) -> None:
        """Back off after the backend reported the rate exceeded."""
        if self._loop is not None and self._adaptive.on_throttled(self._loop.time()):
            self._rebuild()

    def _rebuild(self) -> None:
        rate = self._adaptive.current
        # Units allowed in one window; at least one so that slow rates still make progress
        # (the bucket then spaces them 1/rate apart).
        self._cap = max(1.0, rate * self.window)
        # Units go through the bucket one at a time. Its capacity is one unit plus a
        # small bank (``bank`` seconds of sending, at most one unit): enough to catch up
        # a late wake-up, too little to release a pair of units together. Pairs and
        # bursts are what a busy event loop squeezes into one window at the server.
        self._chunk = min(1.0, self._cap)
        capacity = self._chunk + min(1.0, rate * self.bank)
        # The bucket paces a little under the rate (``pace``): R+1 grants then span more
        # than a window, so every window keeps slack for the jitter between a grant and
        # its request reaching the server, and the sliding log only binds after jitter.
        self._bucket = AsyncLimiter(capacity, capacity * (1.0 + self.pace) / rate)

    async def acquire(self, weight: int = 1) -> float:
        """Wait for ``weight`` units (FIFO); return the seconds waited."""
        loop, lock = self._loop, self._lock
        if loop is None or lock is None:
            raise TransportStateError("rate limiter used before open()", state="unopened")
        if weight <= 0:
            return 0.0
        start = loop.time()
        async with lock:
            if self._adaptive.tick(loop.time()):
                self._rebuild()
            remaining = float(weight)
            while remaining > _EPS:
                chunk = min(remaining, self._chunk)
                bucket = self._bucket
                assert bucket is not None
                await bucket.acquire(chunk)
                await self._admit(loop, chunk)
                remaining -= chunk
        return loop.time() - start

    async def _admit(self, loop: asyncio.AbstractEventLoop, units: float) -> None:
        """Record ``units`` in the sliding log once the window has room for them."""
        span = self.window + self.margin
        log = self._log
        while True:
            now = loop.time()
            while log and log[0][0] + span <= now:
                self._log_units -= log.popleft()[1]
            if not log:
                self._log_units = 0.0  # no drift from float sums
            if self._log_units + units <= self._cap + _EPS or not log:
                log.append((now, units))
                self._log_units += units
                return
            # Sleep until enough of the oldest grants have left the window.
            excess = self._log_units + units - self._cap
            freed = 0.0
            wake = log[-1][0] + span
            for granted_at, granted in log:
                freed += granted
                if freed >= excess - _EPS:
                    wake = granted_at + span
                    break
            await asyncio.sleep(wake - now)
