"""MemoryTransport, through the ``outbox`` fixture of our own pytest plugin."""

from __future__ import annotations

import asyncio
import re

import pytest

from asyncmailer.errors import (
    ConfigurationError,
    DeliveryUnknownError,
    MessageRejectedError,
    Outcome,
    SendingRateExceededError,
    TransportStateError,
)
from asyncmailer.message import Attachment, Message
from asyncmailer.retry import RetryPolicy
from asyncmailer.transports.memory import MemoryTransport, SentMessage


def welcome(to: str = "Ada <ada@example.com>", **fields: object) -> Message:
    base: dict[str, object] = {
        "from_": "Shop <shop@example.com>",
        "to": to,
        "subject": "Welcome, Ada",
        "text": "Hello Ada, please confirm.",
        "html": "<p>Hello <b>Ada</b></p>",
    }
    base.update(fields)
    return Message(**base)  # type: ignore[arg-type]


async def test_outbox_fixture_is_an_open_memory_transport(outbox: MemoryTransport) -> None:
    assert isinstance(outbox, MemoryTransport)
    assert outbox.state.value == "open"
    outbox.assert_no_mail()
    assert len(outbox) == 0


async def test_sent_message_accessors(outbox: MemoryTransport) -> None:
    message = welcome(
        cc="bob@example.com",
        bcc="audit@example.com",
        headers={"X-Campaign": "spring"},
        attachments=[Attachment(filename="terms.txt", content=b"terms")],
    )
    result = await outbox.send_mail(message)
    sent = outbox.last
    assert isinstance(sent, SentMessage)
    assert sent.message is message
    assert sent.message_id == result.message_id
    assert sent.subject == "Welcome, Ada"
    assert sent.from_ == "Shop <shop@example.com>"
    assert sent.to == ("ada@example.com",)
    assert sent.cc == ("bob@example.com",)
    assert sent.recipients == ("ada@example.com", "bob@example.com", "audit@example.com")
    assert sent.text is not None and "please confirm" in sent.text
    assert sent.html is not None and "<b>Ada</b>" in sent.html
    assert sent.header("X-Campaign") == "spring"
    assert sent.header("Bcc") is None
    [attachment] = sent.attachments
    assert attachment.get_filename() == "terms.txt"
    assert attachment.get_payload(decode=True) == b"terms"
    assert sent.raw == sent.composed.raw
    assert result.transport == "memory"
    assert result.response == "stored in memory as #0"
    assert "Welcome, Ada" in repr(sent)


async def test_find_and_assert_sent(outbox: MemoryTransport) -> None:
    await outbox.send_mail(welcome())
    await outbox.send_mail(welcome(to="bob@example.com", subject="Invoice 7", text="Pay"))
    await outbox.send_mail(welcome(to="bob@example.com", subject="Invoice 8", text="Pay"))

    assert outbox.assert_sent(to="ADA@example.com").index == 0
    assert outbox.assert_sent(to="Ada <ada@example.com>", subject="Welcome, Ada").index == 0
    assert outbox.assert_sent(to="bob@example.com", count=2).subject == "Invoice 7"
    assert len(outbox.find(subject=re.compile(r"Invoice \d"))) == 2
    assert len(outbox.find(from_="shop@example.com")) == 3
    assert len(outbox.find(text="Pay")) == 2
    assert len(outbox.find(html=re.compile("Ada"))) == 3
    assert outbox.find(where=lambda m: m.index == 2)[0].subject == "Invoice 8"
    message_id = outbox[1].message_id
    assert outbox.find(message_id=message_id.strip("<>")) == [outbox[1]]
    outbox.assert_not_sent(to="carol@example.com")
    assert [m.index for m in outbox] == [0, 1, 2]


async def test_assertion_failures_explain_what_was_sent(outbox: MemoryTransport) -> None:
    await outbox.send_mail(welcome())
    with pytest.raises(AssertionError, match=r"(?s)subject='Nope'.*found 0.*Welcome, Ada"):
        outbox.assert_sent(subject="Nope")
    with pytest.raises(AssertionError, match="expected 2 message"):
        outbox.assert_sent(to="ada@example.com", count=2)
    with pytest.raises(AssertionError, match="expected no mail, 1 sent"):
        outbox.assert_no_mail()
    with pytest.raises(AssertionError, match="expected no message matching"):
        outbox.assert_not_sent(to="ada@example.com")
    with pytest.raises(ConfigurationError):
        outbox.assert_sent(count=0)


async def test_header_and_attachment_criteria(outbox: MemoryTransport) -> None:
    await outbox.send_mail(
        welcome(
            headers={"X-Tag": ["a", "b"]},
            attachments=[Attachment(filename="a.pdf", content=b"%PDF")],
        )
    )
    outbox.assert_sent(headers={"X-Tag": "b"}, attachment="a.pdf")
    outbox.assert_sent(headers={"X-Tag": re.compile("^a$")})
    outbox.assert_not_sent(headers={"X-Tag": "c"})
    outbox.assert_not_sent(attachment="b.pdf")
    outbox.assert_not_sent(headers={"X-Missing": "x"})


async def test_raw_and_keyword_input(outbox: MemoryTransport) -> None:
    await outbox.send_mail(
        b"From: a@example.com\r\nTo: b@example.com\r\nSubject: raw\r\n\r\nbody\r\n"
    )
    await outbox.send_mail(from_="a@example.com", to="c@example.com", subject="kw", text="x")
    assert outbox[0].message is not None  # raw input is wrapped in a Message(raw=...)
    assert outbox[0].subject == "raw"
    assert outbox[0].text is not None and outbox[0].text.strip() == "body"
    assert outbox.assert_sent(subject="kw").recipients == ("c@example.com",)


