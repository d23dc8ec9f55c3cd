"""The Redis-backed rate limiter: one sending rate shared by every process and host.

SES's sending quota belongs to the AWS account (per region), not to a process: four
uvicorn workers each limited to 14/s send 56/s together and get throttled.
:class:`RedisRateLimiter` keeps the schedule in Redis so that all of them together stay
under the account's rate. Example::

    limiter = RedisRateLimiter("redis://redis:6379/0", key="ses:123456789012:eu-west-1", rate=14)
    async with SESTransport(region_name="eu-west-1", limits=Limits(rate_limiter=limiter)) as ses:
        await ses.send_mail(...)

How a unit is granted (one round trip, atomic on the Redis server, see :data:`LUA_SCRIPT`):

* The script reads the Redis server's clock (``TIME``), never the hosts' clocks, and
  *reserves* a start time ``S`` for the request: the earliest time that keeps both rules
  below. It records the reservation and answers "go in X µs"; the client sleeps exactly that
  long. Nobody polls: one ``EVALSHA`` per message, whatever the contention, and the
  reservations form one FIFO queue across all processes (fair, no thundering herd).
* **Spacing** (GCRA): unit after unit is spaced ``1/rate`` apart, with a small ``bank`` so
  that a late wake-up does not lose its slot. A heavy message (``weight`` recipients)
  moves the next slot ``weight/rate`` later: it waits proportionally.
* **Window cap** (a sliding log in a sorted set): the units whose start times fall in any
  ``window + margin`` seconds never exceed ``rate × window``. A weight above that is
  allowed, alone in its window. ``margin`` absorbs the delay between the grant on the Redis
  server and the request reaching SES, so the window also holds where SES measures it.

Inside one process, callers queue behind an :class:`asyncio.Lock` (FIFO) and only the
head of the queue holds a reservation, so Redis sees at most one request per process at a
time. A caller cancelled while it waits gives its reservation back (best effort).

The rate, the effective rate after throttling back-off (:meth:`RedisRateLimiter.throttled`,
the same rules as :class:`~asyncmailer.limits.AdaptiveRate`) and the schedule live in two
keys: the hash ``key`` and the sorted set ``key + ":log"`` (use a hash tag such as
``ses:{123456789012:eu-west-1}`` on Redis Cluster). Both expire after ``idle_ttl`` seconds
without use.

When Redis fails, ``on_redis_error`` decides: ``"fail"`` raises
:class:`~asyncmailer.errors.RateLimiterError` (nothing is sent), ``"local"`` continues with
an in-process :class:`~asyncmailer.limits.LocalRateLimiter` at ``fallback_share`` of the
rate. Either way Redis is tried again at most every ``reconnect_interval`` seconds. The
limiter only decides *when* a request starts, so a Redis failure never loses or duplicates
a message. See ``docs/scale-out.md``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Literal

import anyio

from asyncmailer.errors import ConfigurationError, RateLimiterError, TransportStateError
from asyncmailer.limits.base import AdaptiveRate, Grant, RateLimiter, validate_rate
from asyncmailer.limits.local import LocalRateLimiter

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["LUA_SCRIPT", "RedisErrorPolicy", "RedisRateLimiter"]

logger = logging.getLogger("asyncmailer.limits")

#: What :meth:`RedisRateLimiter.acquire` does when Redis cannot be reached.
RedisErrorPolicy = Literal["fail", "local"]

# Seconds before its start at which a waiter lets the next caller of its process reserve:
# at most two reservations per process, and the next round trip overlaps the current wait.
_HANDOFF = 0.01

# How fast the offset between the Redis server's clock and a host's monotonic clock may
# drift, seconds per second (100 ppm: well above what NTP's slewing does in practice).
_DRIFT = 1e-4

INSTALL_HINT = "RedisRateLimiter needs the redis package: pip install 'asyncmailer[redis]'"

#: The Lua script behind every decision, run with ``EVALSHA`` (loaded once per server).
#:
#: ``KEYS``: the state hash and the log (sorted set: member ``"<seq>:<weight>"``, score
#: the reserved start time in µs of server time). ``ARGV``: operation (``acquire``,
#: ``throttle``, ``release``, ``sync``), weight, the caller's configured rate (0: unknown),
#: whether to store that rate (``"1"``), the caller's settings (one string: window µs,
#: margin µs, bank µs, idle TTL ms, back-off decrease, recovery increase, recover-after
#: µs, cooldown µs, floor), and for ``release`` the member. Answer: ``{status, delay µs,
#: member, effective rate, configured rate}``; status 0 means no rate is known yet.
#:
#: Invariant: reservations are made in non-decreasing order of start time, so every entry
#: of the log is at or before the next start time and the log is a queue: entries leave it
#: from the front once they can no longer share a window with any future start. ``wsum``
#: (the log's total weight) is kept alongside, so a decision costs O(log n) unless the
#: window is full, when the script walks the front of the log just far enough to free room.
LUA_SCRIPT = r"""
local state, log = KEYS[1], KEYS[2]
local op = ARGV[1]
local function num(x) return string.format('%.17g', x) end
local function weight(member)
  return tonumber(string.sub(member, string.find(member, ':', 1, true) + 1))
