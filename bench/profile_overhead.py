"""Where asyncmailer's own CPU goes on top of a stock aiobotocore client (SESv2).

Three ways to look at the same thing, all on one stock client created the way
``SESTransport`` creates it (``max_pool_connections``, ``retries={"mode": "standard",
"total_max_attempts": 1}``, ``parameter_validation=False``), against the local SES endpoint
running in its own process (``python -m asyncmailer.testing``, 0 ms latency, so its CPU is
not counted):

1. **Ladder** (end to end, timers): N tasks send flat out for ``--duration`` seconds and
   the process's CPU time (``time.process_time()``) is divided by the messages sent.
   Rows, each adding one piece of asyncmailer to the one before:

   - raw ``client.send_email(...)`` with prebuilt bytes (no transport open);
   - ``SESTransport(client=..., cooperative=False)``, ``send_mail(raw, envelope=...)``:
     prebuilt bytes, no rate limiter, no pacer (the transport's bookkeeping, checks,
     connection slot, warm gate, grant check at ``before-send``, ``SendResult``);
   - ``+ sending_rate=10000`` (the limiter runs, never waits);
   - ``+ cooperative=True`` (the pacer, the default);
   - ``send_mail(message)``: composing every message too (the benchmark's default row).

   Variants are interleaved over ``--rounds`` rounds (rotated order), medians.
2. **Components** (micro-timers, no network): each piece of our machinery called alone in
   a tight loop, garbage collector paused, median of rounds.
3. **cProfile** of the raw and the composing rows: own time (``tottime``) per message,
   grouped by package, so the difference shows whose code the extra CPU is in
   (profiled numbers are inflated by the profiler itself: read them as shares).

No function of asyncmailer, aiobotocore or botocore is replaced: timers and profilers
only. Run::

    python bench/profile_overhead.py                # ~2 minutes
    python bench/profile_overhead.py --quick        # CI smoke size
    python bench/profile_overhead.py --write-docs   # also rewrite its section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import gc
import json
import pstats
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import _common
from _common import CREDENTIALS, REGION, median

SECTION = "Where asyncmailer's own CPU goes"
UNBINDING_RATE = 10_000
SENDER, RECIPIENT = "shop@example.com", "ada@example.org"
#: The benchmark message composed once (the prebuilt-bytes rows send it).
_PREBUILT = _common.prebuilt_raw()

#: (key, label) of the ladder, in order.
LADDER = [
    ("raw", "raw aiobotocore v2 `send_email`, prebuilt bytes"),
    ("bare", "SESTransport, prebuilt bytes, no limiter, `cooperative=False`"),
    ("limiter", "+ `sending_rate=10000` (limiter runs, never waits)"),
    ("pacer", "+ `cooperative=True` (pacer; the default)"),
    ("compose", "+ composing every message (`send_mail(message)`: the benchmark row)"),
]


async def _drive(
    send: Callable[[], Awaitable[object]], concurrency: int, duration: float, warmup: float
) -> tuple[int, float]:
    """N tasks send in a loop; return (messages, CPU seconds) of the measured phase."""

    async def loop(until: float) -> int:
        count = 0
        while time.perf_counter() < until:
            await send()
            count += 1
        return count

    until = time.perf_counter() + warmup
    await asyncio.gather(*(loop(until) for _ in range(concurrency)))
    cpu0, t0 = time.process_time(), time.perf_counter()
    counts = await asyncio.gather(*(loop(t0 + duration) for _ in range(concurrency)))
    return sum(counts), time.process_time() - cpu0


async def _variant(
    client: Any, key: str, concurrency: int, duration: float, warmup: float
) -> tuple[int, float, int]:
    """Run one ladder row on ``client``; return (messages, CPU seconds, stale grants)."""
    from asyncmailer import Envelope, Limits
    from asyncmailer.transports import SESTransport

    raw = _PREBUILT
    if key == "raw":

        def send() -> Awaitable[object]:
            return client.send_email(  # type: ignore[no-any-return]
                FromEmailAddress=SENDER,
                Destination={"ToAddresses": [RECIPIENT]},
                Content={"Raw": {"Data": raw}},
            )

        return (*await _drive(send, concurrency, duration, warmup), 0)
    transport = SESTransport(
        client,
        max_connections=concurrency,
        sending_rate=None if key == "bare" else UNBINDING_RATE,
        limits=Limits(cooperative=key in ("pacer", "compose")),
    )
    async with transport:
        if key == "compose":
            message = _common.message()
            sent, cpu = await _drive(
                lambda: transport.send_mail(message), concurrency, duration, warmup
            )
        else:
            envelope = Envelope(from_=SENDER, to=(RECIPIENT,))
            sent, cpu = await _drive(
                lambda: transport.send_mail(raw, envelope=envelope), concurrency, duration, warmup
            )
        # Grants that went stale before their request left: each one cost a request built
        # and signed for nothing (counted over warm-up and measurement alike).
        return sent, cpu, transport.stale_grants


def _client(session: Any, url: str, concurrency: int) -> Any:
    from aiobotocore.config import AioConfig

    return session.create_client(
        "sesv2",
        endpoint_url=url,
        region_name=REGION,
        config=AioConfig(**_common.client_config(concurrency)),
        **CREDENTIALS,
    )


async def ladder(
    url: str, concurrency: int, duration: float, warmup: float, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """CPU µs per message and stale grants per 100 messages of every ladder row, per round."""
    from aiobotocore.session import get_session

    keys = [key for key, _ in LADDER]
    results: dict[str, list[float]] = {key: [] for key in keys}
    stale: dict[str, list[float]] = {key: [] for key in keys}
    async with _client(get_session(), url, concurrency) as client:
        await client.get_account()  # the HTTP session exists before the first round
        for round_no in range(rounds):
            shift = round_no % len(keys)
            for key in keys[shift:] + keys[:shift]:
                gc.collect()
                sent, cpu, stale_grants = await _variant(client, key, concurrency, duration, warmup)
                results[key].append(cpu / sent * 1e6)
                stale[key].append(stale_grants / sent * 100)
                print(
                    f"round {round_no + 1}/{rounds} {key:<8} {sent / duration:6.0f} msgs/s "
                    f"{cpu / sent * 1e6:6.0f} µs CPU/msg, {stale_grants} stale grants",
                    file=sys.stderr,
                    flush=True,
                )
    return results, stale


# --------------------------------------------------------------------------- offline ladder

_CANNED = b'{"MessageId":"0100018c-0000-0000-0000-000000000000-000000"}'


class _Body:
    """The body of a canned answer (what aiobotocore reads from a response)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def read(self) -> bytes:
        return self._data


