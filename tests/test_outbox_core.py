"""The outbox against a real redis-server, with in-process transports (fast).

Crashes are simulated here by a consumer that reads (and begins) entries and then never
answers, exactly what a SIGKILLed worker leaves behind; ``test_outbox_campaign.py`` kills
real processes.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio

import asyncmailer.outbox
from asyncmailer.errors import (
    ConfigurationError,
    DeliveryUnknownError,
    MessageError,
    MessageRejectedError,
    MessageTooLargeError,
    Outcome,
    ServiceUnavailableError,
)
from asyncmailer.message import Message
from asyncmailer.outbox import (
    Durability,
    DurabilityError,
    Outbox,
    OutboxFullError,
    OutboxState,
    StoredMessage,
)
from asyncmailer.result import ComposedMessage
from asyncmailer.retry import RetryPolicy
from asyncmailer.transports.base import Delivery, Transport
from asyncmailer.transports.memory import MemoryTransport
from tests.redis_helpers import RedisServer, redis_server_fixture  # noqa: F401

pytestmark = pytest.mark.redis

FIELDS: dict[str, Any] = {"from_": "shop@example.com", "to": "ada@example.com", "text": "Hi"}


class SlowTransport(Transport):
    """Takes ``delay`` seconds per message; records what it delivered."""

    name = "slow"

    def __init__(self, delay: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delay = delay
        self.delivered: list[ComposedMessage] = []

    async def _deliver(self, composed: ComposedMessage, message: Message | None) -> Delivery:
        await asyncio.sleep(self.delay)
        self.delivered.append(composed)
        return Delivery(f"slow-{len(self.delivered)}", composed.message_id)


@pytest.fixture
async def memory() -> AsyncIterator[MemoryTransport]:
    async with MemoryTransport(retry=RetryPolicy(max_attempts=1)) as transport:
        yield transport


@pytest.fixture
async def outbox(redis_server: RedisServer, memory: MemoryTransport) -> AsyncIterator[Outbox]:
    async with Outbox(redis_server.url, transport=memory, stream="mail:{t}") as box:
        yield box


def test_public_names_are_pinned() -> None:
    assert asyncmailer.outbox.__all__ == [
        "Durability",
        "DurabilityError",
        "Outbox",
        "OutboxError",
        "OutboxFullError",
        "OutboxResult",
        "OutboxState",
        "OutboxStats",
        "OutboxStatus",
        "OutboxWorker",
        "StoredMessage",
        "WorkerCounts",
    ]
    for name in asyncmailer.outbox.__all__:
        obj = getattr(asyncmailer.outbox, name)
        assert obj.__doc__, name


async def test_enqueue_stores_the_composed_message_before_returning(outbox: Outbox) -> None:
    outbox_id = await outbox.enqueue(subject="Order", **FIELDS)
    status = await outbox.status(outbox_id)
    assert status is not None
    assert status.state is OutboxState.QUEUED
    assert status.attempts == 0
    stored = await outbox.stored_message(outbox_id)
    assert stored is not None
    assert stored.composed.message_id == status.message_id
    assert b"Subject: Order" in stored.composed.raw
    stats = await outbox.stats()
    assert (stats.queued, stats.in_flight, stats.scheduled) == (1, 0, 0)


async def test_a_bad_message_fails_at_enqueue_and_nothing_is_stored(outbox: Outbox) -> None:
    with pytest.raises(MessageError):
        await outbox.enqueue(from_="not an address", to="ada@example.com", text="x")
    stats = await outbox.stats()
    assert stats.queued == 0


async def test_the_same_key_returns_the_same_id(outbox: Outbox) -> None:
    first = await outbox.enqueue(key="order-42", **FIELDS)
    again = await outbox.enqueue(key="order-42", **FIELDS)
    other = await outbox.enqueue(key="order-43", **FIELDS)
    assert first == again != other
    assert await outbox.id_for_key("order-42") == first
    assert (await outbox.stats()).queued == 2


async def test_limits_give_clear_errors(redis_server: RedisServer, memory: MemoryTransport) -> None:
    async with Outbox(
        redis_server.url, transport=memory, stream="lim", max_queued=2, max_message_size=2000
    ) as box:
        await box.enqueue(**FIELDS)
        await box.enqueue(**FIELDS, send_at=time.time() + 60)
        with pytest.raises(OutboxFullError) as full:
            await box.enqueue(**FIELDS)
        assert (full.value.queued, full.value.limit) == (2, 2)
        with pytest.raises(MessageTooLargeError):
            await box.enqueue(from_="shop@example.com", to="ada@example.com", text="x" * 5000)
        stats = await box.stats()
        assert (stats.queued, stats.scheduled) == (1, 1)


async def test_worker_sends_the_stored_bytes_and_reports(
    outbox: Outbox, memory: MemoryTransport
) -> None:
    ids = [await outbox.enqueue(subject=f"n{i}", key=f"k{i}", **FIELDS) for i in range(20)]
    stored = {i: await outbox.stored_message(i) for i in ids}
    async with outbox.worker(concurrency=4):
        await outbox.wait_idle(timeout=10)
    assert len(memory) == 20
    by_id = {m.message_id: m.raw for m in memory}
    for outbox_id in ids:
        status = await outbox.status(outbox_id)
        assert status is not None and status.state is OutboxState.SENT
        assert status.ses_message_id and status.ses_message_id.startswith("stored in memory")
        message = stored[outbox_id]
        assert message is not None
        assert by_id[message.composed.message_id] == message.composed.raw
        assert await outbox.stored_message(outbox_id) is None  # bytes freed once sent
    results = [r async for r in outbox.results()]
    assert sorted(r.id for r in results) == sorted(ids)
    assert {r.key for r in results} == {f"k{i}" for i in range(20)}
    assert all(r.state is OutboxState.SENT and r.ses_message_id for r in results)
    stats = await outbox.stats()
    assert stats.sent_total == 20 and stats.queued == stats.in_flight == 0
    assert stats.throughput > 0


async def test_a_final_failure_is_terminal_with_its_typed_error(
    outbox: Outbox, memory: MemoryTransport
) -> None:
    memory.fail_next(MessageRejectedError("Email address is not verified.", code="X"))
    bad = await outbox.enqueue(**FIELDS)
    async with outbox.worker(concurrency=1):
        await outbox.wait_idle(timeout=10)
    status = await outbox.status(bad)
    assert status is not None and status.state is OutboxState.FAILED
    assert isinstance(status.error, MessageRejectedError)
    assert status.error.outcome is Outcome.FINAL and status.error.code == "X"
    assert "not verified" in str(status.error)
    assert await outbox.failed_ids() == [bad]
    assert len(memory) == 0
    assert await outbox.requeue_failed() == 1
    async with outbox.worker(concurrency=1):
        await outbox.wait_idle(timeout=10)
    status = await outbox.status(bad)
    assert status is not None and status.state is OutboxState.SENT and status.attempts == 2
    assert (await outbox.stats()).failed == 0


async def test_an_ambiguous_answer_is_unknown_and_not_resent(
    outbox: Outbox, memory: MemoryTransport
) -> None:
    memory.fail_next(DeliveryUnknownError("connection lost after the body was sent"))
    outbox_id = await outbox.enqueue(**FIELDS)
    async with outbox.worker(concurrency=1):
        await outbox.wait_idle(timeout=10)
    status = await outbox.status(outbox_id)
    assert status is not None and status.state is OutboxState.UNKNOWN
    assert isinstance(status.error, DeliveryUnknownError)
    assert await outbox.unknown_ids() == [outbox_id]
    with pytest.raises(ConfigurationError):
        await outbox.retry_unknown(confirm=False)
    assert await outbox.retry_unknown([outbox_id], confirm=True) == 1
    async with outbox.worker(concurrency=1):
        await outbox.wait_idle(timeout=10)
    status = await outbox.status(outbox_id)
    assert status is not None and status.state is OutboxState.SENT


async def test_transient_failures_are_retried_then_fail(
    redis_server: RedisServer, memory: MemoryTransport
) -> None:
    async with Outbox(redis_server.url, transport=memory, stream="r", max_attempts=3) as box:
        memory.fail_next(ServiceUnavailableError("503"), times=2)
        recovered = await box.enqueue(**FIELDS)
        async with box.worker(concurrency=1, poll_interval=0.02) as worker:
            await box.wait_idle(timeout=10)
        assert worker.counts.retried == 2
        status = await box.status(recovered)
        assert status is not None and status.state is OutboxState.SENT and status.attempts == 3

        memory.fail_next(ServiceUnavailableError("503"), times=3)
        exhausted = await box.enqueue(**FIELDS)
        async with box.worker(concurrency=1, poll_interval=0.02):
            await box.wait_idle(timeout=10)
        status = await box.status(exhausted)
        assert status is not None and status.state is OutboxState.FAILED
        assert isinstance(status.error, ServiceUnavailableError)


async def _dead_worker_takes(box: Outbox, count: int, *, begin: int) -> list[str]:
    """A consumer reads ``count`` entries, begins the first ``begin``, and dies."""
    answer: Any = await box.client.xreadgroup(box.group, "dead", {box.stream: ">"}, count=count)
    entries = answer[0][1]
    begun = []
    for entry_id, fields in entries[:begin]:
        outbox_id = fields[b"i"].decode()
        keys = [box.stream, box.unknown_key, box.results_key, box.stats_key]
        answer = await box.script("BEGIN")(
            keys=keys, args=[box.group, "dead", "0", 1000, 0, entry_id, outbox_id]
        )
        assert answer[2] == b"go"
        begun.append(outbox_id)
    return begun


async def test_claimed_entries_in_flight_become_unknown_the_others_are_sent(
    outbox: Outbox, memory: MemoryTransport
) -> None:
    ids = [await outbox.enqueue(**FIELDS) for _ in range(6)]
    in_flight = await _dead_worker_takes(outbox, 4, begin=2)
    status = await outbox.status(in_flight[0])
    assert status is not None and status.state is OutboxState.SENDING
    assert (await outbox.stats()).in_flight == 4
    async with outbox.worker(concurrency=3, claim_idle=0.2) as worker:
        await outbox.wait_idle(timeout=10)
    assert worker.counts.claimed == 4 and worker.counts.unknown == 2
    states = {i: (await outbox.status(i)).state for i in ids}  # type: ignore[union-attr]
    assert [i for i, s in states.items() if s is OutboxState.UNKNOWN] == in_flight
    assert sum(s is OutboxState.SENT for s in states.values()) == 4
    assert len(memory) == 4
    assert sorted(await outbox.unknown_ids()) == sorted(in_flight)


async def test_resend_unknown_is_an_explicit_opt_in(
    redis_server: RedisServer, memory: MemoryTransport
) -> None:
    async with Outbox(redis_server.url, transport=memory, stream="o", resend_unknown=True) as box:
        [outbox_id] = [await box.enqueue(**FIELDS)]
        await _dead_worker_takes(box, 1, begin=1)
        async with box.worker(concurrency=1, claim_idle=0.2):
            await box.wait_idle(timeout=10)
        status = await box.status(outbox_id)
        assert status is not None and status.state is OutboxState.SENT and status.attempts == 2


async def test_a_slow_send_is_not_claimed_while_its_worker_lives(
    redis_server: RedisServer,
) -> None:
    async with (
        SlowTransport(1.0) as slow,
        Outbox(redis_server.url, transport=slow, stream="s") as box,
    ):
        outbox_id = await box.enqueue(**FIELDS)
        async with box.worker(concurrency=1, claim_idle=0.3), box.worker(claim_idle=0.3) as other:
            await box.wait_idle(timeout=10)
        assert other.counts.unknown == 0
        status = await box.status(outbox_id)
        assert status is not None and status.state is OutboxState.SENT
        assert len(slow.delivered) == 1


async def test_graceful_stop_finishes_what_it_holds(redis_server: RedisServer) -> None:
    async with (
        SlowTransport(0.2) as slow,
        Outbox(redis_server.url, transport=slow, stream="g") as box,
    ):
        ids = [await box.enqueue(**FIELDS) for _ in range(12)]
        worker = box.worker(concurrency=4, drain_timeout=5)
        async with worker:
            for _ in range(1000):
                if len(slow.delivered) >= 2:
                    break
                await asyncio.sleep(0.01)
        # Stopped: what it held was finished, the rest is still queued.
        states = [(await box.status(i)).state for i in ids]  # type: ignore[union-attr]
        assert OutboxState.SENDING not in states
        assert states.count(OutboxState.SENT) == len(slow.delivered) >= 2
        assert states.count(OutboxState.QUEUED) == 12 - len(slow.delivered)
        stats = await box.stats()
        assert stats.in_flight == 0
        async with box.worker(concurrency=12):
            await box.wait_idle(timeout=10)
        assert len(slow.delivered) == 12


async def test_a_drain_timeout_records_unknown_not_lost(redis_server: RedisServer) -> None:
    async with (
        SlowTransport(5) as slow,
        Outbox(redis_server.url, transport=slow, stream="d") as box,
    ):
        outbox_id = await box.enqueue(**FIELDS)
        async with box.worker(concurrency=1, drain_timeout=0.2):
            for _ in range(1000):
                if (await box.stats()).in_flight:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
        status = await box.status(outbox_id)
        assert status is not None and status.state is OutboxState.UNKNOWN


async def test_send_at_holds_the_message_until_its_time(
    outbox: Outbox, memory: MemoryTransport
) -> None:
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=0.6)
    outbox_id = await outbox.enqueue(**FIELDS, send_at=later)
    status = await outbox.status(outbox_id)
    assert status is not None and status.state is OutboxState.SCHEDULED
    assert status.send_at == pytest.approx(later.timestamp(), abs=0.002)
    async with outbox.worker(concurrency=1, poll_interval=0.05):
        await asyncio.sleep(0.3)
        assert len(memory) == 0
        assert (await outbox.stats()).scheduled == 1
        await outbox.wait_idle(timeout=5)
    assert len(memory) == 1
    with pytest.raises(ConfigurationError):
        await outbox.enqueue(**FIELDS, send_at=datetime.datetime(2030, 1, 1))  # naive


async def test_durability_options(redis_server: RedisServer, memory: MemoryTransport) -> None:
    with pytest.raises(ConfigurationError):
        async with Outbox(
            redis_server.url, transport=memory, stream="f", durability=Durability(fsync=True)
        ):
            pass
    async with Outbox(
        redis_server.url,
        transport=memory,
        stream="w",
        durability=Durability(replicas=1, timeout=0.05),
    ) as box:
        with pytest.raises(DurabilityError) as caught:
            await box.enqueue(**FIELDS)
        assert caught.value.required == 1 and caught.value.acknowledged == 0
        status = await box.status(caught.value.id)
        assert status is not None and status.state is OutboxState.QUEUED


async def test_redis_client_must_return_bytes(
    redis_server: RedisServer, memory: MemoryTransport
) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        with pytest.raises(ConfigurationError):
            Outbox(client, transport=memory, stream="x")
    finally:
        await client.aclose()
    shared = redis.asyncio.Redis.from_url(redis_server.url)
    async with Outbox(shared, transport=memory, stream="x") as box:
        await box.enqueue(**FIELDS)
    assert await shared.ping()  # a given client is not closed
    await shared.aclose()


def test_stored_message_round_trip() -> None:
    from asyncmailer.message import Envelope

    composed = ComposedMessage(
        b"Subject: x\r\n\r\nbody\n\x00\xff", Envelope("a@x.org", ("b@y.org", "c@z.org")), "<m@x>"
    )
    stored = StoredMessage(composed, {"Tags": [{"Name": "a", "Value": "b"}]})
    data = stored.encode()
    assert len(data) < len(composed.raw) + 120  # no base64
    back = StoredMessage.decode(data)
    assert back == stored or (back.composed == composed and back.ses == stored.ses)
    message = back.as_message()
    assert message.raw == composed.raw and message.dkim is False and message.keep_bcc


class _SlowPromotion(Outbox):
    """Counts how the worker's promotion chore ends: finished or cancelled mid-call."""

    started = finished = cancelled = 0

    async def promote_due(self, *, limit: int = 500) -> int:
        self.started += 1
        try:
            await asyncio.sleep(0.3)  # a Redis call still waiting for its reply
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1
        return await super().promote_due(limit=limit)


