"""Golden files: byte-exact output with a fixed seed and date.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 pytest tests/test_mime_golden.py``
and review the diff of ``tests/golden/``.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest

from asyncmailer.message import Attachment, IcalEvent, ListHeaders, ListLink, Message
from asyncmailer.mime import compose_sync
from tests.mime_helpers import (
    check_wire,
    parse,
)

GOLDEN = Path(__file__).parent / "golden"
NOW = datetime.datetime(2026, 11, 2, 10, 0, tzinfo=datetime.timezone.utc)
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")

CASES: dict[str, object] = {
    "text_only": Message(
        from_="shop@example.com", to="ada@example.com", subject="Hello", text="Hi Ada!\n"
    ),
    "alternative_related_mixed": Message(
        from_=("Shop", "shop@example.com"),
        to=["Ada Lovelace <ada@example.com>", ("Doe, John", "john@example.com")],
        cc="Team: a@example.com, b@example.com;",
        reply_to="help@example.com",
        subject="Your order",
        text="Thanks for your order.\n",
        html='<p>Thanks! <img src="cid:logo@shop"></p>\n',
        attachments=[
            Attachment(content=PNG, filename="logo.png", cid="logo@shop"),
            Attachment(content=b"%PDF-1.4 fake", filename="invoice.pdf"),
        ],
    ),
    "unicode": Message(
        from_=("Zoë Ünïcode", "zoe@bücher.example"),
        to="ada@example.com",
        subject="Grüße aus Köln — 日本語のテキスト and a long tail of plain ASCII words to fold",
        text="Grüße! " * 30,
        html="<p>日本語</p>" * 10,
        attachments=[
            Attachment(
                content=b"data", filename="résumé with a very long name, really very long.pdf"
            )
        ],
    ),
    "calendar": Message(
        from_="cal@example.com",
        to="ada@example.com",
        subject="Meeting",
        text="See the invitation.",
        ical_event=IcalEvent(
            content="BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n", method="request"
        ),
    ),
    "headers_lists_priority": Message(
        from_="news@example.com",
        to="ada@example.com",
        subject="Newsletter",
        text="News.",
        priority="high",
        headers={"X-Campaign": "nov", "X-Multi": ["a", "b"]},
        list_headers=ListHeaders(
            unsubscribe=[ListLink("https://example.com/u/1", "Unsubscribe"), "unsub@example.com"],
            id=ListLink("news.example.com", "Example News"),
            one_click=True,
        ),
        in_reply_to="<prev@example.com>",
        references=["<root@example.com>", "<prev@example.com>"],
    ),
    "raw_input": (
        b"From: a@example.com\nTo: b@example.com\nBcc: c@example.com\nSubject: raw\n\nbody\n"
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    raw = compose_sync(CASES[name], seed=1, now=NOW).raw  # type: ignore[arg-type]
    check_wire(raw)
    parse(raw)
    path = GOLDEN / f"{name}.eml"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_bytes(raw)
    assert path.read_bytes() == raw, f"{path} differs; UPDATE_GOLDEN=1 to regenerate"