def _canned_answer(request: Any, **_: Any) -> Any:
    """A ``before-send`` handler: SES's answer, without the network.

    botocore documents that a ``before-send`` handler returning a response short-circuits
    the HTTP send; registered last, it runs after the transport's own grant check.
    """
    from aiobotocore.awsrequest import AioAWSResponse

    headers = {"Content-Type": "application/json", "x-amzn-RequestId": "r"}
    return AioAWSResponse(request.url, 200, headers, _Body(_CANNED))


async def offline(url: str, rounds: int, calls: int) -> dict[str, list[float]]:
    """The ladder without the network: one send at a time, CPU µs per send, per round.

    Every send is answered by :func:`_canned_answer`, so the timed loop is the client's
    work (serialise, sign, build the request, parse the answer) plus, for the transport
    rows, asyncmailer's; no socket, no kernel, no endpoint. Garbage collector paused.
    """
    from aiobotocore.session import get_session

    from asyncmailer import Envelope, Limits
    from asyncmailer.transports import SESTransport

    keys = [key for key, _ in LADDER]
    results: dict[str, list[float]] = {key: [] for key in keys}
    event = "before-send.sesv2.SendEmail"
    message = _common.message()
    envelope = Envelope(from_=SENDER, to=(RECIPIENT,))
    async with _client(get_session(), url, 1) as client:
        await client.get_account()
        for round_no in range(rounds):
            shift = round_no % len(keys)
            for key in keys[shift:] + keys[:shift]:
                transport = None
                send: Callable[[], Awaitable[object]]
                if key == "raw":

                    def send() -> Awaitable[object]:
                        return client.send_email(  # type: ignore[no-any-return]
                            FromEmailAddress=SENDER,
                            Destination={"ToAddresses": [RECIPIENT]},
                            Content={"Raw": {"Data": _PREBUILT}},
                        )
                else:
                    transport = SESTransport(
                        client,
                        max_connections=1,
                        sending_rate=None if key == "bare" else 100_000,
                        limits=Limits(cooperative=key in ("pacer", "compose")),
                    )
                    await transport.__aenter__()
                    if key == "compose":
                        send = functools.partial(transport.send_mail, message)
                    else:
                        send = functools.partial(transport.send_mail, _PREBUILT, envelope=envelope)

                client.meta.events.register_last(event, _canned_answer, unique_id="canned")
                try:
                    for _ in range(min(100, calls)):
                        await send()
                    gc.collect()
                    gc.disable()
                    try:
                        t0 = time.process_time()
                        for _ in range(calls):
                            await send()
                        results[key].append((time.process_time() - t0) / calls * 1e6)
                    finally:
                        gc.enable()
                finally:
                    client.meta.events.unregister(event, unique_id="canned")
                    if transport is not None:
                        await transport.aclose()
                print(
                    f"offline round {round_no + 1}/{rounds} {key:<8} "
                    f"{results[key][-1]:6.0f} µs CPU/send",
                    file=sys.stderr,
                    flush=True,
                )
    return results


