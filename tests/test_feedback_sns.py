"""verify_sns_message: signatures v1/v2, hostile input, replay, and the real HTTPS fetch."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import trustme
from cryptography import x509
from hypothesis import assume, given
from hypothesis import strategies as st

from asyncmailer.feedback import (
    SNSCertificateFetcher,
    SNSVerificationError,
    check_sns_url,
    is_sns_host,
    parse_ses_event,
    verify_sns_message,
)
from asyncmailer.feedback._sns import canonical_string
from tests.feedback_helpers import (
    BOUNCE_NOTIFICATION,
    CERT_URL,
    FakeSNSHost,
    SigningAuthority,
    confirmation,
    notification,
    sign,
)


@pytest.fixture(scope="module")
def authority() -> SigningAuthority:
    return SigningAuthority()


class Recorder:
    """A resolver that records its calls: hostile input must never reach it."""

    def __init__(self, cert: x509.Certificate) -> None:
        self.cert = cert
        self.calls: list[str] = []

    async def __call__(self, url: str) -> x509.Certificate:
        self.calls.append(url)
        return self.cert


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize(
    "kind", ["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]
)
async def test_valid_signatures(authority: SigningAuthority, version: str, kind: str) -> None:
    envelope = notification(BOUNCE_NOTIFICATION) if kind == "Notification" else confirmation(kind)
    signed = sign(envelope, authority.key, version)
    for body in (json.dumps(signed), json.dumps(signed).encode(), signed):
        sns = await verify_sns_message(body, resolver=authority.resolver)
        assert sns.type == kind
        assert sns.signature_version == version
        assert sns.topic_arn == envelope["TopicArn"]
        assert sns.message == envelope["Message"]
    if kind == "Notification":
        assert parse_ses_event(sns.message).kind == "Bounce"
        assert sns.unsubscribe_url is not None and sns.token is None
    else:
        assert sns.subscribe_url is not None and sns.token is not None


async def test_subject_is_signed(authority: SigningAuthority) -> None:
    signed = sign(
        notification(BOUNCE_NOTIFICATION, subject="Amazon SES Email Event"), authority.key
    )
    sns = await verify_sns_message(signed, resolver=authority.resolver)
    assert sns.subject == "Amazon SES Email Event"
    forged = {**signed, "Subject": "Something else"}
    with pytest.raises(SNSVerificationError) as info:
        await verify_sns_message(forged, resolver=authority.resolver)
    assert info.value.reason == "signature"
    dropped = dict(signed)
    del dropped["Subject"]
    with pytest.raises(SNSVerificationError, match="signature"):
        await verify_sns_message(dropped, resolver=authority.resolver)


def test_canonical_string_matches_the_documented_order() -> None:
    envelope = confirmation()
    text = canonical_string(envelope).decode()
    assert text.split("\n")[0::2][:-1] == [
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ]
    note = notification(BOUNCE_NOTIFICATION, subject="S")
    assert canonical_string(note).decode().split("\n")[0::2][:-1] == [
        "Message",
        "MessageId",
        "Subject",
        "Timestamp",
        "TopicArn",
        "Type",
    ]


@pytest.mark.parametrize("field", ["Message", "MessageId", "Timestamp", "TopicArn", "Type"])
async def test_tampering_any_signed_field_fails(authority: SigningAuthority, field: str) -> None:
    signed = sign(notification(BOUNCE_NOTIFICATION), authority.key, "2")
    tampered = dict(signed)
    if field == "Timestamp":
        tampered[field] = signed[field].replace(".", "1.", 1)[:-5] + "000Z"
    elif field == "Type":
        tampered[field] = "SubscriptionConfirmation"
    else:
        tampered[field] = signed[field] + " "
    with pytest.raises(SNSVerificationError) as info:
        await verify_sns_message(tampered, resolver=authority.resolver, max_age=None)
    assert info.value.reason in ("signature", "malformed")


async def test_a_signature_of_another_key_fails(authority: SigningAuthority) -> None:
    other = SigningAuthority()
    signed = sign(notification(BOUNCE_NOTIFICATION), other.key)
    with pytest.raises(SNSVerificationError) as info:
        await verify_sns_message(signed, resolver=authority.resolver)
    assert info.value.reason == "signature"
    # a v1 signature presented as v2
    signed = sign(notification(BOUNCE_NOTIFICATION), authority.key, "1")
    with pytest.raises(SNSVerificationError, match="does not match"):
        await verify_sns_message({**signed, "SignatureVersion": "2"}, resolver=authority.resolver)


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-west-2.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-west-2.amazonaws.com.evil.com/SimpleNotificationService-abc.pem",
        "https://evil.com/SimpleNotificationService-abc.pem",
        "https://sns.us-west-2.amazonaws.com:8443/SimpleNotificationService-abc.pem",
        "https://user@sns.us-west-2.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://evil.com@sns.us-west-2.amazonaws.com/x.pem",
        "https://sns.us-west-2.amazonaws.com@evil.com/x.pem",
        "https://xsns.us-west-2.amazonaws.com/x.pem",
        "https://sns.us-west-2.amazonaws.co/x.pem",
        "https://SNS.us-west-2.amazonaws.com/x.pem",
        "https://sns.us-west-2.amazonaws.com/x.pem?redirect=https://evil.com/",
        "https://sns.us-west-2.amazonaws.com/x.pem#frag",
        "https://sns.us-west-2.amazonaws.com/x.txt",
        "https://sns.us-west-2.amazonaws.com/../x.pem",
        "https://sns.us-west-2.amazonaws.com/x.pem\n",
        "https://sns.evil.amazonaws.com/x.pem",
        "https://sns.us-west-2.s3.amazonaws.com/x.pem",
        "//sns.us-west-2.amazonaws.com/x.pem",
        "ftp://sns.us-west-2.amazonaws.com/x.pem",
        "",
    ],
)
async def test_hostile_cert_urls_are_refused_before_any_fetch(
    authority: SigningAuthority, url: str
) -> None:
    recorder = Recorder(authority.cert)
    envelope = notification(BOUNCE_NOTIFICATION)
    envelope["SigningCertURL"] = url
    signed = sign(envelope, authority.key)
    with pytest.raises(SNSVerificationError) as info:
        await verify_sns_message(signed, resolver=recorder)
    assert info.value.reason == "cert_url"
    assert recorder.calls == []
    # the default fetcher refuses it as well, before any connection
    with pytest.raises(SNSVerificationError, match="SigningCertURL"):
        await SNSCertificateFetcher()(url)


@pytest.mark.parametrize(
    "host",
    [
        "sns.us-east-1.amazonaws.com",
        "sns.eu-central-2.amazonaws.com",
        "sns.us-gov-west-1.amazonaws.com",
        "sns.cn-north-1.amazonaws.com.cn",
        "sns.us-iso-east-1.c2s.ic.gov",
        "sns.us-isob-east-1.sc2s.sgov.gov",
        "sns.ap-southeast-5.amazonaws.com",
    ],
)
def test_partition_hosts_are_accepted(host: str) -> None:
    assert is_sns_host(host)
    check_sns_url(f"https://{host}/SimpleNotificationService-0123.pem")


async def test_hostile_bodies(authority: SigningAuthority) -> None:
    recorder = Recorder(authority.cert)
    signed = sign(notification(BOUNCE_NOTIFICATION), authority.key)
    cases: list[tuple[Any, str]] = [
        (b"x" * (256 * 1024 + 1), "too_large"),
        (b"not json", "not_json"),
        (b"[]", "not_json"),
        (b"\xff", "not_json"),
        ({**signed, "Type": "Bogus"}, "unsupported"),
        ({**signed, "SignatureVersion": "3"}, "unsupported"),
        ({**signed, "SignatureVersion": 1}, "unsupported"),
        ({k: v for k, v in signed.items() if k != "Signature"}, "malformed"),
        ({k: v for k, v in signed.items() if k != "MessageId"}, "malformed"),
        ({**signed, "Message": {"nested": True}}, "malformed"),
        ({**signed, "Timestamp": "yesterday"}, "malformed"),
        ({**signed, "Signature": "!!!not base64!!!"}, "signature"),
        (json.dumps(signed).encode()[:-5], "not_json"),
    ]
    for body, reason in cases:
        with pytest.raises(SNSVerificationError) as info:
            await verify_sns_message(body, resolver=recorder)
        assert info.value.reason == reason, (body, info.value)
    assert recorder.calls == []


async def test_replays_are_refused_before_any_fetch(authority: SigningAuthority) -> None:
    recorder = Recorder(authority.cert)
    old = datetime.now(timezone.utc) - timedelta(hours=2)
    signed = sign(notification(BOUNCE_NOTIFICATION, when=old), authority.key)
    with pytest.raises(SNSVerificationError) as info:
        await verify_sns_message(signed, resolver=recorder)
    assert info.value.reason == "expired"
    with pytest.raises(SNSVerificationError, match="older"):
        await verify_sns_message(signed, resolver=recorder, max_age=60)
    assert recorder.calls == []
    # a configurable age, and None for audits of stored messages
    assert (await verify_sns_message(signed, resolver=recorder, max_age=timedelta(hours=3))).type
    assert (await verify_sns_message(signed, resolver=recorder, max_age=None)).type
    # "now" replaces the clock
    assert await verify_sns_message(signed, resolver=recorder, now=old + timedelta(minutes=1))
    future = sign(
        notification(BOUNCE_NOTIFICATION, when=datetime.now(timezone.utc) + timedelta(hours=1)),
        authority.key,
    )
    with pytest.raises(SNSVerificationError, match="future"):
        await verify_sns_message(future, resolver=recorder)


async def test_certificate_validity_is_judged_at_the_message_timestamp() -> None:
    # A certificate that was valid in 2020 only: a stored 2020 message stays verifiable.
    rotated = SigningAuthority(
        not_before=datetime(2020, 1, 1, tzinfo=timezone.utc),
        not_after=datetime(2021, 1, 1, tzinfo=timezone.utc),
    )
    stored = sign(
        notification(BOUNCE_NOTIFICATION, when=datetime(2020, 6, 1, tzinfo=timezone.utc)),
        rotated.key,
        "2",
    )
    sns = await verify_sns_message(stored, resolver=rotated.resolver, max_age=None)
    assert sns.timestamp.year == 2020
    fresh = sign(notification(BOUNCE_NOTIFICATION), rotated.key, "2")
    with pytest.raises(SNSVerificationError) as info:
        await verify_sns_message(fresh, resolver=rotated.resolver)
    assert info.value.reason == "cert_invalid"


async def test_resolver_failures_are_typed(authority: SigningAuthority) -> None:
    async def broken(url: str) -> x509.Certificate:
        raise OSError("network down")

    signed = sign(notification(BOUNCE_NOTIFICATION), authority.key)
    with pytest.raises(SNSVerificationError) as info:
        await verify_sns_message(signed, resolver=broken)
    assert info.value.reason == "cert_unavailable" and info.value.retryable


@given(
    field=st.sampled_from(["Message", "MessageId", "Timestamp", "TopicArn", "Signature", "Type"]),
    flip=st.integers(min_value=0, max_value=10_000),
)
async def test_any_byte_flip_is_rejected(field: str, flip: int) -> None:
    authority = _AUTHORITY
    signed = sign(notification(BOUNCE_NOTIFICATION), authority.key, "2")
    value = signed[field]
    index = flip % len(value)
    replacement = "A" if value[index] != "A" else "B"
    tampered = {**signed, field: value[:index] + replacement + value[index + 1 :]}
    if field == "Signature":
        # The last base64 digit before "==" carries 2 bits and 4 ignored ones: a flip there
        # can decode to the very same signature bytes, which is no forgery.
        assume(base64.b64decode(tampered[field]) != base64.b64decode(value))
    with pytest.raises(SNSVerificationError):
        await verify_sns_message(tampered, resolver=authority.resolver, max_age=None)


_AUTHORITY = SigningAuthority()


# ------------------------------------------------- the real fetch, over real HTTPS


@pytest.fixture
async def sns_host(authority: SigningAuthority) -> Any:
    host = FakeSNSHost(trustme.CA(), authority.cert_pem)
    await host.start()
    yield host
    await host.stop()


async def test_fetcher_fetches_checks_the_chain_and_caches(
    authority: SigningAuthority, sns_host: FakeSNSHost
) -> None:
    async with sns_host.client_session() as session:
        fetcher = SNSCertificateFetcher(session=session, trust_roots=[authority.ca_cert])
        for version in ("1", "2"):
            signed = sign(notification(BOUNCE_NOTIFICATION), authority.key, version)
            sns = await verify_sns_message(signed, resolver=fetcher)
            assert sns.signing_cert_url == CERT_URL
        assert sns_host.requests == ["/" + CERT_URL.rsplit("/", 1)[1]]  # fetched once
        # concurrent first fetches of a new URL share one request
        fetcher.clear()
        import asyncio

        await asyncio.gather(*(fetcher(CERT_URL) for _ in range(5)))
        assert len(sns_host.requests) == 2


async def test_fetcher_refuses_an_untrusted_chain(
    authority: SigningAuthority, sns_host: FakeSNSHost
) -> None:
    async with sns_host.client_session() as session:
        fetcher = SNSCertificateFetcher(
            session=session,
            trust_roots=[SigningAuthority().ca_cert],  # a root that did not issue it
        )
        signed = sign(notification(BOUNCE_NOTIFICATION), authority.key)
        with pytest.raises(SNSVerificationError) as info:
            await verify_sns_message(signed, resolver=fetcher)
        assert info.value.reason == "cert_invalid"


async def test_fetcher_refuses_a_certificate_not_issued_to_sns(sns_host: FakeSNSHost) -> None:
    impostor = SigningAuthority(name="www.example.com")
    sns_host.pem = impostor.cert_pem
    async with sns_host.client_session() as session:
        fetcher = SNSCertificateFetcher(session=session, trust_roots=[impostor.ca_cert])
        signed = sign(notification(BOUNCE_NOTIFICATION), impostor.key)
        with pytest.raises(SNSVerificationError, match="not issued to an SNS name"):
            await verify_sns_message(signed, resolver=fetcher)


async def test_fetcher_http_errors_are_retryable(
    authority: SigningAuthority, sns_host: FakeSNSHost
) -> None:
    sns_host.status = 404
    async with sns_host.client_session() as session:
        fetcher = SNSCertificateFetcher(session=session, trust_roots=[authority.ca_cert])
        signed = sign(notification(BOUNCE_NOTIFICATION), authority.key)
        with pytest.raises(SNSVerificationError) as info:
            await verify_sns_message(signed, resolver=fetcher)
        assert info.value.reason == "cert_unavailable"


async def test_fetcher_refuses_an_untrusted_tls_server(authority: SigningAuthority) -> None:
    # The server's TLS certificate comes from a CA the client does not trust.
    host = FakeSNSHost(trustme.CA(), authority.cert_pem)
    await host.start()
    try:
        import aiohttp

        from tests.feedback_helpers import LoopbackResolver

        connector = aiohttp.TCPConnector(resolver=LoopbackResolver(host.port))
        async with aiohttp.ClientSession(connector=connector) as session:
            fetcher = SNSCertificateFetcher(session=session, trust_roots=[authority.ca_cert])
            with pytest.raises(SNSVerificationError) as info:
                await fetcher(CERT_URL)
            assert info.value.reason == "cert_unavailable"
        assert host.requests == []
    finally:
        await host.stop()


async def test_fetcher_refuses_oversized_certificates(
    authority: SigningAuthority, sns_host: FakeSNSHost
) -> None:
    sns_host.pem = b"A" * 100_000
    async with sns_host.client_session() as session:
        fetcher = SNSCertificateFetcher(session=session, trust_roots=[authority.ca_cert])
        with pytest.raises(SNSVerificationError, match="larger"):
            await fetcher(CERT_URL)
