"""Rate precision end to end: what the SES endpoint sees when a client sends flat out at R/s.

For R in {14, 200} (the SES sandbox rate and a typical production rate), each contender
gets ``R × duration`` messages at once and sends them as fast as its limiter lets it, with
10 requests in flight, to the local SES endpoint (its own process, 20 ms latency). The
endpoint timestamps every request when it has read it; from those arrivals we report the
worst 1-second window (SES throttles when it holds more than R) and the sustained rate.

Contenders:

- ``asyncmailer``: ``SESTransport(sending_rate=R, max_connections=10)``, ``send_many``;
- ``asyncmailer-nopacer``: the same with ``cooperative=False`` (no pacer: composing may run
  between a grant and the write of its request);
- ``nodemailer6``: Nodemailer 6's SES transport, ``sendingRate: R, maxConnections: 10``;
- ``aiolimiter (R, 1)``: raw aiobotocore behind ``AsyncLimiter(R, 1)`` (the obvious way);
- ``aiolimiter (1, 1/R)``: raw aiobotocore behind ``AsyncLimiter(1, 1/R)`` (no burst).

Writes the rate-over-time plot to docs/img/rate-over-time.png. Run::

    python bench/bench_rate.py                 # ~10 s per contender and rate
    python bench/bench_rate.py --quick         # CI smoke test (3 s each)
    python bench/bench_rate.py --write-docs    # also rewrite its section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common
from _common import BENCH, CREDENTIALS, REGION, ROOT

from asyncmailer.testing import EndpointStats, max_events_in_window

SECTION = "Rate precision"
PLOT = ROOT / "docs" / "img" / "rate-over-time.png"
IN_FLIGHT = 10
LATENCY = 0.02

LABELS = {
    "asyncmailer": "asyncmailer SESTransport(sending_rate={R})",
    "asyncmailer-nopacer": "asyncmailer, cooperative=False",
    "nodemailer6": "Nodemailer 6 sendingRate: {R}",
    "aiolimiter-burst": "aiolimiter AsyncLimiter({R}, 1)",
    "aiolimiter-spaced": "aiolimiter AsyncLimiter(1, 1/{R})",
}


async def _asyncmailer(url: str, rate: float, count: int, cooperative: bool) -> None:
    from asyncmailer import Limits
    from asyncmailer.transports import SESTransport

    message = _common.message()
    async with SESTransport(
        endpoint_url=url,
        region_name=REGION,
        max_connections=IN_FLIGHT,
        sending_rate=rate,
        limits=Limits(cooperative=cooperative),
        **CREDENTIALS,
    ) as transport:
        async for outcome in transport.send_many(
            (message for _ in range(count)), concurrency=2 * IN_FLIGHT
        ):
            if isinstance(outcome, Exception):
                raise outcome


async def _aiolimiter(url: str, rate: float, count: int, burst: bool) -> None:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session
    from aiolimiter import AsyncLimiter

    raw = _common.prebuilt_raw()
    limiter = AsyncLimiter(rate, 1) if burst else AsyncLimiter(1, 1 / rate)
    slots = asyncio.Semaphore(IN_FLIGHT)
    config = AioConfig(
        retries={"mode": "standard", "total_max_attempts": 1}, max_pool_connections=IN_FLIGHT
    )
    async with get_session().create_client(
        "ses", endpoint_url=url, region_name=REGION, config=config, **CREDENTIALS
    ) as client:

        async def send() -> None:
            # Slot first, then the limiter: a granted unit becomes a request at once.
            async with slots, limiter:
                await client.send_raw_email(
                    Source="shop@example.com",
                    Destinations=["ada@example.org"],
                    RawMessage={"Data": raw},
                )

        await asyncio.gather(*(send() for _ in range(count)))


def _node(url: str, rate: float, count: int, message_file: Path) -> None:
    config = {
        "package": "nodemailer6",
        "url": url,
        "message": str(message_file),
        "concurrency": IN_FLIGHT,
        "mode": "count",
        "count": count,
        "sendingRate": rate,
    }
    result = _common.run_json(
        ["node", str(BENCH / "node" / "send_nodemailer.js"), json.dumps(config)]
    )
    if result.get("errors"):
        raise RuntimeError(f"nodemailer6: {result['errors']} send errors")


def measure(
    contender: str, ep: _common.EndpointProcess, rate: float, count: int, message_file: Path
) -> EndpointStats:
    """Run one contender against a freshly reset endpoint; return the endpoint's stats."""
    ep.remote.reset()
    runners: dict[str, Callable[[], Any]] = {
        "asyncmailer": lambda: asyncio.run(_asyncmailer(ep.url, rate, count, True)),
        "asyncmailer-nopacer": lambda: asyncio.run(_asyncmailer(ep.url, rate, count, False)),
        "aiolimiter-burst": lambda: asyncio.run(_aiolimiter(ep.url, rate, count, True)),
        "aiolimiter-spaced": lambda: asyncio.run(_aiolimiter(ep.url, rate, count, False)),
        "nodemailer6": lambda: _node(ep.url, rate, count, message_file),
    }
    runners[contender]()
    return ep.remote.stats()