async def test_stopping_lets_a_chore_finish_its_redis_call(
    redis_server: RedisServer, memory: MemoryTransport
) -> None:
    # Cancelling a Redis command mid-reply can leave its pooled connection unusable: a
    # stopping worker tells its chores to stop and lets the call in progress end.
    async with _SlowPromotion(redis_server.url, transport=memory, stream="c") as box:
        async with box.worker(concurrency=1, poll_interval=0.05):
            for _ in range(300):
                if box.started:
                    break
                await asyncio.sleep(0.01)
        assert box.started >= 1
        assert box.cancelled == 0 and box.finished == box.started
        assert await box.promote_due() == 0  # the client still answers


# ----------------------------------------------------------------------- batching


async def _script_calls(box: Outbox) -> int:
    """Script calls the server has run so far (EVALSHA and EVAL)."""
    stats: Any = await box.client.info("commandstats")
    return sum(
        int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_evalsha", "cmdstat_eval")
    )


class CountingTransport(MemoryTransport):
    """A MemoryTransport that counts how often it composes (``prepare``)."""

    prepared = 0

    async def prepare(self, message: Any = None, /, **fields: Any) -> Any:
        type(self).prepared += 1
        return await super().prepare(message, **fields)


async def test_concurrent_enqueues_share_script_calls(outbox: Outbox) -> None:
    before = await _script_calls(outbox)
    ids = await asyncio.gather(*(outbox.enqueue(subject=f"n{i}", **FIELDS) for i in range(60)))
    calls = await _script_calls(outbox) - before
    assert len(set(ids)) == 60
    assert calls <= 10, calls  # one ENQUEUE call per batch, not one per message
    for outbox_id in ids:
        status = await outbox.status(outbox_id)
        assert status is not None and status.state is OutboxState.QUEUED
    assert (await outbox.stats()).queued == 60
    counters: Any = await outbox.client.hgetall(outbox.stats_key)
    assert int(counters[b"enqueued"]) == 60


