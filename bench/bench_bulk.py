"""Bulk sending: ``send_bulk`` (SendBulkEmail) against ``send_mail``, Nodemailer 10, the rate.

Usage::

    python bench/bench_bulk.py                 # CPU/msg and msgs/s (same run), rate, memory
    python bench/bench_bulk.py --memory 1000000
    python bench/bench_bulk.py --write-docs    # writes docs/bulk-benchmarks.md

Rows (each worker is its own process; the local SES endpoint runs in another, latency 0):

- CPU per delivered message of ``send_bulk`` (50 destinations per request, a stored
  template, small data) against ``send_mail`` of the benchmark message (text + html,
  composed per message) on stock aiobotocore; both with the rate limiter unbinding.
- msgs/s of both, and of Nodemailer 10 composing each message (if ``npm install --prefix
  bench`` was run).
- Rate precision at R ∈ {14, 200} recipients/s: worst 1 s window and sustained rate at the
  endpoint (default ``LocalRateLimiter``).
- Memory: N destinations from an async generator through ``send_bulk`` against a client
  answered in-process (a ``before-send`` handler returning the response: aiobotocore's
  documented short-circuit), peak RSS growth.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

DOC = _common.ROOT / "docs" / "bulk-benchmarks.md"
UNBINDING = 1_000_000.0


def _transport(url: str, **kwargs: Any) -> Any:
    from asyncmailer import SESTransport

    return SESTransport(
        endpoint_url=url, region_name=_common.REGION, **_common.CREDENTIALS, **kwargs
    )


async def _worker_send_mail(url: str, duration: float, warmup: float) -> dict[str, Any]:
    from asyncmailer.errors import MailError

    sent = errors = 0
    async with _transport(url, sending_rate=UNBINDING, max_connections=50) as ses:

        async def loop(until: float) -> None:
            nonlocal sent, errors
            while time.perf_counter() < until:
                try:
                    await ses.send_mail(_common.message())
                    sent += 1
                except MailError:
                    errors += 1

        await asyncio.gather(*(loop(time.perf_counter() + warmup) for _ in range(50)))
        sent = errors = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(loop(wall0 + duration) for _ in range(50)))
        return {
            "sent": sent,
            "errors": errors,
            "cpu": time.process_time() - cpu0,
            "wall": time.perf_counter() - wall0,
        }


async def _worker_send_bulk(url: str, duration: float, warmup: float) -> dict[str, Any]:
    from asyncmailer.result import SendResult
    from asyncmailer.templates import BulkDestination, SESTemplate

    template = SESTemplate(name="bench")
    async with _transport(url, sending_rate=UNBINDING, max_connections=10) as ses:

        async def run(until: float) -> tuple[int, int]:
            sent = errors = 0
            stop = False

            async def destinations() -> Any:
                i = 0
                while not stop:
                    i += 1
                    yield BulkDestination(to=f"user{i}@example.org", data={"name": f"User {i}"})

            async with contextlib.aclosing(
                ses.send_bulk(template, destinations(), from_=_common.FROM, concurrency=10)
            ) as outcomes:
                async for outcome in outcomes:
                    if isinstance(outcome, SendResult):
                        sent += 1
                    else:
                        errors += 1
                    if time.perf_counter() >= until:
                        stop = True
                        break
            return sent, errors

        await run(time.perf_counter() + warmup)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        sent, errors = await run(wall0 + duration)
        return {
            "sent": sent,
            "errors": errors,
            "cpu": time.process_time() - cpu0,
            "wall": time.perf_counter() - wall0,
        }


async def _worker_rate(url: str, rate: float, seconds: float) -> dict[str, Any]:
    from asyncmailer.templates import SESTemplate

    n = int(rate * seconds)
    async with _transport(url, sending_rate=rate, max_connections=10) as ses:
        ok = 0
        async with contextlib.aclosing(
            ses.send_bulk(
                SESTemplate(name="bench"),
                (f"user{i}@example.org" for i in range(n)),
                from_=_common.FROM,
                default_data={"name": "you"},
            )
        ) as outcomes:
            async for outcome in outcomes:
                ok += int(not isinstance(outcome, Exception))
        return {"sent": ok, "stale_grants": ses.stale_grants}


async def _worker_memory(n: int) -> dict[str, Any]:
    """``n`` destinations through send_bulk, answered in-process by a before-send handler."""
    from aiobotocore.awsrequest import AioAWSResponse
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    from asyncmailer import SESTransport
    from asyncmailer.templates import BulkDestination, SESTemplate

    class Body:
        def __init__(self, data: bytes) -> None:
            self.data = data

        async def read(self) -> bytes:
            return self.data

    counter = 0

    def answer(request: Any, **_: Any) -> Any:
        nonlocal counter
        entries = json.loads(request.body)["BulkEmailEntries"]
        results = []
        for _entry in entries:
            counter += 1
            results.append({"Status": "SUCCESS", "MessageId": f"m{counter:012d}"})
        body = json.dumps({"BulkEmailEntryResults": results}).encode()
        headers = {"content-type": "application/json", "x-amzn-requestid": "r"}
        return AioAWSResponse(request.url, 200, headers, Body(body))

    def rss_mb() -> float:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    config = AioConfig(retries={"mode": "standard", "total_max_attempts": 1})
    async with get_session().create_client(
        "sesv2",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        config=config,
        **_common.CREDENTIALS,
    ) as client:
        client.meta.events.register("before-send.sesv2.SendBulkEmail", answer)
        async with SESTransport(client, warm_up=False, max_connections=10) as ses:

            async def destinations() -> Any:
                for i in range(n):
                    yield BulkDestination(to=f"user{i}@example.org", data={"i": i})

            sent = 0
            start_rss = rss_mb()
            peak = start_rss
            cpu0, wall0 = time.process_time(), time.perf_counter()
            async with contextlib.aclosing(
                ses.send_bulk(SESTemplate(name="bench"), destinations(), from_=_common.FROM)
            ) as outcomes:
                async for _outcome in outcomes:
                    sent += 1
                    if sent % 20_000 == 0:
                        peak = max(peak, rss_mb())
            peak = max(peak, rss_mb())
    return {
        "sent": sent,
        "rss_start_mb": start_rss,
        "rss_peak_mb": peak,
        "growth_mb": peak - start_rss,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cpu": time.process_time() - cpu0,
        "wall": time.perf_counter() - wall0,
    }


def _create_template(url: str) -> None:
    import boto3

    client = boto3.client(
        "sesv2", endpoint_url=url, region_name=_common.REGION, **_common.CREDENTIALS
    )
    client.create_email_template(
        TemplateName="bench",
        TemplateContent={
            "Subject": "Hello {{name}}",
            "Text": "Hello {{name}}, thanks for your order.",
            "Html": "<p>Hello <b>{{name}}</b>, thanks for your order.</p>",
        },
    )


def _worker(args: argparse.Namespace) -> None:
    if args.worker == "send_mail":
        result = asyncio.run(_worker_send_mail(args.url, args.duration, args.warmup))
    elif args.worker == "send_bulk":
        result = asyncio.run(_worker_send_bulk(args.url, args.duration, args.warmup))
    elif args.worker == "rate":
        result = asyncio.run(_worker_rate(args.url, args.rate, args.seconds))
    else:
        result = asyncio.run(_worker_memory(args.memory))
    print(json.dumps(result))


def _me(*extra: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=["send_mail", "send_bulk", "rate", "memory"])
    parser.add_argument("--url")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--memory", type=int, default=100_000, help="destinations (memory row)")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return

    rows: list[str] = []
    samples: dict[str, list[dict[str, Any]]] = {
        "send_mail": [],
        "send_bulk": [],
        "nodemailer10": [],
    }
    with _common.endpoint("--latency", "0") as ep:
        node = "nodemailer10" in _common.node_packages()
        with_node = ["nodemailer10"] if node else []
        message_file = Path("/tmp/bench-bulk-message.json")
        message_file.write_text(_common.message_json())
        for _ in range(args.rounds):
            for name in ["send_mail", "send_bulk", *with_node]:
                ep.remote.reset()
                _create_template(ep.url)
                if name == "nodemailer10":
                    config = {
                        "package": "nodemailer10",
                        "url": ep.url,
                        "message": str(message_file),
                        "concurrency": 50,
                        "mode": "duration",
                        "duration": args.duration,
                        "warmup": args.warmup,
                    }
                    cmd = [
                        "node",
                        str(_common.BENCH / "node" / "send_nodemailer.js"),
                        json.dumps(config),
                    ]
                else:
                    common = ["--url", ep.url, "--duration", str(args.duration)]
                    cmd = _me("--worker", name, *common, "--warmup", str(args.warmup))
                result = _common.run_json(cmd)
                samples[name].append(result)
                print(name, result, file=sys.stderr)
    med: dict[str, tuple[float, float]] = {}
    for name, runs in samples.items():
        if runs:
            rate = _common.median([r["sent"] / r["wall"] for r in runs])
            cpu = _common.median([r["cpu"] / max(1, r["sent"]) * 1e6 for r in runs])
            med[name] = (rate, cpu)
    rows.append("| contender | msgs/s (median) | client CPU µs/msg (median) |")
    rows.append("|---|---:|---:|")
    labels = {
        "send_mail": "`send_mail` (composes each message, SESv2 raw)",
        "send_bulk": "`send_bulk` (stored template, 50 destinations/request)",
        "nodemailer10": "Nodemailer 10 SES (SESv2, composes)",
    }
    for name, (rate, cpu) in med.items():
        rows.append(f"| {labels[name]} | {rate:,.0f} | {cpu:,.0f} |")
    checks = []
    if "send_mail" in med and "send_bulk" in med:
        ratio = med["send_bulk"][1] / med["send_mail"][1]
        checks.append(f"- CPU/msg `send_bulk` ÷ `send_mail`: **{ratio:.3f}** (target ≤ 0.1)")
    if "nodemailer10" in med and "send_bulk" in med:
        ratio = med["send_bulk"][0] / med["nodemailer10"][0]
        checks.append(f"- msgs/s `send_bulk` ÷ Nodemailer 10: **{ratio:.1f}×** (target ≥ 10×)")

    rate_rows = [
        "| R (recipients/s) | worst 1 s window | sustained | sustained ÷ R | requests | errors |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for rate in (14.0, 200.0):
        with _common.endpoint("--latency", "0", "--throttle-rate", str(rate)) as ep:
            _create_template(ep.url)
            _common.run_json(
                _me(
                    "--worker",
                    "rate",
                    "--url",
                    ep.url,
                    "--rate",
                    str(rate),
                    "--seconds",
                    str(args.seconds),
                )
            )
            stats = ep.remote.stats()
            worst = stats.max_starts_in_window(1.0, weighted=True)
            sustained = stats.sustained_rate(weighted=True)
            requests = stats.requests.get("sesv2:SendBulkEmail", 0)
            rate_rows.append(
                f"| {rate:g} | {worst} | {sustained:.1f} | {sustained / rate:.3f} | {requests} | "
                f"{sum(stats.errors.values())} |"
            )
    memory = _common.run_json(_me("--worker", "memory", "--memory", str(args.memory)), timeout=3600)
    body = "\n".join(
        [
            f"Measured with `{_common.command_line()}` on {_common.machine()}.",
            "",
            "### CPU and throughput (same run, endpoint latency 0, rate limiter unbinding)",
            "",
            *rows,
            "",
            *checks,
            "",
            f"### Rate precision (default `LocalRateLimiter`, {args.seconds:g} s each, endpoint "
            "in its own process)",
            "",
            *rate_rows,
            "",
            "### Memory",
            "",
            f"{memory['sent']:,} destinations from an async generator, answered in-process: "
            f"peak RSS growth **{memory['growth_mb']:.1f} MB** (target ≤ 50 MB for 1 000 000), "
            f"{memory['sent'] / memory['wall']:,.0f} destinations/s, "
            f"{memory['cpu'] / memory['sent'] * 1e6:.0f} µs CPU each.",
        ]
    )
    print(body)
    if args.write_docs:
        DOC.write_text("# Bulk sending benchmarks\n\n" + body + "\n")


if __name__ == "__main__":
    main()