# --------------------------------------------------------------------------- cProfile

#: (group, path fragment) in match order: the first match names a function's group.
GROUPS = [
    ("asyncmailer: compose (mime/)", "asyncmailer/mime/"),
    ("asyncmailer: limiter (limits/)", "asyncmailer/limits/"),
    ("asyncmailer: pacer (_pacer.py)", "asyncmailer/transports/_pacer.py"),
    ("asyncmailer: warm gate (_warm.py)", "asyncmailer/transports/_warm.py"),
    ("asyncmailer: grant check (_grant.py)", "asyncmailer/transports/_grant.py"),
    ("asyncmailer: send path (base.py)", "asyncmailer/transports/base.py"),
    ("asyncmailer: SES transport (ses.py)", "asyncmailer/transports/ses.py"),
    ("asyncmailer: other", "asyncmailer/"),
    ("aiolimiter", "aiolimiter/"),
    ("anyio", "anyio/"),
    ("aiobotocore", "aiobotocore/"),
    ("botocore", "botocore/"),
    ("aiohttp / yarl / multidict", "aiohttp/"),
    ("aiohttp / yarl / multidict", "yarl/"),
    ("aiohttp / yarl / multidict", "multidict/"),
    ("asyncio", "asyncio/"),
]
OTHER = "other (stdlib, builtins, C functions)"


def _group(path: str) -> str:
    for name, fragment in GROUPS:
        if fragment in path:
            return name
    return OTHER


async def profiled(url: str, concurrency: int, duration: float) -> dict[str, dict[str, float]]:
    """cProfile own time per message, by group, for the raw and the composing rows."""
    from aiobotocore.session import get_session

    out: dict[str, dict[str, float]] = {}
    async with _client(get_session(), url, concurrency) as client:
        await client.get_account()
        for key in ("raw", "compose"):
            await _variant(client, key, concurrency, 0.3, 0.1)  # warm: first-use set-up
            profiler = cProfile.Profile()
            profiler.enable()
            sent, _, _ = await _variant(client, key, concurrency, duration, 0.0)
            profiler.disable()
            stats = pstats.Stats(profiler)
            groups: dict[str, float] = {}
            for (path, _line, _name), row in stats.stats.items():  # type: ignore[attr-defined]
                groups[_group(path)] = groups.get(_group(path), 0.0) + row[2]
            out[key] = {name: seconds / sent * 1e6 for name, seconds in groups.items()}
    return out


# --------------------------------------------------------------------------- components