async def test_a_key_given_twice_in_one_batch_stores_once(outbox: Outbox) -> None:
    first, again, other = await asyncio.gather(
        outbox.enqueue(key="k", subject="a", **FIELDS),
        outbox.enqueue(key="k", subject="b", **FIELDS),
        outbox.enqueue(key="other", **FIELDS),
    )
    assert first == again != other
    assert (await outbox.stats()).queued == 2
    stored = await outbox.stored_message(first)
    assert stored is not None and b"Subject: a" in stored.composed.raw


async def test_max_queued_holds_within_one_batch(
    redis_server: RedisServer, memory: MemoryTransport
) -> None:
    async with Outbox(redis_server.url, transport=memory, stream="mq", max_queued=3) as box:
        outcomes = await asyncio.gather(
            *(box.enqueue(**FIELDS) for _ in range(5)), return_exceptions=True
        )
        full = [o for o in outcomes if isinstance(o, OutboxFullError)]
        assert len(full) == 2 and all(f.queued == 3 for f in full)
        assert (await box.stats()).queued == 3


async def test_durability_errors_name_each_message_of_a_batch(
    redis_server: RedisServer, memory: MemoryTransport
) -> None:
    async with Outbox(
        redis_server.url,
        transport=memory,
        stream="wb",
        durability=Durability(replicas=1, timeout=0.05),
    ) as box:
        outcomes = await asyncio.gather(
            *(box.enqueue(**FIELDS) for _ in range(4)), return_exceptions=True
        )
        assert all(isinstance(o, DurabilityError) for o in outcomes)
        ids = {o.id for o in outcomes if isinstance(o, DurabilityError)}
        assert len(ids) == 4
        for outbox_id in ids:
            status = await box.status(outbox_id)
            assert status is not None and status.state is OutboxState.QUEUED


