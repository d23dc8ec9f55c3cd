"""``python -m asyncmailer.testing``: run the local SES endpoint until SIGINT/SIGTERM.

The first line written to stdout is the endpoint's URL, so a parent process can read it::

    url = subprocess.Popen([...], stdout=PIPE, text=True).stdout.readline().strip()
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any

from asyncmailer.errors import ConfigurationError
from asyncmailer.testing._endpoint import SESEndpoint


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m asyncmailer.testing",
        description="Serve a local SES-compatible endpoint (SES v1 query API and SESv2).",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    add("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    add("--store-dir", help="write accepted messages as <id>.eml + <id>.json here")
    add("--seed", type=int, help="seed for reproducible faults and ids")
    add("--region", help="region named in error messages (default: the client's)")
    add("--latency", type=float, default=0.0, help="seconds before every answer")
    add("--latency-spike-probability", type=float, default=0.0)
    add("--latency-spike", type=float, default=0.0, help="extra seconds of a spike")
    add("--throttle-rate", type=float, help="recipients/s over a sliding 1 s window")
    add("--throttle-ratio", type=float, default=0.0)
    add("--server-error-ratio", type=float, default=0.0)
    add("--drop-after-accept-ratio", type=float, default=0.0)
    add("--drop-before-accept-ratio", type=float, default=0.0)
    add("--max-send-rate", type=float, default=14.0, help="MaxSendRate reported")
    add("--max-24-hour-send", type=float, default=50000.0, help="Max24HourSend reported")
    add("--enforce-daily-quota", action="store_true", help="refuse sends over Max24HourSend")
    add("--paused", action="store_true", help="start with sending paused")
    add("--sandbox", action="store_true", help="recipients must be verified too")
    add(
        "--verified",
        nargs="+",
        action="extend",
        metavar="IDENTITY",
        help="verified email addresses/domains; when given, other senders are rejected",
    )
    add("--configuration-set", nargs="+", action="extend", dest="configuration_sets")
    add(
        "--allow-host",
        action="append",
        default=[],
        dest="allowed_hosts",
        metavar="NAME",
        help="another host name the control API may be reached by (IP addresses, localhost "
        "and --host always are); repeatable",
    )
    events = parser.add_argument_group(
        "mailbox simulator events",
        "mail to success@, bounce@, ooto@, complaint@ or suppressionlist@"
        "simulator.amazonses.com produces SES events, published here (needs cryptography: "
        "pip install 'asyncmailer[feedback]')",
    )
    event = events.add_argument
    event("--sns-subscriber", metavar="URL", help="POST signed SNS envelopes to this URL")
    event("--sqs-queue-url", metavar="URL", help="send the envelopes to this SQS queue")
    event("--sqs-endpoint", metavar="URL", help="SQS endpoint of that queue (moto's server)")
    event("--sqs-raw-delivery", action="store_true", help="send SQS the bare event")
    event(
        "--event-style",
        choices=("notification", "event"),
        default="notification",
        help="notificationType (default) or eventType (event publishing) events",
    )
    event(
        "--include-headers",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="original headers in mail (default: only for event publishing)",
    )
    event("--sns-topic-arn", metavar="ARN", help="TopicArn of the envelopes")
    event("--signature-version", choices=("1", "2"), default="1", help="SNS SignatureVersion")
    event("--publish-timeout", type=float, default=5.0, help="seconds per POST / SQS request")
    return parser


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "region": args.region,
        "latency": args.latency,
        "latency_spike_probability": args.latency_spike_probability,
        "latency_spike": args.latency_spike,
        "throttle_rate": args.throttle_rate,
        "throttle_ratio": args.throttle_ratio,
        "server_error_ratio": args.server_error_ratio,
        "drop_after_accept_ratio": args.drop_after_accept_ratio,
        "drop_before_accept_ratio": args.drop_before_accept_ratio,
        "max_send_rate": args.max_send_rate,
        "max_24_hour_send": args.max_24_hour_send,
        "enforce_daily_quota": args.enforce_daily_quota,
        "sending_enabled": not args.paused,
        "sandbox": args.sandbox,
        "sns_subscriber_url": args.sns_subscriber,
        "sqs_queue_url": args.sqs_queue_url,
        "sqs_endpoint_url": args.sqs_endpoint,
        "sqs_raw_delivery": args.sqs_raw_delivery,
        "event_style": args.event_style,
        "include_headers": args.include_headers,
        "sns_topic_arn": args.sns_topic_arn,
        "sns_signature_version": args.signature_version,
        "publish_timeout": args.publish_timeout,
    }
    if args.verified is not None:
        settings["verified_identities"] = args.verified
    if args.configuration_sets is not None:
        settings["configuration_sets"] = args.configuration_sets
    return settings


async def _serve(endpoint: SESEndpoint) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with endpoint:
        # Start-up (imports, the server) leaves ~10 ms of objects for every older-generation
        # garbage collection to walk; such a pause delays arrival timestamps and bunches
        # them. Freeze them once: those passes then take well under a millisecond.
        gc.collect()
        gc.freeze()
        sys.stdout.write(endpoint.url + "\n")
        sys.stdout.flush()
        await stop.wait()
        stats = endpoint.stats()
    summary = {
        "requests": dict(stats.requests),
        "errors": dict(stats.errors),
        "messages_accepted": stats.messages_accepted,
        "max_in_flight": stats.max_in_flight,
    }
    sys.stderr.write(json.dumps(summary) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, serve until a signal, return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        endpoint = SESEndpoint(
            host=args.host,
            port=args.port,
            store_dir=args.store_dir,
            seed=args.seed,
            allowed_hosts=args.allowed_hosts,
            **_settings(args),
        )
    except ConfigurationError as exc:
        parser.error(str(exc))
    asyncio.run(_serve(endpoint))
    return 0


if __name__ == "__main__":
    sys.exit(main())
