"""Fault campaign: the real SESTransport and real aiobotocore against the local SES endpoint.

The endpoint injects rate throttling, 5xx answers before acceptance, connections dropped
after acceptance and latency spikes (past the client's read timeout). Messages are
counted by their Message-ID header at the endpoint (it stores the raw bytes), and every
message must be accepted exactly once, or reported with an error whose type and outcome
match what the endpoint really did:

- ``SendResult`` → stored exactly once;
- a retry-safe error → stored zero times (nothing lost behind a "safe to retry");
- an ambiguous error (DeliveryUnknownError, DeliveryTimeoutError) → stored zero or one time;
- the endpoint saw exactly as many send requests as the attempts reported (botocore did
  not resend anything behind our back).

The CI size is small; the long campaign runs with ``ASYNCMAILER_FAULT_MESSAGES``::

    ASYNCMAILER_FAULT_MESSAGES=20000 pytest tests/test_reliability_faults.py -k campaign

This module also holds the end-to-end tests of quota handling, cancellation and drain.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from asyncmailer import (
    AWSClientSettings,
    Limits,
    Message,
    QuotaPolicy,
    RetryPolicy,
    SendResult,
    SESTransport,
)
from asyncmailer.errors import (
    ConfigurationError,
    DailyQuotaExceededError,
    DeliveryError,
    DeliveryUnknownError,
    MailError,
    Outcome,
    SendAbortedError,
    ServiceUnavailableError,
    UndeliveredError,
)
from asyncmailer.limits import LocalRateLimiter
from asyncmailer.testing import SESEndpoint
from tests.helpers import worst_window

CAMPAIGN_MESSAGES = int(os.environ.get("ASYNCMAILER_FAULT_MESSAGES", "400"))
CAMPAIGN_SEED = int(os.environ.get("ASYNCMAILER_FAULT_SEED", "20261128"))

SEND_ACTION = {"v1": "ses:SendRawEmail", "v2": "sesv2:SendEmail"}
QUOTA_ACTION = {"v1": "ses:GetSendQuota", "v2": "sesv2:GetAccount"}


def message(i: int, tag: str = "c", *, to: int = 1) -> Message:
    return Message(
        from_="shop@example.com",
        to=[f"{tag}{i}-{k}@example.org" for k in range(to)],
        subject=f"{tag} {i}",
        text=f"message {i}",
        message_id=f"<{tag}{i}@reliability.test>",
    )


def header_id(i: int, tag: str = "c") -> str:
    return f"{tag}{i}@reliability.test"


def stored_counts(endpoint: SESEndpoint) -> collections.Counter[str | None]:
    return collections.Counter(record.message_id_header for record in endpoint.messages())


def transport(endpoint: SESEndpoint, **kwargs: Any) -> SESTransport:
    options: dict[str, Any] = {"endpoint_url": endpoint.url, "region_name": "us-east-1"}
    options.update(kwargs)
    return SESTransport(**options)


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


# ----------------------------------------------------------------------- the campaign


@dataclass
class CampaignReport:
    """What one campaign saw; the assertions live in :func:`check_campaign`."""

    outcomes: list[SendResult | MailError]
    counts: collections.Counter[str | None]
    requests: int
    stats: Any
    throttled_rate: float | None
    kinds: collections.Counter[str] = field(default_factory=collections.Counter)


async def run_campaign(
    n: int,
    *,
    api: str,
    seed: int,
    concurrency: int = 80,
    max_connections: int = 40,
    on_progress: Callable[[int], None] | None = None,
) -> CampaignReport:
    """Send ``n`` messages through the faults; return what happened on both sides."""
    faults: dict[str, Any] = {
        "throttle_ratio": 0.10,
        "server_error_ratio": 0.05,
        "drop_after_accept_ratio": 0.02,
        "latency": 0.001,
        "latency_spike_probability": 0.02,
        "latency_spike": 0.5,
    }
    policy = RetryPolicy(max_attempts=6, initial_backoff=0.01, max_backoff=0.2, deadline=30)
    async with SESEndpoint(seed=seed, **faults) as endpoint:
        async with transport(
            endpoint,
            api=api,
            sending_rate=4000,
            max_connections=max_connections,
            aws=AWSClientSettings(read_timeout=0.25),  # 0.5 s spikes: read timeouts, ambiguous
            retry=policy,
        ) as ses:
            outcomes: list[SendResult | MailError] = []

            def progress(done: int, _: object) -> None:
                if on_progress is not None and done % 1000 == 0:
                    on_progress(done)

            messages = (message(i) for i in range(n))
            async for outcome in ses.send_many(
                messages, concurrency=concurrency, progress=progress
            ):
                outcomes.append(outcome)
            limiter = ses.rate_limiter
            throttled_rate = limiter.rate if limiter is not None else None
        # Requests cut by the client's read timeout are still being answered: let them end.
        await eventually(lambda: endpoint.stats().in_flight == 0)
        stats = endpoint.stats()
        return CampaignReport(
            outcomes=outcomes,
            counts=stored_counts(endpoint),
            requests=stats.requests.get(SEND_ACTION[api], 0),
            stats=stats,
            throttled_rate=throttled_rate,
        )


def check_campaign(report: CampaignReport, n: int) -> None:
    """Every message accepted exactly once, or reported with the type that matches."""
    assert len(report.outcomes) == n
    attempts = 0
    for i, outcome in enumerate(report.outcomes):
        copies = report.counts.get(header_id(i), 0)
        if isinstance(outcome, SendResult):
            assert copies == 1, (i, outcome, copies)
            attempts += outcome.attempts
            report.kinds["retried" if outcome.attempts > 1 else "first time"] += 1
        else:
            assert isinstance(outcome, DeliveryError), (i, outcome)
            assert outcome.message_id == f"<{header_id(i)}>"
            attempts += outcome.attempts
            if outcome.outcome is Outcome.AMBIGUOUS:
                assert copies in (0, 1), (i, outcome, copies)
                report.kinds[f"unknown, {copies} stored"] += 1
            else:
                # Retry-safe (gave up) or final: the endpoint must not have the message.
                assert copies == 0, (i, outcome, copies)
                report.kinds[type(outcome).__name__] += 1
    # Nothing stored that we did not send, nothing stored twice.
    assert set(report.counts) <= {header_id(i) for i in range(n)}
    assert max(report.counts.values()) == 1
    # One request per attempt reported: botocore resent nothing on its own.
    assert report.requests == attempts


@pytest.mark.parametrize("api", ["v2", "v1"])
async def test_fault_campaign_loses_and_duplicates_nothing(api: str) -> None:
    n = CAMPAIGN_MESSAGES if api == "v2" else max(1, CAMPAIGN_MESSAGES // 2)
    report = await run_campaign(n, api=api, seed=CAMPAIGN_SEED + (api == "v1"))
    check_campaign(report, n)
    stats = report.stats
    # The faults really happened (so this test can fail).
    assert stats.dropped_after_accept > 0
    assert report.kinds["retried"] > n * 0.08
    assert report.kinds["unknown, 1 stored"] > 0
    throttle_code = "Throttling" if api == "v1" else "TooManyRequestsException"
    assert stats.errors.get(throttle_code, 0) > n * 0.05
    assert stats.errors.get("InternalFailure", 0) + stats.errors.get("ServiceUnavailable", 0) > 0
    # Throttling lowered the effective rate.
    assert report.throttled_rate is not None and report.throttled_rate < 4000
    # Most messages get through: only ambiguous ones (drops, timeouts) fail by design.
    delivered = sum(isinstance(o, SendResult) for o in report.outcomes)
    assert delivered >= n * 0.9


async def test_botocore_never_resends_on_clients_the_transport_creates() -> None:
    async with SESEndpoint(server_error_ratio=1.0) as endpoint:
        async with transport(endpoint, api="v2", retry=RetryPolicy(max_attempts=1)) as ses:
            assert ses.client.meta.config.retries == {"mode": "standard", "total_max_attempts": 1}
            with pytest.raises(ServiceUnavailableError) as info:
                await ses.send_mail(message(0))
            assert info.value.attempts == 1
            assert endpoint.stats().requests[SEND_ACTION["v2"]] == 1
            endpoint.configure(server_error_ratio=0.0, drop_after_accept_ratio=1.0)
            with pytest.raises(DeliveryUnknownError):
                await ses.send_mail(message(1))
            assert endpoint.stats().requests[SEND_ACTION["v2"]] == 2
        assert stored_counts(endpoint) == {header_id(1): 1}


async def test_drops_before_acceptance_are_unknown_but_nothing_is_stored() -> None:
    # The client cannot tell a drop before acceptance from one after: both are unknown.
    async with (
        SESEndpoint(drop_before_accept_ratio=1.0) as endpoint,
        transport(endpoint, api="v1") as ses,
    ):
        with pytest.raises(DeliveryUnknownError) as info:
            await ses.send_mail(message(0))
    assert info.value.outcome is Outcome.AMBIGUOUS
    assert info.value.attempts == 1
    assert endpoint.messages() == []


async def test_retry_ambiguous_may_duplicate_as_documented() -> None:
    async with SESEndpoint(drop_after_accept_ratio=1.0) as endpoint:
        policy = RetryPolicy(retry_ambiguous=True, max_attempts=2, initial_backoff=0.01)
        async with transport(endpoint, api="v2", retry=policy) as ses:
            with pytest.raises(DeliveryUnknownError) as info:
                await ses.send_mail(message(0))
    assert info.value.attempts == 2
    assert stored_counts(endpoint) == {header_id(0): 2}


@pytest.mark.slow
async def test_throttled_above_the_account_rate_the_transport_slows_down() -> None:
    # The account allows 40 recipients/s; we ask for 80. SES-style throttling answers
    # tell the limiter to back off, retries go through it, and everything arrives once.
    async with (
        SESEndpoint(throttle_rate=40, seed=1) as endpoint,
        transport(endpoint, sending_rate=80, max_connections=8) as ses,
    ):
        limiter = ses.rate_limiter
        assert isinstance(limiter, LocalRateLimiter)
        results = await asyncio.gather(*(ses.send_mail(message(i)) for i in range(120)))
        lowered = limiter.rate
    assert lowered < 80
    assert sum(r.attempts > 1 for r in results) > 0
    counts = stored_counts(endpoint)
    assert counts == {header_id(i): 1 for i in range(120)}
    stats = endpoint.stats()
    assert stats.max_starts_in_window(1.0, accepted_only=True) <= 40


# --------------------------------------------------------------------------------- quota


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_auto_rate_is_read_from_the_account_and_refreshed(api: str) -> None:
    async with (
        SESEndpoint(max_send_rate=20) as endpoint,
        transport(endpoint, api=api, sending_rate="auto", quota=QuotaPolicy(refresh=0.05)) as ses,
    ):
        limiter = ses.rate_limiter
        assert isinstance(limiter, LocalRateLimiter)
        assert limiter.configured_rate == pytest.approx(18)  # 0.9 × MaxSendRate
        endpoint.configure(max_send_rate=50)
        await eventually(lambda: limiter.configured_rate == pytest.approx(45))
        assert limiter.rate <= 45
        endpoint.configure(max_send_rate=10)
        await eventually(lambda: limiter.rate == pytest.approx(9))
        assert ses.quota.max_send_rate == 10
    assert endpoint.stats().requests[QUOTA_ACTION[api]] >= 3


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_daily_quota_fail_refuses_before_any_request(api: str) -> None:
    async with SESEndpoint(max_send_rate=100, max_24_hour_send=4) as endpoint:
        # Someone else already sent 2 recipients today: the transport reads SentLast24Hours.
        async with transport(endpoint, api=api) as other:
            await other.send_mail(message(0, "other", to=2))
        async with transport(endpoint, api=api, sending_rate="auto") as ses:
            await ses.send_mail(message(0))
            with pytest.raises(DailyQuotaExceededError) as info:
                await ses.send_mail(message(1, to=2))  # 2 + 1 + 2 > 4
            assert info.value.outcome is Outcome.FINAL
            await ses.send_mail(message(2))  # 2 + 1 + 1 == 4: still fits
            with pytest.raises(DailyQuotaExceededError):
                await ses.send_mail(message(3))
    assert endpoint.stats().requests[SEND_ACTION[api]] == 3
    assert endpoint.stats().errors == {}  # the endpoint never had to refuse


async def test_daily_quota_wait_waits_for_the_quota_to_grow() -> None:
    async with (
        SESEndpoint(max_send_rate=100, max_24_hour_send=1) as endpoint,
        transport(
            endpoint, api="v2", sending_rate="auto", quota=QuotaPolicy(daily="wait", refresh=0.05)
        ) as ses,
    ):
        await ses.send_mail(message(0))
        waiting = asyncio.ensure_future(ses.send_mail(message(1)))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        assert endpoint.stats().requests[SEND_ACTION["v2"]] == 1
        endpoint.configure(max_24_hour_send=10)
        result = await asyncio.wait_for(waiting, 5)
    assert result.attempts == 1
    assert stored_counts(endpoint) == {header_id(0): 1, header_id(1): 1}


@pytest.mark.slow
async def test_sends_released_by_the_daily_quota_keep_to_the_rate() -> None:
    # Sends waiting for the daily quota hold no rate-limiter unit: when the quota grows
    # they go out at the rate, not all at once.
    async with (
        SESEndpoint(max_send_rate=10, max_24_hour_send=0) as endpoint,
        transport(
            endpoint,
            api="v2",
            sending_rate="auto",
            quota=QuotaPolicy(daily="wait", refresh=0.05),
            max_connections=10,
        ) as ses,
    ):
        tasks = [asyncio.ensure_future(ses.send_mail(message(i))) for i in range(20)]
        await asyncio.sleep(1.2)
        assert endpoint.stats().requests.get(SEND_ACTION["v2"], 0) == 0
        endpoint.configure(max_24_hour_send=100)
        await asyncio.gather(*tasks)
    # 9/s. Had the ten sends holding a connection slot also held a granted unit, ten would
    # have gone at once, then the rest at the rate: 17 or more in one second. The +2
    # absorbs the first two requests' connection set-up (~15 ms on loopback, more than the
    # limiter's 2 ms margin), which delays their arrival relative to later ones.
    assert endpoint.stats().max_starts_in_window(1.0) <= 9 + 2


def test_daily_quota_wait_needs_a_refresh_to_ever_wake_up() -> None:
    with pytest.raises(ConfigurationError) as info:
        SESTransport(sending_rate="auto", quota=QuotaPolicy(daily="wait", refresh=None))
    assert info.value.option == "refresh"


async def test_a_send_waiting_for_the_daily_quota_is_aborted_on_close() -> None:
    async with SESEndpoint(max_send_rate=100, max_24_hour_send=0) as endpoint:
        ses = transport(
            endpoint,
            api="v2",
            sending_rate="auto",
            quota=QuotaPolicy(daily="wait"),
            limits=Limits(drain_timeout=0.2),
        )
        await ses.__aenter__()
        waiting = asyncio.ensure_future(ses.send_mail(message(0)))
        await asyncio.sleep(0.1)
        with pytest.raises(UndeliveredError):
            await ses.aclose()
        with pytest.raises(SendAbortedError):
            await waiting
    assert endpoint.stats().requests.get(SEND_ACTION["v2"], 0) == 0


# ------------------------------------------------------------- cancellation and drain


async def test_cancelled_waiting_sends_leak_nothing_through_the_real_stack() -> None:
    async with (
        SESEndpoint(latency=0.05) as endpoint,
        transport(endpoint, api="v2", sending_rate=40, max_connections=4) as ses,
    ):
        tasks = [asyncio.ensure_future(ses.send_mail(message(i))) for i in range(300)]
        await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert sum(isinstance(o, asyncio.CancelledError) for o in outcomes) >= 280
        assert ses.pending == 0
        await eventually(lambda: endpoint.stats().in_flight == 0)
        assert endpoint.stats().connections_current <= 4
        current = asyncio.current_task()
        # The endpoint's HTTP server (aiohttp) keeps one task per open connection; the
        # transport must leave none of its own.
        others = {t for t in asyncio.all_tasks() if t is not current}
        assert len(others) <= endpoint.stats().connections_current
        # Full rate afterwards, once the last second's sends have left the window.
        await asyncio.sleep(1.05)
        endpoint.reset()
        start = time.monotonic()
        await asyncio.gather(*(ses.send_mail(message(1000 + i)) for i in range(20)))
        took = time.monotonic() - start
    stats = endpoint.stats()
    assert stats.messages_accepted == 20
    assert stats.max_starts_in_window(1.0) <= 20
    # 20 at 40/s: about half a second (two go at once from the limiter's small bucket),
    # plus the last one's 50 ms answer. Leaked capacity would make it slower.
    assert took >= 0.4  # (no upper bound: wall-clock on a shared machine)


async def test_close_with_500_queued_delivers_all_and_nothing_after() -> None:
    async with SESEndpoint(latency=0.002) as endpoint:
        ses = transport(endpoint, api="v2", max_connections=20, limits=Limits(drain_timeout=30))
        await ses.__aenter__()
        tasks = [asyncio.ensure_future(ses.send_mail(message(i))) for i in range(500)]
        await asyncio.sleep(0)
        await ses.aclose()
        closed_at = time.monotonic()
        results = await asyncio.gather(*tasks)
        assert all(isinstance(r, SendResult) for r in results)
        await asyncio.sleep(0.2)
        stats = endpoint.stats()
    assert stored_counts(endpoint) == {header_id(i): 1 for i in range(500)}
    assert stats.requests[SEND_ACTION["v2"]] == 500
    assert max(stats.send_arrivals) <= closed_at


async def test_close_with_a_short_drain_reports_the_rest_and_sends_nothing_after() -> None:
    async with SESEndpoint(latency=0.05) as endpoint:
        ses = transport(endpoint, api="v1", max_connections=5, limits=Limits(drain_timeout=0.3))
        await ses.__aenter__()
        tasks = [asyncio.ensure_future(ses.send_mail(message(i))) for i in range(500)]
        await asyncio.sleep(0)
        with pytest.raises(UndeliveredError) as info:
            await ses.aclose()
        closed_at = time.monotonic()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        requests_at_close = endpoint.stats().requests[SEND_ACTION["v1"]]
        await asyncio.sleep(0.3)
        await eventually(lambda: endpoint.stats().in_flight == 0)
        stats = endpoint.stats()
    assert stats.requests[SEND_ACTION["v1"]] == requests_at_close
    # The endpoint timestamps a request when its handler runs, in the same event loop: a
    # request written before aclose() returned may be read a few ms later on a busy box.
    # The count above is the exact check (nothing arrives after the drain).
    assert max(stats.send_arrivals) <= closed_at + 0.05
    counts = stored_counts(endpoint)
    reported: dict[str | None, BaseException] = dict(info.value.failures)
    kinds: collections.Counter[str] = collections.Counter()
    for i, outcome in enumerate(outcomes):
        copies = counts.get(header_id(i), 0)
        if isinstance(outcome, SendResult):
            assert copies == 1
            kinds["delivered"] += 1
        elif isinstance(outcome, SendAbortedError):
            assert copies == 0
            assert reported[f"<{header_id(i)}>"] is outcome
            kinds["aborted"] += 1
        else:
            assert isinstance(outcome, DeliveryUnknownError), outcome
            assert copies in (0, 1)
            assert reported[f"<{header_id(i)}>"] is outcome
            kinds["unknown"] += 1
    # How many finish within the 0.3 s drain depends on the machine's load (~30 when idle;
    # 1 seen with two other test runs on the two cores): at least one shows the drain sent.
    assert kinds["delivered"] >= 1
    assert kinds["aborted"] > 400
    assert 0 < kinds["unknown"] <= 5
    assert len(reported) == kinds["aborted"] + kinds["unknown"]


def test_worst_window_helper_agrees_with_the_endpoint() -> None:
    # The two window measures used in these tests must agree on a tricky case.
    times = [0.0, 0.5, 0.999, 1.0, 1.5]
    from asyncmailer.testing import max_events_in_window

    assert worst_window(times) == max_events_in_window(times) == 3


# Keep the helpers' types honest for mypy users reading this file.
_: Callable[..., Awaitable[CampaignReport]] = run_campaign
