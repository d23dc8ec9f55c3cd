"""The sending side of ``test_rate_e2e``, run as its own process.

``python -m tests.rate_client URL RATE SECONDS POOL`` sends single-recipient messages
flat out through :class:`~asyncmailer.SESTransport` (40 callers, 20 connections) for
SECONDS, after resetting the endpoint's counters. POOL is ``cold`` (straight from
``__aenter__``) or ``warm`` (20 sends first, then a quiet window).

A process of its own, as a service would be: the sender's event loop is not stalled by
collections over the test runner's heap (every imported test module, moto, hypothesis),
which take 100-200 ms there and are lost sending time for any limiter that does not
burst.
"""

from __future__ import annotations

import asyncio
import sys

from asyncmailer import SESTransport
from asyncmailer.testing import RemoteEndpoint


async def main(url: str, rate: int, seconds: float, pool: str) -> None:
    """Warm the pool if asked, reset the endpoint, then send flat out for ``seconds``."""
    remote = RemoteEndpoint(url)
    loop = asyncio.get_running_loop()
    async with SESTransport(endpoint_url=url, sending_rate=rate, max_connections=20) as ses:
        if pool == "warm":
            # Open the pool's connections first, then let the limiter's window empty.
            await asyncio.gather(
                *(
                    ses.send_mail(from_="shop@example.com", to="warm@example.org", text="x")
                    for _ in range(20)
                )
            )
            await asyncio.sleep(1.1)
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


if __name__ == "__main__":
    url, rate, seconds, pool = sys.argv[1:5]
    asyncio.run(main(url, int(rate), float(seconds), pool))
