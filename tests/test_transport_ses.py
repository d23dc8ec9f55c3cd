"""SESTransport against moto's real server (behaviour) and our local endpoint (requests)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import urllib.request
import warnings
from email import policy
from email.parser import BytesParser
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from asyncmailer import (
    Attachment,
    AWSClientSettings,
    Limits,
    Message,
    SESTransport,
    TransportState,
    compose,
)
from asyncmailer.errors import (
    ConfigurationError,
    DeliveryError,
    IdentityNotVerifiedError,
    MessageError,
    MessageTooLargeError,
    SMTPUTF8RequiredError,
    TooManyRecipientsError,
    TransportStateError,
)
from asyncmailer.limits import Grant, LocalRateLimiter
from asyncmailer.testing import SESEndpoint
from asyncmailer.transports._grant import holding

SENDER = "Shop <shop@example.com>"


def _moto_messages(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=10) as response:
        data = json.load(response)
    return list(data["ses"]["RawMessage"])


async def _verify(transport: SESTransport, *addresses: str) -> None:
    for address in addresses:
        if transport.api == "v2":
            await transport.client.create_email_identity(EmailIdentity=address)
        else:
            await transport.client.verify_email_identity(EmailAddress=address)


def _rich_message(**overrides: Any) -> Message:
    fields: dict[str, Any] = {
        "from_": SENDER,
        "to": ["Ada <ada@example.org>", "bob@example.org"],
        "cc": "carol@example.org",
        "bcc": "dave@example.org",
        "subject": "Your order ✓",
        "text": "Thanks for your order.",
        "html": '<p>Thanks! <img src="cid:logo"></p>',
        "attachments": [
            Attachment(filename="logo.png", content=b"\x89PNG\r\n\x1a\nfake", cid="logo"),
            Attachment(filename="invoice.pdf", content=b"%PDF-1.4 fake"),
        ],
    }
    fields.update(overrides)
    return Message(**fields)


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_delivery_reads_back_exactly_what_compose_produced(moto_url: str, api: str) -> None:
    async with SESTransport(endpoint_url=moto_url, region_name="eu-west-1", api=api) as ses:  # type: ignore[arg-type]
        await _verify(ses, "shop@example.com")
        composed = await compose(_rich_message())
        # A prebuilt message has no Bcc header left: its envelope says who gets it.
        result = await ses.send_mail(composed.raw, envelope=composed.envelope)
    stored = _moto_messages(moto_url)
    assert len(stored) == 1
    assert stored[0]["raw_data"].encode() == composed.raw
    assert stored[0]["source"] == "shop@example.com"
    # Bcc is only in the envelope: in the destinations, never in the message.
    assert "dave@example.org" in stored[0]["destinations"]
    assert b"dave@example.org" not in composed.raw
    assert result.response == stored[0]["id"]
    assert result.message_id == f"<{stored[0]['id']}@eu-west-1.amazonses.com>"
    assert result.envelope.to == (
        "ada@example.org",
        "bob@example.org",
        "carol@example.org",
        "dave@example.org",
    )
    assert result.attempts == 1 and result.transport == "ses"


async def test_message_fields_are_composed_and_sent(moto_url: str) -> None:
    async with SESTransport(endpoint_url=moto_url) as ses:
        await _verify(ses, "shop@example.com")
        result = await ses.send_mail(_rich_message())
    (stored,) = _moto_messages(moto_url)
    parsed = BytesParser(policy=policy.default).parsebytes(stored["raw_data"].encode())
    assert parsed["Subject"] == "Your order ✓"
    assert parsed["Bcc"] is None
    assert parsed.get_body(("plain",)).get_content().strip() == "Thanks for your order."  # type: ignore[union-attr]
    names = [part.get_filename() for part in parsed.iter_attachments()]
    assert "invoice.pdf" in names
    # us-east-1 message ids use email.amazonses.com, as receivers see them.
    assert result.message_id == f"<{stored['id']}@email.amazonses.com>"


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_unverified_sender_is_a_typed_error_naming_the_identity(
    moto_url: str, api: str
) -> None:
    from botocore.exceptions import ClientError

    async with SESTransport(endpoint_url=moto_url, api=api) as ses:  # type: ignore[arg-type]
        with pytest.raises(IdentityNotVerifiedError) as info:
            await ses.send_mail(from_="nobody@unverified.example", to="x@example.org", text="hi")
    error = info.value
    assert error.identity == "nobody@unverified.example"
    assert error.code == "MessageRejected"
    assert error.attempts == 1 and not error.retry_safe
    assert isinstance(error.__cause__, ClientError)
    assert "verify" in str(error)
    assert _moto_messages(moto_url) == []


@pytest.mark.parametrize("region", ["us-east-1", "ap-southeast-2"])
def test_message_id_format(region: str) -> None:
    ses = SESTransport(region_name=region)
    ses._region = region
    host = "email" if region == "us-east-1" else region
    assert ses.format_message_id("0102abc-def") == f"<0102abc-def@{host}.amazonses.com>"
    assert ses.format_message_id("already@there.example") == "<already@there.example>"
    assert ses.format_message_id("<already@there.example>") == "<already@there.example>"


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_ses_options_reach_the_request(api: str) -> None:
    async with (
        SESEndpoint() as endpoint,
        SESTransport(
            endpoint_url=endpoint.url,
            api=api,  # type: ignore[arg-type]
            ses_defaults={
                "ConfigurationSetName": "default-set",
                "Tags": [{"Name": "app", "Value": "shop"}],
            },
        ) as ses,
    ):
        await ses.send_mail(
            from_=SENDER,
            to="ada@example.org",
            text="hi",
            ses={"ConfigurationSetName": "per-message"},
        )
        await ses.send_mail(from_=SENDER, to="ada@example.org", text="hi")
    first, second = endpoint.messages()
    tags_key = "EmailTags" if api == "v2" else "Tags"
    # Per-message options win over the transport's defaults (shallow merge).
    assert first.params["ConfigurationSetName"] == "per-message"
    assert second.params["ConfigurationSetName"] == "default-set"
    assert _tags(first.params[tags_key]) == {"app": "shop"}


def _tags(value: Any) -> dict[str, str]:
    if isinstance(value, dict):  # v1 query form may arrive flattened
        value = list(value.values())
    return {tag["Name"]: tag["Value"] for tag in value}


async def test_ses_options_may_not_override_what_the_transport_derives() -> None:
    async with SESEndpoint() as endpoint, SESTransport(endpoint_url=endpoint.url) as ses:
        with pytest.raises(MessageError) as info:
            await ses.send_mail(from_=SENDER, to="a@example.org", text="x", ses={"Source": "x@y.z"})
        assert info.value.field == "ses"
        assert endpoint.stats().send_arrivals == ()
    async with SESEndpoint() as endpoint:
        bad_defaults = SESTransport(endpoint_url=endpoint.url, ses_defaults={"Source": "x@y.z"})
        async with bad_defaults as ses:
            with pytest.raises(ConfigurationError) as config_info:
                await ses.send_mail(from_=SENDER, to="a@example.org", text="x")
            assert config_info.value.option == "ses_defaults"
        assert endpoint.stats().send_arrivals == ()


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (
            lambda: Message(from_=SENDER, to=[f"r{i}@example.org" for i in range(51)], text="x"),
            TooManyRecipientsError,
        ),
        (lambda: Message(from_=SENDER, to="jörg@example.org", text="x"), SMTPUTF8RequiredError),
        (
            lambda: Message(
                from_=SENDER,
                to="a@example.org",
                text="x",
                attachments=[Attachment(filename="setup.exe", content=b"MZ")],
            ),
            MessageError,
        ),
        (
            lambda: (
                b"From: shop@example.com\r\nTo: a@example.org\r\nSubject: x\r\n\r\n"
                + b"y" * 1200
                + b"\r\n"
            ),
            MessageError,
        ),
    ],
)
async def test_preflight_checks_fail_before_any_request(
    message: Any, error: type[Exception]
) -> None:
    async with SESEndpoint() as endpoint, SESTransport(endpoint_url=endpoint.url) as ses:
        with pytest.raises(error):
            await ses.send_mail(message())
        assert endpoint.stats().send_arrivals == ()  # no send request at all


@pytest.mark.parametrize(("api", "limit"), [("v1", 10 * 1024 * 1024), ("v2", 40 * 1024 * 1024)])
async def test_size_limit_per_api(api: str, limit: int) -> None:
    body = b"A" * 76 + b"\r\n"
    header = b"From: shop@example.com\r\nTo: a@example.org\r\nSubject: big\r\n\r\n"
    raw = header + body * ((limit - len(header)) // len(body) + 1)
    async with SESEndpoint() as endpoint, SESTransport(endpoint_url=endpoint.url, api=api) as ses:  # type: ignore[arg-type]
        with pytest.raises(MessageTooLargeError) as info:
            await ses.send_mail(raw)
        # compose() adds Message-ID and Date to a raw message without them.
        assert info.value.size > limit >= len(raw) - 200 and info.value.limit == limit
        assert endpoint.stats().send_arrivals == ()  # no send request at all


async def test_lifecycle_errors_are_clear() -> None:
    ses = SESTransport(endpoint_url="http://127.0.0.1:9")
    with pytest.raises(TransportStateError, match="async with"):
        await ses.send_mail(from_=SENDER, to="a@example.org", text="x")
    async with SESEndpoint() as endpoint:
        ses = SESTransport(endpoint_url=endpoint.url)
        async with ses:
            assert ses.state is TransportState.OPEN
        assert ses.state is TransportState.CLOSED
        with pytest.raises(TransportStateError, match="closed"):
            await ses.send_mail(from_=SENDER, to="a@example.org", text="x")
        with pytest.raises(TransportStateError):
            await ses.__aenter__()


async def test_credentials_never_appear_in_repr_or_our_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secrets = ("AKIAEXAMPLEKEY", "very-secret-value", "session-token-value")
    caplog.set_level("DEBUG", logger="asyncmailer")
    async with SESEndpoint(throttle_ratio=0.5, seed=3) as endpoint:
        ses = SESTransport(
            aws_access_key_id=secrets[0],
            aws_secret_access_key=secrets[1],
            aws_session_token=secrets[2],
            endpoint_url=endpoint.url,
            region_name="eu-west-1",
        )
        async with ses:
            for _ in range(5):
                await ses.send_mail(from_=SENDER, to="a@example.org", text="x")
            shown = repr(ses) + str(ses)
    assert "eu-west-1" in shown
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("asyncmailer")]
    assert any("retrying" in text for text in ours)  # the retries were logged...
    for secret in secrets:
        assert secret not in shown
        assert not any(secret in text for text in ours)  # ...without credentials


async def test_max_connections_bounds_requests_in_flight_at_the_server() -> None:
    async with (
        SESEndpoint(latency=0.05) as endpoint,
        SESTransport(endpoint_url=endpoint.url, max_connections=7) as ses,
    ):
        await asyncio.gather(
            *(ses.send_mail(from_=SENDER, to=f"r{i}@example.org", text="x") for i in range(60))
        )
        stats = endpoint.stats()
    assert stats.messages_accepted == 60
    assert stats.max_in_flight == 7


async def test_user_client_is_used_unchanged_and_warned_about() -> None:
    async with SESEndpoint() as endpoint:
        session = get_session()
        config = AioConfig(max_pool_connections=2)  # retries left at botocore's default
        async with session.create_client(
            "sesv2", config=config, **endpoint.client_kwargs()
        ) as client:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                async with SESTransport(client, max_connections=10) as ses:
                    assert ses.api == "v2"
                    await ses.send_mail(from_=SENDER, to="a@example.org", text="x")
            texts = [str(w.message) for w in caught]
            assert any("connection pool (2)" in t for t in texts)
            assert any("retries on its own" in t for t in texts)
            # The transport did not close a client it did not create.
            await client.get_account()
            with pytest.raises(ConfigurationError), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                async with SESTransport(client, api="v1"):
                    pass
    assert endpoint.messages()[0].api == "v2"


async def test_bcc_reaches_destinations_without_a_bcc_header() -> None:
    async with SESEndpoint() as endpoint, SESTransport(endpoint_url=endpoint.url, api="v2") as ses:
        await ses.send_mail(from_=SENDER, to="a@example.org", bcc="hidden@example.org", text="x")
    (stored,) = endpoint.messages()
    assert "hidden@example.org" in stored.destinations
    assert b"hidden@example.org" not in stored.raw
    assert base64.b64encode(b"hidden") not in stored.raw


async def test_unknown_ses_option_is_refused_before_any_request() -> None:
    async with SESEndpoint() as endpoint, SESTransport(endpoint_url=endpoint.url) as ses:
        with pytest.raises(MessageError, match="ConfigurationSetNme") as info:
            await ses.send_mail(
                from_=SENDER, to="a@example.org", text="x", ses={"ConfigurationSetNme": "typo"}
            )
        assert info.value.field == "ses"
        assert not isinstance(info.value, ConfigurationError)
        assert endpoint.stats().send_arrivals == ()


async def test_stock_client_sends_the_same_bytes_after_one_warm_up_request() -> None:
    async with SESEndpoint() as endpoint, SESTransport(endpoint_url=endpoint.url) as ses:
        assert ses.api == "v2"  # SESv2 by default
        # The warm-up request opened the HTTP session before any rate unit was granted.
        assert endpoint.stats().requests.get("sesv2:GetAccount") == 1
        assert endpoint.stats().send_arrivals == ()
        composed = await compose(_rich_message())
        for _ in range(3):
            await ses.send_mail(composed.raw, envelope=composed.envelope)
    stored = endpoint.messages()
    assert [m.raw for m in stored] == [composed.raw] * 3
    assert {m.api for m in stored} == {"v2"}


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_a_client_passed_in_is_warmed_up_before_the_first_grant(api: str) -> None:
    async with SESEndpoint() as endpoint:
        service = "sesv2" if api == "v2" else "ses"
        config = AioConfig(retries={"mode": "standard", "total_max_attempts": 1})
        async with (
            get_session().create_client(
                service, config=config, **endpoint.client_kwargs()
            ) as client,
            SESTransport(client, sending_rate=100) as ses,
        ):
            action = "sesv2:GetAccount" if api == "v2" else "ses:GetSendQuota"
            assert endpoint.stats().requests.get(action) == 1
            await ses.send_mail(from_=SENDER, to="a@example.org", text="x")
    assert len(endpoint.messages()) == 1


async def test_a_failed_warm_up_is_logged_at_warning_with_its_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nothing listens on the port: the warm-up cannot connect. The transport still opens.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    caplog.set_level("WARNING", logger="asyncmailer.ses")
    async with SESTransport(
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="eu-west-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        aws=AWSClientSettings(connect_timeout=1),
    ):
        pass
    records = [r for r in caplog.records if "warm-up" in r.getMessage()]
    assert records and records[0].levelname == "WARNING"
    assert "EndpointConnectionError" in records[0].getMessage()


class _StaleFirstLimiter(LocalRateLimiter):
    """Hands out one grant that is already stale, then normal ones; may refuse renewals."""

    def __init__(self, rate: float, *, renews: bool = True, margin: float = 1.0) -> None:
        super().__init__(rate, margin=margin)  # wide: only the forced one goes stale
        self.renews = renews
        self.grants = 0
        self.renewals = 0

    async def acquire(self, weight: int = 1) -> Grant:
        grant = await super().acquire(weight)
        self.grants += 1
        if self.grants == 1:
            return dataclasses.replace(grant, expires=grant.at - 1.0)
        return grant

    def renew(self, grant: Grant) -> Grant | None:
        if not self.renews:
            return None
        renewed = super().renew(grant)
        self.renewals += renewed is not None
        return renewed


@pytest.mark.parametrize("renews", [True, False])
async def test_a_stale_grant_is_renewed_or_asked_for_again_and_sent_once(renews: bool) -> None:
    # LocalRateLimiter renews a stale grant still in its log; a limiter that cannot makes
    # the send ask again. Either way nothing was written for the stale one.
    limiter = _StaleFirstLimiter(1000, renews=renews)
    async with (
        SESEndpoint() as endpoint,
        SESTransport(endpoint_url=endpoint.url, limits=Limits(rate_limiter=limiter)) as ses,
    ):
        result = await ses.send_mail(from_=SENDER, to="a@example.org", text="x")
        assert ses.stale_grants == 1
    assert (limiter.grants, limiter.renewals) == ((1, 1) if renews else (2, 0))
    assert result.attempts == 1  # a stale grant is not a failed attempt
    assert len(endpoint.stats().send_arrivals) == 1


@pytest.mark.parametrize("renews", [True, False])
async def test_the_grant_is_checked_again_at_before_send_after_signing(renews: bool) -> None:
    # A handler the user registered ages the grant after the transport's own check and
    # before the request leaves: the before-send check catches it. The grant is renewed
    # there, or the request is built and signed again on a new grant. Exactly one
    # request reaches the endpoint.
    limiter = _StaleFirstLimiter(1000, renews=renews, margin=0.2)
    limiter.grants = 1  # no forced stale grant: the handler below makes it stale
    slept: list[float] = []

    async def slow_once(**_: Any) -> None:
        if not slept:
            slept.append(0.3)
            await asyncio.sleep(0.3)

    async with SESEndpoint() as endpoint:
        config = AioConfig(retries={"mode": "standard", "total_max_attempts": 1})
        async with get_session().create_client(
            "sesv2", config=config, **endpoint.client_kwargs()
        ) as client:
            client.meta.events.register("request-created.sesv2.SendEmail", slow_once)
            async with SESTransport(client, limits=Limits(rate_limiter=limiter)) as ses:
                await ses.send_mail(from_=SENDER, to="a@example.org", text="x")
                assert ses.stale_grants == 1
            assert (limiter.grants, limiter.renewals) == ((2, 1) if renews else (3, 0))
            # Closed: the handler is gone from the user's client; a stale grant in the
            # context no longer stops its requests.
            stale = Grant(units=1, at=0.0, waited=0.0, expires=0.0)
            refusing = _StaleFirstLimiter(1000, renews=False)
            with holding(stale, asyncio.get_running_loop(), refusing):
                await client.send_email(
                    FromEmailAddress="shop@example.com",
                    Destination={"ToAddresses": ["c@example.org"]},
                    Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
                )
    assert len(endpoint.stats().send_arrivals) == 2


async def test_after_an_idle_spell_the_first_send_goes_alone() -> None:
    # keep-alive 0.4 s: idle after 0.2 s. The five sends after the pause wait for the
    # first one's answer (50 ms latency) before their requests start.
    config = AioConfig(
        retries={"mode": "standard", "total_max_attempts": 1},
        connector_args={"keepalive_timeout": 0.4},
    )
    async with (
        SESEndpoint(latency=0.05) as endpoint,
        get_session().create_client("sesv2", config=config, **endpoint.client_kwargs()) as client,
        SESTransport(client, sending_rate=1000) as ses,
    ):
        await ses.send_mail(from_=SENDER, to="a@example.org", text="x")
        await asyncio.sleep(0.3)
        await asyncio.gather(
            *(ses.send_mail(from_=SENDER, to=f"r{i}@example.org", text="x") for i in range(5))
        )
    arrivals = sorted(endpoint.stats().send_arrivals)
    assert len(arrivals) == 6
    assert arrivals[2] - arrivals[1] >= 0.045  # the rest waited for the first one's answer
    assert arrivals[-1] - arrivals[2] < 0.045  # and then went together


class _BugInHandler(Exception):
    pass


@pytest.mark.parametrize("kind", ["attribute", "wrapped-type"])
async def test_a_bug_below_the_transport_is_raised_with_its_type_not_as_unknown(
    kind: str,
) -> None:
    from botocore.exceptions import HTTPClientError

    def broken(**_: Any) -> None:
        if kind == "attribute":
            raise AttributeError("'Something' object has no attribute 'missing'")
        raise HTTPClientError(error=TypeError("unsupported operand"))

    expected = AttributeError if kind == "attribute" else TypeError
    async with SESEndpoint() as endpoint:
        config = AioConfig(retries={"mode": "standard", "total_max_attempts": 1})
        async with get_session().create_client(
            "sesv2", config=config, **endpoint.client_kwargs()
        ) as client:
            client.meta.events.register_first("before-send.sesv2.SendEmail", broken)
            async with SESTransport(client) as ses:
                with pytest.raises(expected) as caught:
                    await ses.send_mail(from_=SENDER, to="a@example.org", text="x")
    assert not isinstance(caught.value, DeliveryError)
    assert endpoint.stats().send_arrivals == ()
