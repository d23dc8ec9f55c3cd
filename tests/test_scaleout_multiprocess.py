"""Four OS processes share one SES rate through Redis, measured where SES would measure it.

Each worker process runs a real :class:`~asyncmailer.SESTransport` (real aiobotocore,
SESv2) with a :class:`~asyncmailer.limits.redis.RedisRateLimiter` on one shared key and
sends flat out to the local SES endpoint (:class:`~asyncmailer.testing.SESEndpoint`, in a
thread of the test process, ``throttle_rate`` set to the rate as SES would). Across all
processes, the send requests arriving at the endpoint in any sliding one-second window
must never exceed R, and the aggregate sustained rate must be at least 0.97 R.

The worker processes start once per module (importing aiobotocore costs about a second of
CPU each) and run one phase per test: prepare (open the transport, warm its connections
with direct client calls that bypass the limiter), wait for everyone, go, report.
``SCALEOUT_SECONDS`` overrides the length of each phase.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncmailer.testing import SESEndpoint
from tests.redis_helpers import RedisServer, require_redis_server

pytestmark = [pytest.mark.redis, pytest.mark.timing]

PROCESSES = 4
ROOT = Path(__file__).resolve().parent.parent

WORKER = r"""
import asyncio, contextvars, json, sys, time

from asyncmailer import Limits, SESTransport
from asyncmailer.errors import MailError
from asyncmailer.limits.redis import RedisRateLimiter

granted_at = contextvars.ContextVar("granted_at", default=0.0)


class TimedLimiter(RedisRateLimiter):
    # Records when each grant returned (time.monotonic is shared by all processes).

    async def acquire(self, weight=1):
        waited = await super().acquire(weight)
        granted_at.set(time.monotonic())
        return waited


