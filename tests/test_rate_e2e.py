"""End-to-end rate precision: SESTransport → real aiobotocore HTTP → the local endpoint.

Real time, so marked slow. The endpoint and the sender each run in a process of their own
(as SES and a service would), and arrivals are timed at the endpoint, so what is measured
is what a server sees. The sender is ``tests/rate_client.py``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from asyncmailer.testing import RemoteEndpoint

pytestmark = [pytest.mark.slow, pytest.mark.timing]

ROOT = Path(__file__).resolve().parents[1]


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
    # "cold": straight from __aenter__, 40 callers at once, connections opened on demand;
    # "warm": the pool's connections opened first, then the limiter's window left to empty.
    sender = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.rate_client",
        remote.url,
        str(rate),
        str(seconds),
        pool,
        cwd=ROOT,
    )
    try:
        assert await asyncio.wait_for(sender.wait(), seconds + 60) == 0
    finally:
        if sender.returncode is None:
            sender.kill()
            await sender.wait()
    stats = await asyncio.to_thread(remote.stats)
    arrivals = sorted(stats.send_arrivals)
    first = arrivals[0]
    # No window holds more than R at the server. The limiter counts each unit from the
    # moment its request was handed to the HTTP layer (before-send), keeps R per 1 s + 2 ms, and
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
