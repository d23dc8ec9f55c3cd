"""The local endpoint's mailbox simulator: SES events, signed as SNS signs them, published.

Real parts: aiobotocore clients send to the endpoint over loopback HTTP; the endpoint POSTs
to a real aiohttp server, and sends to moto's real SQS server; the envelopes are checked
with the library's own ``verify_sns_message`` and ``parse_ses_event``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from email import message_from_bytes
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from asyncmailer.errors import ConfigurationError
from asyncmailer.feedback import (
    BounceEvent,
    ComplaintEvent,
    DeliveryEvent,
    MemorySuppressionList,
    SESEvent,
    SNSVerificationError,
    SQSEventConsumer,
    apply_to,
    parse_ses_event,
    sns_handler,
    verify_sns_message,
)
from asyncmailer.testing import (
    SIMULATOR_CERT_URL,
    EndpointConfig,
    RemoteEndpoint,
    SESEndpoint,
    simulator_certificate,
    simulator_resolver,
)
from asyncmailer.testing.__main__ import build_parser

SIM = "simulator.amazonses.com"


def subprocess_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}


SENDER = "shop@example.com"


class Subscriber:
    """A real aiohttp server that records SNS POSTs and answers ``status``."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.status = 200
        self.delay = 0.0
        self.received = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        self.headers.append(dict(request.headers))
        self.received.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status, text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/sns", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/sns"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def subscriber() -> AsyncIterator[Subscriber]:
    server = Subscriber()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def client_config() -> AioConfig:
    return AioConfig(retries={"mode": "standard", "total_max_attempts": 1})


async def send_v2(
    endpoint: SESEndpoint, to: list[str], *, subject: str = "Hello", **extra: Any
) -> str:
    async with get_session().create_client(
        "sesv2", config=client_config(), **endpoint.client_kwargs()
    ) as client:
        answer = await client.send_email(
            FromEmailAddress=SENDER,
            Destination={"ToAddresses": to},
            Content={
                "Simple": {
                    "Subject": {"Data": subject},
                    "Body": {"Text": {"Data": "Hi"}},
                }
            },
            **extra,
        )
    message_id: str = answer["MessageId"]
    return message_id


async def send_v1_raw(endpoint: SESEndpoint, to: str) -> str:
    raw = (
        f"From: {SENDER}\r\nTo: {to}\r\nSubject: v1\r\nMessage-ID: <v1@example.com>\r\n\r\nHi\r\n"
    ).encode()
    async with get_session().create_client(
        "ses", config=client_config(), **endpoint.client_kwargs()
    ) as client:
        answer = await client.send_raw_email(RawMessage={"Data": raw})
    message_id: str = answer["MessageId"]
    return message_id


async def verified_events(bodies: list[bytes]) -> list[SESEvent]:
    resolver = simulator_resolver()
    events = []
    for body in bodies:
        sns = await verify_sns_message(body, resolver=resolver)
        events.append(parse_ses_event(sns.message))
    return events


EXPECTED = {
    "success": ["Delivery"],
    "bounce": ["Bounce"],
    "ooto": ["Delivery"],
    "complaint": ["Delivery", "Complaint"],
    "suppressionlist": ["Bounce"],
}


