"""compose(): the MIME tree, transfer encodings, headers, envelope and typed errors."""

from __future__ import annotations

import base64
import binascii
import datetime
import email.utils
import re

import pytest

from asyncmailer.address import Address, Group
from asyncmailer.errors import AddressError, ContentError, HeaderError, MessageError
from asyncmailer.message import (
    Attachment,
    Envelope,
    IcalEvent,
    ListHeaders,
    ListLink,
    Message,
    PreparedHeader,
)
from asyncmailer.mime import compose, compose_sync
from tests.mime_helpers import (
    check_wire,
    compose_parsed,
    header_names,
    parse,
)

BASE = {"from_": "Shop <shop@example.com>", "to": "ada@example.com"}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def tree(msg: object) -> object:
    """(content type, [children]) for multiparts, the content type for leaves."""
    if msg.is_multipart():  # type: ignore[attr-defined]
        return (msg.get_content_type(), [tree(p) for p in msg.iter_parts()])  # type: ignore[attr-defined]
    return msg.get_content_type()  # type: ignore[attr-defined]


# ------------------------------------------------------------------------ tree shapes


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"text": "hi"}, "text/plain"),
        ({"html": "<p>hi</p>"}, "text/html"),
        ({}, "text/plain"),
        (
            {"text": "hi", "html": "<b>hi</b>"},
            ("multipart/alternative", ["text/plain", "text/html"]),
        ),
        (
            {
                "text": "t",
                "html": '<img src="cid:logo">',
                "attachments": [Attachment(content=PNG, filename="l.png", cid="logo")],
            },
            (
                "multipart/alternative",
                ["text/plain", ("multipart/related", ["text/html", "image/png"])],
            ),
        ),
        (
            {
                "html": '<img src="cid:logo">',
                "attachments": [Attachment(content=PNG, filename="l.png", cid="logo")],
            },
            ("multipart/related", ["text/html", "image/png"]),
        ),
        (
            {
                "html": '<img src="cid:logo">',
                "attachments": [
                    Attachment(content=PNG, filename="l.png", cid="logo"),
                    Attachment(content=b"%PDF", filename="a.pdf"),
                ],
            },
            (
                "multipart/mixed",
                [("multipart/related", ["text/html", "image/png"]), "application/pdf"],
            ),
        ),
        ({"attachments": [Attachment(content=b"%PDF", filename="a.pdf")]}, "application/pdf"),
        (
            {
                "attachments": [
                    Attachment(content=b"1", filename="a.pdf"),
                    Attachment(content=b"2", filename="b.zip"),
                ]
            },
            ("multipart/mixed", ["application/pdf", "application/zip"]),
        ),
        (
            {"text": "t", "attachments": [Attachment(content=PNG, filename="l.png", cid="logo")]},
            ("multipart/mixed", ["text/plain", "image/png"]),  # a cid without html is attached
        ),
        (
            {
                "text": "t",
                "html": "<p>h</p>",
                "watch_html": "<p>w</p>",
                "amp": "<html amp4email></html>",
                "ical_event": "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
                "alternatives": [Attachment(content="# md", content_type="text/markdown")],
            },
            (
                "multipart/mixed",
                [
                    (
                        "multipart/alternative",
                        [
                            "text/plain",
                            "text/watch-html",
                            "text/x-amp-html",
                            "text/html",
                            "text/calendar",
                            "text/markdown",
                        ],
                    ),
                    "application/ics",
                ],
            ),
        ),
    ],
)
def test_tree(fields: dict[str, object], expected: object) -> None:
    _, msg = compose_parsed(Message(**BASE, **fields))  # type: ignore[arg-type]
    assert tree(msg) == expected


def test_ical_event_parts() -> None:
    ics = "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n"
    _, msg = compose_parsed(
        Message(
            **BASE,
            text="see invite",
            ical_event=IcalEvent(content=ics, method="request", filename="meet.ics"),
        )  # type: ignore[arg-type]
    )
    parts = list(msg.walk())
    calendar = next(p for p in parts if p.get_content_type() == "text/calendar")
    assert calendar.get_param("method") == "REQUEST"
    assert calendar.get_content_charset() == "utf-8"
    assert calendar.get_content().replace("\r\n", "\n") == ics.replace("\r\n", "\n")
    attached = next(p for p in parts if p.get_content_type() == "application/ics")
    assert attached.get_filename() == "meet.ics"
    assert attached.get_content_disposition() == "attachment"
    assert attached.get_payload(decode=True) == ics.encode()
    _, msg = compose_parsed(Message(**BASE, ical_event="BEGIN:VCALENDAR\r\nEND:VCALENDAR"))  # type: ignore[arg-type]
    ics_parts = [p for p in msg.walk() if p.get_content_type() == "application/ics"]
    assert [p.get_filename() for p in ics_parts] == ["invite.ics"]
    assert "method=PUBLISH" in str(msg)


