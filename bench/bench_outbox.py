"""The durable outbox's costs, as ratios from one run (docs/durable-sending.md, "Costs").

Measures, with the local SES endpoint and a redis-server each in their own process:

- enqueue latency p50/p99 (one at a time) and enqueue throughput (64 in flight);
- client CPU per message of ``enqueue`` + a worker sending it, versus a direct
  ``send_mail`` of the same message through the same SESTransport (target ≤ 1.5×);
  the two alternate for ``--rounds`` rounds in one run (the machine's load drifts) and
  the median of the per-round ratios is reported; redis-server CPU per message apart;
- Redis memory per queued message versus its composed size (target ≤ 1.2×): the
  dataset's growth (``MEMORY STATS`` ``dataset.bytes``: ``used_memory`` less the server's
  overhead, of which the 64 enqueuing connections' buffers are a fixed part, not a
  per-message one), with the ``used_memory`` delta and per-key ``MEMORY USAGE`` beside it.

Example::

    python bench/bench_outbox.py -n 3000 --rounds 3
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


async def _dataset_bytes(client: Any) -> int:
    stats = await client.execute_command("MEMORY", "STATS")
    if not isinstance(stats, dict):
        stats = dict(zip(stats[::2], stats[1::2], strict=True))
    value = stats.get(b"dataset.bytes", stats.get("dataset.bytes"))
    return int(value)


async def outbox_run(
    url: str, redis_url: str, redis_pid: int, n: int, concurrency: int, latency_n: int, stream: str
) -> dict[str, Any]:
    msg = message()
    client = redis.asyncio.Redis.from_url(redis_url)
    async with (
        transport(url, concurrency) as ses,
        Outbox(client, transport=ses, stream=stream) as box,
    ):
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
        await asyncio.sleep(1)
        mem_before = int((await client.info("memory"))["used_memory"])
        data_before = await _dataset_bytes(client)
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
        data_after = await _dataset_bytes(client)
        # Per-key accounting: the payload and state of one message, and the stream's share.
        ids = [entry[1][b"i"].decode() for entry in await client.xrange(stream, count=1)]
        one_keys = 0
        for key in (box.payload_key(ids[0]), box.state_key(ids[0])):
            one_keys += int(await client.memory_usage(key, samples=0) or 0)
        stream_share = int(await client.memory_usage(stream, samples=0) or 0) / n
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
        "dataset_per_message": (data_after - data_before) / n,
        "keys_per_message": one_keys + stream_share,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3000, help="messages per phase")
    parser.add_argument("--rounds", type=int, default=3, help="direct/outbox alternations")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--latency-n", type=int, default=1000)
    parser.add_argument("--appendfsync", choices=("always", "everysec"), default=None)
    args = parser.parse_args()
    redis_proc, redis_url = start_redis(args.appendfsync)
    rounds: list[tuple[dict[str, float], dict[str, Any]]] = []
    try:
        with endpoint() as ep:
            for index in range(args.rounds):
                d = await direct(ep.url, args.n, args.concurrency)
                o = await outbox_run(
                    ep.url,
                    redis_url,
                    redis_proc.pid,
                    args.n,
                    args.concurrency,
                    args.latency_n,
                    f"b{index}",
                )
                rounds.append((d, o))
    finally:
        redis_proc.terminate()
        redis_proc.wait()
    n = args.n

    def per_msg(seconds: float) -> float:
        return seconds / n * 1e6

    ratios = [
        (o["enqueue_cpu"] + o["work_cpu"]) / d["cpu"] for d, o in rounds
    ]  # per round: both phases under the same load
    mid = sorted(range(len(rounds)), key=lambda i: ratios[i])[len(rounds) // 2]
    d, o = rounds[mid]  # the median round's figures
    report = {
        "messages": n,
        "rounds": args.rounds,
        "composed_size": o["size"],
        "appendfsync": args.appendfsync or "off",
        "enqueue_latency_p50_ms": round(o["latency_p50_ms"], 3),
        "enqueue_latency_p99_ms": round(o["latency_p99_ms"], 3),
        "enqueue_throughput_per_s": round(o["enqueue_per_s"]),
        "direct_send_cpu_us": round(per_msg(d["cpu"])),
        "direct_send_per_s": round(n / d["wall"]),
        "outbox_enqueue_cpu_us": round(per_msg(o["enqueue_cpu"])),
        "outbox_worker_cpu_us": round(per_msg(o["work_cpu"])),
        "outbox_worker_per_s": round(n / o["work_wall"]),
        "cpu_ratio": round(ratios[mid], 2),
        "cpu_ratio_rounds": [round(r, 2) for r in ratios],
        "redis_server_cpu_us": round(per_msg(o["redis_cpu"])),
        "redis_dataset_bytes_per_message": round(o["dataset_per_message"]),
        "memory_ratio": round(o["dataset_per_message"] / o["size"], 3),
        "used_memory_bytes_per_message": round(o["memory_per_message"]),
        "used_memory_ratio": round(o["memory_per_message"] / o["size"], 3),
        "redis_key_bytes_per_message": round(o["keys_per_message"]),
        "key_memory_ratio": round(o["keys_per_message"] / o["size"], 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
