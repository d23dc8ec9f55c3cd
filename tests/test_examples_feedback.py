"""The examples' SNS webhook on real servers (uvicorn, aiohttp), fed by the local endpoint.

The endpoint publishes the mailbox simulator's signed events to each app's
``/hooks/sns``; the app verifies them with the endpoint's certificate (read through its
control API, as ``ASYNCMAILER_SNS_SIMULATOR=1`` does), suppresses permanent bounces and
complaints, and refuses the next welcome to those addresses before any request to SES.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from asyncmailer.feedback import MemorySuppressionList, SuppressionReason
from asyncmailer.testing import SESEndpoint
from tests.test_examples import load, settings

SIM = "simulator.amazonses.com"
TOPIC = "arn:aws:sns:us-east-1:123456789012:asyncmailer-simulator"

# A server under test: (base URL, a coroutine function that shuts it down).
Server = tuple[str, Callable[[], Awaitable[None]]]


async def start_fastapi(
    endpoint: SESEndpoint, suppression: MemorySuppressionList, **env: str
) -> Server:
    import uvicorn

    module = load("fastapi_app")
    app = module.create_app(settings(module, endpoint, **env), suppression=suppression)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, lifespan="on", ws="none"
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

    return f"http://127.0.0.1:{port}", stop


async def start_aiohttp(
    endpoint: SESEndpoint, suppression: MemorySuppressionList, **env: str
) -> Server:
    from aiohttp import web

    module = load("aiohttp_app")
    app = module.create_app(settings(module, endpoint, **env), suppression=suppression)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}", runner.cleanup


STARTERS = {"fastapi": start_fastapi, "aiohttp": start_aiohttp}


@pytest.fixture(params=sorted(STARTERS))
def start(request: pytest.FixtureRequest) -> Callable[..., Awaitable[Server]]:
    return STARTERS[request.param]


@pytest.fixture
async def endpoint() -> AsyncIterator[SESEndpoint]:
    async with SESEndpoint(seed=5) as served:
        yield served


async def test_a_bounce_and_a_complaint_stop_the_next_welcome(
    endpoint: SESEndpoint, start: Callable[..., Awaitable[Server]]
) -> None:
    suppression = MemorySuppressionList()
    url, stop = await start(endpoint, suppression, ASYNCMAILER_SNS_SIMULATOR="1")
    endpoint.configure(sns_subscriber_url=f"{url}/hooks/sns")
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            for box in ("bounce", "complaint", "success", "suppressionlist"):
                answer = await client.post(
                    "/welcome", json={"to": f"{box}@{SIM}", "name": box.title()}
                )
                assert answer.status_code == 200, answer.text
            # Background sends go through the same webhook loop.
            later = await client.post(
                "/welcome/later", json={"to": f"Ooto <ooto@{SIM}>", "name": "O"}
            )
            assert later.status_code == 202
            deadline = asyncio.get_running_loop().time() + 15
            while len(endpoint.messages()) < 5:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)
            events = await endpoint.wait_for_events()
            assert sorted(e.kind for e in events) == [
                "Bounce",
                "Bounce",
                "Complaint",
                "Delivery",
                "Delivery",
                "Delivery",
            ]
            # Every notification was verified and accepted by the app's webhook.
            assert {e.sns_status for e in events} == {"delivered"}
            found = await suppression.suppressed(
                [f"{box}@{SIM}" for box in ("bounce", "complaint", "success", "suppressionlist")]
            )
            assert {address: entry.reason for address, entry in found.items()} == {
                f"bounce@{SIM}": SuppressionReason.BOUNCE,
                f"complaint@{SIM}": SuppressionReason.COMPLAINT,
                f"suppressionlist@{SIM}": SuppressionReason.BOUNCE,
            }
            accepted = endpoint.stats().messages_accepted
            for address in (f"bounce@{SIM}", f"Bob <COMPLAINT@{SIM}>"):
                refused = await client.post("/welcome", json={"to": address, "name": "Again"})
                assert refused.status_code == 422, refused.text
                assert refused.json()["error"] == "SuppressedRecipientError"
            again = await client.post("/welcome", json={"to": f"success@{SIM}", "name": "S"})
            assert again.status_code == 200
    finally:
        await stop()
    # The refused welcomes never reached SES; the allowed one did.
    assert endpoint.stats().messages_accepted == accepted + 1


async def test_a_forged_notification_is_refused_by_the_app(
    endpoint: SESEndpoint, start: Callable[..., Awaitable[Server]]
) -> None:
    suppression = MemorySuppressionList()
    url, stop = await start(endpoint, suppression, ASYNCMAILER_SNS_SIMULATOR="1")
    endpoint.configure(sns_subscriber_url=f"{url}/hooks/sns")
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await client.post("/welcome", json={"to": f"bounce@{SIM}", "name": "B"})
            [event] = await endpoint.wait_for_events()
            assert event.envelope is not None
            await suppression.remove(f"bounce@{SIM}")
            forged: dict[str, Any] = dict(event.envelope)
            forged["Message"] = forged["Message"].replace(f"bounce@{SIM}", "ceo@example.com")
            answer = await client.post("/hooks/sns", json=forged)
            assert answer.status_code == 403
            assert answer.text == "refused: signature"
    finally:
        await stop()
    assert await suppression.suppressed(["ceo@example.com"]) == {}


async def test_the_topic_allow_list_applies(
    endpoint: SESEndpoint, start: Callable[..., Awaitable[Server]]
) -> None:
    suppression = MemorySuppressionList()
    other = "arn:aws:sns:us-east-1:123456789012:another-topic"
    url, stop = await start(
        endpoint,
        suppression,
        ASYNCMAILER_SNS_SIMULATOR="1",
        ASYNCMAILER_SNS_TOPIC_ARNS=f" {other} ",
    )
    endpoint.configure(sns_subscriber_url=f"{url}/hooks/sns")
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await client.post("/welcome", json={"to": f"bounce@{SIM}", "name": "B"})
            [refused] = await endpoint.wait_for_events()
            endpoint.configure(sns_topic_arn=other)
            await client.post("/welcome", json={"to": f"bounce+2@{SIM}", "name": "B"})
            [_, accepted] = await endpoint.wait_for_events()
    finally:
        await stop()
    # 403 from a topic outside the list: SNS does not retry a 4xx, nor does the endpoint.
    assert refused.sns_status == "failed"
    assert refused.error == "the subscriber answered HTTP 403"
    assert accepted.sns_status == "delivered"
    assert list(await suppression.suppressed([f"bounce@{SIM}", f"bounce+2@{SIM}"])) == [
        f"bounce+2@{SIM}"
    ]


def test_webhook_settings_come_from_the_environment() -> None:
    for name in ("fastapi_app", "aiohttp_app"):
        module = load(name)
        config = module.Settings.from_env(
            {
                "ASYNCMAILER_SNS_TOPIC_ARNS": f"{TOPIC}, arn:aws:sns:eu-west-1:1:x,",
                "ASYNCMAILER_SNS_SIMULATOR": "1",
                "ASYNCMAILER_SES_ENDPOINT_URL": "http://127.0.0.1:1",
            }
        )
        assert config.sns_topic_arns == (TOPIC, "arn:aws:sns:eu-west-1:1:x")
        assert config.sns_simulator and config.sns_resolver() is not None
        plain = module.Settings.from_env({})
        assert plain.sns_topic_arns == () and not plain.sns_simulator
        assert plain.sns_resolver() is None  # AWS's certificates, fetched and checked
        with pytest.raises(ValueError, match="ASYNCMAILER_SES_ENDPOINT_URL"):
            module.Settings.from_env({"ASYNCMAILER_SNS_SIMULATOR": "1"}).sns_resolver()
