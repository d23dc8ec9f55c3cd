"""Send-path benchmark: asyncmailer's SESTransport against its peers, on a local SES endpoint.

Every contender sends the same transactional email (text + html, ~4.7 KB) to the local SES
endpoint (``python -m asyncmailer.testing``, its own process, so its CPU is not counted).
Settings (latency, requests in flight N): 0 ms with N = 1, 10 and 50 (the client is the
limit), and 50 ms with N = 50 (like SES). Contenders, all on stock clients:

- ``asyncmailer-v2`` / ``asyncmailer-v1``: ``SESTransport(api=..., max_connections=N,
  sending_rate=10000)``, composing every message (``send_mail(message)``); the rate is far
  above what is reached, so the limiter's cost is counted but it never waits. The
  transport creates a stock aiobotocore client (SESv2 ``SendEmail`` by default);
- ``aiobotocore-v2`` / ``aiobotocore-v1``: prebuilt bytes, N worker tasks, the client
  configured as ``SESTransport`` configures its own (``max_pool_connections=max(10, N)``,
  ``retries={"mode": "standard", "total_max_attempts": 1}``, ``parameter_validation=False``);
- ``boto3-v2-threads`` / ``boto3-v1-threads``: prebuilt bytes, ``ThreadPoolExecutor(N)``,
  the same client options;
- ``nodemailer10``: Nodemailer 10's SES transport (SESv2, ``{sesClient, SendEmailCommand}``),
  composing every message, N sends in flight;
- ``nodemailer6``: Nodemailer 6's SES transport (v1, ``{ses, aws}`` with
  ``@aws-sdk/client-ses``), ``maxConnections: N``, ``sendingRate: 10000``.

Each measurement is a fresh worker process: it warms up (connections, JIT), then sends flat
out for ``--duration`` seconds and reports messages sent, wall time and its own CPU time
(``time.process_time()``; Node: ``process.cpuUsage()``). Rounds are interleaved (every
round runs every setting and every contender, in a rotated order); tables show medians.
The full run then runs ``bench/profile_overhead.py`` (where asyncmailer's own CPU goes).

Setup (once): ``npm install --prefix bench``. Run::

    python bench/bench_send.py                  # full run (~12 min on 2 cores)
    python bench/bench_send.py --write-docs     # also rewrite its sections of docs/benchmarks.md
    python bench/bench_send.py --replay run.json --write-docs   # re-report a --json run
    python bench/bench_send.py --quick          # CI smoke test (< 2 min)
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
    api: str = "v2"


CONTENDERS = [
    Contender("asyncmailer-v2", "asyncmailer SESTransport v2 (default; composes)", "asyncio"),
    Contender("asyncmailer-v1", "asyncmailer SESTransport v1 (composes)", "asyncio", "v1"),
    Contender("aiobotocore-v2", "aiobotocore v2, raw (prebuilt)", "asyncio"),
    Contender("aiobotocore-v1", "aiobotocore v1, raw (prebuilt)", "asyncio", "v1"),
    Contender("boto3-v2-threads", "boto3 v2 + N threads (prebuilt)", "boto3"),
    Contender("boto3-v1-threads", "boto3 v1 + N threads (prebuilt)", "boto3", "v1"),
    Contender("nodemailer10", "Nodemailer 10 SES (v2, composes)", "node"),
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
    url: str, api: str, concurrency: int, duration: float, warmup: float
) -> dict[str, Any]:
    from asyncmailer.transports import SESTransport

    message = _common.message()
    transport = SESTransport(
        endpoint_url=url,
        region_name=REGION,
        api=api,  # type: ignore[arg-type]
        max_connections=concurrency,
        sending_rate=UNBINDING_RATE,
        **CREDENTIALS,
    )
    async with transport:
        result = await _drive(lambda: transport.send_mail(message), concurrency, duration, warmup)
        result["stale_grants"] = transport.stale_grants
        return result


async def _aiobotocore(
    url: str, api: str, concurrency: int, duration: float, warmup: float
) -> dict[str, Any]:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    raw = _common.prebuilt_raw()
    sender, recipient = "shop@example.com", "ada@example.org"
    # Configured as SESTransport configures the client it creates.
    config = AioConfig(**_common.client_config(concurrency))
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
        coro = _asyncmailer(args.url, contender.api, args.concurrency, args.duration, args.warmup)
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
    stale_grants: int = 0

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.sent / self.wall if self.wall else 0.0

    @property
    def cpu_per_message(self) -> float:
        """Client CPU seconds per message."""
        return self.cpu / self.sent if self.sent else float("nan")


Setting = tuple[float, int]  # (latency seconds, requests in flight)
#: The settings of a full run: the client is the limit at 0 ms; 50 ms N=50 is like SES.
FULL_SETTINGS: list[Setting] = [(0.0, 1), (0.0, 10), (0.0, 50), (0.05, 50)]


def run_all(args: argparse.Namespace, contenders: list[Contender]) -> list[Sample]:
    """Every round runs every (latency, concurrency) setting and every contender."""
    samples: list[Sample] = []
    settings: list[Setting] = args.settings
    with tempfile.TemporaryDirectory(prefix="bench-send-") as tmp:
        message_file = Path(tmp) / "message.json"
        message_file.write_text(_common.message_json())
        latencies = sorted({lat for lat, _ in settings})
        endpoints = {lat: _common.EndpointProcess("--latency", str(lat)) for lat in latencies}
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
                            stale_grants=int(result.get("stale_grants", 0)),
                        )
                        samples.append(sample)
                        print(
                            f"round {round_no + 1}/{args.rounds} latency {lat * 1000:.0f} ms "
                            f"N={n:<2} {contender.key:<18} {sample.rate:7.0f} msgs/s "
                            f"{sample.cpu_per_message * 1e6:6.0f} µs CPU/msg"
                            + (f"  ERRORS {sample.errors}" if sample.errors else ""),
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            for ep in endpoints.values():
                ep.close()
    return samples


Medians = dict[tuple[str, float, int], tuple[float, float]]


def _name(setting: Setting) -> str:
    return f"{setting[0] * 1000:.0f} ms N={setting[1]}"


#: (ours, theirs, metric) compared in the ratio table; metric "rate" (msgs/s) or "cpu".
COMPARISONS = [
    ("asyncmailer-v2", "nodemailer10", "rate"),
    ("asyncmailer-v2", "boto3-v2-threads", "rate"),
    ("asyncmailer-v2", "boto3-v1-threads", "rate"),
    ("asyncmailer-v2", "aiobotocore-v2", "rate"),
    ("asyncmailer-v2", "aiobotocore-v2", "cpu"),
    ("asyncmailer-v1", "nodemailer6", "rate"),
    ("asyncmailer-v1", "boto3-v1-threads", "rate"),
    ("asyncmailer-v1", "aiobotocore-v1", "rate"),
    ("asyncmailer-v1", "aiobotocore-v1", "cpu"),
]

#: The issue's targets: (label, ours, theirs, metric, bound, higher is better, settings).
TARGETS = [
    (
        "msgs/s ≥ 1.6× Nodemailer 10",
        "asyncmailer-v2",
        "nodemailer10",
        "rate",
        1.6,
        True,
        [(0.0, 10), (0.0, 50)],
    ),
    (
        "msgs/s ≥ 2× boto3 v2 + threads",
        "asyncmailer-v2",
        "boto3-v2-threads",
        "rate",
        2.0,
        True,
        [(0.0, 10), (0.0, 50)],
    ),
    (
        "msgs/s ≥ 2× boto3 v1 + threads",
        "asyncmailer-v2",
        "boto3-v1-threads",
        "rate",
        2.0,
        True,
        [(0.0, 10), (0.0, 50)],
    ),
    (
        "CPU/msg ≤ 1.15× raw aiobotocore v2 (composing included)",
        "asyncmailer-v2",
        "aiobotocore-v2",
        "cpu",
        1.15,
        False,
        [(0.0, 1), (0.0, 10), (0.0, 50)],
    ),
]


def medians(samples: list[Sample], contenders: list[Contender], settings: list[Setting]) -> Medians:
    """(msgs/s, CPU s/msg) medians per contender and setting."""
    med: Medians = {}
    for c in contenders:
        for lat, n in settings:
            runs = [
                s for s in samples if (s.contender, s.latency, s.concurrency) == (c.key, lat, n)
            ]
            med[(c.key, lat, n)] = (
                median([s.rate for s in runs]),
                median([s.cpu_per_message for s in runs]),
            )
    return med


def summarize(
    samples: list[Sample], contenders: list[Contender], args: argparse.Namespace
) -> tuple[str, dict[str, Any]]:
    """Markdown tables and ratios, plus the medians as a dict."""
    settings: list[Setting] = args.settings
    med = medians(samples, contenders, settings)
    out = [
        "Medians (msgs/s and client CPU µs per message):\n",
        "| contender |" + "".join(f" {_name(s)} msgs/s | µs/msg |" for s in settings),
        "|---|" + "---:|---:|" * len(settings),
    ]
    for c in contenders:
        cells = "".join(
            f" {med[(c.key, *s)][0]:,.0f} | {med[(c.key, *s)][1] * 1e6:,.0f} |" for s in settings
        )
        out.append(f"| {c.label} |{cells}")
    keys = {c.key for c in contenders}
    rows = [(o, t, m) for o, t, m in COMPARISONS if o in keys and t in keys]
    if rows:
        out += [
            "",
            "Ratios, same run (msgs/s: ours ÷ theirs, > 1 means asyncmailer is faster; CPU: "
            "ours ÷ theirs, < 1 means asyncmailer uses less CPU per message):\n",
            "| comparison | metric |" + "".join(f" {_name(s)} |" for s in settings),
            "|---|---|" + "---:|" * len(settings),
        ]
        for ours, theirs, metric in rows:
            index = 0 if metric == "rate" else 1
            cells = "".join(
                f" {med[(ours, *s)][index] / med[(theirs, *s)][index]:.2f}× |" for s in settings
            )
            out.append(
                f"| {ours} vs {theirs} | {'msgs/s' if metric == 'rate' else 'CPU/msg'} |{cells}"
            )
    targets = _targets(med, keys, settings)
    if targets:
        out += ["", targets]
    stale = [s for s in samples if s.contender.startswith("asyncmailer")]
    if stale:
        total = sum(s.stale_grants for s in stale)
        sent = sum(s.sent for s in stale) or 1
        out += [
            "",
            f"Stale rate grants in the asyncmailer runs (asked for again, the request rebuilt "
            f"and re-signed; warm-up included): {total:,} for {sent:,} messages "
            f"({total / sent * 100:.1f} per 100).",
        ]
    errors = sum(s.errors for s in samples)
    if errors:
        out.append(f"\n**{errors} send errors were counted during the run.**")
    data = {
        f"{key}|{lat}|{n}": {"msgs_per_s": rate, "cpu_us_per_msg": cpu * 1e6}
        for (key, lat, n), (rate, cpu) in med.items()
    }
    return "\n".join(out), data


def _targets(med: Medians, keys: set[str], settings: list[Setting]) -> str:
    """The issue's targets, judged on this run's medians."""
    lines = [
        "Targets (issue 'Supported ground', item 6), judged on this run's medians:\n",
        "| target | ratios | verdict |",
        "|---|---|---|",
    ]
    shown = False
    for label, ours, theirs, metric, bound, higher, where in TARGETS:
        where = [s for s in where if s in settings]
        if ours not in keys or theirs not in keys or not where:
            continue
        index = 0 if metric == "rate" else 1
        ratios = {s: med[(ours, *s)][index] / med[(theirs, *s)][index] for s in where}
        misses = {s: r for s, r in ratios.items() if (r < bound if higher else r > bound)}
        cells = ", ".join(f"{_name(s)}: {r:.2f}×" for s, r in ratios.items())
        if misses:
            by = ", ".join(
                f"{_name(s)} by {abs(r / bound - 1) * 100:.0f}%" for s, r in misses.items()
            )
            verdict = f"**not met** ({by})"
        else:
            verdict = "met"
        lines.append(f"| {label} | {cells} | {verdict} |")
        shown = True
    return "\n".join(lines) if shown else ""


def _profile(quick: bool) -> dict[str, Any]:
    """Run ``profile_overhead.py`` (its own process) and return its JSON result."""
    command = [sys.executable, str(BENCH / "profile_overhead.py"), "--json"]
    if quick:
        command.append("--quick")
    return _common.run_json(command)


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
        "--latency",
        type=float,
        nargs="+",
        help="endpoint latencies, seconds (with --concurrency: every combination; default: "
        "0 ms with N=1, 10, 50 and 50 ms with N=50)",
    )
    parser.add_argument("--concurrency", type=int, nargs="+", help="messages in flight")
    parser.add_argument(
        "--contenders", nargs="+", choices=list(BY_KEY), help="subset to run (default: all)"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip profile_overhead.py")
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
    if args.latency or args.concurrency:
        args.settings = [
            (lat, n) for lat in (args.latency or [0.0]) for n in (args.concurrency or [10])
        ]
    else:
        args.settings = [(0.0, 10)] if quick else list(FULL_SETTINGS)
    node = _common.node_packages()
    contenders = [
        c
        for c in CONTENDERS
        if (args.contenders is None or c.key in args.contenders)
        and (c.kind != "node" or c.key in node)
    ]
    profile: dict[str, Any] | None = None
    if args.replay:
        saved = json.loads(args.replay.read_text())
        header = saved["machine"]
        command = saved.get("command", "python bench/bench_send.py --write-docs")
        for name, value in saved.get("config", {}).items():
            setattr(args, name, value)
        args.settings = [tuple(s) for s in args.settings]
        quick = bool(args.quick)
        samples = [Sample(**fields) for fields in saved["samples"]]
        measured = {s.contender for s in samples}
        contenders = [c for c in contenders if c.key in measured]
        profile = saved.get("profile")
    else:
        header = _common.machine()
        command = _common.command_line()
        print(header, file=sys.stderr)
        samples = run_all(args, contenders)
        if not args.no_profile:
            profile = _profile(quick)
    table, data = summarize(samples, contenders, args)
    print(table)
    if profile is not None:
        print()
        print(profile["table"])
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": header,
                    "command": command,
                    "config": {
                        name: getattr(args, name)
                        for name in ("quick", "rounds", "duration", "warmup", "settings")
                    },
                    "medians": data,
                    "samples": [vars(s) for s in samples],
                    "profile": profile,
                },
                indent=1,
            )
        )
    if args.write_docs:
        _common.write_section(SECTION, _docs(args, command, header, table))
        print(f"wrote '## {SECTION}' in {_common.DOCS}", file=sys.stderr)
        if profile is not None:
            import profile_overhead

            _common.write_section(
                profile_overhead.SECTION,
                profile_overhead.docs(
                    f"{command}`, which runs `{profile['command']}",
                    header,
                    int(profile["rounds"]),
                    float(profile["duration"]),
                    str(profile["table"]),
                ),
            )
            print(f"wrote '## {profile_overhead.SECTION}' in {_common.DOCS}", file=sys.stderr)
    errors = sum(s.errors for s in samples)
    if errors:
        sys.exit(f"{errors} sends failed")


def _docs(args: argparse.Namespace, command: str, header: str, table: str) -> str:
    return f"""\
