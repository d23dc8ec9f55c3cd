"""The framework examples on real servers (uvicorn, aiohttp) against the local SES endpoint.

Each app runs in the test's event loop on a free port, next to the endpoint; requests go
over real HTTP. Shutdown tests give the endpoint latency, queue background sends, stop
the server and check that every message had arrived by the time shutdown returned.
"""

from __future__ import annotations

import asyncio
import html
import importlib.util
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncmailer.testing import SESEndpoint

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SENDER = "Example <no-reply@example.com>"


def load(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` (examples are scripts, not a package)."""
    module_name = f"asyncmailer_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def endpoint() -> AsyncIterator[SESEndpoint]:
    async with SESEndpoint(seed=3) as served:
        yield served


def settings(module: ModuleType, endpoint: SESEndpoint, **overrides: Any) -> Any:
    env = {
        "ASYNCMAILER_FROM": SENDER,
        "ASYNCMAILER_SES_ENDPOINT_URL": endpoint.url,
        "AWS_REGION": "us-east-1",
        "ASYNCMAILER_SENDING_RATE": "",
        "ASYNCMAILER_MAX_CONNECTIONS": "20",
        "ASYNCMAILER_DRAIN_TIMEOUT": "10",
        **overrides,
    }
    return module.Settings.from_env(env)


# A server under test: (base URL, a coroutine function that shuts it down).
Server = tuple[str, Callable[[], Awaitable[None]]]


async def start_fastapi(endpoint: SESEndpoint, **env: str) -> Server:
    import uvicorn

    module = load("fastapi_app")
    app = module.create_app(settings(module, endpoint, **env))
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


async def start_aiohttp(endpoint: SESEndpoint, **env: str) -> Server:
    from aiohttp import web

    module = load("aiohttp_app")
    runner = web.AppRunner(module.create_app(settings(module, endpoint, **env)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}", runner.cleanup


STARTERS = {"fastapi": start_fastapi, "aiohttp": start_aiohttp}


@pytest.fixture(params=sorted(STARTERS))
def start(request: pytest.FixtureRequest) -> Callable[..., Awaitable[Server]]:
    return STARTERS[request.param]


async def test_concurrent_requests_each_send_one_message(
    endpoint: SESEndpoint, start: Callable[..., Awaitable[Server]]
) -> None:
    url, stop = await start(endpoint)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            responses = await asyncio.gather(
                *(
                    client.post("/welcome", json={"to": f"user{i}@example.org", "name": f"U{i}"})
                    for i in range(25)
                )
            )
    finally:
        await stop()
    assert [r.status_code for r in responses] == [200] * 25
    stored = {m.message_id: m for m in endpoint.messages()}
    assert len(stored) == 25
    for i, response in enumerate(responses):
        body = response.json()
        record = stored[body["ses_id"]]
        assert body["message_id"] == f"<{body['ses_id']}@email.amazonses.com>"
        assert record.destinations == (f"user{i}@example.org",)
        assert record.source == "no-reply@example.com"
        assert record.email_message()["Subject"] == f"Welcome, U{i}!"
    # One transport for the whole app: one client, connections reused across requests.
    assert endpoint.stats().connections_opened <= 20


async def test_shutdown_drains_background_sends(
    endpoint: SESEndpoint, start: Callable[..., Awaitable[Server]]
) -> None:
    endpoint.configure(latency=0.5)
    url, stop = await start(endpoint)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        responses = await asyncio.gather(
            *(
                client.post("/welcome/later", json={"to": f"bg{i}@example.org", "name": "B"})
                for i in range(12)
            )
        )
    assert [r.status_code for r in responses] == [202] * 12
    # The answers did not wait for SES: mail is still on its way when shutdown starts.
    stats = endpoint.stats()
    assert stats.in_flight + (12 - stats.messages_accepted) > 0
    await stop()
    assert sorted(d for m in endpoint.messages() for d in m.destinations) == sorted(
        f"bg{i}@example.org" for i in range(12)
    )
    assert endpoint.stats().in_flight == 0


async def test_background_failures_are_logged_and_foreground_ones_answered(
    endpoint: SESEndpoint,
    start: Callable[..., Awaitable[Server]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint.configure(verified_identities={"example.com"}, sandbox=True)
    url, stop = await start(endpoint)
    with caplog.at_level(logging.INFO, logger="examples.mail"):
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                later = await client.post(
                    "/welcome/later", json={"to": "eve@elsewhere.example", "name": "Eve"}
                )
                now = await client.post(
                    "/welcome", json={"to": "eve@elsewhere.example", "name": "Eve"}
                )
                ok = await client.post("/welcome", json={"to": "ada@example.com", "name": "A"})
                bad = await client.post("/welcome", json={"to": "not an address", "name": "X"})
        finally:
            await stop()
    assert later.status_code == 202
    assert now.status_code == 502
    assert now.json()["error"] == "IdentityNotVerifiedError"
    assert ok.status_code == 200
    assert bad.status_code == 422
    assert bad.json()["error"] == "AddressError"
    [failure] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert failure.getMessage() == "background email to eve@elsewhere.example failed"
    assert failure.exc_info is not None
    assert type(failure.exc_info[1]).__name__ == "IdentityNotVerifiedError"
    assert any(r.getMessage() == "mail transport closed" for r in caplog.records)
    assert [m.destinations for m in endpoint.messages()] == [("ada@example.com",)]


def test_settings_come_from_the_environment() -> None:
    for name in ("fastapi_app", "aiohttp_app"):
        module = load(name)
        config = module.Settings.from_env(
            {
                "ASYNCMAILER_SENDING_RATE": "12.5",
                "ASYNCMAILER_SES_API": "v1",
                "ASYNCMAILER_SES_ENDPOINT_URL": "http://127.0.0.1:1",
                "AWS_REGION": "eu-west-1",
            }
        )
        assert (config.sending_rate, config.api, config.region) == (12.5, "v1", "eu-west-1")
        assert config.endpoint_url == "http://127.0.0.1:1"
        assert module.Settings.from_env({}).sending_rate == "auto"
        with pytest.raises(ValueError, match="v1 or v2"):
            module.Settings.from_env({"ASYNCMAILER_SES_API": "v3"})


INJECTION = '<a href="https://evil.example/">verify your account</a><script>x()</script>'


async def test_the_name_is_escaped_in_the_html_body(
    endpoint: SESEndpoint, start: Callable[..., Awaitable[Server]]
) -> None:
    url, stop = await start(endpoint)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            response = await client.post(
                "/welcome", json={"to": "ada@example.org", "name": INJECTION}
            )
    finally:
        await stop()
    assert response.status_code == 200
    message = endpoint.messages()[0].email_message()
    body = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert body.startswith(f"<p>Hello {html.escape(INJECTION)},</p>")
    assert "<a " not in body and "<script" not in body
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert text.startswith(f"Hello {INJECTION},")  # the text body is not HTML


# What a client can put in "name": markup, entities, quotes, any Unicode.
names = st.text(
    st.sampled_from(list("<>&\"'/= ")) | st.characters(codec="utf-8", exclude_categories=["Cs"]),
    max_size=40,
)


@given(names)
def test_every_name_is_text_in_the_example_html(name: str) -> None:
    prefix, suffix = "<p>Hello ", ",</p><p>thanks for signing up.</p>"
    fastapi_app, aiohttp_app = load("fastapi_app"), load("aiohttp_app")
    messages = [
        fastapi_app.welcome_message(
            fastapi_app.Settings(), fastapi_app.Welcome(to="a@b.c", name=name)
        ),
        aiohttp_app.welcome_message(aiohttp_app.Settings(), {"to": "a@b.c", "name": name}),
    ]
    for message in messages:
        assert message.html.startswith(prefix) and message.html.endswith(suffix)
        inner = message.html[len(prefix) : -len(suffix)]
        assert not set(inner) & set("<>\"'")
        assert html.unescape(inner) == name