def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def phase(cfg, loop):
    limiter = TimedLimiter(cfg["redis"], key=cfg["key"], rate=cfg["rate"])
    transport = SESTransport(
        api="v2",
        endpoint_url=cfg["endpoint"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        limits=Limits(rate_limiter=limiter),
        max_connections=cfg["connections"],
    )
    raw = (
        b"From: shop@example.com\r\nTo: ada@example.com\r\nSubject: Hi\r\n"
        b"Message-ID: <warm@example.com>\r\n\r\nHello\r\n"
    )
    async with transport:
        # Warm the connection pool and botocore's caches without touching the limiter.
        await asyncio.gather(*(
            transport.client.send_email(
                FromEmailAddress="shop@example.com",
                Destination={"ToAddresses": ["ada@example.com"]},
                Content={"Raw": {"Data": raw}},
            )
            for _ in range(cfg["warm"])
        ), return_exceptions=True)
        say({"ready": True})
        go = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
        end = time.monotonic() + go["duration"]
        sent = 0
        grants = []
        errors = {}
        cpu = time.process_time()

        async def worker():
            nonlocal sent
            while time.monotonic() < end:
                try:
                    result = await transport.send_mail(
                        from_="shop@example.com", to="ada@example.com",
                        subject="Scale-out", text="Hello from several processes",
                    )
                    sent += 1
                    grants.append((result.response, granted_at.get()))
                except MailError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

        await asyncio.gather(*(worker() for _ in range(cfg["tasks"])))
        cpu = time.process_time() - cpu
    say({"sent": sent, "errors": errors, "cpu": cpu, "grants": grants})


async def main():
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        await phase(json.loads(line), loop)


asyncio.run(main())
"""


class Fleet:
    """The worker processes, driven over their stdin/stdout with JSON lines."""

    def __init__(self, script: Path, count: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for name in list(env):
            if name.startswith("AWS_"):
                del env[name]
        self.processes = [
            subprocess.Popen(
                [sys.executable, str(script)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=ROOT,
                env=env,
                text=True,
            )
            for _ in range(count)
        ]

    def _send(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj) + "\n"
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write(line)
            process.stdin.flush()

    def _receive(self) -> list[dict[str, Any]]:
        answers = []
        for process in self.processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"worker {process.pid} exited (code {process.wait()})")
            answers.append(json.loads(line))
        return answers

    def run(
        self, endpoint: SESEndpoint, *, redis_url: str, key: str, rate: float, duration: float
    ) -> list[dict[str, Any]]:
        """One phase: every worker sends flat out for ``duration`` seconds on ``key``."""
        self._send(
            {
                "redis": redis_url,
                "endpoint": endpoint.url,
                "key": key,
                "rate": rate,
                "connections": 10,
                "tasks": 4,
                "warm": 2,
            }
        )
        self._receive()  # all ready: transports open, connections warm
        endpoint.reset()  # forget the warm-up requests
        endpoint.configure(throttle_rate=rate)  # and throttle from now on, as SES would
        self._send({"duration": duration})
        return self._receive()

    def close(self) -> None:
        for process in self.processes:
            assert process.stdin is not None
            try:
                process.stdin.close()
            except BrokenPipeError:  # the worker died; wait() reports it
                pass
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = RedisServer(require_redis_server())
    server.start()
    try:
        yield server.url
    finally:
        server.kill()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[SESEndpoint]:
    with SESEndpoint().run_in_thread() as running:
        yield running


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Fleet]:
    script = tmp_path_factory.mktemp("scaleout") / "worker.py"
    script.write_text(WORKER)
    workers = Fleet(script, PROCESSES)
    try:
        yield workers
    finally:
        workers.close()


def _phase_seconds(default: float) -> float:
    return float(os.environ.get("SCALEOUT_SECONDS", default))


def _check(fleet: Fleet, endpoint: SESEndpoint, redis_url: str, rate: int, duration: float) -> None:
    results = fleet.run(
        endpoint,
        redis_url=redis_url,
        key=f"ses:test{rate}:{time.time()}",
        rate=rate,
        duration=duration,
    )
    stats = endpoint.stats()
    sent = sum(r["sent"] for r in results)
    worst = stats.max_starts_in_window(1.0)
    sustained = stats.sustained_rate()
    cpu_per_message = sum(r["cpu"] for r in results) / max(sent, 1)
    # How long after its grant each request reached the endpoint: what `margin` must cover.
    arrivals = {m.message_id: m.arrival for m in endpoint.messages()}
    delays = sorted(
        arrivals[ses_id] - at for r in results for ses_id, at in r["grants"] if ses_id in arrivals
    )
    spread = (
        f"grant→arrival ms p50 {delays[len(delays) // 2] * 1e3:.1f} "
        f"p99 {delays[int(len(delays) * 0.99)] * 1e3:.1f} max {delays[-1] * 1e3:.1f}"
        if delays
        else "no grants"
    )
    report = (
        f"R={rate}: {sent} sent by {PROCESSES} processes in {duration}s, worst 1-s window "
        f"{worst}, sustained {sustained:.2f}/s ({sustained / rate:.3f} R), per process "
        f"{[r['sent'] for r in results]}, client CPU {cpu_per_message * 1e6:.0f} µs/message, "
        f"errors {stats.errors} {[r['errors'] for r in results]}, {spread}"
    )
    print(report)
    assert not stats.errors, report
    assert all(not r["errors"] for r in results), report
    assert stats.messages_accepted == sent, report
    assert worst <= rate, report
    assert sustained >= 0.97 * rate, report
    # Every process got a fair part of the rate (FIFO reservations across processes).
    assert min(r["sent"] for r in results) >= 0.5 * sent / PROCESSES, report


@pytest.mark.parametrize("rate", [200, 14])
def test_four_processes_share_the_rate(
    fleet: Fleet, endpoint: SESEndpoint, redis_url: str, rate: int
) -> None:
    _check(fleet, endpoint, redis_url, rate, _phase_seconds(3.0))


@pytest.mark.slow
@pytest.mark.parametrize("rate", [200, 14])
def test_four_processes_share_the_rate_long(
    fleet: Fleet, endpoint: SESEndpoint, redis_url: str, rate: int
) -> None:
    _check(fleet, endpoint, redis_url, rate, _phase_seconds(8.0))