# ------------------------------------------------------------------- transfer encodings


def _cte(raw: bytes, ctype: str = "text/plain") -> str:
    msg = parse(raw)
    part = next(p for p in msg.walk() if p.get_content_type() == ctype)
    return str(part["Content-Transfer-Encoding"])


@pytest.mark.parametrize(
    ("text", "cte"),
    [
        ("plain ascii\nsecond line\n", "7bit"),
        ("x" * 76, "7bit"),
        ("x" * 77, "quoted-printable"),  # longer than 76 → QP (Nodemailer's rule)
        ("Café au lait, crème brûlée and more plain words here", "quoted-printable"),
        ("日本語のテキストです。" * 5, "base64"),
        ("nul\x00inside", "quoted-printable"),
        ("", "7bit"),
    ],
)
def test_text_encoding_choice(text: str, cte: str) -> None:
    _, msg = compose_parsed(Message(**BASE, text=text))  # type: ignore[arg-type]
    assert str(msg["Content-Transfer-Encoding"]) == cte
    assert msg.get_content().replace("\r\n", "\n") == text


@pytest.mark.parametrize("forced", ["quoted-printable", "base64"])
def test_text_encoding_forced(forced: str) -> None:
    _, msg = compose_parsed(Message(**BASE, text="hi", html="<p>hi</p>", text_encoding=forced))  # type: ignore[arg-type]
    for part in msg.iter_parts():
        assert str(part["Content-Transfer-Encoding"]) == forced
        assert part.get_content().strip() in ("hi", "<p>hi</p>")


def test_text_line_endings_normalised_to_crlf() -> None:
    raw, msg = compose_parsed(Message(**BASE, text="a\nb\r\nc\rd"))  # type: ignore[arg-type]
    assert raw.endswith(b"\r\n\r\na\r\nb\r\nc\r\nd")
    assert msg.get_content() == "a\r\nb\r\nc\r\nd"


def test_quoted_printable_trailing_space_and_long_lines() -> None:
    text = "trailing space \n" + "é" * 200 + "\n" + "word " * 40
    raw, msg = compose_parsed(Message(**BASE, text=text))  # type: ignore[arg-type]
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))
    assert b" \r\n" not in body
    assert msg.get_content().replace("\r\n", "\n") == text


def test_base64_attachment_lines() -> None:
    blob = bytes(range(256)) * 300
    raw, msg = compose_parsed(
        Message(**BASE, text="t", attachments=[Attachment(content=blob, filename="b.bin")])
    )  # type: ignore[arg-type]
    body = raw.split(b'Content-Disposition: attachment; filename="b.bin"\r\n\r\n', 1)[1]
    lines = body.split(b"\r\n--", 1)[0].split(b"\r\n")
    assert {len(line) for line in lines[:-1]} == {76}
    assert 0 < len(lines[-1]) <= 76
    (att,) = msg.iter_attachments()
    assert att.get_payload(decode=True) == blob
    assert base64.b64decode(b"".join(lines)) == blob


def test_message_rfc822_attachment_is_not_base64() -> None:
    inner = b"From: a@x.com\r\nTo: b@y.com\r\nSubject: inner\r\n\r\nbody\r\n"
    _, msg = compose_parsed(
        Message(
            **BASE,
            text="fwd",
            attachments=[Attachment(content=inner, content_type="message/rfc822")],
        )
    )  # type: ignore[arg-type]
    (att,) = msg.iter_attachments()
    assert att.get_content_type() == "message/rfc822"
    assert str(att["Content-Transfer-Encoding"]) == "7bit"
    assert att.get_content()["Subject"] == "inner"


# -------------------------------------------------------------------------- headers


