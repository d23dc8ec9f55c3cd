"""The FastAPI router and the aiohttp handler, on real uvicorn and aiohttp servers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509

from asyncmailer.feedback import (
    BounceEvent,
    SESEvent,
    SNSVerificationError,
    SNSWebhookOptions,
    sns_handler,
    sns_router,
)
from tests.feedback_helpers import (
    BOUNCE_NOTIFICATION,
    TOPIC_ARN,
    FakeSNSHost,
    SigningAuthority,
    confirmation,
    notification,
    sign,
)

Server = tuple[str, Callable[[], Awaitable[None]]]


async def start_fastapi(callback: Any, options: SNSWebhookOptions) -> Server:
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()
    app.include_router(sns_router(callback, path="/hooks/sns", **options))
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, lifespan="off", ws="none"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]

    async def stop() -> None:
        server.should_exit = True
        await task

    return f"http://127.0.0.1:{port}/hooks/sns", stop


async def start_aiohttp(callback: Any, options: SNSWebhookOptions) -> Server:
    app = web.Application()
    app.router.add_post("/hooks/sns", sns_handler(callback, **options))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}/hooks/sns", runner.cleanup


STARTERS = {"fastapi": start_fastapi, "aiohttp": start_aiohttp}


@pytest.fixture(scope="module")
def authority() -> SigningAuthority:
    return SigningAuthority()


@pytest.fixture(params=sorted(STARTERS))
def start(request: pytest.FixtureRequest) -> Callable[..., Awaitable[Server]]:
    return STARTERS[request.param]


class App:
    """A running server, the events its callback got, and a client to post with."""

    def __init__(self, url: str, events: list[SESEvent], client: aiohttp.ClientSession) -> None:
        self.url = url
        self.events = events
        self.client = client

    async def post(self, body: Any, message_type: str | None = None) -> tuple[int, str]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"content-type": "text/plain; charset=UTF-8"}
        if message_type is None and isinstance(body, dict):
            message_type = body.get("Type")
        if message_type is not None:
            headers["x-amz-sns-message-type"] = message_type
        async with self.client.post(self.url, data=data, headers=headers) as response:
            return response.status, await response.text()


@pytest.fixture
async def running(
    start: Callable[..., Awaitable[Server]], authority: SigningAuthority
) -> AsyncIterator[Callable[..., Awaitable[App]]]:
    stops: list[Callable[[], Awaitable[None]]] = []
    client = aiohttp.ClientSession()

    async def run(fail: bool = False, **options: Any) -> App:
        events: list[SESEvent] = []

        async def callback(event: SESEvent) -> None:
            if fail:
                raise RuntimeError("database down")
            events.append(event)

        options.setdefault("resolver", authority.resolver)
        url, stop = await start(callback, options)
        stops.append(stop)
        return App(url, events, client)

    yield run
    for stop in stops:
        await stop()
    await client.close()


async def test_a_verified_event_reaches_the_callback(
    running: Callable[..., Awaitable[App]], authority: SigningAuthority
) -> None:
    app = await running(topic_arns=[TOPIC_ARN])
    for version in ("1", "2"):
        status, _ = await app.post(sign(notification(BOUNCE_NOTIFICATION), authority.key, version))
        assert status == 200
    assert len(app.events) == 2 and isinstance(app.events[0], BounceEvent)


async def test_answers_that_steer_sns_retries(
    running: Callable[..., Awaitable[App]], authority: SigningAuthority
) -> None:
    app = await running(topic_arns=[TOPIC_ARN])
    signed = sign(notification(BOUNCE_NOTIFICATION), authority.key)
    forged = {**signed, "Message": json.dumps({**BOUNCE_NOTIFICATION, "x": 1})}
    assert (await app.post(forged))[0] == 403
    evil_url = {**signed, "SigningCertURL": "https://sns.us-west-2.amazonaws.com.evil.com/a.pem"}
    assert (await app.post(evil_url))[0] == 403
    other_topic = sign(
        {**notification(BOUNCE_NOTIFICATION), "TopicArn": "arn:aws:sns:us-west-2:999:Other"},
        authority.key,
    )
    assert (await app.post(other_topic))[0] == 403
    assert (await app.post(b"not json", message_type="Notification"))[0] == 400
    assert (await app.post(b"{" + b" " * 300_000 + b"}", message_type="Notification"))[0] == 413
    assert (await app.post(signed, message_type="SubscriptionConfirmation"))[0] == 400
    not_ses = sign(notification({"hello": "world"}), authority.key)
    assert (await app.post(not_ses))[0] == 400
    assert app.events == []

    failing = await running(fail=True)
    assert (await failing.post(signed))[0] == 500  # SNS retries

    async def unreachable(url: str) -> x509.Certificate:
        raise SNSVerificationError("down", reason="cert_unavailable")

    no_cert = await running(resolver=unreachable)
    assert (await no_cert.post(signed))[0] == 503  # SNS retries


async def test_subscription_confirmation(
    running: Callable[..., Awaitable[App]], authority: SigningAuthority
) -> None:
    import trustme

    sns_host = FakeSNSHost(trustme.CA(), authority.cert_pem)
    await sns_host.start()
    try:
        async with sns_host.client_session() as session:
            confirm = sign(confirmation(), authority.key, "2")
            # opt-in: off by default, nothing is fetched
            app = await running(topic_arns=[TOPIC_ARN], http_session=session)
            assert await app.post(confirm) == (200, "confirmation disabled")
            # on, but the topic is not allow-listed
            app = await running(
                topic_arns=["arn:aws:sns:us-west-2:123456789012:Other"],
                confirm_subscriptions=True,
                http_session=session,
            )
            assert (await app.post(confirm))[0] == 403
            assert sns_host.requests == []
            # on, allow-listed: the SubscribeURL is visited
            app = await running(
                topic_arns=[TOPIC_ARN], confirm_subscriptions=True, http_session=session
            )
            assert await app.post(confirm) == (200, "confirmed")
            assert len(sns_host.requests) == 1
            assert sns_host.requests[0].startswith("/?Action=ConfirmSubscription")
            # a SubscribeURL off SNS is refused even when the signature is good
            bad = sign(
                {**confirmation(), "SubscribeURL": "https://evil.com/?Action=x"}, authority.key
            )
            assert (await app.post(bad))[0] == 403
            # SNS answered an error: 503, so that SNS retries
            sns_host.status = 500
            assert (await app.post(confirm))[0] == 503
            unsubscribe = sign(confirmation("UnsubscribeConfirmation"), authority.key)
            assert (await app.post(unsubscribe))[0] == 200
    finally:
        await sns_host.stop()
