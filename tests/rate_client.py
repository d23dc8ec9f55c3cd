"""One sender process of the rate-precision runs (``tests/rate_campaign.py``).

``python -m tests.rate_client CONFIG_JSON`` waits until ``start_at`` (``time.time()``),
opens its transport *cold* at that moment, and sends single-recipient messages flat out
(40 callers, 20 connections, each message composed) until ``end_at``. Then it prints one
JSON line: messages sent, stale grants, errors, CPU seconds.

Setups (``setup`` in the config):

- ``a``: the client :class:`~asyncmailer.SESTransport` creates, with a local limiter;
- ``b``: a cold aiobotocore client created by the user and passed in, local limiter;
- ``c``/``d``: the transport's client with a :class:`~asyncmailer.limits.RedisRateLimiter`
  shared by every sender (the campaign starts the processes together, or one by one).

A process of its own, as a service would be: its event loop is not stalled by collections
over a test runner's heap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from asyncmailer import Limits, SESTransport
from asyncmailer.errors import MailError


async def _transport(config: dict[str, Any], stack: contextlib.AsyncExitStack) -> SESTransport:
    setup = config["setup"]
    common: dict[str, Any] = {"max_connections": 20}
    if setup in ("c", "d"):
        from asyncmailer.limits import RedisRateLimiter

        common["limits"] = Limits(
            rate_limiter=RedisRateLimiter(config["redis"], key=config["key"], rate=config["rate"])
        )
    else:
        common["sending_rate"] = config["rate"]
    if setup == "b":
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        client = await stack.enter_async_context(
            get_session().create_client(
                "sesv2",
                endpoint_url=config["url"],
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                config=AioConfig(
                    max_pool_connections=20,
                    retries={"mode": "standard", "total_max_attempts": 1},
                ),
            )
        )
        return SESTransport(client, **common)
    return SESTransport(
        endpoint_url=config["url"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        **common,
    )


async def main(config: dict[str, Any]) -> dict[str, Any]:
    """Send flat out between ``start_at`` and ``end_at``; return what happened."""
    await asyncio.sleep(max(0.0, config["start_at"] - time.time()))
    cpu = time.process_time()
    sent = 0
    errors: dict[str, int] = {}
    async with contextlib.AsyncExitStack() as stack:
        ses = await _transport(config, stack)
        await stack.enter_async_context(ses)

        async def sender(worker: int) -> None:
            nonlocal sent
            n = 0
            while time.time() < config["end_at"]:
                try:
                    await ses.send_mail(
                        from_="shop@example.com",
                        to=f"p{config['index']}w{worker}-{n}@example.org",
                        subject="Rate",
                        text="Hello",
                    )
                    sent += 1
                except MailError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                n += 1

        await asyncio.gather(*(sender(i) for i in range(40)))
        stale = ses.stale_grants
    return {"sent": sent, "stale": stale, "errors": errors, "cpu": time.process_time() - cpu}


if __name__ == "__main__":
    result = asyncio.run(main(json.loads(sys.argv[1])))
    sys.stdout.write(json.dumps(result) + "\n")
