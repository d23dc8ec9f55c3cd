"""Value objects and errors of the outbox: states, statuses, stats, durability."""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from typing import Any

from asyncmailer import errors as _errors
from asyncmailer.errors import ConfigurationError, DeliveryError, MailError, Outcome

__all__ = [
    "Durability",
    "DurabilityError",
    "OutboxError",
    "OutboxFullError",
    "OutboxResult",
    "OutboxState",
    "OutboxStats",
    "OutboxStatus",
]


class OutboxState(enum.Enum):
    """Where one outbox message is. ``SENT``, ``FAILED`` and ``UNKNOWN`` are terminal."""

    #: Held until its ``send_at`` time, or waiting for a retry after a transient failure.
    SCHEDULED = "scheduled"
    #: Stored in the stream, waiting for a worker.
    QUEUED = "queued"
    #: A worker recorded an attempt and is sending it (or died while doing so).
    SENDING = "sending"
    #: The transport accepted it; ``OutboxStatus.ses_message_id`` holds the backend's id.
    SENT = "sent"
    #: It failed for good (the backend refused it, or retries ran out).
    FAILED = "failed"
    #: An attempt was in flight when it ended without an answer: it may have been sent.
    #: Never resent automatically (``asyncmailer outbox retry-unknown --confirm``).
    UNKNOWN = "unknown"

    @property
    def terminal(self) -> bool:
        """True for ``SENT``, ``FAILED`` and ``UNKNOWN``: no worker will touch it again."""
        return self in (OutboxState.SENT, OutboxState.FAILED, OutboxState.UNKNOWN)


class OutboxError(MailError):
    """Root of the outbox's own errors (usage and storage problems, not delivery)."""


class OutboxFullError(OutboxError):
    """``enqueue`` refused a message because ``max_queued`` messages are waiting.

    Nothing was stored. Retry later, or raise ``max_queued``.
    """

    def __init__(self, message: str, *, queued: int, limit: int) -> None:
        super().__init__(message)
        #: Messages queued or scheduled when the message was refused.
        self.queued = queued
        #: The ``max_queued`` limit.
        self.limit = limit


class DurabilityError(OutboxError):
    """The message was stored on the Redis primary, but not as durably as ``durability`` asks.

    ``id`` is the message's outbox id: it **is** in the outbox and will be sent unless
    the primary loses it. Retrying ``enqueue`` with the same idempotency ``key`` is safe.
    """

    def __init__(self, message: str, *, id: str, acknowledged: int, required: int) -> None:
        super().__init__(message)
        #: The outbox id of the stored message.
        self.id = id
        #: Replicas (or AOF fsyncs) that acknowledged the write in time.
        self.acknowledged = acknowledged
        #: How many were required.
        self.required = required


