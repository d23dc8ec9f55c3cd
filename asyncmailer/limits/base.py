"""The rate-limiter interface every transport uses, and the shared adaptive-rate logic.

A rate limiter hands out *units* at a rate: one unit per message for most transports,
one per recipient for SES (SES counts every recipient against its per-second rate).
:class:`~asyncmailer.limits.LocalRateLimiter` is the in-process default;
``RedisRateLimiter`` shares one rate across processes and hosts. Both have this shape.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

from asyncmailer.errors import ConfigurationError

__all__ = ["AdaptiveRate", "Grant", "RateLimiter"]


@dataclass(frozen=True, slots=True)
class Grant:
    """Units handed out by :meth:`RateLimiter.acquire`, and when they count as started.

    The limiter counts every unit for ``window + margin`` seconds from ``at``, and a grant
    is valid for half of ``margin`` (:attr:`expires`): a request that passes its last check
    before then lands inside the window the limiter accounted for, with the other half of
    the margin left for the way from that check to the server (the HTTP layer, the
    network, the server being scheduled). A transport checks
    the grant at the last moment before its request leaves and asks again when it is
    stale (see ``docs/rate-limiting.md``).
    """

    #: Units granted (SES: recipients).
    units: int
    #: Event-loop time (``loop.time()``) at which the units count as started.
    at: float
    #: Seconds the caller waited for them.
    waited: float
    #: Event-loop time after which a request for these units must not leave.
    expires: float
    #: The limiter's own handle on the grant (for :meth:`RateLimiter.renew`).
    token: object = field(default=None, repr=False, compare=False)

    def expired(self, now: float) -> bool:
        """True if a request leaving at ``now`` would fall outside the accounted window."""
        return now > self.expires


class RateLimiter(abc.ABC):
    """Spaces sends so that at most ``rate`` units start in any one-second window.

    Lifecycle: a transport calls :meth:`open` in its ``__aenter__`` (inside the running
    event loop: loop-bound state is created there, never in ``__init__``) and
    :meth:`aclose` when it closes. One limiter may be opened again in a new loop after
    it was closed.
    """

    @property
    @abc.abstractmethod
    def rate(self) -> float:
        """The rate currently enforced, in units per second (after throttling back-off)."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Bind to the running event loop and create connections or timers."""

    @property
    @abc.abstractmethod
    def margin(self) -> float:
        """Seconds added to the window; a grant stays valid for half of them."""

    @property
    def grant_validity(self) -> float:
        """Seconds a grant stays valid: half the margin (see :class:`Grant`)."""
        return self.margin / 2

    @abc.abstractmethod
    async def acquire(self, weight: int = 1) -> Grant:
        """Wait until ``weight`` units may start; return the :class:`Grant`.

        A weight above the per-second rate is allowed: it waits proportionally longer.
        Cancelling a waiting caller gives its place back.
        """

    def renew(self, grant: Grant) -> Grant | None:
        """Re-date a stale ``grant`` to now, if every window then still holds at most R.

        Called at the last moment before a request whose grant went stale would leave.
        Returns the renewed grant, or None when the caller must ask again with
        :meth:`acquire` (the default: a limiter that cannot tell).
        """
        return None

    def discard(self, grant: Grant) -> None:  # noqa: B027 - optional hook
        """Give back a grant whose request never left (it went stale before being written).

        The default keeps it counted, which can only make a window emptier. A limiter
        that can take the units back (``RedisRateLimiter``: its ``release`` script) does,
        so that a stale grant costs no sending rate.
        """

    @abc.abstractmethod
    def set_rate(self, rate: float) -> None:
        """Change the configured rate (for instance after reading the account quota)."""

    @abc.abstractmethod
    def throttled(self) -> None:
        """Report that the backend said the rate was exceeded; the limiter backs off."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release what :meth:`open` created."""


def validate_rate(rate: float, *, option: str = "rate") -> float:
    """Return ``rate`` as a float, or raise :class:`ConfigurationError` if it is not positive."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
        raise ConfigurationError(f"{option} must be a positive number, got {rate!r}", option=option)
    if rate != rate or rate == float("inf"):
        raise ConfigurationError(f"{option} must be finite, got {rate!r}", option=option)
    return float(rate)


@dataclass(slots=True)
class AdaptiveRate:
    """Multiplicative decrease on throttling, gradual recovery afterwards.

    When the backend throttles us although we kept to our rate (another client shares the
    account, or the quota changed), the effective rate drops to ``decrease`` × its value,
    at most once per ``cooldown`` seconds. After ``recover_after`` quiet seconds it climbs
    back by ``increase`` × the configured rate per ``recover_after`` seconds.
    """

    #: The rate asked for (units per second).
    configured: float
    #: Factor applied on each throttling signal.
    decrease: float = 0.7
    #: Recovery step, as a fraction of the configured rate.
    increase: float = 0.1
    #: Seconds without throttling before each recovery step.
    recover_after: float = 2.0
    #: Ignore throttling signals closer together than this (one burst is one event).
    cooldown: float = 1.0
    #: The effective rate never drops below this fraction of the configured one.
    floor: float = 0.05
    #: Current effective rate.
    current: float = 0.0
    _last_change: float = float("-inf")

    def __post_init__(self) -> None:
        self.current = self.configured

    def reconfigure(self, rate: float) -> None:
        """Set a new configured rate; the effective rate never exceeds it."""
        self.configured = rate
        self.current = min(self.current, rate) if self.current else rate

    def on_throttled(self, now: float) -> bool:
        """Register a throttling signal at ``now``; return True if the rate changed."""
        if now - self._last_change < self.cooldown:
            return False
        new = max(self.current * self.decrease, self.configured * self.floor)
        self._last_change = now
        if new == self.current:
            return False
        self.current = new
        return True

    def tick(self, now: float) -> bool:
        """Recover towards the configured rate; return True if the rate changed."""
        if self.current >= self.configured:
            return False
        if now - self._last_change < self.recover_after:
            return False
        self.current = min(self.configured, self.current + self.configured * self.increase)
        self._last_change = now
        return True
