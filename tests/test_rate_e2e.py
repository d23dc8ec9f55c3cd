"""End-to-end rate precision at the endpoint, with every sender in a process of its own.

One run of each setup of ``tests/rate_campaign.py`` (``nox -s timing``): (a) the client
SESTransport creates, (b) a cold aiobotocore client passed in, (c) 4 processes sharing
``RedisRateLimiter`` that start at the same instant, (d) the same 4 started one by one.
Real time and real processes: marked ``timing`` (deselected by default) and ``slow``.
``nox -s timing_campaign`` runs the 20-run campaign quoted in ``docs/rate-limiting.md``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from asyncmailer.testing import RemoteEndpoint
from tests.rate_campaign import endpoint_process, redis_process, run_once
from tests.redis_helpers import require_redis_server

pytestmark = [pytest.mark.slow, pytest.mark.timing]


@pytest.fixture(scope="module")
def remote() -> Iterator[RemoteEndpoint]:
    with endpoint_process() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    require_redis_server()
    with redis_process() as url:
        yield url


@pytest.mark.parametrize("setup", ["a", "b", "c", "d"])
@pytest.mark.parametrize("rate", [14, 200])
def test_sending_rate_holds_at_the_endpoint(
    remote: RemoteEndpoint, redis_url: str, setup: str, rate: int
) -> None:
    result = run_once(remote, setup, rate, busy=False, seconds=6.0, redis=redis_url, stagger=1.5)
    assert not result.errors, result
    assert result.accepted == result.sent, result
    # No sliding one-second window at the endpoint holds more than R send requests...
    assert result.worst <= rate, result
    # ...and the rate is kept up: R / (1 + margin) at best, 0.98 R required.
    assert result.sustained >= 0.98 * rate, result
