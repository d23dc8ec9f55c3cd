"""The durable outbox's costs, as ratios from one run (docs/durable-sending.md, "Costs").

Measures, with the local SES endpoint and a redis-server each in their own process:

- enqueue latency p50/p99 (one at a time) and enqueue throughput (64 in flight);
- client CPU per message of ``enqueue`` + a worker sending it, versus a direct
  ``send_mail`` of the same message through the same SESTransport (target ≤ 1.5×);
  redis-server CPU per message is reported apart;
- Redis memory per queued message (``used_memory`` delta / messages) versus its composed
  size (target ≤ 1.2×).

Example::

    python bench/bench_outbox.py -n 3000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis.asyncio
from _common import CREDENTIALS, REGION, endpoint, message, percentile, process_cpu

from asyncmailer.outbox import Outbox
from asyncmailer.transports.ses import SESTransport


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(appendfsync: str | None) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = _free_port()
    persistence = ["--appendonly", "no"]
    if appendfsync:
        persistence = ["--appendonly", "yes", "--appendfsync", appendfsync, "--dir", "/tmp"]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", *persistence],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    return proc, f"redis://127.0.0.1:{port}/0"


def transport(url: str, connections: int) -> SESTransport:
    return SESTransport(
        api="v2",
        endpoint_url=url,
        region_name=REGION,
        max_connections=connections,
        **CREDENTIALS,
    )


async def direct(url: str, n: int, concurrency: int) -> dict[str, float]:
    msg = message()
    async with transport(url, concurrency) as ses:
        await asyncio.gather(*(ses.send_mail(msg) for _ in range(concurrency)))  # warm-up
        cpu, wall = time.process_time(), time.perf_counter()
        sem = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with sem:
                await ses.send_mail(msg)

        await asyncio.gather(*(one() for _ in range(n)))
        return {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall}


async def outbox_run(
    url: str, redis_url: str, redis_pid: int, n: int, concurrency: int, latency_n: int
) -> dict[str, Any]:
    msg = message()
    client = redis.asyncio.Redis.from_url(redis_url)
    async with transport(url, concurrency) as ses, Outbox(client, transport=ses, stream="b") as box:
        composed, _ = await ses.prepare(msg)
        size = len(composed.raw)
        # Latency: one at a time.
        latencies = []
        for _ in range(latency_n):
            t = time.perf_counter()
            await box.enqueue(msg)
            latencies.append(time.perf_counter() - t)
        async with box.worker(concurrency=concurrency):
            await box.wait_idle(timeout=600)
        await client.execute_command("MEMORY", "PURGE")
        mem_before = int((await client.info("memory"))["used_memory"])
        # Throughput and CPU of enqueueing.
        sem = asyncio.Semaphore(64)

        async def one() -> None:
            async with sem:
                await box.enqueue(msg)

        redis_cpu = process_cpu(redis_pid)
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        enqueue_cpu, enqueue_wall = time.process_time() - cpu, time.perf_counter() - wall
        redis_enqueue_cpu = process_cpu(redis_pid) - redis_cpu
        await asyncio.sleep(3)  # idle clients' query buffers shrink (serverCron)
        mem_after = int((await client.info("memory"))["used_memory"])
        # Per-key accounting: the payload and state of one message, and the stream's share.
        ids = [entry[1][b"i"].decode() for entry in await client.xrange("b", count=1)]
        one = 0
        for key in (box.payload_key(ids[0]), box.state_key(ids[0])):
            one += int(await client.memory_usage(key, samples=0) or 0)
        stream_share = int(await client.memory_usage("b", samples=0) or 0) / n
        # The worker sends them all.
        redis_cpu = process_cpu(redis_pid)
        cpu, wall = time.process_time(), time.perf_counter()
        async with box.worker(concurrency=concurrency):
            await box.wait_idle(timeout=600, poll=0.5)
        work_cpu, work_wall = time.process_time() - cpu, time.perf_counter() - wall
        redis_work_cpu = process_cpu(redis_pid) - redis_cpu
    await client.aclose()
    return {
        "size": size,
        "latency_p50_ms": percentile(latencies, 50) * 1000,
        "latency_p99_ms": percentile(latencies, 99) * 1000,
        "enqueue_per_s": n / enqueue_wall,
        "enqueue_cpu": enqueue_cpu,
        "work_cpu": work_cpu,
        "work_wall": work_wall,
        "redis_cpu": redis_enqueue_cpu + redis_work_cpu,
        "memory_per_message": (mem_after - mem_before) / n,
        "keys_per_message": one + stream_share,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3000, help="messages per phase")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--latency-n", type=int, default=1000)
    parser.add_argument("--appendfsync", choices=("always", "everysec"), default=None)
    args = parser.parse_args()
    redis_proc, redis_url = start_redis(args.appendfsync)
    try:
        with endpoint() as ep:
            d = await direct(ep.url, args.n, args.concurrency)
            o = await outbox_run(
                ep.url, redis_url, redis_proc.pid, args.n, args.concurrency, args.latency_n
            )
    finally:
        redis_proc.terminate()
        redis_proc.wait()
    n = args.n
    direct_us = d["cpu"] / n * 1e6
    outbox_us = (o["enqueue_cpu"] + o["work_cpu"]) / n * 1e6
    report = {
        "messages": n,
        "composed_size": o["size"],
        "appendfsync": args.appendfsync or "off",
        "enqueue_latency_p50_ms": round(o["latency_p50_ms"], 3),
        "enqueue_latency_p99_ms": round(o["latency_p99_ms"], 3),
        "enqueue_throughput_per_s": round(o["enqueue_per_s"]),
        "direct_send_cpu_us": round(direct_us),
        "direct_send_per_s": round(n / d["wall"]),
        "outbox_enqueue_cpu_us": round(o["enqueue_cpu"] / n * 1e6),
        "outbox_worker_cpu_us": round(o["work_cpu"] / n * 1e6),
        "outbox_worker_per_s": round(n / o["work_wall"]),
        "cpu_ratio": round(outbox_us / direct_us, 2),
        "redis_server_cpu_us": round(o["redis_cpu"] / n * 1e6),
        "redis_bytes_per_message": round(o["memory_per_message"]),
        "memory_ratio": round(o["memory_per_message"] / o["size"], 3),
        "redis_key_bytes_per_message": round(o["keys_per_message"]),
        "key_memory_ratio": round(o["keys_per_message"] / o["size"], 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
