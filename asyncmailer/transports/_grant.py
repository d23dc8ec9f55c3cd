"""The rate grant of the send in progress, checked at the last moment before a request leaves.

A :class:`~asyncmailer.limits.Grant` is valid for the limiter's ``margin``: the limiter
counted its units from ``grant.at`` for ``window + margin`` seconds. Between the grant and
the moment the request leaves, the event loop may run other work (composing, a garbage
collection, another process holding the CPU). :class:`Transport` publishes the grant
of the call in progress here (a context variable, set and reset around that one call);
a transport that can see a later moment than the call itself (SES: botocore's
``before-send`` event, after signing) calls :func:`check_grant` there. A stale grant
raises :class:`GrantExpired` *before* anything is written, and the transport asks the
limiter again, unless the limiter can renew the grant in place (``LocalRateLimiter`` can
while the grant is still in its log). The request is built and signed again too: a signed
request is never held while waiting (SigV4 signatures expire after about five minutes).
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager
from contextvars import ContextVar, Token

from asyncmailer.limits import Grant, RateLimiter

__all__ = ["GrantExpired", "check_grant", "holding"]

_CURRENT: ContextVar[tuple[Grant, asyncio.AbstractEventLoop, RateLimiter] | None] = ContextVar(
    "asyncmailer_current_grant", default=None
)


class GrantExpired(Exception):
    """The grant of this send went stale before its request left; nothing was sent."""

    def __init__(self, age: float) -> None:
        super().__init__(f"rate grant {age * 1000:.1f} ms old when the request was to leave")
        #: Seconds between the grant and the check.
        self.age = age


class _Holding:
    """The context manager of :func:`holding` (a class: cheaper than a generator's)."""

    __slots__ = ("_current", "_token")

    def __init__(self, current: tuple[Grant, asyncio.AbstractEventLoop, RateLimiter] | None):
        self._current = current
        self._token: Token[tuple[Grant, asyncio.AbstractEventLoop, RateLimiter] | None] | None
        self._token = None

    def __enter__(self) -> None:
        self._token = _CURRENT.set(self._current)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _CURRENT.reset(self._token)
            self._token = None


def holding(
    grant: Grant | None, loop: asyncio.AbstractEventLoop, limiter: RateLimiter | None
) -> AbstractContextManager[None]:
    """Publish ``grant`` as the current task's grant for the duration of one backend call."""
    return _Holding(None if grant is None or limiter is None else (grant, loop, limiter))


def check_grant() -> bool:
    """Check the current task's grant (no grant: nothing to do); True if it was renewed.

    A stale grant is renewed in place when its limiter can (:meth:`RateLimiter.renew`);
    otherwise :class:`GrantExpired` is raised, and nothing has been written yet.
    """
    current = _CURRENT.get()
    if current is None:
        return False
    grant, loop, limiter = current
    now = loop.time()
    if not grant.expired(now):
        return False
    renewed = limiter.renew(grant)
    if renewed is None:
        raise GrantExpired(now - grant.at)
    _CURRENT.set((renewed, loop, limiter))
    return True
