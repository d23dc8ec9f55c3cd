"""The Transport base class: lifecycle, send path, retries, cancellation, drain, send_many.

A small in-test transport records when (``loop.time()``) each attempt reaches the backend
and fails on demand; everything runs on the virtual clock (``@virtual_time``), so backoffs,
rates and drain timeouts are exact and no real second is spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import math
import random
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from asyncmailer import Attachment, Message, RetryPolicy, SendResult, TransportState
from asyncmailer.errors import (
    ConfigurationError,
    DailyQuotaExceededError,
    DeliveryError,
    DeliveryTimeoutError,
    DeliveryUnknownError,
    HeaderError,
    MailError,
    MessageError,
    MessageRejectedError,
    Outcome,
    SendAbortedError,
    SendingRateExceededError,
    ServiceUnavailableError,
    TransportStateError,
    UndeliveredError,
)
from asyncmailer.limits import LocalRateLimiter
from asyncmailer.options import Limits
from asyncmailer.result import ComposedMessage
from asyncmailer.transports import Delivery, Transport
from asyncmailer.transports.base import MessageInput
from tests.helpers import virtual_time, worst_window


@dataclass
class Fault:
    """What one attempt does instead of succeeding."""

    error: BaseException
    #: The backend stores the message before failing (a connection dropped after acceptance).
    accepted: bool = False
    #: Seconds the attempt takes before failing.
    delay: float = 0.0


class FakeTransport(Transport):
    """A backend in memory: records attempts, accepts messages, fails as scripted.

    ``faults[message_id]`` is a list of :class:`Fault` consumed one per attempt;
    ``latency`` is how long every attempt takes. ``open_connections`` counts attempts in
    progress, so a cancelled attempt that leaked its "connection" would show.
    """

    name = "fake"

    def __init__(self, *, latency: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.latency = latency
        self.faults: dict[str, list[Fault]] = {}
        #: (loop time, message id) of every attempt that reached the backend.
        self.attempts: list[tuple[float, str]] = []
        #: Message ids the backend accepted, in order (duplicates show up twice).
        self.accepted: list[str] = []
        self.accepted_at: list[float] = []
        self.open_connections = 0
        self.max_open = 0
        self.opened = 0
        self.closed = 0
        self.events: list[str] = []
        self.fail_open: BaseException | None = None

    async def _open(self) -> None:
        self.opened += 1
        if self.fail_open is not None:
            raise self.fail_open

    async def _close(self) -> None:
        self.closed += 1

    async def _reserve(self, composed: ComposedMessage, message: Message | None) -> None:
        self.events.append(f"reserve {composed.message_id}")

    def _unreserve(self, composed: ComposedMessage, message: Message | None) -> None:
        self.events.append(f"unreserve {composed.message_id}")

    async def _deliver(self, composed: ComposedMessage, message: Message | None) -> Delivery:
        loop = asyncio.get_running_loop()
        mid = composed.message_id
        self.attempts.append((loop.time(), mid))
        self.open_connections += 1
        self.max_open = max(self.max_open, self.open_connections)
        try:
            queue = self.faults.get(mid)
            fault = queue.pop(0) if queue else None
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.accepted:
                    self._accept(mid)
                raise fault.error
            if self.latency:
                await asyncio.sleep(self.latency)
            self._accept(mid)
            return Delivery(response=f"ok {len(self.accepted)}", message_id=mid)
        finally:
            self.open_connections -= 1

    def _accept(self, mid: str) -> None:
        self.accepted.append(mid)
        self.accepted_at.append(asyncio.get_running_loop().time())


def msg(i: int, *, to: int = 1) -> Message:
    """A small valid message with a known Message-ID."""
    return Message(
        from_="shop@example.com",
        to=[f"r{i}-{k}@example.org" for k in range(to)],
        subject=f"message {i}",
        text="hello",
        message_id=f"<m{i}@test.example>",
    )


def mid(i: int) -> str:
    return f"<m{i}@test.example>"


def throttle() -> SendingRateExceededError:
    return SendingRateExceededError("Maximum sending rate exceeded.", code="Throttling")


def server_error() -> ServiceUnavailableError:
    return ServiceUnavailableError("HTTP 503", code="ServiceUnavailable")


def dropped() -> DeliveryUnknownError:
    return DeliveryUnknownError("connection closed before the answer")


def rejected() -> MessageRejectedError:
    return MessageRejectedError("no", code="MessageRejected")


def own_tasks() -> set[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return {task for task in asyncio.all_tasks() if task is not current}


# ---------------------------------------------------------------------------- lifecycle


@virtual_time
async def test_lifecycle_states_and_single_open_and_close() -> None:
    transport = FakeTransport()
    assert transport.state.value == "unopened"
    with pytest.raises(TransportStateError) as info:
        await transport.send_mail(msg(0))
    assert info.value.state == "unopened"
    async with transport as opened:
        assert opened is transport
        assert transport.state.value == "open"
        with pytest.raises(TransportStateError):
            await transport.__aenter__()
    assert transport.state is TransportState.CLOSED
    assert (transport.opened, transport.closed) == (1, 1)
    await transport.aclose()  # idempotent
    assert transport.closed == 1
    with pytest.raises(TransportStateError) as info:
        await transport.send_mail(msg(0))
    assert info.value.state == "closed"
    with pytest.raises(TransportStateError):
        await transport.__aenter__()  # never reopened


@virtual_time
async def test_closing_an_unopened_transport_is_a_no_op() -> None:
    transport = FakeTransport()
    await transport.aclose()
    assert transport.state is TransportState.CLOSED
    assert transport.closed == 0


@virtual_time
async def test_a_failed_open_releases_everything() -> None:
    limiter = LocalRateLimiter(10)
    transport = FakeTransport(limits=Limits(rate_limiter=limiter))
    transport.fail_open = OSError("no route")
    with pytest.raises(OSError, match="no route"):
        await transport.__aenter__()
    assert transport.state is TransportState.CLOSED
    assert transport.closed == 1
    await transport.aclose()  # nothing left to do, and no hang
    assert transport.closed == 1


@pytest.mark.parametrize(
    ("make", "option"),
    [
        (lambda: FakeTransport(max_connections=0), "max_connections"),
        (lambda: FakeTransport(max_connections=True), "max_connections"),
        (lambda: FakeTransport(max_connections=2.5), "max_connections"),
        (lambda: FakeTransport(limits=Limits(drain_timeout=-1)), "drain_timeout"),
        (lambda: FakeTransport(limits=Limits(drain_timeout=math.nan)), "drain_timeout"),
        (lambda: FakeTransport(retry={"max_attempts": 3}), "retry"),
        (lambda: FakeTransport(limits={"max_connections": 3}), "limits"),
        (
            lambda: FakeTransport(sending_rate=5, limits=Limits(rate_limiter=LocalRateLimiter(5))),
            "sending_rate",
        ),
        (lambda: FakeTransport(sending_rate=5, limits=Limits(sending_rate=6)), "sending_rate"),
        (
            lambda: FakeTransport(max_connections=2, limits=Limits(max_connections=3)),
            "max_connections",
        ),
        (lambda: FakeTransport(sending_rate="auto"), "sending_rate"),
        (lambda: FakeTransport(sending_rate=-1), "sending_rate"),
    ],
)
def test_invalid_configuration_is_refused(make: Callable[[], object], option: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        make()
    assert info.value.option == option


def test_shortcuts_and_limits_combine() -> None:
    limiter = LocalRateLimiter(5)
    transport = FakeTransport(max_connections=3, limits=Limits(rate_limiter=limiter))
    assert transport.limits == Limits(max_connections=3, rate_limiter=limiter)
    assert transport.max_connections == 3
    assert FakeTransport(sending_rate=7).limits.sending_rate == 7


# ---------------------------------------------------------------------------- send path


@virtual_time
async def test_send_result_reports_attempts_waits_and_transport() -> None:
    async with FakeTransport(latency=0.25, sending_rate=1, max_connections=1) as transport:
        sends = (transport.send_mail(msg(i)) for i in range(3))
        first, second, third = await asyncio.gather(*sends)
    assert isinstance(first, SendResult)
    assert first.transport == "fake"
    assert first.message_id == mid(0)
    assert first.envelope.to == ("r0-0@example.org",)
    assert first.attempts == 1
    assert first.elapsed == pytest.approx(0.25)
    assert first.rate_wait == first.connection_wait == 0
    # The second waited for the only connection (0.25 s), then for the limiter: the first
    # grant counts for 1 s + the 10 ms margin.
    assert second.connection_wait == pytest.approx(0.25)
    assert second.rate_wait == pytest.approx(1.01 - 0.25, abs=0.001)
    assert second.elapsed == pytest.approx(1.01 + 0.25)
    assert third.elapsed == pytest.approx(third.connection_wait + third.rate_wait + 0.25)
    # Steady from then on: 1.01 s after the second grant.
    assert third.elapsed == pytest.approx(2.02 + 0.25, abs=0.003)


@virtual_time
async def test_keyword_fields_build_the_message() -> None:
    async with FakeTransport() as transport:
        result = await transport.send_mail(
            from_="a@example.com", to=["b@example.com", "c@example.com"], text="x"
        )
    assert result.envelope.to == ("b@example.com", "c@example.com")
    assert transport.accepted == [result.message_id]


@virtual_time
async def test_invalid_input_never_reaches_the_backend() -> None:
    async with FakeTransport() as transport:
        with pytest.raises(HeaderError):
            await transport.send_mail(msg(0), headers={"X-Tag\r\nBcc": "victim@example.org"})
        with pytest.raises(MessageError):
            await transport.send_mail(from_="a@example.com", to="not an address", text="x")
        with pytest.raises(MessageError) as info:
            await transport.send_mail(42)  # type: ignore[arg-type]
        assert info.value.field == "message"
        with pytest.raises(MessageError) as info:
            await transport.send_mail(subjct="x")  # type: ignore[call-arg]
        assert info.value.field == "subjct"
        assert "did you mean 'subject'" in str(info.value)
        assert not isinstance(info.value, ConfigurationError)
        assert transport.pending == 0
    assert transport.attempts == []
    assert transport.events == []


@virtual_time
async def test_rate_limit_holds_for_weighted_messages_and_connections_are_bounded() -> None:
    class PerRecipient(FakeTransport):
        def _weight(self, composed: ComposedMessage) -> int:
            return len(composed.envelope.to)

    rng = random.Random(7)
    sizes = [rng.randint(1, 5) for _ in range(80)]
    async with PerRecipient(sending_rate=20, max_connections=3, latency=0.05) as transport:
        await asyncio.gather(*(transport.send_mail(msg(i, to=n)) for i, n in enumerate(sizes)))
    times = [t for t, _ in transport.attempts]
    weights = [sizes[int(m[2:].split("@")[0])] for _, m in transport.attempts]
    # A message's units all count when its request starts: no window holds more than R.
    assert worst_window(times, weights) <= 20
    assert transport.max_open <= 3
    span = max(times) - min(times)
    # Mixed weights under an exact window cost some rate (docs/rate-limiting.md).
    assert 0.85 * 20 <= sum(weights) / span <= 20


# ------------------------------------------------------------------------------ retries


@virtual_time
async def test_retry_safe_failures_are_retried_with_growing_jittered_backoff() -> None:
    policy = RetryPolicy(max_attempts=6, initial_backoff=0.5, multiplier=2, max_backoff=3)
    async with FakeTransport(retry=policy) as transport:
        transport.faults[mid(0)] = [Fault(server_error()) for _ in range(5)]
        result = await transport.send_mail(msg(0))
    assert result.attempts == 6
    assert transport.accepted == [mid(0)]
    times = [t for t, _ in transport.attempts]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    ceilings = [0.5, 1.0, 2.0, 3.0, 3.0]
    assert all(0 <= gap <= ceiling + 1e-9 for gap, ceiling in zip(gaps, ceilings, strict=True))
    assert result.elapsed == pytest.approx(sum(gaps))


def test_backoff_is_full_jitter_below_an_exponential_ceiling() -> None:
    policy = RetryPolicy(initial_backoff=0.1, multiplier=3, max_backoff=2)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.1), (2, 0.3), (3, 0.9), (4, 2.0), (50, 2.0), (10_000, 2.0)]:
        draws = [policy.backoff(attempt, rng) for _ in range(400)]
        assert min(draws) >= 0 and max(draws) <= ceiling
        assert max(draws) > 0.9 * ceiling and min(draws) < 0.1 * ceiling  # spread, not fixed


@virtual_time
async def test_attempts_are_bounded_and_the_last_error_says_how_many() -> None:
    async with FakeTransport(retry=RetryPolicy(max_attempts=3)) as transport:
        transport.faults[mid(0)] = [Fault(throttle()) for _ in range(10)]
        with pytest.raises(SendingRateExceededError) as info:
            await transport.send_mail(msg(0))
    assert info.value.attempts == 3
    assert info.value.message_id == mid(0)
    assert info.value.outcome is Outcome.RETRY_SAFE
    assert len(transport.attempts) == 3
    assert transport.accepted == []


@virtual_time
async def test_no_retry_starts_after_the_deadline() -> None:
    policy = RetryPolicy(max_attempts=100, deadline=5.0, initial_backoff=1, max_backoff=1)
    async with FakeTransport(retry=policy) as transport:
        transport.faults[mid(0)] = [Fault(server_error(), delay=0.5) for _ in range(100)]
        start = asyncio.get_running_loop().time()
        with pytest.raises(ServiceUnavailableError) as info:
            await transport.send_mail(msg(0))
    starts = [t - start for t, _ in transport.attempts]
    assert max(starts) <= 5.0
    assert 3 <= info.value.attempts == len(starts) < 100


@pytest.mark.parametrize("error", [rejected(), DailyQuotaExceededError("quota")])
@virtual_time
async def test_final_failures_fail_fast(error: DeliveryError) -> None:
    async with FakeTransport() as transport:
        transport.faults[mid(0)] = [Fault(error)]
        with pytest.raises(type(error)) as info:
            await transport.send_mail(msg(0))
    assert info.value.attempts == 1
    assert len(transport.attempts) == 1


@pytest.mark.parametrize("error", [dropped(), DeliveryTimeoutError("no answer")])
@virtual_time
async def test_ambiguous_failures_are_not_resent_by_default(error: DeliveryError) -> None:
    async with FakeTransport() as transport:
        transport.faults[mid(0)] = [Fault(error, accepted=True)]
        with pytest.raises(type(error)) as info:
            await transport.send_mail(msg(0))
    assert info.value.outcome is Outcome.AMBIGUOUS
    assert info.value.message_id == mid(0)
    assert transport.accepted == [mid(0)]  # it was delivered, once
    assert len(transport.attempts) == 1


@virtual_time
async def test_retry_ambiguous_opts_in_to_duplicates(caplog: pytest.LogCaptureFixture) -> None:
    async with FakeTransport(retry=RetryPolicy(retry_ambiguous=True)) as transport:
        transport.faults[mid(0)] = [Fault(dropped(), accepted=True)]
        result = await transport.send_mail(msg(0))
    assert result.attempts == 2
    assert transport.accepted == [mid(0), mid(0)]  # the documented risk
    assert "may have been delivered twice" in caplog.text


@virtual_time
async def test_a_retry_safe_error_after_an_ambiguous_attempt_is_reported_unknown() -> None:
    policy = RetryPolicy(retry_ambiguous=True, max_attempts=2)
    async with FakeTransport(retry=policy) as transport:
        transport.faults[mid(0)] = [Fault(dropped(), accepted=True), Fault(server_error())]
        with pytest.raises(DeliveryUnknownError) as info:
            await transport.send_mail(msg(0))
    assert info.value.outcome is Outcome.AMBIGUOUS
    assert info.value.attempts == 2
    assert isinstance(info.value.__cause__, ServiceUnavailableError)
    assert transport.accepted == [mid(0)]


@virtual_time
async def test_a_bug_in_the_backend_call_is_raised_with_its_type_never_as_unknown() -> None:
    # A KeyError is not a network or service outcome: it is raised as it is (with a note
    # asking to report it on 3.11+), never as "the message may have been delivered".
    async with FakeTransport() as transport:
        transport.faults[mid(0)] = [Fault(KeyError("MessageId"))]
        with pytest.raises(KeyError) as info:
            await transport.send_mail(msg(0))
        assert transport.pending == 0
    assert not isinstance(info.value, MailError)
    if sys.version_info >= (3, 11):
        assert any("bug" in note for note in info.value.__notes__)


@virtual_time
async def test_an_unmapped_network_error_during_the_call_is_an_unknown_outcome() -> None:
    async with FakeTransport() as transport:
        transport.faults[mid(0)] = [Fault(ConnectionResetError("reset by peer"))]
        with pytest.raises(DeliveryUnknownError) as info:
            await transport.send_mail(msg(0))
    assert isinstance(info.value.__cause__, ConnectionResetError)
    assert info.value.message_id == mid(0)


@virtual_time
async def test_throttling_lowers_the_rate_and_it_recovers_gradually() -> None:
    async with FakeTransport(sending_rate=50) as transport:
        limiter = transport.rate_limiter
        assert limiter is not None
        transport.faults[mid(0)] = [Fault(throttle())]
        result = await transport.send_mail(msg(0))
        assert result.attempts == 2
        lowered = limiter.rate
        assert lowered < 50
        rates = [lowered]
        for i in range(1, 40):  # one send per second; the limiter recovers as time passes
            await asyncio.sleep(1.0)
            await transport.send_mail(msg(i))
            rates.append(limiter.rate)
    assert rates == sorted(rates)  # never drops again without a new signal
    assert len(set(rates)) > 3  # several steps, not one jump
    assert rates[-1] == 50


@virtual_time
async def test_retries_go_through_the_rate_limiter() -> None:
    rng = random.Random(3)
    async with FakeTransport(sending_rate=10, max_connections=4) as transport:
        for i in range(60):
            transport.faults[mid(i)] = [Fault(server_error()) for _ in range(rng.randint(0, 2))]
        results = await asyncio.gather(*(transport.send_mail(msg(i)) for i in range(60)))
    assert sum(r.attempts for r in results) == len(transport.attempts) > 60
    assert worst_window([t for t, _ in transport.attempts]) <= 10
    assert sorted(transport.accepted) == sorted(mid(i) for i in range(60))


# ------------------------------------------------------------------------- cancellation


@virtual_time
async def test_cancelling_1000_waiting_sends_gives_all_capacity_back() -> None:
    rate, slots = 10, 4
    async with FakeTransport(sending_rate=rate, max_connections=slots, latency=0.2) as transport:
        loop = asyncio.get_running_loop()
        limiter = transport.rate_limiter
        semaphore = transport._semaphore
        assert isinstance(limiter, LocalRateLimiter) and semaphore is not None
        tasks = [asyncio.ensure_future(transport.send_mail(msg(i))) for i in range(1000)]
        await asyncio.sleep(1.0)  # some delivered, some in flight, most waiting
        delivered_before = len(transport.accepted)
        assert 0 < delivered_before < 20
        waiting = [t for t in tasks if not t.done()]
        for task in waiting:
            task.cancel()
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        cancelled = sum(isinstance(o, asyncio.CancelledError) for o in outcomes)
        assert cancelled >= 975
        # Everything is given back: slots, the limiter's queue, pending counters, tasks.
        assert transport.pending == 0
        assert transport.open_connections == 0
        assert semaphore._value == slots
        assert not semaphore.locked()
        assert limiter._lock is not None and not limiter._lock.locked()
        assert not own_tasks()
        # Sends that were cancelled in flight may have reached the backend; none other did.
        ids = [message_id for _, message_id in transport.attempts]
        assert len(ids) == len(set(ids)) <= delivered_before + slots
        # The next sends go at the full rate.
        await asyncio.sleep(2.0)
        start = loop.time()
        before = len(transport.attempts)
        await asyncio.gather(*(transport.send_mail(msg(2000 + i)) for i in range(50)))
        times = [t for t, _ in transport.attempts[before:]]
    assert worst_window(times) <= rate
    assert (times[-1] - start) == pytest.approx(49 / rate, abs=0.6)


@virtual_time
async def test_cancelling_during_the_backend_call_propagates_and_frees_the_slot() -> None:
    async with FakeTransport(max_connections=1, latency=5.0) as transport:
        task = asyncio.ensure_future(transport.send_mail(msg(0)))
        await asyncio.sleep(1.0)
        assert transport.open_connections == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert transport.pending == 0
        assert transport.open_connections == 0
        transport.latency = 0
        result = await transport.send_mail(msg(1))
        assert result.connection_wait == 0
    # Reserved, reached _deliver (no unreserve: the backend may have taken it).
    assert transport.events == [f"reserve {mid(0)}", f"reserve {mid(1)}"]


@virtual_time
async def test_a_timeout_around_send_mail_is_a_cancellation() -> None:
    async with FakeTransport(sending_rate=1, max_connections=1) as transport:
        await transport.send_mail(msg(0))
        with pytest.raises(asyncio.TimeoutError):  # not the builtin one on Python 3.10
            await asyncio.wait_for(transport.send_mail(msg(1)), 0.5)  # waits for the limiter
        assert transport.pending == 0
        result = await transport.send_mail(msg(2))
    assert transport.accepted == [mid(0), mid(2)]
    # The timed-out one took no unit: 1 s (+ the 10 ms margin) after the first.
    assert result.rate_wait == pytest.approx(0.51, abs=0.001)


@virtual_time
async def test_cancelling_before_the_backend_call_undoes_the_reservation() -> None:
    async with FakeTransport(max_connections=1, latency=5.0) as transport:
        first = asyncio.ensure_future(transport.send_mail(msg(0)))
        second = asyncio.ensure_future(transport.send_mail(msg(1)))
        await asyncio.sleep(1.0)
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        await first
    assert transport.events == [f"reserve {mid(0)}", f"reserve {mid(1)}", f"unreserve {mid(1)}"]


# -------------------------------------------------------------------------------- drain


@virtual_time
async def test_close_with_500_queued_delivers_them_all() -> None:
    transport = FakeTransport(
        sending_rate=100, max_connections=10, latency=0.05, limits=Limits(drain_timeout=60)
    )
    await transport.__aenter__()
    tasks = [asyncio.ensure_future(transport.send_mail(msg(i))) for i in range(500)]
    await asyncio.sleep(0)  # every send_mail has been called, none delivered yet
    closer = asyncio.ensure_future(transport.aclose())
    await asyncio.sleep(0)
    assert transport.state is TransportState.CLOSING
    with pytest.raises(TransportStateError) as info:
        await transport.send_mail(msg(999))
    assert info.value.state == "closing"
    await closer  # no UndeliveredError
    closed_at = asyncio.get_running_loop().time()
    results = await asyncio.gather(*tasks)
    assert all(isinstance(r, SendResult) for r in results)
    assert sorted(transport.accepted) == sorted(mid(i) for i in range(500))
    assert max(transport.accepted_at) <= closed_at
    assert transport.closed == 1
    assert worst_window(transport.accepted_at) <= 100


@virtual_time
async def test_drain_timeout_aborts_the_rest_and_reports_every_message() -> None:
    transport = FakeTransport(
        sending_rate=100, max_connections=10, latency=0.3, limits=Limits(drain_timeout=1.0)
    )
    await transport.__aenter__()
    loop = asyncio.get_running_loop()
    tasks = [asyncio.ensure_future(transport.send_mail(msg(i))) for i in range(500)]
    await asyncio.sleep(0)
    start = loop.time()
    with pytest.raises(UndeliveredError) as info:
        await transport.aclose()
    closed_at = loop.time()
    assert closed_at - start == pytest.approx(1.0)
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(10)  # nothing happens after close
    assert max(transport.accepted_at) <= closed_at
    assert max(t for t, _ in transport.attempts) <= closed_at

    delivered = {o.message_id for o in outcomes if isinstance(o, SendResult)}
    aborted = {o.message_id for o in outcomes if isinstance(o, SendAbortedError)}
    unknown = {o.message_id for o in outcomes if isinstance(o, DeliveryUnknownError)}
    assert all(
        isinstance(o, SendResult | SendAbortedError | DeliveryUnknownError) for o in outcomes
    )
    assert len(delivered) + len(aborted) + len(unknown) == 500
    assert delivered == set(transport.accepted)
    assert 0 < len(unknown) <= 10  # the ones in flight
    assert all(o.outcome is Outcome.RETRY_SAFE for o in outcomes if isinstance(o, SendAbortedError))
    # The report lists exactly the messages that did not get through.
    reported = {message_id for message_id, _ in info.value.failures}
    assert reported == aborted | unknown
    assert {id(e) for _, e in info.value.failures} == {
        id(o) for o in outcomes if not isinstance(o, SendResult)
    }


@virtual_time
async def test_an_abort_during_backoff_after_an_ambiguous_attempt_is_unknown() -> None:
    policy = RetryPolicy(retry_ambiguous=True, initial_backoff=100, max_backoff=100, deadline=None)
    transport = FakeTransport(retry=policy, limits=Limits(drain_timeout=0))
    await transport.__aenter__()
    transport.faults[mid(0)] = [Fault(dropped(), accepted=True) for _ in range(3)]
    task = asyncio.ensure_future(transport.send_mail(msg(0)))
    while not transport.attempts:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.01)
    with pytest.raises(UndeliveredError):
        await transport.aclose()
    with pytest.raises(DeliveryUnknownError):
        await task


@virtual_time
async def test_sends_still_composing_when_close_starts_are_drained() -> None:
    async def slow_content() -> AsyncIterator[bytes]:
        await asyncio.sleep(1.0)  # composition reads this source: it takes a second
        yield b"data"

    attachment = Attachment(filename="a.txt", content=slow_content())
    transport = FakeTransport(limits=Limits(drain_timeout=5))
    await transport.__aenter__()
    task = asyncio.ensure_future(transport.send_mail(msg(0), attachments=[attachment]))
    await asyncio.sleep(0.5)  # composing
    assert transport.pending == 1
    await transport.aclose()
    assert (await task).message_id == mid(0)
    assert transport.accepted == [mid(0)]


@virtual_time
async def test_cancelling_aclose_still_aborts_and_releases() -> None:
    transport = FakeTransport(max_connections=1, latency=100.0, limits=Limits(drain_timeout=None))
    await transport.__aenter__()
    tasks = [asyncio.ensure_future(transport.send_mail(msg(i))) for i in range(3)]
    await asyncio.sleep(1)
    closer = asyncio.ensure_future(transport.aclose())
    await asyncio.sleep(1)
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closer
    assert transport.state is TransportState.CLOSED
    assert transport.closed == 1
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(outcomes[0], DeliveryUnknownError)
    assert all(isinstance(o, SendAbortedError) for o in outcomes[1:])
    assert transport.open_connections == 0


@virtual_time
async def test_a_second_aclose_waits_for_the_first() -> None:
    transport = FakeTransport(latency=2.0)
    await transport.__aenter__()
    task = asyncio.ensure_future(transport.send_mail(msg(0)))
    await asyncio.sleep(0.5)
    first = asyncio.ensure_future(transport.aclose())
    await asyncio.sleep(0)
    await transport.aclose()
    assert transport.state is TransportState.CLOSED
    assert first.done()
    await first
    await task


@virtual_time
async def test_aexit_never_hides_the_error_in_flight(caplog: pytest.LogCaptureFixture) -> None:
    transport = FakeTransport(latency=10.0, limits=Limits(drain_timeout=0.5))
    with pytest.raises(ZeroDivisionError):
        async with transport:
            task = asyncio.ensure_future(transport.send_mail(msg(0)))
            await asyncio.sleep(0.1)
            1 / 0  # noqa: B018
    with pytest.raises(DeliveryUnknownError):
        await task
    assert "undelivered" in caplog.text


# ---------------------------------------------------------------------------- send_many


class Prepared(FakeTransport):
    """Skips composition (a prebuilt message per input), to measure the machinery alone."""

    async def prepare(
        self, message: MessageInput | None = None, /, **fields: Any
    ) -> tuple[ComposedMessage, Message | None]:
        assert isinstance(message, str)
        if message.startswith("bad"):
            raise HeaderError("bad header", field="subject")
        if message.startswith("boom"):
            raise RuntimeError("a bug")
        from asyncmailer.message import Envelope

        envelope = Envelope(from_="a@example.com", to=("b@example.com",))
        return ComposedMessage(raw=b"x", envelope=envelope, message_id=message), None


@virtual_time
async def test_send_many_yields_outcomes_in_input_order_with_progress() -> None:
    rng = random.Random(5)
    seen: list[tuple[int, object]] = []
    async with FakeTransport(max_connections=8) as transport:
        for i in range(0, 40, 7):
            transport.faults[mid(i)] = [Fault(rejected())]
        for i in range(40):
            transport.faults.setdefault(mid(i), []).append(Fault(server_error()))
        # Random latencies make them finish out of order.
        transport.latency = 0.0
        original = transport._deliver

        async def slow(composed: ComposedMessage, message: Message | None) -> Delivery:
            await asyncio.sleep(rng.uniform(0, 0.5))
            return await original(composed, message)

        transport._deliver = slow  # type: ignore[method-assign]
        messages = [msg(i) for i in range(40)]
        outcomes = [
            o
            async for o in transport.send_many(
                messages, progress=lambda done, o: seen.append((done, o))
            )
        ]
    assert len(outcomes) == 40
    for i, outcome in enumerate(outcomes):
        if i % 7 == 0:
            assert isinstance(outcome, MessageRejectedError)
            assert outcome.message_id == mid(i)
        else:
            assert isinstance(outcome, SendResult)
            assert outcome.message_id == mid(i)
            assert outcome.attempts == 2
    assert seen == list(enumerate(outcomes, start=1))


@virtual_time
async def test_send_many_takes_async_iterables_and_yields_invalid_messages_as_errors() -> None:
    async def source() -> AsyncIterator[str]:
        for i in range(30):
            await asyncio.sleep(0.01)
            yield f"bad{i}" if i % 10 == 3 else f"<{i}@x>"

    async with Prepared(max_connections=4, latency=0.1) as transport:
        outcomes = [o async for o in transport.send_many(source())]
    assert [isinstance(o, HeaderError) for o in outcomes] == [i % 10 == 3 for i in range(30)]
    assert [o.message_id for o in outcomes if isinstance(o, SendResult)] == [
        f"<{i}@x>" for i in range(30) if i % 10 != 3
    ]


@virtual_time
async def test_send_many_is_lazy_and_bounded_for_10000_messages() -> None:
    concurrency = 16
    pulled = 0
    outstanding_max = 0
    tasks_max = 0
    done = 0

    def source() -> Iterator[str]:
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield f"<{i}@x>"

    def progress(n: int, outcome: object) -> None:
        nonlocal outstanding_max, tasks_max, done
        done = n
        outstanding_max = max(outstanding_max, pulled - n)
        if n % 500 == 0:
            tasks_max = max(tasks_max, len(asyncio.all_tasks()))

    async with Prepared(sending_rate=5000, latency=0.003) as transport:
        count = 0
        async for _ in transport.send_many(source(), concurrency=concurrency, progress=progress):
            count += 1
    assert count == done == 10_000
    assert len(transport.accepted) == 10_000
    # Never more than 2 × concurrency outcomes ahead of the consumer (+1 being awaited)...
    assert outstanding_max <= 2 * concurrency + 1
    # ...and a fixed set of tasks: the workers, the caller, nothing per message.
    assert tasks_max <= concurrency + 1
    assert transport.max_open <= concurrency


@virtual_time
async def test_send_many_stops_early_without_leaking_tasks() -> None:
    async with Prepared(max_connections=5, latency=1.0) as transport:
        gen = transport.send_many(f"<{i}@x>" for i in range(1000))
        async with contextlib.aclosing(gen) as outcomes:
            async for outcome in outcomes:
                assert isinstance(outcome, SendResult)
                break
        assert not own_tasks()
        assert transport.pending == 0
        assert transport.open_connections == 0
    assert len(transport.attempts) <= 1 + 5 + 5  # the first, and at most a window more


@virtual_time
async def test_send_many_raises_source_and_unexpected_errors() -> None:
    def broken() -> Iterator[str]:
        yield "<1@x>"
        raise OSError("disk gone")

    async with Prepared(max_connections=3) as transport:
        outcomes: list[object] = []
        with pytest.raises(OSError, match="disk gone"):
            async for outcome in transport.send_many(broken()):
                outcomes.append(outcome)
        assert [type(o) for o in outcomes] == [SendResult]
        with pytest.raises(RuntimeError, match="a bug"):
            async for _ in transport.send_many(["<1@x>", "boom", "<2@x>"]):
                pass
        assert not own_tasks()
        with pytest.raises(ConfigurationError) as info:
            async for _ in transport.send_many([], concurrency=0):
                pass
        assert info.value.option == "concurrency"
        assert [o async for o in transport.send_many([])] == []


@virtual_time
async def test_send_many_reports_sends_aborted_by_close() -> None:
    transport = Prepared(max_connections=2, latency=1.0, limits=Limits(drain_timeout=0.5))
    await transport.__aenter__()
    outcomes: list[object] = []

    async def consume() -> None:
        async for outcome in transport.send_many(f"<{i}@x>" for i in range(10)):
            outcomes.append(outcome)

    consumer = asyncio.ensure_future(consume())
    await asyncio.sleep(0.1)
    with pytest.raises(UndeliveredError):
        await transport.aclose()
    await consumer
    assert len(outcomes) == 10
    assert isinstance(outcomes[0], DeliveryUnknownError)  # in flight at the abort
    assert all(isinstance(o, MailError) for o in outcomes)
    assert any(isinstance(o, TransportStateError) for o in outcomes)  # pulled after close


# -------------------------------------------------------------------------- RetryPolicy


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": 2.5},
        {"max_attempts": True},
        {"deadline": -1},
        {"deadline": math.inf},
        {"initial_backoff": -0.1},
        {"max_backoff": math.nan},
        {"multiplier": 0.5},
    ],
)
def test_retry_policy_refuses_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs)


def test_retry_policy_decisions() -> None:
    policy = RetryPolicy(max_attempts=3, deadline=10, initial_backoff=1, max_backoff=1)
    safe, unknown, final = server_error(), dropped(), rejected()
    assert policy.should_retry(safe, 1, 0)
    assert not policy.should_retry(safe, 3, 0)
    assert not policy.should_retry(safe, 1, 10)
    assert not policy.should_retry(unknown, 1, 0)
    assert not policy.should_retry(final, 1, 0)
    assert RetryPolicy(retry_ambiguous=True).should_retry(unknown, 1, 0)
    assert not RetryPolicy(retry_ambiguous=True).should_retry(final, 1, 0)
    rng = random.Random(0)
    delays = [policy.next_delay(safe, 1, 9.5, rng) for _ in range(200)]
    assert all(d is None or d <= 0.5 for d in delays)  # never past the deadline
    assert None in delays and any(d is not None for d in delays)
    assert policy.next_delay(final, 1, 0) is None
    assert RetryPolicy(deadline=None).next_delay(safe, 1, 1e9) is not None


def test_no_garbage_cycles_left_by_a_failed_send() -> None:
    # Errors carry tracebacks; the transport must not keep them alive in its own state.
    async def main() -> FakeTransport:
        async with FakeTransport() as transport:
            transport.faults[mid(0)] = [Fault(rejected())]
            with pytest.raises(MessageRejectedError):
                await transport.send_mail(msg(0))
        return transport

    from tests.helpers import run_virtual

    transport = run_virtual(main())
    gc.collect()
    assert transport._failures == []
    assert transport._sends == set()


@virtual_time
async def test_a_caller_cancelling_during_the_abort_gets_its_cancellation() -> None:
    # aclose() aborts a send by cancelling its task; when the caller cancels the same send
    # too, the caller's cancellation wins (CancelledError), it is not turned into an error.
    transport = FakeTransport(latency=100.0, limits=Limits(drain_timeout=1.0))
    await transport.__aenter__()
    task = asyncio.ensure_future(transport.send_mail(msg(0)))
    await asyncio.sleep(0.5)
    closer = asyncio.ensure_future(transport.aclose())
    await asyncio.sleep(0.6)  # the drain timeout has passed: aclose() cancelled the send
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await closer
    assert transport.open_connections == 0
    assert transport.pending == 0


@virtual_time
async def test_an_aborted_send_leaves_its_task_uncancelled() -> None:
    # The abort's cancel request is withdrawn: the task that called send_mail goes on.
    transport = FakeTransport(latency=100.0, limits=Limits(drain_timeout=0.5))
    await transport.__aenter__()

    async def caller() -> str:
        try:
            await transport.send_mail(msg(0))
        except DeliveryUnknownError:
            pass
        await asyncio.sleep(1)  # not cancelled
        task = asyncio.current_task()
        assert task is not None
        return f"cancelling={task.cancelling() if sys.version_info >= (3, 11) else 0}"

    task = asyncio.ensure_future(caller())
    await asyncio.sleep(0.1)
    with pytest.raises(UndeliveredError):
        await transport.aclose()
    assert await task == "cancelling=0"


async def test_reserve_hooks_run_only_where_a_transport_defines_them() -> None:
    class Plain(Transport):
        async def _deliver(self, composed: ComposedMessage, message: Message | None) -> Delivery:
            return Delivery(response="ok", message_id=composed.message_id)

    class Child(FakeTransport):
        pass

    async with Plain() as plain, Child() as child:
        assert not plain._reserving
        assert child._reserving
        await child.send_mail(msg(0))
        assert child.events[:1] == [f"reserve {mid(0)}"]
        assert (await plain.send_mail(msg(1))).message_id == mid(1)


@virtual_time
async def test_an_abort_swallowed_on_the_way_is_withdrawn_when_the_send_ends() -> None:
    # A backend call that swallows the cancellation and completes: the send succeeds (an
    # honest outcome), and the caller's task is not left counting aclose()'s cancel request.
    class Stubborn(FakeTransport):
        async def _deliver(self, composed: ComposedMessage, message: Message | None) -> Delivery:
            try:
                await asyncio.sleep(100)
            except asyncio.CancelledError:
                pass
            return Delivery(response="ok", message_id=composed.message_id)

    transport = Stubborn(limits=Limits(drain_timeout=0.5))
    await transport.__aenter__()

    async def caller() -> tuple[str, int]:
        result = await transport.send_mail(msg(0))
        task = asyncio.current_task()
        assert task is not None
        return result.message_id, task.cancelling() if sys.version_info >= (3, 11) else 0

    task = asyncio.ensure_future(caller())
    await asyncio.sleep(0.1)
    await transport.aclose()
    assert await task == (mid(0), 0)
