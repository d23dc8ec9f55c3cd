"""Queued sends: memory per waiting ``send_mail`` and scheduling CPU per message, 1k → 100k.

A fast in-memory transport (its ``_deliver`` answers after 2 ms of virtual time) sends N
messages under a rate limit, on an event loop whose clock jumps to the next timer (no
real sleeping: what is measured is CPU). Composition is skipped (one prebuilt message
per send) so that only the transport's machinery is timed: slots, the rate limiter's
queue, retries bookkeeping, drain tracking, ``send_many``'s workers.

Modes:

- ``send_mail tasks, 50 slots``: N tasks call ``send_mail`` at once; they queue for the 50
  connection slots, then the limiter.
- ``send_mail tasks, no slot limit``: the same without ``max_connections``: all N queue in
  the rate limiter.
- ``send_many``: ``send_many`` over a generator of N messages, concurrency 50.

For each, CPU per message (``time.process_time``, no tracing) must not grow with N (no
quadratic wake-ups), and memory is measured in a second run under ``tracemalloc``: per
queued send for the task modes (all N waiting at once), the peak for ``send_many`` (flat).

    python bench/bench_queue.py                       # 1k, 10k, 100k; table
    python bench/bench_queue.py --write-docs          # + rewrite "## Queued sends" in the docs
    python bench/bench_queue.py --sizes 1000 10000    # quick look
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import re
import sys
import time
import tracemalloc
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asyncmailer.message import Envelope, Message  # noqa: E402
from asyncmailer.result import ComposedMessage  # noqa: E402
from asyncmailer.transports import Delivery, Transport  # noqa: E402
from tests.helpers import run_virtual  # noqa: E402

RATE = 5000.0
SLOTS = 50
LATENCY = 0.002
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Queued sends"


class FastTransport(Transport):
    """Answers every message after ``LATENCY`` virtual seconds; composition skipped."""

    name = "fast"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        envelope = Envelope(from_="a@example.com", to=("b@example.com",))
        self._composed = ComposedMessage(raw=b"x" * 200, envelope=envelope, message_id="<m@x>")
        self.delivered = 0

    async def prepare(
        self, message: Any = None, /, **fields: Any
    ) -> tuple[ComposedMessage, Message | None]:
        return self._composed, None

    async def _deliver(self, composed: ComposedMessage, message: Message | None) -> Delivery:
        await asyncio.sleep(LATENCY)
        self.delivered += 1
        return Delivery(response="ok", message_id=composed.message_id)


async def mode_tasks(n: int, slots: int | None, probe: Callable[[], None] | None) -> None:
    async with FastTransport(sending_rate=RATE, max_connections=slots) as transport:
        tasks = [asyncio.ensure_future(transport.send_mail("m")) for _ in range(n)]
        if probe is not None:
            for _ in range(5):  # let every send reach its queue
                await asyncio.sleep(0)
            probe()
        await asyncio.gather(*tasks)
        assert transport.delivered == n


async def mode_send_many(n: int, probe: Callable[[], None] | None) -> None:
    def messages() -> Iterator[str]:
        for _ in range(n):
            yield "m"

    async with FastTransport(sending_rate=RATE) as transport:
        count = 0
        async for _ in transport.send_many(messages(), concurrency=SLOTS):
            count += 1
            if probe is not None and count % 1000 == 0:
                probe()
        assert count == transport.delivered == n


MODES: dict[str, Callable[[int, Callable[[], None] | None], Coroutine[Any, Any, None]]] = {
    "send_mail tasks, 50 slots": lambda n, probe: mode_tasks(n, SLOTS, probe),
    "send_mail tasks, no slot limit": lambda n, probe: mode_tasks(n, None, probe),
    "send_many, concurrency 50": mode_send_many,
}


def cpu_per_message(mode: str, n: int, rounds: int) -> tuple[float, float]:
    """Median (CPU seconds per message, of which in the cyclic GC) over ``rounds`` runs."""
    samples: list[tuple[float, float]] = []
    gc_time = 0.0
    gc_started = 0.0

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        nonlocal gc_time, gc_started
        if phase == "start":
            gc_started = time.process_time()
        else:
            gc_time += time.process_time() - gc_started

    for _ in range(rounds):
        gc.collect()
        gc_time = 0.0
        gc.callbacks.append(on_gc)
        try:
            start = time.process_time()
            run_virtual(MODES[mode](n, None))
            total = time.process_time() - start
        finally:
            gc.callbacks.remove(on_gc)
        samples.append((total / n, gc_time / n))
    samples.sort()
    return samples[len(samples) // 2]


def memory(mode: str, n: int) -> tuple[float, float]:
    """(bytes per queued send at the probe, peak bytes of the whole run) under tracemalloc."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    seen: list[int] = []

    def probe() -> None:
        seen.append(tracemalloc.get_traced_memory()[0] - base)

    try:
        run_virtual(MODES[mode](n, probe))
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return (max(seen) / n if seen else 0.0), float(peak)