def test_root_headers_and_order() -> None:
    raw, msg = compose_parsed(
        Message(
            from_="Shop <shop@example.com>",
            sender="bounce@example.com",
            to="ada@example.com",
            cc="cc@example.com",
            bcc="hidden@example.com",
            reply_to="help@example.com",
            subject="Hi",
            in_reply_to="<orig@example.com>",
            references=["<a@example.com>", "b@example.com"],
            text="t",
        )
    )
    assert header_names(raw) == [
        "From",
        "Sender",
        "To",
        "Cc",
        "Reply-To",
        "Subject",
        "Message-ID",
        "In-Reply-To",
        "References",
        "Date",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
    ]
    assert str(msg["References"]) == "<a@example.com> <b@example.com>"
    assert str(msg["MIME-Version"]) == "1.0"
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.com>", str(msg["Message-ID"]))
    date = email.utils.parsedate_to_datetime(str(msg["Date"]))
    assert abs(date - datetime.datetime.now(datetime.timezone.utc)) < datetime.timedelta(minutes=5)


def test_message_id_date_and_seed_hooks() -> None:
    now = datetime.datetime(2026, 11, 2, 10, 0, tzinfo=datetime.timezone.utc)
    one = compose_sync(Message(**BASE, text="t", html="h"), seed=7, now=now)  # type: ignore[arg-type]
    two = compose_sync(Message(**BASE, text="t", html="h"), seed=7, now=now)  # type: ignore[arg-type]
    assert one.raw == two.raw
    assert b"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\n" in one.raw
    other = compose_sync(Message(**BASE, text="t", html="h"), seed=8, now=now)  # type: ignore[arg-type]
    assert other.message_id != one.message_id
    given = compose_sync(Message(**BASE, text="t", message_id="abc@host"))  # type: ignore[arg-type]
    assert given.message_id == "<abc@host>"
    assert b"Message-ID: <abc@host>\r\n" in given.raw
    dated = compose_sync(Message(**BASE, text="t", date="Tue, 03 Nov 2026 11:00:00 +0100"))  # type: ignore[arg-type]
    assert b"Date: Tue, 03 Nov 2026 11:00:00 +0100\r\n" in dated.raw


def test_bcc_is_never_written_unless_keep_bcc() -> None:
    message = Message(**BASE, bcc=["x@example.com", "Y <y@example.com>"], text="t")  # type: ignore[arg-type]
    composed = compose_sync(message)
    assert b"Bcc" not in composed.raw
    assert b"x@example.com" not in composed.raw
    assert composed.envelope.to == ("ada@example.com", "x@example.com", "y@example.com")
    kept = compose_sync(message, keep_bcc=True)
    assert parse(kept.raw)["Bcc"].addresses[1].addr_spec == "y@example.com"
    assert (
        b"Bcc:" in compose_sync(Message(**BASE, bcc="x@example.com", keep_bcc=True, text="t")).raw
    )  # type: ignore[arg-type]


def test_envelope_derivation_and_override() -> None:
    composed = compose_sync(
        Message(
            from_="Shop <shop@Bücher.example>",
            to=["a@x.com", "A <a@X.COM>", Group("G", (Address("", "b@y.com"),))],
            cc="a@x.com, c@z.com",
            bcc="b@y.com",
            text="t",
        )
    )
    assert composed.envelope == Envelope(
        "shop@xn--bcher-kva.example", ("a@x.com", "b@y.com", "c@z.com")
    )
    assert composed.message_id.endswith("@xn--bcher-kva.example>")
    assert not composed.smtputf8
    sender_only = compose_sync(Message(sender="s@example.com", to="a@x.com", text="t"))
    assert sender_only.envelope.from_ == "s@example.com"
    override = compose_sync(
        Message(**BASE, text="t", envelope={"from": "bounce@example.com", "to": ["z@z.com"]})
    )  # type: ignore[arg-type]
    assert override.envelope == Envelope("bounce@example.com", ("z@z.com",))
    override = compose_sync(
        Message(**BASE, text="t"), envelope=Envelope("b@example.com", ("q@q.com",))
    )  # type: ignore[arg-type]
    assert override.envelope == Envelope("b@example.com", ("q@q.com",))
    # the envelope alone is enough: no From/To headers needed
    bare = compose_sync(Message(text="t", envelope=Envelope("b@example.com", ("q@q.com",))))
    assert bare.envelope.to == ("q@q.com",)


def test_smtputf8_for_non_ascii_local_parts() -> None:
    composed = compose_sync(
        Message(from_="shop@example.com", to="José <josé@example.com>", text="t")
    )
    assert composed.smtputf8
    assert composed.envelope.to == ("josé@example.com",)
    assert "To: José <josé@example.com>".encode() not in composed.raw  # name encoded...
    assert "<josé@example.com>".encode() in composed.raw  # ...address raw UTF-8 (RFC 6532)


