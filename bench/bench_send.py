"""Send-path benchmark: asyncmailer's SESTransport against its peers, on a local SES endpoint.

Every contender sends the same transactional email (text + html, ~4.7 KB) to the local SES
endpoint (``python -m asyncmailer.testing``, its own process, so its CPU is not counted),
at 0 ms and 50 ms of injected latency, with 1, 10 and 50 requests in flight. Contenders:

- ``asyncmailer-v1`` / ``asyncmailer-v2``: ``SESTransport(max_connections=N)``, composing
  every message (``send_mail(message)``), ``sending_rate=10000`` (a limit far above what is
  reached, so the limiter's cost is counted);
- ``asyncmailer-v2-aiohttp``: ``SESTransport(api="v2", lean_http=False)``: the client's
  requests go through aiobotocore's aiohttp session instead of asyncmailer's lean HTTP/1.1
  pool, to show what the pool buys;
- ``asyncmailer-v1-untuned``: v1 with the client as aiobotocore makes it (``tune_client``
  off, ``bench/ses_tuning.py``, and ``lean_http=False``), to show what all the tuning buys;
- ``aiobotocore-v1`` / ``aiobotocore-v2``: prebuilt bytes, a default client (only retries
  off: ``total_max_attempts=1``), N worker tasks;
- ``boto3-threads``: prebuilt bytes, ``ThreadPoolExecutor(N)``, ``max_pool_connections=N``;
- ``nodemailer10``: Nodemailer 10's SES transport (SESv2, ``{sesClient, SendEmailCommand}``),
  composing every message, N sends in flight;
- ``nodemailer6``: Nodemailer 6's SES transport (v1, ``{ses, aws}`` with
  ``@aws-sdk/client-ses``), ``maxConnections: N``, ``sendingRate: 10000``.

Each measurement is a fresh worker process: it warms up (connections, JIT), then sends flat
out for ``--duration`` seconds and reports messages sent, wall time and its own CPU time
(``time.process_time()``; Node: ``process.cpuUsage()``). Rounds are interleaved (every
round runs every setting and every contender, in a rotated order); tables show medians.

Setup (once): ``npm install --prefix bench``. Run::

    python bench/bench_send.py                  # full run (~15 min on 2 cores)
    python bench/bench_send.py --replay run.json --write-docs   # re-report a --json run
    python bench/bench_send.py --quick          # CI smoke test (< 2 min)
    python bench/bench_send.py --write-docs     # also rewrite its section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import _common
from _common import BENCH, CREDENTIALS, REGION, median

SECTION = "Sending throughput and CPU"
#: A rate limit far above any throughput reached: the limiter runs but never waits.
UNBINDING_RATE = 10_000


@dataclasses.dataclass(frozen=True)
class Contender:
    """One implementation under test."""

    key: str
    label: str
    kind: str  # "asyncio", "boto3" or "node"
    api: str = "v1"
    tuned: bool = True
    lean: bool = True


CONTENDERS = [
    Contender("asyncmailer-v1", "asyncmailer SESTransport v1 (composes)", "asyncio", "v1"),
    Contender("asyncmailer-v2", "asyncmailer SESTransport v2 (composes)", "asyncio", "v2"),
    Contender(
        "asyncmailer-v2-aiohttp",
        "asyncmailer v2, lean_http off (composes)",
        "asyncio",
        "v2",
        lean=False,
    ),
    Contender(
        "asyncmailer-v1-untuned",
        "asyncmailer v1, tune_client and lean_http off (composes)",
        "asyncio",
        "v1",
        tuned=False,
        lean=False,
    ),
    Contender("aiobotocore-v1", "aiobotocore v1, default client (prebuilt)", "asyncio", "v1"),
    Contender("aiobotocore-v2", "aiobotocore v2, default client (prebuilt)", "asyncio", "v2"),
    Contender("boto3-threads", "boto3 v1 + N threads (prebuilt)", "boto3", "v1"),
    Contender("nodemailer10", "Nodemailer 10 SES (v2, composes)", "node", "v2"),
    Contender("nodemailer6", "Nodemailer 6 SES (v1, composes)", "node", "v1"),
]
BY_KEY = {c.key: c for c in CONTENDERS}


# --------------------------------------------------------------------------- workers


async def _drive(
    send: Callable[[], Awaitable[object]], concurrency: int, duration: float, warmup: float
) -> dict[str, Any]:
    """N tasks send in a loop: ``warmup`` seconds unmeasured, then ``duration`` measured."""
    errors = 0

    async def loop(until: float) -> int:
        nonlocal errors
        count = 0
        while time.perf_counter() < until:
            try:
                await send()
                count += 1
            except Exception as exc:
                errors += 1
                if errors == 1:
                    print(repr(exc), file=sys.stderr)
        return count

    until = time.perf_counter() + warmup
    await asyncio.gather(*(loop(until) for _ in range(concurrency)))
    errors = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    counts = await asyncio.gather(*(loop(t0 + duration) for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"sent": sum(counts), "wall": wall, "cpu": cpu, "errors": errors}


async def _asyncmailer(
    url: str,
    api: str,
    tuned: bool,
    lean: bool,
    concurrency: int,
    duration: float,
    warmup: float,
) -> dict[str, Any]:
    import contextlib

    from ses_tuning import untuned

    from asyncmailer.transports import SESTransport

    message = _common.message()
    # untuned(): the client is created (in __aenter__) as botocore makes it.
    with contextlib.nullcontext() if tuned else untuned():
        transport = SESTransport(
            endpoint_url=url,
            region_name=REGION,
            api=api,  # type: ignore[arg-type]
            max_connections=concurrency,
            sending_rate=UNBINDING_RATE,
            lean_http=lean,
            **CREDENTIALS,
        )
        await transport.__aenter__()
    try:
        return await _drive(lambda: transport.send_mail(message), concurrency, duration, warmup)
    finally:
        await transport.aclose()


async def _aiobotocore(
    url: str, api: str, concurrency: int, duration: float, warmup: float
) -> dict[str, Any]:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    raw = _common.prebuilt_raw()
    sender, recipient = "shop@example.com", "ada@example.org"
    # The default client: only botocore's own retries are turned off.
    config = AioConfig(retries={"mode": "standard", "total_max_attempts": 1})
    async with get_session().create_client(
        "sesv2" if api == "v2" else "ses",
        endpoint_url=url,
        region_name=REGION,
        config=config,
        **CREDENTIALS,
    ) as client:
        if api == "v2":

            def send() -> Awaitable[object]:
                return client.send_email(  # type: ignore[no-any-return]
                    FromEmailAddress=sender,
                    Destination={"ToAddresses": [recipient]},
                    Content={"Raw": {"Data": raw}},
                )
        else:

            def send() -> Awaitable[object]:
                return client.send_raw_email(  # type: ignore[no-any-return]
                    Source=sender, Destinations=[recipient], RawMessage={"Data": raw}
                )

        return await _drive(send, concurrency, duration, warmup)


def worker_main(args: argparse.Namespace) -> None:
    """``--worker KEY``: run one contender in this process and print its JSON result."""
    contender = BY_KEY[args.worker]
    if contender.key.startswith("asyncmailer"):
        coro = _asyncmailer(
            args.url,
            contender.api,
            contender.tuned,
            contender.lean,
            args.concurrency,
            args.duration,
            args.warmup,
        )
    else:
        coro = _aiobotocore(args.url, contender.api, args.concurrency, args.duration, args.warmup)
    print(json.dumps(asyncio.run(coro)))


# --------------------------------------------------------------------------- driver


def _command(
    contender: Contender,
    url: str,
    concurrency: int,
    duration: float,
    warmup: float,
    message_file: Path,
) -> list[str]:
    common = [
        "--url",
        url,
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
    ]
    if contender.kind == "node":
        config = {
            "package": contender.key,
            "url": url,
            "message": str(message_file),
            "concurrency": concurrency,
            "mode": "duration",
            "duration": duration,
            "warmup": warmup,
            "sendingRate": UNBINDING_RATE,
        }
        return ["node", str(BENCH / "node" / "send_nodemailer.js"), json.dumps(config)]
    if contender.kind == "boto3":
        return [sys.executable, str(BENCH / "boto3_threads.py"), "--api", contender.api, *common]
    return [sys.executable, str(BENCH / "bench_send.py"), "--worker", contender.key, *common]


@dataclasses.dataclass
class Sample:
    """One measured run."""

    contender: str
    latency: float
    concurrency: int
    round: int
    sent: int
    wall: float
    cpu: float
    errors: int
    endpoint_cpu: float
    max_in_flight: int

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.sent / self.wall if self.wall else 0.0

    @property
    def cpu_per_message(self) -> float:
        """Client CPU seconds per message."""
        return self.cpu / self.sent if self.sent else float("nan")


def run_all(args: argparse.Namespace, contenders: list[Contender]) -> list[Sample]:
    """Every round runs every (latency, concurrency) setting and every contender."""
    samples: list[Sample] = []
    settings = [(lat, n) for lat in args.latency for n in args.concurrency]
    with tempfile.TemporaryDirectory(prefix="bench-send-") as tmp:
        message_file = Path(tmp) / "message.json"
        message_file.write_text(_common.message_json())
        endpoints = {lat: _common.EndpointProcess("--latency", str(lat)) for lat in args.latency}
        try:
            for round_no in range(args.rounds):
                for index, (lat, n) in enumerate(settings):
                    shift = (round_no + index) % len(contenders)
                    order = contenders[shift:] + contenders[:shift]
                    for contender in order:
                        ep = endpoints[lat]
                        ep.remote.reset()
                        ep_cpu0 = ep.cpu_seconds()
                        result = _common.run_json(
                            _command(contender, ep.url, n, args.duration, args.warmup, message_file)
                        )
                        ep_cpu = ep.cpu_seconds() - ep_cpu0
                        stats = ep.remote.stats()
                        sample = Sample(
                            contender=contender.key,
                            latency=lat,
                            concurrency=n,
                            round=round_no,
                            sent=int(result["sent"]),
                            wall=float(result["wall"]),
                            cpu=float(result["cpu"]),
                            errors=int(result.get("errors", 0)) + sum(stats.errors.values()),
                            endpoint_cpu=ep_cpu,
                            max_in_flight=stats.max_in_flight,
                        )
                        samples.append(sample)
                        print(
                            f"round {round_no + 1}/{args.rounds} latency {lat * 1000:.0f} ms "
                            f"N={n:<2} {contender.key:<22} {sample.rate:7.0f} msgs/s "
                            f"{sample.cpu_per_message * 1e6:6.0f} µs CPU/msg"
                            + (f"  ERRORS {sample.errors}" if sample.errors else ""),
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            for ep in endpoints.values():
                ep.close()
    return samples


def summarize(
    samples: list[Sample], contenders: list[Contender], args: argparse.Namespace
) -> tuple[str, dict[str, Any]]:
    """Markdown tables and ratios, plus the medians as a dict."""
    med: dict[tuple[str, float, int], tuple[float, float]] = {}
    for c in contenders:
        for lat in args.latency:
            for n in args.concurrency:
                runs = [
                    s for s in samples if (s.contender, s.latency, s.concurrency) == (c.key, lat, n)
                ]
                med[(c.key, lat, n)] = (
                    median([s.rate for s in runs]),
                    median([s.cpu_per_message for s in runs]),
                )
    out: list[str] = []
    for lat in args.latency:
        out.append(f"**Latency {lat * 1000:.0f} ms** (msgs/s and client CPU µs per message)\n")
        head = "| contender |" + "".join(
            f" N={n} msgs/s | N={n} µs/msg |" for n in args.concurrency
        )
        out.append(head)
        out.append("|---|" + "---:|---:|" * len(args.concurrency))
        for c in contenders:
            cells = "".join(
                f" {med[(c.key, lat, n)][0]:,.0f} | {med[(c.key, lat, n)][1] * 1e6:,.0f} |"
                for n in args.concurrency
            )
            out.append(f"| {c.label} |{cells}")
        out.append("")

    keys = {c.key for c in contenders}
    comparisons: list[tuple[str, str, str, str]] = []  # (label, ours, theirs, metric)
    for ours in (
        "asyncmailer-v1",
        "asyncmailer-v2",
        "asyncmailer-v2-aiohttp",
        "asyncmailer-v1-untuned",
    ):
        if ours not in keys:
            continue
        api = BY_KEY[ours].api
        pairs = [
            ("nodemailer10", "rate"),
            ("boto3-threads", "rate"),
            (f"aiobotocore-{api}", "cpu"),
        ]
        if ours == "asyncmailer-v1":
            pairs.append(("asyncmailer-v1-untuned", "cpu"))
        if ours == "asyncmailer-v2":
            pairs.append(("asyncmailer-v2-aiohttp", "cpu"))
        for theirs, metric in pairs:
            if theirs in keys:
                comparisons.append((f"{ours} vs {theirs}", ours, theirs, metric))
    if comparisons:
        settings = [(lat, n) for lat in args.latency for n in args.concurrency]
        out.append(
            "Ratios (msgs/s: ours ÷ theirs, > 1 means asyncmailer is faster; CPU: ours ÷ "
            "theirs, < 1 means asyncmailer uses less CPU per message):\n"
        )
        out.append(
            "| comparison | metric |"
            + "".join(f" {lat * 1000:.0f} ms N={n} |" for lat, n in settings)
        )
        out.append("|---|---|" + "---:|" * len(settings))
        for label, ours, theirs, metric in comparisons:
            index = 0 if metric == "rate" else 1
            cells = "".join(
                f" {med[(ours, lat, n)][index] / med[(theirs, lat, n)][index]:.2f}× |"
                for lat, n in settings
            )
            name = "msgs/s" if metric == "rate" else "CPU/msg"
            out.append(f"| {label} | {name} |{cells}")
    targets = _targets(med, keys, args)
    if targets:
        out.append("")
        out.append(targets)
    errors = sum(s.errors for s in samples)
    if errors:
        out.append(f"\n**{errors} send errors were counted during the run.**")
    table = "\n".join(out)
    data = {
        f"{key}|{lat}|{n}": {"msgs_per_s": rate, "cpu_us_per_msg": cpu * 1e6}
        for (key, lat, n), (rate, cpu) in med.items()
    }
    return table, data


#: (label, theirs, metric index, target, higher is better) of the issue's targets.
TARGETS = [
    ("msgs/s vs Nodemailer 10 (≥ 1.6×)", "nodemailer10", 0, 1.6, True),
    ("msgs/s vs boto3 + threads (≥ 2×)", "boto3-threads", 0, 2.0, True),
    ("CPU/msg vs aiobotocore, same API (≤ 1.0×)", "aiobotocore-{api}", 1, 1.0, False),
]


def _targets(
    med: dict[tuple[str, float, int], tuple[float, float]],
    keys: set[str],
    args: argparse.Namespace,
) -> str:
    """The issue's targets, over the settings where the client (not latency) is the limit."""
    # With latency and few requests in flight, every contender waits for the answers and
    # the ratios are ~1: only the CPU-bound settings compare implementations.
    settings = [
        (lat, n) for lat in args.latency for n in args.concurrency if lat == 0 or n >= 50
    ] or [(lat, n) for lat in args.latency for n in args.concurrency]
    candidates = (
        "asyncmailer-v1",
        "asyncmailer-v2",
        "asyncmailer-v2-aiohttp",
        "asyncmailer-v1-untuned",
    )
    ours = [k for k in candidates if k in keys]
    if not ours:
        return ""
    shown = ", ".join(f"{lat * 1000:.0f} ms N={n}" for lat, n in settings)
    lines = [
        "Targets: the range of each ratio over the settings where the client, not the "
        f"latency, is the limit ({shown}). A msgs/s target is judged only where some "
        "client could reach it: with latency, N / latency caps every contender, and where "
        "the peer's rate times the target is above that cap the setting is shown apart:",
        "",
        "| asyncmailer | " + " | ".join(t[0] for t in TARGETS) + " |",
        "|---|" + "---|" * len(TARGETS),
    ]
    for key in ours:
        api = BY_KEY[key].api
        cells = []
        for _, theirs, index, target, higher in TARGETS:
            other = theirs.format(api=api)
            if other not in keys:
                cells.append("—")
                continue
            ratios = {
                (lat, n): med[(key, lat, n)][index] / med[(other, lat, n)][index]
                for lat, n in settings
            }
            # A throughput target no client can reach at a setting (the peer times the
            # target is above N / latency) cannot be judged there: shown apart.
            capped = {
                (lat, n): (n / lat) / med[(other, lat, n)][0]
                for lat, n in settings
                if index == 0 and lat > 0 and med[(other, lat, n)][0] * target > n / lat
            }
            judged = [r for s, r in ratios.items() if s not in capped] or list(ratios.values())
            low, high = min(judged), max(judged)
            met = low >= target if higher else high <= target
            cell = f"{low:.2f}–{high:.2f}× {'met' if met else '**not met**'}"
            for (lat, n), best in capped.items():
                cell += (
                    f"; {lat * 1000:.0f} ms N={n}: {ratios[(lat, n)]:.2f}× "
                    f"(capped: at most {best:.2f}× possible)"
                )
            cells.append(cell)
        lines.append(f"| {BY_KEY[key].label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "msgs/s × CPU per message is the cores a contender kept busy: asyncmailer's event loop "
        "uses one, Node spreads over more (garbage collector and libuv threads), boto3 over "
        "its threads. On this 2-core machine, shared with the endpoint, CPU per message is "
        "the fairer measure of efficiency once the client is the limit.",
        "",
        "boto3 + threads varies most from run to run here (its threads contend for the GIL "
        "and, with the endpoint, for the 2 cores): at 0 ms N=1 it measured 524-698 msgs/s "
        "across runs of this benchmark, and asyncmailer's ratio to it 1.76-2.44×. The 2× "
        "target has been missed in earlier runs at 0 ms N=1 (v1 1.76×, v2 1.98×) and "
        "50 ms N=50 (1.88×), before the last ~30 µs per send were taken out.",
        "",
        "Against raw aiobotocore, asyncmailer also composes every message (~90 µs here) and "
        "runs its limiter, pacer and checks, while the raw client sends prebuilt bytes; the "
        "client tuning pays that back many times on v1 (botocore's query encoding is slow). "
        "On v2, whose JSON path is already cheap, `tune_client` alone pays it back about once "
        "(the lean_http-off row) and the lean HTTP session makes the difference: ~125 µs less "
        "per request than aiohttp (see the breakdown below). "
        "With N=50 the default client has 10 pooled connections, so it runs 10 requests at a "
        "time where asyncmailer runs 50; the loopback `send()` of each request also does the "
        "endpoint's TCP receive work in the client's system time, which varies with load.",
    ]
    for lat, n in settings:
        if lat > 0:
            lines += [
                "",
                f"At {lat * 1000:.0f} ms with N={n} in flight, no client can exceed N / latency "
                f"= {n / lat:,.0f} msgs/s: a 2× ratio there requires the peer below "
                f"{n / lat / 2:,.0f} msgs/s.",
            ]
    return "\n".join(lines)


