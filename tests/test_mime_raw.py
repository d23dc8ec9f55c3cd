"""Prebuilt messages: raw bytes/str, Message.raw and EmailMessage input."""

from __future__ import annotations

from email.message import EmailMessage
from email.mime.text import MIMEText
from pathlib import Path

import pytest

from asyncmailer.errors import AddressError, HeaderError, MessageError
from asyncmailer.message import Attachment, Envelope, Message
from asyncmailer.mime import compose, compose_sync
from tests.mime_helpers import (
    check_wire,
    header_names,
    parse,
)

RAW = (
    b"From: Shop <shop@example.com>\n"
    b'To: ada@example.com, "Doe, John" <j@x.com>\n'
    b"Cc: c@example.com\n"
    b"Bcc: hidden@example.com,\n"
    b" other@example.com\n"
    b"Subject: raw\n"
    b"\n"
    b"line one\r\n"
    b"line two\r"
)


def test_raw_bytes_normalised_bcc_stripped_message_id_added() -> None:
    composed = compose_sync(RAW, seed=1)
    check_wire(composed.raw)
    assert b"Bcc" not in composed.raw
    assert b"hidden@" not in composed.raw
    assert composed.raw.endswith(b"\r\n\r\nline one\r\nline two\r\n")
    assert composed.envelope == Envelope(
        "shop@example.com",
        ("ada@example.com", "j@x.com", "c@example.com", "hidden@example.com", "other@example.com"),
    )
    assert composed.raw.startswith(f"Message-ID: {composed.message_id}\r\n".encode())
    assert composed.message_id.endswith("@example.com>")
    assert header_names(composed.raw) == ["Message-ID", "From", "To", "Cc", "Subject"]
    parse(composed.raw)


def test_raw_keeps_existing_message_id_and_bcc_on_request() -> None:
    raw = b"Message-ID: <given@host>\r\nFrom: a@x.com\r\nBcc: b@y.com\r\n\r\nbody"
    composed = compose_sync(raw, keep_bcc=True)
    assert composed.message_id == "<given@host>"
    assert composed.raw == raw
    assert composed.envelope.to == ("b@y.com",)


def test_raw_str_and_envelope_override() -> None:
    composed = compose_sync(RAW.decode(), envelope={"from_": "bounce@example.com", "to": "z@z.com"})
    assert composed.envelope == Envelope("bounce@example.com", ("z@z.com",))


def test_raw_errors() -> None:
    with pytest.raises(MessageError) as info:
        compose_sync(b"Subject: no addresses\r\n\r\nbody")
    assert info.value.field == "from_"
    with pytest.raises(MessageError) as info:
        compose_sync(b"From: a@x.com\r\n\r\nbody")
    assert info.value.field == "to"
    with pytest.raises(HeaderError):
        compose_sync(b"From: a@x.com\r\nnot a header\r\n\r\nbody")
    with pytest.raises(MessageError):
        compose_sync(b"From: a@x.com\r\nTo: b@y.com\r\n\r\n" + b"x" * 1200)
    with pytest.raises(AddressError):
        compose_sync(b"From: a@x.com\r\nTo: John b@y.com\r\n\r\nbody")
    with pytest.raises(MessageError):
        compose_sync(12)  # type: ignore[arg-type]


async def test_message_raw_field(tmp_path: Path) -> None:
    composed = await compose(Message(raw=RAW))
    assert b"Bcc" not in composed.raw
    assert composed.envelope.from_ == "shop@example.com"
    # message fields override the headers for the envelope
    composed = await compose(Message(raw=RAW, from_="other@example.com", to="q@q.com"))
    assert composed.envelope == Envelope("other@example.com", ("q@q.com",))
    composed = await compose(Message(raw=RAW, envelope=Envelope("e@x.com", ("f@y.com",))))
    assert composed.envelope == Envelope("e@x.com", ("f@y.com",))
    path = tmp_path / "m.eml"
    path.write_bytes(RAW)
    composed = await compose(Message(raw=Attachment(path=str(path))))
    assert composed.envelope.from_ == "shop@example.com"
    composed = await compose(Message(raw=RAW, keep_bcc=True))
    assert b"Bcc: hidden@example.com,\r\n other@example.com\r\n" in composed.raw


async def test_email_message_input() -> None:
    msg = EmailMessage()
    msg["From"] = "Zoë <zoe@example.com>"
    msg["To"] = "ada@example.com"
    msg["Bcc"] = "secret@example.com"
    msg["Subject"] = "stdlib"
    msg.set_content("From the stdlib\nFrom line that must not be mangled\n")
    composed = await compose(msg)
    check_wire(composed.raw)
    assert b"Bcc" not in composed.raw
    assert b">From" not in composed.raw
    assert composed.envelope == Envelope(
        "zoe@example.com", ("ada@example.com", "secret@example.com")
    )
    assert str(parse(composed.raw)["Message-ID"]) == composed.message_id
    assert msg["Bcc"] == "secret@example.com"  # the caller's object is untouched
    legacy = MIMEText("legacy body")
    legacy["From"] = "a@x.com"
    legacy["To"] = "b@y.com"
    legacy["Message-ID"] = "<legacy@x.com>"
    composed = compose_sync(legacy)
    assert composed.message_id == "<legacy@x.com>"
    assert composed.envelope.to == ("b@y.com",)


def test_to_crlf_matches_the_reference_normalisation() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from asyncmailer.mime._raw import to_crlf

    def reference(data: bytes) -> bytes:
        return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")

    @given(st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"\n\r"]), max_size=20))
    def check(pieces: list[bytes]) -> None:
        data = b"".join(pieces)
        assert to_crlf(data) == reference(data)

    check()
    canonical = b"From: a@example.com\r\n\r\nbody\r\n"
    assert to_crlf(canonical) is canonical  # already CRLF: returned without a copy
