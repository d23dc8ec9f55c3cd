"""The in-process rate limiter: an :class:`aiolimiter.AsyncLimiter` made exact.

``AsyncLimiter(R, 1)`` starts with a full bucket, so some one-second window can hold
about 2R−1 sends — enough for SES to throttle. ``AsyncLimiter(1, 1/R)`` has no burst but
loses every wake-up delay and sustains a few percent under R. This limiter combines:

1. an ``AsyncLimiter`` of one unit plus a small bank (2 ms of sending, at most one unit)
   that spaces units evenly, a hair under R (``pace``), and absorbs late wake-ups; and
2. a sliding log of the grants of the last ``window + margin`` seconds that refuses any
   grant that would put more than R units into it. A grant is dated when its last unit
   passed the bucket, and is valid for ``margin`` seconds (:class:`~asyncmailer.limits.Grant`):
   a request that leaves within its validity lands in the window the log accounted for.

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

from asyncmailer.errors import ConfigurationError, TransportStateError
from asyncmailer.limits.base import AdaptiveRate, Grant, RateLimiter, validate_rate

__all__ = ["LocalRateLimiter"]

# Floating-point slack when comparing sums of units against the window capacity.
_EPS = 1e-9


class _Entry:
    """One grant in the sliding log."""

    __slots__ = ("at", "expires", "live", "units")

    def __init__(self, at: float, expires: float, units: float) -> None:
        #: When the grant's units count as started.
        self.at = at
        #: When the grant leaves the log (its time + window + margin).
        self.expires = expires
        self.units = units
        #: Still in the log (a renewal may only move a live entry).
        self.live = True


class LocalRateLimiter(RateLimiter):
    """At most ``rate`` units start in any sliding one-second window, sustained at ``rate``.

    Example::

        limiter = LocalRateLimiter(14)          # SES sandbox: 14 recipients/s
        await limiter.open()                    # inside the running loop
        grant = await limiter.acquire(3)        # a message with three recipients

    ``margin`` (seconds) is how long a grant stays valid: the log counts each grant for
    ``window + margin``, so a request that leaves up to ``margin`` after its grant still
    lands in the window the log accounted for. The transports check the grant at the last
    moment before the request leaves and ask again when it is older (``docs/rate-limiting.md``).
    A wider margin tolerates longer stalls but costs sustained rate: ``rate / (1 + margin)``.
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
        "_not_before",
        "bank",
        "margin",
        "pace",
        "window",
    )

    #: Length of the sliding window, seconds.
    window: float
    #: Seconds a grant stays valid; each grant is counted for ``window + margin``.
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
        margin: float = 0.01,
        pace: float = 0.004,
        bank: float = 0.002,
    ) -> None:
        self._adaptive = AdaptiveRate(validate_rate(rate))
        self.window = validate_rate(window, option="window")
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
            raise ConfigurationError(f"margin must be >= 0, got {margin!r}", option="margin")
        self.margin = float(margin)
        self.pace = pace
        self.bank = bank
        self._bucket: AsyncLimiter | None = None
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # The grants of the last window + margin, in grant order (and so expiry order).
        self._log: deque[_Entry] = deque()
        self._log_units = 0.0
        # No grant before this loop time: the rest of the last heavy grant's spacing.
        self._not_before = float("-inf")
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
        for entry in self._log:
            entry.live = False
        self._log.clear()
        self._log_units = 0.0
        self._not_before = float("-inf")
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
        # its request reaching the server.
        self._bucket = AsyncLimiter(capacity, capacity * (1.0 + self.pace) / rate)

    async def acquire(self, weight: int = 1) -> Grant:
        """Wait for ``weight`` units (FIFO); return the :class:`~asyncmailer.limits.Grant`.

        A heavy grant's units all count at the grant (its request leaves then, with all its
        recipients, which is when the server counts them); the next grant waits for the
        rest of its spacing.
        """
        loop, lock = self._loop, self._lock
        if loop is None or lock is None:
            raise TransportStateError("rate limiter used before open()", state="unopened")
        start = loop.time()
        if weight <= 0:
            return Grant(units=0, at=start, waited=0.0, expires=float("inf"))
        async with lock:
            if self._adaptive.tick(loop.time()):
                self._rebuild()
            # A heavy grant's spacing is paid after it, as in GCRA: the next grant waits
            # ``weight`` units' worth of pacing. Paid before it instead, windows
            # ending at a light grant would hold the heavy one's units *and* the time they
            # paid for, and the log would have to cut them.
            delay = self._not_before - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            bucket = self._bucket
            assert bucket is not None
            await bucket.acquire(min(float(weight), self._chunk))
            entry = await self._admit(loop, float(weight))
            at = entry.at
            if weight > self._chunk:
                self._not_before = at + weight * (1.0 + self.pace) / self._adaptive.current
        return Grant(
            units=weight, at=at, waited=at - start, expires=at + self.grant_validity, token=entry
        )

    def renew(self, grant: Grant) -> Grant | None:
        """Re-date a stale grant to now while it is still in the log; else None.

        Moving a grant that is still counted to a later time keeps every window within the
        rate: each grant admitted since was checked against a window that held this one.
        A grant that already left the log (older than ``window + margin``) is not renewed.
        """
        entry = grant.token
        loop = self._loop
        if not isinstance(entry, _Entry) or not entry.live or loop is None:
            return None
        now = loop.time()
        if now >= entry.expires:
            return None
        # It is the most recent grant now: the end of the log keeps it in expiry order.
        self._log.remove(entry)
        entry.at = now
        entry.expires = now + self.window + self.margin
        self._log.append(entry)
        return Grant(
            units=grant.units,
            at=now,
            waited=grant.waited,
            expires=now + self.grant_validity,
            token=entry,
        )

    async def _admit(self, loop: asyncio.AbstractEventLoop, units: float) -> _Entry:
        """Record ``units`` in the sliding log once it has room; return the log entry.

        Each grant stays in the log for ``window + margin`` seconds. A grant larger than
        the window's capacity is admitted alone, into an empty log.
        """
        span = self.window + self.margin
        log = self._log
        while True:
            now = loop.time()
            while log and log[0].expires <= now:
                gone = log.popleft()
                gone.live = False
                self._log_units -= gone.units
            if not log:
                self._log_units = 0.0  # no drift from float sums
            if self._log_units + units <= self._cap + _EPS or not log:
                entry = _Entry(now, now + span, units)
                log.append(entry)
                self._log_units += units
                return entry
            # Sleep until enough of the oldest grants have left the log.
            excess = self._log_units + units - self._cap
            freed = 0.0
            wake = log[-1].expires
            for old in log:
                freed += old.units
                if freed >= excess - _EPS:
                    wake = old.expires
                    break
            await asyncio.sleep(wake - now)