def run(sizes: list[int], rounds: int) -> list[dict[str, Any]]:
    rows = []
    for mode in MODES:
        for n in sizes:
            cpu, in_gc = cpu_per_message(mode, n, rounds if n <= 10_000 else 1)
            per_send, peak = memory(mode, n)
            row = {
                "mode": mode,
                "n": n,
                "cpu_us": cpu * 1e6,
                "gc_us": in_gc * 1e6,
                "per_send": per_send,
                "peak": peak,
            }
            rows.append(row)
            print(
                f"{mode:32} N={n:>7,}  CPU {row['cpu_us']:7.1f} µs/msg "
                f"(GC {row['gc_us']:5.1f})  memory {per_send:7,.0f} B/queued send  "
                f"peak {peak / 1e6:7.2f} MB",
                flush=True,
            )
    return rows


def render(rows: list[dict[str, Any]], command: str) -> str:
    sizes = sorted({row["n"] for row in rows})
    lines = [
        SECTION,
        "",
        f"Measured with `{command}` on CPython {platform.python_version()}, "
        f"{platform.machine()}, a shared 2-core machine. A transport whose `_deliver` answers "
        f"after {LATENCY * 1000:.0f} ms sends N messages under a {RATE:,.0f}/s rate limit on a "
        "virtual clock (time jumps to the next timer, so only CPU is measured); composition is "
        "skipped, so this is the cost of the transport's machinery alone (slots, the rate "
        "limiter's FIFO, drain tracking, `send_many`'s workers). CPU is `time.process_time()` "
        "per message (median of 3 runs up to 10k, one run at 100k); memory is measured in a "
        "separate run under `tracemalloc`.",
        "",
        "| mode | " + " | ".join(f"CPU µs/msg (GC), N={n:,}" for n in sizes) + " | memory |",
        "|---|" + "---:|" * len(sizes) + "---|",
    ]
    for mode in MODES:
        mine = {row["n"]: row for row in rows if row["mode"] == mode}
        cells = [f"{mine[n]['cpu_us']:.1f} ({mine[n]['gc_us']:.1f})" for n in sizes]
        if mode.startswith("send_many"):
            memo = ", ".join(f"{mine[n]['peak'] / 1e6:.2f} MB peak at {n:,}" for n in sizes)
        else:
            memo = ", ".join(f"{mine[n]['per_send']:,.0f} B/send at {n:,}" for n in sizes)
        lines.append(f"| {mode} | " + " | ".join(cells) + f" | {memo} |")
    lines += [
        "",
        "Scheduling is O(1) per message: every wake-up pops one waiter from a FIFO (the "
        "connection slots' semaphore, the rate limiter's lock; `send_many` wakes only the "
        "consumer, through one future per message), so CPU per message outside the garbage "
        "collector does not grow with the queue. What does grow with 100k *tasks* queued at "
        "once is the time Python's cyclic GC spends walking hundreds of MB of live task "
        "objects (the number in brackets); `send_many` keeps its memory, and so its GC cost, "
        "flat. A queued `send_mail` costs a task, its coroutine frames and a book-keeping record "
        "(the message itself comes on top: its composed size). `send_many` keeps "
        "`concurrency` workers and at most 2 × concurrency outcomes, whatever N: prefer it "
        "for large batches (its peak reaches 0.8 MB once the rate limiter's one-second log "
        "holds a full second of grants, 5,000 here, and stays there).",
        "",
    ]
    return "\n".join(lines)


def write_docs(text: str) -> None:
    current = DOCS.read_text(encoding="utf-8") if DOCS.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text, current)
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    DOCS.write_text(updated, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    rows = run(args.sizes, args.rounds)
    small, large = min(args.sizes), max(args.sizes)
    for mode in MODES:
        mine = {row["n"]: row for row in rows if row["mode"] == mode}
        ratio = mine[large]["cpu_us"] / mine[small]["cpu_us"]
        outside = (mine[large]["cpu_us"] - mine[large]["gc_us"]) / (
            mine[small]["cpu_us"] - mine[small]["gc_us"]
        )
        print(
            f"{mode}: CPU per message at N={large:,} ÷ N={small:,} = {ratio:.2f} "
            f"({outside:.2f} outside the GC)"
        )
    if args.write_docs:
        command = "python bench/bench_queue.py " + " ".join(sys.argv[1:])
        write_docs(render(rows, command.strip()))
        print(f"wrote the {SECTION!r} section of {DOCS}")


if __name__ == "__main__":
    main()