@pytest.mark.parametrize(
    ("fields", "exc", "field"),
    [
        ({"from_": "a@x.com", "text": "t"}, MessageError, "to"),
        ({"to": "a@x.com", "text": "t"}, MessageError, "from_"),
        ({"from_": "a@x.com", "to": "bad", "text": "t"}, AddressError, "to"),
        ({"from_": "a@x.com", "to": "a@x.com", "cc": "x@", "text": "t"}, AddressError, "cc"),
        ({**BASE, "priority": "urgent"}, MessageError, "priority"),
        ({**BASE, "date": "yesterday"}, HeaderError, "date"),
        ({**BASE, "message_id": "<a b@c>"}, HeaderError, "message_id"),
        ({**BASE, "message_id": "<x@y>\r\nBcc: e@x.com"}, HeaderError, "message_id"),
        ({**BASE, "in_reply_to": "x@y\nBcc: e@x.com"}, HeaderError, "in_reply_to"),
        ({**BASE, "references": "<a@b>\r\n<c@d>x y"}, HeaderError, "references"),
        ({**BASE, "text_encoding": "8bit"}, MessageError, "text_encoding"),
        ({**BASE, "envelope": {"from_": "a@x.com"}}, MessageError, "envelope.to"),
        ({**BASE, "envelope": {"to": "a@x.com"}}, MessageError, "envelope.from_"),
        (
            {**BASE, "envelope": {"to": "a@x.com", "from_": "b@x.com", "bogus": 1}},
            MessageError,
            "envelope",
        ),
    ],
)
def test_message_errors(fields: dict[str, object], exc: type[Exception], field: str) -> None:
    with pytest.raises(exc) as info:
        compose_sync(Message(**fields))  # type: ignore[arg-type]
    assert info.value.field == field  # type: ignore[attr-defined]


def test_priority_headers() -> None:
    high = compose_sync(Message(**BASE, text="t", priority="high")).raw  # type: ignore[arg-type]
    assert b"X-Priority: 1 (Highest)\r\nX-MSMail-Priority: High\r\nImportance: High\r\n" in high
    low = compose_sync(Message(**BASE, text="t", priority="low")).raw  # type: ignore[arg-type]
    assert b"X-Priority: 5 (Lowest)\r\nX-MSMail-Priority: Low\r\nImportance: Low\r\n" in low
    normal = compose_sync(Message(**BASE, text="t", priority="normal")).raw  # type: ignore[arg-type]
    assert b"Priority" not in normal
    assert b"Importance" not in normal


def test_subject_and_names_encoding() -> None:
    subject = "Ünïcödé " * 20 + "tail words"
    raw, msg = compose_parsed(
        Message(
            from_=("Doe, John", "j@example.com"),
            to=[
                ("Zoë Ω", "z@example.com"),
                ('quote " and \\ backslash', "q@example.com"),
                ("=?x?=", "e@example.com"),
            ],
            subject=subject,
            text="t",
        )
    )
    assert str(msg["Subject"]) == subject
    assert b'From: "Doe, John" <j@example.com>' in raw
    names = [a.display_name for a in msg["To"].addresses]
    assert names == ["Zoë Ω", 'quote " and \\ backslash', "=?x?="]
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        assert len(line) <= 78, line
    for word in re.findall(rb"=\?utf-8\?[QB]\?[^?]*\?=", head):
        assert len(word) <= 75
        kind, payload = word[8:9], word[10:-2]
        octets = (
            base64.b64decode(payload) if kind == b"B" else binascii.a2b_qp(payload, header=True)
        )
        octets.decode("utf-8")  # each encoded-word holds whole UTF-8 sequences


def test_plain_subject_untouched_and_long_words_kept() -> None:
    url = "https://example.com/" + "a" * 150
    raw, msg = compose_parsed(Message(**BASE, subject=f"Read {url} now", text="t"))  # type: ignore[arg-type]
    assert str(msg["Subject"]) == f"Read {url} now"
    assert url.encode() in raw


@pytest.mark.parametrize(
    "subject",
    [
        "a\r\nBcc: evil@x.com",
        "line\nX-Evil: 1",
        "cr\rX-Evil: 1",
        "nul\x00x",
        " leading",
        "trailing ",
        "two  spaces",
        "tab\there",
        "",
    ],
)
def test_subject_control_characters_round_trip(subject: str) -> None:
    raw, msg = compose_parsed(Message(**BASE, subject=subject, text="t"))  # type: ignore[arg-type]
    assert str(msg["Subject"]) == subject
    assert header_names(raw).count("Bcc") == 0
    assert "X-Evil" not in header_names(raw)


