"""The local SES endpoint, driven by real aiobotocore clients over loopback HTTP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import ClientError, ConnectionClosedError

from asyncmailer.errors import ConfigurationError, TransportStateError
from asyncmailer.testing import RemoteEndpoint, SESEndpoint

RAW = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: Bob <bob@example.org>, carol@example.org\r\n"
    b'Cc: "Dee, D." <dee@example.org>\r\n'
    b"Bcc: eve@example.org\r\n"
    b"Message-ID: <first@example.com>\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?=\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"caf\xc3\xa9 +/=?&% \x00\xff\r\n"
)
SES_ID = re.compile(
    r"^01[0-9a-f]{14}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-000000$"
)


@pytest.fixture(autouse=True, scope="module")
def _no_implicit_event_loop() -> None:
    """Unset the event loop as asyncio.run() leaves it.

    The looptime plugin asks the loop policy for a loop even in sync tests; before any loop
    was set or unset that creates one, which is never closed and later fails a random test
    with an "unclosed event loop" ResourceWarning.
    """
    asyncio.set_event_loop(None)


def message(
    sender: str = "alice@example.com", to: str = "bob@example.org", mid: str = "m"
) -> bytes:
    """A small raw message."""
    return (
        f"From: {sender}\r\nTo: {to}\r\nMessage-ID: <{mid}@example.com>\r\n"
        "Subject: hi\r\n\r\nhello\r\n"
    ).encode()


@pytest.fixture(scope="module")
def session() -> AioSession:
    return get_session()


class Clients:
    """A v1 and a SESv2 client pointed at one endpoint."""

    def __init__(self, v1: Any, v2: Any) -> None:
        self.v1 = v1
        self.v2 = v2

    async def send(self, api: str, raw: bytes, **kwargs: Any) -> dict[str, Any]:
        """Send a raw message through ``api`` ("v1" or "v2")."""
        if api == "v1":
            result: dict[str, Any] = await self.v1.send_raw_email(
                RawMessage={"Data": raw}, **kwargs
            )
        else:
            result = await self.v2.send_email(Content={"Raw": {"Data": raw}}, **kwargs)
        return result


@contextlib.asynccontextmanager
async def open_clients(
    session: AioSession, endpoint: SESEndpoint, pool: int = 10
) -> AsyncIterator[Clients]:
    config = AioConfig(
        retries={"mode": "standard", "total_max_attempts": 1}, max_pool_connections=pool
    )
    kwargs = endpoint.client_kwargs()
    async with (
        session.create_client("ses", config=config, **kwargs) as v1,
        session.create_client("sesv2", config=config, **kwargs) as v2,
    ):
        yield Clients(v1, v2)


@pytest.fixture
async def endpoint() -> AsyncIterator[SESEndpoint]:
    async with SESEndpoint(seed=7) as ep:
        yield ep


@pytest.fixture
async def clients(session: AioSession, endpoint: SESEndpoint) -> AsyncIterator[Clients]:
    async with open_clients(session, endpoint) as pair:
        yield pair


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    """(code, message, HTTP status) of a botocore ClientError."""
    response: Any = exc.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


# ---------------------------------------------------------------------------- sending


async def test_v1_send_raw_email_stores_the_exact_bytes_and_params(
    endpoint: SESEndpoint, clients: Clients
) -> None:
    result = await clients.v1.send_raw_email(
        RawMessage={"Data": RAW},
        Source="bounces@example.com",
        Destinations=["bob@example.org", "zed@example.net"],
        Tags=[{"Name": "campaign", "Value": "spring"}, {"Name": "kind", "Value": "promo"}],
        ConfigurationSetName="tracking",
        SourceArn="arn:aws:ses:us-east-1:123456789012:identity/example.com",
        FromArn="arn:aws:ses:us-east-1:123456789012:identity/from.com",
        ReturnPathArn="arn:aws:ses:us-east-1:123456789012:identity/rp.com",
    )

    [record] = endpoint.messages()
    assert SES_ID.match(result["MessageId"])
    assert record.message_id == result["MessageId"]
    assert record.raw == RAW
    assert record.size == len(RAW)
    assert (record.api, record.action) == ("v1", "SendRawEmail")
    assert record.source == "bounces@example.com"
    assert record.destinations == ("bob@example.org", "zed@example.net")
    assert record.params == {
        "Tags": [{"Name": "campaign", "Value": "spring"}, {"Name": "kind", "Value": "promo"}],
        "ConfigurationSetName": "tracking",
        "SourceArn": "arn:aws:ses:us-east-1:123456789012:identity/example.com",
        "FromArn": "arn:aws:ses:us-east-1:123456789012:identity/from.com",
        "ReturnPathArn": "arn:aws:ses:us-east-1:123456789012:identity/rp.com",
    }
    assert record.message_id_header == "first@example.com"
    assert record.email_message()["Subject"] == "café"


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_without_destinations_the_recipients_come_from_the_headers(
    endpoint: SESEndpoint, clients: Clients, api: str
) -> None:
    await clients.send(api, RAW)

    [record] = endpoint.messages()
    assert record.source == "alice@example.com"
    assert record.destinations == (
        "bob@example.org",
        "carol@example.org",
        "dee@example.org",
        "eve@example.org",
    )


async def test_v2_send_email_raw_stores_bytes_destination_and_params(
    endpoint: SESEndpoint, clients: Clients
) -> None:
    result = await clients.v2.send_email(
        FromEmailAddress="bounces@example.com",
        FromEmailAddressIdentityArn="arn:aws:ses:us-east-1:123456789012:identity/example.com",
        Destination={
            "ToAddresses": ["bob@example.org"],
            "CcAddresses": ["cc@example.org"],
            "BccAddresses": ["bcc@example.org"],
        },
        FeedbackForwardingEmailAddress="feedback@example.com",
        Content={"Raw": {"Data": RAW}},
        EmailTags=[{"Name": "campaign", "Value": "spring"}],
        ConfigurationSetName="tracking",
    )

    [record] = endpoint.messages()
    assert record.message_id == result["MessageId"]
    assert SES_ID.match(record.message_id)
    assert record.raw == RAW
    assert (record.api, record.action) == ("v2", "SendEmail")
    assert record.source == "bounces@example.com"
    assert record.destinations == ("bob@example.org", "cc@example.org", "bcc@example.org")
    assert record.params == {
        "FromEmailAddressIdentityArn": "arn:aws:ses:us-east-1:123456789012:identity/example.com",
        "FeedbackForwardingEmailAddress": "feedback@example.com",
        "EmailTags": [{"Name": "campaign", "Value": "spring"}],
        "ConfigurationSetName": "tracking",
    }


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_large_messages_and_huge_headers_round_trip(
    endpoint: SESEndpoint, clients: Clients, api: str
) -> None:
    body = os.urandom(300_000)
    big = message(mid="big") + base64.encodebytes(body)
    # A header block larger than the prefix the endpoint decodes first.
    long_header = b"X-Long: " + b"\r\n ".join([b"x" * 70] * 400) + b"\r\n"
    huge_head = long_header + message(to="far@example.org", mid="huge")

    await clients.send(api, big)
    await clients.send(api, huge_head)

    first, second = endpoint.messages()
    assert first.raw == big
    assert first.size == len(big)
    assert first.destinations == ("bob@example.org",)
    assert second.destinations == ("far@example.org",)
    assert second.message_id_header == "huge@example.com"
    assert second.raw == huge_head


async def test_v1_send_email_composes_the_message(endpoint: SESEndpoint, clients: Clients) -> None:
    result = await clients.v1.send_email(
        Source="Shop <shop@example.com>",
        Destination={"ToAddresses": ["ada@example.org"], "BccAddresses": ["audit@example.org"]},
        Message={
            "Subject": {"Data": "Your order"},
            "Body": {"Text": {"Data": "Thanks!"}, "Html": {"Data": "<p>Thanks!</p>"}},
        },
        ReplyToAddresses=["help@example.com"],
    )

    [record] = endpoint.messages()
    assert record.action == "SendEmail"
    assert record.destinations == ("ada@example.org", "audit@example.org")
    parsed = record.email_message()
    assert parsed["Subject"] == "Your order"
    assert parsed["To"] == "ada@example.org"
    assert parsed["Bcc"] is None
    assert parsed["Reply-To"] == "help@example.com"
    assert record.message_id_header == f"{result['MessageId']}@email.amazonses.com"
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None
    assert text.get_content().strip() == "Thanks!"
    assert html is not None
    assert html.get_content().strip() == "<p>Thanks!</p>"


async def test_v2_simple_content_is_composed(endpoint: SESEndpoint, clients: Clients) -> None:
    await clients.v2.send_email(
        FromEmailAddress="shop@example.com",
        Destination={"ToAddresses": ["ada@example.org"]},
        Content={
            "Simple": {
                "Subject": {"Data": "Hi"},
                "Body": {"Text": {"Data": "plain only"}},
                "Headers": [{"Name": "X-Campaign", "Value": "spring"}],
            }
        },
    )

    [record] = endpoint.messages()
    parsed = record.email_message()
    assert parsed["X-Campaign"] == "spring"
    assert parsed.get_content().strip() == "plain only"


async def test_message_ids_are_unique_and_found_by_message_id_header(
    endpoint: SESEndpoint, clients: Clients
) -> None:
    ids = [
        (await clients.send(api, message(mid=f"n{i}")))["MessageId"]
        for i, api in enumerate(["v1", "v2"] * 10)
    ]

    assert len(set(ids)) == 20
    assert all(SES_ID.match(mid) for mid in ids)
    found = endpoint.find_by_message_id("<n13@example.com>")
    assert found is not None
    assert found.message_id == ids[13]
    assert endpoint.find_by_message_id("n13@example.com") is found
    assert endpoint.find_by_message_id("<missing@example.com>") is None


async def test_many_concurrent_connections(session: AioSession, endpoint: SESEndpoint) -> None:
    async with open_clients(session, endpoint, pool=50) as pair:
        await asyncio.gather(
            *(pair.send("v2" if i % 2 else "v1", message(mid=f"c{i}")) for i in range(200))
        )

    stats = endpoint.stats()
    assert stats.messages_accepted == 200
    assert len(endpoint.messages()) == 200
    assert 1 < stats.connections_opened <= 100  # two pools of at most 50
    assert stats.in_flight == 0


# ----------------------------------------------------------------- account and quota


async def test_quota_values_follow_runtime_configuration(
    endpoint: SESEndpoint, clients: Clients
) -> None:
    quota = await clients.v1.get_send_quota()
    assert (quota["MaxSendRate"], quota["Max24HourSend"], quota["SentLast24Hours"]) == (
        14.0,
        50000.0,
        0.0,
    )

    await clients.send("v1", RAW)  # four recipients
    endpoint.configure(max_send_rate=200.0, max_24_hour_send=1_000_000.0)

    quota = await clients.v1.get_send_quota()
    account = await clients.v2.get_account()
    assert (quota["MaxSendRate"], quota["Max24HourSend"], quota["SentLast24Hours"]) == (
        200.0,
        1_000_000.0,
        4.0,
    )
    assert account["SendQuota"] == {
        "MaxSendRate": 200.0,
        "Max24HourSend": 1_000_000.0,
        "SentLast24Hours": 4.0,
    }
    assert account["SendingEnabled"] is True
    assert account["ProductionAccessEnabled"] is True
    enabled = await clients.v1.get_account_sending_enabled()
    assert enabled["Enabled"] is True


async def test_daily_quota_is_enforced_on_recipients(
    endpoint: SESEndpoint, clients: Clients
) -> None:
    endpoint.configure(enforce_daily_quota=True, max_24_hour_send=5)
    await clients.send("v1", RAW)  # 4 of 5

    with pytest.raises(ClientError) as v1_error:
        await clients.send("v1", message(to="a@example.org, b@example.org"))
    with pytest.raises(ClientError) as v2_error:
        await clients.send("v2", message(to="a@example.org, b@example.org"))
    await clients.send("v2", message(to="last@example.org"))  # 5 of 5

    assert error_of(v1_error) == ("Throttling", "Daily message quota exceeded.", 400)
    assert error_of(v2_error) == ("LimitExceededException", "Daily message quota exceeded.", 400)
    assert endpoint.stats().messages_accepted == 2


# ------------------------------------------------------------------------ identities


async def test_unverified_senders_are_rejected_like_ses(
    endpoint: SESEndpoint, clients: Clients
) -> None:
    endpoint.configure(verified_identities={"Example.com", "solo@other.org"})

    await clients.send("v1", message(sender="a@example.com"))
    await clients.send("v2", message(sender="b@mail.example.com"))  # subdomain
    await clients.send("v1", message(sender="SOLO@other.org"))
    with pytest.raises(ClientError) as v1_error:
        await clients.send("v1", message(sender="x@other.org"))
    with pytest.raises(ClientError) as v2_error:
        await clients.v2.send_email(
            FromEmailAddress="x@other.org",
            Destination={"ToAddresses": ["bob@example.org"]},
            Content={"Raw": {"Data": message(sender="x@other.org")}},
        )

    expected = (
        "MessageRejected",
        "Email address is not verified. The following identities failed the check in region "
        "US-EAST-1: x@other.org",
        400,
    )
    assert error_of(v1_error) == expected
    assert error_of(v2_error) == expected
    assert len(endpoint.messages()) == 3

    await clients.v1.verify_email_identity(EmailAddress="x@other.org")
    await clients.send("v1", message(sender="x@other.org"))
    assert len(endpoint.messages()) == 4


async def test_sandbox_checks_recipients_too(endpoint: SESEndpoint, clients: Clients) -> None:
    endpoint.configure(verified_identities={"example.com"}, sandbox=True, region="eu-west-1")

    with pytest.raises(ClientError) as error:
        await clients.send(
            "v1", message(sender="x@other.org", to="nope@example.org, ok@a.example.com")
        )

    assert error_of(error)[1].endswith("in region EU-WEST-1: x@other.org, nope@example.org")
    await clients.send("v1", message(to="ok@example.com"))
    account = await clients.v2.get_account()
    assert account["ProductionAccessEnabled"] is False


async def test_identity_apis(endpoint: SESEndpoint, clients: Clients) -> None:
    endpoint.configure(verified_identities={"example.com"})
    token = (await clients.v1.verify_domain_identity(Domain="news.example.net"))[
        "VerificationToken"
    ]
    await clients.v1.verify_email_identity(EmailAddress="me@example.org")
    await clients.v2.create_email_identity(EmailIdentity="other.example")

    listed = await clients.v1.list_identities()
    emails = await clients.v1.list_identities(IdentityType="EmailAddress")
    attributes = await clients.v1.get_identity_verification_attributes(
        Identities=["news.example.net", "me@example.org", "unknown@nowhere.test"]
    )
    dkim = await clients.v1.get_identity_dkim_attributes(Identities=["news.example.net"])
    identity = await clients.v2.get_email_identity(EmailIdentity="me@example.org")
    listed_v2 = await clients.v2.list_email_identities()

    assert token
    assert isinstance(token, str)
    assert listed["Identities"] == [
        "example.com",
        "me@example.org",
        "news.example.net",
        "other.example",
    ]
    assert emails["Identities"] == ["me@example.org"]
    assert attributes["VerificationAttributes"] == {
        "news.example.net": {"VerificationStatus": "Success", "VerificationToken": token},
        "me@example.org": {"VerificationStatus": "Success"},
    }
    assert dkim["DkimAttributes"]["news.example.net"]["DkimVerificationStatus"] == "Success"
    assert len(dkim["DkimAttributes"]["news.example.net"]["DkimTokens"]) == 3
    assert identity["IdentityType"] == "EMAIL_ADDRESS"
    assert identity["VerifiedForSendingStatus"] is True
    assert {item["IdentityName"] for item in listed_v2["EmailIdentities"]} == {
        "example.com",
        "me@example.org",
        "news.example.net",
        "other.example",
    }
    with pytest.raises(ClientError) as missing:
        await clients.v2.get_email_identity(EmailIdentity="nobody@nowhere.test")
    assert error_of(missing)[0::2] == ("NotFoundException", 404)
    with pytest.raises(ClientError) as duplicate:
        await clients.v2.create_email_identity(EmailIdentity="other.example")
    assert error_of(duplicate)[0] == "AlreadyExistsException"
    await clients.v2.delete_email_identity(EmailIdentity="other.example")
    assert "other.example" not in (await clients.v1.list_identities())["Identities"]


# ---------------------------------------------------------------------------- faults

V1_V2 = pytest.mark.parametrize("api", ["v1", "v2"])


@V1_V2
async def test_throttle_ratio(endpoint: SESEndpoint, clients: Clients, api: str) -> None:
    endpoint.configure(throttle_ratio=1.0)

    with pytest.raises(ClientError) as error:
        await clients.send(api, RAW)

    expected = (
        ("Throttling", "Maximum sending rate exceeded.", 400)
        if api == "v1"
        else ("TooManyRequestsException", "Maximum sending rate exceeded.", 429)
    )
    assert error_of(error) == expected
    assert endpoint.messages() == []
    stats = endpoint.stats()
    assert stats.messages_accepted == 0
    assert stats.send_accepted == (False,)
    assert sum(stats.errors.values()) == 1


@V1_V2
async def test_server_errors_are_500_or_503_and_store_nothing(
    endpoint: SESEndpoint, clients: Clients, api: str
) -> None:
    endpoint.configure(server_error_ratio=1.0)
    seen = set()
    for _ in range(12):
        with pytest.raises(ClientError) as error:
            await clients.send(api, RAW)
        seen.add(error_of(error)[0::2])

    assert seen == {("InternalFailure", 500), ("ServiceUnavailable", 503)}
    assert endpoint.messages() == []


@V1_V2
async def test_drop_before_accept_closes_the_connection_and_stores_nothing(
    endpoint: SESEndpoint, clients: Clients, api: str
) -> None:
    endpoint.configure(drop_before_accept_ratio=1.0)

    with pytest.raises(ConnectionClosedError):
        await clients.send(api, RAW)

    stats = endpoint.stats()
    assert endpoint.messages() == []
    assert (stats.dropped_before_accept, stats.messages_accepted, stats.in_flight) == (1, 0, 0)


@V1_V2
async def test_drop_after_accept_stores_the_message_but_never_answers(
    endpoint: SESEndpoint, clients: Clients, api: str
) -> None:
    endpoint.configure(drop_after_accept_ratio=1.0)

    with pytest.raises(ConnectionClosedError):
        await clients.send(api, RAW)

    [record] = endpoint.messages()
    assert record.raw == RAW
    stats = endpoint.stats()
    assert (stats.dropped_after_accept, stats.messages_accepted, stats.in_flight) == (1, 1, 0)
    assert stats.send_accepted == (True,)
    # The client recovers: the next request opens a new connection.
    endpoint.configure(drop_after_accept_ratio=0.0)
    await clients.send(api, RAW)
    assert len(endpoint.messages()) == 2


@V1_V2
@pytest.mark.parametrize(
    ("settings", "v1_error", "v2_error"),
    [
        (
            {"sending_enabled": False},
            ("AccountSendingPausedException", 400),
            ("SendingPausedException", 400),
        ),
        (
            {"configuration_sets": {"known"}},
            ("ConfigurationSetDoesNotExist", 400),
            ("NotFoundException", 404),
        ),
        ({"max_recipients": 3}, ("InvalidParameterValue", 400), ("BadRequestException", 400)),
        (
            {"max_message_size_v1": 100, "max_message_size_v2": 100},
            ("InvalidParameterValue", 400),
            ("BadRequestException", 400),
        ),
    ],
)
async def test_refusals(
    endpoint: SESEndpoint,
    clients: Clients,
    api: str,
    settings: dict[str, Any],
    v1_error: tuple[str, int],
    v2_error: tuple[str, int],
) -> None:
    endpoint.configure(**settings)

    with pytest.raises(ClientError) as error:
        await clients.send(api, RAW, ConfigurationSetName="unknown")

    assert error_of(error)[0::2] == (v1_error if api == "v1" else v2_error)
    assert endpoint.messages() == []


async def test_seeded_faults_repeat_after_reset(endpoint: SESEndpoint, clients: Clients) -> None:
    endpoint.configure(throttle_ratio=0.3, server_error_ratio=0.2, drop_before_accept_ratio=0.1)

    async def outcomes() -> list[str]:
        seen = []
        for i in range(30):
            try:
                await clients.send("v2", message(mid=f"s{i}"))
                seen.append("ok")
            except ClientError as exc:
                seen.append(exc.response["Error"]["Code"])
            except ConnectionClosedError:
                seen.append("dropped")
        return seen

    first = await outcomes()
    # Message ids start with the time in ms; the random part after it repeats.
    ids = [record.message_id[17:] for record in endpoint.messages()]
    endpoint.reset()
    second = await outcomes()

    assert first == second
    assert [record.message_id[17:] for record in endpoint.messages()] == ids
    assert {"ok", "TooManyRequestsException", "dropped"} <= set(first)
    assert first.count("ok") == endpoint.stats().messages_accepted


# ------------------------------------------------------------- latency and in-flight


async def test_max_in_flight_counts_requests_waiting_out_the_latency(
    session: AioSession,
) -> None:
    async with (
        SESEndpoint(latency=0.2) as endpoint,
        open_clients(session, endpoint, pool=10) as pair,
    ):
        await pair.send("v2", message())  # connect and warm up
        endpoint.reset()
        start = time.monotonic()
        await asyncio.gather(*(pair.send("v2", message(mid=f"f{i}")) for i in range(10)))
        elapsed = time.monotonic() - start
        quota_start = time.monotonic()
        await pair.v1.get_send_quota()
        quota_elapsed = time.monotonic() - quota_start

    stats = endpoint.stats()
    assert stats.max_in_flight == 10
    assert stats.in_flight == 0
    assert 0.2 <= elapsed < 2.0  # answered together, not one after the other
    assert quota_elapsed >= 0.2  # latency applies to every SES API call


async def test_latency_spikes(session: AioSession) -> None:
    async with (
        SESEndpoint(latency_spike_probability=1.0, latency_spike=0.15) as endpoint,
        open_clients(session, endpoint) as pair,
    ):
        start = time.monotonic()
        await pair.send("v1", message())
        assert time.monotonic() - start >= 0.15
        endpoint.configure(latency_spike_probability=0.0)
        start = time.monotonic()
        await pair.send("v1", message())
        assert time.monotonic() - start < 0.15


async def test_a_client_giving_up_during_latency_is_not_left_in_flight(
    session: AioSession,
) -> None:
    async with SESEndpoint(latency=5.0) as endpoint:
        async with open_clients(session, endpoint) as pair:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(pair.send("v2", message()), 0.2)
        for _ in range(100):
            if endpoint.stats().in_flight == 0:
                break
            await asyncio.sleep(0.01)
        stats = endpoint.stats()
    assert (stats.in_flight, stats.max_in_flight) == (0, 1)
    assert stats.messages_accepted == 1  # accepted on arrival: an ambiguous timeout


# ------------------------------------------------------------- rate and arrival times


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@V1_V2
async def test_throttle_rate_counts_recipients_in_a_sliding_second(
    session: AioSession, api: str
) -> None:
    clock = FakeClock()
    async with SESEndpoint(throttle_rate=3, clock=clock) as endpoint:
        async with open_clients(session, endpoint) as pair:

            async def attempt(at: float, recipients: int) -> str:
                clock.now = 1000.0 + at
                to = ", ".join(f"r{i}@example.org" for i in range(recipients))
                try:
                    await pair.send(api, message(to=to))
                except ClientError as exc:
                    return str(exc.response["Error"]["Code"])
                return "ok"

            results = [
                await attempt(0.0, 1),
                await attempt(0.0, 1),
                await attempt(0.1, 2),  # 1 + 1 + 2 > 3
                await attempt(0.5, 1),  # 3
                await attempt(0.99, 1),  # still 3 in (−0.01, 0.99]
                await attempt(1.0, 2),  # the two at 0.0 left the window
                await attempt(1.5, 1),  # 0.5 left: 2 + 1
            ]

        stats = endpoint.stats()
    no = "Throttling" if api == "v1" else "TooManyRequestsException"
    assert results == ["ok", "ok", no, "ok", no, "ok", "ok"]
    assert stats.messages_accepted == 5
    assert stats.send_arrivals == tuple(1000.0 + t for t in (0, 0, 0.1, 0.5, 0.99, 1.0, 1.5))
    assert stats.send_recipients == (1, 1, 2, 1, 1, 2, 1)
    assert stats.send_accepted == (True, True, False, True, False, True, True)
    assert stats.max_starts_in_window(1.0) == 5
    # What was accepted never exceeds the rate in any one-second window.
    assert stats.max_starts_in_window(1.0, weighted=True, accepted_only=True) == 3


async def test_rate_windows_measure_a_real_paced_sender(session: AioSession) -> None:
    async with SESEndpoint() as endpoint:
        async with open_clients(session, endpoint) as pair:
            for i in range(8):
                await pair.send("v2", message(mid=f"p{i}"))
                await asyncio.sleep(0.05)
        stats = endpoint.stats()

    assert stats.max_starts_in_window(0.1) <= 2
    assert stats.max_starts_in_window(1.0) == 8
    assert 8 < stats.sustained_rate() < 25


# ----------------------------------------------------------------------- control API


async def test_control_api_over_http(endpoint: SESEndpoint, clients: Clients) -> None:
    remote = RemoteEndpoint(endpoint.url)
    config = await asyncio.to_thread(remote.configure, max_send_rate=33.0, throttle_ratio=0.0)
    assert config.max_send_rate == 33.0
    assert endpoint.config.max_send_rate == 33.0
    assert (await clients.v1.get_send_quota())["MaxSendRate"] == 33.0

    await clients.send("v1", RAW, Tags=[{"Name": "t", "Value": "v"}])
    stats = await asyncio.to_thread(remote.stats)
    messages = await asyncio.to_thread(remote.messages)
    light = await asyncio.to_thread(remote.messages, raw=False)
    found = await asyncio.to_thread(remote.find_by_message_id, "<first@example.com>")

    assert stats.messages_accepted == 1
    assert stats.requests["ses:SendRawEmail"] == 1
    assert stats.send_arrivals == endpoint.stats().send_arrivals
    assert abs(stats.started_clock - time.monotonic()) < 60  # same clock across processes
    assert messages[0].raw == RAW
    assert messages[0].params == {"Tags": [{"Name": "t", "Value": "v"}]}
    assert light[0].raw == b""
    assert found is not None
    assert found.message_id == messages[0].message_id
    assert (await asyncio.to_thread(remote.config)).max_send_rate == 33.0

    await asyncio.to_thread(remote.reset)
    assert endpoint.messages() == []
    assert endpoint.stats().messages_accepted == 0

    with pytest.raises(ConfigurationError):
        await asyncio.to_thread(remote.configure, no_such_setting=1)


def control_request(
    endpoint: SESEndpoint,
    resource: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """One control API call with urllib (blocking): (status, JSON answer)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"{endpoint.url}/_asyncmailer/{resource}",
        data=body,
        method="GET" if body is None else "POST",
        headers=headers or {},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


