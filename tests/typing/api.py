"""Realistic user code, type-checked by mypy --strict and pyright (never executed).

``nox -s typecheck`` runs both over this file. The lines marked ``# type: ignore[code]``
(mypy) and ``# pyright: ignore[rule]`` are errors a user must see: a misspelled field, a
wrong field type, a forgotten ``await``. Both checkers also report ignores that are not
needed (mypy ``warn_unused_ignores``, pyright ``reportUnnecessaryTypeIgnoreComment``), so
a line that stops being an error fails the check.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncGenerator
from typing import Literal

from typing_extensions import assert_type

import asyncmailer
from asyncmailer import (
    Attachment,
    AWSClientSettings,
    ComposedMessage,
    Credentials,
    FileTransport,
    Limits,
    MemoryTransport,
    Message,
    MessageFields,
    QuotaPolicy,
    RetryPolicy,
    SendResult,
    SESTransport,
    SMTPPool,
    SMTPTransport,
    TLSSettings,
    Transport,
)
from asyncmailer.errors import (
    ConfigurationError,
    DeliveryError,
    DeliveryUnknownError,
    MailError,
    MessageError,
    Outcome,
    RecipientsRefusedError,
    ServiceUnavailableError,
)


async def one_liner() -> None:
    async with SESTransport(region_name="eu-west-1", sending_rate=14) as ses:
        result = await ses.send_mail(
            from_="Shop <shop@example.com>",
            to=["ada@example.com", ("Bob", "bob@example.com")],
            subject="Your order",
            text="Thanks!",
            html="<p>Thanks!</p>",
            attachments=[Attachment(path="invoice.pdf")],
            ses={"ConfigurationSetName": "transactional"},
        )
        assert_type(result, SendResult)
        assert_type(result.message_id, str)
        assert_type(result.attempts, int)
        assert_type(ses, SESTransport)
        assert_type(ses.api, Literal["v1", "v2"])
        assert_type(ses.limits, Limits)


async def grouped_options() -> None:
    limits = Limits(sending_rate=14, max_connections=20, drain_timeout=60)
    aws = AWSClientSettings(
        region_name="eu-west-1",
        credentials=Credentials("AKIAEXAMPLE", os.environ["SES_SECRET"]),
        read_timeout=20,
    )
    quota = QuotaPolicy(safety_factor=0.8, daily="wait")
    ses = SESTransport(limits=limits, aws=aws, quota=quota, retry=RetryPolicy(max_attempts=3))
    auto = SESTransport(sending_rate="auto", max_connections=10)
    smtp = SMTPTransport(
        hostname="smtp.example.com",
        start_tls=True,
        username="app",
        password=os.environ["SMTP_PASSWORD"],
        tls=TLSSettings(cert_bundle="/etc/ssl/ca.pem"),
        pool=SMTPPool(idle_timeout=30),
        sending_rate=10,
    )
    transports: list[Transport] = [ses, auto, smtp, MemoryTransport(), FileTransport("outbox")]
    assert_type(transports[0].max_connections, int | None)


async def fields_built_ahead() -> None:
    common: MessageFields = {"from_": "shop@example.com", "reply_to": "help@example.com"}
    async with MemoryTransport() as outbox:
        await outbox.send_mail(Message(to="ada@example.com", subject="Hi", text="x"), **common)
        composed, message = await outbox.prepare(Message(to="ada@example.com"), subject="Hi")
        assert_type(composed, ComposedMessage)
        assert_type(message, Message | None)
        assert_type(outbox.last.subject, str | None)


async def error_handling(transport: Transport, message: Message) -> str:
    try:
        await transport.send_mail(message)
    except MessageError as exc:
        assert_type(exc.field, str | None)
        return "fix the message"
    except ConfigurationError as exc:
        assert_type(exc.option, str | None)
        return "fix the settings"
    except RecipientsRefusedError as exc:
        assert_type(exc.refused, dict[str, tuple[int, str]])
        return "drop the refused addresses"
    except ServiceUnavailableError as exc:
        assert_type(exc.outcome, Outcome)
        return "try again later"
    except DeliveryUnknownError:
        return "check before resending"
    except DeliveryError as exc:
        assert_type(exc.retry_safe, bool)
        return "give up"
    return "sent"


async def batch(transport: Transport, messages: list[Message]) -> int:
    sent = 0
    outcomes = transport.send_many(messages, concurrency=20)
    assert_type(outcomes, AsyncGenerator[SendResult | MailError, None])
    async with contextlib.aclosing(outcomes) as stream:
        async for outcome in stream:
            if isinstance(outcome, SendResult):
                sent += 1
    return sent


# ------------------------------------------------------------ errors a user must see


async def mistakes(ses: SESTransport) -> None:
    # A misspelled field.
    await ses.send_mail(subjct="x")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    # A field of the wrong type.
    await ses.send_mail(subject=42)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    # A forgotten await: nothing would be sent.
    ses.send_mail(subject="x")  # type: ignore[unused-coroutine]  # pyright: ignore[reportUnusedCoroutine]
    # An option of the old flat signature, now grouped.
    SESTransport(read_timeout=5)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


assert asyncmailer.__version__