def test_custom_headers() -> None:
    raw, msg = compose_parsed(
        Message(
            **BASE,  # type: ignore[arg-type]
            text="t",
            headers={
                "X-Tag": "simple",
                "X-Multi": ["one", "two"],
                "X-Prepared": PreparedHeader("=?utf-8?B?w6k=?=\r\n folded"),
                "X-Evil": "a\r\nBcc: evil@x.com",
                "X-Unicode": "héllo",
            },
        )
    )
    assert msg.get_all("X-Multi") == ["one", "two"]
    assert b"X-Prepared: =?utf-8?B?w6k=?=\r\n folded\r\n" in raw
    assert str(msg["X-Evil"]) == "a\r\nBcc: evil@x.com"
    assert "Bcc" not in header_names(raw)
    assert str(msg["X-Unicode"]) == "héllo"
    pairs = compose_sync(Message(**BASE, text="t", headers=[("X-A", "1"), ("X-A", "2")])).raw  # type: ignore[arg-type]
    assert b"X-A: 1\r\nX-A: 2\r\n" in pairs


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"X Bad": "v"}, "headers['X Bad']"),
        ({"X-Bad:": "v"}, "headers['X-Bad:']"),
        ({"X-Bad\r\nBcc": "v"}, "headers['X-Bad\\r\\nBcc']"),
        ({"": "v"}, "headers['']"),
        ({"Ünï": "v"}, "headers['Ünï']"),
        ({"Subject": "v"}, "headers['Subject']"),
        ({"content-type": "text/html"}, "headers['content-type']"),
        ({"X-P": PreparedHeader("a\r\nBcc: x@y.com")}, "headers['X-P']"),
        ({"X-P": PreparedHeader("a\nb")}, "headers['X-P']"),
        ({"X-P": PreparedHeader("a\rb")}, "headers['X-P']"),
        ({"X-P": PreparedHeader("a\x00b")}, "headers['X-P']"),
        ({"X-P": PreparedHeader("a\r\n \r\nb")}, "headers['X-P']"),
        ({"X-P": PreparedHeader("a\r\n")}, "headers['X-P']"),
        ({"X-P": PreparedHeader("x" * 1000)}, "headers['X-P']"),
        ({"X-N": 5}, "headers['X-N']"),
    ],
)
def test_bad_custom_headers(headers: dict[str, object], field: str) -> None:
    with pytest.raises(HeaderError) as info:
        compose_sync(Message(**BASE, text="t", headers=headers))  # type: ignore[arg-type]
    assert info.value.field == field


def test_list_headers() -> None:
    raw, msg = compose_parsed(
        Message(
            **BASE,  # type: ignore[arg-type]
            text="t",
            list_headers=ListHeaders(
                help="https://example.com/help",
                unsubscribe=[
                    ListLink("https://example.com/u?id=1", "Unsubscribe me"),
                    "unsub@example.com",
                ],
                subscribe=ListLink("mailto:sub@example.com", "Zoë's list"),
                post="<mailto:post@example.com>",
                owner="owner@example.com",
                archive="https://example.com/archive",
                id=ListLink("news.example.com", "News, weekly"),
                one_click=True,
            ),
        )
    )
    assert str(msg["List-Help"]) == "<https://example.com/help>"
    assert (
        b"List-Unsubscribe: <https://example.com/u?id=1> (Unsubscribe me),\r\n"
        b" <mailto:unsub@example.com>\r\n" in raw
    )
    assert str(msg["List-Post"]) == "<mailto:post@example.com>"
    assert str(msg["List-Owner"]) == "<mailto:owner@example.com>"
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in raw
    assert b'List-ID: "News, weekly" <news.example.com>\r\n' in raw
    assert "Zoë's list" in str(msg["List-Subscribe"])
    mapping = compose_sync(
        Message(**BASE, text="t", list_headers={"unsubscribe": "https://x.com/u"})
    ).raw  # type: ignore[arg-type]
    assert b"List-Unsubscribe: <https://x.com/u>\r\n" in mapping


@pytest.mark.parametrize(
    ("list_headers", "field"),
    [
        (
            ListHeaders(unsubscribe="http://example.com/u", one_click=True),
            "list_headers.unsubscribe",
        ),
        (
            ListHeaders(unsubscribe="mailto:u@example.com", one_click=True),
            "list_headers.unsubscribe",
        ),
        (ListHeaders(one_click=True), "list_headers.unsubscribe"),
        (ListHeaders(help="https://x.com/\r\nBcc: e@x.com"), "list_headers.help"),
        (ListHeaders(help="https://x.com/a b"), "list_headers.help"),
        (ListHeaders(owner="not an address@"), "list_headers.owner"),
        (ListHeaders(id="bad id"), "list_headers.id"),
        ({"bogus": "x"}, "list_headers"),
    ],
)
def test_bad_list_headers(list_headers: object, field: str) -> None:
    with pytest.raises(HeaderError) as info:
        compose_sync(Message(**BASE, text="t", list_headers=list_headers))  # type: ignore[arg-type]
    assert info.value.field == field


