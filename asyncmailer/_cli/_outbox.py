"""``asyncmailer outbox``: run workers and operate a durable outbox (docs/durable-sending.md).

Sub-commands: ``work`` (a worker process until SIGTERM/SIGINT, then a graceful stop),
``drain`` (work until nothing is queued, in flight or due, then exit), ``status`` (the
counts, or the status of given ids), ``retry-unknown --confirm`` and ``requeue-failed``.
The Redis URL and the stream come from ``--redis``/``--stream`` or ``$ASYNCMAILER_REDIS_URL``
/ ``$ASYNCMAILER_OUTBOX_STREAM``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from collections.abc import Callable
from typing import Any

from asyncmailer._cli._output import EXIT_FAILURE, EXIT_USAGE, CLIError, echo
from asyncmailer._cli._transport import add_transport_options, make_transport
from asyncmailer.options import Limits
from asyncmailer.outbox import Outbox, OutboxStats, OutboxStatus
from asyncmailer.retry import RetryPolicy
from asyncmailer.transports import MemoryTransport, SESTransport, Transport

__all__ = ["add_parser", "format_stats", "format_status"]

REDIS_ENV = "ASYNCMAILER_REDIS_URL"
STREAM_ENV = "ASYNCMAILER_OUTBOX_STREAM"


def add_parser(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register ``outbox`` and its sub-commands."""
    parser = add(
        "outbox",
        help="run workers for, and operate, a durable outbox on Redis",
        description="A durable outbox on Redis Streams (docs: Durable sending).",
    )
    parser.add_argument(
        "--redis",
        default=os.environ.get(REDIS_ENV, "redis://localhost:6379/0"),
        metavar="URL",
        help=f"Redis URL (default ${REDIS_ENV} or redis://localhost:6379/0)",
    )
    parser.add_argument(
        "--stream",
        default=os.environ.get(STREAM_ENV, "asyncmailer:outbox"),
        metavar="KEY",
        help=f"the outbox's stream key (default ${STREAM_ENV} or asyncmailer:outbox)",
    )
    parser.add_argument("--group", default="asyncmailer", help="consumer group")
    parser.add_argument("--json", action="store_true", help="print JSON")
    commands = parser.add_subparsers(title="outbox commands", metavar="COMMAND")

    for name, help_text in (
        ("work", "send the outbox's mail until SIGTERM/SIGINT (then stop gracefully)"),
        ("drain", "send until nothing is queued, in flight or due, then exit"),
    ):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--concurrency", type=int, default=8, help="messages at once (8)")
        sub.add_argument(
            "--claim-idle", type=float, default=30.0, help="seconds before claiming (30)"
        )
        sub.add_argument(
            "--rate-key",
            metavar="KEY",
            help="share --sending-rate through Redis with every worker using KEY (SES only)",
        )
        sub.add_argument(
            "--drain-timeout", type=float, default=30.0, help="seconds to finish on stop (30)"
        )
        add_transport_options(sub, default_rate=None)
        sub.set_defaults(handler=_work if name == "work" else _drain)

    status = commands.add_parser("status", help="counts, or the status of the given ids")
    status.add_argument("ids", nargs="*", metavar="ID")
    status.set_defaults(handler=_status)

    unknown = commands.add_parser(
        "retry-unknown",
        help="send unknown messages again (they may be delivered twice)",
        description="Re-queue messages whose outcome is unknown. They may already have "
        "been delivered: --confirm is required.",
    )
    unknown.add_argument("ids", nargs="*", metavar="ID", help="ids (default: all)")
    unknown.add_argument("--confirm", action="store_true", help="I accept possible duplicates")
    unknown.set_defaults(handler=_retry_unknown)

    failed = commands.add_parser("requeue-failed", help="put failed messages back in the queue")
    failed.add_argument("ids", nargs="*", metavar="ID", help="ids (default: all)")
    failed.set_defaults(handler=_requeue_failed)
    parser.set_defaults(handler=_status, ids=[])


def format_stats(stats: OutboxStats) -> str:
    """One line per figure."""
    return "\n".join(
        [
            f"queued      {stats.queued}",
            f"scheduled   {stats.scheduled}",
            f"in flight   {stats.in_flight}",
            f"unknown     {stats.unknown}",
            f"failed      {stats.failed}",
            f"sent total  {stats.sent_total}",
            f"oldest age  {stats.oldest_age:.1f} s",
            f"throughput  {stats.throughput:.1f}/s (last {stats.throughput_window:g} s)",
        ]
    )


