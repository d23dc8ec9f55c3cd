"""Consuming SES events from an SQS queue (SES → SNS → SQS, or EventBridge → SQS).

:class:`SQSEventConsumer` long-polls the queue, receives in batches, parses each body with
:func:`~asyncmailer.feedback.parse_ses_event` (SNS envelope, raw delivery or EventBridge)
and awaits your callback. A message is deleted only after the callback returned; one whose
callback raised is made visible again after ``retry_delay`` seconds (attach a dead-letter
queue with a ``maxReceiveCount`` to the queue for poison messages). Example::

    async with SQSEventConsumer(queue_url, apply_to(suppression), region_name="eu-west-1"):
        await stop_requested.wait()

At most ``concurrency`` callbacks run at once, and the consumer never receives more
messages than it has free slots, so nothing waits in memory while its visibility timeout
runs. Leaving the ``async with`` stops receiving (an open long poll is abandoned: what it
would have returned stays in the queue), lets the callbacks in flight finish and delete
their messages, and closes the client: nothing is lost. Delivery is at least once: make the
callback idempotent (:func:`~asyncmailer.feedback.apply_to` is).

IAM: ``sqs:ReceiveMessage``, ``sqs:DeleteMessage``, ``sqs:ChangeMessageVisibility``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from asyncmailer.errors import ConfigurationError, TransportStateError
from asyncmailer.feedback._errors import FeedbackError
from asyncmailer.feedback._events import DEFAULT_MAX_BODY, parse_ses_event
from asyncmailer.feedback._suppression import EventCallback

if TYPE_CHECKING:
    from aiobotocore.session import AioSession
    from typing_extensions import Self

__all__ = ["SQSEventConsumer"]

logger = logging.getLogger("asyncmailer.feedback")


class SQSEventConsumer:
    """Receives SES events from SQS and hands each to ``callback``; deletes it on success.

    :param queue_url: the queue's URL.
    :param callback: ``async def callback(event: SESEvent) -> None``; raising keeps the message.
    :param client: an open aiobotocore ``sqs`` client (left open); otherwise one is created
        from ``session``, ``region_name`` and ``endpoint_url``.
    :param concurrency: callbacks running at most at once.
    :param batch_size: messages per ``ReceiveMessage`` (1–10).
    :param wait_time: long-poll seconds (0–20).
    :param visibility_timeout: seconds a received message stays hidden (``None``: the queue's).
    :param retry_delay: seconds before a message whose callback failed is visible again.
    :param on_invalid: a body that is not an SES event is ``"retry"``-ed like a failure (the
        dead-letter queue gets it) or ``"delete"``-d at once.
    :param shutdown_timeout: seconds the callbacks in flight get at exit; ``None``: no limit.
        Callbacks still running then are cancelled and their messages come back later.
    """

    __slots__ = (
        "_client",
        "_inflight",
        "_poller",
        "_region",
        "_session",
        "_slot_free",
        "_stack",
        "_state",
        "_stopping",
        "batch_size",
        "callback",
        "concurrency",
        "deleted",
        "endpoint_url",
        "failed",
        "invalid",
        "max_size",
        "on_invalid",
        "queue_url",
        "retry_delay",
        "shutdown_timeout",
        "visibility_timeout",
        "wait_time",
    )

    def __init__(
        self,
        queue_url: str,
        callback: EventCallback,
        *,
        client: Any | None = None,
        session: AioSession | None = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        concurrency: int = 10,
        batch_size: int = 10,
        wait_time: int = 20,
        visibility_timeout: int | None = None,
        retry_delay: int = 5,
        on_invalid: Literal["retry", "delete"] = "retry",
        shutdown_timeout: float | None = None,
        max_size: int = DEFAULT_MAX_BODY,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError("concurrency must be >= 1", option="concurrency")
        if not 1 <= batch_size <= 10:
            raise ConfigurationError("batch_size must be 1..10", option="batch_size")
        if not 0 <= wait_time <= 20:
            raise ConfigurationError("wait_time must be 0..20", option="wait_time")
        if not 0 <= retry_delay <= 43200:
            raise ConfigurationError("retry_delay must be 0..43200", option="retry_delay")
        if on_invalid not in ("retry", "delete"):
            raise ConfigurationError("on_invalid must be 'retry' or 'delete'", option="on_invalid")
        #: The queue's URL.
        self.queue_url = queue_url
        #: The user's callback.
        self.callback = callback
        #: Callbacks running at most at once.
        self.concurrency = concurrency
        #: Messages per receive.
        self.batch_size = batch_size
        #: Long-poll seconds.
        self.wait_time = wait_time
        #: Seconds a received message stays hidden (``None``: the queue's setting).
        self.visibility_timeout = visibility_timeout
        #: Seconds before a failed message is visible again.
        self.retry_delay = retry_delay
        #: What happens to a body that is not an SES event.
        self.on_invalid: Literal["retry", "delete"] = on_invalid
        #: Seconds the callbacks in flight get at exit.
        self.shutdown_timeout = shutdown_timeout
        #: Largest body parsed, in octets.
        self.max_size = max_size
        #: The SQS endpoint (``None``: AWS's, from the region).
        self.endpoint_url = endpoint_url
        #: Messages deleted after their callback succeeded (or invalid ones deleted).
        self.deleted = 0
        #: Callbacks that raised.
        self.failed = 0
        #: Bodies that were not SES events.
        self.invalid = 0
        self._client = client
        self._session = session
        self._region = region_name
        self._stack: contextlib.AsyncExitStack | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._slot_free = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._stopping = False
        self._state: Literal["unopened", "open", "closed"] = "unopened"

    @property
    def in_flight(self) -> int:
        """Callbacks running now."""
        return len(self._inflight)

    async def __aenter__(self) -> Self:
        if self._state != "unopened":
            raise TransportStateError("an SQSEventConsumer cannot be reopened", state=self._state)
        if self._client is None:
            from aiobotocore.session import get_session

            session = self._session or get_session()
            stack = contextlib.AsyncExitStack()
            self._client = await stack.enter_async_context(
                session.create_client(
                    "sqs", region_name=self._region, endpoint_url=self.endpoint_url
                )
            )
            self._stack = stack
        self._state = "open"
        self._slot_free = asyncio.Event()
        self._poller = asyncio.create_task(self._poll(), name="asyncmailer-sqs-poll")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop receiving, let the callbacks in flight finish, close the client."""
        if self._state == "closed":
            return
        self._state = "closed"
        self._stopping = True
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        try:
            if self._inflight:
                _done, pending = await asyncio.wait(
                    set(self._inflight), timeout=self.shutdown_timeout
                )
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending)
        finally:
            stack, self._stack = self._stack, None
            if stack is not None:
                await stack.aclose()

    async def _poll(self) -> None:
        client = self._client
        assert client is not None
        backoff = 0.0
        while not self._stopping:
            while len(self._inflight) >= self.concurrency:
                self._slot_free.clear()
                await self._slot_free.wait()
            count = min(self.batch_size, self.concurrency - len(self._inflight))
            request: dict[str, Any] = {
                "QueueUrl": self.queue_url,
                "MaxNumberOfMessages": count,
                "WaitTimeSeconds": self.wait_time,
                "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
            }
            if self.visibility_timeout is not None:
                request["VisibilityTimeout"] = self.visibility_timeout
            try:
                response = await client.receive_message(**request)
            except Exception:
                backoff = min(30.0, max(0.5, backoff * 2))
                logger.warning("SQS receive failed; retrying in %.1f s", backoff, exc_info=True)
                await asyncio.sleep(backoff)
                continue
            backoff = 0.0
            # No await between receiving and starting the callbacks: a shutdown cannot
            # strand received messages here.
            for message in response.get("Messages", ()):
                task = asyncio.create_task(self._handle(client, message))
                self._inflight.add(task)
                task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slot_free.set()

    async def _handle(self, client: Any, message: Mapping[str, Any]) -> None:
        handle = message.get("ReceiptHandle")
        try:
            event = parse_ses_event(message.get("Body", ""), max_size=self.max_size)
        except FeedbackError as exc:
            self.invalid += 1
            logger.warning("SQS message %s is not an SES event: %s", message.get("MessageId"), exc)
            if self.on_invalid == "delete":
                await self._delete(client, handle)
            else:
                await self._release(client, handle)
            return
        try:
            await self.callback(event)
        except Exception:
            self.failed += 1
            logger.exception("the SES event callback failed for %s", event.message_id)
            await self._release(client, handle)
            return
        await self._delete(client, handle)

    async def _delete(self, client: Any, handle: object) -> None:
        try:
            await client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=handle)
            self.deleted += 1
        except Exception:  # the message comes back: at least once
            logger.warning("SQS delete failed; the message will be redelivered", exc_info=True)

    async def _release(self, client: Any, handle: object) -> None:
        try:
            await client.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=handle, VisibilityTimeout=self.retry_delay
            )
        except Exception:  # it comes back after the visibility timeout anyway
            logger.warning("SQS ChangeMessageVisibility failed", exc_info=True)
