"""What every transport shares: lifecycle, ``send_mail``, limits, retries and draining.

A concrete transport implements a tiny interface — :meth:`Transport._open`,
:meth:`Transport._close` and :meth:`Transport._deliver` (plus, optionally,
:meth:`Transport._preflight`, :meth:`Transport._weight`, :meth:`Transport._reserve` and
:meth:`Transport._unreserve`) — and inherits everything else. Backend exceptions are
mapped to :mod:`asyncmailer.errors` inside ``_deliver``, in one place per transport.

The send path, for each message::

    compose → preflight → _reserve → [connection slot] → [rate limiter] → _deliver
                  ↑ typed error, nothing sent                ↑ retry-safe failure: back off,
                                                               then _reserve again

A connection slot is taken *before* the rate limiter so that a granted unit turns into a
request at once: the server sees the same spacing the limiter produced. Anything that may
wait a long time without sending (the SES daily quota) happens in ``_reserve``, before
both, so that it never holds a slot or a granted unit.

Guarantees (see ``docs/reliability.md``):

- a :class:`~asyncmailer.errors.MessageError` or a failure before ``_deliver`` is called
  means nothing was sent;
- only :attr:`~asyncmailer.errors.Outcome.RETRY_SAFE` failures are retried, unless the
  :class:`~asyncmailer.retry.RetryPolicy` opts in to ambiguous ones;
- an error that is reported as retry-safe really is: if an earlier attempt may have been
  accepted, the final error is a :class:`~asyncmailer.errors.DeliveryUnknownError`;
- cancelling ``send_mail`` before ``_deliver`` gives back its connection slot and its
  place in the rate limiter's queue;
- ``aclose()`` drains, then aborts and reports what is left; nothing is sent after it
  returns.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import enum
import logging
import random
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from email.message import EmailMessage
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, Literal, NamedTuple, TypeAlias, TypeVar

import anyio

from asyncmailer.dkim import DKIMSigner, resolve_signer
from asyncmailer.errors import (
    ConfigurationError,
    DeliveryError,
    DeliveryUnknownError,
    MailError,
    MessageError,
    Outcome,
    SendAbortedError,
    SendingRateExceededError,
    TransportStateError,
    UndeliveredError,
)
from asyncmailer.fields import MessageFields, check_field_names
from asyncmailer.limits import LocalRateLimiter, RateLimiter
from asyncmailer.message import Message
from asyncmailer.options import Limits, Suppression
from asyncmailer.result import ComposedMessage, SendResult
from asyncmailer.retry import RetryPolicy
from asyncmailer.transports._fanout import aiter_of, ordered_fanout
from asyncmailer.transports._grant import GrantExpired, check_grant, holding
from asyncmailer.transports._pacer import DEFAULT_BUDGET, LoopPacer
from asyncmailer.transports._warm import WarmGate

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

    from asyncmailer.feedback import SuppressionEntry, SuppressionList

__all__ = ["Delivery", "MessageInput", "SendOutcome", "Transport", "TransportState"]

logger = logging.getLogger("asyncmailer")

_T = TypeVar("_T")

#: What ``send_mail`` accepts: a :class:`Message`, a stdlib ``EmailMessage``, or a raw message.
MessageInput: TypeAlias = "Message | EmailMessage | bytes | str"

#: What :meth:`Transport.send_many` yields for each input message, in order.
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


class _Phase(enum.Enum):
    """Where one send is; decides what an abort by ``aclose()`` reports."""

    PREPARING = "preparing"
    WAITING = "waiting"  # for the quota, a connection slot or the rate limiter
    IN_FLIGHT = "in_flight"  # inside _deliver: the backend may accept the message
    BACKOFF = "backoff"


class _SendTrack:
    """Book-keeping of one ``send_mail`` call, read when it is aborted."""

    __slots__ = ("aborting", "attempts", "cancelling", "maybe_sent", "message_id", "phase", "task")

    def __init__(self) -> None:
        self.phase = _Phase.PREPARING
        self.attempts = 0
        #: An earlier attempt ended ambiguously and was retried: it may have been accepted.
        self.maybe_sent = False
        self.message_id: str | None = None
        #: The task running the send (cancelled by ``aclose`` after the drain timeout).
        self.task: asyncio.Task[object] | None = None
        #: Set by ``aclose`` just before it cancels :attr:`task`.
        self.aborting = False
        #: The task's pending cancel requests just before that (Python 3.11+).
        self.cancelling = 0


class _Waits:
    """Seconds one ``send_mail`` call spent waiting, over all its attempts."""

    __slots__ = ("connection", "rate")

    def __init__(self) -> None:
        self.connection = 0.0
        self.rate = 0.0


class Transport(abc.ABC):
    """Base class of all transports. Use a transport as an async context manager::

        async with SESTransport(sending_rate=14) as transport:
            result = await transport.send_mail(from_="a@example.com", to="b@example.com",
                                               subject="Hi", text="Hello")

    Configuration is keyword-only, and every transport takes the same shared options
    (:class:`~asyncmailer.options.TransportOptions`), declared once, here:

    - ``limits``: a :class:`~asyncmailer.options.Limits` — the sending rate (units per
      second; see :meth:`_weight`) or a shared ``rate_limiter`` (e.g.
      ``RedisRateLimiter``), ``max_connections`` (requests in flight), ``drain_timeout``
      (how long :meth:`aclose` waits for queued and in-flight sends) and ``cooperative``
      (at most one send's CPU-heavy steps per event-loop iteration). The limiter and the
      semaphore are created in ``__aenter__``, inside the event loop that uses them.
    - ``sending_rate``, ``max_connections``: shortcuts for the same fields of ``limits``.
    - ``retry``: which failures are tried again (:class:`~asyncmailer.retry.RetryPolicy`).
    - ``dkim``: a :class:`~asyncmailer.dkim.DKIMSigner` applied to every message.
    """

    #: Short name reported in :attr:`SendResult.transport`.
    name: ClassVar[str] = "transport"
    #: Requests in flight when neither ``max_connections`` nor ``limits`` sets them.
    default_max_connections: ClassVar[int | None] = None
    #: Whether ``sending_rate="auto"`` is understood (the backend tells its own rate).
    supports_auto_rate: ClassVar[bool] = False
    #: Seconds of heavy send steps one event-loop iteration may run back to back while no
    #: step waits (``cooperative`` only; see :mod:`._pacer`). Internal: tests set 0.
    _pacer_budget: ClassVar[float] = DEFAULT_BUDGET

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        sending_rate: float | Literal["auto"] | None = None,
        max_connections: int | None = None,
        retry: RetryPolicy | None = None,
        dkim: DKIMSigner | None = None,
        suppression: Suppression | SuppressionList | None = None,
    ) -> None:
        if suppression is not None and not isinstance(suppression, Suppression):
            suppression = Suppression(list=suppression)
        #: Addresses never to mail again, checked before any rate unit is spent.
        self.suppression = suppression
        if dkim is not None and not isinstance(dkim, DKIMSigner):
            raise ConfigurationError(
                f"dkim must be a DKIMSigner or None, not {type(dkim).__name__}", option="dkim"
            )
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(
                f"retry must be a RetryPolicy, not {type(retry).__name__}", option="retry"
            )
        limits = self._resolve_limits(limits, sending_rate, max_connections)
        #: The limits in force: rate, connections, rate limiter, drain timeout, cooperative.
        self.limits = limits
        #: Rate limit asked for, units per second (None: unlimited or ``rate_limiter``).
        self.sending_rate = limits.sending_rate
        #: Maximum requests in flight (None: unbounded).
        self.max_connections = limits.max_connections
        #: Retry policy applied to failed attempts.
        self.retry = retry if retry is not None else RetryPolicy()
        #: Seconds ``aclose`` waits for queued and in-flight sends (None: no limit).
        self.drain_timeout = limits.drain_timeout
        #: DKIM signer applied to every message (a message's ``dkim`` field may override it).
        self.dkim = dkim
        #: Run at most one send's heavy steps (composing; building and writing its request)
        #: per event-loop iteration, so that bursts of sends do not stall other coroutines.
        self.cooperative = bool(limits.cooperative)
        self._pacer: LoopPacer | None = None
        self._rate_limiter_given = limits.rate_limiter
        self._limiter: RateLimiter | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._state = TransportState.UNOPENED
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending = 0
        self._idle: asyncio.Event | None = None
        self._closed: asyncio.Event | None = None
        # The sends in progress, for aclose() to abort after the drain timeout.
        self._sends: set[_SendTrack] = set()
        # Whether _reserve/_unreserve do anything (decided when the transport opens).
        self._reserving = True
        self._failures: list[tuple[str | None, BaseException]] = []
        self._rng = random.Random()
        self._warm_gate: WarmGate | None = None
        #: Grants that went stale before their request left, renewed in place or asked for
        #: again (see ``docs/rate-limiting.md``); a steadily rising count means the event
        #: loop or the machine is too busy for the limiter's ``margin``.
        self.stale_grants = 0

    def _resolve_limits(
        self,
        limits: Limits | None,
        sending_rate: float | Literal["auto"] | None,
        max_connections: int | None,
    ) -> Limits:
        """``limits`` with the shortcuts and the transport's defaults filled in."""
        if limits is None:
            limits = Limits()
        elif not isinstance(limits, Limits):
            raise ConfigurationError(
                f"limits must be a Limits, not {type(limits).__name__}", option="limits"
            )
        changes: dict[str, object] = {}
        for option, value in (("sending_rate", sending_rate), ("max_connections", max_connections)):
            if value is None:
                continue
            if getattr(limits, option) is not None:
                raise ConfigurationError(
                    f"{option} is given twice: as {option}= and in limits=", option=option
                )
            changes[option] = value
        if limits.max_connections is None and "max_connections" not in changes:
            changes["max_connections"] = self.default_max_connections
        limits = dataclasses.replace(limits, **changes) if changes else limits  # type: ignore[arg-type]
        if limits.sending_rate == "auto" and not self.supports_auto_rate:
            raise ConfigurationError(
                f"{type(self).__name__} cannot discover its rate: sending_rate='auto' is for "
                "SESTransport; pass a number",
                option="sending_rate",
            )
        return limits

    # ------------------------------------------------------------------ the interface

    async def _open(self) -> None:  # noqa: B027 - optional hook
        """Create backend resources (clients, connection pools). Runs in ``__aenter__``."""

    async def _close(self) -> None:  # noqa: B027 - optional hook
        """Release backend resources. Runs once, after draining, even if ``_open`` failed."""

    def _idle_timeout(self) -> float | None:
        """Seconds without traffic after which the backend's connections count as cold.

        When not None, the first send after such a spell goes alone (:mod:`._warm`). Runs
        once, after :meth:`_open`.
        """
        return None

    async def _warm_up(self) -> bool:
        """Make the backend's connections warm before the first send; True if it did."""
        return False

    def _preflight(self, composed: ComposedMessage, message: Message | None) -> None:  # noqa: B027
        """Raise a :class:`~asyncmailer.errors.MessageError` if the backend would refuse."""

    def _weight(self, composed: ComposedMessage) -> int:
        """Rate-limiter units one message uses (SES: one per recipient)."""
        return 1

    async def _reserve(self, composed: ComposedMessage, message: Message | None) -> None:  # noqa: B027
        """Wait for, or refuse, a backend allowance before each attempt (SES: daily quota).

        Runs before the connection slot and the rate limiter, so a long wait here holds
        neither. Raising a :class:`~asyncmailer.errors.DeliveryError` fails the attempt
        with nothing sent.
        """

    def _unreserve(self, composed: ComposedMessage, message: Message | None) -> None:  # noqa: B027
        """Give back what :meth:`_reserve` took when the attempt ended before ``_deliver``."""

    def _uses_reserve(self) -> bool:
        """Whether :meth:`_reserve` and :meth:`_unreserve` can do anything (asked once, when
        the transport opens); False skips both on every attempt. By default: whether a
        subclass overrides either of them."""
        return self._overrides_reserve

    #: Whether this class or a base below :class:`Transport` defines ``_reserve`` or
    #: ``_unreserve`` (set by ``__init_subclass__``).
    _overrides_reserve: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "_reserve" in vars(cls) or "_unreserve" in vars(cls):
            cls._overrides_reserve = True

    @abc.abstractmethod
    async def _deliver(self, composed: ComposedMessage, message: Message | None) -> Delivery:
        """Hand one message to the backend; map backend errors to ``DeliveryError``.

        The error's :class:`~asyncmailer.errors.Outcome` must tell the truth: ``RETRY_SAFE``
        only when the backend certainly did not accept the message. Any other exception
        escaping from here is reported as :class:`~asyncmailer.errors.DeliveryUnknownError`.
        """

    # ------------------------------------------------------------------ lifecycle

    @property
    def state(self) -> TransportState:
        """Where the transport is in its lifecycle."""
        return self._state

    @property
    def rate_limiter(self) -> RateLimiter | None:
        """The rate limiter in use while open (None when sends are not rate limited)."""
        return self._limiter

    @property
    def pending(self) -> int:
        """Number of ``send_mail`` calls in progress (composing, queued, or in flight)."""
        return self._pending

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
            idle = self._idle_timeout()
            if idle is not None:
                self._warm_gate = WarmGate(self._loop, idle)
                if await self._warm_up():
                    self._warm_gate.warmed()
            limiter = self._rate_limiter_given
            if limiter is None:
                rate = self._initial_rate()
                limiter = LocalRateLimiter(rate) if rate is not None else None
            if limiter is not None:
                await limiter.open()
            self._limiter = limiter
            if self.max_connections is not None:
                self._semaphore = asyncio.Semaphore(self.max_connections)
            if self.cooperative:
                self._pacer = LoopPacer(self._loop, budget=self._pacer_budget)
            self._reserving = self._uses_reserve()
        except BaseException:
            self._state = TransportState.CLOSED
            self._closed.set()
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

        New ``send_mail`` calls fail at once with
        :class:`~asyncmailer.errors.TransportStateError`. Calls already made (composing,
        waiting for a slot or the rate limiter, backing off, in flight) go on for up to
        ``drain_timeout`` seconds. Then the ones that have not reached the backend are
        aborted with :class:`~asyncmailer.errors.SendAbortedError` (nothing sent) and the
        ones in flight are cancelled with :class:`~asyncmailer.errors.DeliveryUnknownError`
        (the backend may have accepted them). If ``aclose`` itself is cancelled, the drain
        ends at once the same way. Raises :class:`~asyncmailer.errors.UndeliveredError`
        listing every message that failed while closing; each ``send_mail`` caller also
        gets its own error. Nothing is sent after this returns.
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
                with anyio.move_on_after(self.drain_timeout):
                    await self._idle.wait()
        finally:
            try:
                if self._pending:
                    for track in list(self._sends):
                        _abort(track)
                    # Shielded: even if aclose() is being cancelled, nothing may be left
                    # running against a backend that is about to be released.
                    with anyio.CancelScope(shield=True):
                        await self._idle.wait()
                await self._shutdown()
            finally:
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
                TransportState.UNOPENED: (
                    "use 'async with transport:' (or await transport.__aenter__())"
                ),
                TransportState.CLOSING: "the transport is closing",
                TransportState.CLOSED: "the transport is closed; create a new one",
            }[self._state]
            raise TransportStateError(
                f"{type(self).__name__} is {self._state.value}: {hint}", state=self._state.value
            )
        assert self._loop is not None
        return self._loop

    # ------------------------------------------------------------------ sending

    async def prepare(
        self, message: MessageInput | None = None, /, **fields: Unpack[MessageFields]
    ) -> tuple[ComposedMessage, Message | None]:
        """Compose and check a message exactly as :meth:`send_mail` would, without sending.

        Returns the composed message and the :class:`~asyncmailer.Message` it came from
        (None for an ``EmailMessage``). Raises what :meth:`send_mail` raises before
        sending: a :class:`~asyncmailer.errors.MessageError` naming the field at fault.
        """
        from asyncmailer.mime import compose  # keeps transports importable alone

        check_field_names(fields)
        msg: Message | None
        if message is None:
            msg = Message(**fields)
            composed = await compose(msg)
        elif isinstance(message, Message):
            msg = dataclasses.replace(message, **fields) if fields else message
            composed = await compose(msg)
        elif isinstance(message, (bytes, bytearray, memoryview, str)):
            if "raw" in fields:
                raise MessageError(
                    "the raw message is given twice: as the first argument and as raw=",
                    field="raw",
                )
            fields["raw"] = bytes(message) if not isinstance(message, str) else message
            msg = Message(**fields)
            composed = await compose(msg)
        elif isinstance(message, EmailMessage):
            if fields:
                raise MessageError(
                    "keyword fields cannot be combined with an EmailMessage; set its headers "
                    f"instead (got {', '.join(fields)})",
                    field=next(iter(fields)),
                )
            msg = None
            composed = await compose(message)
        else:
            raise MessageError(
                "send_mail() takes a Message, EmailMessage, bytes or str, "
                f"not {type(message).__name__}",
                field="message",
            )
        override = msg.dkim if msg is not None else None
        try:
            signer = resolve_signer(self.dkim, override)
        except ConfigurationError as exc:
            if override is None:
                raise
            # The message's own dkim field is at fault, not the transport's settings.
            field = f"dkim.{exc.option}" if exc.option not in (None, "dkim") else "dkim"
            raise MessageError(str(exc), field=field) from exc
        if signer is not None:
            # Sign before the checks, so that size limits include the signature.
            composed = await signer.sign_async(composed)
        self._preflight(composed, msg)
        return composed, msg

    async def send_mail(
        self, message: MessageInput | None = None, /, **fields: Unpack[MessageFields]
    ) -> SendResult:
        """Compose, check, rate-limit and deliver one message; return its :class:`SendResult`.

        Example::

            result = await transport.send_mail(
                from_="shop@example.com", to="ada@example.com", subject="Hi", text="Hello"
            )

        ``message`` may be a :class:`~asyncmailer.Message`, a stdlib ``EmailMessage`` or a
        complete raw message; keyword ``fields`` (:class:`~asyncmailer.fields.MessageFields`:
        the fields of ``Message``) build it, or override fields of the ``Message`` given.
        Invalid input raises a :class:`~asyncmailer.errors.MessageError` before anything is
        sent (an unknown field names it and suggests the closest one). Failed attempts are
        retried as :attr:`retry` allows; the error finally raised is a
        :class:`~asyncmailer.errors.DeliveryError` whose class (and so ``outcome``) and
        ``attempts`` say what is known.

        Cancelling the call while it composes, waits for a connection slot or the rate
        limiter, or backs off gives the capacity back and sends nothing. Cancelling it
        during the backend call leaves the outcome unknown: the backend may have accepted
        the message.
        """
        known = message.message_id if isinstance(message, Message) else None
        return await self._send_tracked(known, lambda: self.prepare(message, **fields))

    async def send_composed(
        self, composed: ComposedMessage, message: Message | None = None, /
    ) -> SendResult:
        """Send a message :meth:`prepare` already composed, without composing it again.

        Example::

            composed, message = await transport.prepare(from_="a@example.com", to="b@example.com")
            ...  # store it, queue it, hand it to another task
            result = await transport.send_composed(composed, message)

        ``composed.raw`` is sent as it is, to ``composed.envelope``: it is neither parsed
        nor signed again (a DKIM signature added by ``prepare`` stays valid). ``message``,
        the :class:`~asyncmailer.Message` it came from (or any ``Message`` carrying the
        per-message options, such as ``ses``), gives its options to the backend call; it
        is not composed. The transport's own checks (size, recipients, SMTPUTF8), its
        suppression list, rate limiter, connection bound and retries apply exactly as in
        :meth:`send_mail`, with the same errors and the same cancellation rules. The
        durable outbox's workers send this way.
        """
        if not isinstance(composed, ComposedMessage):
            raise MessageError(
                f"send_composed() takes a ComposedMessage (from prepare()), "
                f"not {type(composed).__name__}",
                field="message",
            )
        if message is not None and not isinstance(message, Message):
            raise MessageError(
                "send_composed()'s message must be a Message or None, "
                f"not {type(message).__name__}",
                field="message",
            )

        async def checked() -> tuple[ComposedMessage, Message | None]:
            self._preflight(composed, message)
            return composed, message

        return await self._send_tracked(composed.message_id, checked)

    async def _send_tracked(
        self,
        known_id: str | None,
        compose: Callable[[], Awaitable[tuple[ComposedMessage, Message | None]]],
    ) -> SendResult:
        """The body of :meth:`send_mail` and :meth:`send_composed`, ``compose`` aside."""
        loop = self._check_open()
        assert self._idle is not None
        started = loop.time()
        track = _SendTrack()
        if known_id:
            # Known before composing: an abort while still composing can name it too.
            track.message_id = known_id
        # Counted from the call, not from the end of composition, so that aclose() drains
        # (or reports) every send that was accepted while the transport was open.
        self._pending += 1
        self._idle.clear()
        track.task = asyncio.current_task()
        self._sends.add(track)
        try:
            try:
                if self._pacer is not None:
                    await self._pacer.turn()
                composed, msg = await compose()
                track.message_id = composed.message_id
                suppressed: Mapping[str, SuppressionEntry] = {}
                if self.suppression is not None:
                    composed, suppressed = await self._suppress(composed, self.suppression)
                result = await self._send_prepared(composed, msg, started, track)
                return dataclasses.replace(result, suppressed=suppressed) if suppressed else result
            except asyncio.CancelledError:
                if not _aborted_by_close(track):
                    raise
            # Only reached when aclose() cancelled the send after the drain timeout.
            raise self._aborted(track)
        except MailError as exc:
            if self._state is not TransportState.OPEN:
                self._failures.append((track.message_id, exc))
            raise
        finally:
            self._sends.discard(track)
            if track.aborting:
                _withdraw_abort(track)
            self._pending -= 1
            if not self._pending:
                self._idle.set()

    async def _suppress(
        self, composed: ComposedMessage, suppression: Suppression
    ) -> tuple[ComposedMessage, Mapping[str, SuppressionEntry]]:
        """Look the envelope recipients up once; fail, or drop the suppressed ones."""
        from asyncmailer.feedback import check_suppression

        check = await check_suppression(
            suppression.list, composed.envelope.to, policy=suppression.policy
        )
        if not check.suppressed:
            return composed, {}
        envelope = dataclasses.replace(composed.envelope, to=check.allowed)
        return dataclasses.replace(composed, envelope=envelope), check.suppressed

    @staticmethod
    def _aborted(track: _SendTrack) -> DeliveryError:
        if track.phase is _Phase.IN_FLIGHT or track.maybe_sent:
            return DeliveryUnknownError(
                "the transport closed while the request was in flight; the backend may "
                "have accepted the message",
                message_id=track.message_id,
                attempts=max(1, track.attempts),
            )
        return SendAbortedError(
            "the transport closed before the message was sent (drain timeout)",
            message_id=track.message_id,
            attempts=track.attempts,
        )

    async def _send_prepared(
        self,
        composed: ComposedMessage,
        msg: Message | None,
        started: float,
        track: _SendTrack,
    ) -> SendResult:
        loop = self._loop
        assert loop is not None
        weight = self._weight(composed)
        waits = _Waits()
        attempt = 0
        while True:
            attempt += 1
            track.attempts = attempt
            track.phase = _Phase.WAITING
            error: DeliveryError
            try:
                if self._reserving:
                    await self._reserve(composed, msg)
                try:
                    delivery = await self._gated(
                        weight, track, waits, lambda: self._deliver(composed, msg)
                    )
                except BaseException:
                    if self._reserving and track.phase is not _Phase.IN_FLIGHT:
                        self._unreserve(composed, msg)
                    raise
            except DeliveryError as exc:
                error = exc
            except MailError:
                raise  # usage or message errors: nothing to retry
            except (OSError, TimeoutError, asyncio.TimeoutError) as exc:
                # A network outcome the transport did not map: once the request may have
                # been written, the outcome is unknown.
                if track.phase is not _Phase.IN_FLIGHT:
                    raise
                error = DeliveryUnknownError(
                    f"{type(self).__name__}'s connection failed during the request "
                    f"({type(exc).__name__}: {exc}); the backend may have accepted the message"
                )
                error.__cause__ = exc
            except Exception as exc:
                # Not a network or service outcome: a bug in asyncmailer or a dependency.
                # Raised as it is, never disguised as "the message may have been delivered".
                _note_bug(exc, type(self).__name__)
                raise
            else:
                if track.maybe_sent:
                    logger.warning(
                        "asyncmailer: %s delivered on attempt %d after an ambiguous failure; "
                        "it may have been delivered twice",
                        composed.message_id,
                        attempt,
                    )
                return SendResult(
                    envelope=composed.envelope,
                    message_id=delivery.message_id,
                    response=delivery.response,
                    rate_wait=waits.rate,
                    connection_wait=waits.connection,
                    attempts=attempt,
                    elapsed=loop.time() - started,
                    transport=self.name,
                )
            # Not in a ``finally``: an abort by aclose() must still see IN_FLIGHT.
            track.phase = _Phase.WAITING
            error.attempts = attempt
            if error.message_id is None:
                error.message_id = composed.message_id
            if isinstance(error, SendingRateExceededError) and self._limiter is not None:
                self._limiter.throttled()
            delay = self.retry.next_delay(error, attempt, loop.time() - started, self._rng)
            if delay is None:
                raise self._final(error, track)
            if error.outcome is Outcome.AMBIGUOUS:
                track.maybe_sent = True
            logger.info(
                "asyncmailer: %s for %s (attempt %d), retrying in %.3fs",
                type(error).__name__,
                composed.message_id,
                attempt,
                delay,
            )
            track.phase = _Phase.BACKOFF
            await asyncio.sleep(delay)

    async def _gated(
        self,
        weight: int,
        track: _SendTrack,
        waits: _Waits,
        call: Callable[[], Awaitable[_T]],
    ) -> _T:
        """Run one backend request: connection slot → (warm gate) → rate grant → ``call()``.

        ``track.phase`` is ``IN_FLIGHT`` from the moment the backend may see the request.
        A grant that went stale before the request left (:mod:`._grant`) is given up and
        asked for again; nothing was written. ``send_mail`` runs each attempt through it
        (``call`` is ``_deliver``), and so do requests that are not one composed message
        (SES templated and bulk sends, :mod:`._ses_bulk`).
        """
        loop = self._loop
        assert loop is not None
        queued_at = loop.time()
        async with self._semaphore or contextlib.nullcontext():
            waits.connection += loop.time() - queued_at
            gate = self._warm_gate
            alone = await gate.enter() if gate is not None else False
            try:
                while True:
                    grant = None
                    pacer = self._pacer
                    if pacer is not None:
                        # Ahead of every composing step. Taken before the rate limiter:
                        # a grant that needs no wait is then dated in the loop iteration
                        # that builds and writes its request, not before a queue of
                        # other tasks' steps.
                        await pacer.turn(urgent=True)
                    if self._limiter is not None:
                        grant = await self._limiter.acquire(weight)
                        waits.rate += grant.waited
                        if pacer is not None:
                            # Free when acquire() did not wait (this task still holds the
                            # turn); after a wait, the turn is taken again.
                            await pacer.turn(urgent=True)
                    track.phase = _Phase.IN_FLIGHT
                    try:
                        with holding(grant, loop, self._limiter):
                            if check_grant():
                                self.stale_grants += 1
                            return await call()
                    except GrantExpired as stale:
                        track.phase = _Phase.WAITING
                        self.stale_grants += 1
                        if grant is not None and self._limiter is not None:
                            self._limiter.discard(grant)  # its request never left
                        logger.debug("asyncmailer: %s; asking the rate limiter again", stale)
            finally:
                if gate is not None:
                    gate.leave(alone)

    @contextlib.contextmanager
    def _tracked(self, track: _SendTrack) -> Iterator[None]:
        """``send_mail``'s book-keeping around a request that is not one composed message.

        Counts it as pending (``aclose`` drains it), lets ``aclose`` abort it after the
        drain timeout (raising :meth:`_aborted`'s error), and records its failure while
        closing. Used by :mod:`._ses_bulk`.
        """
        self._check_open()
        assert self._idle is not None
        self._pending += 1
        self._idle.clear()
        track.task = asyncio.current_task()
        self._sends.add(track)
        try:
            try:
                yield
            except asyncio.CancelledError:
                if not _aborted_by_close(track):
                    raise
                raise self._aborted(track) from None
        except MailError as exc:
            if self._state is not TransportState.OPEN:
                self._failures.append((track.message_id, exc))
            raise
        finally:
            self._sends.discard(track)
            if track.aborting:
                _withdraw_abort(track)
            self._pending -= 1
            if not self._pending:
                self._idle.set()

    @staticmethod
    def _final(error: DeliveryError, track: _SendTrack) -> DeliveryError:
        """The error to raise: never claim "retry-safe" after an ambiguous attempt."""
        return final_error(error, maybe_sent=track.maybe_sent)

    async def send_many(
        self,
        messages: Iterable[MessageInput] | AsyncIterable[MessageInput],
        *,
        concurrency: int | None = None,
        progress: Callable[[int, SendOutcome], object] | None = None,
    ) -> AsyncGenerator[SendOutcome, None]:
        """Send many messages with bounded concurrency; yield one outcome each, in order.

        Example::

            async with contextlib.aclosing(ses.send_many(messages, concurrency=20)) as outcomes:
                async for outcome in outcomes:
                    if isinstance(outcome, MailError):
                        log_failure(outcome)

        An outcome is a :class:`SendResult` or the :class:`~asyncmailer.errors.MailError`
        that message ended with (errors are yielded, not raised, so one bad message does
        not stop the batch). ``messages`` (an iterable or async iterable) is consumed
        lazily by ``concurrency`` worker tasks (default: ``max_connections``, else 32) —
        never one task per message: at most ``concurrency`` messages are being sent and at
        most ``2 × concurrency`` outcomes wait to be yielded, whatever the length of the
        input. ``progress(done, outcome)`` is called before each outcome is yielded.

        An exception from ``messages`` itself, from ``progress``, or one that is not a
        ``MailError`` stops the batch and is raised here. Leaving the loop early (or
        closing the generator) cancels the sends in progress, with ``send_mail``'s
        cancellation semantics; use :func:`contextlib.aclosing` to make that immediate.
        """
        self._check_open()
        workers_n = (self.max_connections or 32) if concurrency is None else concurrency
        if isinstance(workers_n, bool) or not isinstance(workers_n, int) or workers_n < 1:
            raise ConfigurationError(
                f"concurrency must be a positive integer, got {concurrency!r}",
                option="concurrency",
            )
        source = aiter_of(messages)

        async def send(item: MessageInput) -> SendOutcome:
            try:
                return await self.send_mail(item)
            except MailError as exc:
                return exc

        done = 0
        try:
            async with contextlib.aclosing(
                ordered_fanout(source.__anext__, send, workers_n)
            ) as outcomes:
                async for outcome in outcomes:
                    done += 1
                    if progress is not None:
                        progress(done, outcome)
                    yield outcome
        finally:
            await source.aclose()


