"""boto3 + threads contender: prebuilt bytes, ``ThreadPoolExecutor(N)``, a pool of N.

The client has the options every raw contender gets (``_common.client_config``): a pool of
``max(10, N)``, one attempt (``retries`` standard, ``total_max_attempts=1``), no parameter
validation.

Run by ``bench_send.py`` as a worker process; alone::

    python bench/boto3_threads.py --url http://127.0.0.1:PORT --concurrency 10 --duration 3

Prints one JSON line ``{"sent", "wall", "cpu", "errors"}``; ``cpu`` is this process's
``time.process_time()`` over the measured phase (all threads).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import _common
import boto3
from botocore.config import Config


def run(url: str, concurrency: int, duration: float, warmup: float, api: str) -> dict[str, Any]:
    """Warm up, then send flat out with ``concurrency`` threads for ``duration`` seconds."""
    raw = _common.prebuilt_raw()
    client = boto3.client(
        "sesv2" if api == "v2" else "ses",
        endpoint_url=url,
        region_name=_common.REGION,
        config=Config(**_common.client_config(concurrency)),
        **_common.CREDENTIALS,
    )
    sender, recipient = "shop@example.com", "ada@example.org"

    def send() -> None:
        if api == "v2":
            client.send_email(
                FromEmailAddress=sender,
                Destination={"ToAddresses": [recipient]},
                Content={"Raw": {"Data": raw}},
            )
        else:
            client.send_raw_email(Source=sender, Destinations=[recipient], RawMessage={"Data": raw})

    errors = 0

    def loop(until: float) -> int:
        nonlocal errors
        count = 0
        while time.perf_counter() < until:
            try:
                send()
                count += 1
            except Exception as exc:
                errors += 1
                if errors == 1:
                    print(repr(exc), file=sys.stderr)
        return count

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(loop, [time.perf_counter() + warmup] * concurrency))
        errors = 0
        cpu0, t0 = time.process_time(), time.perf_counter()
        counts = list(pool.map(loop, [t0 + duration] * concurrency))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    client.close()
    return {"sent": sum(counts), "wall": wall, "cpu": cpu, "errors": errors}


def main() -> None:
    """Parse the command line, run, print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--api", choices=["v1", "v2"], default="v1")
    args = parser.parse_args()
    result = run(args.url, args.concurrency, args.duration, args.warmup, args.api)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
