"""``asyncmailer demo``: a rich message through the real SES transport, no AWS account needed.

The local SES endpoint (:mod:`asyncmailer.testing`) runs in-process and stores what it
accepts as ``.eml`` files; a real aiobotocore client and :class:`SESTransport` send to it
over loopback HTTP. Tests call :func:`run_demo` directly.
"""

from __future__ import annotations

import asyncio
import datetime
import email.policy
import struct
import tempfile
import zlib
from dataclasses import dataclass
from email.message import EmailMessage
from email.message import Message as StdMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Literal

from asyncmailer.message import Attachment, IcalEvent, Message
from asyncmailer.options import AWSClientSettings
from asyncmailer.result import SendResult
from asyncmailer.testing import SESEndpoint
from asyncmailer.transports import SESTransport

__all__ = ["DemoResult", "demo_message", "format_demo", "mime_tree", "png_image", "run_demo"]

SENDER = "Asyncmailer Demo <demo@example.com>"
RECIPIENT = "Ada Lovelace <ada@example.org>"


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What :func:`run_demo` did: the send result, the stored file, the MIME outline."""

    #: The transport's result for the message.
    result: SendResult
    #: The ``.eml`` file the local endpoint stored.
    eml_path: Path
    #: The directory of the local endpoint's store.
    out_dir: Path
    #: The endpoint's URL while it ran.
    endpoint_url: str
    #: The stored message, parsed.
    stored: EmailMessage
    #: :func:`mime_tree` of the stored message.
    tree: str


def png_image(width: int = 32, height: int = 32) -> bytes:
    """A small RGB PNG (a diagonal gradient), written from scratch with :mod:`zlib`."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type 0: the row as is
        for x in range(width):
            rows += bytes((40 + 6 * x, 90 + 4 * y, 200 - 3 * (x + y) // 2))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


def _invite(now: datetime.datetime) -> str:
    start = (now + datetime.timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    stamp = "%Y%m%dT%H%M%SZ"
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//asyncmailer//demo//EN",
        "METHOD:REQUEST",
        "BEGIN:VEVENT",
        f"UID:demo-{now.strftime('%Y%m%d%H%M%S')}@example.com",
        f"DTSTAMP:{now.strftime(stamp)}",
        f"DTSTART:{start.strftime(stamp)}",
        f"DTEND:{(start + datetime.timedelta(minutes=30)).strftime(stamp)}",
        "SUMMARY:asyncmailer demo call",
        "ORGANIZER;CN=Asyncmailer Demo:mailto:demo@example.com",
        "ATTENDEE;CN=Ada Lovelace;RSVP=TRUE:mailto:ada@example.org",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "\r\n".join(lines) + "\r\n"


def demo_message(now: datetime.datetime | None = None) -> Message:
    """The demo's message: text, HTML with an inline image, an attachment, an invitation."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return Message(
        from_=SENDER,
        to=RECIPIENT,
        subject="Your asyncmailer demo — ça marche ✓",
        text=(
            "Hello Ada,\n\nThis message went through SESTransport, a real aiobotocore client "
            "and a local SES endpoint.\nThe order summary is attached; the invitation is for "
            "tomorrow.\n\n— asyncmailer\n"
        ),
        html=(
            '<p><img src="cid:logo@asyncmailer" alt="logo" width="32" height="32"></p>'
            "<p>Hello <b>Ada</b>,</p><p>This message went through <code>SESTransport</code>, "
            "a real aiobotocore client and a local SES endpoint.</p>"
            "<p>The order summary is attached; the invitation is for tomorrow.</p>"
        ),
        attachments=[
            Attachment(filename="logo.png", content=png_image(), cid="logo@asyncmailer"),
            Attachment(
                filename="order-summary.csv",
                content="item,quantity,price\r\nAnalytical Engine,1,0.00\r\n",
                content_type="text/csv",
            ),
        ],
        ical_event=IcalEvent(content=_invite(now), method="REQUEST", filename="invite.ics"),
        headers={"X-Demo": "asyncmailer"},
    )


def mime_tree(message: StdMessage) -> str:
    """An outline of a message's MIME parts, one line per part, drawn as a tree."""
    lines: list[str] = []

    def describe(part: StdMessage) -> str:
        text = part.get_content_type()
        details = []
        method = part.get_param("method")
        if isinstance(method, str):
            details.append(f"method={method}")
        disposition = part.get_content_disposition()
        if disposition:
            details.append(disposition)
        filename = part.get_filename()
        if filename:
            details.append(filename)
        cid = part.get("Content-ID")
        if cid:
            details.append(f"cid:{str(cid).strip('<>')}")
        if not part.is_multipart():
            payload = part.get_payload(decode=True)
            size = len(payload) if isinstance(payload, bytes) else 0
            details.append(f"{size:,} bytes")
        return text + (f"  ({', '.join(details)})" if details else "")

    def walk(part: StdMessage, prefix: str, last: bool, root: bool) -> None:
        if root:
            lines.append(describe(part))
            child_prefix = ""
        else:
            lines.append(prefix + ("└── " if last else "├── ") + describe(part))
            child_prefix = prefix + ("    " if last else "│   ")
        if part.is_multipart():
            children = part.get_payload()
            assert isinstance(children, list)
            for index, child in enumerate(children):
                walk(child, child_prefix, index == len(children) - 1, False)

    walk(message, "", True, True)
    return "\n".join(lines)


async def run_demo(
    out_dir: str | Path | None = None, *, api: Literal["v1", "v2"] = "v2"
) -> DemoResult:
    """Start a local SES endpoint storing into ``out_dir``, send the demo message to it.

    Without ``out_dir`` a new temporary directory is used (and kept, so the ``.eml`` can
    be opened). Dummy credentials are passed explicitly: the demo never reads yours.
    """
    directory = Path(out_dir) if out_dir is not None else None
    if directory is None:
        directory = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="asyncmailer-demo-"))
    async with SESEndpoint(store_dir=directory) as endpoint:
        kwargs = endpoint.client_kwargs()
        async with SESTransport(
            api=api,
            endpoint_url=kwargs["endpoint_url"],
            region_name=kwargs["region_name"],
            aws_access_key_id=kwargs["aws_access_key_id"],
            aws_secret_access_key=kwargs["aws_secret_access_key"],
            aws=AWSClientSettings(connect_timeout=5.0, read_timeout=10.0),
        ) as transport:
            result = await transport.send_mail(demo_message())
        endpoint_url = endpoint.url
    eml_path = directory / f"{result.response}.eml"
    raw = await asyncio.to_thread(eml_path.read_bytes)
    stored = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(stored, EmailMessage)
    return DemoResult(
        result=result,
        eml_path=eml_path,
        out_dir=directory,
        endpoint_url=endpoint_url,
        stored=stored,
        tree=mime_tree(stored),
    )


def format_demo(demo: DemoResult) -> str:
    """The demo's report, as printed by ``asyncmailer demo``."""
    result = demo.result
    envelope = result.envelope
    return "\n".join(
        [
            f"Local SES endpoint: {demo.endpoint_url} (in-process; no AWS account, no network)",
            "",
            "Sent through SESTransport and aiobotocore:",
            f"  message_id   {result.message_id}",
            f"  SES id       {result.response}",
            f"  envelope     {envelope.from_} -> {', '.join(envelope.to)}",
            f"  attempts     {result.attempts}    elapsed {result.elapsed * 1000:.1f} ms",
            "",
            f"Stored message: {demo.eml_path} ({demo.eml_path.stat().st_size:,} bytes)",
            "",
            "MIME structure:",
            demo.tree,
            "",
            "Open the .eml file in a mail client to see it rendered.",
            "Next: asyncmailer send --help, asyncmailer verify --help",
        ]
    )