JSON_TYPE = {"Content-Type": "application/json"}


async def test_control_api_rejects_bad_settings_with_400(endpoint: SESEndpoint) -> None:
    def post(body: bytes) -> tuple[int, dict[str, Any]]:
        return control_request(endpoint, "config", body, JSON_TYPE)

    assert await asyncio.to_thread(post, b'{"throttle_ratio": 0.8, "server_error_ratio": 0.8}') == (
        400,
        {
            "message": "the fault ratios (drop_before_accept_ratio, server_error_ratio, "
            "throttle_ratio, drop_after_accept_ratio) must add up to at most 1",
            "option": "throttle_ratio",
        },
    )
    status, _ = await asyncio.to_thread(post, b"[1]")
    assert status == 400
    status, _ = await asyncio.to_thread(post, b"{not json")
    assert status == 400
    assert endpoint.config.throttle_ratio == 0.0


BROWSER_ATTACKS = [
    # A page on another site posts a "simple" request (no preflight needed).
    ({"Origin": "http://evil.example", "Content-Type": "text/plain"}, 403),
    ({"Origin": "http://evil.example", **JSON_TYPE}, 403),
    ({"Origin": "null", **JSON_TYPE}, 403),
    ({"Sec-Fetch-Site": "cross-site", **JSON_TYPE}, 403),
    # DNS rebinding: evil.example now resolves to 127.0.0.1, the page is "same-origin".
    ({"Host": "evil.example", **JSON_TYPE}, 403),
    ({"Host": "evil.example:8025", "Origin": "http://evil.example:8025", **JSON_TYPE}, 403),
    ({"Host": "localhost.evil.example", **JSON_TYPE}, 403),
    ({"Host": "127.0.0.1@evil.example", **JSON_TYPE}, 403),
    ({"Host": "127.0.0.1:notaport", **JSON_TYPE}, 403),
    # Without a JSON content type: what a form or a no-cors fetch can send.
    ({"Content-Type": "text/plain"}, 415),
    ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
    ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
    ({}, 415),
]


