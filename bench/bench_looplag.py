"""Event-loop lag while SESTransport sends 2,000 messages flat out.

A ticker task sleeps ``asyncio.sleep(0.001)`` in a loop and records how late each wake-up
is (the overshoot over 1 ms): that is how long any other coroutine of the application
would wait for the loop while asyncmailer composes, signs and sends. The endpoint
(``python -m asyncmailer.testing``) runs in its own process with no latency, so the client
is as busy as it can be. Sends go through ``send_many(..., concurrency=N)`` with
``max_connections=N``, v1 and v2; the ``gather`` rows start all 2,000 ``send_mail()``
calls at once instead (every task composes its message in its first step).

Target: p99 lag < 5 ms. Run::

    python bench/bench_looplag.py                 # 2,000 messages per configuration
    python bench/bench_looplag.py --quick         # CI smoke test (500 messages)
    python bench/bench_looplag.py --write-docs    # also rewrite its section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import _common
from _common import CREDENTIALS, REGION, Ticker, percentile

SECTION = "Event-loop lag"
TARGET_P99 = 0.005


async def _run(url: str, api: str, concurrency: int, count: int, mode: str) -> dict[str, Any]:
    from asyncmailer.transports import SESTransport  # noqa: PLC0415

    message = _common.message()
    async with SESTransport(
        endpoint_url=url,
        region_name=REGION,
        api=api,  # type: ignore[arg-type]
        max_connections=concurrency,
        **CREDENTIALS,
    ) as transport:
        ticker = Ticker(0.001)
        task = asyncio.create_task(ticker.run())
        await asyncio.sleep(0.05)
        start = time.perf_counter()
        errors = 0
        if mode == "send_many":
            async for outcome in transport.send_many(
                (message for _ in range(count)), concurrency=concurrency
            ):
                errors += isinstance(outcome, Exception)
        else:
            results = await asyncio.gather(
                *(transport.send_mail(message) for _ in range(count)), return_exceptions=True
            )
            errors = sum(isinstance(r, BaseException) for r in results)
        elapsed = time.perf_counter() - start
        ticker.stop()
        await task
    lags = ticker.lags
    return {
        "api": api,
        "concurrency": concurrency,
        "mode": mode,
        "sent": count - errors,
        "errors": errors,
        "rate": count / elapsed,
        "ticks": len(lags),
        "p50": percentile(lags, 50),
        "p99": percentile(lags, 99),
        "max": max(lags) if lags else float("nan"),
    }


def main() -> None:
    """Parse the command line, measure, print (and optionally write) the results."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="CI smoke run (500 messages)")
    parser.add_argument("--count", type=int, help="messages per configuration (default 2000)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[10, 50])
    parser.add_argument(
        "--write-docs", action="store_true", help=f"rewrite '## {SECTION}' in docs/benchmarks.md"
    )
    args = parser.parse_args()
    count = args.count or (500 if args.quick else 2000)
    header = _common.machine()
    print(header, file=sys.stderr)
    configs = [("v1", n, "send_many") for n in args.concurrency]
    configs += [("v2", n, "send_many") for n in args.concurrency]
    configs += [("v1", max(args.concurrency), "gather")]
    rows = []
    worst_p99 = 0.0
    with _common.endpoint() as ep:
        for api, n, mode in configs:
            ep.remote.reset()
            r = asyncio.run(_run(ep.url, api, n, count, mode))
            if mode == "send_many":
                worst_p99 = max(worst_p99, r["p99"])
            how = (
                f"`send_many(concurrency={n})`"
                if mode == "send_many"
                else f"`gather()` of {count:,} `send_mail()`"
            )
            rows.append(
                f"| {api} | {n} | {how} | {r['rate']:,.0f} | {r['p50'] * 1000:.2f} | "
                f"{r['p99'] * 1000:.2f} | {r['max'] * 1000:.1f} |"
                + (f" {r['errors']} errors |" if r["errors"] else " |")
            )
            print(
                f"{api} N={n:<3} {mode:<9} {r['rate']:6.0f} msgs/s  lag p50 "
                f"{r['p50'] * 1000:5.2f} ms  p99 {r['p99'] * 1000:5.2f} ms  "
                f"max {r['max'] * 1000:6.1f} ms  ({r['ticks']} ticks)",
                file=sys.stderr,
                flush=True,
            )
    table = "\n".join(
        [
            "| API | max_connections | sending with | msgs/s | lag p50 ms | lag p99 ms | "
            "lag max ms | |",
            "|---|---:|---|---:|---:|---:|---:|---|",
            *rows,
        ]
    )
    verdict = (
        f"p99 lag with `send_many` is at most {worst_p99 * 1000:.2f} ms: "
        + ("within" if worst_p99 < TARGET_P99 else "**over**")
        + f" the {TARGET_P99 * 1000:.0f} ms target."
    )
    print(table)
    print(verdict)
    if args.write_docs:
        body = f"""\
Measured with `{_common.command_line()}` on {header}. {count:,} messages
per row, composed and sent through `SESTransport` (no rate limit) to the local SES endpoint
(own process, no latency, so the client is as busy as it can be). A ticker task measures how
late `asyncio.sleep(0.001)` wakes up; that overshoot is how long any other coroutine of the
application waits for the event loop.

{table}

{verdict} The `gather()` row starts every send at once: each task composes its message in
its first step, so thousands of compositions queue up in the loop's ready queue ahead of
everything else. Use `send_many` (bounded concurrency, lazy input) for bulk sends.
"""
        _common.write_section(SECTION, body)
        print(f"wrote '## {SECTION}' in {_common.DOCS}", file=sys.stderr)


if __name__ == "__main__":
    main()
