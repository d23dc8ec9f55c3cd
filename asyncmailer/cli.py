"""The ``asyncmailer`` command: ``demo``, ``send``, ``verify``, ``quota`` and ``bulk``.

Run ``asyncmailer --help`` (or ``python -m asyncmailer --help``). ``demo`` works on a
fresh install with no AWS account and no network; ``bulk`` needs the ``cli`` extra
(``pip install 'asyncmailer[cli]'``: Jinja2 and rich). Errors are one line plus a hint,
without a traceback; exit codes: 0 success, 1 failure (refused, check failed, rows not
sent), 2 usage error (nothing sent), 130 interrupted. Example::

    $ asyncmailer demo
    $ asyncmailer verify --from shop@example.com --region eu-west-1
    $ asyncmailer bulk --csv customers.csv --template body.html.j2 \\
          --subject-template "Hello {{ name }}" --from shop@example.com --results out.csv
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from asyncmailer import __version__
from asyncmailer._cli import _account, _bulk, _outbox, _send
from asyncmailer._cli._demo import DemoResult, format_demo, run_demo
from asyncmailer._cli._output import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CLIError,
    echo,
    hint_for,
)
from asyncmailer.errors import MailError, MessageError, UsageError

__all__ = ["DemoResult", "build_parser", "main", "run_demo"]


async def _demo(args: argparse.Namespace) -> int:
    if args.feedback:
        try:
            import aiohttp  # noqa: F401
            import cryptography  # noqa: F401
        except ImportError:
            raise CLIError(
                "demo --feedback needs the feedback extra (cryptography, aiohttp)",
                hint="pip install 'asyncmailer[feedback]'",
                code=EXIT_USAGE,
            ) from None
        from asyncmailer._cli._demo_feedback import format_feedback_demo, run_feedback_demo

        echo(format_feedback_demo(await run_feedback_demo(api=args.api)))
        return 0
    demo = await run_demo(args.out, api=args.api)
    echo(format_demo(demo))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``asyncmailer`` command."""
    parser = argparse.ArgumentParser(
        prog="asyncmailer",
        description="asyncio-native mail: Amazon SES (aiobotocore), SMTP and files.",
        epilog="Run 'asyncmailer COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"asyncmailer {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="send a rich message through SES to a local endpoint (no AWS account needed)",
        description=(
            "Start a local SES-compatible endpoint in this process, send a message with text, "
            "HTML, an inline image, an attachment and a calendar invitation through "
            "SESTransport and a real aiobotocore client, and show the stored .eml file."
        ),
    )
    demo.add_argument(
        "--out", type=Path, metavar="DIR", help="where the .eml goes (default: a new temp dir)"
    )
    demo.add_argument("--api", choices=("v1", "v2"), default="v2", help="SES API (default v2)")
    demo.add_argument(
        "--feedback",
        action="store_true",
        help="instead: send to SES's bounce simulator, receive the signed event on a local "
        "webhook, suppress the address and see the next send refused (feedback extra)",
    )
    demo.set_defaults(handler=_demo)
    _send.add_parser(commands.add_parser)
    _account.add_parsers(commands.add_parser)
    _bulk.add_parser(commands.add_parser)
    _outbox.add_parser(commands.add_parser)
    return parser


def _report(message: str, hint: str | None) -> None:
    echo(f"error: {message}", err=True)
    if hint:
        echo(f"hint: {hint}", err=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.verbose or args.debug:
        logging.basicConfig(
            level=logging.DEBUG if args.debug else logging.INFO,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
        )
    try:
        code: int = asyncio.run(handler(args))
    except CLIError as exc:
        _report(str(exc), exc.hint)
        return exc.code
    except MailError as exc:
        if args.debug:
            traceback.print_exc()
        _report(str(exc), hint_for(exc))
        return EXIT_USAGE if isinstance(exc, (UsageError, MessageError)) else EXIT_FAILURE
    except KeyboardInterrupt:
        echo("\ninterrupted", err=True)
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