@pytest.mark.parametrize(("headers", "status"), BROWSER_ATTACKS)
async def test_control_api_refuses_cross_origin_browser_requests_and_changes_nothing(
    endpoint: SESEndpoint, clients: Clients, headers: dict[str, str], status: int
) -> None:
    await clients.send("v2", RAW)
    before = (endpoint.config, endpoint.stats().messages_accepted, len(endpoint.messages()))

    results = [
        await asyncio.to_thread(control_request, endpoint, "config", b'{"latency": 9}', headers),
        await asyncio.to_thread(control_request, endpoint, "reset", b"{}", headers),
    ]
    if "Content-Type" in headers and headers["Content-Type"] == "application/json":
        # Reads are refused too when the Host or Origin is foreign.
        for resource in ("messages?raw=1", "stats", "config"):
            results.append(
                await asyncio.to_thread(control_request, endpoint, resource, None, headers)
            )

    assert {code for code, _ in results} == {status}
    assert all("message" in answer and "Message" not in answer for _, answer in results)
    after = (endpoint.config, endpoint.stats().messages_accepted, len(endpoint.messages()))
    assert after == before
    assert endpoint.config.latency == 0.0


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, urllib
        {"Host": "localhost"},
        {"Host": "LOCALHOST:1"},
        {"Host": "127.0.0.1"},
        {"Host": "[::1]:8025"},
        {"Host": "192.0.2.7:8025"},  # reached by address from another machine
        {"Origin": "http://127.0.0.1:{port}"},  # a page served by the endpoint itself
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
    ],
)
async def test_control_api_serves_same_origin_tools(
    endpoint: SESEndpoint, headers: dict[str, str]
) -> None:
    headers = {name: value.format(port=endpoint.port) for name, value in headers.items()}
    status, stats = await asyncio.to_thread(control_request, endpoint, "stats", None, headers)
    assert (status, stats["messages_accepted"]) == (200, 0)
    status, config = await asyncio.to_thread(
        control_request, endpoint, "config", b'{"latency": 0.01}', {**JSON_TYPE, **headers}
    )
    assert (status, config["latency"]) == (200, 0.01)
    status, _ = await asyncio.to_thread(
        control_request,
        endpoint,
        "reset",
        b"",
        {"Content-Type": "application/json; charset=utf-8", **headers},
    )
    assert status == 200