def final_error(error: DeliveryError, *, maybe_sent: bool) -> DeliveryError:
    """Never report "retry-safe" for a message an earlier ambiguous attempt may have sent."""
    if not maybe_sent or error.outcome is Outcome.AMBIGUOUS:
        return error
    unknown = DeliveryUnknownError(
        f"an earlier attempt may have been accepted (its outcome was unknown and it was "
        f"retried); the last attempt failed with {type(error).__name__}: {error}",
        code=error.code,
        service_message=error.service_message,
        request_id=error.request_id,
        message_id=error.message_id,
        attempts=error.attempts,
    )
    unknown.__cause__ = error
    return unknown


def _note_bug(exc: BaseException, transport: str) -> None:
    """Add a hint to an unexpected exception (kept as it is) and log it."""
    note = (
        f"asyncmailer: {type(exc).__name__} escaped {transport} during a send; this is a bug "
        "in asyncmailer or one of its dependencies (please report it with this traceback)"
    )
    add_note = getattr(exc, "add_note", None)  # Python 3.11+
    if add_note is not None:
        add_note(note)
    logger.error("%s: %s", note, exc)


def _abort(track: _SendTrack) -> None:
    """``aclose``: cancel a send still running after the drain timeout."""
    task = track.task
    if task is not None and not task.done():
        cancelling = getattr(task, "cancelling", None)  # Python 3.11+
        track.cancelling = cancelling() if cancelling is not None else 0
        track.aborting = True
        task.cancel()


def _aborted_by_close(track: _SendTrack) -> bool:
    """Whether the ``CancelledError`` being handled is ``aclose``'s abort of this send alone.

    On Python 3.11+ the abort's cancel request is withdrawn (``Task.uncancel``); if another
    one came after it (the caller cancelled too), the cancellation goes on.
    """
    if not track.aborting:
        return False
    return _withdraw_abort(track)


def _withdraw_abort(track: _SendTrack) -> bool:
    """Withdraw ``aclose``'s cancel request of this send; True if no other one is pending.

    Also called when the send ends without the ``CancelledError`` reaching it (code on the
    way swallowed it), so the caller's task is not left counting a cancellation.
    """
    track.aborting = False
    uncancel = getattr(track.task, "uncancel", None)  # Python 3.11+
    return uncancel is None or uncancel() <= track.cancelling