@pytest.mark.parametrize(
    ("style", "version"), [("notification", "1"), ("event", "2"), ("notification", "2")]
)
@pytest.mark.parametrize("box", sorted(EXPECTED))
async def test_each_simulator_address_publishes_its_signed_events(
    subscriber: Subscriber, box: str, style: str, version: str
) -> None:
    async with SESEndpoint(
        sns_subscriber_url=subscriber.url, event_style=style, sns_signature_version=version
    ) as endpoint:
        address = f"{box}@{SIM}"
        message_id = await send_v2(endpoint, [address])
        records = await endpoint.wait_for_events()
    assert [r.kind for r in records] == EXPECTED[box]
    assert all(r.sns_status == "delivered" for r in records)
    events = await verified_events(subscriber.bodies)
    # Several publishers POST at once: the subscriber may see them in either order (SNS
    # does not promise an order either). The endpoint's own record keeps the order.
    assert sorted(e.kind for e in events) == sorted(EXPECTED[box])
    for event in events:
        assert event.message_id == message_id
        assert event.destinations == (address,)
        assert event.source == SENDER
        assert event.raw.get("eventType" if style == "event" else "notificationType") == event.kind
    for envelope in (json.loads(body) for body in subscriber.bodies):
        assert envelope["SignatureVersion"] == version
        assert envelope["SigningCertURL"] == SIMULATOR_CERT_URL
    for headers in subscriber.headers:
        assert headers["x-amz-sns-message-type"] == "Notification"
        assert headers["User-Agent"] == "Amazon Simple Notification Service Agent"
    by_kind = {event.kind: event for event in events}  # arrival order is not promised
    first = by_kind[EXPECTED[box][0]]
    if box == "bounce":
        assert isinstance(first, BounceEvent)
        assert (first.bounce_type, first.bounce_subtype) == ("Permanent", "General")
        assert first.recipients[0].email == address
        assert first.recipients[0].status == "5.1.1"
    elif box == "suppressionlist":
        assert isinstance(first, BounceEvent)
        assert (first.bounce_type, first.bounce_subtype) == (
            "Permanent",
            "OnAccountSuppressionList",
        )
    else:
        assert isinstance(first, DeliveryEvent)
        assert first.recipients == (address,)
        assert first.smtp_response.startswith("250 ")
    if box == "complaint":
        complaint = by_kind["Complaint"]
        assert isinstance(complaint, ComplaintEvent)
        assert complaint.recipients == (address,)
        assert complaint.complaint_feedback_type == "abuse"
    if style == "event":
        assert first.tags["ses:operation"] == ["SendEmail"]
        assert first.headers is not None  # event publishing includes the headers
    else:
        assert first.headers is None and first.tags == {}


async def test_ooto_replies_to_the_sender(subscriber: Subscriber) -> None:
    async with SESEndpoint(sns_subscriber_url=subscriber.url) as endpoint:
        await send_v2(endpoint, [f"ooto+label@{SIM}"], subject="Your order")
        [record] = await endpoint.wait_for_events()
    assert record.kind == "Delivery" and record.auto_reply is not None
    reply = message_from_bytes(record.auto_reply)
    assert reply["To"] == SENDER
    assert reply["From"] == f"ooto+label@{SIM}"
    assert reply["Subject"] == "Out of the office: Your order"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["In-Reply-To"]
    # The reply goes back to the sender by mail; no bounce, no complaint is published.
    [event] = await verified_events(subscriber.bodies)
    assert isinstance(event, DeliveryEvent)


async def test_mixed_recipients_labels_and_v1(subscriber: Subscriber) -> None:
    async with SESEndpoint(sns_subscriber_url=subscriber.url) as endpoint:
        await send_v2(endpoint, ["ada@example.org", f"Bounce+Order-7@{SIM.upper()}"])
        await send_v1_raw(endpoint, f"complaint@{SIM}")
        await send_v2(endpoint, ["nobody@example.org", f"other@{SIM}"])  # no mailbox
        records = await endpoint.wait_for_events()
    assert [r.kind for r in records] == ["Bounce", "Delivery", "Complaint"]
    events = await verified_events(subscriber.bodies)
    # POSTs may reach the subscriber in any order: find the bounce by its kind.
    [bounce] = [e for e in events if isinstance(e, BounceEvent)]
    assert bounce.recipients[0].email == f"Bounce+Order-7@{SIM.upper()}"
    assert bounce.destinations == ("ada@example.org", f"Bounce+Order-7@{SIM.upper()}")
    assert all(e.source == SENDER for e in events)  # v1 raw: the sender from the From header