def format_status(status: OutboxStatus) -> str:
    """One line: id, state, backend id or error."""
    detail = status.ses_message_id or (
        f"{type(status.error).__name__}: {status.error}" if status.error else ""
    )
    return f"{status.id} {status.state.value} attempts={status.attempts} {detail}".rstrip()


def _outbox(args: argparse.Namespace, transport: Transport | None = None) -> Outbox:
    # Operator commands never send: an unopened MemoryTransport satisfies the constructor.
    return Outbox(
        args.redis,
        transport=transport if transport is not None else MemoryTransport(),
        stream=args.stream,
        group=args.group,
    )


async def _status(args: argparse.Namespace) -> int:
    async with _outbox(args) as outbox:
        if not args.ids:
            stats = await outbox.stats()
            echo(json.dumps(_asdict(stats)) if args.json else format_stats(stats))
            return 0
        missing = 0
        for outbox_id in args.ids:
            status = await outbox.status(outbox_id)
            if status is None:
                missing += 1
                echo(f"{outbox_id} not found")
            elif args.json:
                echo(json.dumps(_status_dict(status)))
            else:
                echo(format_status(status))
        return EXIT_FAILURE if missing else 0


async def _retry_unknown(args: argparse.Namespace) -> int:
    if not args.confirm:
        raise CLIError(
            "unknown messages may already have been delivered; resending can duplicate them",
            hint="check first, then run again with --confirm",
            code=EXIT_USAGE,
        )
    async with _outbox(args) as outbox:
        moved = await outbox.retry_unknown(args.ids or None, confirm=True)
    echo(f"re-queued {moved} unknown message(s)")
    return 0


async def _requeue_failed(args: argparse.Namespace) -> int:
    async with _outbox(args) as outbox:
        moved = await outbox.requeue_failed(args.ids or None)
    echo(f"re-queued {moved} failed message(s)")
    return 0


def _transport(args: argparse.Namespace) -> Transport:
    if args.rate_key is None:
        return make_transport(args)
    if args.transport != "ses" or not isinstance(args.sending_rate, (int, float)):
        raise CLIError(
            "--rate-key shares a numeric --sending-rate between SES workers",
            hint="e.g. --transport ses --sending-rate 14 --rate-key ses:ACCOUNT:REGION",
        )
    from asyncmailer.limits.redis import RedisRateLimiter

    defaults = {"ConfigurationSetName": args.configuration_set} if args.configuration_set else {}
    return SESTransport(
        api=args.api,
        region_name=args.region,
        endpoint_url=args.endpoint_url,
        ses_defaults=defaults,
        max_connections=args.max_connections,
        retry=RetryPolicy(max_attempts=args.max_attempts),
        limits=Limits(
            rate_limiter=RedisRateLimiter(args.redis, key=args.rate_key, rate=args.sending_rate)
        ),
    )


async def _work(args: argparse.Namespace, *, until_idle: bool = False) -> int:
    transport = _transport(args)
    loop = asyncio.get_running_loop()
    async with transport, _outbox(args, transport) as outbox:
        worker = outbox.worker(
            concurrency=args.concurrency,
            claim_idle=args.claim_idle,
            drain_timeout=args.drain_timeout,
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        try:
            if until_idle:
                async with worker:
                    await outbox.wait_idle(poll=0.2)
            else:
                echo(f"worker {worker.consumer} on {outbox.stream}", err=True)
                await worker.run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        counts = worker.counts
        echo(
            f"sent {counts.sent}, failed {counts.failed}, unknown {counts.unknown}, "
            f"retried {counts.retried}, released {counts.released}, claimed {counts.claimed}",
            err=True,
        )
    return 0


async def _drain(args: argparse.Namespace) -> int:
    return await _work(args, until_idle=True)


def _asdict(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__dataclass_fields__}


def _status_dict(status: OutboxStatus) -> dict[str, Any]:
    data = _asdict(status)
    data["state"] = status.state.value
    data["error"] = (
        None if status.error is None else f"{type(status.error).__name__}: {status.error}"
    )
    return data