async def components(rounds: int, calls: int) -> dict[str, float]:
    """µs per call of each piece of our machinery, alone, no network (medians of rounds)."""
    from asyncmailer import Envelope, SendResult
    from asyncmailer.limits import Grant, LocalRateLimiter
    from asyncmailer.message import Message
    from asyncmailer.mime import compose
    from asyncmailer.transports._grant import check_grant, holding
    from asyncmailer.transports._pacer import LoopPacer
    from asyncmailer.transports._warm import WarmGate

    loop = asyncio.get_running_loop()
    message = _common.message()
    raw = _common.prebuilt_raw()
    envelope = Envelope(from_=SENDER, to=(RECIPIENT,))
    limiter = LocalRateLimiter(1e9)  # never waits: the cost of a grant alone
    await limiter.open()
    gate = WarmGate(loop, 6.0)
    gate.warmed()
    semaphore = asyncio.Semaphore(10)

    async def compose_message() -> None:
        await compose(message)

    async def compose_raw() -> None:
        await compose(Message(raw=raw, envelope=envelope))

    async def acquire() -> None:
        await limiter.acquire(1)

    async def warm_gate() -> None:
        gate.leave(await gate.enter())

    grant = Grant(units=1, at=loop.time(), waited=0.0, expires=float("inf"))

    async def grant_check() -> None:
        with holding(grant, loop, limiter):
            check_grant()

    from asyncmailer.transports.base import _SendTrack

    tracked: set[_SendTrack] = set()

    async def send_tracking() -> None:
        # What send_mail keeps so that aclose() can abort it: its task, in a set.
        track = _SendTrack()
        track.task = asyncio.current_task()
        tracked.add(track)
        tracked.discard(track)

    async def slot() -> None:
        async with semaphore:
            pass

    async def result() -> None:
        SendResult(
            envelope=envelope,
            message_id="<x@email.amazonses.com>",
            response="x",
            rate_wait=0.0,
            connection_wait=0.0,
            attempts=1,
            elapsed=0.001,
            transport="ses",
        )

    async def pacer_step() -> None:
        # As in a send: the composing turn, the urgent one before the rate limiter and
        # the one after it (free when the limiter did not wait).
        pacer = LoopPacer(loop)
        await pacer.turn()
        await pacer.turn(urgent=True)
        await pacer.turn(urgent=True)
        await asyncio.sleep(0)

    async def loop_step() -> None:
        await asyncio.sleep(0)

    cases: dict[str, Callable[[], Awaitable[None]]] = {
        "compose(Message) (text + html)": compose_message,
        "compose(raw bytes + envelope)": compose_raw,
        "LocalRateLimiter.acquire()": acquire,
        "grant: holding() + check_grant()": grant_check,
        "WarmGate enter + leave": warm_gate,
        "send tracking (task kept for aclose's abort)": send_tracking,
        "asyncio.Semaphore slot": slot,
        "SendResult(...)": result,
        "LoopPacer: 3 turns + 1 loop iteration": pacer_step,
        "_loop_baseline": loop_step,
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            for _ in range(min(50, calls)):
                await case()
            gc.collect()
            gc.disable()
            try:
                t0 = time.process_time()
                for _ in range(calls):
                    await case()
                samples[name].append((time.process_time() - t0) / calls * 1e6)
            finally:
                gc.enable()
    await limiter.aclose()
    out = {name: median(values) for name, values in samples.items()}
    out["LoopPacer: 3 turns + 1 loop iteration"] -= out.pop("_loop_baseline")
    return out


# --------------------------------------------------------------------------- report


def report(
    lad: dict[str, list[float]],
    stale: dict[str, list[float]],
    off: dict[str, list[float]],
    prof: dict[str, dict[str, float]],
    comp: dict[str, float],
    concurrency: int,
) -> str:
    """The markdown tables."""
    lines = [
        "| row, network left out (canned answer at `before-send`, one send at a time) | "
        "CPU µs/send, median | added | best of rounds | added | ÷ raw (median) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    previous = None
    for key, label in LADDER:
        mid, best = median(off[key]), min(off[key])
        if previous is None:
            added_mid = added_best = ""
        else:
            added_mid = f"{mid - median(off[previous]):+,.0f}"
            added_best = f"{best - min(off[previous]):+,.0f}"
        lines.append(
            f"| {label} | {mid:,.0f} | {added_mid} | {best:,.0f} | {added_best} | "
            f"{mid / median(off['raw']):.2f}× |"
        )
        previous = key
    med = {key: median(values) for key, values in lad.items()}
    raw = med["raw"]
    lines += [
        "",
        f"| row (stock client, SESv2, 0 ms, N={concurrency}) | CPU µs/msg | added µs/msg | "
        "÷ raw | stale grants per 100 msgs |",
        "|---|---:|---:|---:|---:|",
    ]
    previous = None
    for key, label in LADDER:
        added = "" if previous is None else f"{med[key] - med[previous]:+,.0f}"
        lines.append(
            f"| {label} | {med[key]:,.0f} | {added} | {med[key] / raw:.2f}× | "
            f"{median(stale[key]):.1f} |"
        )
        previous = key
    spread = ", ".join(
        f"{key} {min(values):,.0f}–{max(values):,.0f}" for key, values in lad.items() if values
    )
    lines += [
        "",
        f"Per-round range (µs/msg): {spread}.",
        "",
        "| component, alone (no network) | µs per call |",
        "|---|---:|",
    ]
    for name, value in comp.items():
        lines.append(f"| {name} | {value:,.1f} |")
    groups = sorted(
        {name for row in prof.values() for name in row},
        key=lambda name: -(prof["compose"].get(name, 0.0) - prof["raw"].get(name, 0.0)),
    )
    total_raw, total_ours = sum(prof["raw"].values()), sum(prof["compose"].values())
    lines += [
        "",
        "| cProfile own time (tottime) per message | raw aiobotocore µs | SESTransport "
        "composing µs | difference µs |",
        "|---|---:|---:|---:|",
    ]
    for name in groups:
        a, b = prof["raw"].get(name, 0.0), prof["compose"].get(name, 0.0)
        lines.append(f"| {name} | {a:,.0f} | {b:,.0f} | {b - a:+,.0f} |")
    lines.append(
        f"| **total (profiled)** | {total_raw:,.0f} | {total_ours:,.0f} | "
        f"{total_ours - total_raw:+,.0f} |"
    )
    return "\n".join(lines)


def main() -> None:
    """Parse the command line, measure, print (and optionally write) the results."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="CI smoke size (~20 s)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5; quick 1)")
    parser.add_argument("--duration", type=float, help="measured seconds per row (default 2)")
    parser.add_argument("--concurrency", type=int, default=10, help="requests in flight")
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    parser.add_argument(
        "--write-docs", action="store_true", help=f"rewrite '## {SECTION}' in docs/benchmarks.md"
    )
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 5)
    duration = args.duration or (0.5 if args.quick else 2.0)
    warmup = 0.2 if args.quick else 0.5
    header = _common.machine()
    print(header, file=sys.stderr)
    with _common.endpoint() as ep:
        lad, stale = asyncio.run(ladder(ep.url, args.concurrency, duration, warmup, rounds))
        ep.remote.reset()
        off = asyncio.run(offline(ep.url, rounds, 300 if args.quick else 2000))
        ep.remote.reset()
        prof = asyncio.run(profiled(ep.url, args.concurrency, 1.0 if args.quick else 3.0))
    comp = asyncio.run(components(3 if args.quick else 7, 300 if args.quick else 2000))
    table = report(lad, stale, off, prof, comp, args.concurrency)
    command = _common.command_line()
    print(table)
    if args.json:
        print(
            json.dumps(
                {
                    "table": table,
                    "command": command,
                    "rounds": rounds,
                    "duration": duration,
                    "ladder": lad,
                    "stale_per_100": stale,
                    "offline": off,
                    "profile": prof,
                    "components": comp,
                }
            )
        )
    if args.write_docs:
        _common.write_section(SECTION, docs(command, header, rounds, duration, table))
        print(f"wrote '## {SECTION}' in {_common.DOCS}", file=sys.stderr)


def docs(command: str, header: str, rounds: int, duration: float, table: str) -> str:
    """The section of docs/benchmarks.md (its prose around the tables)."""
    return f"""\
Measured with `{command}` on {header}.

One stock aiobotocore `sesv2` client, configured as `SESTransport` configures the one it
creates (`max_pool_connections`, `retries={{"mode": "standard", "total_max_attempts": 1}}`,
`parameter_validation=False`), sends the benchmark message. Each row of the two ladders
adds one piece of asyncmailer to the row before it: the transport's send path with
prebuilt bytes (`send_mail(raw, envelope=...)`: bookkeeping, checks, connection slot, warm
gate, grant check at `before-send`, `SendResult`), then the rate limiter
(`sending_rate=10000`, never waits), then the pacer (`cooperative=True`, the default),
then composing every message.

- *Network left out*: every request is answered by a `before-send` handler registered
  last (botocore's documented short-circuit: after the transport's grant check), one send
  at a time, garbage collector paused; {rounds} interleaved rounds, median and best.
  This is the CPU of the client plus ours, with no socket, kernel or endpoint in it.
- *Local endpoint* (own process, 0 ms latency), 10 requests in flight, {rounds}
  interleaved rounds of {duration:g} s (rotated order), medians of the process's CPU time
  per message, and the stale grants (each one a request built and signed again).

Then each component alone, without the network (micro-timers, garbage collector paused,
medians), and a cProfile of the raw and the composing rows against the endpoint, own time
(`tottime`) per message grouped by package: the profiler inflates call-heavy code, so read
those as shares. No function is replaced anywhere: timers, profilers and one documented
event handler only. Other engineers' runs shared the machine: the per-round ranges show
how much a row moves from one round to the next, which is as much as some rows add.

{table}
"""


if __name__ == "__main__":
    main()
