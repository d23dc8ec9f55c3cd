"""What every transport shares: lifecycle, ``send_mail``, limits, retries and draining.

A concrete transport implements a tiny interface — :meth:`Transport._open`,
:meth:`Transport._close` and :meth:`Transport._deliver` (plus, optionally,
:meth:`Transport._preflight` and :meth:`Transport._weight`) — and inherits everything else.
Backend exceptions are mapped to :mod:`asyncmailer.errors` inside ``_deliver``, in one place
per transport.

The send path, for each message::

    compose → preflight checks → [connection slot] → [rate limiter] → _deliver
                     ↑ typed error, nothing sent       ↑ retry-safe failure: back off, go again

A connection slot is taken *before* the rate limiter so that a granted unit turns into a
request at once: the server sees the same spacing the limiter produced.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import enum
import logging
import random
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from email.message import EmailMessage
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeAlias

import anyio

from asyncmailer.errors import (
    ConfigurationError,
    DeliveryError,
    DeliveryUnknownError,
    MailError,
    SendAbortedError,
    SendingRateExceededError,
    TransportStateError,
    UndeliveredError,
)
from asyncmailer.limits import LocalRateLimiter, RateLimiter
from asyncmailer.message import Message
from asyncmailer.result import ComposedMessage, SendResult
from asyncmailer.retry import RetryPolicy

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Delivery", "MessageInput", "Transport", "TransportState"]

logger = logging.getLogger("asyncmailer")

#: What ``send_mail`` accepts: a :class:`Message`, a stdlib ``EmailMessage``, or a raw message.
MessageInput: TypeAlias = "Message | EmailMessage | bytes | str"

#: Result type of :meth:`Transport.send_many`: one per input message, in order.
SendOutcome: TypeAlias = "SendResult | MailError"


class TransportState(enum.Enum):
    """Lifecycle of a transport: unopened → open → closing → closed; never reopened."""

    UNOPENED = "unopened"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Delivery(NamedTuple):
    """What :meth:`Transport._deliver` reports for an accepted message."""

    #: The backend's answer (SES MessageId, SMTP reply text, file path...).
    response: str
    #: The Message-ID recipients will see.
    message_id: str


class Transport(abc.ABC):
    """Base class of all transports. Use a transport as an async context manager::

        async with SESTransport(sending_rate=14) as transport:
            result = await transport.send_mail(from_="a@example.com", to="b@example.com",
                                               subject="Hi", text="Hello")

    Configuration is keyword-only. ``sending_rate`` (units per second; see
    :meth:`_weight`) builds a :class:`~asyncmailer.limits.LocalRateLimiter`; pass
    ``rate_limiter`` instead to share a rate (e.g. ``RedisRateLimiter``). ``max_connections``
    bounds the requests in flight with an :class:`asyncio.Semaphore`. Both are created in
    ``__aenter__``, inside the event loop that uses them.
    """

    #: Short name reported in :attr:`SendResult.transport`.
    name: ClassVar[str] = "transport"

    def __init__(
        self,
        *,
        sending_rate: float | None = None,
        max_connections: int | None = None,
        rate_limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        drain_timeout: float | None = 30.0,
    ) -> None:
        if sending_rate is not None and rate_limiter is not None:
            raise ConfigurationError(
                "pass either sending_rate or rate_limiter, not both", option="sending_rate"
            )
        if max_connections is not None and (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or max_connections < 1
        ):
            raise ConfigurationError(
                f"max_connections must be a positive integer, got {max_connections!r}",
                option="max_connections",
            )
        if drain_timeout is not None and drain_timeout < 0:
            raise ConfigurationError("drain_timeout must be >= 0", option="drain_timeout")
        #: Rate limit asked for, units per second (None: unlimited or ``rate_limiter``).
        self.sending_rate = sending_rate
        #: Maximum requests in flight (None: unbounded).
        self.max_connections = max_connections
        #: Retry policy applied to retry-safe failures.
        self.retry = retry if retry is not None else RetryPolicy()
        #: Seconds ``aclose`` waits for queued and in-flight sends.
        self.drain_timeout = drain_timeout
        self._rate_limiter_given = rate_limiter
        self._limiter: RateLimiter | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._state = TransportState.UNOPENED
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending = 0
        self._idle: asyncio.Event | None = None
        self._closed: asyncio.Event | None = None
        self._scopes: set[anyio.CancelScope] = set()
        self._failures: list[tuple[str | None, BaseException]] = []
        self._rng = random.Random()

    # ------------------------------------------------------------------ the interface

    async def _open(self) -> None:  # noqa: B027 - optional hook
        """Create backend resources (clients, connection pools). Runs in ``__aenter__``."""

    async def _close(self) -> None:  # noqa: B027 - optional hook
        """Release backend resources. Runs once, after draining, even if ``_open`` failed."""

    def _preflight(self, composed: ComposedMessage, message: Message | None) -> None:  # noqa: B027
        """Raise a :class:`~asyncmailer.errors.MessageError` if the backend would refuse."""

    def _weight(self, composed: ComposedMessage) -> int:
        """Rate-limiter units one message uses (SES: one per recipient)."""
        return 1

    @abc.abstractmethod
    async def _deliver(self, composed: ComposedMessage, message: Message | None) -> Delivery:
        """Hand one message to the backend; map backend errors to ``DeliveryError``."""

    # ------------------------------------------------------------------ lifecycle

    @property
    def state(self) -> TransportState:
        """Where the transport is in its lifecycle."""
        return self._state

    @property
    def rate_limiter(self) -> RateLimiter | None:
        """The rate limiter in use while open (None when sends are not rate limited)."""
        return self._limiter

    def _initial_rate(self) -> float | None:
        """The rate for the default limiter; transports that discover it override this."""
        rate = self.sending_rate
        if rate is None or isinstance(rate, (int, float)):
            return rate
        raise ConfigurationError(f"unsupported sending_rate {rate!r}", option="sending_rate")

    async def __aenter__(self) -> Self:
        if self._state is not TransportState.UNOPENED:
            raise TransportStateError(
                f"{type(self).__name__} cannot be opened twice (state: {self._state.value})",
                state=self._state.value,
            )
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = asyncio.Event()
        self._state = TransportState.OPEN
        try:
            await self._open()
            limiter = self._rate_limiter_given
            if limiter is None:
                rate = self._initial_rate()
                limiter = LocalRateLimiter(rate) if rate is not None else None
            if limiter is not None:
                await limiter.open()
            self._limiter = limiter
            if self.max_connections is not None:
                self._semaphore = asyncio.Semaphore(self.max_connections)
        except BaseException:
            self._state = TransportState.CLOSED
            await self._shutdown()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.aclose()
        except UndeliveredError:
            if exc is None:
                raise
            # Never hide the error that is already propagating; report the rest.
            logger.exception("asyncmailer: messages left undelivered while handling an error")

    async def aclose(self) -> None:
        """Stop accepting sends, drain queued and in-flight ones, release resources.

        Waits up to ``drain_timeout`` seconds; sends still waiting then are aborted
        (:class:`~asyncmailer.errors.SendAbortedError`, nothing sent) and sends still in
        flight are cancelled (:class:`~asyncmailer.errors.DeliveryUnknownError`). Raises
        :class:`~asyncmailer.errors.UndeliveredError` listing every message that failed
        during the drain. Nothing is sent after this returns.
        """
        if self._state is TransportState.CLOSED:
            return
        if self._state is TransportState.UNOPENED:
            self._state = TransportState.CLOSED
            return
        assert self._idle is not None and self._closed is not None
        if self._state is TransportState.CLOSING:
            await self._closed.wait()
            return
        self._state = TransportState.CLOSING
        try:
            if self._pending:
                try:
                    with anyio.fail_after(self.drain_timeout):
                        await self._idle.wait()
                except TimeoutError:
                    for scope in list(self._scopes):
                        scope.cancel()
                    await self._idle.wait()
        finally:
            await self._shutdown()
            self._state = TransportState.CLOSED
            self._closed.set()
        failures, self._failures = self._failures, []
        if failures:
            raise UndeliveredError(
                f"{len(failures)} message(s) were not delivered while closing", failures=failures
            )

    async def _shutdown(self) -> None:
        try:
            await self._close()
        finally:
            limiter, self._limiter = self._limiter, None
            if limiter is not None:
                await limiter.aclose()

    def _check_open(self) -> asyncio.AbstractEventLoop:
        if self._state is not TransportState.OPEN:
            hint = {
                TransportState.UNOPENED: "use 'async with transport:' (or await transport.__aenter__())",
                TransportState.CLOSING: "the transport is closing",
                TransportState.CLOSED: "the transport is closed; create a new one",
            }[self._state]
            raise TransportStateError(
                f"{type(self).__name__} is {self._state.value}: {hint}", state=self._state.value
            )
        assert self._loop is not None
        return self._loop

    # ------------------------------------------------------------------ sending

    async def prepare(self, message: MessageInput | None = None, /, **fields: Any) -> tuple[ComposedMessage, Message | None]:
        """Compose and check a message exactly as :meth:`send_mail` would, without sending."""
        from asyncmailer.mime import compose  # noqa: PLC0415 - keeps transports importable alone

        msg: Message | None
        if message is None:
            msg = Message(**fields)
            composed = await compose(msg)
        elif isinstance(message, Message):
            msg = dataclasses.replace(message, **fields) if fields else message
            composed = await compose(msg)
        elif isinstance(message, (bytes, bytearray, memoryview, str)):
            raw = bytes(message) if not isinstance(message, str) else message
            msg = Message(raw=raw, **fields)
            composed = await compose(msg)
        elif isinstance(message, EmailMessage):
            if fields:
                raise ConfigurationError(
                    "keyword fields cannot be combined with an EmailMessage; set its headers",
                    option=next(iter(fields)),
                )
            msg = None
            composed = await compose(message)
        else:
            raise ConfigurationError(
                f"send_mail() takes a Message, EmailMessage, bytes or str, not {type(message).__name__}",
                option="message",
            )
        self._preflight(composed, msg)
        return composed, msg

    async def send_mail(self, message: MessageInput | None = None, /, **fields: Any) -> SendResult:
        """Compose, check, rate-limit and deliver one message; return its :class:`SendResult`.

        ``message`` may be a :class:`~asyncmailer.Message`, a stdlib ``EmailMessage`` or a
        complete raw message; keyword ``fields`` build (or override fields of) a ``Message``.
        Invalid input raises a :class:`~asyncmailer.errors.MessageError` before anything is
        sent. Cancelling the call while it waits for a connection slot or the rate limiter
        gives the capacity back; cancelling it during the backend call leaves the outcome
        unknown (the backend may have accepted the message).
        """
        loop = self._check_open()
        started = loop.time()
        composed, msg = await self.prepare(message, **fields)
        self._check_open()  # composing yields to the loop; the transport may be closing now
        return await self._send_composed(composed, msg, started)

    async def _send_composed(
        self, composed: ComposedMessage, msg: Message | None, started: float
    ) -> SendResult:
        loop = self._loop
        assert loop is not None and self._idle is not None
        weight = self._weight(composed)
        in_flight = False
        self._pending += 1
        self._idle.clear()
        scope = anyio.CancelScope()
        self._scopes.add(scope)
        try:
            with scope:
                attempt = 0
                rate_wait = conn_wait = 0.0
                while True:
                    attempt += 1
                    error: DeliveryError
                    queued_at = loop.time()
                    async with self._semaphore or contextlib.nullcontext():
                        conn_wait += loop.time() - queued_at
                        if self._limiter is not None:
                            rate_wait += await self._limiter.acquire(weight)
                        in_flight = True
                        try:
                            delivery = await self._deliver(composed, msg)
                        except DeliveryError as exc:
                            error = exc
                        else:
                            return SendResult(
                                envelope=composed.envelope,
                                message_id=delivery.message_id,
                                response=delivery.response,
                                rate_wait=rate_wait,
                                connection_wait=conn_wait,
                                attempts=attempt,
                                elapsed=loop.time() - started,
                                transport=self.name,
                            )
                        finally:
                            in_flight = False
                    error.attempts = attempt
                    if error.message_id is None:
                        error.message_id = composed.message_id
                    if isinstance(error, SendingRateExceededError) and self._limiter is not None:
                        self._limiter.throttled()
                    if not self.retry.should_retry(error, attempt, loop.time() - started):
                        raise error
                    delay = self.retry.backoff(attempt, self._rng)
                    logger.info(
                        "asyncmailer: %s for %s (attempt %d), retrying in %.3fs",
                        type(error).__name__,
                        composed.message_id,
                        attempt,
                        delay,
                    )
                    await asyncio.sleep(delay)
            # Only reached when aclose() cancelled the scope after the drain timeout.
            aborted: DeliveryError
            if in_flight:
                aborted = DeliveryUnknownError(
                    "the transport closed while the request was in flight; the backend may "
                    "have accepted the message",
                    message_id=composed.message_id,
                )
            else:
                aborted = SendAbortedError(
                    "the transport closed before the message was sent (drain timeout)",
                    message_id=composed.message_id,
                )
            raise aborted
        except MailError as exc:
            if self._state is TransportState.CLOSING:
                self._failures.append((composed.message_id, exc))
            raise
        finally:
            self._scopes.discard(scope)
            self._pending -= 1
            if not self._pending:
                self._idle.set()

    async def send_many(
        self,
        messages: Iterable[MessageInput] | AsyncIterable[MessageInput],
        *,
        concurrency: int | None = None,
        progress: Callable[[int, SendResult | MailError], object] | None = None,
    ) -> AsyncIterator[SendResult | MailError]:
        """Send many messages with bounded concurrency; yield one outcome each, in order.

        An outcome is a :class:`SendResult` or the :class:`~asyncmailer.errors.MailError`
        that message ended with (errors are yielded, not raised, so one bad message does
        not stop the batch). ``messages`` is consumed lazily: at most ``concurrency``
        messages are being sent and at most ``2 × concurrency`` outcomes wait to be
        yielded, whatever the length of the input. ``progress(done, outcome)`` is called
        after each outcome.
        """
        self._check_open()
        workers_n = concurrency or self.max_connections or 32
        if workers_n < 1:
            raise ConfigurationError("concurrency must be positive", option="concurrency")
        window = 2 * workers_n
        source = _aiter(messages)
        results: dict[int, SendResult | MailError] = {}
        cond = asyncio.Condition()
        taken = yielded = 0
        exhausted = False

        async def worker() -> None:
            nonlocal taken, exhausted
            while True:
                async with cond:
                    await cond.wait_for(lambda: exhausted or taken < yielded + window)
                    if exhausted:
                        return
                    try:
                        item = await source.__anext__()
                    except StopAsyncIteration:
                        exhausted = True
                        cond.notify_all()
                        return
                    index = taken
                    taken += 1
                outcome: SendResult | MailError
                try:
                    outcome = await self.send_mail(item)
                except MailError as exc:
                    outcome = exc
                async with cond:
                    results[index] = outcome
                    cond.notify_all()

        tasks = [asyncio.ensure_future(worker()) for _ in range(workers_n)]
        try:
            while True:
                async with cond:
                    await cond.wait_for(
                        lambda: yielded in results or (exhausted and yielded >= taken)
                    )
                    if yielded not in results:
                        break
                    outcome = results.pop(yielded)
                    yielded += 1
                    cond.notify_all()
                if progress is not None:
                    progress(yielded, outcome)
                yield outcome
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _aiter(
    messages: Iterable[MessageInput] | AsyncIterable[MessageInput],
) -> AsyncIterator[MessageInput]:
    if isinstance(messages, AsyncIterable):
        async for item in messages:
            yield item
    else:
        for item in messages:
            yield item