async def test_clear(outbox: MemoryTransport) -> None:
    await outbox.send_mail(welcome())
    outbox.fail_next(MessageRejectedError("no"))
    outbox.clear()
    outbox.assert_no_mail()
    assert outbox.attempts == 0
    await outbox.send_mail(welcome())  # the queued failure was forgotten too
    assert outbox.last.index == 0


async def test_fail_next_final_error(outbox: MemoryTransport) -> None:
    outbox.fail_next(MessageRejectedError("blocked by policy", code="MessageRejected"))
    with pytest.raises(MessageRejectedError) as info:
        await outbox.send_mail(welcome())
    assert info.value.attempts == 1
    assert info.value.message_id is not None
    outbox.assert_no_mail()
    await outbox.send_mail(welcome())
    assert len(outbox) == 1


async def test_fail_next_retry_safe_error_is_retried() -> None:
    retry = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.001)
    async with MemoryTransport(retry=retry) as transport:
        transport.fail_next(SendingRateExceededError("slow down"), times=2)
        result = await transport.send_mail(welcome())
        assert result.attempts == 3
        assert transport.attempts == 3
        assert len(transport) == 1

        injected = SendingRateExceededError("slow down", code="Throttling")
        transport.fail_next(injected, times=3)
        with pytest.raises(SendingRateExceededError) as info:
            await transport.send_mail(welcome())
        assert info.value.attempts == 3
        assert info.value.outcome is Outcome.RETRY_SAFE
        assert info.value.code == "Throttling"
        assert info.value is not injected  # each attempt raises its own copy
        assert injected.attempts == 1 and injected.message_id is None
        assert len(transport) == 1

        transport.fail_next(MessageRejectedError("no"), times=2)
        ids = []
        for _ in range(2):
            with pytest.raises(MessageRejectedError) as rejected:
                await transport.send_mail(welcome())
            ids.append(rejected.value.message_id)
        assert ids[0] != ids[1]  # each error names its own message


async def test_fail_next_validation(outbox: MemoryTransport) -> None:
    with pytest.raises(ConfigurationError):
        outbox.fail_next(MessageRejectedError("x"), times=0)
    with pytest.raises(ConfigurationError):
        outbox.fail_next(MessageRejectedError)  # type: ignore[arg-type]


async def test_ambiguous_failure_is_not_retried(outbox: MemoryTransport) -> None:
    outbox.fail_next(DeliveryUnknownError("lost"))
    with pytest.raises(DeliveryUnknownError):
        await outbox.send_mail(welcome())
    assert outbox.attempts == 1


async def test_concurrent_sends_with_max_connections() -> None:
    async with MemoryTransport(max_connections=2) as transport:
        await asyncio.gather(*(transport.send_mail(welcome(subject=f"n{i}")) for i in range(20)))
        assert sorted(m.subject or "" for m in transport) == sorted(f"n{i}" for i in range(20))


async def test_lifecycle_is_the_base_one() -> None:
    transport = MemoryTransport()
    with pytest.raises(TransportStateError):
        await transport.send_mail(welcome())
    async with transport:
        await transport.send_mail(welcome())
    with pytest.raises(TransportStateError):
        await transport.send_mail(welcome())
    assert len(transport) == 1  # the outbox survives closing
    assert "messages=1" in repr(transport)


def test_last_on_empty_outbox() -> None:
    with pytest.raises(AssertionError, match="no message"):
        _ = MemoryTransport().last


# ----------------------------------------------------------------------- send_composed


async def test_send_composed_sends_the_prepared_bytes_unchanged() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from asyncmailer.dkim import DKIMSigner

    signer = DKIMSigner("example.com", "s1", private_key=ed25519.Ed25519PrivateKey.generate())
    async with MemoryTransport(dkim=signer) as transport:
        message = welcome(bcc="audit@example.com", ses={"Tags": [{"Name": "a", "Value": "b"}]})
        composed, prepared = await transport.prepare(message)
        assert composed.raw.count(b"DKIM-Signature:") == 1
        result = await transport.send_composed(composed, prepared)
        sent = transport.last
        # Neither parsed nor signed again: the very bytes, to the very envelope.
        assert sent.raw == composed.raw and sent.composed.envelope == composed.envelope
        assert sent.message is prepared and result.message_id == composed.message_id
        assert "audit@example.com" in sent.recipients
        await transport.send_composed(composed)  # without the Message: no options
        assert transport.last.raw == composed.raw and transport.last.message is None
        assert transport.attempts == 2


async def test_send_composed_applies_the_transports_checks_and_retries() -> None:
    class Strict(MemoryTransport):
        def _preflight(self, composed: object, message: object) -> None:
            raise ConfigurationError("refused by the transport's checks", option="x")

    async with Strict() as strict:
        composed, _ = await MemoryTransport().prepare(welcome())
        with pytest.raises(ConfigurationError):
            await strict.send_composed(composed)
        assert len(strict) == 0
    async with MemoryTransport(
        retry=RetryPolicy(max_attempts=3, initial_backoff=0.001)
    ) as transport:
        composed, _ = await transport.prepare(welcome())
        transport.fail_next(SendingRateExceededError("slow down"), times=2)
        result = await transport.send_composed(composed)
        assert result.attempts == 3 and transport.last.raw == composed.raw


async def test_send_composed_refuses_what_is_not_composed() -> None:
    from asyncmailer.errors import MessageError

    async with MemoryTransport() as transport:
        with pytest.raises(MessageError) as caught:
            await transport.send_composed(welcome())  # type: ignore[arg-type]
        assert caught.value.field == "message"
        composed, _ = await transport.prepare(welcome())
        with pytest.raises(MessageError):
            await transport.send_composed(composed, b"raw")  # type: ignore[arg-type]
        assert len(transport) == 0