async def test_a_worker_begins_and_records_in_batches_without_recomposing(
    redis_server: RedisServer,
) -> None:
    CountingTransport.prepared = 0
    async with (
        CountingTransport(retry=RetryPolicy(max_attempts=1)) as memory,
        Outbox(redis_server.url, transport=memory, stream="batch") as box,
    ):
        ids = await asyncio.gather(*(box.enqueue(subject=f"n{i}", **FIELDS) for i in range(40)))
        assert CountingTransport.prepared == 40
        stored = {i: await box.stored_message(i) for i in ids}
        before = await _script_calls(box)
        # No promotion or heartbeat chores in the count (long intervals), and no STATS
        # polls: wait on the transport and on XPENDING.
        async with box.worker(concurrency=40, poll_interval=60, claim_idle=60):
            while len(memory) < 40 or (await box.client.xpending(box.stream, box.group))["pending"]:
                await asyncio.sleep(0.01)
        calls = await _script_calls(box) - before
        # One BEGIN takes the 40 entries, each FINISH call records the outcomes ready by
        # then (18 in a quiet run), plus a promotion: far from one BEGIN and one FINISH
        # per message (81 calls).
        assert calls <= 30, calls
        assert CountingTransport.prepared == 40  # sent as stored: never composed again
        by_id = {m.message_id: m.raw for m in memory}
        for outbox_id in ids:
            message = stored[outbox_id]
            assert message is not None
            assert by_id[message.composed.message_id] == message.composed.raw
            status = await box.status(outbox_id)
            assert status is not None and status.state is OutboxState.SENT
            assert status.attempts == 1
        results = [r async for r in box.results()]
        assert sorted(r.id for r in results) == sorted(ids)
        assert (await box.stats()).sent_total == 40


async def test_foreign_stream_entries_are_dropped_by_the_batched_begin(
    outbox: Outbox, memory: MemoryTransport
) -> None:
    first = await outbox.enqueue(**FIELDS)
    foreign = await outbox.client.xadd(outbox.stream, {"x": "not an outbox entry"})
    second = await outbox.enqueue(**FIELDS)
    async with outbox.worker(concurrency=8) as worker:
        await outbox.wait_idle(timeout=10)
    assert len(memory) == 2 and worker.counts.sent == 2
    for outbox_id in (first, second):
        status = await outbox.status(outbox_id)
        assert status is not None and status.state is OutboxState.SENT
    # Acknowledged and deleted in the same call that began the others.
    assert await outbox.client.xrange(outbox.stream, foreign, foreign) == []
    assert (await outbox.client.xpending(outbox.stream, outbox.group))["pending"] == 0
