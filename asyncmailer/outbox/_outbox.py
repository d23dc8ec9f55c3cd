"""The durable outbox: composed mail stored in Redis until a worker reports its outcome."""

from __future__ import annotations

import asyncio
import datetime
import json
import math
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from asyncmailer.errors import ConfigurationError, MessageTooLargeError, TransportStateError
from asyncmailer.message import Envelope, Message
from asyncmailer.outbox import _scripts
from asyncmailer.outbox._model import (
    Durability,
    DurabilityError,
    OutboxFullError,
    OutboxResult,
    OutboxState,
    OutboxStats,
    OutboxStatus,
    error_from_json,
)
from asyncmailer.result import ComposedMessage
from asyncmailer.transports.base import MessageInput, Transport

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript
    from typing_extensions import Self

    from asyncmailer.outbox._worker import OutboxWorker

__all__ = ["Outbox", "StoredMessage"]

#: Seconds a call waits for a free connection of the pool the outbox creates.
_POOL_WAIT = 60.0

INSTALL_HINT = "Outbox needs the redis package: pip install 'asyncmailer[redis]'"

#: When ``send_at`` accepts a number, it is seconds since the epoch.
SendAt = datetime.datetime | float | int

#: One waiting enqueue: its keys and arguments for ENQUEUE, and the future of its id.
_Waiting = tuple[list[Any], list[Any], "asyncio.Future[str]"]
#: Messages, and payload octets, stored by one ENQUEUE call at most.
_ENQUEUE_BATCH = 128
_ENQUEUE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as the outbox stores it: composed bytes, envelope and per-message options."""

    #: The composed message, exactly as it will be sent.
    composed: ComposedMessage
    #: Per-message SES options (``Message.ses``), or None.
    ses: Mapping[str, Any] | None = None

    def encode(self) -> bytes:
        """One JSON line (envelope, Message-ID, options), then the bytes: no base64."""
        head: dict[str, Any] = {
            "f": self.composed.envelope.from_,
            "t": list(self.composed.envelope.to),
            "m": self.composed.message_id,
        }
        if self.composed.smtputf8:
            head["u"] = 1
        if self.ses:
            head["s"] = self.ses
        return json.dumps(head, separators=(",", ":")).encode() + b"\n" + self.composed.raw

    @classmethod
    def decode(cls, data: bytes) -> StoredMessage:
        """The inverse of :meth:`encode`."""
        head_bytes, _, raw = data.partition(b"\n")
        head = json.loads(head_bytes)
        composed = ComposedMessage(
            raw=raw,
            envelope=Envelope(head["f"], tuple(head["t"])),
            message_id=head["m"],
            smtputf8=bool(head.get("u", 0)),
        )
        return cls(composed, head.get("s"))

    def as_message(self) -> Message:
        """The :class:`~asyncmailer.Message` a worker hands to ``send_composed`` with the bytes.

        It carries the per-message options (``ses``); the bytes are not composed again.
        Given to ``send_mail`` it would send the same message: the raw bytes with the
        explicit envelope, ``keep_bcc`` so that nothing is removed and ``dkim=False`` so
        that a message signed at enqueue is not signed twice.
        """
        return Message(
            raw=self.composed.raw,
            envelope=self.composed.envelope,
            keep_bcc=True,
            dkim=False,
            ses=self.ses,
        )


def _redis_module() -> Any:
    try:
        import redis.asyncio  # optional dependency: imported lazily
    except ImportError as exc:  # pragma: no cover - the redis extra is installed in tests
        raise ImportError(INSTALL_HINT) from exc
    return redis.asyncio


def _positive(name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(f"{name} must be a positive number, got {value!r}", option=name)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    return text or None


class Outbox:
    """Mail accepted into Redis, sent by workers, every message ending in a reported outcome.

    Example::

        outbox = Outbox("redis://localhost:6379/0", transport=ses, stream="mail:{outbox}")
        async with outbox:
            outbox_id = await outbox.enqueue(from_="shop@example.com", to="ada@example.com",
                                             subject="Your order", text="Thanks!",
                                             key="order-42-confirmation")
            ...
            status = await outbox.status(outbox_id)   # queued / sending / sent / failed / unknown

    Workers run anywhere (``async with outbox.worker(concurrency=8): ...`` in an app's
    lifespan, or ``asyncmailer outbox work`` as a process). See ``docs/durable-sending.md``.

    - ``redis``: a Redis URL (the outbox creates its client on open and closes it) or a
      ``redis.asyncio.Redis`` client with ``decode_responses=False`` (used as is).
    - ``transport``: composes at :meth:`enqueue` (``transport.prepare``: the DKIM signature
      and the transport's checks apply) and sends in workers (``transport.send_mail``). The
      outbox never opens or closes it: open it where workers run.
    - ``stream``: the stream key; every other key starts with it (use a hash tag on
      Redis Cluster: ``"mail:{outbox}"``).
    - ``group``: the consumer group workers read through.
    - ``durability``: what :meth:`enqueue` waits for (:class:`Durability`).
    - ``max_queued``: refuse enqueues (:class:`OutboxFullError`) while this many messages
      are queued, scheduled or in flight (None: no limit). Unsent mail is never trimmed.
    - ``max_message_size``: refuse composed messages larger than this many octets
      (:class:`~asyncmailer.errors.MessageTooLargeError`); the transport's own limits
      apply as well.
    - ``key_ttl``: seconds an idempotency key maps to its id (default one day).
    - ``result_ttl``: seconds the status of a *sent* message is kept (default 7 days);
      failed and unknown messages are kept, with their bytes, until an operator acts.
    - ``results_maxlen``: approximate length the results stream is trimmed to.
    - ``max_attempts``: attempts (each including the transport's own quick retries) for
      transient failures before the message is marked failed.
    - ``resend_unknown``: resend a message whose worker died while sending it instead of
      parking it as unknown. **It may then be delivered twice.** Off by default.
    - ``max_connections``: size of the connection pool the outbox creates from a URL;
      more concurrent calls wait for a connection, up to 60 s, then fail with Redis's
      connection error (a given client keeps its own pool).
    """

    def __init__(
        self,
        redis: str | Redis,
        *,
        transport: Transport,
        stream: str,
        group: str = "asyncmailer",
        durability: Durability | None = None,
        max_queued: int | None = None,
        max_message_size: int | None = None,
        key_ttl: float = 86400.0,
        result_ttl: float = 7 * 86400.0,
        results_maxlen: int = 100_000,
        max_attempts: int = 5,
        resend_unknown: bool = False,
        max_connections: int = 64,
    ) -> None:
        if isinstance(redis, str):
            self._url: str | None = redis
            self._client_given: Redis | None = None
        else:
            if not hasattr(redis, "evalsha"):
                raise ConfigurationError(
                    f"redis must be a URL or a redis.asyncio.Redis, not {type(redis).__name__}",
                    option="redis",
                )
            kwargs = cast(Any, redis).get_connection_kwargs()
            if kwargs.get("decode_responses"):
                raise ConfigurationError(
                    "the Redis client must use decode_responses=False: messages are bytes",
                    option="redis",
                )
            self._url = None
            self._client_given = redis
        if not isinstance(transport, Transport):
            raise ConfigurationError("transport must be a Transport", option="transport")
        if not isinstance(stream, str) or not stream:
            raise ConfigurationError("stream must be a non-empty string", option="stream")
        if not isinstance(group, str) or not group:
            raise ConfigurationError("group must be a non-empty string", option="group")
        if durability is not None and not isinstance(durability, Durability):
            raise ConfigurationError("durability must be a Durability", option="durability")
        for name, value in (("max_queued", max_queued), ("max_message_size", max_message_size)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigurationError(f"{name} must be a positive integer or None", option=name)
        _positive("key_ttl", key_ttl)
        _positive("result_ttl", result_ttl)
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigurationError("max_attempts must be an integer >= 1", option="max_attempts")
        if (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or max_connections < 2
        ):
            raise ConfigurationError(
                "max_connections must be an integer >= 2", option="max_connections"
            )
        if isinstance(results_maxlen, bool) or not isinstance(results_maxlen, int):
            raise ConfigurationError("results_maxlen must be an integer", option="results_maxlen")
        #: The transport that composes (at enqueue) and sends (in workers).
        self.transport = transport
        #: The stream key; every other key of this outbox starts with it.
        self.stream = stream
        #: The consumer group workers read through.
        self.group = group
        #: What ``enqueue`` waits for before returning.
        self.durability = durability if durability is not None else Durability()
        #: Refuse enqueues while this many messages wait (None: no limit).
        self.max_queued = max_queued
        #: Largest composed message accepted, octets (None: the transport decides).
        self.max_message_size = max_message_size
        #: Seconds an idempotency key maps to its id.
        self.key_ttl = float(key_ttl)
        #: Seconds the status of a sent message is kept.
        self.result_ttl = float(result_ttl)
        #: Approximate length of the results stream.
        self.results_maxlen = results_maxlen
        #: Attempts for transient failures before a message is marked failed.
        self.max_attempts = max_attempts
        #: Resend messages whose worker died mid-send (may deliver twice).
        self.resend_unknown = bool(resend_unknown)
        #: Connections of the client the outbox creates from a URL (callers beyond it wait).
        self.max_connections = max_connections
        #: The sorted set of scheduled messages and retries.
        self.schedule_key = f"{stream}:sched"
        #: The sorted set of unknown outcomes.
        self.unknown_key = f"{stream}:unknown"
        #: The sorted set of failed messages.
        self.failed_key = f"{stream}:failed"
        #: The results stream.
        self.results_key = f"{stream}:results"
        #: The counters hash.
        self.stats_key = f"{stream}:stats"
        self._client: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        # Enqueues waiting for the next ENQUEUE call, and the task making it.
        self._waiting: list[_Waiting] = []
        self._storer: asyncio.Task[None] | None = None
        self._waitaof = False
        self._opened = False

    def __repr__(self) -> str:
        return f"Outbox(stream={self.stream!r}, group={self.group!r})"

    # ----------------------------------------------------------------- keys

    def state_key(self, outbox_id: str) -> str:
        """The Redis hash holding one message's state."""
        return f"{self.stream}:s:{outbox_id}"

    def payload_key(self, outbox_id: str) -> str:
        """The Redis string holding one message's stored bytes."""
        return f"{self.stream}:p:{outbox_id}"

    def idempotency_key(self, key: str) -> str:
        """The Redis string mapping an idempotency key to its outbox id."""
        return f"{self.stream}:k:{key}"

    # ----------------------------------------------------------------- lifecycle

    @property
    def client(self) -> Redis:
        """The Redis client (while open)."""
        if self._client is None:
            raise TransportStateError("the outbox is not open: use 'async with'", state="closed")
        return self._client

    def script(self, name: str) -> AsyncScript:
        """One of the registered Lua scripts (see :mod:`asyncmailer.outbox._scripts`)."""
        self.client  # noqa: B018 - raises when closed
        return self._scripts[name]

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Connect, register the scripts, create the consumer group, check ``durability``."""
        if self._opened:
            return
        module = _redis_module()
        if self._client_given is not None:
            client = self._client_given
        else:
            assert self._url is not None
            # A blocking pool: a burst of enqueues waits for a connection instead of failing
            # with "Too many connections"; never for ever, so that a connection lost by a
            # client bug surfaces as a Redis error instead of a hang.
            pool = module.BlockingConnectionPool.from_url(
                self._url, max_connections=self.max_connections, timeout=_POOL_WAIT
            )
            client = module.Redis(connection_pool=pool)
        self._client = client
        try:
            for name in ("ENQUEUE", "BEGIN", "FINISH", "PROMOTE", "REQUEUE", "HEARTBEAT", "STATS"):
                self._scripts[name] = client.register_script(getattr(_scripts, name))
            await self.ensure_group()
            if self.durability.fsync:
                await self._check_fsync()
        except BaseException:
            await self._release_client()
            raise
        self._opened = True

    async def ensure_group(self) -> None:
        """Create the stream and the consumer group when missing (reading from the start)."""
        from redis.exceptions import ResponseError

        try:
            await self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _check_fsync(self) -> None:
        from redis.exceptions import ResponseError

        client = self.client
        try:
            config = await client.config_get("append*")
        except ResponseError:
            config = {}
        values = {_text(k): _text(v) for k, v in config.items()}
        if values.get("appendonly") == "yes" and values.get("appendfsync") == "always":
            self._waitaof = False
            return
        info = await client.info("server")
        version = tuple(int(p) for p in str(info.get("redis_version", "0.0")).split(".")[:2])
        if version >= (7, 2):
            self._waitaof = True
            return
        raise ConfigurationError(
            "Durability(fsync=True) needs a Redis server with 'appendonly yes' and "
            "'appendfsync always', or Redis 7.2+ (WAITAOF); this server has neither",
            option="durability",
        )

    async def aclose(self) -> None:
        """Close the Redis client if the outbox created it. Stored messages stay in Redis."""
        self._opened = False
        await self._release_client()

    async def _release_client(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._client_given is None:
            await client.aclose()
            if self._client_given is None:
                await client.connection_pool.disconnect()

    # ----------------------------------------------------------------- enqueue

    async def enqueue(
        self,
        message: MessageInput | None = None,
        /,
        *,
        key: str | None = None,
        send_at: SendAt | None = None,
        **fields: Any,
    ) -> str:
        """Compose ``message`` (or ``fields``), store it in Redis, and return its outbox id.

        The message is composed first (``transport.prepare``), so its Message-ID and its
        bytes are fixed and a bad message raises a
        :class:`~asyncmailer.errors.MessageError` here, with nothing stored. The id is
        returned only once Redis has stored the message (as ``durability`` defines).

        ``key`` makes the call safe to retry: while the key is remembered (``key_ttl``),
        enqueuing with the same key stores nothing and returns the first id. ``send_at``
        (an aware ``datetime`` or seconds since the epoch) holds the message until then.
        Raises :class:`OutboxFullError` when ``max_queued`` messages wait, and
        :class:`~asyncmailer.errors.MessageTooLargeError` above ``max_message_size``.
        """
        if key is not None and (not isinstance(key, str) or not key):
            raise ConfigurationError("key must be a non-empty string or None", option="key")
        at_ms = _send_at_ms(send_at)
        composed, msg = await self.transport.prepare(message, **fields)
        ses = dict(msg.ses) if msg is not None and msg.ses else None
        stored = StoredMessage(composed, ses)
        try:
            payload = stored.encode()
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"Message.ses must be JSON-serialisable to be stored: {exc}", option="ses"
            ) from exc
        return await self.enqueue_stored(payload, composed, key=key, send_at_ms=at_ms)

    async def enqueue_stored(
        self,
        payload: bytes,
        composed: ComposedMessage,
        *,
        key: str | None = None,
        send_at_ms: int = 0,
    ) -> str:
        """Store an already composed and encoded message (:meth:`StoredMessage.encode`)."""
        limit = self.max_message_size
        if limit is not None and len(composed.raw) > limit:
            raise MessageTooLargeError(
                f"the composed message is {len(composed.raw)} octets; this outbox accepts "
                f"at most {limit} (max_message_size)",
                size=len(composed.raw),
                limit=limit,
            )
        outbox_id = uuid.uuid4().hex
        keys = [
            self.state_key(outbox_id),
            self.payload_key(outbox_id),
            self.idempotency_key(key) if key is not None else self.stream,
        ]
        args = [outbox_id, payload, key or "", send_at_ms, composed.message_id]
        self.client  # noqa: B018 - raises when closed
        loop = asyncio.get_running_loop()
        stored: asyncio.Future[str] = loop.create_future()
        self._waiting.append((keys, args, stored))
        if self._storer is None or self._storer.done():
            self._storer = loop.create_task(self._store_waiting())
        # Shielded: a cancelled caller does not take the batch's other messages with it.
        return await asyncio.shield(stored)

    async def _store_waiting(self) -> None:
        """Store every waiting ``enqueue``, a batch per ENQUEUE call (a group commit).

        An ``enqueue`` that arrives while a call runs goes in the next one: one at a time
        costs one call each, as before; many at once share the calls.
        """
        while self._waiting:
            size, count = 0, 0
            for _, args, _ in self._waiting:
                if count and (count >= _ENQUEUE_BATCH or size + len(args[1]) > _ENQUEUE_BYTES):
                    break
                size += len(args[1])
                count += 1
            batch, self._waiting = self._waiting[:count], self._waiting[count:]
            try:
                outcomes = await self._store_batch(batch)
            except asyncio.CancelledError:
                for _, _, stored in batch:
                    stored.cancel()
                raise
            except BaseException as exc:
                outcomes = [exc] * len(batch)
            for (_, _, stored), outcome in zip(batch, outcomes, strict=True):
                if stored.done():
                    continue
                if isinstance(outcome, BaseException):
                    stored.set_exception(outcome)
                    stored.exception()  # its caller may have been cancelled: no warning
                else:
                    stored.set_result(outcome)

    async def _store_batch(self, batch: list[_Waiting]) -> list[str | BaseException]:
        keys: list[Any] = [self.stream, self.schedule_key, self.stats_key]
        args: list[Any] = [int(self.key_ttl * 1000), self.max_queued or 0]
        for message_keys, message_args, _ in batch:
            keys += message_keys
            args += message_args
        answer = await self.script("ENQUEUE")(keys=keys, args=args)
        outcomes: list[str | BaseException] = []
        fresh: list[int] = []
        for i in range(len(batch)):
            status, text = int(answer[2 * i]), _text(answer[2 * i + 1]) or ""
            if status == 2:
                outcomes.append(
                    OutboxFullError(
                        f"the outbox holds {text} messages (max_queued={self.max_queued}); "
                        "nothing was stored",
                        queued=int(text),
                        limit=self.max_queued or 0,
                    )
                )
                continue
            if status == 1:
                fresh.append(i)
            outcomes.append(text)
        if fresh:
            # One WAIT / WAITAOF covers every message of the batch.
            shortfall = await self._durability_shortfall()
            if shortfall is not None:
                for i in fresh:
                    outcomes[i] = shortfall(cast(str, outcomes[i]))
        return outcomes

    async def _durability_shortfall(self) -> Callable[[str], DurabilityError] | None:
        """Wait as ``durability`` asks; None when satisfied, else a maker of the error."""
        durability = self.durability
        timeout_ms = max(1, int(durability.timeout * 1000))
        client = self.client
        if durability.fsync and self._waitaof:
            local, _ = await cast(Any, client).execute_command("WAITAOF", 1, 0, timeout_ms)
            if int(local) < 1:
                return lambda outbox_id: DurabilityError(
                    f"message {outbox_id} is stored but was not fsynced within "
                    f"{durability.timeout}s",
                    id=outbox_id,
                    acknowledged=int(local),
                    required=1,
                )
        if durability.replicas:
            acked = int(
                await cast(Any, client).execute_command("WAIT", durability.replicas, timeout_ms)
            )
            if acked < durability.replicas:
                return lambda outbox_id: DurabilityError(
                    f"message {outbox_id} is stored on the primary but only {acked} of "
                    f"{durability.replicas} replicas acknowledged it within "
                    f"{durability.timeout}s",
                    id=outbox_id,
                    acknowledged=acked,
                    required=durability.replicas,
                )
        return None

    # ----------------------------------------------------------------- reading

    async def status(self, outbox_id: str) -> OutboxStatus | None:
        """Where message ``outbox_id`` is; None when the id is unknown (or its status expired).

        ``SENT`` carries the backend's id (``ses_message_id``), ``FAILED`` the typed
        error, ``UNKNOWN`` why the outcome is unknown.
        """
        data = await self.client.hgetall(self.state_key(outbox_id))
        if not data:
            return None
        fields = {_text(k): v for k, v in data.items()}

        def num(name: str) -> float | None:
            value = fields.get(name)
            return None if value is None or value == b"" else float(value)

        created = num("c") or 0.0
        updated = num("t")
        at = num("at")
        return OutboxStatus(
            id=outbox_id,
            state=OutboxState(_text(fields["st"])),
            key=_text(fields.get("k")),
            message_id=_text(fields.get("vm")) or _text(fields.get("m")),
            attempts=int(num("a") or 0),
            created_at=created / 1000,
            updated_at=None if updated is None else updated / 1000,
            send_at=None if at is None else at / 1000,
            ses_message_id=_text(fields.get("sid")),
            error=error_from_json(fields.get("err")),
        )

    async def id_for_key(self, key: str) -> str | None:
        """The outbox id enqueued with idempotency ``key``, while it is remembered."""
        return _text(await self.client.get(self.idempotency_key(key)))

    async def stored_message(self, outbox_id: str) -> StoredMessage | None:
        """The stored message (None once sent: the bytes of sent messages are deleted)."""
        data: Any = await self.client.get(self.payload_key(outbox_id))
        return None if data is None else StoredMessage.decode(data)

    async def stats(self, *, throughput_window: float = 10.0) -> OutboxStats:
        """Counts, the age of the oldest waiting message, and the recent throughput."""
        _positive("throughput_window", throughput_window)
        keys = [
            self.stream,
            self.schedule_key,
            self.unknown_key,
            self.failed_key,
            self.results_key,
            self.stats_key,
        ]
        window_ms = int(throughput_window * 1000)
        raw = await self.script("STATS")(keys=keys, args=[self.group, window_ms])
        xlen, pending, scheduled, unknown, failed, sent, oldest, now, recent = (int(v) for v in raw)
        return OutboxStats(
            queued=max(0, xlen - pending),
            scheduled=scheduled,
            in_flight=pending,
            unknown=unknown,
            failed=failed,
            sent_total=sent,
            oldest_age=0.0 if oldest < 0 else max(0.0, (now - oldest) / 1000),
            throughput=recent / throughput_window,
            throughput_window=throughput_window,
        )

    async def unknown_ids(self, *, limit: int = 1000) -> list[str]:
        """Ids on the unknown list, oldest first."""
        return [_text(v) or "" for v in await self.client.zrange(self.unknown_key, 0, limit - 1)]

    async def failed_ids(self, *, limit: int = 1000) -> list[str]:
        """Ids on the failed list, oldest first."""
        return [_text(v) or "" for v in await self.client.zrange(self.failed_key, 0, limit - 1)]

    async def results(
        self,
        *,
        after: str = "0-0",
        block: float | None = None,
        count: int = 100,
    ) -> AsyncIterator[OutboxResult]:
        """Results (sent, failed, unknown) after entry id ``after``, oldest first.

        With ``block`` (seconds), waits for new results and never ends; feed your
        application and the bounce/complaint loop from it, remembering the last
        ``entry_id`` to resume. A message that was unknown and then got its late answer
        appears twice: the later entry wins.
        """
        cursor = after
        block_ms = None if block is None else max(1, int(block * 1000))
        client: Any = self.client
        while True:
            batch: Any
            if block_ms is None:
                batch = await client.xrange(self.results_key, f"({cursor}", "+", count=count)
            else:
                answer = await client.xread({self.results_key: cursor}, count=count, block=block_ms)
                batch = answer[0][1] if answer else []
            for entry_id, fields in batch:
                cursor = _text(entry_id) or cursor
                yield _result(cursor, fields)
            if block_ms is None and len(batch) < count:
                return

    # ----------------------------------------------------------------- operator actions

    async def requeue_failed(self, ids: Iterable[str] | None = None) -> int:
        """Put failed messages (all, or ``ids``) back in the stream; returns how many."""
        return await self._requeue(ids, "failed", self.failed_key)

    async def retry_unknown(self, ids: Iterable[str] | None = None, *, confirm: bool) -> int:
        """Send unknown messages (all, or ``ids``) again. **They may be delivered twice.**

        ``confirm=True`` is required: an unknown message may already have been accepted.
        Check the recipients' side (or SES's event stream) first when you can.
        """
        if confirm is not True:
            raise ConfigurationError(
                "retry_unknown resends messages that may already have been delivered; "
                "pass confirm=True",
                option="confirm",
            )
        return await self._requeue(ids, "unknown", self.unknown_key)

    async def _requeue(self, ids: Iterable[str] | None, state: str, zset: str) -> int:
        chosen: Sequence[str]
        if ids is None:
            chosen = [_text(v) or "" for v in await self.client.zrange(zset, 0, -1)]
        else:
            chosen = list(ids)
        moved = 0
        script = self.script("REQUEUE")
        for outbox_id in chosen:
            keys = [
                self.stream,
                self.state_key(outbox_id),
                self.payload_key(outbox_id),
                zset,
                self.stats_key,
            ]
            if int(await script(keys=keys, args=[outbox_id, state])) == 1:
                moved += 1
        return moved

    async def promote_due(self, *, limit: int = 500) -> int:
        """Move scheduled messages whose time has come into the stream (workers do this)."""
        keys = [self.stream, self.schedule_key]
        return int(await self.script("PROMOTE")(keys=keys, args=[f"{self.stream}:s:", limit]))

    # ----------------------------------------------------------------- workers

    def worker(
        self,
        *,
        concurrency: int = 8,
        claim_idle: float = 30.0,
        consumer: str | None = None,
        block: float = 0.5,
        poll_interval: float = 0.25,
        drain_timeout: float | None = 30.0,
    ) -> OutboxWorker:
        """A worker sending this outbox's mail; run it with ``async with`` or ``run()``.

        See :class:`~asyncmailer.outbox.OutboxWorker` for the options.
        """
        from asyncmailer.outbox._worker import OutboxWorker

        return OutboxWorker(
            self,
            concurrency=concurrency,
            claim_idle=claim_idle,
            consumer=consumer,
            block=block,
            poll_interval=poll_interval,
            drain_timeout=drain_timeout,
        )

    async def wait_idle(self, *, timeout: float | None = None, poll: float = 0.05) -> OutboxStats:
        """Wait until nothing is queued, in flight or due; return the last stats."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            stats = await self.stats()
            if stats.queued == 0 and stats.in_flight == 0 and stats.scheduled == 0:
                return stats
            if deadline is not None and loop.time() >= deadline:
                raise TimeoutError(f"the outbox is not idle after {timeout}s: {stats}")
            await asyncio.sleep(poll)


def _send_at_ms(send_at: SendAt | None) -> int:
    if send_at is None:
        return 0
    if isinstance(send_at, datetime.datetime):
        if send_at.tzinfo is None:
            raise ConfigurationError(
                "send_at must be timezone-aware (datetime.now(timezone.utc) + ...)",
                option="send_at",
            )
        return int(send_at.timestamp() * 1000)
    if isinstance(send_at, bool) or not isinstance(send_at, (int, float)):
        raise ConfigurationError("send_at must be a datetime or a number", option="send_at")
    if not math.isfinite(send_at):
        raise ConfigurationError("send_at must be finite", option="send_at")
    return int(send_at * 1000)


def _result(entry_id: str, fields: Mapping[Any, Any]) -> OutboxResult:
    data = {_text(k): v for k, v in fields.items()}
    error_type = _text(data.get("err"))
    return OutboxResult(
        entry_id=entry_id,
        id=_text(data.get("i")) or "",
        state=OutboxState(_text(data.get("st"))),
        key=_text(data.get("k")),
        message_id=_text(data.get("m")),
        ses_message_id=_text(data.get("sid")),
        error_type=error_type,
        attempts=int(_text(data.get("a")) or 0),
    )