def _tweak_breakdown(quick: bool) -> str:
    """Run ``ses_tuning.py`` (its own process) and return its markdown table."""
    rounds, calls = ("1", "200") if quick else ("5", "400")
    command = [sys.executable, str(BENCH / "ses_tuning.py"), "--json"]
    result = _common.run_json([*command, "--rounds", rounds, "--calls", calls])
    return str(result["table"])


def main() -> None:
    """Parse the command line; run as the driver or as one worker."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="CI smoke run (< 2 minutes)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick 1)")
    parser.add_argument("--duration", type=float, help="measured seconds per run (default 3)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds per run (default 0.5)")
    parser.add_argument(
        "--latency", type=float, nargs="+", help="endpoint latencies, seconds (default 0 0.05)"
    )
    parser.add_argument(
        "--concurrency", type=int, nargs="+", help="messages in flight (default 1 10 50)"
    )
    parser.add_argument(
        "--contenders", nargs="+", choices=list(BY_KEY), help="subset to run (default: all)"
    )
    parser.add_argument("--json", type=Path, help="also write every sample here")
    parser.add_argument(
        "--replay",
        type=Path,
        metavar="JSON",
        help="no measuring: report (and --write-docs) the samples of a --json file",
    )
    parser.add_argument(
        "--write-docs", action="store_true", help=f"rewrite '## {SECTION}' in docs/benchmarks.md"
    )
    parser.add_argument("--worker", choices=list(BY_KEY), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.concurrency = args.concurrency[0]
        worker_main(args)
        return

    quick = args.quick
    args.rounds = args.rounds or (1 if quick else 3)
    args.duration = args.duration or (1.0 if quick else 3.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if quick else 0.5)
    args.latency = args.latency or [0.0, 0.05]
    args.concurrency = args.concurrency or ([10] if quick else [1, 10, 50])
    node = _common.node_packages()
    contenders = [
        c
        for c in CONTENDERS
        if (args.contenders is None or c.key in args.contenders)
        and (c.kind != "node" or c.key in node)
    ]
    if args.replay:
        saved = json.loads(args.replay.read_text())
        header = saved["machine"]
        command = saved.get("command", "python bench/bench_send.py --write-docs")
        for name, value in saved.get("config", {}).items():
            setattr(args, name, value)
        quick = bool(args.quick)
        samples = [Sample(**fields) for fields in saved["samples"]]
        measured = {s.contender for s in samples}
        contenders = [c for c in contenders if c.key in measured]
    else:
        header = _common.machine()
        command = _common.command_line()
        print(header, file=sys.stderr)
        samples = run_all(args, contenders)
    table, data = summarize(samples, contenders, args)
    print(table)
    breakdown = _tweak_breakdown(quick)
    print()
    print(breakdown)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": header,
                    "command": command,
                    "config": {
                        name: getattr(args, name)
                        for name in (
                            "quick",
                            "rounds",
                            "duration",
                            "warmup",
                            "latency",
                            "concurrency",
                        )
                    },
                    "medians": data,
                    "samples": [vars(s) for s in samples],
                },
                indent=1,
            )
        )
    if args.write_docs:
        _common.write_section(SECTION, _docs(args, command, header, table, breakdown))
        print(f"wrote '## {SECTION}' in {_common.DOCS}", file=sys.stderr)
    errors = sum(s.errors for s in samples)
    if errors:
        sys.exit(f"{errors} sends failed")


def _docs(args: argparse.Namespace, command: str, header: str, table: str, breakdown: str) -> str:
    return f"""\