async def test_allowed_hosts_name_the_endpoint_for_other_machines() -> None:
    async with SESEndpoint(allowed_hosts=["ses.internal"]) as endpoint:
        named = {"Host": f"SES.internal:{endpoint.port}", **JSON_TYPE}
        other = {"Host": f"evil.example:{endpoint.port}", **JSON_TYPE}
        assert (await asyncio.to_thread(control_request, endpoint, "stats", None, named))[0] == 200
        assert (await asyncio.to_thread(control_request, endpoint, "stats", None, other))[0] == 403


async def test_the_ses_api_is_not_affected_by_the_control_checks(
    endpoint: SESEndpoint, clients: Clients
) -> None:
    # SDKs send no Origin and sign the Host they were given; nothing else changes for them.
    await clients.send("v1", RAW)
    await clients.send("v2", RAW)
    assert endpoint.stats().messages_accepted == 2


# ---------------------------------------------------------------- storage and modes


async def test_directory_store(session: AioSession, tmp_path: Path) -> None:
    async with SESEndpoint(store_dir=tmp_path) as endpoint:
        async with open_clients(session, endpoint) as pair:
            first = await pair.send("v1", RAW, ConfigurationSetName="cs")
            await pair.send("v2", message(mid="second"))
        remote = RemoteEndpoint(endpoint.url)
        over_http = await asyncio.to_thread(remote.messages)

        eml = tmp_path / f"{first['MessageId']}.eml"
        sidecar = json.loads((tmp_path / f"{first['MessageId']}.json").read_text())
        assert eml.read_bytes() == RAW
        assert sidecar["destinations"] == [
            "bob@example.org",
            "carol@example.org",
            "dee@example.org",
            "eve@example.org",
        ]
        assert sidecar["params"] == {"ConfigurationSetName": "cs"}
        assert sidecar["message_id_header"] == "first@example.com"
        records = endpoint.messages()
        assert [r.raw for r in records] == [RAW, message(mid="second")]
        assert [r.message_id for r in over_http] == [r.message_id for r in records]

        await asyncio.to_thread(remote.reset)
        assert sorted(tmp_path.iterdir()) == []