async def test_headers_and_tags_when_asked(subscriber: Subscriber) -> None:
    async with SESEndpoint(
        sns_subscriber_url=subscriber.url, event_style="event", region="eu-west-1"
    ) as endpoint:
        await send_v2(
            endpoint,
            [f"bounce@{SIM}"],
            subject="Tagged",
            EmailTags=[{"Name": "campaign", "Value": "spring"}],
            ConfigurationSetName="events",
        )
        await endpoint.wait_for_events()
        endpoint.configure(event_style="notification", include_headers=True)
        await send_v2(endpoint, [f"success@{SIM}"], subject="With headers")
        await endpoint.wait_for_events()
    tagged, plain = await verified_events(subscriber.bodies)
    assert tagged.tags["campaign"] == ["spring"]
    assert tagged.tags["ses:configuration-set"] == ["events"]
    assert tagged.tags["ses:from-domain"] == ["example.com"]
    assert tagged.subject == "Tagged"
    assert tagged.source_arn == "arn:aws:ses:eu-west-1:123456789012:identity/example.com"
    assert json.loads(subscriber.bodies[0])["TopicArn"] == (
        "arn:aws:sns:eu-west-1:123456789012:asyncmailer-simulator"
    )
    assert plain.subject == "With headers"
    assert plain.headers is not None and ("Subject", "With headers") in plain.headers
    assert plain.tags == {}


async def test_without_publishing_the_events_are_still_recorded() -> None:
    async with SESEndpoint() as endpoint:
        await send_v2(endpoint, [f"bounce@{SIM}"])
        [record] = await endpoint.wait_for_events()
    assert record.kind == "Bounce"
    assert record.envelope is None and record.sns_status is None and record.sqs_status is None
    event = parse_ses_event(record.event)
    assert isinstance(event, BounceEvent)


# ------------------------------------------------------------------------- forgeries


async def envelope_from(subscriber: Subscriber) -> dict[str, Any]:
    async with SESEndpoint(sns_subscriber_url=subscriber.url) as endpoint:
        await send_v2(endpoint, [f"bounce@{SIM}"])
        await endpoint.wait_for_events()
    envelope: dict[str, Any] = json.loads(subscriber.bodies[0])
    return envelope


async def test_tampered_and_forged_envelopes_fail_verification(subscriber: Subscriber) -> None:
    envelope = await envelope_from(subscriber)
    resolver = simulator_resolver()
    await verify_sns_message(envelope, resolver=resolver)  # the genuine one passes

    event = json.loads(envelope["Message"])
    event["bounce"]["bouncedRecipients"][0]["emailAddress"] = "ceo@example.com"
    tampered = {**envelope, "Message": json.dumps(event)}
    with pytest.raises(SNSVerificationError) as info:
        await verify_sns_message(tampered, resolver=resolver)
    assert info.value.reason == "signature"

    # Signed correctly, but with another key than the simulator's.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    canonical = "".join(
        f"{k}\n{envelope[k]}\n" for k in ("Message", "MessageId", "Timestamp", "TopicArn", "Type")
    ).encode()
    forged = {
        **envelope,
        "Signature": base64.b64encode(
            key.sign(canonical, padding.PKCS1v15(), hashes.SHA1())
        ).decode(),
    }
    with pytest.raises(SNSVerificationError) as info:
        await verify_sns_message(forged, resolver=resolver)
    assert info.value.reason == "signature"

    # Another certificate URL on an SNS host: the simulator resolver does not serve it.
    elsewhere = {
        **envelope,
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
    }
    with pytest.raises(SNSVerificationError) as info:
        await verify_sns_message(elsewhere, resolver=resolver)
    assert info.value.reason == "cert_invalid"

    # The simulator's envelopes do not pass AWS's real certificate check either: the URL is
    # an SNS one, but the resolver (not the network) is the only source of its certificate.
    with pytest.raises(SNSVerificationError) as info:
        await verify_sns_message({**envelope, "SigningCertURL": "http://127.0.0.1/x.pem"})
    assert info.value.reason == "cert_url"


