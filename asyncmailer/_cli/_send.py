"""``asyncmailer send``: one message from flags or an ``.eml`` file, through any transport."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from asyncmailer._cli._output import CLIError, echo, parse_headers
from asyncmailer._cli._transport import add_transport_options, make_transport
from asyncmailer.message import Attachment, Message
from asyncmailer.mime import compose
from asyncmailer.result import SendResult

__all__ = ["add_parser", "build_message", "format_result", "run"]


def add_parser(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register the ``send`` sub-command."""
    parser = add(
        "send",
        help="send one message",
        description=(
            "Send one message built from flags, or a complete .eml file. TEXT values "
            "starting with @ are read from that file (--html @page.html)."
        ),
    )
    parser.add_argument("--eml", metavar="FILE", type=Path, help="send this message file as is")
    parser.add_argument("--from", dest="from_", metavar="ADDRESS", help="the sender")
    parser.add_argument(
        "--to", action="append", default=[], metavar="ADDRESS", help="a recipient (repeat)"
    )
    parser.add_argument("--cc", action="append", default=[], metavar="ADDRESS")
    parser.add_argument("--bcc", action="append", default=[], metavar="ADDRESS")
    parser.add_argument("--reply-to", metavar="ADDRESS")
    parser.add_argument("--subject", default=None)
    parser.add_argument("--text", metavar="TEXT", help="plain text body (or @FILE)")
    parser.add_argument("--html", metavar="TEXT", help="HTML body (or @FILE)")
    parser.add_argument(
        "--attach", action="append", default=[], metavar="FILE", help="attach a file (repeat)"
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="an extra header (repeat)",
    )
    add_transport_options(parser, default_rate=None)
    parser.set_defaults(handler=run)


async def _text(value: str | None) -> str | None:
    if value is None or not value.startswith("@"):
        return value
    path = anyio.Path(value[1:])
    try:
        return await path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CLIError(f"cannot read {value[1:]}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CLIError(f"{value[1:]} is not UTF-8 text") from exc


async def build_message(args: argparse.Namespace) -> Message:
    """The message the flags describe."""
    headers = parse_headers(args.header)
    if args.eml is not None:
        if any((args.subject, args.text, args.html, args.attach, args.cc, args.bcc, headers)):
            raise CLIError(
                "--eml sends the file as is: only --from and --to (the envelope) may be given"
            )
        try:
            data = await anyio.Path(args.eml).read_bytes()
        except OSError as exc:
            raise CLIError(f"cannot read {args.eml}: {exc.strerror or exc}") from exc
        envelope: dict[str, Any] | None = None
        if args.from_ or args.to:
            default = (await compose(data)).envelope
            envelope = {"from_": args.from_ or default.from_, "to": args.to or list(default.to)}
        return Message(raw=data, envelope=envelope)
    if not args.from_ or not (args.to or args.cc or args.bcc):
        raise CLIError("send needs --from and at least one --to (or --eml FILE)")
    text, html = await _text(args.text), await _text(args.html)
    if text is None and html is None:
        raise CLIError("send needs a body: --text and/or --html")
    return Message(
        from_=args.from_,
        to=args.to or None,
        cc=args.cc or None,
        bcc=args.bcc or None,
        reply_to=args.reply_to,
        subject=args.subject,
        text=text,
        html=html,
        attachments=[Attachment(path=path) for path in args.attach],
        headers=headers or None,
    )


def format_result(result: SendResult) -> str:
    """A sent message, as printed by ``send``."""
    return "\n".join(
        [
            f"sent via {result.transport}",
            f"  message_id  {result.message_id}",
            f"  response    {result.response}",
            f"  envelope    {result.envelope.from_} -> {', '.join(result.envelope.to)}",
            f"  attempts    {result.attempts}    elapsed {result.elapsed * 1000:.1f} ms",
        ]
    )


async def run(args: argparse.Namespace) -> int:
    """Send the message; print its result."""
    message = await build_message(args)
    async with make_transport(args) as transport:
        result = await transport.send_mail(message)
    echo(format_result(result))
    return 0