def test_run_in_thread_serves_synchronous_code() -> None:
    import boto3
    from botocore.config import Config

    with SESEndpoint(verified_identities={"example.com"}).run_in_thread() as endpoint:
        client = boto3.client(
            "sesv2",
            config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
            **endpoint.client_kwargs(),
        )
        result = client.send_email(Content={"Raw": {"Data": RAW}})
        with pytest.raises(ClientError):
            client.send_email(Content={"Raw": {"Data": message(sender="x@nope.test")}})
        endpoint.configure(max_send_rate=99.0)
        assert client.get_account()["SendQuota"]["MaxSendRate"] == 99.0
        client.close()
        [record] = endpoint.messages()

    assert record.message_id == result["MessageId"]
    assert record.raw == RAW
    with pytest.raises(TransportStateError):
        asyncio.run(endpoint.start())


async def test_lifecycle_errors() -> None:
    endpoint = SESEndpoint()
    with pytest.raises(TransportStateError):
        _ = endpoint.url
    async with endpoint:
        with pytest.raises(TransportStateError):
            await endpoint.start()
    with pytest.raises(TransportStateError):
        await endpoint.start()
    await endpoint.aclose()  # idempotent


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ConfigurationError) as error:
        SESEndpoint(lateny=1.0)
    assert error.value.option == "lateny"


