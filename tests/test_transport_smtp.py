"""SMTPTransport against a real aiosmtpd server: pool, TLS, AUTH, refusals, error mapping."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import ssl
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiosmtplib
import pytest
import trustme

from asyncmailer.errors import (
    AccessDeniedError,
    ConfigurationError,
    ConnectTimeoutError,
    DailyQuotaExceededError,
    DeliveryTimeoutError,
    DeliveryUnknownError,
    MessageError,
    MessageRejectedError,
    MessageTooLargeError,
    Outcome,
    RecipientsRefusedError,
    SendingRateExceededError,
    ServiceRefusedError,
    ServiceUnavailableError,
    SMTPUTF8RequiredError,
)
from asyncmailer.message import Message
from asyncmailer.options import SMTPPool, TLSSettings
from asyncmailer.retry import RetryPolicy
from asyncmailer.transports.smtp import SMTPTransport, _map_smtp_error
from tests.smtpd_helpers import RecordingHandler, SMTPServer, password_authenticator

FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.002)
NO_RETRY = RetryPolicy(max_attempts=1)


def msg(n: int = 0, **fields: Any) -> Message:
    base: dict[str, Any] = {
        "from_": "shop@example.com",
        "to": "ada@example.org",
        "subject": f"Order {n}",
        "text": f"Thanks for order {n}",
    }
    base.update(fields)
    return Message(**base)


def smtp_for(server: SMTPServer, **options: Any) -> SMTPTransport:
    options.setdefault("local_hostname", "localhost")
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("timeout", 5.0)
    return SMTPTransport(hostname=server.host, port=server.port, **options)


@pytest.fixture
async def smtpd() -> AsyncIterator[SMTPServer]:
    async with SMTPServer() as server:
        yield server


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


# --------------------------------------------------------------------- basics


async def test_send_delivers_envelope_and_bytes(smtpd: SMTPServer) -> None:
    async with smtp_for(smtpd) as smtp:
        result = await smtp.send_mail(msg(1, cc="bob@example.org", bcc="eve@example.org"))
    [received] = smtpd.messages
    assert received.mail_from == "shop@example.com"
    assert received.rcpt_tos == ["ada@example.org", "bob@example.org", "eve@example.org"]
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert parsed["Subject"] == "Order 1"
    assert parsed["Message-ID"] == result.message_id
    assert "Bcc" not in parsed
    assert result.response == "250 OK queued as 1"
    assert result.transport == "smtp"
    assert result.attempts == 1
    assert any(o.upper().startswith("SIZE=") for o in received.mail_options)


async def test_dot_stuffing_round_trips(smtpd: SMTPServer) -> None:
    text = "line one\n.\n..two dots\n.starts with a dot"
    async with smtp_for(smtpd) as smtp:
        await smtp.send_mail(msg(text=text))
    parsed = email.message_from_bytes(smtpd.messages[0].data, policy=email.policy.default)
    body = parsed.get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n").rstrip("\n") == text


# ----------------------------------------------------------------------- pool


async def test_sequential_sends_reuse_one_connection(smtpd: SMTPServer) -> None:
    async with smtp_for(smtpd, max_connections=3) as smtp:
        for n in range(8):
            await smtp.send_mail(msg(n))
        assert smtp.connections_open == 1
    assert smtpd.connections == 1
    assert len(smtpd.messages) == 8
    assert {m.connection for m in smtpd.messages} == {1}
    assert smtpd.handler.quits == 1  # closed politely
    assert smtpd.open == 0


async def test_concurrency_is_bounded_by_max_connections() -> None:
    server = SMTPServer(RecordingHandler(data_delay=0.03))
    async with server, smtp_for(server, max_connections=3) as smtp:
        await asyncio.gather(*(smtp.send_mail(msg(n)) for n in range(12)))
        assert smtp.connections_opened == 3
    assert len(server.messages) == 12
    assert server.max_open == 3  # reached, never exceeded
    assert server.handler.max_in_data == 3
    assert server.connections == 3


async def test_max_messages_per_connection(smtpd: SMTPServer) -> None:
    async with smtp_for(smtpd, pool=SMTPPool(max_messages_per_connection=2)) as smtp:
        for n in range(5):
            await smtp.send_mail(msg(n))
    assert smtpd.connections == 3
    assert [m.connection for m in smtpd.messages] == [1, 1, 2, 2, 3]
    assert smtpd.handler.quits == 3


async def test_idle_connections_are_closed(smtpd: SMTPServer) -> None:
    async with smtp_for(smtpd, pool=SMTPPool(idle_timeout=0.05)) as smtp:
        await smtp.send_mail(msg(1))
        assert smtpd.open == 1
        for _ in range(100):  # at most 1 s; normally ~60 ms
            if smtpd.open == 0:
                break
            await asyncio.sleep(0.01)
        assert smtpd.open == 0
        assert smtp.connections_open == 0
        assert smtpd.handler.quits == 1
        await smtp.send_mail(msg(2))
    assert smtpd.connections == 2


async def test_connection_closed_by_server_is_replaced(smtpd: SMTPServer) -> None:
    async with smtp_for(smtpd, retry=NO_RETRY) as smtp:
        await smtp.send_mail(msg(1))
        smtpd.drop_all()
        result = await smtp.send_mail(msg(2))  # no retry allowed: replaced transparently
        assert result.attempts == 1
    assert len(smtpd.messages) == 2
    assert smtpd.connections == 2


async def test_421_at_mail_on_pooled_connection_reconnects(smtpd: SMTPServer) -> None:
    async with smtp_for(smtpd, retry=NO_RETRY) as smtp:
        await smtp.send_mail(msg(1))
        smtpd.handler.mail_replies.append("421 4.4.2 idle too long, closing")
        result = await smtp.send_mail(msg(2))
        assert result.attempts == 1
        assert smtp.stale_connections_replaced == 1
    assert [m.connection for m in smtpd.messages] == [1, 2]


async def test_421_on_a_new_connection_is_retry_safe(smtpd: SMTPServer) -> None:
    smtpd.handler.mail_replies.append("421 4.3.2 shutting down")
    async with smtp_for(smtpd, retry=NO_RETRY) as smtp:
        with pytest.raises(ServiceUnavailableError) as info:
            await smtp.send_mail(msg(1))
        assert info.value.outcome is Outcome.RETRY_SAFE
        assert info.value.code == 421
        assert smtp.stale_connections_replaced == 0
    assert smtpd.messages == []


async def test_cancelled_send_drops_its_connection() -> None:
    async with SMTPServer(RecordingHandler(hang_after_data=1)) as server:
        async with smtp_for(server) as smtp:
            task = asyncio.ensure_future(smtp.send_mail(msg(1)))
            while server.handler.in_data == 0:
                await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert smtp.connections_open == 0  # its state is unknown: never reused
            await smtp.send_mail(msg(2))
        assert server.connections == 2


# ------------------------------------------------------------------ refusals


async def test_refused_recipient_aborts_whole_message(smtpd: SMTPServer) -> None:
    smtpd.handler.refuse["bad@example.org"] = "550 5.1.1 no such user"
    async with smtp_for(smtpd) as smtp:
        with pytest.raises(RecipientsRefusedError) as info:
            await smtp.send_mail(msg(1, to=["ada@example.org", "bad@example.org"]))
        error = info.value
        assert error.refused == {"bad@example.org": (550, "5.1.1 no such user")}
        assert error.outcome is Outcome.FINAL
        assert error.attempts == 1
        assert error.message_id
        assert "nothing was sent" in str(error)
        assert smtpd.messages == []
        assert smtpd.handler.rsets == 1
        await smtp.send_mail(msg(2))  # the session was reset and is reused
    assert smtpd.connections == 1
    assert len(smtpd.messages) == 1


async def test_refused_recipient_with_deliver_policy(smtpd: SMTPServer) -> None:
    smtpd.handler.refuse["bad@example.org"] = "550 5.1.1 no such user"
    async with smtp_for(smtpd, refused_recipients="deliver") as smtp:
        with pytest.raises(RecipientsRefusedError) as info:
            await smtp.send_mail(msg(1, to=["ada@example.org", "bad@example.org", "bob@x.org"]))
    error = info.value
    assert error.refused == {"bad@example.org": (550, "5.1.1 no such user")}
    assert error.outcome is Outcome.FINAL  # never retried: the others have it
    assert error.attempts == 1
    assert "delivered to the other 2" in str(error)
    [received] = smtpd.messages
    assert received.rcpt_tos == ["ada@example.org", "bob@x.org"]


@pytest.mark.parametrize("policy", ["abort", "deliver"])
async def test_all_recipients_refused_sends_nothing(smtpd: SMTPServer, policy: str) -> None:
    smtpd.handler.refuse.update({"a@x.org": "550 no", "b@x.org": "553 bad mailbox"})
    async with smtp_for(smtpd, refused_recipients=policy) as smtp:
        with pytest.raises(RecipientsRefusedError) as info:
            await smtp.send_mail(msg(1, to=["a@x.org", "b@x.org"]))
    assert info.value.refused == {"a@x.org": (550, "no"), "b@x.org": (553, "bad mailbox")}
    assert smtpd.messages == []


async def test_transient_refusal_is_retried(smtpd: SMTPServer) -> None:
    smtpd.handler.refuse_once["ada@example.org"] = "450 4.2.1 mailbox busy"
    async with smtp_for(smtpd) as smtp:
        result = await smtp.send_mail(msg(1))
    assert result.attempts == 2
    assert len(smtpd.messages) == 1


async def test_4xx_after_data_is_retried(smtpd: SMTPServer) -> None:
    smtpd.handler.data_replies.append("451 4.3.0 local error, try again")
    async with smtp_for(smtpd) as smtp:
        result = await smtp.send_mail(msg(1))
    assert result.attempts == 2
    assert len(smtpd.messages) == 1
    assert smtpd.connections == 1  # a refusal leaves the session usable


async def test_5xx_after_data_is_final(smtpd: SMTPServer) -> None:
    smtpd.handler.data_replies.append("554 5.7.1 looks like spam")
    async with smtp_for(smtpd) as smtp:
        with pytest.raises(MessageRejectedError) as info:
            await smtp.send_mail(msg(1))
    assert info.value.code == 554
    assert info.value.service_message == "5.7.1 looks like spam"
    assert info.value.outcome is Outcome.FINAL
    assert info.value.attempts == 1


async def test_sender_refused_is_final(smtpd: SMTPServer) -> None:
    smtpd.handler.mail_replies.append("553 5.7.1 sender not allowed")
    async with smtp_for(smtpd) as smtp:
        with pytest.raises(MessageRejectedError) as info:
            await smtp.send_mail(msg(1))
    assert info.value.code == 553
    assert "MAIL FROM" in str(info.value)


async def test_ses_smtp_throttling_replies(smtpd: SMTPServer) -> None:
    smtpd.handler.data_replies.append("454 Throttling failure: Maximum sending rate exceeded.")
    async with smtp_for(smtpd, sending_rate=1000) as smtp:
        result = await smtp.send_mail(msg(1))
        assert result.attempts == 2
        smtpd.handler.data_replies.append("454 Throttling failure: Daily message quota exceeded.")
        with pytest.raises(DailyQuotaExceededError) as info:
            await smtp.send_mail(msg(2))
        assert info.value.attempts == 1
        smtpd.handler.data_replies.append("454 Throttling failure: Maximum sending rate exceeded.")
    async with smtp_for(smtpd, retry=NO_RETRY) as smtp:
        with pytest.raises(SendingRateExceededError) as rate_info:
            await smtp.send_mail(msg(3))
    assert rate_info.value.retry_safe


# ---------------------------------------------------------------- ambiguity


async def test_timeout_after_data_is_ambiguous_and_not_retried() -> None:
    async with SMTPServer(RecordingHandler(hang_after_data=1)) as server:
        async with smtp_for(server, timeout=0.2) as smtp:
            with pytest.raises(DeliveryTimeoutError) as info:
                await smtp.send_mail(msg(1))
            assert info.value.outcome is Outcome.AMBIGUOUS
            assert info.value.attempts == 1
            assert isinstance(info.value, TimeoutError)
            assert smtp.connections_open == 0
        assert len(server.messages) == 1  # the server did get it


async def test_disconnect_after_data_is_unknown() -> None:
    async with SMTPServer(RecordingHandler(drop_after_data=1)) as server:
        async with smtp_for(server) as smtp:
            with pytest.raises(DeliveryUnknownError) as info:
                await smtp.send_mail(msg(1))
            assert info.value.outcome is Outcome.AMBIGUOUS
            assert info.value.attempts == 1
            await smtp.send_mail(msg(2))  # a new connection
        assert server.connections == 2


async def test_unreachable_server_is_retry_safe() -> None:
    async with SMTPServer() as server:
        port = server.port
    # nothing listens on that port any more
    async with SMTPTransport(
        hostname="127.0.0.1", port=port, local_hostname="localhost", retry=FAST_RETRY
    ) as smtp:
        with pytest.raises(ServiceUnavailableError) as info:
            await smtp.send_mail(msg(1))
    assert info.value.outcome is Outcome.RETRY_SAFE
    assert info.value.attempts == 3


# --------------------------------------------------------- server capabilities


async def test_smtputf8_needed_but_not_offered() -> None:
    async with SMTPServer(enable_SMTPUTF8=False) as server:
        async with smtp_for(server) as smtp:
            with pytest.raises(SMTPUTF8RequiredError) as info:
                await smtp.send_mail(msg(1, to="用户@example.org"))
            assert info.value.address == "用户@example.org"
            await smtp.send_mail(msg(2))  # the connection stays usable
        assert server.handler.mails == 1
        assert server.connections == 1


async def test_smtputf8_when_offered(smtpd: SMTPServer) -> None:
    async with smtp_for(smtpd) as smtp:
        await smtp.send_mail(msg(1, to="用户@example.org"))
    [received] = smtpd.messages
    assert received.rcpt_tos == ["用户@example.org"]
    assert "SMTPUTF8" in [o.upper() for o in received.mail_options]


async def test_message_larger_than_server_size_limit() -> None:
    async with SMTPServer(data_size_limit=2000) as server:
        async with smtp_for(server) as smtp:
            with pytest.raises(MessageTooLargeError) as info:
                await smtp.send_mail(msg(1, text="x" * 3000))
        assert info.value.limit == 2000
        assert info.value.size > 3000
        assert server.handler.mails == 0


# -------------------------------------------------------------- TLS and AUTH


async def test_implicit_tls(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    async with SMTPServer(ssl_context=server_tls) as server:
        async with smtp_for(server, use_tls=True, tls=TLSSettings(context=client_tls)) as smtp:
            await smtp.send_mail(msg(1))
            await smtp.send_mail(msg(2))
        assert len(server.messages) == 2
        assert server.connections == 1


async def test_untrusted_certificate_is_final(server_tls: ssl.SSLContext) -> None:
    async with SMTPServer(ssl_context=server_tls) as server:
        async with smtp_for(server, use_tls=True) as smtp:  # system CAs only
            with pytest.raises(ServiceRefusedError) as info:
                await smtp.send_mail(msg(1))
        assert info.value.outcome is Outcome.FINAL
        assert "TLS" in str(info.value)
        assert info.value.attempts == 1
        assert server.messages == []


async def test_starttls_with_auth(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    async with SMTPServer(
        tls_context=server_tls,
        require_starttls=True,
        authenticator=password_authenticator({"app": "s3cret-pw"}),
        auth_required=True,
    ) as server:
        async with smtp_for(
            server,
            start_tls=True,
            tls=TLSSettings(context=client_tls),
            username="app",
            password="s3cret-pw",
        ) as smtp:
            await smtp.send_mail(msg(1))
            await smtp.send_mail(msg(2))
        assert len(server.messages) == 2
        assert server.connections == 1


async def test_plaintext_auth_when_allowed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with SMTPServer(
        authenticator=password_authenticator({"app": "s3cret-pw"}), auth_require_tls=False
    ) as server:
        smtp = smtp_for(server, username="app", password="s3cret-pw", allow_insecure_auth=True)
        async with smtp:
            await smtp.send_mail(msg(1))
        assert len(server.messages) == 1
    assert "s3cret-pw" not in repr(smtp)
    assert "app" not in repr(smtp)  # SES SMTP user names are access key ids
    assert "auth=True" in repr(smtp)
    assert "s3cret-pw" not in caplog.text
    assert "czNjcmV0LXB3" not in caplog.text  # base64("s3cret-pw")


async def test_wrong_password_is_access_denied() -> None:
    async with SMTPServer(
        authenticator=password_authenticator({"app": "right"}), auth_require_tls=False
    ) as server:
        async with smtp_for(
            server, username="app", password="wrong", allow_insecure_auth=True
        ) as smtp:
            with pytest.raises(AccessDeniedError) as info:
                await smtp.send_mail(msg(1))
        assert info.value.code == 535
        assert info.value.action == "smtp:AUTH"
        assert info.value.attempts == 1
        assert "wrong" not in str(info.value)


async def test_auth_not_offered_is_a_configuration_error(smtpd: SMTPServer) -> None:
    async with smtp_for(smtpd, username="app", password="pw", allow_insecure_auth=True) as smtp:
        with pytest.raises(ConfigurationError, match="AUTH"):
            await smtp.send_mail(msg(1))


# Hardening item 6: without TLS, credentials never leave the process unless allowed by name.


def insecure_auth_server() -> SMTPServer:
    """AUTH offered over a plain connection, no STARTTLS: what a MITM stripping it shows."""
    return SMTPServer(
        authenticator=password_authenticator({"app": "s3cret-pw"}), auth_require_tls=False
    )


def assert_no_auth_sent(server: SMTPServer) -> None:
    wire = bytes(server.received_bytes)
    assert b"EHLO" in wire  # the session did start
    assert b"AUTH" not in wire.upper()
    assert b"s3cret-pw" not in wire
    assert b"czNjcmV0LXB3" not in wire  # base64("s3cret-pw")
    assert server.handler.mails == 0
    assert server.messages == []


async def test_credentials_are_not_sent_without_tls() -> None:
    async with insecure_auth_server() as server:
        async with smtp_for(server, username="app", password="s3cret-pw") as smtp:
            for n in range(2):  # a usage error: not retried, and the same every time
                with pytest.raises(ConfigurationError) as info:
                    await smtp.send_mail(msg(n))
                error = info.value
                assert error.option == "allow_insecure_auth"
                assert "did not offer STARTTLS" in str(error)
                assert "allow_insecure_auth=True" in str(error)
                assert "s3cret-pw" not in str(error)
            assert smtp.connections_open == 0
        assert_no_auth_sent(server)
        assert server.connections == 2


async def test_oauth_token_is_not_sent_without_tls() -> None:
    asked = 0

    async def token() -> str:
        nonlocal asked
        asked += 1
        return "s3cret-pw"

    async with insecure_auth_server() as server:
        async with smtp_for(server, username="app", oauth_token_generator=token) as smtp:
            with pytest.raises(ConfigurationError, match="allow_insecure_auth"):
                await smtp.send_mail(msg(1))
        assert_no_auth_sent(server)
    assert asked == 0


def test_auth_with_start_tls_false_needs_the_opt_in() -> None:
    with pytest.raises(ConfigurationError, match="in the clear") as info:
        SMTPTransport(username="app", password="pw", start_tls=False)
    assert info.value.option == "allow_insecure_auth"
    SMTPTransport(username="app", password="pw", start_tls=False, allow_insecure_auth=True)
    SMTPTransport(username="app", password="pw", start_tls=False, use_tls=True)
    SMTPTransport(start_tls=False)  # no credentials: nothing to protect


async def test_opportunistic_starttls_carries_auth(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    """The default start_tls=None upgrades when offered, then authenticates over TLS."""
    async with SMTPServer(
        tls_context=server_tls,
        authenticator=password_authenticator({"app": "s3cret-pw"}),
        auth_required=True,
    ) as server:
        async with smtp_for(
            server, tls=TLSSettings(context=client_tls), username="app", password="s3cret-pw"
        ) as smtp:
            await smtp.send_mail(msg(1))
        assert len(server.messages) == 1
        wire = bytes(server.received_bytes)
        assert b"STARTTLS" in wire
        assert wire.index(b"STARTTLS") < wire.upper().index(b"AUTH")


async def test_implicit_tls_carries_auth(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    async with SMTPServer(
        ssl_context=server_tls,
        authenticator=password_authenticator({"app": "s3cret-pw"}),
        auth_require_tls=False,  # aiosmtpd only knows about STARTTLS; this socket is TLS
    ) as server:
        async with smtp_for(
            server,
            use_tls=True,
            tls=TLSSettings(context=client_tls),
            username="app",
            password="s3cret-pw",
        ) as smtp:
            await smtp.send_mail(msg(1))
        assert len(server.messages) == 1
        assert b"AUTH " in bytes(server.received_bytes).upper()


@pytest.mark.parametrize(("flag", "expected"), [([], False), (["--allow-insecure-auth"], True)])
def test_cli_allow_insecure_auth_flag(flag: list[str], expected: bool) -> None:
    import argparse

    from asyncmailer._cli._transport import add_transport_options, make_transport

    parser = argparse.ArgumentParser()
    add_transport_options(parser, default_rate=None)
    args = parser.parse_args(
        ["--transport", "smtp", "--host", "127.0.0.1", "--user", "app", "--password", "pw", *flag]
    )
    transport = make_transport(args)
    assert isinstance(transport, SMTPTransport)
    assert transport.allow_insecure_auth is expected


async def test_required_starttls_not_offered(smtpd: SMTPServer) -> None:
    async with smtp_for(smtpd, start_tls=True) as smtp:
        with pytest.raises(ConfigurationError, match="STARTTLS"):
            await smtp.send_mail(msg(1))


# ------------------------------------------------------------ shared limits


async def test_sending_rate_goes_through_the_base_limiter(smtpd: SMTPServer) -> None:
    rate, count = 40, 10
    async with smtp_for(smtpd, sending_rate=rate, max_connections=4) as smtp:
        results = await asyncio.gather(*(smtp.send_mail(msg(n)) for n in range(count)))
    times = smtpd.handler.mail_times
    assert len(times) == count
    # the limiter spaces starts at 1/rate after a small initial allowance
    assert times[-1] - times[0] >= (count - 3) / rate
    assert sum(r.rate_wait for r in results) > 0


# ---------------------------------------------------------------- configuration


def test_configuration_is_validated() -> None:
    with pytest.raises(ConfigurationError) as info:
        SMTPTransport(use_tls=True, start_tls=True)
    assert info.value.option == "start_tls"
    with pytest.raises(ConfigurationError):
        SMTPTransport(password="x")
    with pytest.raises(ConfigurationError):
        SMTPPool(max_messages_per_connection=0)
    with pytest.raises(ConfigurationError):
        SMTPPool(idle_timeout=0)
    with pytest.raises(ConfigurationError):
        SMTPTransport(refused_recipients="drop")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        SMTPTransport(max_connections=0)


def test_missing_aiosmtplib_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiosmtplib", None)
    with pytest.raises(ImportError, match=r"asyncmailer\[smtp\]"):
        SMTPTransport()


# --------------------------------------------------------------- the mapping


def _response(cls: type[Exception], code: int, text: str) -> Exception:
    if cls in (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPSenderRefused):
        return cls(code, text, "x@example.org")
    return cls(code, text)


@pytest.mark.parametrize(
    ("exc", "phase", "expected", "outcome"),
    [
        (aiosmtplib.SMTPConnectError("refused"), "connect", ServiceUnavailableError, "retry_safe"),
        (aiosmtplib.SMTPConnectTimeoutError("slow"), "connect", ConnectTimeoutError, "retry_safe"),
        (aiosmtplib.SMTPReadTimeoutError("slow"), "mail", ServiceUnavailableError, "retry_safe"),
        (aiosmtplib.SMTPReadTimeoutError("slow"), "data", DeliveryTimeoutError, "ambiguous"),
        (aiosmtplib.SMTPServerDisconnected("gone"), "rcpt", ServiceUnavailableError, "retry_safe"),
        (aiosmtplib.SMTPServerDisconnected("gone"), "data", DeliveryUnknownError, "ambiguous"),
        (ConnectionResetError("reset"), "data", DeliveryUnknownError, "ambiguous"),
        (
            _response(aiosmtplib.SMTPConnectResponseError, 554, "go away"),
            "connect",
            ServiceRefusedError,
            "final",
        ),
        (
            _response(aiosmtplib.SMTPConnectResponseError, 421, "busy"),
            "connect",
            ServiceUnavailableError,
            "retry_safe",
        ),
        (
            _response(aiosmtplib.SMTPAuthenticationError, 454, "temp"),
            "connect",
            ServiceUnavailableError,
            "retry_safe",
        ),
        (
            _response(aiosmtplib.SMTPAuthenticationError, 535, "bad"),
            "connect",
            AccessDeniedError,
            "final",
        ),
        (
            _response(aiosmtplib.SMTPSenderRefused, 451, "later"),
            "mail",
            ServiceUnavailableError,
            "retry_safe",
        ),
        (
            _response(aiosmtplib.SMTPDataError, 552, "too big"),
            "data",
            MessageRejectedError,
            "final",
        ),
        (aiosmtplib.SMTPNotSupported("no STARTTLS"), "connect", ConfigurationError, None),
        (ValueError("control character"), "mail", MessageError, None),
    ],
)
def test_error_mapping(exc: Exception, phase: Any, expected: type, outcome: str | None) -> None:
    mapped = _map_smtp_error(exc, phase=phase, message_id="<m@x>")
    assert type(mapped) is expected
    if outcome is not None:
        assert mapped.outcome.value == outcome  # type: ignore[attr-defined]
