"""Feedback throughput and suppression lookup latency (docs/feedback-benchmarks.md).

* verify + parse: signed SNS envelopes (SignatureVersion 1 and 2, a bounce event inside),
  verified with a cached certificate and parsed, one after another on one core;
* parse only: the same bodies through ``parse_ses_event``;
* hostile input: forged signatures, foreign/look-alike/http certificate URLs, oversized and
  non-JSON bodies, replays: each must raise ``SNSVerificationError``, and the resolver
  must never be called;
* suppression lookups for a 50-recipient message: in memory, and in Redis (one ``HMGET``;
  the script starts a redis-server unless ``--redis-url`` is given).

    python bench/bench_feedback.py
    python bench/bench_feedback.py --seconds 3 --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from asyncmailer.feedback import (  # noqa: E402
    MemorySuppressionList,
    RedisSuppressionList,
    SNSVerificationError,
    SuppressionEntry,
    SuppressionReason,
    parse_ses_event,
    verify_sns_message,
)
from tests.feedback_helpers import (  # noqa: E402
    BOUNCE_NOTIFICATION,
    SigningAuthority,
    notification,
    sign,
)


async def rate(func: Any, bodies: list[Any], seconds: float) -> float:
    """Events per CPU second of ``await func(body)`` (process time: the machine is shared)."""
    count = 0
    n = len(bodies)
    start = time.process_time()
    deadline = start + seconds
    while True:
        for _ in range(200):
            await func(bodies[count % n])
            count += 1
        if time.process_time() > deadline:
            break
    return count / (time.process_time() - start)


async def bench_verify(seconds: float) -> dict[str, float]:
    authority = SigningAuthority()
    out: dict[str, float] = {}
    for version in ("1", "2"):
        bodies = [
            json.dumps(
                sign(
                    notification(BOUNCE_NOTIFICATION, message_id=f"id-{i}"), authority.key, version
                )
            ).encode()
            for i in range(100)
        ]

        async def verify_and_parse(body: bytes) -> None:
            sns = await verify_sns_message(body, resolver=authority.resolver)
            parse_ses_event(sns.message)

        out[f"verify+parse v{version}"] = await rate(verify_and_parse, bodies, seconds)

    async def parse_only(body: bytes) -> None:
        parse_ses_event(body)

    out["parse only (SNS envelope)"] = await rate(parse_only, bodies, seconds)
    return out


async def bench_hostile() -> dict[str, str]:
    authority = SigningAuthority()
    calls: list[str] = []

    async def resolver(url: str) -> Any:
        calls.append(url)
        return authority.cert

    good = sign(notification(BOUNCE_NOTIFICATION), authority.key, "2")
    old = sign(
        notification(BOUNCE_NOTIFICATION, when=datetime(2020, 1, 1, tzinfo=timezone.utc)),
        authority.key,
    )
    cases: dict[str, Any] = {
        "foreign host": {**good, "SigningCertURL": "https://evil.com/x.pem"},
        "look-alike host": {
            **good,
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com.evil.com/x.pem",
        },
        "http://": {**good, "SigningCertURL": "http://sns.us-east-1.amazonaws.com/x.pem"},
        "oversized body": b"{" + b" " * (300 * 1024) + b"}",
        "non-JSON": b"\x00garbage",
        "replay (2020)": old,
    }
    out = {}
    for name, body in cases.items():
        try:
            await verify_sns_message(body, resolver=resolver)
            out[name] = "ACCEPTED (bug)"
        except SNSVerificationError as exc:
            out[name] = f"SNSVerificationError({exc.reason})"
    fetches_before_forgery = len(calls)
    forged = {**good, "Message": good["Message"].replace("Permanent", "Transient")}
    try:
        await verify_sns_message(forged, resolver=resolver)
        out["forged signature"] = "ACCEPTED (bug)"
    except SNSVerificationError as exc:
        out["forged signature"] = f"SNSVerificationError({exc.reason})"
    out["resolver calls for the URL/body/replay cases"] = str(fetches_before_forgery)
    return out


async def lookup_us(suppression: Any, recipients: list[str], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        await suppression.suppressed(recipients)
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


async def lookup_cpu_us(suppression: Any, recipients: list[str], rounds: int) -> float:
    start = time.process_time()
    for _ in range(rounds):
        await suppression.suppressed(recipients)
    return (time.process_time() - start) / rounds * 1e6


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found; pass --redis-url")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.02)
    return proc, f"redis://127.0.0.1:{port}/0"


async def bench_suppression(redis_url: str | None, rounds: int) -> dict[str, float]:
    now = datetime.now(timezone.utc)
    entries = [
        SuppressionEntry(email=f"user{i}@example.com", reason=SuppressionReason.BOUNCE, since=now)
        for i in range(0, 10_000, 7)
    ]
    recipients = [f"User{i}@Example.com" for i in range(50)]
    memory = MemorySuppressionList(entries)
    out = {
        "memory, 50 recipients (µs)": await lookup_us(memory, recipients, rounds),
        "memory, 50 recipients, CPU (µs)": await lookup_cpu_us(memory, recipients, rounds),
    }
    proc = None
    if redis_url is None:
        proc, redis_url = start_redis()
    try:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(redis_url)
        suppression = RedisSuppressionList(client, key="bench:suppression")
        await client.delete("bench:suppression")
        for entry in entries:
            await suppression.add(entry)
        await client.ping()
        ping = []
        for _ in range(rounds):
            start = time.perf_counter_ns()
            await client.ping()
            ping.append(time.perf_counter_ns() - start)
        out["redis PING round trip (µs)"] = statistics.median(ping) / 1000
        out["redis, 50 recipients (µs)"] = await lookup_us(suppression, recipients, rounds)
        out["redis, 50 recipients, client CPU (µs)"] = await lookup_cpu_us(
            suppression, recipients, rounds
        )
        await client.delete("bench:suppression")
        await client.aclose()
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}")
    for name, value in (await bench_verify(args.seconds)).items():
        print(f"{name:40s} {value:10,.0f} events/CPU-s")
    for name, outcome in (await bench_hostile()).items():
        print(f"{name:40s} {outcome}")
    for name, value in (await bench_suppression(args.redis_url, args.rounds)).items():
        print(f"{name:40s} {value:10.1f}")


if __name__ == "__main__":
    asyncio.run(main())
