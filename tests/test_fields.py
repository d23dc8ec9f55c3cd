"""MessageFields stays in step with Message; unknown fields are MessageErrors with a hint."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from email.message import EmailMessage

import pytest

from asyncmailer import Message, MessageFields, Transport, TransportOptions
from asyncmailer.dkim import DKIMSigner
from asyncmailer.errors import ConfigurationError, MessageError
from asyncmailer.fields import check_field_names
from asyncmailer.transports import MemoryTransport


def test_message_fields_has_every_field_of_message_with_the_same_type() -> None:
    message_hints = typing.get_type_hints(Message, localns={"DKIMSigner": DKIMSigner})
    field_hints = typing.get_type_hints(MessageFields)
    names = [f.name for f in dataclasses.fields(Message)]
    assert list(field_hints) == names
    for name in names:
        assert field_hints[name] == message_hints[name], name
    assert MessageFields.__required_keys__ == frozenset()


def test_transport_options_are_the_keywords_of_transport() -> None:
    parameters = inspect.signature(Transport.__init__).parameters
    keywords = [p for p in parameters if p != "self"]
    # Keys only: value types may name optional packages (feedback) imported for type checking.
    assert list(TransportOptions.__annotations__) == keywords


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("subjct", "subject"), ("from", "from_"), ("attachment", "attachments"), ("html_", "html")],
)
def test_unknown_field_names_it_and_suggests_the_closest(name: str, suggestion: str) -> None:
    with pytest.raises(MessageError) as info:
        check_field_names({name: "x"})
    assert info.value.field == name
    assert f"did you mean {suggestion!r}" in str(info.value)


async def test_send_mail_refuses_a_misspelled_field_before_composing() -> None:
    async with MemoryTransport() as outbox:
        with pytest.raises(MessageError) as info:
            await outbox.send_mail(to="a@example.com", subjct="x")  # type: ignore[call-arg]
        assert info.value.field == "subjct"
        assert "did you mean 'subject'" in str(info.value)
        with pytest.raises(MessageError) as info:
            await outbox.prepare(Message(to="a@example.com"), txt="x")  # type: ignore[call-arg]
        assert info.value.field == "txt"
        outbox.assert_no_mail()


async def test_message_problems_are_message_errors_not_configuration_errors() -> None:
    email = EmailMessage()
    email["From"] = "a@example.com"
    email["To"] = "b@example.com"
    email.set_content("hi")
    async with MemoryTransport() as outbox:
        with pytest.raises(MessageError) as info:
            await outbox.send_mail(email, subject="x")
        assert info.value.field == "subject"
        with pytest.raises(MessageError) as info:
            await outbox.send_mail(b"From: a@example.com\r\n\r\nx", raw=b"y")
        assert info.value.field == "raw"
        with pytest.raises(MessageError) as info:
            await outbox.send_mail(from_="a@example.com", to="b@example.com", text="x", dkim=True)
        assert info.value.field == "dkim"
        assert not isinstance(info.value, ConfigurationError)