async def test_the_webhook_refuses_a_tampered_envelope(subscriber: Subscriber) -> None:
    envelope = await envelope_from(subscriber)
    seen: list[SESEvent] = []

    async def callback(event: SESEvent) -> None:
        seen.append(event)

    app = web.Application()
    app.router.add_post("/sns", sns_handler(callback, resolver=simulator_resolver()))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    import aiohttp

    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://{host}:{port}/sns"
            bad = {**envelope, "Message": envelope["Message"].replace("5.1.1", "2.0.0")}
            async with session.post(url, data=json.dumps(bad)) as response:
                assert response.status == 403
            async with session.post(url, data=json.dumps(envelope)) as response:
                assert response.status == 200
    finally:
        await runner.cleanup()
    assert [e.kind for e in seen] == ["Bounce"]


# ----------------------------------------------------------------- delivery failures


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_subscriber_that_is_down_never_fails_the_send() -> None:
    url = f"http://127.0.0.1:{free_port()}/sns"  # nothing listens there
    async with SESEndpoint(sns_subscriber_url=url, publish_attempts=2) as endpoint:
        message_id = await send_v2(endpoint, [f"bounce@{SIM}"])
        [record] = await endpoint.wait_for_events()
        assert endpoint.stats().messages_accepted == 1
    assert record.message_id == message_id
    assert record.sns_status == "failed"
    assert record.error is not None and "POST" in record.error


async def test_a_slow_subscriber_does_not_delay_the_answer(subscriber: Subscriber) -> None:
    subscriber.delay = 1.0
    async with SESEndpoint(
        sns_subscriber_url=subscriber.url, publish_timeout=0.3, publish_attempts=1
    ) as endpoint:
        started = time.monotonic()
        await send_v2(endpoint, [f"bounce@{SIM}"])
        answered = time.monotonic() - started
        [record] = await endpoint.wait_for_events()
    assert answered < 0.9  # the answer did not wait for the subscriber's second
    assert record.sns_status == "failed"


async def test_5xx_is_retried_and_4xx_is_not(subscriber: Subscriber) -> None:
    subscriber.status = 500
    async with SESEndpoint(sns_subscriber_url=subscriber.url, publish_attempts=3) as endpoint:
        await send_v2(endpoint, [f"bounce@{SIM}"])
        [record] = await endpoint.wait_for_events()
        assert record.sns_status == "failed" and len(subscriber.bodies) == 3
        assert record.error == "the subscriber answered HTTP 500"
        # All attempts carry the same SNS MessageId, as SNS's retries do.
        assert len({json.loads(b)["MessageId"] for b in subscriber.bodies}) == 1
        subscriber.status = 403
        await send_v2(endpoint, [f"bounce@{SIM}"])
        await endpoint.wait_for_events()
    assert len(subscriber.bodies) == 4


async def test_a_full_queue_drops_events_not_sends(subscriber: Subscriber) -> None:
    subscriber.delay = 0.5
    async with SESEndpoint(
        sns_subscriber_url=subscriber.url, publish_queue_size=1, publish_timeout=2
    ) as endpoint:
        await asyncio.gather(*(send_v2(endpoint, [f"success+{i}@{SIM}"]) for i in range(12)))
        records = await endpoint.wait_for_events()
        assert endpoint.stats().messages_accepted == 12
    statuses = [r.sns_status for r in records]
    assert len(statuses) == 12
    assert "dropped" in statuses and "delivered" in statuses
    assert set(statuses) <= {"dropped", "delivered"}


# ------------------------------------------------------------------------------- SQS


@pytest.fixture
async def queue_url(moto_url: str) -> str:
    async with get_session().create_client(
        "sqs", region_name="us-east-1", endpoint_url=moto_url
    ) as client:
        queue = await client.create_queue(QueueName=f"ses-events-{time.monotonic_ns()}")
    url: str = queue["QueueUrl"]
    return url