# ----------------------------------------------------------------------- attachments


def test_attachment_options() -> None:
    raw, msg = compose_parsed(
        Message(
            **BASE,  # type: ignore[arg-type]
            text="t",
            attachments=[
                Attachment(content=b"%PDF-1.4", filename="report.pdf"),
                Attachment(content=b"??", filename="noext"),
                Attachment(content=b"x"),
                Attachment(content="aGVsbG8=", encoding="base64", filename="b64.bin"),
                Attachment(content="68656c6c6f", encoding="hex", filename="hex.bin"),
                Attachment(content="héllo", encoding="latin-1", filename="l1.txt"),
                Attachment(
                    content="plain", filename="qp.txt", content_transfer_encoding="quoted-printable"
                ),
                Attachment(
                    content=b"i",
                    filename="in.txt",
                    content_disposition="inline",
                    headers={"X-Part": "1"},
                ),
                Attachment(
                    content=b"data", filename="Ünïcödé naïve résumé with a long long long name.pdf"
                ),
                Attachment(content=b"q", filename='we"ird\\name.txt'),
            ],
        )
    )
    atts = list(msg.iter_attachments())
    assert [a.get_content_type() for a in atts] == [
        "application/pdf",
        "application/octet-stream",
        "application/octet-stream",
        "application/octet-stream",
        "application/octet-stream",
        "text/plain",
        "text/plain",
        "text/plain",
        "application/pdf",
        "text/plain",
    ]
    assert atts[2].get_filename() == "attachment-3.bin"
    assert atts[3].get_payload(decode=True) == b"hello"
    assert atts[4].get_payload(decode=True) == b"hello"
    assert atts[5].get_payload(decode=True) == "héllo".encode("latin-1")
    assert atts[5].get_content_charset() == "latin-1"
    assert str(atts[6]["Content-Transfer-Encoding"]) == "quoted-printable"
    assert atts[7].get_content_disposition() == "inline"
    assert str(atts[7]["X-Part"]) == "1"
    assert atts[8].get_filename() == "Ünïcödé naïve résumé with a long long long name.pdf"
    assert b"filename*0*=utf-8''" in raw
    assert atts[9].get_filename() == 'we"ird\\name.txt'


def test_cid_attachment_is_inline_with_content_id() -> None:
    _, msg = compose_parsed(
        Message(
            **BASE,
            html='<img src="cid:logo@x">',
            attachments=[Attachment(content=PNG, filename="l.png", cid="<logo@x>")],
        )  # type: ignore[arg-type]
    )
    image = next(p for p in msg.walk() if p.get_content_type() == "image/png")
    assert str(image["Content-ID"]) == "<logo@x>"
    assert image.get_content_disposition() == "inline"


@pytest.mark.parametrize(
    ("attachment", "exc", "field"),
    [
        (Attachment(content=b"x", cid="a b"), HeaderError, "attachments[0].cid"),
        (Attachment(content=b"x", cid="a\r\nBcc: x@y.com"), HeaderError, "attachments[0].cid"),
        (Attachment(content=b"x", cid="ü"), HeaderError, "attachments[0].cid"),
        (Attachment(content=b"x", content_type="text"), HeaderError, "attachments[0].content_type"),
        (
            Attachment(content=b"x", content_type="text/plain; charset=a\r\nb"),
            HeaderError,
            "attachments[0].content_type",
        ),
        (
            Attachment(content=b"x", content_transfer_encoding="uuencode"),
            MessageError,
            "attachments[0].content_transfer_encoding",
        ),
        (Attachment(content="é", content_transfer_encoding="7bit"), MessageError, "attachments[0]"),
        (Attachment(content="zz", encoding="hex"), ContentError, "attachments[0]"),
        (Attachment(content="x", encoding="no-such-codec"), ContentError, "attachments[0]"),
        (
            Attachment(content=b"x", headers={"Content-Type": "x/y"}),
            HeaderError,
            "attachments[0].headers['Content-Type']",
        ),
        (
            Attachment(content=b"x", headers={"X\nY": "1"}),
            HeaderError,
            "attachments[0].headers['X\\nY']",
        ),
        (
            Attachment(content=b"x", content_disposition="evil\r\nX: 1"),
            HeaderError,
            "attachments[0].content_disposition",
        ),  # type: ignore[arg-type]
        (Attachment(raw=b"not a header line\r\n\r\nbody"), HeaderError, "attachments[0]"),
        (Attachment(raw=b"Content-Type: text/plain"), HeaderError, "attachments[0]"),
        (Attachment(raw=b"X: " + b"y" * 1000 + b"\r\n\r\nbody"), MessageError, "attachments[0]"),
    ],
)
def test_attachment_errors(attachment: Attachment, exc: type[Exception], field: str) -> None:
    with pytest.raises(exc) as info:
        compose_sync(Message(**BASE, text="t", attachments=[attachment]))  # type: ignore[arg-type]
    assert info.value.field == field  # type: ignore[attr-defined]