Measured with `{command}` (after `npm install --prefix bench`) on {header}.

{args.rounds} interleaved rounds of {args.duration:g} s per contender and setting (after
{args.warmup:g} s of warm-up; every round runs every setting and every contender, in a
rotated order), medians. The local SES endpoint runs in its own process; client CPU is the
worker process's own CPU time over the measured phase divided by the messages sent. N is
the number of requests in flight. The machine is shared with other engineers' test and
benchmark runs: they disturb samples in bursts, for every contender alike; medians over
interleaved rounds damp that, and the ratios (same run) carry over better than the
absolute numbers.

Every contender sends the same text + html message (~4.7 KB) through a stock client: no
HTTP session, signer or event emitter is replaced anywhere. asyncmailer and Nodemailer
compose every message; the aiobotocore and boto3 contenders send prebuilt bytes, with the
client options `SESTransport` gives the client it creates (`max_pool_connections=max(10,
N)`, `retries={{"mode": "standard", "total_max_attempts": 1}}`,
`parameter_validation=False`). asyncmailer runs with `sending_rate=10000` and Nodemailer 6
with `sendingRate: 10000` (limits above anything reached: the limiters' cost is counted,
they never wait).

{table}

msgs/s × CPU per message is the cores a contender kept busy: asyncmailer's event loop uses
one, Node spreads over more (garbage collector and libuv threads), boto3 over its threads.
On this 2-core machine, shared with the endpoint, CPU per message is the fairer measure of
efficiency once the client is the limit. Where asyncmailer's own share of the CPU goes:
next section.
"""


if __name__ == "__main__":
    main()
