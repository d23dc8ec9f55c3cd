"""Suppression checked by the transports before a rate unit or a request is spent."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from asyncmailer import MemoryTransport, SESTransport, Suppression
from asyncmailer.errors import ConfigurationError, MessageError
from asyncmailer.feedback import (
    MemorySuppressionList,
    RedisSuppressionList,
    SuppressedRecipientError,
    SuppressionEntry,
    SuppressionReason,
    apply_to,
    parse_ses_event,
)
from asyncmailer.testing import SESEndpoint
from tests.redis_helpers import RedisServer, require_redis_server

SENDER = "shop@example.com"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def _entry(email: str, reason: SuppressionReason = SuppressionReason.BOUNCE) -> SuppressionEntry:
    return SuppressionEntry(email=email, reason=reason, since=NOW)


async def test_fail_policy_refuses_the_message_before_any_request_or_rate_unit() -> None:
    suppressed = MemorySuppressionList([_entry("gone@example.org")])
    async with (
        SESEndpoint() as endpoint,
        SESTransport(endpoint_url=endpoint.url, sending_rate=1, suppression=suppressed) as ses,
    ):
        assert ses.suppression is not None and ses.suppression.policy == "fail"
        await ses.send_mail(from_=SENDER, to="ok@example.org", text="x")
        with pytest.raises(SuppressedRecipientError) as info:
            # A rate unit would cost a full second at 1/s: the refusal must come first.
            await asyncio.wait_for(
                ses.send_mail(from_=SENDER, to=["ok@example.org", "Gone@Example.org"], text="x"),
                0.5,
            )
        assert isinstance(info.value, MessageError)
        assert set(info.value.suppressed) == {"Gone@Example.org"}
    assert len(endpoint.stats().send_arrivals) == 1


async def test_drop_policy_sends_to_the_others_and_reports_the_dropped() -> None:
    suppressed = MemorySuppressionList([_entry("gone@example.org", SuppressionReason.COMPLAINT)])
    async with (
        SESEndpoint() as endpoint,
        SESTransport(
            endpoint_url=endpoint.url,
            suppression=Suppression(list=suppressed, policy="drop"),
        ) as ses,
    ):
        result = await ses.send_mail(
            from_=SENDER, to="ok@example.org", bcc="gone@example.org", text="x"
        )
        with pytest.raises(SuppressedRecipientError):  # nobody left
            await ses.send_mail(from_=SENDER, to="gone@example.org", text="x")
    assert result.envelope.to == ("ok@example.org",)
    assert result.suppressed["gone@example.org"].reason is SuppressionReason.COMPLAINT
    (stored,) = endpoint.messages()
    assert list(stored.destinations) == ["ok@example.org"]


async def test_every_transport_takes_it_and_bad_settings_are_configuration_errors() -> None:
    suppressed = MemorySuppressionList([_entry("gone@example.org")])
    async with MemoryTransport(suppression=suppressed) as memory:
        with pytest.raises(SuppressedRecipientError):
            await memory.send_mail(from_=SENDER, to="gone@example.org", text="x")
        assert len(memory) == 0
    with pytest.raises(ConfigurationError):
        Suppression(list=suppressed, policy="ignore")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        MemoryTransport(suppression=object())  # type: ignore[arg-type]


@pytest.fixture
def redis_url() -> Iterator[str]:
    server = RedisServer(require_redis_server())
    server.start()
    try:
        yield server.url
    finally:
        server.kill()


BOUNCE = {
    "notificationType": "Bounce",
    "bounce": {
        "bounceType": "Permanent",
        "bounceSubType": "General",
        "bouncedRecipients": [{"emailAddress": "bounced@example.org"}],
        "timestamp": "2026-12-01T12:00:00.000Z",
        "feedbackId": "feedback-1",
    },
    "mail": {
        "timestamp": "2026-12-01T11:59:59.000Z",
        "messageId": "0100-bounce",
        "source": SENDER,
        "destination": ["bounced@example.org"],
    },
}


async def test_a_bounce_applied_to_a_shared_redis_list_stops_the_next_send(
    redis_url: str,
) -> None:
    # Two transports (think: two processes) share one Redis list; a bounce seen by the
    # feedback loop of one stops the other's next send to that address.
    writer = RedisSuppressionList(redis_url, key="ses:suppressed")
    reader = RedisSuppressionList(redis_url, key="ses:suppressed")
    async with (
        SESEndpoint() as endpoint,
        SESTransport(endpoint_url=endpoint.url, suppression=reader) as ses,
    ):
        await ses.send_mail(from_=SENDER, to="bounced@example.org", text="first")
        await apply_to(writer)(parse_ses_event(BOUNCE))
        with pytest.raises(SuppressedRecipientError):
            await ses.send_mail(from_=SENDER, to="bounced@example.org", text="second")
    await writer.aclose()
    await reader.aclose()
    assert len(endpoint.stats().send_arrivals) == 1


async def test_smtp_leaves_a_dropped_recipient_out_of_rcpt_to() -> None:
    from asyncmailer import SMTPTransport
    from tests.smtpd_helpers import SMTPServer

    suppressed = MemorySuppressionList([_entry("gone@example.org")])
    async with (
        SMTPServer() as server,
        SMTPTransport(
            hostname=server.host,
            port=server.port,
            local_hostname="localhost",
            suppression=Suppression(list=suppressed, policy="drop"),
        ) as smtp,
    ):
        result = await smtp.send_mail(
            from_=SENDER, to="ok@example.org", cc="gone@example.org", text="x"
        )
        with pytest.raises(SuppressedRecipientError):
            await smtp.send_mail(from_=SENDER, to="gone@example.org", text="x")
    [received] = server.messages
    assert received.rcpt_tos == ["ok@example.org"]
    assert list(result.suppressed) == ["gone@example.org"]