end
-- ARGV[5]: window µs, margin µs, bank µs, idle TTL ms, decrease, increase, recover-after
-- µs, cooldown µs, floor; one space-separated string (fewer arguments to encode per call).
local cfg = {}
for x in string.gmatch(ARGV[5], '%S+') do cfg[#cfg + 1] = tonumber(x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local f = redis.call('HMGET', state, 'rate', 'eff', 'tat', 'last', 'wsum', 'changed', 'seq',
  'lastm', 'ptat')
local rate, eff = tonumber(f[1]), tonumber(f[2])
local asked = tonumber(ARGV[3])
if asked > 0 and (rate == nil or ARGV[4] == '1') then
  -- A new configured rate: an unthrottled limiter follows it, a backed-off one keeps its
  -- lower effective rate and recovers gradually.
  if eff == nil or rate == nil or eff >= rate then eff = asked else eff = math.min(eff, asked) end
  rate = asked
end
if rate == nil then return {0, 0, '', '0', '0'} end
if eff == nil then eff = rate end
local tat = tonumber(f[3]) or 0
local last = tonumber(f[4]) or 0
local wsum = tonumber(f[5]) or 0
local changed = tonumber(f[6]) or 0
local seq = tonumber(f[7]) or 0
local lastm = f[8] or ''
local ptat = tonumber(f[9]) or 0

-- Drop the entries that no window ending at or after `upto + span` can contain.
local function trim(upto)
  local old = redis.call('ZRANGEBYSCORE', log, '-inf', num(upto))
  if #old > 0 then
    for i = 1, #old do wsum = wsum - weight(old[i]) end
    redis.call('ZREMRANGEBYSCORE', log, '-inf', num(upto))
  end
end

-- The score of the oldest entry whose removal (with all before it) frees `excess` units;
-- nil and the log's true total when the whole log frees less (wsum was stale).
local function scan(excess)
  local freed, offset = 0, 0
  while true do
    local batch = redis.call('ZRANGE', log, offset, offset + 63, 'WITHSCORES')
    if #batch == 0 then return nil, freed end
    for i = 1, #batch, 2 do
      freed = freed + weight(batch[i])
      if freed >= excess - 1e-9 then return tonumber(batch[i + 1]), freed end
    end
    offset = offset + 64
  end
end

local delay, member = 0, ''
if op == 'acquire' then
  if eff < rate and now - changed >= cfg[7] then
    eff = math.min(rate, eff + rate * cfg[6])
    changed = now
  end
  local w = tonumber(ARGV[2])
  local window = cfg[1]
  local span = window + cfg[2]
  local cap = math.max(1, eff * window / 1000000)
  local room = math.max(cap, w)
  local s = math.max(now, last, tat - cfg[3])
  trim(s - span)
  local excess = wsum + w - room
  if excess > 1e-9 then
    local found, total = scan(excess)
    if found == nil then
      wsum = total
      excess = wsum + w - room
      if excess > 1e-9 then found = scan(excess) end
    end
    if found ~= nil then
      s = math.max(s, found + span)
      trim(s - span)
    end
  end
  seq = seq + 1
  member = string.format('%d:%d', seq, w)
  redis.call('ZADD', log, num(s), member)
  wsum = wsum + w
  ptat = tat
  tat = math.max(tat, s) + w * 1000000 / eff
  last, lastm = s, member
  delay = math.ceil(s - now)
