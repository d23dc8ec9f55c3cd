"""The outbox under real crashes: worker processes SIGKILLed, Redis killed and restarted.

Crash campaign: ``ASYNCMAILER_OUTBOX_MESSAGES`` messages (600 here; ``nox -s
outbox_campaign`` runs 10 000) are enqueued; 4 worker processes (``asyncmailer outbox
work``, SESTransport, one RedisRateLimiter at R/s) send them to the local SES endpoint
running in its own process; every 2 s one worker is SIGKILLed and restarted. Every id must
end sent, failed or unknown; every message arrives at the endpoint at most once; the ones
that arrived but are not reported sent are unknown; unknowns ≤ kills × concurrency; and
no 1-second window at the endpoint holds more than R sends. The figures are printed and,
with ``ASYNCMAILER_OUTBOX_REPORT=path``, written as JSON.

Redis restart: Redis (AOF) is SIGKILLed and restarted while messages are enqueued; with
``appendfsync always`` no acknowledged enqueue is lost; with ``everysec`` the loss window
is measured.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
import redis.exceptions

from asyncmailer.outbox import Outbox, OutboxState
from asyncmailer.testing import RemoteEndpoint
from asyncmailer.transports.memory import MemoryTransport
from asyncmailer.transports.ses import SESTransport
from tests.redis_helpers import RedisServer, redis_server_fixture, require_redis_server  # noqa: F401

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = int(os.environ.get("ASYNCMAILER_OUTBOX_MESSAGES", "600"))
RATE = int(os.environ.get("ASYNCMAILER_OUTBOX_RATE", "200"))
WORKERS = 4
CONCURRENCY = 8
KILL_EVERY = 2.0
STREAM = "mail:{campaign}"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        PYTHONPATH=str(ROOT),
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    return env


def _start_endpoint() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "asyncmailer.testing", "--port", "0", "--throttle-rate", str(RATE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=_env(),
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def _start_worker(redis_url: str, endpoint: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asyncmailer",
            "outbox",
            "--redis",
            redis_url,
            "--stream",
            STREAM,
            "work",
            "--transport",
            "ses",
            "--api",
            "v2",
            "--region",
            "us-east-1",
            "--endpoint-url",
            endpoint,
            "--sending-rate",
            str(RATE),
            "--rate-key",
            "ses:{campaign}:rate",
            "--max-connections",
            str(CONCURRENCY),
            "--concurrency",
            str(CONCURRENCY),
            "--claim-idle",
            "2",
            "--max-attempts",
            "3",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=_env(),
    )


async def _enqueue_all(redis_url: str, count: int) -> dict[str, str]:
    """Enqueue ``count`` messages; outbox id -> Message-ID."""
    transport = SESTransport(api="v2", region_name="us-east-1")  # composes only: never opened
    ids: dict[str, str] = {}
    async with Outbox(redis_url, transport=transport, stream=STREAM) as outbox:

        async def one(i: int) -> None:
            outbox_id = await outbox.enqueue(
                from_="shop@example.com",
                to=f"user{i}@example.org",
                subject=f"Campaign {i}",
                text=f"Message number {i}\n" * 20,
                key=f"campaign-{i}",
            )
            status = await outbox.status(outbox_id)
            assert status is not None and status.message_id is not None
            ids[outbox_id] = status.message_id

        for start in range(0, count, 100):
            await asyncio.gather(*(one(i) for i in range(start, min(count, start + 100))))
    return ids


def _message_id(raw: bytes) -> str | None:
    """The Message-ID header of a stored message, with its angle brackets."""
    import email.parser
    import email.policy

    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    value = parsed["Message-ID"]
    return None if value is None else str(value).strip()


async def _progress(redis_url: str) -> tuple[int, int, int]:
    async with Outbox(redis_url, transport=MemoryTransport(), stream=STREAM) as outbox:
        stats = await outbox.stats()
    return stats.queued + stats.scheduled, stats.in_flight, stats.sent_total


async def _statuses(redis_url: str, ids: list[str]) -> dict[str, Any]:
    async with Outbox(redis_url, transport=MemoryTransport(), stream=STREAM) as outbox:
        return {i: await outbox.status(i) for i in ids}


def test_crash_campaign(redis_server: RedisServer) -> None:
    endpoint_process, endpoint = _start_endpoint()
    workers: list[subprocess.Popen[bytes]] = []
    rng = random.Random(1)
    kills = 0
    try:
        started = time.monotonic()
        ids = asyncio.run(_enqueue_all(redis_server.url, MESSAGES))
        enqueue_seconds = time.monotonic() - started
        assert len(ids) == MESSAGES
        workers = [_start_worker(redis_server.url, endpoint) for _ in range(WORKERS)]
        run_started = time.monotonic()
        # Generous: on a loaded machine restarted workers spend seconds importing.
        deadline = run_started + 120 + MESSAGES / 5
        next_kill = run_started + KILL_EVERY
        while True:
            waiting, in_flight, _ = asyncio.run(_progress(redis_server.url))
            if waiting == 0 and in_flight == 0:
                break
            assert time.monotonic() < deadline, f"not done: {waiting} waiting, {in_flight} held"
            if time.monotonic() >= next_kill and waiting > 0:
                index = rng.randrange(len(workers))
                workers[index].send_signal(signal.SIGKILL)
                workers[index].wait()
                kills += 1
                workers[index] = _start_worker(redis_server.url, endpoint)
                next_kill += KILL_EVERY
            time.sleep(0.1)
        run_seconds = time.monotonic() - run_started
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        # 0: stopped gracefully; -SIGTERM: restarted so recently it was still importing.
        codes = [worker.wait(timeout=30) for worker in workers]
        assert set(codes) <= {0, -signal.SIGTERM} and 0 in codes, codes

        statuses = asyncio.run(_statuses(redis_server.url, list(ids)))
        remote = RemoteEndpoint(endpoint)
        records = remote.messages(raw=True)
        arrived = Counter(_message_id(m.raw) for m in records)
        stats = remote.stats()
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        endpoint_process.send_signal(signal.SIGTERM)
        endpoint_process.wait(timeout=10)
        assert endpoint_process.stdout is not None
        endpoint_process.stdout.close()

    states = Counter(s.state.value if s is not None else "lost" for s in statuses.values())
    unknown = [i for i, s in statuses.items() if s is not None and s.state is OutboxState.UNKNOWN]
    duplicates = {m: n for m, n in arrived.items() if n > 1}
    arrived_not_sent = [
        i
        for i, s in statuses.items()
        if arrived.get(ids[i]) and (s is None or s.state is not OutboxState.SENT)
    ]
    max_window = stats.max_starts_in_window(1.0, weighted=True)
    report = {
        "messages": MESSAGES,
        "rate": RATE,
        "workers": WORKERS,
        "concurrency": CONCURRENCY,
        "kills": kills,
        "states": dict(states),
        "unknown": len(unknown),
        "unknown_bound": kills * CONCURRENCY,
        "unknown_that_arrived": sum(1 for i in unknown if arrived.get(ids[i])),
        "arrivals": sum(arrived.values()),
        "duplicates": len(duplicates),
        "max_1s_window": max_window,
        "endpoint_errors": dict(stats.errors),
        "enqueue_seconds": round(enqueue_seconds, 2),
        "run_seconds": round(run_seconds, 2),
    }
    print("\noutbox crash campaign:", json.dumps(report))
    if os.environ.get("ASYNCMAILER_OUTBOX_REPORT"):
        Path(os.environ["ASYNCMAILER_OUTBOX_REPORT"]).write_text(json.dumps(report, indent=2))

    assert states.get("lost", 0) == 0
    assert set(states) <= {"sent", "failed", "unknown"}, states
    assert not duplicates
    for outbox_id, status in statuses.items():
        if status.state is OutboxState.SENT:
            assert arrived[ids[outbox_id]] == 1, outbox_id
    assert set(arrived_not_sent) <= set(unknown)
    assert kills >= 1
    assert len(unknown) <= kills * CONCURRENCY
    assert max_window <= RATE


# ----------------------------------------------------------------------- Redis restart


class AofRedis:
    """A redis-server with an append-only file in ``directory``; kill -9 and restart it."""

    def __init__(self, directory: Path, fsync: str) -> None:
        self.binary = require_redis_server()
        self.directory = directory
        self.fsync = fsync
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                self.fsync,
                "--dir",
                str(self.directory),
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        probe = RedisServer(self.binary, self.port)
        deadline = time.monotonic() + 10
        while not probe.ping():
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.01)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


async def _restart_run(server: AofRedis, seconds: float) -> dict[str, Any]:
    """Enqueue for ``seconds`` while a worker sends; kill -9 Redis halfway, restart it."""
    acked: list[tuple[str, float]] = []
    errors = 0
    killed_at = 0.0
    async with MemoryTransport() as memory:
        client = redis.asyncio.Redis.from_url(server.url, socket_timeout=2)
        outbox = Outbox(client, transport=memory, stream="restart")
        await outbox.open()
        stop = time.monotonic() + seconds

        async def enqueuer() -> None:
            nonlocal errors
            i = 0
            while time.monotonic() < stop:
                try:
                    outbox_id = await outbox.enqueue(
                        from_="a@example.com", to="b@example.com", text="x", key=f"r{i}"
                    )
                except (redis.exceptions.RedisError, OSError):
                    errors += 1
                    await asyncio.sleep(0.01)
                    continue  # retry the same key: safe
                acked.append((outbox_id, time.monotonic()))
                i += 1

        async def chaos() -> None:
            nonlocal killed_at
            await asyncio.sleep(seconds / 2)
            killed_at = time.monotonic()
            server.kill()
            await asyncio.sleep(0.3)
            await asyncio.to_thread(server.start)

        async with outbox.worker(concurrency=4, claim_idle=1):
            await asyncio.gather(*(enqueuer() for _ in range(4)), chaos())
            await outbox.wait_idle(timeout=30)
        lost = [(i, t) for i, t in acked if await outbox.status(i) is None]
        lost_ids = {i for i, _ in lost}
        states: Counter[str] = Counter()
        for outbox_id, _ in acked:
            status = await outbox.status(outbox_id)
            if outbox_id not in lost_ids and status is not None:
                states[status.state.value] += 1
        await client.aclose()
    window = (killed_at - min(t for _, t in lost)) if lost else 0.0
    return {
        "fsync": server.fsync,
        "acknowledged": len(acked),
        "lost": len(lost),
        "loss_window_s": round(window, 3),
        "enqueue_errors_retried": errors,
        "states": dict(states),
    }


# The everysec run joins the normal suite's "always" one in the long campaign session.
FSYNC_MODES = ["always", "everysec"] if "ASYNCMAILER_OUTBOX_MESSAGES" in os.environ else ["always"]


@pytest.mark.parametrize("fsync", FSYNC_MODES)
def test_redis_restart(tmp_path: Path, fsync: str) -> None:
    server = AofRedis(tmp_path, fsync)
    server.start()
    try:
        report = asyncio.run(_restart_run(server, 2.0))
    finally:
        server.kill()
    print(f"\noutbox redis restart ({fsync}):", json.dumps(report))
    assert report["acknowledged"] > 100
    if fsync == "always":
        assert report["lost"] == 0
    else:
        assert report["loss_window_s"] <= 2.5  # about a second of writes, at most
    assert set(report["states"]) <= {"sent"}