# ------------------------------------------------------------------------------- CLI


async def test_command_line_serves_until_sigterm(session: AioSession, tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "asyncmailer.testing",
        "--port",
        "0",
        "--verified",
        "example.com",
        "--max-send-rate",
        "21",
        "--store-dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        url = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().strip()
        assert re.match(r"^http://127\.0\.0\.1:\d+$", url)
        config = AioConfig(retries={"mode": "standard", "total_max_attempts": 1})
        async with session.create_client(
            "sesv2",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=config,
        ) as client:
            result = await client.send_email(Content={"Raw": {"Data": RAW}})
            quota = (await client.get_account())["SendQuota"]
            with pytest.raises(ClientError):
                await client.send_email(Content={"Raw": {"Data": message(sender="x@nope.test")}})
        stats = await asyncio.to_thread(RemoteEndpoint(url).stats)
    finally:
        process.terminate()
        _, stderr = await asyncio.wait_for(process.communicate(), 30)

    assert process.returncode == 0
    assert quota["MaxSendRate"] == 21.0
    assert stats.messages_accepted == 1
    assert (tmp_path / f"{result['MessageId']}.eml").read_bytes() == RAW
    assert json.loads(stderr.decode().strip().splitlines()[-1])["messages_accepted"] == 1


def test_command_line_rejects_invalid_settings(capsys: pytest.CaptureFixture[str]) -> None:
    from asyncmailer.testing.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--throttle-ratio", "0.7", "--server-error-ratio", "0.7"])
    assert exit_info.value.code == 2
    assert "must add up to at most 1" in capsys.readouterr().err


def test_command_line_names_extra_control_hosts() -> None:
    from asyncmailer.testing.__main__ import build_parser

    args = build_parser().parse_args(["--allow-host", "ses", "--allow-host", "ses.internal"])
    assert args.allowed_hosts == ["ses", "ses.internal"]
    assert build_parser().parse_args([]).allowed_hosts == []


def test_directory_store_never_writes_through_a_planted_symlink(tmp_path: Path) -> None:
    from asyncmailer.testing._store import DirectoryStore, StoredMessage

    outside = tmp_path / "outside"
    outside.mkdir()
    victim_eml, victim_json = outside / "victim.eml", outside / "victim.json"
    victim_eml.write_bytes(b"keep me")
    victim_json.write_bytes(b"keep me too")
    store = DirectoryStore(tmp_path / "out")
    # Someone sharing the directory plants links under the names the next message will use.
    (store.directory / "m1.eml").symlink_to(victim_eml)
    (store.directory / "m1.json.tmp").symlink_to(victim_json)
    (store.directory / "m1.json").symlink_to(victim_json)
    record = StoredMessage.from_json(
        {
            "message_id": "m1",
            "api": "v2",
            "action": "SendEmail",
            "source": "a@example.com",
            "destinations": ["b@example.org"],
            "params": {},
            "received_at": 1.0,
            "arrival": 0,
        },
        raw=b"Subject: hi\r\n\r\nbody\r\n",
    )
    store.add(record)
    assert victim_eml.read_bytes() == b"keep me"
    assert victim_json.read_bytes() == b"keep me too"
    assert not (store.directory / "m1.eml").is_symlink()
    assert not (store.directory / "m1.json").is_symlink()
    assert [m.raw for m in store.messages()] == [b"Subject: hi\r\n\r\nbody\r\n"]