def test_filename_with_control_characters_is_encoded() -> None:
    name = "evil\r\nContent-Type: text/html\x00.txt"
    _, msg = compose_parsed(
        Message(**BASE, text="t", attachments=[Attachment(content=b"x", filename=name)])
    )  # type: ignore[arg-type]
    (att,) = msg.iter_attachments()
    assert att.get_filename() == name
    assert att.get_content_type() == "text/plain"


def test_raw_part_inserted_as_given() -> None:
    part = b"Content-Type: text/x-custom\nX-Raw: yes\n\nraw body line\n"
    raw, msg = compose_parsed(Message(**BASE, text="t", attachments=[Attachment(raw=part)]))  # type: ignore[arg-type]
    assert b"Content-Type: text/x-custom\r\nX-Raw: yes\r\n\r\nraw body line\r\n" in raw
    custom = next(p for p in msg.walk() if p.get_content_type() == "text/x-custom")
    assert str(custom["X-Raw"]) == "yes"


def test_alternative_and_body_sources_as_attachment_objects() -> None:
    _, msg = compose_parsed(
        Message(
            **BASE,  # type: ignore[arg-type]
            text=Attachment(content=b"from bytes"),
            html=Attachment(href="data:text/html,%3Cb%3Ehi%3C%2Fb%3E"),
            alternatives=[Attachment(content="{}", content_type="application/json")],
        )
    )
    parts = list(msg.iter_parts())
    assert parts[0].get_content() == "from bytes"
    assert parts[1].get_content() == "<b>hi</b>"
    assert parts[2].get_content_type() == "application/json"


def test_attach_data_urls() -> None:
    png = base64.b64encode(PNG).decode()
    gif = "data:image/gif;base64,R0lGOD=="
    html = f'<p><img alt="x" src="data:image/png;base64,{png}"> and <IMG src=\'{gif}\'></p>'
    message = Message(**BASE, text="t", html=html, attach_data_urls=True)  # type: ignore[arg-type]
    _, msg = compose_parsed(message, seed=3)
    assert tree(msg) == (
        "multipart/alternative",
        ["text/plain", ("multipart/related", ["text/html", "image/png", "image/gif"])],
    )
    html_part = next(p for p in msg.walk() if p.get_content_type() == "text/html")
    cids = re.findall(r"cid:([^\"']+)", html_part.get_content())
    images = [p for p in msg.walk() if p.get_content_maintype() == "image"]
    assert [str(p["Content-ID"]) for p in images] == [f"<{c}>" for c in cids]
    assert images[0].get_payload(decode=True) == PNG
    assert [p.get_filename() for p in images] == ["image-1.png", "image-2.gif"]
    untouched = compose_sync(Message(**BASE, html=html)).raw  # type: ignore[arg-type]
    assert b"cid:" not in untouched


def test_no_line_over_998_anywhere() -> None:
    raw, _ = compose_parsed(
        Message(
            **BASE,  # type: ignore[arg-type]
            subject="x" * 2000,
            text="y" * 5000,
            html="<p>" + "z" * 5000 + "</p>",
            headers={"X-Long": "w" * 3000},
            attachments=[Attachment(content=b"a" * 5000, filename="f" * 300 + ".txt")],
        )
    )
    check_wire(raw)


async def test_async_compose_matches_sync() -> None:
    message = Message(
        **BASE, text="t", html="<p>h</p>", attachments=[Attachment(content=PNG, filename="a.png")]
    )  # type: ignore[arg-type]
    assert (await compose(message, seed=1)).raw.split(b"Date:")[1:] != []
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    assert (await compose(message, seed=1, now=now)).raw == compose_sync(
        message, seed=1, now=now
    ).raw


