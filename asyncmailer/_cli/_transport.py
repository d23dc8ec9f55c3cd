"""Transport options shared by ``send`` and ``bulk``, and the transport they build."""

from __future__ import annotations

import argparse
import importlib
import os
from typing import Any, Literal

from asyncmailer._cli._output import CLIError
from asyncmailer.retry import RetryPolicy
from asyncmailer.transports import SESTransport, Transport

__all__ = ["add_ses_options", "add_transport_options", "make_transport", "parse_rate"]

#: Environment variables read when the flag is absent (flags show up in ``ps``; env does not).
SMTP_USER_ENV = "ASYNCMAILER_SMTP_USER"
SMTP_PASSWORD_ENV = "ASYNCMAILER_SMTP_PASSWORD"  # noqa: S105 - a variable name, not a secret


def parse_rate(text: str) -> float | Literal["auto"]:
    """``--sending-rate``: a positive number of recipients per second, or ``auto``."""
    if text == "auto":
        return "auto"
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None
    if not rate > 0:
        raise argparse.ArgumentTypeError("the sending rate must be > 0")
    return rate


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_ses_options(parser: argparse.ArgumentParser) -> None:
    """``--region``, ``--endpoint-url``, ``--api``: where the SES client points."""
    group = parser.add_argument_group("SES")
    group.add_argument("--region", help="AWS region (default: the AWS config / AWS_REGION)")
    group.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="SES endpoint, e.g. the local endpoint of 'python -m asyncmailer.testing'",
    )
    group.add_argument(
        "--api",
        choices=("v1", "v2"),
        default="v2",
        help="SES API: v1 SendRawEmail (10 MB) or SESv2 SendEmail (40 MB, less CPU); default v2",
    )


def add_transport_options(
    parser: argparse.ArgumentParser, *, default_rate: float | Literal["auto"] | None
) -> None:
    """``--transport`` and the options of each transport."""
    parser.add_argument(
        "--transport",
        choices=("ses", "smtp", "file"),
        default="ses",
        help="where the mail goes (default: ses)",
    )
    parser.add_argument(
        "--sending-rate",
        type=parse_rate,
        default=default_rate,
        metavar="RATE",
        help="recipients per second, or 'auto' (SES: 90%% of the account's MaxSendRate)"
        + (f"; default {default_rate}" if default_rate is not None else "; default unlimited"),
    )
    parser.add_argument(
        "--max-connections",
        type=_positive_int,
        default=10,
        metavar="N",
        help="requests in flight at most (default 10)",
    )
    parser.add_argument(
        "--max-attempts",
        type=_positive_int,
        default=5,
        metavar="N",
        help="attempts per message for failures that are safe to retry (default 5; 1: no retry)",
    )
    add_ses_options(parser)
    parser.add_argument(
        "--configuration-set", metavar="NAME", help="SES configuration set for every message"
    )
    smtp = parser.add_argument_group("SMTP")
    smtp.add_argument("--host", help="SMTP server host name")
    smtp.add_argument(
        "--port", type=int, help="SMTP port (default: 465 with --tls, 587 with --starttls, else 25)"
    )
    smtp.add_argument("--user", help=f"SMTP user name (or ${SMTP_USER_ENV})")
    smtp.add_argument(
        "--password", help=f"SMTP password (prefer ${SMTP_PASSWORD_ENV}: flags show in ps)"
    )
    tls = smtp.add_mutually_exclusive_group()
    tls.add_argument("--tls", action="store_true", help="implicit TLS (port 465)")
    tls.add_argument("--starttls", action="store_true", help="require STARTTLS")
    smtp.add_argument(
        "--allow-insecure-auth",
        action="store_true",
        help="send --user/--password even when the connection has no TLS (trusted networks only)",
    )
    files = parser.add_argument_group("file")
    files.add_argument("--dir", metavar="DIR", help="directory for the .eml files")


def _transport_class(module: str, name: str, extra: str | None) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or ""
        if extra is not None and not missing.startswith("asyncmailer"):
            raise CLIError(
                f"{name} needs {missing or 'an optional package'}, which is not installed",
                hint=f"pip install 'asyncmailer[{extra}]'",
            ) from exc
        raise CLIError(f"{name} is not available in this version of asyncmailer") from exc
    except AttributeError as exc:
        raise CLIError(f"{name} is not available in this version of asyncmailer") from exc


def make_transport(args: argparse.Namespace) -> Transport:
    """Build (not open) the transport the options describe."""
    common: dict[str, Any] = {
        "max_connections": args.max_connections,
        "retry": RetryPolicy(max_attempts=args.max_attempts),
    }
    if args.transport == "ses":
        defaults = (
            {"ConfigurationSetName": args.configuration_set} if args.configuration_set else {}
        )
        return SESTransport(
            sending_rate=args.sending_rate,
            api=args.api,
            region_name=args.region,
            endpoint_url=args.endpoint_url,
            ses_defaults=defaults,
            **common,
        )
    rate = args.sending_rate
    if rate == "auto":
        raise CLIError(
            "--sending-rate auto reads the SES quota; give a number for smtp and file",
            hint="e.g. --sending-rate 10",
        )
    if rate is not None:
        common["sending_rate"] = rate
    if args.transport == "smtp":
        if not args.host:
            raise CLIError("--transport smtp needs --host", hint="e.g. --host smtp.example.com")
        cls = _transport_class("asyncmailer.transports.smtp", "SMTPTransport", "smtp")
        options: dict[str, Any] = {"hostname": args.host}
        if args.port is not None:
            options["port"] = args.port
        user = args.user or os.environ.get(SMTP_USER_ENV)
        password = args.password or os.environ.get(SMTP_PASSWORD_ENV)
        if user:
            options["username"] = user
        if password:
            options["password"] = password
        if args.tls:
            options["use_tls"] = True
        if args.starttls:
            options["start_tls"] = True
        if args.allow_insecure_auth:
            options["allow_insecure_auth"] = True
        smtp_transport: Transport = cls(**options, **common)
        return smtp_transport
    if not args.dir:
        raise CLIError("--transport file needs --dir", hint="e.g. --dir ./outbox")
    cls = _transport_class("asyncmailer.transports.file", "FileTransport", None)
    file_transport: Transport = cls(directory=args.dir, **common)
    return file_transport
