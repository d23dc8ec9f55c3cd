"""Rate precision where SES measures it: at the endpoint, senders in their own processes.

``python -m tests.rate_campaign --runs 20 --rate 200 --busy both`` runs every setup
(``tests/rate_client.py``) ``--runs`` times against the local SES endpoint running in a
process of its own, and prints one JSON line per run and a Markdown summary:

- ``a``: the transport-created client; ``b``: a cold aiobotocore client passed in;
- ``c``: 4 processes sharing ``RedisRateLimiter`` that start at the same instant;
- ``d``: the same 4 processes started one by one (``--stagger`` s apart) while the
  others send.

``--busy`` adds 2 CPU-bound processes for the whole run (``on``), none (``off``), or
runs each setup both ways (``both``). A run passes when the worst sliding one-second
window at the endpoint holds at most R send requests and the sustained rate (between the
first arrival + 0.5 s and the last) is at least ``--sustain`` × R.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncmailer.testing import RemoteEndpoint

ROOT = Path(__file__).resolve().parents[1]
SETUPS = ("a", "b", "c", "d")


@dataclass
class RunResult:
    """One run of one setup, as the endpoint saw it."""

    setup: str
    rate: int
    busy: bool
    worst: int
    sustained: float
    sent: int
    accepted: int
    stale: int
    errors: dict[str, int]

    def passed(self, sustain: float) -> bool:
        """Both targets met, and every send accounted for without error."""
        return (
            self.worst <= self.rate
            and self.sustained >= sustain * self.rate
            and not self.errors
            and self.accepted == self.sent
        )


def _burn(stop_at: float) -> None:  # pragma: no cover - runs in a child process
    while time.time() < stop_at:
        pass


@contextlib.contextmanager
def endpoint_process() -> Iterator[RemoteEndpoint]:
    """The local SES endpoint in a process of its own."""
    process = subprocess.Popen(
        [sys.executable, "-m", "asyncmailer.testing", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the endpoint did not start: {url!r}")
        yield RemoteEndpoint(url)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


@contextlib.contextmanager
def redis_process() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port."""
    import socket

    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not on PATH (apt-get install -y redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tempfile.mkdtemp()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        cwd=workdir,
    )
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def run_once(
    remote: RemoteEndpoint,
    setup: str,
    rate: int,
    *,
    busy: bool,
    seconds: float,
    redis: str | None,
    stagger: float,
) -> RunResult:
    """One run of ``setup``: senders started, endpoint measured, result returned."""
    processes = 4 if setup in ("c", "d") else 1
    remote.reset()
    # Start far enough ahead for every process to import aiobotocore first.
    start_at = time.time() + 2.5
    end_at = start_at + seconds + (stagger * (processes - 1) if setup == "d" else 0.0)
    burners = []
    if busy:
        context = multiprocessing.get_context("spawn")
        burners = [context.Process(target=_burn, args=(end_at + 0.5,)) for _ in range(2)]
        for burner in burners:
            burner.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    children = []
    key = f"ses:campaign:{time.time()}:{setup}"  # one shared rate for this run's processes
    for index in range(processes):
        config: dict[str, Any] = {
            "setup": setup,
            "url": remote.url,
            "rate": rate,
            "redis": redis,
            "key": key,
            "index": index,
            "start_at": start_at + (stagger * index if setup == "d" else 0.0),
            "end_at": end_at,
        }
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.rate_client", json.dumps(config)],
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
                env=env,
            )
        )
    reports = []
    for child in children:
        out, _ = child.communicate(timeout=seconds + 120)
        if child.returncode != 0:
            raise RuntimeError(f"sender exited with {child.returncode}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    for burner in burners:
        burner.join()
    stats = remote.stats()
    arrivals = sorted(stats.send_arrivals)
    span = [t for t in arrivals if arrivals[0] + 0.5 <= t]
    sustained = (len(span) - 1) / (span[-1] - span[0]) if len(span) > 1 else 0.0
    errors: dict[str, int] = dict(stats.errors)
    for report in reports:
        for name, count in report["errors"].items():
            errors[name] = errors.get(name, 0) + count
    return RunResult(
        setup=setup,
        rate=rate,
        busy=busy,
        worst=int(stats.max_starts_in_window(1.0)),
        sustained=sustained,
        sent=sum(r["sent"] for r in reports),
        accepted=stats.messages_accepted,
        stale=sum(r["stale"] for r in reports),
        errors=errors,
    )


def summarize(results: list[RunResult], sustain: float) -> str:
    """A Markdown table: one row per (setup, rate, busy)."""
    lines = [
        "| setup | R | other CPU-bound processes | runs | passed | worst window (max) | "
        "sustained / R (min, median) | stale grants per run (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r.setup, r.rate, r.busy) for r in results})
    for setup, rate, busy in keys:
        group = [r for r in results if (r.setup, r.rate, r.busy) == (setup, rate, busy)]
        ratios = [r.sustained / rate for r in group]
        lines.append(
            f"| {setup} | {rate} | {2 if busy else 0} | {len(group)} | "
            f"{sum(r.passed(sustain) for r in group)} | {max(r.worst for r in group)} | "
            f"{min(ratios):.3f}, {statistics.median(ratios):.3f} | "
            f"{statistics.median(r.stale for r in group):.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the campaign; exit 1 if any run missed a target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--rate", type=int, nargs="+", default=[200])
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=SETUPS)
    parser.add_argument("--busy", choices=["off", "on", "both"], default="off")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--stagger", type=float, default=1.5)
    parser.add_argument("--sustain", type=float, default=0.98)
    args = parser.parse_args(argv)
    busy_modes = {"off": [False], "on": [True], "both": [False, True]}[args.busy]
    results: list[RunResult] = []
    needs_redis = any(s in ("c", "d") for s in args.setups)
    with contextlib.ExitStack() as stack:
        remote = stack.enter_context(endpoint_process())
        redis = stack.enter_context(redis_process()) if needs_redis else None
        for rate in args.rate:
            for busy in busy_modes:
                for setup in args.setups:
                    for _ in range(args.runs):
                        result = run_once(
                            remote,
                            setup,
                            rate,
                            busy=busy,
                            seconds=args.seconds,
                            redis=redis,
                            stagger=args.stagger,
                        )
                        results.append(result)
                        print(json.dumps(result.__dict__), flush=True)
    print(summarize(results, args.sustain))
    return 0 if all(r.passed(args.sustain) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