# -- caches of the composer: same results, errors never hidden ------------------------------


def test_the_date_cache_formats_once_per_second_of_its_clock() -> None:
    import datetime
    import email.utils

    from asyncmailer.mime._headers import DateCache

    now = [1_700_000_000.25]
    calls = []

    def clock() -> float:
        calls.append(now[0])
        return now[0]

    cache = DateCache(clock)
    first = cache.now()
    expected = email.utils.format_datetime(
        datetime.datetime.fromtimestamp(1_700_000_000, datetime.timezone.utc)
    )
    assert first == expected == "Tue, 14 Nov 2023 22:13:20 +0000"
    now[0] = 1_700_000_000.999
    assert cache.now() == first  # same second
    now[0] = 1_700_000_001.0
    second = cache.now()
    assert second == "Tue, 14 Nov 2023 22:13:21 +0000"
    now[0] = 1_700_000_000.5  # the clock went back: the text follows it
    assert cache.now() == first
    assert len(calls) == 4


def test_a_composed_date_is_the_current_second(monkeypatch: pytest.MonkeyPatch) -> None:
    import email.utils
    import time

    from asyncmailer.mime import _headers

    monkeypatch.setattr(_headers, "_DATE_NOW", _headers.DateCache(lambda: 86400.0 * 365))
    raw = compose_sync(Message(from_="a@example.com", to="b@example.com", text="x")).raw
    assert b"\r\nDate: Fri, 01 Jan 1971 00:00:00 +0000\r\n" in raw
    # the real clock: within a second or two of time.time()
    monkeypatch.undo()
    raw = compose_sync(Message(from_="a@example.com", to="b@example.com", text="x")).raw
    date = raw.split(b"\r\nDate: ")[1].split(b"\r\n")[0].decode()
    assert abs(email.utils.parsedate_to_datetime(date).timestamp() - time.time()) < 5


def test_the_envelope_cache_gives_the_validated_envelope_and_never_hides_an_error() -> None:
    from asyncmailer.errors import AddressError, MessageError
    from asyncmailer.message import Envelope
    from asyncmailer.mime._build import make_envelope

    given = Envelope("Shop <shop@bücher.example>", ("a@x.com", "a@X.COM", "b@y.org"))
    for _ in range(3):
        assert make_envelope(given) == Envelope(
            "shop@xn--bcher-kva.example", ("a@x.com", "b@y.org")
        )
    bad = Envelope("shop@example.com", ("a@x.com", "not an address"))
    for _ in range(3):
        with pytest.raises(AddressError):
            make_envelope(bad)
    for _ in range(2):
        with pytest.raises(MessageError):
            make_envelope(Envelope("shop@example.com", ()))

    # a str subclass is validated every time, never looked up
    class Sneaky(str):
        __slots__ = ()

    sneaky = Envelope(Sneaky("shop@example.com"), ("a@x.com",))
    assert make_envelope(sneaky) == Envelope("shop@example.com", ("a@x.com",))


def test_cached_address_lines_are_the_same_lines_and_keep_the_smtputf8_flag() -> None:
    from asyncmailer.mime import _build

    # SMTPUTF8 comes from the Reply-To line alone (the envelope is ASCII)
    message = Message(
        from_="a@x.com", to='"Doe, John" <j@x.com>', reply_to="josé@bücher.example", text="x"
    )
    _build._ADDRESS_LINES.clear()
    first = compose_sync(message, seed=1)
    second = compose_sync(message, seed=1)
    assert first.raw == second.raw
    assert first.smtputf8 and second.smtputf8
    assert b'\r\nTo: "Doe, John" <j@x.com>\r\n' in second.raw
    plain = compose_sync(Message(from_="a@x.com", to='"Doe, John" <j@x.com>', text="x"))
    assert not plain.smtputf8


def test_a_prebuilt_message_needing_no_change_is_sent_as_given() -> None:
    data = b"From: a@x.com\r\nTo: b@y.org\r\nMessage-ID: <1@x.com>\r\nSubject: s\r\n\r\nbody\r\n"
    composed = compose_sync(data)
    assert composed.raw == data
    assert composed.message_id == "<1@x.com>"
    with_bcc = compose_sync(data.replace(b"Subject", b"Bcc: c@z.net\r\nSubject"))
    assert with_bcc.raw == data
    assert with_bcc.envelope.to == ("b@y.org", "c@z.net")
