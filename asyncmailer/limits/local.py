"""The in-process rate limiter: an :class:`aiolimiter.AsyncLimiter` made exact.

``AsyncLimiter(R, 1)`` starts with a full bucket, so some one-second window can hold
about 2R−1 sends — enough for SES to throttle. ``AsyncLimiter(1, 1/R)`` has no burst but
loses every wake-up delay and sustains a few percent under R. This limiter combines:

1. an ``AsyncLimiter`` of one unit plus a small bank (2 ms of sending, at most one unit)
   that spaces units evenly, a hair under R (``pace``), and absorbs late wake-ups; and
2. a sliding log of the units granted in the last second (plus a small ``margin``) that
   refuses any unit that would put more than R units into one window. When the transport
   reports the moment a granted request actually leaves (:meth:`mark_sent`), the log holds
   that moment instead of the grant, so windows are counted as the server counts them.

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
from contextvars import ContextVar

from aiolimiter import AsyncLimiter

from asyncmailer.errors import TransportStateError
from asyncmailer.limits.base import AdaptiveRate, RateLimiter, validate_rate

__all__ = ["LocalRateLimiter"]

# Floating-point slack when comparing sums of units against the window capacity.
_EPS = 1e-9


class _Entry:
    """One grant in the sliding log."""

    __slots__ = ("at", "cold", "expires", "in_log", "units")

    def __init__(self, at: float, units: float, expires: float, cold: bool) -> None:
        #: When the units started: the grant, then when the request left or was answered.
        self.at = at
        self.units = units
        #: When the units leave the window (``at`` + window + margin).
        self.expires = expires
        #: Granted in the first window after an idle spell (see ``mark_done``).
        self.cold = cold
        self.in_log = True


def _expiry(entry: _Entry) -> float:
    return entry.expires


# The calling task's latest grant: its limiter, its task (a task created later inherits
# the variable, not the grant) and its log entries, which mark_sent() and mark_done() move.
_LATEST_GRANT: ContextVar[
    tuple[LocalRateLimiter, asyncio.Task[object] | None, list[_Entry]] | None
] = ContextVar("asyncmailer_latest_grant", default=None)


class LocalRateLimiter(RateLimiter):
    """At most ``rate`` units start in any sliding one-second window, sustained at ``rate``.

    Example::

        limiter = LocalRateLimiter(14)          # SES sandbox: 14 recipients/s
        await limiter.open()                    # inside the running loop
        waited = await limiter.acquire(3)       # a message with three recipients

    ``margin`` widens the window slightly (seconds) so that scheduling jitter between the
    grant and the request reaching the server cannot squeeze R+1 starts into a second.
    Units granted in the first window after an idle spell (nothing granted for a window)
    are counted from the answer to their request (:meth:`mark_done`): those
    requests may open new connections (a TLS handshake), so when they reached the server
    is only bounded by their answer. This costs at most one round trip once per burst,
    nothing while sending steadily.
    """

    __slots__ = (
        "_adaptive",
        "_bucket",
        "_burst_end",
        "_cap",
        "_chunk",
        "_last_grant",
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
        self._log: deque[_Entry] = deque()
        self._burst_end = float("-inf")
        self._last_grant = float("-inf")
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
        for entry in self._log:
            entry.in_log = False
        self._log.clear()
        self._burst_end = self._last_grant = float("-inf")
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
            entries: list[_Entry] = []
            while remaining > _EPS:
                chunk = min(remaining, self._chunk)
                bucket = self._bucket
                assert bucket is not None
                await bucket.acquire(chunk)
                entries.append(await self._admit(loop, chunk))
                remaining -= chunk
        _LATEST_GRANT.set((self, asyncio.current_task(), entries))
        return loop.time() - start

    def mark_sent(self) -> None:
        """Move this task's latest grant to the current time (its request is leaving).

        Between a grant and the request's write the event loop may run other work; counting
        the unit from the later moment keeps the window exact as the server sees it.
        """
        entries = self._latest()
        if entries:
            self._move(entries)

    def mark_done(self) -> None:
        """This task's latest request was answered: count a burst's first units from now.

        Only units granted in the first window after an idle spell move (their requests
        may have waited for new connections); steady sending is unaffected.
        """
        entries = self._latest()
        if entries and entries[0].cold:
            self._move(entries)

    def _latest(self) -> list[_Entry] | None:
        latest = _LATEST_GRANT.get()
        if latest is None or latest[0] is not self or self._loop is None:
            return None
        if latest[1] is not asyncio.current_task():
            return None
        return latest[2]

    def _move(self, entries: list[_Entry]) -> None:
        assert self._loop is not None
        # A heavy message's units were granted one after another: shift them all by the
        # delay since the last one, keeping their spacing (collapsing them onto one moment
        # would make the next message wait for the whole of its window again).
        delay = self._loop.time() - entries[-1].at
        if delay <= 0:
            return
        moving = {id(entry) for entry in entries if entry.in_log}
        for entry in entries:
            entry.at += delay
            entry.expires += delay
        # Keep the log in expiry order: the moved entries are among the most recent, so
        # take the tail off down to the oldest of them, sort it and put it back.
        log = self._log
        tail: list[_Entry] = []
        while moving and log:
            entry = log.pop()
            moving.discard(id(entry))
            tail.append(entry)
        tail.sort(key=_expiry)
        log.extend(tail)

    async def _admit(self, loop: asyncio.AbstractEventLoop, units: float) -> _Entry:
        """Record ``units`` in the sliding log once the window has room; return the entry.

        The log is in expiry order (:meth:`_move` keeps it so); an entry leaves it
        ``window + margin`` after its time.
        """
        span = self.window + self.margin
        log = self._log
        while True:
            now = loop.time()
            while log and log[0].expires <= now:
                gone = log.popleft()
                gone.in_log = False
                self._log_units -= gone.units
            if not log:
                self._log_units = 0.0  # no drift from float sums
            if self._log_units + units <= self._cap + _EPS or not log:
                # A burst after an idle spell: nothing granted for a window, nor for 1.5
                # times the steady spacing (slow rates).
                if now - self._last_grant > max(self.window, 1.5 / self._adaptive.current):
                    self._burst_end = now + self.window
                self._last_grant = now
                entry = _Entry(now, units, now + span, cold=now < self._burst_end)
                log.append(entry)
                self._log_units += units
                return entry
            # Sleep until enough of the oldest grants have left the window.
            excess = self._log_units + units - self._cap
            freed = 0.0
            wake = log[-1].expires
            for entry in log:
                freed += entry.units
                if freed >= excess - _EPS:
                    wake = entry.expires
                    break
            await asyncio.sleep(wake - now)
