"""Server CPU per request of the local SES endpoint, driven by a real aiobotocore client.

The endpoint runs in its own process (``python -m asyncmailer.testing``); its CPU time is
read from /proc before and after a run of N sends, so the number is the server's alone.
Linux only. Example::

    python bench/bench_endpoint.py --api v2 -n 3000 --concurrency 50 --size 2000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def make_message(size: int) -> bytes:
    """A raw message of about ``size`` octets."""
    head = (
        b"From: Shop <shop@example.com>\r\nTo: ada@example.org\r\nSubject: Hello\r\n"
        b"Message-ID: <bench@example.com>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    line = b"The quick brown fox jumps over the lazy dog 0123456789 +/=?&%\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


async def run(
    url: str, api: str, n: int, concurrency: int, raw: bytes, pid: int
) -> tuple[float, float, float]:
    """Send ``n`` messages with ``concurrency`` in flight: (wall, server CPU, client CPU)."""
    session = get_session()
    config = AioConfig(
        retries={"mode": "standard", "total_max_attempts": 1},
        max_pool_connections=concurrency,
    )
    service = "sesv2" if api == "v2" else "ses"
    async with session.create_client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    ) as client:

        async def send() -> None:
            if api == "v2":
                await client.send_email(
                    Content={"Raw": {"Data": raw}},
                    Destination={"ToAddresses": ["ada@example.org"]},
                )
            else:
                await client.send_raw_email(RawMessage={"Data": raw})

        async def worker(counter: range) -> None:
            for _ in counter:
                await send()

        # Warm up: open the pool's connections and run every code path once.
        await asyncio.gather(*(send() for _ in range(concurrency)))
        server_before = cpu_seconds(pid)
        client_before = time.process_time()
        start = time.perf_counter()
        share = n // concurrency
        await asyncio.gather(*(worker(range(share)) for _ in range(concurrency)))
        wall = time.perf_counter() - start
        return wall, cpu_seconds(pid) - server_before, time.process_time() - client_before


def main() -> None:
    """Run the benchmark and print one line per API."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--api", choices=["v1", "v2", "both"], default="both")
    parser.add_argument("-n", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--size", type=int, default=2000, help="raw message octets")
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-m", "asyncmailer.testing", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        raw = make_message(args.size)
        for api in ["v1", "v2"] if args.api == "both" else [args.api]:
            wall, server_cpu, client_cpu = asyncio.run(
                run(url, api, args.n, args.concurrency, raw, server.pid)
            )
            measured = args.n // args.concurrency * args.concurrency
            print(
                f"{api}: {measured} sends of {len(raw)} B in {wall:.2f} s "
                f"({measured / wall:.0f}/s); server CPU {server_cpu / measured * 1e6:.0f} µs/req; "
                f"client CPU {client_cpu / measured * 1e6:.0f} µs/req"
            )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
