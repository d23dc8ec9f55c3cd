"""End-to-end rate precision: SESTransport → real aiobotocore HTTP → the local endpoint.

Real time, so marked slow; the arrivals are timed at the endpoint, which runs in its own
process (as SES would), so what is measured is what a server sees.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import pytest

from asyncmailer import SESTransport
from asyncmailer.testing import RemoteEndpoint

pytestmark = [pytest.mark.slow, pytest.mark.timing]


@pytest.fixture(scope="module")
def endpoint_process() -> Iterator[RemoteEndpoint]:
    process = subprocess.Popen(
        [sys.executable, "-m", "asyncmailer.testing", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://"), url
        yield RemoteEndpoint(url)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.parametrize("pool", ["cold", "warm"])
@pytest.mark.parametrize(("rate", "seconds"), [(14, 11.0), (200, 11.0)])
async def test_sending_rate_holds_at_the_server(
    endpoint_process: RemoteEndpoint, rate: int, seconds: float, pool: str
) -> None:
    remote = endpoint_process
    loop = asyncio.get_running_loop()
    async with SESTransport(endpoint_url=remote.url, sending_rate=rate, max_connections=20) as ses:
        if pool == "warm":
            # Open the pool's connections first, then let the limiter's window empty.
            await asyncio.gather(
                *(
                    ses.send_mail(from_="shop@example.com", to="warm@example.org", text="x")
                    for _ in range(20)
                )
            )
            await asyncio.sleep(1.1)
        # "cold": straight from __aenter__, 40 callers at once, connections opened on demand.
        await asyncio.to_thread(remote.reset)
        end = loop.time() + seconds

        async def sender(worker: int) -> None:
            n = 0
            while loop.time() < end:
                await ses.send_mail(
                    from_="shop@example.com", to=f"w{worker}-{n}@example.org", text="x"
                )
                n += 1

        await asyncio.gather(*(sender(i) for i in range(40)))
    stats = await asyncio.to_thread(remote.stats)
    arrivals = sorted(stats.send_arrivals)
    first = arrivals[0]
    # No window holds more than R at the server. The limiter counts each unit from the
    # moment its request was handed to aiohttp (before-send), keeps R per 1 s + 2 ms, and
    # the transport's pacer writes a granted request before any more composing runs.
    assert stats.max_starts_in_window(1.0) <= rate, _crowded_window(arrivals, rate)
    # Sustained over a 10-second span after the first half second: requests per second
    # between the first and the last arrival of the span (a count of arrivals in a fixed
    # 10 s box would be off by one depending on where the box falls).
    span = [t for t in arrivals if first + 0.5 <= t < first + 10.5]
    sustained = (len(span) - 1) / (span[-1] - span[0])
    assert sustained >= 0.995 * rate, (sustained, rate)


def _crowded_window(arrivals: list[float], rate: int) -> str:
    """Where R + 1 arrivals fell within one second: offsets and gaps, to tell who was late."""
    for i in range(len(arrivals) - rate):
        if arrivals[i + rate] - arrivals[i] < 1.0:
            t0 = arrivals[0]
            around = arrivals[max(0, i - 2) : i + 3] + arrivals[i + rate - 2 : i + rate + 3]
            return (
                f"arrivals {i} and {i + rate} are {arrivals[i + rate] - arrivals[i]:.4f} s apart; "
                f"offsets from the first (s): {[round(t - t0, 4) for t in around]}"
            )
    return "no crowded window"