async def test_sqs_delivery_is_consumed_by_the_consumer(moto_url: str, queue_url: str) -> None:
    suppression = MemorySuppressionList()
    seen: list[SESEvent] = []
    store = apply_to(suppression)

    async def callback(event: SESEvent) -> None:
        seen.append(event)
        await store(event)

    async with SESEndpoint(sqs_queue_url=queue_url, sqs_endpoint_url=moto_url) as endpoint:
        await send_v2(endpoint, [f"bounce@{SIM}", f"complaint@{SIM}", f"success@{SIM}"])
        records = await endpoint.wait_for_events()
    assert [r.sqs_status for r in records] == ["delivered"] * 4
    async with SQSEventConsumer(
        queue_url, callback, region_name="us-east-1", endpoint_url=moto_url, wait_time=1
    ):
        deadline = time.monotonic() + 15
        while len(seen) < 4:
            assert time.monotonic() < deadline, seen
            await asyncio.sleep(0.05)
    assert sorted(e.kind for e in seen) == ["Bounce", "Complaint", "Delivery", "Delivery"]
    found = await suppression.suppressed([f"bounce@{SIM}", f"complaint@{SIM}", f"success@{SIM}"])
    assert sorted(found) == [f"bounce@{SIM}", f"complaint@{SIM}"]


async def test_sqs_bodies_are_signed_envelopes_or_raw_events(moto_url: str, queue_url: str) -> None:
    async with SESEndpoint(sqs_queue_url=queue_url, sqs_endpoint_url=moto_url) as endpoint:
        await send_v2(endpoint, [f"bounce@{SIM}"])
        await endpoint.wait_for_events()
        endpoint.configure(sqs_raw_delivery=True)
        await send_v2(endpoint, [f"success@{SIM}"])
        await endpoint.wait_for_events()
    async with get_session().create_client(
        "sqs", region_name="us-east-1", endpoint_url=moto_url
    ) as client:
        answer = await client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
    bodies = sorted((json.loads(m["Body"]) for m in answer["Messages"]), key=lambda b: "Type" in b)
    raw, wrapped = bodies
    assert raw["notificationType"] == "Delivery"
    sns = await verify_sns_message(wrapped, resolver=simulator_resolver())
    assert isinstance(parse_ses_event(sns.message), BounceEvent)


async def test_an_unreachable_queue_never_fails_the_send() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with SESEndpoint(
        sqs_queue_url=f"{url}/123456789012/q",
        sqs_endpoint_url=url,
        publish_timeout=0.5,
        publish_attempts=1,
    ) as endpoint:
        await send_v2(endpoint, [f"bounce@{SIM}"])
        [record] = await endpoint.wait_for_events()
    assert record.sqs_status == "failed"
    assert record.error is not None and "SQS SendMessage" in record.error


# ---------------------------------------------------------- configuration and control


def test_publishing_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError) as info:
        EndpointConfig(sns_subscriber_url="ftp://example.com/x")
    assert info.value.option == "sns_subscriber_url"
    with pytest.raises(ConfigurationError):
        EndpointConfig(sqs_queue_url="not a url")
    with pytest.raises(ConfigurationError):
        EndpointConfig(event_style="eventbridge")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        EndpointConfig(sns_signature_version="3")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        EndpointConfig(publish_attempts=0)
    with pytest.raises(ConfigurationError):
        EndpointConfig(publish_timeout=0)
    config = EndpointConfig(sns_subscriber_url="http://127.0.0.1:9/sns", event_style="event")
    assert EndpointConfig.from_json(config.to_json()) == config


WITHOUT_CRYPTOGRAPHY = """
import sys
sys.modules["cryptography"] = None
from asyncmailer.errors import ConfigurationError
from asyncmailer.testing import SESEndpoint
SESEndpoint()  # the endpoint itself needs no extra
try:
    SESEndpoint(sns_subscriber_url="http://127.0.0.1:9/sns")
except ConfigurationError as exc:
    print(exc.option, exc)
"""


def test_publishing_without_cryptography_is_a_clear_configuration_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_CRYPTOGRAPHY],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
        check=True,
    )
    assert proc.stdout.startswith("sns_subscriber_url ")
    assert "pip install 'asyncmailer[feedback]'" in proc.stdout