Measured with `{command}` (after `npm install --prefix bench`) on {header}.

{args.rounds} interleaved rounds of {args.duration:g} s per contender and setting (after
{args.warmup:g} s of warm-up), medians. The local SES endpoint runs in its own process;
client CPU is the worker process's own CPU time over the measured phase divided by the
messages sent. N is the number of requests in flight. Other tenants of this machine
disturb some samples in bursts (the endpoint's own CPU per request doubles in them, for
every contender alike); medians over interleaved rounds damp that, and the ratios carry
over better than the absolute numbers.

Every contender sends the same text + html message (~4.7 KB). asyncmailer and Nodemailer
compose every message; the aiobotocore and boto3 contenders send prebuilt bytes.
asyncmailer runs with `sending_rate=10000` and Nodemailer 6 with `sendingRate: 10000`
(limits above anything reached, so the limiters' cost is counted but they never wait).
"aiobotocore, default client" is `create_client("ses"/"sesv2")` with only retries turned
off: its connection pool has botocore's default 10 connections, which caps it at N=50 with
latency. `SESTransport` tunes the client it creates in two ways. `tune_client`
(`asyncmailer/transports/_ses_client.py`: the v1 body encoded once, the User-Agent built
once, the SigV4 signer's repeated work done once, the endpoint rule set run once per
operation, the event emitter's per-handler overhead taken out; see below) works on each
request inside botocore. `lean_http` (`asyncmailer/transports/_ses_http.py`,
`LeanHTTPSession`) sends the requests on asyncmailer's own HTTP/1.1 keep-alive pool
instead of aiohttp: one write per request, the answer parsed as it arrives. "lean_http
off" keeps aiobotocore's aiohttp session; "tune_client and lean_http off" is the client
exactly as aiobotocore makes it.

{table}

### Where the client's CPU goes

`python bench/ses_tuning.py` (run by the command above) times one send with the network
taken out: a `before-send` handler answers every request with a canned SES response, so
the numbers are the client's own work (serialise, sign, build the request, parse the
answer; aiohttp and the socket are left out). Best of {"1" if args.quick else "5"}
interleaved rounds, garbage collector paused while timing. The transport rows add
asyncmailer's own work: composing the message, the checks, the rate limiter, the result.

{breakdown}

The tweaks (`asyncmailer/transports/_ses_client.py`; each measured alone by `bench/ses_tuning.py`):

- **query** (v1): botocore url-encodes the serialised `SendRawEmail` dict with
  `urllib.parse.quote_plus`, byte by byte in Python, over the ~6 KB base64 body, and does
  it twice per request (`AWSRequest.body` re-prepares the request for the SigV4 payload
  hash, then again for the wire). A `before-call` handler encodes the body once; base64
  only needs `+`, `/` and `=` escaped, which `str.replace` does at C speed. Same bytes on
  the wire.
- **ua**: botocore rebuilds the User-Agent string twice per request; it never changes for
  one client, so it is built on the first request and reused.
- **sigv4**: botocore's `SigV4Auth` collects the headers to sign into an `email.message`
  object twice per request, derives the Host value from the URL twice, prepares the whole
  request once more just to hash its body, and derives the signing key (four HMACs) every
  time. `FastSigV4Auth` (`asyncmailer/transports/_ses_signing.py`) keeps botocore's
  algorithm and does each of these once (the key once per day, region and service); the
  signature is botocore's, byte for byte (`tests/test_ses_signing.py` signs the same
  requests with both).
- **novalidate**: `AioConfig(parameter_validation=False)`; the transport builds the
  parameters itself. botocore's schema walk over these few parameters costs only a few
  µs per send, within the noise of this table. (`SESTransport` keeps it off in both of
  its rows.)
- **emitter**: aiobotocore's event emitter passes the result of every handler (~30 per
  request) through `inspect.isawaitable` and formats a debug line for each. The client's
  emitter is swapped for a subclass that awaits a result only when it is not None and is
  awaitable, and logs only when debug logging is on: same handlers, same order, same
  results (`tests/test_ses_client_tuning.py` compares it with aiobotocore's).
- **endpoints**: botocore runs the endpoint rule set (region, FIPS, dual-stack, endpoint
  URL) for every request. For one client its answer only changes with the operation and
  the request's context parameters (SESv2's `EndpointId`), so it is cached on those; not
  when a `before-endpoint-resolution` hook is registered.
"""


if __name__ == "__main__":
    main()
