"""SESTransport on uvloop, the event loop uvicorn picks when it is installed (FastAPI services)."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest

from asyncmailer import SESTransport
from asyncmailer.testing import SESEndpoint

uvloop = pytest.importorskip("uvloop")

SENDER = "shop@example.com"


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_rate_connections_and_cancellation_hold_on_uvloop(api: Literal["v1", "v2"]) -> None:
    async def main() -> tuple[int, int, int, int]:
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        async with SESEndpoint(latency=0.2) as endpoint:
            async with SESTransport(
                endpoint_url=endpoint.url, api=api, sending_rate=40, max_connections=3
            ) as ses:
                tasks = [
                    asyncio.create_task(
                        ses.send_mail(from_=SENDER, to=f"r{n}@example.org", text=f"message {n}")
                    )
                    for n in range(30)
                ]
                await asyncio.sleep(0.2)
                # Cancel the last ten while they wait for the limiter: their capacity returns.
                for task in tasks[20:]:
                    task.cancel()
                results = await asyncio.gather(*tasks, return_exceptions=True)
                sent = sum(1 for r in results if not isinstance(r, BaseException))
                cancelled = sum(1 for r in results if isinstance(r, asyncio.CancelledError))
                # The cancelled callers' places were given back: one more send waits at most
                # one 25 ms slot, not behind ten phantom ones (250 ms).
                late = await ses.send_mail(from_=SENDER, to="late@example.org", text="after")
            stats = endpoint.stats()
            assert late.rate_wait < 0.1, late.rate_wait
            return sent, cancelled, stats.max_starts_in_window(1.0), stats.max_in_flight

    sent, cancelled, worst_window, max_in_flight = uvloop.run(main())
    assert sent == 20 and cancelled == 10
    # 40/s with 0.2 s answers would keep 8 requests in flight: the 3 connections bind.
    assert worst_window <= 40
    assert max_in_flight == 3  # reached under load, never exceeded
