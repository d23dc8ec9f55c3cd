"""SQSEventConsumer against moto's real SQS server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiobotocore.session import get_session

from asyncmailer.errors import ConfigurationError, TransportStateError
from asyncmailer.feedback import (
    BounceEvent,
    MemorySuppressionList,
    SESEvent,
    SQSEventConsumer,
    apply_to,
)
from tests.feedback_helpers import (
    BOUNCE_NOTIFICATION,
    COMPLAINT_NOTIFICATION,
    EVENTBRIDGE_BOUNCE,
    EVENTS,
    notification,
)


@pytest.fixture
async def sqs(moto_url: str) -> AsyncIterator[tuple[Any, str]]:
    async with get_session().create_client(
        "sqs", region_name="us-east-1", endpoint_url=moto_url
    ) as client:
        queue = await client.create_queue(
            QueueName="ses-events", Attributes={"VisibilityTimeout": "30"}
        )
        yield client, queue["QueueUrl"]


async def counts(client: Any, queue_url: str) -> tuple[int, int]:
    attributes = (
        await client.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


async def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_every_shape_is_consumed_and_deleted(sqs: tuple[Any, str], moto_url: str) -> None:
    client, queue_url = sqs
    bodies = [
        json.dumps(notification(BOUNCE_NOTIFICATION)),  # SNS → SQS
        json.dumps(COMPLAINT_NOTIFICATION),  # raw message delivery
        json.dumps(EVENTBRIDGE_BOUNCE),  # EventBridge → SQS
        *(json.dumps(EVENTS[k]) for k in ("Delivery", "Open", "Click")),
    ]
    for body in bodies:
        await client.send_message(QueueUrl=queue_url, MessageBody=body)
    seen: list[SESEvent] = []
    suppression = MemorySuppressionList()
    store = apply_to(suppression)

    async def callback(event: SESEvent) -> None:
        seen.append(event)
        await store(event)

    async with SQSEventConsumer(
        queue_url, callback, region_name="us-east-1", endpoint_url=moto_url, wait_time=1
    ) as consumer:
        await until(lambda: consumer.deleted == len(bodies))
    assert sorted(e.kind for e in seen) == sorted(
        ["Bounce", "Complaint", "Bounce", "Delivery", "Open", "Click"]
    )
    assert await counts(client, queue_url) == (0, 0)
    assert set(
        await suppression.suppressed(
            ["jane@example.com", "richard@example.com", "recipient@example.com"]
        )
    ) == {"jane@example.com", "richard@example.com", "recipient@example.com"}


async def test_a_failed_callback_leaves_the_message_for_a_retry(
    sqs: tuple[Any, str], moto_url: str
) -> None:
    client, queue_url = sqs
    await client.send_message(QueueUrl=queue_url, MessageBody=json.dumps(BOUNCE_NOTIFICATION))
    calls: list[str] = []

    async def flaky(event: SESEvent) -> None:
        calls.append(event.message_id)
        if len(calls) == 1:
            raise RuntimeError("database down")

    async with SQSEventConsumer(
        queue_url, flaky, client=client, wait_time=1, retry_delay=0
    ) as consumer:
        await until(lambda: consumer.deleted == 1)
        assert consumer.failed == 1
    assert len(calls) == 2 and calls[0] == calls[1]
    assert await counts(client, queue_url) == (0, 0)


async def test_failed_message_stays_in_the_queue(sqs: tuple[Any, str], moto_url: str) -> None:
    client, queue_url = sqs
    await client.send_message(QueueUrl=queue_url, MessageBody=json.dumps(BOUNCE_NOTIFICATION))

    async def broken(event: SESEvent) -> None:
        raise RuntimeError("always")

    async with SQSEventConsumer(
        queue_url, broken, client=client, wait_time=1, retry_delay=30
    ) as consumer:
        await until(lambda: consumer.failed == 1)
    assert consumer.deleted == 0
    assert sum(await counts(client, queue_url)) == 1  # hidden for retry_delay, not lost


async def test_shutdown_lets_in_flight_callbacks_finish(
    sqs: tuple[Any, str], moto_url: str
) -> None:
    client, queue_url = sqs
    for _ in range(3):
        await client.send_message(QueueUrl=queue_url, MessageBody=json.dumps(EVENTS["Send"]))
    started = asyncio.Event()
    release = asyncio.Event()
    finished: list[str] = []

    async def slow(event: SESEvent) -> None:
        started.set()
        await release.wait()
        finished.append(event.message_id)

    consumer = SQSEventConsumer(queue_url, slow, client=client, wait_time=1, concurrency=3)
    async with consumer:
        await until(lambda: consumer.in_flight == 3)
        await started.wait()
        asyncio.get_running_loop().call_later(0.2, release.set)
    # __aexit__ returned only after the callbacks finished and their messages were deleted
    assert len(finished) == 3 and consumer.deleted == 3
    assert await counts(client, queue_url) == (0, 0)
    with pytest.raises(TransportStateError):
        await consumer.__aenter__()


async def test_concurrency_is_bounded(sqs: tuple[Any, str], moto_url: str) -> None:
    client, queue_url = sqs
    for _ in range(12):
        await client.send_message(QueueUrl=queue_url, MessageBody=json.dumps(EVENTS["Open"]))
    running = 0
    peak = 0

    async def callback(event: SESEvent) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    async with SQSEventConsumer(
        queue_url, callback, client=client, wait_time=1, concurrency=3
    ) as consumer:
        await until(lambda: consumer.deleted == 12)
    assert peak == 3


@pytest.mark.parametrize("policy", ["retry", "delete"])
async def test_invalid_bodies(sqs: tuple[Any, str], moto_url: str, policy: str) -> None:
    client, queue_url = sqs
    await client.send_message(QueueUrl=queue_url, MessageBody="not an event")
    seen: list[SESEvent] = []

    async def callback(event: SESEvent) -> None:
        seen.append(event)

    async with SQSEventConsumer(
        queue_url,
        callback,
        client=client,
        wait_time=1,
        retry_delay=30,
        on_invalid=policy,  # type: ignore[arg-type]
    ) as consumer:
        await until(lambda: consumer.invalid == 1)
        await asyncio.sleep(0.1)
    assert seen == []
    assert sum(await counts(client, queue_url)) == (1 if policy == "retry" else 0)


async def test_lifespan_sharing_with_a_bounce_event(sqs: tuple[Any, str], moto_url: str) -> None:
    # The pattern of the docs: the consumer lives inside an app's lifespan context.
    client, queue_url = sqs
    got: asyncio.Queue[SESEvent] = asyncio.Queue()

    async def callback(event: SESEvent) -> None:
        await got.put(event)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        async with SQSEventConsumer(
            queue_url, callback, region_name="us-east-1", endpoint_url=moto_url, wait_time=1
        ):
            yield

    async with lifespan():
        await client.send_message(QueueUrl=queue_url, MessageBody=json.dumps(BOUNCE_NOTIFICATION))
        event = await asyncio.wait_for(got.get(), 10)
    assert isinstance(event, BounceEvent)


def test_options_are_checked() -> None:
    async def callback(event: SESEvent) -> None:
        return None

    for bad in ({"concurrency": 0}, {"batch_size": 11}, {"wait_time": 21}, {"retry_delay": -1}):
        with pytest.raises(ConfigurationError):
            SQSEventConsumer("q", callback, **bad)  # type: ignore[arg-type]
