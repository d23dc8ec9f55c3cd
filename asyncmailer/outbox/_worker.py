"""Outbox workers: read through a consumer group, send through the transport, record outcomes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from asyncmailer.errors import (
    ConfigurationError,
    DeliveryError,
    MailError,
    Outcome,
    RateLimiterError,
    SendAbortedError,
    TransportStateError,
)
from asyncmailer.outbox._model import error_to_json
from asyncmailer.outbox._outbox import Outbox, StoredMessage, _text
from asyncmailer.result import SendResult

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["OutboxWorker", "WorkerCounts"]

logger = logging.getLogger("asyncmailer.outbox")

#: Seconds a stopping worker lets its chores (promotion, heartbeat) finish their Redis call.
_CHORE_STOP_GRACE = 5.0

#: Outcomes recorded by one FINISH call at most.
_FINISH_BATCH = 256


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError, TimeoutError)


@dataclass(slots=True)
class WorkerCounts:
    """What one worker did since it started (for logs and tests)."""

    #: Messages the transport accepted.
    sent: int = 0
    #: Messages marked failed.
    failed: int = 0
    #: Messages this worker marked unknown (its own ambiguous answers, and entries it
    #: claimed from a dead worker that was sending them).
    unknown: int = 0
    #: Transient failures put back on the schedule.
    retried: int = 0
    #: Entries given back to the stream unsent (shutdown, transport closed, limiter down).
    released: int = 0
    #: Entries claimed from other consumers.
    claimed: int = 0
    #: Redis errors survived.
    redis_errors: int = 0


class OutboxWorker:
    """Sends an :class:`~asyncmailer.outbox.Outbox`'s mail; any number may run anywhere.

    Example (in an application's lifespan)::

        async with ses, outbox, outbox.worker(concurrency=8):
            yield  # the app runs; the worker sends in the background

    Or ``await worker.run()`` until :meth:`stop` is called (``asyncmailer outbox work``).

    For each entry the worker records the attempt (``sending``) in Redis *before* it calls
    ``transport.send_composed`` with the stored bytes; after the answer it records the
    outcome and acknowledges the entry in one Lua script. Both are batched: one call takes
    and begins every entry the worker has room for, one records every outcome ready at
    that moment (each still atomic with its acknowledgement). Entries of a worker that died
    stay pending; after ``claim_idle`` seconds another worker claims them (``XAUTOCLAIM``):
    one whose attempt never started is sent; one that was being sent becomes ``unknown``
    and is never resent automatically. A worker resets the idle time of the entries it holds every
    ``claim_idle / 3`` seconds, so that a slow send is not taken for a dead worker.

    - ``concurrency``: messages in progress at once in this worker (the transport's own
      ``max_connections`` and rate limiter apply on top).
    - ``claim_idle``: seconds an entry may stay unacknowledged before others claim it.
    - ``consumer``: this worker's name in the group (default: host, pid and a random part;
      it must be unique among live workers).
    - ``block``: seconds one read waits for new entries (also bounds how fast :meth:`stop`
      is noticed).
    - ``poll_interval``: seconds between moves of due scheduled messages into the stream.
    - ``drain_timeout``: seconds :meth:`stop` waits for sends in progress; then they are
      cancelled and recorded as unknown (None: wait for ever).
    """

    def __init__(
        self,
        outbox: Outbox,
        *,
        concurrency: int = 8,
        claim_idle: float = 30.0,
        consumer: str | None = None,
        block: float = 0.5,
        poll_interval: float = 0.25,
        drain_timeout: float | None = 30.0,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError("concurrency must be an integer >= 1", option="concurrency")
        for name, value in (
            ("claim_idle", claim_idle),
            ("block", block),
            ("poll_interval", poll_interval),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigurationError(f"{name} must be a positive number", option=name)
        #: The outbox this worker serves.
        self.outbox = outbox
        #: Messages in progress at once.
        self.concurrency = concurrency
        #: Seconds before unacknowledged entries of others are claimed.
        self.claim_idle = float(claim_idle)
        #: This worker's consumer name.
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        #: Seconds one read blocks.
        self.block = float(block)
        #: Seconds between promotions of due scheduled messages.
        self.poll_interval = float(poll_interval)
        #: Seconds ``stop`` waits for sends in progress.
        self.drain_timeout = drain_timeout
        #: What this worker did.
        self.counts = WorkerCounts()
        self._held: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping: asyncio.Event | None = None
        self._slot_free: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None
        self._claim_cursor = "0-0"
        # Outcomes waiting to be recorded, and the task recording them (a group commit:
        # every outcome ready while one FINISH call runs goes in the next one).
        self._outcomes: list[tuple[list[Any], asyncio.Future[Any]]] = []
        self._recorder: asyncio.Task[None] | None = None
        self._rng = random.Random()
        self._errors = _redis_errors()

    def __repr__(self) -> str:
        return f"OutboxWorker(consumer={self.consumer!r}, held={len(self._held)})"

    @property
    def held(self) -> int:
        """Entries this worker holds now (being begun, sent or recorded)."""
        return len(self._held)

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        self._stopping = asyncio.Event()
        self._runner = asyncio.get_running_loop().create_task(self.run())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._runner is not None:
            await self._runner

    def stop(self) -> None:
        """Stop taking entries; ``run`` finishes what it holds, then returns."""
        if self._stopping is None:
            self._stopping = asyncio.Event()
        self._stopping.set()

    async def run(self) -> None:
        """Take, send and record entries until :meth:`stop`; then drain and return."""
        if self._stopping is None:
            self._stopping = asyncio.Event()
        self._slot_free = asyncio.Event()
        loop = asyncio.get_running_loop()
        chores_done = asyncio.Event()
        chores = [
            loop.create_task(self._every(self.poll_interval, self._promote, chores_done)),
            loop.create_task(self._every(self.claim_idle / 3, self._heartbeat, chores_done)),
        ]
        try:
            await self._fetch_loop()
        finally:
            try:
                await self._drain()
                if self._recorder is not None:
                    # Outcomes of sends cancelled at the drain timeout are still recorded.
                    await asyncio.shield(self._recorder)
            finally:
                # The chores are told to stop and finish the Redis call they are in, rather
                # than being cancelled inside it: a command cancelled mid-reply can leave a
                # pooled connection unusable. Cancelling stays the fallback for a stuck one.
                chores_done.set()
                _, stuck = await asyncio.wait(chores, timeout=_CHORE_STOP_GRACE)
                for chore in stuck:
                    chore.cancel()
                await asyncio.gather(*chores, return_exceptions=True)

    async def _drain(self) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.drain_timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def _every(self, interval: float, job: Any, done: asyncio.Event) -> None:
        while not done.is_set():
            try:
                await job()
            except self._errors as exc:
                self.counts.redis_errors += 1
                logger.debug("asyncmailer.outbox: %s failed: %s", job.__name__, exc)
            await _wait_first(done, timeout=interval)

    async def _promote(self) -> None:
        await self.outbox.promote_due()

    async def _heartbeat(self) -> None:
        held = list(self._held)
        if held:
            await self.outbox.script("HEARTBEAT")(
                keys=[self.outbox.stream], args=[self.outbox.group, self.consumer, *held]
            )

    # ----------------------------------------------------------------- taking entries

    async def _fetch_loop(self) -> None:
        assert self._stopping is not None and self._slot_free is not None
        loop = asyncio.get_running_loop()
        outbox = self.outbox
        next_claim = loop.time()
        failures = 0
        while not self._stopping.is_set():
            free = self.concurrency - len(self._held)
            if free <= 0:
                self._slot_free.clear()
                await _wait_first(self._slot_free, self._stopping)
                continue
            try:
                taken: list[Any] = []
                if loop.time() >= next_claim:
                    claimed = await self._claim(free)
                    if claimed:
                        taken = await self._begin(0, claimed)
                    else:
                        next_claim = loop.time() + min(self.claim_idle / 2, 5.0)
                if not taken:
                    # One call reads new entries and records their attempts.
                    taken = await self._begin(free, [])
                if not taken:
                    # Nothing waiting: block on the stream, then begin what arrived.
                    client: Any = outbox.client
                    answer = await client.xreadgroup(
                        outbox.group,
                        self.consumer,
                        {outbox.stream: ">"},
                        count=free,
                        block=int(self.block * 1000),
                    )
                    arrived = [
                        (_text(entry_id) or "", _outbox_id(fields))
                        for _, items in answer or ()
                        for entry_id, fields in items
                    ]
                    if arrived:
                        taken = await self._begin(0, arrived)
                failures = 0
            except self._errors as exc:
                self.counts.redis_errors += 1
                failures += 1
                if "NOGROUP" in str(exc):
                    with contextlib.suppress(*self._errors):
                        await outbox.ensure_group()
                logger.warning("asyncmailer.outbox: reading the stream failed: %s", exc)
                await _wait_first(self._stopping, timeout=min(2.0, 0.05 * 2**failures))
                continue
            for i in range(0, len(taken), 5):
                entry_id = _text(taken[i]) or ""
                verdict = _text(taken[i + 2])
                if verdict == "unknown":
                    self.counts.unknown += 1
                if verdict != "go":
                    continue
                outbox_id = _text(taken[i + 1]) or ""
                self._held.add(entry_id)
                task = loop.create_task(
                    self._handle(entry_id, outbox_id, taken[i + 3], int(taken[i + 4]))
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _begin(self, count: int, entries: list[tuple[str, str | None]]) -> list[Any]:
        """Take ``count`` new entries (or the ``entries`` given) and record their attempts.

        Five items per entry: entry id, outbox id, verdict, payload, attempt.
        """
        outbox = self.outbox
        args: list[Any] = [
            outbox.group,
            self.consumer,
            "1" if outbox.resend_unknown else "0",
            outbox.results_maxlen,
            count,
        ]
        for entry_id, outbox_id in entries:
            args += (entry_id, outbox_id or "")
        keys = [outbox.stream, outbox.unknown_key, outbox.results_key, outbox.stats_key]
        answer = await outbox.script("BEGIN")(keys=keys, args=args)
        return list(answer or ())

    async def _claim(self, count: int) -> list[tuple[str, str | None]]:
        outbox = self.outbox
        client: Any = outbox.client
        answer = await client.xautoclaim(
            outbox.stream,
            outbox.group,
            self.consumer,
            int(self.claim_idle * 1000),
            start_id=self._claim_cursor,
            count=count,
        )
        self._claim_cursor = _text(answer[0]) or "0-0"
        out = []
        for entry_id, fields in answer[1]:
            text = _text(entry_id) or ""
            if text in self._held or fields is None:
                continue
            out.append((text, _outbox_id(fields)))
        self.counts.claimed += len(out)
        return out

    # ----------------------------------------------------------------- one entry

    async def _handle(self, entry_id: str, outbox_id: str, payload: bytes, attempt: int) -> None:
        try:
            await self._process(entry_id, outbox_id, payload, attempt)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("asyncmailer.outbox: entry %s (%s) failed", entry_id, outbox_id)
        finally:
            self._held.discard(entry_id)
            if self._slot_free is not None:
                self._slot_free.set()

    async def _process(self, entry_id: str, outbox_id: str, payload: bytes, attempt: int) -> None:
        # The attempt is recorded (BEGIN): send the stored bytes as they are, unparsed.
        stored = StoredMessage.decode(payload)
        try:
            result = await self.outbox.transport.send_composed(stored.composed, stored.as_message())
        except asyncio.CancelledError:
            # Cancelled mid-send (stop() ran out of drain_timeout): the backend may have
            # the message. Record that, then let the cancellation go on.
            await asyncio.shield(
                self._finish(
                    entry_id,
                    outbox_id,
                    "unknown",
                    error='{"type":"DeliveryUnknownError","message":"the worker stopped '
                    'while the message was being sent","fields":{"outcome":"ambiguous"}}',
                )
            )
            raise
        except Exception as exc:
            await self._record_failure(entry_id, outbox_id, attempt, exc)
            return
        await self._record_sent(entry_id, outbox_id, result)

    async def _record_sent(self, entry_id: str, outbox_id: str, result: SendResult) -> None:
        self.counts.sent += 1
        await self._finish(
            entry_id, outbox_id, "sent", backend_id=result.response, message_id=result.message_id
        )

    async def _record_failure(
        self, entry_id: str, outbox_id: str, attempt: int, exc: Exception
    ) -> None:
        outbox = self.outbox
        error = error_to_json(exc)
        if isinstance(exc, (SendAbortedError, TransportStateError, RateLimiterError)):
            # Nothing was sent: give the entry back for this or another worker.
            self.counts.released += 1
            if isinstance(exc, RateLimiterError):
                await asyncio.sleep(0.5)
            await self._finish(entry_id, outbox_id, "release")
            return
        if isinstance(exc, DeliveryError):
            if exc.outcome is Outcome.RETRY_SAFE:
                if attempt < outbox.max_attempts:
                    self.counts.retried += 1
                    delay = outbox.transport.retry.backoff(attempt, self._rng)
                    await self._finish(
                        entry_id, outbox_id, "retry", error=error, delay_ms=int(delay * 1000)
                    )
                    return
                outcome = "failed"
            elif exc.outcome is Outcome.AMBIGUOUS:
                outcome = "unknown"
            else:
                outcome = "failed"
        elif isinstance(exc, MailError):
            outcome = "failed"  # the message or the configuration is wrong: nothing sent
        else:
            outcome = "unknown"  # an unexpected error: we cannot tell what happened
        if outcome == "failed":
            self.counts.failed += 1
        else:
            self.counts.unknown += 1
        await self._finish(entry_id, outbox_id, outcome, error=error)

    async def _finish(
        self,
        entry_id: str,
        outbox_id: str,
        outcome: str,
        *,
        backend_id: str = "",
        message_id: str = "",
        error: str = "",
        delay_ms: int = 0,
    ) -> None:
        """Record one outcome (and acknowledge its entry) with the others ready now."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        self._outcomes.append(
            ([entry_id, outbox_id, outcome, backend_id, message_id, error, delay_ms], done)
        )
        if self._recorder is None or self._recorder.done():
            self._recorder = loop.create_task(self._record())
        # Shielded: a cancelled sender still waits for nothing, its outcome is recorded.
        await asyncio.shield(done)

    async def _record(self) -> None:
        """Record the waiting outcomes, a batch per FINISH call, until none is left."""
        outbox = self.outbox
        while self._outcomes:
            batch, self._outcomes = self._outcomes[:_FINISH_BATCH], self._outcomes[_FINISH_BATCH:]
            args: list[Any] = [outbox.group, int(outbox.result_ttl * 1000), outbox.results_maxlen]
            for item, _ in batch:
                args += item
            try:
                answer = await self._redis_retry(
                    outbox.script("FINISH"),
                    keys=[
                        outbox.stream,
                        outbox.schedule_key,
                        outbox.results_key,
                        outbox.stats_key,
                        outbox.unknown_key,
                        outbox.failed_key,
                    ],
                    args=args,
                    # An outcome must not be lost to a Redis restart: keep trying while
                    # running, and a while longer when stopping.
                    persist=True,
                )
            except asyncio.CancelledError:
                for _, done in batch:
                    done.cancel()
                raise
            except BaseException as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                raise
            for _, done in batch:
                if not done.done():
                    done.set_result(answer)

    async def _redis_retry(
        self, script: Any, *, keys: list[Any], args: list[Any], persist: bool = False
    ) -> Any:
        assert self._stopping is not None
        tries = 0
        while True:
            try:
                return await script(keys=keys, args=args)
            except self._errors as exc:
                self.counts.redis_errors += 1
                tries += 1
                if self._stopping.is_set() and (not persist or tries > 50):
                    logger.error("asyncmailer.outbox: giving up on Redis: %s", exc)
                    return None
                await asyncio.sleep(min(1.0, 0.02 * 2**tries))


def _outbox_id(fields: Any) -> str | None:
    if not fields:
        return None
    value = fields.get(b"i", fields.get("i"))
    return _text(value)


async def _wait_first(*events: asyncio.Event, timeout: float | None = None) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