elseif op == 'throttle' then
  if now - changed >= cfg[8] then
    eff = math.max(eff * cfg[5], rate * cfg[9])
    changed = now
  end
elseif op == 'release' then
  local m = ARGV[6]
  if redis.call('ZREM', log, m) == 1 then
    wsum = wsum - weight(m)
    -- Still the newest reservation: nobody was spaced after it, take its slot back.
    if m == lastm then tat = ptat end
  end
end
redis.call('HSET', state, 'rate', num(rate), 'eff', num(eff), 'tat', num(tat), 'last', num(last),
  'wsum', num(wsum), 'changed', num(changed), 'seq', num(seq), 'lastm', lastm, 'ptat', num(ptat))
redis.call('PEXPIRE', state, cfg[4])
redis.call('PEXPIRE', log, cfg[4])
return {1, delay, member, num(eff), num(rate), num(now)}
"""


def _redis_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "Redis failed"; ImportError with the install hint if absent."""
    try:
        from redis.exceptions import RedisError  # optional dependency: imported lazily
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return (RedisError, OSError, TimeoutError)


class RedisRateLimiter(RateLimiter):
    """At most ``rate`` units start in any sliding window, across every process sharing ``key``.

    Example::

        limiter = RedisRateLimiter(
            "redis://localhost:6379/0", key="ses:123456789012:eu-west-1", rate=14
        )
        async with SESTransport(limits=Limits(rate_limiter=limiter), max_connections=10) as ses:
            ...

    - ``url_or_client``: a Redis URL (the limiter creates the client in :meth:`open` and
      closes it in :meth:`aclose`) or an existing ``redis.asyncio.Redis`` client (used as
      is, never closed by the limiter).
    - ``key``: one key per SES account and region, e.g. ``"ses:<account-id>:<region>"``;
      every process that shares the quota must use the same key.
    - ``rate``: units per second. :meth:`open` stores it in Redis (the last process to
      open or call :meth:`set_rate` wins, so give every process the same value). Leave it
      ``None`` to follow the rate already stored, e.g. with ``sending_rate="auto"``, where
      the transport calls :meth:`set_rate` with the account's quota.
    - ``window``, ``margin``, ``bank``: as for :class:`~asyncmailer.limits.LocalRateLimiter`;
      ``margin`` is larger here because the grant and the request are further apart.
    - ``on_redis_error``: ``"fail"`` (raise :class:`~asyncmailer.errors.RateLimiterError`,
      send nothing) or ``"local"`` (continue at ``fallback_share`` × rate in this process).
    - ``reconnect_interval``: seconds between attempts to reach Redis again after a failure.
    - ``timeout``: seconds one Redis call may take before it counts as a failure.
    - ``idle_ttl``: seconds after the last use at which Redis forgets the shared state.
    """

    __slots__ = (
        "_client",
        "_client_given",
        "_configured",
        "_declared",
        "_dirty",
        "_effective",
        "_errors",
        "_fallback",
        "_last_error",
        "_lock",
        "_loop",
        "_next_probe",
        "_offset",
        "_rate_generation",
        "_rng",
        "_settings",
        "_sha",
        "_tasks",
        "_url",
        "adaptive",
        "bank",
        "fallback_share",
        "idle_ttl",
        "key",
        "log_key",
        "margin",
        "on_redis_error",
        "reconnect_interval",
        "timeout",
        "window",
    )

    #: The Redis hash holding the shared rate and schedule.
    key: str
    #: The Redis sorted set of recent reservations (``key + ":log"``).
    log_key: str
    #: Length of the sliding window, seconds.
    window: float
    #: Extra seconds added to the window for the delay between the grant and the request.
    margin: float
    #: Seconds of sending a late process may catch up on.
    bank: float
    #: ``"fail"`` or ``"local"``: what happens when Redis cannot be reached.
    on_redis_error: RedisErrorPolicy
    #: Share of the rate this process uses on its own while Redis is unreachable (``"local"``).
    fallback_share: float
    #: Seconds between attempts to reach Redis again after a failure.
    reconnect_interval: float
    #: Seconds one Redis call may take.
    timeout: float
    #: Seconds of disuse after which Redis drops the keys.
    idle_ttl: float
    #: Back-off and recovery parameters (``decrease``, ``increase``, ``recover_after``,
    #: ``cooldown``, ``floor``), applied on the Redis server to the shared rate.
    adaptive: AdaptiveRate

    def __init__(
        self,
        url_or_client: str | Redis,
        *,
        key: str,
        rate: float | None = None,
        window: float = 1.0,
        margin: float = 0.01,
        bank: float = 0.02,
        on_redis_error: RedisErrorPolicy = "fail",
        fallback_share: float = 1.0,
        reconnect_interval: float = 1.0,
        timeout: float = 1.0,
        idle_ttl: float = 3600.0,
    ) -> None:
        self._errors = _redis_errors()
        if isinstance(url_or_client, str):
            self._url: str | None = url_or_client
            self._client_given: Redis | None = None
        else:
            if not hasattr(url_or_client, "evalsha"):
                raise ConfigurationError(
                    "url_or_client must be a Redis URL or a redis.asyncio.Redis client, "
                    f"not {type(url_or_client).__name__}",
                    option="url_or_client",
                )
            self._url = None
            self._client_given = url_or_client
        if not isinstance(key, str) or not key:
            raise ConfigurationError("key must be a non-empty string", option="key")
        if on_redis_error not in ("fail", "local"):
            raise ConfigurationError(
                f"on_redis_error must be 'fail' or 'local', not {on_redis_error!r}",
                option="on_redis_error",
            )
        if not 0 < fallback_share <= 1:
            raise ConfigurationError("fallback_share must be in (0, 1]", option="fallback_share")
        if margin < 0 or bank < 0:
            raise ConfigurationError("margin and bank must be >= 0", option="margin")
        configured = 0.0 if rate is None else validate_rate(rate)
        self.key = key
        self.log_key = key + ":log"
        self.window = validate_rate(window, option="window")
        self.margin = float(margin)
        self.bank = float(bank)
        self.on_redis_error = on_redis_error
        self.fallback_share = float(fallback_share)
        self.reconnect_interval = validate_rate(reconnect_interval, option="reconnect_interval")
        self.timeout = validate_rate(timeout, option="timeout")
        self.idle_ttl = validate_rate(idle_ttl, option="idle_ttl")
        self.adaptive = AdaptiveRate(configured or 1.0)
        self._configured = configured
        self._effective = configured
        # Whether this process declares the rate (stored at every open) or follows Redis.
        self._declared = rate is not None
        # Our configured rate must be written to Redis (at open, and after set_rate).
        self._dirty = self._declared
        self._rate_generation = 0
        self._client: Redis | None = None
        self._sha: str | None = None
        self._settings = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._fallback: LocalRateLimiter | None = None
        self._next_probe = float("-inf")
        # The best recent estimate of (Redis clock - this loop's clock): (offset, error
        # bound, loop time of the sample). See _observe() and _place().
        self._offset: tuple[float, float, float] | None = None
        self._last_error: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._rng = random.Random()

    def __repr__(self) -> str:
        return (
            f"RedisRateLimiter(key={self.key!r}, rate={self.rate!r}, "
            f"configured={self._configured!r}, on_redis_error={self.on_redis_error!r})"
        )

    # ------------------------------------------------------------------ state

    @property
    def rate(self) -> float:
        """The rate enforced, units per second: the shared effective rate as last seen.

        While the ``"local"`` fallback is active, the rate this process uses on its own.
        0.0 until a rate is known (``rate=None`` and nothing stored in Redis yet).
        """
        if self._fallback is not None:
            return self._fallback.rate
        return self._effective

    @property
    def configured_rate(self) -> float:
        """The shared configured rate as last seen, before any throttling back-off."""
        return self._configured

    @property
    def using_fallback(self) -> bool:
        """True while Redis is unreachable and the in-process fallback decides."""
        return self._fallback is not None

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Create the Redis client in the running loop, load the script, store the rate.

        With ``on_redis_error="fail"`` an unreachable Redis raises
        :class:`~asyncmailer.errors.RateLimiterError` here; with ``"local"`` the limiter
        starts on its fallback and keeps trying to reach Redis.
        """
        if self._client is not None:  # opened again without aclose(): start afresh
            await self.aclose()
        self._loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        self._fallback = None
        self._next_probe = float("-inf")
        self._offset = None
        self._dirty = self._dirty or self._declared
        ad = self.adaptive
        self._settings = " ".join(
            (
                _us(self.window),
                _us(self.margin),
                _us(self.bank),
                str(max(1, round(self.idle_ttl * 1000))),
                repr(ad.decrease),
                repr(ad.increase),
                _us(ad.recover_after),
                _us(ad.cooldown),
                repr(ad.floor),
            )
        )
        if self._client_given is not None:
            self._client = self._client_given
        else:
            self._client = _client_from_url(self._url or "", self.timeout)
        try:
            await self._call("sync")
        except self._errors as exc:
            if self.on_redis_error == "fail":
                await self.aclose()
                raise RateLimiterError(
                    f"cannot reach Redis for rate limiter key {self.key!r}: {exc}"
                ) from exc
            await self._enter_fallback(exc)

    async def aclose(self) -> None:
        """Stop background writes and close the client if the limiter created it."""
        tasks, self._tasks = self._tasks, set()
        if tasks:
            # Give pending writes (released reservations, throttling) a moment to land.
            _done, pending = await asyncio.wait(tasks, timeout=self.timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None and client is not self._client_given:
            closer = getattr(client, "aclose", None) or client.close
            try:
                await closer()
            except Exception:  # closing a client whose server is gone must not raise
                logger.debug("asyncmailer: error closing the Redis client", exc_info=True)
        fallback, self._fallback = self._fallback, None
        if fallback is not None:
            await fallback.aclose()
        self._lock = None
        self._loop = None

    # ------------------------------------------------------------------ rate changes

    def set_rate(self, rate: float) -> None:
        """Change the shared configured rate: every process sharing ``key`` follows it.

        The write happens in the background (this method is synchronous, like the
        interface); this process uses the new rate at once, and if Redis cannot be
        reached the next successful call carries it.
        """
        rate = validate_rate(rate)
        old = self._configured
        self._configured = rate
        self._effective = rate if self._effective >= old else min(self._effective, rate)
        self.adaptive.reconfigure(rate)
        self._dirty = True
        self._rate_generation += 1
        if self._fallback is not None:
            self._fallback.set_rate(rate * self.fallback_share)
        elif self._client is not None:
            self._spawn(self._background_call("sync"))

    def throttled(self) -> None:
        """Report throttling: the shared effective rate backs off (once per cooldown)."""
        if self._fallback is not None:
            self._fallback.throttled()
        elif self._client is not None:
            self._spawn(self._background_call("throttle"))

    async def refresh(self) -> float:
        """Write a pending :meth:`set_rate`, read the shared rate, return the effective rate.

        Raises :class:`~asyncmailer.errors.RateLimiterError` if Redis cannot be reached or
        no rate is known yet.
        """
        self._check_open()
        if self._tasks:  # let set_rate / throttled / release writes land first
            await asyncio.wait(set(self._tasks), timeout=self.timeout)
        try:
            await self._call("sync")
        except self._errors as exc:
            raise RateLimiterError(f"cannot reach Redis for key {self.key!r}: {exc}") from exc
        if not self._effective:
            raise RateLimiterError(f"no rate is stored in Redis for key {self.key!r}")
        return self._effective

    # ------------------------------------------------------------------ acquiring

    async def acquire(self, weight: int = 1) -> Grant:
        """Wait until ``weight`` units may start (FIFO in this process); return the grant.

        The grant is dated at the start time Redis reserved for it (in this process's
        clock, the earliest it can be), not when this task woke up: a late wake-up or a
        slow round trip eats into its validity. It is never returned before that start
        (the latest it can be), so no request leaves ahead of its place in the schedule.

        Raises :class:`~asyncmailer.errors.RateLimiterError` when Redis is unreachable and
        the policy is ``"fail"``, or when no rate is known.
        """
        loop, lock = self._check_open()
        weight = math.ceil(weight)  # whole units: the log records integers
        start = loop.time()
        if weight <= 0:
            return Grant(units=0, at=start, waited=0.0, expires=float("inf"))
        await lock.acquire()
        locked = True
        try:
            if loop.time() >= self._next_probe:
                asked_at = loop.time()
                try:
                    reply = await self._call("acquire", weight)
                except self._errors as exc:
                    await self._on_failure(exc)
                    if self.on_redis_error == "fail":
                        raise RateLimiterError(
                            f"the shared rate limiter is unavailable (Redis: {exc}); "
                            "nothing was sent"
                        ) from exc
                else:
                    replied_at = loop.time()
                    if self._fallback is not None:
                        await self._leave_fallback()
                    if not reply[0]:
                        raise RateLimiterError(
                            f"no rate is known for key {self.key!r}: pass rate= or call set_rate()"
                        )
                    # The reserved start, as an interval in this process's clock: the
                    # request waits for its end (it never leaves before its reserved
                    # start, however slowly the question reached Redis) and the grant is
                    # dated at its beginning (it never looks younger than it is).
                    reserved, deadline = self._place(
                        asked_at, replied_at, int(reply[1]) / 1e6, _server_time(reply)
                    )
                    try:
                        # Hand the queue to the next caller shortly before our start, so
                        # that its round trip overlaps our wait instead of following it.
                        if deadline - _HANDOFF > loop.time():
                            await asyncio.sleep(deadline - _HANDOFF - loop.time())
                        lock.release()
                        locked = False
                        if deadline > loop.time():
                            await asyncio.sleep(deadline - loop.time())
                    except asyncio.CancelledError:
                        self._spawn(self._background_call("release", member=reply[2]))
                        raise
                    at = max(reserved, start)
                    return Grant(
                        units=weight,
                        at=at,
                        waited=at - start,
                        expires=at + self.grant_validity,
                        token=reply[2],
                    )
            elif self.on_redis_error == "fail":
                raise RateLimiterError(
                    f"the shared rate limiter is unavailable (Redis: {self._last_error}; next "
                    f"attempt in {self._next_probe - loop.time():.2f}s); nothing was sent"
                )
            fallback = self._fallback
            if fallback is None:
                raise RateLimiterError(
                    f"Redis is unavailable and no rate is known for key {self.key!r}"
                )
            grant = await fallback.acquire(weight)
        finally:
            if locked:
                lock.release()
        return Grant(units=weight, at=grant.at, waited=grant.at - start, expires=grant.expires)

    def _observe(self, asked: float, replied: float, server_now: float) -> None:
        """Keep the best recent estimate of (Redis clock - this loop's clock).

        The script read the Redis clock (``server_now``) at some moment between ``asked``
        and ``replied``: that round trip bounds the offset to ±half of it (NTP's idea). The
        quickest recent round trip wins; an estimate's error grows by ``_DRIFT`` per second
        of age, so a fresh sample replaces an old one once it is as good.
        """
        half = (replied - asked) / 2
        best = self._offset
        if best is None or best[1] + (replied - best[2]) * _DRIFT >= half:
            self._offset = (server_now - (asked + half), half, replied)

    def _place(
        self, asked_at: float, replied_at: float, delay: float, server_now: float | None
    ) -> tuple[float, float]:
        """The reserved start in this loop's clock, as (earliest, latest).

        The script ran between ``asked_at`` and ``replied_at`` and reserved the start
        ``delay`` seconds after its clock read ``server_now``, so the start lies in
        ``[asked_at + delay, replied_at + delay]``: as wide as this round trip, which a
        slow question (a busy host, a queue in front of Redis) or a reply read late (a
        busy event loop) makes wide. The offset estimate (:meth:`_observe`, from the
        quickest recent round trip, the one at :meth:`open` included) narrows it. If the
        two do not meet (a clock was stepped), the round trip's interval is used and the
        estimate is dropped.
        """
        earliest, latest = asked_at + delay, replied_at + delay
        best = self._offset
        if server_now is None or best is None:
            return earliest, latest
        offset, error, taken = best
        error += max(0.0, replied_at - taken) * _DRIFT
        start = server_now + delay - offset
        low, high = max(earliest, start - error), min(latest, start + error)
        if low <= high:
            return low, high
        self._offset = None
        return earliest, latest

    def discard(self, grant: Grant) -> None:
        """Take back a reservation whose request never left (best effort, in the background).

        The request went stale before anything was written, so no server counted it: its
        units leave the shared log and the rate is not spent on it.
        """
        if grant.token is not None and self._loop is not None:
            self._spawn(self._background_call("release", member=grant.token))

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Lock]:
        loop, lock = self._loop, self._lock
        if loop is None or lock is None or self._client is None:
            raise TransportStateError("rate limiter used before open()", state="unopened")
        return loop, lock

    async def _call(self, op: str, weight: int = 0, *, member: Any = "") -> list[Any]:
        """Run the script once (loading it if the server does not know it); cache the rates."""
        from redis.exceptions import NoScriptError  # optional dependency: imported lazily

        client = self._client
        if client is None:
            raise ConnectionError("the rate limiter is closed")
        generation = self._rate_generation
        dirty = self._dirty
        args = (
            op,
            str(weight),
            repr(self._configured),
            "1" if dirty else "0",
            self._settings,
            member,
        )
        loop = asyncio.get_running_loop()
        with anyio.fail_after(self.timeout):
            if self._sha is None:
                self._sha = str(await client.script_load(LUA_SCRIPT))
            try:
                asked = loop.time()
                reply = await client.evalsha(self._sha, 2, self.key, self.log_key, *args)
            except NoScriptError:  # the server restarted or its script cache was flushed
                self._sha = str(await client.script_load(LUA_SCRIPT))
                asked = loop.time()
                reply = await client.evalsha(self._sha, 2, self.key, self.log_key, *args)
        server_now = _server_time(reply)
        if server_now is not None:
            self._observe(asked, loop.time(), server_now)
        if dirty and generation == self._rate_generation:
            self._dirty = False
        if reply[0]:
            self._effective = float(reply[3])
            self._configured = float(reply[4])
        return list(reply)

    async def _background_call(self, op: str, *, member: Any = "") -> None:
        try:
            await self._call(op, member=member)
        except self._errors as exc:
            logger.debug("asyncmailer: Redis %s failed: %s", op, exc)
            if op == "throttle" and self._fallback is not None:
                self._fallback.throttled()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            coro.close()
            return
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_failure(self, exc: BaseException) -> None:
        loop = self._loop
        assert loop is not None
        self._last_error = exc
        # Spread the next attempts of many processes a little (no herd when Redis returns).
        self._next_probe = loop.time() + self.reconnect_interval * (1 + 0.25 * self._rng.random())
        if self.on_redis_error == "local" and self._fallback is None:
            await self._enter_fallback(exc)
        elif self.on_redis_error == "fail":
            logger.warning("asyncmailer: Redis rate limiter unavailable, failing closed: %s", exc)

    async def _enter_fallback(self, exc: BaseException) -> None:
        loop = self._loop
        assert loop is not None
        self._last_error = exc
        if self._next_probe < loop.time():
            self._next_probe = loop.time() + self.reconnect_interval
        if not self._configured:
            logger.warning("asyncmailer: Redis unavailable and no rate known yet: %s", exc)
            return
        rate = self._configured * self.fallback_share
        fallback = LocalRateLimiter(rate, window=self.window, margin=self.margin, bank=self.bank)
        await fallback.open()
        self._fallback = fallback
        logger.warning(
            "asyncmailer: Redis rate limiter unavailable (%s); sending at %.3f/s from this "
            "process until Redis returns",
            exc,
            rate,
        )

    async def _leave_fallback(self) -> None:
        fallback, self._fallback = self._fallback, None
        if fallback is not None:
            await fallback.aclose()
        logger.warning("asyncmailer: Redis rate limiter reachable again; shared rate restored")


def _us(seconds: float) -> str:
    return str(round(seconds * 1_000_000))


def _server_time(reply: list[Any]) -> float | None:
    """The Redis server's clock when the script ran, seconds (None: not in the reply)."""
    return float(reply[5]) / 1e6 if len(reply) > 5 else None


def _client_from_url(url: str, timeout: float) -> Redis:
    try:
        from redis.asyncio import Redis  # optional dependency: imported lazily
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(INSTALL_HINT) from exc
    # One quick retry (a pooled connection may be stale after a Redis restart), then fail:
    # the policy, not the client, decides what a failure means.
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
    )