def test_command_line_options() -> None:
    args = build_parser().parse_args(
        [
            "--sns-subscriber",
            "http://127.0.0.1:8000/sns",
            "--sqs-queue-url",
            "http://127.0.0.1:5000/123456789012/q",
            "--sqs-endpoint",
            "http://127.0.0.1:5000",
            "--sqs-raw-delivery",
            "--event-style",
            "event",
            "--include-headers",
            "--signature-version",
            "2",
            "--sns-topic-arn",
            "arn:aws:sns:us-east-1:123456789012:t",
        ]
    )
    from asyncmailer.testing.__main__ import _settings

    config = EndpointConfig(**_settings(args))
    assert config.sns_subscriber_url == "http://127.0.0.1:8000/sns"
    assert config.sqs_queue_url == "http://127.0.0.1:5000/123456789012/q"
    assert config.sqs_endpoint_url == "http://127.0.0.1:5000"
    assert config.sqs_raw_delivery and config.include_headers
    assert (config.event_style, config.sns_signature_version) == ("event", "2")
    assert config.sns_topic_arn == "arn:aws:sns:us-east-1:123456789012:t"
    assert EndpointConfig(**_settings(build_parser().parse_args([]))) == EndpointConfig()


async def test_control_api_serves_events_and_the_certificate(subscriber: Subscriber) -> None:
    async with SESEndpoint() as endpoint:
        await send_v2(endpoint, [f"complaint@{SIM}"])
        remote = RemoteEndpoint(endpoint.url)
        events = await asyncio.to_thread(remote.events)
        pem = await asyncio.to_thread(remote.simulator_certificate)
        assert [e.kind for e in events] == ["Delivery", "Complaint"]
        assert events[1].event == endpoint.events()[1].event
        assert pem == simulator_certificate()
        # Configured through the control API, as another process would.
        await asyncio.to_thread(remote.configure, sns_subscriber_url=subscriber.url)
        await send_v2(endpoint, [f"bounce@{SIM}"])
        await endpoint.wait_for_events()
        await asyncio.to_thread(remote.reset)
        assert endpoint.events() == []
    [event] = await verified_events(subscriber.bodies)
    assert isinstance(event, BounceEvent)


def test_another_process_endpoint_is_trusted_through_its_control_api(tmp_path: Any) -> None:
    """``python -m asyncmailer.testing --sns-subscriber``: a key of its own, read remotely."""

    async def scenario() -> None:
        subscriber = Subscriber()
        await subscriber.start()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "asyncmailer.testing",
            "--sns-subscriber",
            subscriber.url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=subprocess_env(),
        )
        try:
            assert proc.stdout is not None
            url = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
            endpoint_like = type("E", (), {"client_kwargs": lambda self: _kwargs(url)})()
            await send_v2(endpoint_like, [f"bounce@{SIM}"])
            await asyncio.wait_for(subscriber.received.wait(), 15)
            body = subscriber.bodies[0]
            # This process's certificate is not the other process's...
            with pytest.raises(SNSVerificationError):
                await verify_sns_message(body, resolver=simulator_resolver())
            # ...which the endpoint's control API serves.
            sns = await verify_sns_message(body, resolver=simulator_resolver(url))
            assert isinstance(parse_ses_event(sns.message), BounceEvent)
        finally:
            proc.terminate()
            await proc.wait()
            await subscriber.stop()

    asyncio.run(scenario())


def _kwargs(url: str) -> dict[str, str]:
    return {
        "endpoint_url": url,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }


def test_run_in_thread_publishes_from_its_own_loop() -> None:
    async def scenario() -> None:
        subscriber = Subscriber()
        await subscriber.start()
        try:
            with SESEndpoint(sns_subscriber_url=subscriber.url).run_in_thread() as endpoint:
                await send_v2(endpoint, [f"bounce@{SIM}"])
                await asyncio.wait_for(subscriber.received.wait(), 15)
            [event] = await verified_events(subscriber.bodies)
            assert isinstance(event, BounceEvent)
        finally:
            await subscriber.stop()

    asyncio.run(scenario())