def rate_series(times: list[float], step: float = 0.01) -> tuple[list[float], list[int]]:
    """Arrivals in the trailing 1-second window ``(t - 1, t]``, sampled every ``step`` s."""
    if not times:
        return [], []
    ordered = sorted(times)
    start = ordered[0]
    xs: list[float] = []
    ys: list[int] = []
    left = right = 0
    t = start
    end = ordered[-1] + 1.0
    while t <= end:
        while right < len(ordered) and ordered[right] <= t:
            right += 1
        while left < right and ordered[left] <= t - 1.0:
            left += 1
        xs.append(t - start)
        ys.append(right - left)
        t += step
    return xs, ys


def plot(
    results: dict[tuple[str, float], list[float]],
    rates: list[float],
    path: Path,
    duration: float,
) -> None:
    """Requests per trailing second over time, one panel per rate (the first ~duration s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {
        "asyncmailer": {"color": "#1f77b4", "linewidth": 2.2, "zorder": 5},
        "nodemailer6": {"color": "#2ca02c", "linewidth": 1.4, "linestyle": "--", "zorder": 4},
        "aiolimiter-burst": {"color": "#d62728", "linewidth": 1.4, "zorder": 3},
        "aiolimiter-spaced": {"color": "#ff7f0e", "linewidth": 1.4, "linestyle": ":", "zorder": 3},
    }
    fig, axes = plt.subplots(1, len(rates), figsize=(6.2 * len(rates), 4.2), squeeze=False)
    for ax, rate in zip(axes[0], rates, strict=True):
        for contender, style in styles.items():
            times = results.get((contender, rate))
            if not times:
                continue
            xs, ys = rate_series(times)
            label = LABELS[contender].format(R=f"{rate:g}")
            end = times[-1] - times[0]
            if end > duration * 1.25:
                label += f" (continues until {end:.0f} s)"
            ax.plot(xs, ys, label=label, **style)
        ax.axhline(
            rate, color="black", linewidth=0.8, linestyle="-.", label=f"SES limit: {rate:g}/s"
        )
        ax.set_title(f"sending_rate = {rate:g} messages/s, flat out")
        ax.set_xlabel("seconds since the first request")
        ax.set_ylabel("requests in the trailing 1 s window")
        ax.set_ylim(0, rate * 2.15)
        ax.set_xlim(0, duration * 1.25)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    fig.suptitle("Requests per second as seen by the SES endpoint", fontsize=12)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    """Parse the command line, measure, print (and optionally write) the results."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="CI smoke run (3 s per run)")
    parser.add_argument("--duration", type=float, help="seconds of sending per run (default 10)")
    parser.add_argument("--rates", type=float, nargs="+", default=[14.0, 200.0])
    parser.add_argument(
        "--plot", type=Path, help=f"PNG path (default {PLOT}; with --quick a temporary file)"
    )
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--replot", type=Path, metavar="JSON", help="only redraw the plot from a --json file"
    )
    parser.add_argument("--json", type=Path, help="also write the arrival times here")
    parser.add_argument(
        "--write-docs", action="store_true", help=f"rewrite '## {SECTION}' in docs/benchmarks.md"
    )
    args = parser.parse_args()
    duration = args.duration or (3.0 if args.quick else 10.0)
    if args.replot:
        saved = json.loads(args.replot.read_text())
        arrivals_saved = {
            (key.split("|")[0], float(key.split("|")[1])): times for key, times in saved.items()
        }
        plot(arrivals_saved, args.rates, args.plot or PLOT, duration)
        return
    contenders = [
        "asyncmailer",
        "asyncmailer-nopacer",
        "nodemailer6",
        "aiolimiter-burst",
        "aiolimiter-spaced",
    ]
    if "nodemailer6" not in _common.node_packages():
        contenders.remove("nodemailer6")
    header = _common.machine()
    print(header, file=sys.stderr)

    arrivals: dict[tuple[str, float], list[float]] = {}
    rows: list[str] = []
    total_errors = 0
    sustained_by: dict[tuple[str, float], float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-rate-") as tmp,
        _common.endpoint("--latency", str(LATENCY)) as ep,
    ):
        message_file = Path(tmp) / "message.json"
        message_file.write_text(_common.message_json())
        for rate in args.rates:
            count = round(rate * duration)
            for contender in contenders:
                stats = measure(contender, ep, rate, count, message_file)
                times = sorted(stats.send_arrivals)
                arrivals[(contender, rate)] = times
                worst = max_events_in_window(times, window=1.0)
                sustained = stats.sustained_rate(skip=1.0)
                sustained_by[(contender, rate)] = sustained
                span = times[-1] - times[0] if len(times) > 1 else 0.0
                errors = sum(stats.errors.values())
                total_errors += errors
                label = LABELS[contender].format(R="R")
                if span:
                    row = (
                        f"| {label} | {rate:g} | {len(times)} | {worst} | {worst / rate:.2f}× | "
                        f"{sustained:.1f} | {(len(times) - 1) / span:.1f} |"
                    )
                else:
                    row = f"| {label} | {rate:g} | {len(times)} | {worst} | | | |"
                rows.append(row)
                print(
                    f"R={rate:g} {contender:<18} worst 1 s window {worst:4d} "
                    f"sustained {sustained:6.1f}/s" + (f" ERRORS {errors}" if errors else ""),
                    file=sys.stderr,
                    flush=True,
                )
    table = "\n".join(
        [
            "| contender | R | requests | worst 1 s window | ÷ R | sustained/s "
            "(after the 1st s) | average/s (whole run) |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )
    print(table)
    if not args.no_plot:
        path = args.plot or (
            Path(tempfile.gettempdir()) / "rate-over-time.png" if args.quick else PLOT
        )
        plot(arrivals, args.rates, path, duration)
        print(f"wrote {path}", file=sys.stderr)
    if args.json:
        args.json.write_text(
            json.dumps({f"{c}|{r:g}": times for (c, r), times in arrivals.items()})
        )
    if args.write_docs:
        from asyncmailer.limits import LocalRateLimiter

        default_margin = LocalRateLimiter(1.0).margin
        body = f"""\
Measured with `{_common.command_line()}` on {header}.

Each contender is handed R × {duration:g} s messages at once and sends them flat out,
{IN_FLIGHT} requests in flight, to the local SES endpoint (own process,
{LATENCY * 1000:.0f} ms latency), which timestamps every request on arrival. "Worst 1 s
window" is the most arrivals in any window `[t, t + 1 s)`: SES throttles when it exceeds
R. "Sustained" is (requests − 1) / time between the first and last arrival, leaving out the
first second.

{table}

![Requests in the trailing one-second window over time, at 14/s and 200/s]\
(img/rate-over-time.png)

How to read it: `AsyncLimiter(R, 1)` starts with a full bucket, so about 2R − 1 requests
land in the first second; `AsyncLimiter(1, 1/R)` has no burst but loses every wake-up delay
and sustains less than R. asyncmailer's limiter keeps at most R units in any window of
1 s + `margin` ({default_margin * 1000:g} ms); a grant is valid for `margin` and is checked at
aiobotocore's `before-send` event, after signing (renewed in place, or asked for again, when
stale), and the client is warmed up before the first grant. The transport's pacer writes a
granted request before any more composing runs; the `cooperative=False` row turns the pacer
off.
Nodemailer 6
checks its limit when a message is queued and when a send completes, and releases one
queued message each time: once the limit has been hit, it is down to about one request in
flight, one per round trip (~40/s with this endpoint's 20 ms), whatever `maxConnections`
says. See [rate limiting explained](rate-limiting.md).
"""
        _common.write_section(SECTION, body)
        print(f"wrote '## {SECTION}' in {_common.DOCS}", file=sys.stderr)
    if total_errors:
        sys.exit(f"{total_errors} requests were answered with an error")


if __name__ == "__main__":
    main()