@dataclass(frozen=True, slots=True, kw_only=True)
class Durability:
    """What ``enqueue`` waits for before it returns an id. See ``docs/durable-sending.md``.

    Example::

        Outbox(url, transport=ses, stream="mail", durability=Durability(fsync=True))

    - default (``Durability()``): the Redis primary applied the write. It is on disk when
      Redis says so: with ``appendonly yes`` and ``appendfsync always``, before the reply;
      with ``appendfsync everysec``, within about a second (a crash loses up to that);
      without AOF, at the next RDB snapshot.
    - ``fsync=True``: the write is fsynced to the primary's AOF before the id is returned.
      Checked when the outbox opens: the server must run ``appendfsync always``, or be
      Redis 7.2+ (``WAITAOF`` is then called after each enqueue).
    - ``replicas=N``: ``WAIT N`` after each enqueue; fewer acknowledgements within
      ``timeout`` seconds raise :class:`DurabilityError` (the message is still stored).
    """

    #: Wait until the write is fsynced to the primary's append-only file.
    fsync: bool = False
    #: Replicas that must acknowledge the write (``WAIT``); 0: none.
    replicas: int = 0
    #: Seconds to wait for replicas or the fsync.
    timeout: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int):
            raise ConfigurationError("replicas must be an integer >= 0", option="replicas")
        if self.replicas < 0:
            raise ConfigurationError("replicas must be an integer >= 0", option="replicas")
        if (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, (int, float))
            or not math.isfinite(self.timeout)
            or self.timeout <= 0
        ):
            raise ConfigurationError("timeout must be a positive number", option="timeout")


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxStatus:
    """What :meth:`Outbox.status` reports for one message."""

    #: The outbox id ``enqueue`` returned.
    id: str
    #: Where the message is.
    state: OutboxState
    #: The idempotency key given to ``enqueue`` (None without one).
    key: str | None
    #: The ``Message-ID`` fixed at enqueue (for SES, recipients see SES's own).
    message_id: str | None
    #: Attempts recorded by workers (an attempt may include the transport's quick retries).
    attempts: int
    #: When it was enqueued (Redis server time, seconds since the epoch).
    created_at: float
    #: When its state last changed (Redis server time), None before any worker saw it.
    updated_at: float | None = None
    #: When a scheduled message (or a retry) becomes due, seconds since the epoch.
    send_at: float | None = None
    #: The backend's id of a sent message (SES ``MessageId``; SMTP reply; file path).
    ses_message_id: str | None = None
    #: The typed error of a failed message, or the last error of an unknown one.
    error: MailError | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxResult:
    """One entry of the results stream: a message reached a terminal state.

    It links the backend's id (SES ``MessageId``, what bounce and complaint notifications
    carry) to the outbox id and your idempotency key.
    """

    #: The results-stream entry id (pass it back to :meth:`Outbox.results` to resume).
    entry_id: str
    #: The outbox id.
    id: str
    #: ``SENT``, ``FAILED`` or ``UNKNOWN``.
    state: OutboxState
    #: Your idempotency key, if any.
    key: str | None
    #: The ``Message-ID`` fixed at enqueue.
    message_id: str | None
    #: The backend's id when sent (SES ``MessageId``).
    ses_message_id: str | None
    #: The error's class name when failed or unknown (``"MessageRejectedError"``...).
    error_type: str | None
    #: Attempts recorded.
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxStats:
    """A snapshot of one outbox, from :meth:`Outbox.stats`."""

    #: In the stream, not yet taken by a worker.
    queued: int
    #: Held for a ``send_at`` time or a retry backoff.
    scheduled: int
    #: Taken by a worker (being sent, or held by a worker that died, until claimed).
    in_flight: int
    #: On the unknown list, waiting for an operator.
    unknown: int
    #: On the failed list.
    failed: int
    #: Sent since the outbox was created (a counter in Redis).
    sent_total: int
    #: Seconds since the oldest message still in the stream entered it (0 when empty).
    oldest_age: float
    #: Messages sent per second over the last ``throughput_window`` seconds.
    throughput: float
    #: The window ``throughput`` is measured over, seconds.
    throughput_window: float


# ----------------------------------------------------------------------- error round trip

_SIMPLE = (str, int, float, bool, type(None))


def error_to_json(exc: BaseException) -> str:
    """Serialise an error's class name, text and simple public fields (for Redis)."""
    fields: dict[str, Any] = {}
    for name, value in vars(exc).items():
        if name.startswith("_"):
            continue
        if isinstance(value, Outcome):
            fields[name] = value.value
        elif isinstance(value, _SIMPLE):
            fields[name] = value
    return json.dumps(
        {"type": type(exc).__name__, "message": str(exc), "fields": fields}, separators=(",", ":")
    )


def error_from_json(text: str | bytes | None) -> MailError | None:
    """Rebuild the typed error :func:`error_to_json` stored (a ``DeliveryError`` if unknown)."""
    if not text:
        return None
    data = json.loads(text)
    cls = getattr(_errors, str(data.get("type", "")), None)
    if not (isinstance(cls, type) and issubclass(cls, MailError)):
        cls = DeliveryError
    # The error classes take different keyword arguments; build the instance without
    # calling __init__ and restore its recorded fields, as pickle does.
    exc = cls.__new__(cls)
    Exception.__init__(exc, str(data.get("message", "")))
    for name, value in dict(data.get("fields", {})).items():
        if name != "outcome":  # the class decides the outcome (asyncmailer.errors)
            setattr(exc, name, value)
    return exc
