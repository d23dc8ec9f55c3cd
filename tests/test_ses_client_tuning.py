"""The per-request savings applied to clients SESTransport creates (``_ses_client``).

Each saving must change nothing a caller can see: the same handlers called in the same
order with the same results, the same endpoints and signing context. Compared here with
stock aiobotocore clients, against the local SES endpoint and moto's real server.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.hooks import AioHierarchicalEmitter
from aiobotocore.session import get_session

from asyncmailer import SESTransport
from asyncmailer.testing import SESEndpoint
from asyncmailer.transports._ses_client import cache_endpoints, use_fast_emitter

SENDER = "shop@example.com"


def _emitter(client: Any) -> Any:
    events = client.meta.events
    return getattr(events, "_emitter", events)


def _client(service: str = "ses", **kwargs: Any) -> Any:
    kwargs.setdefault("region_name", "eu-west-1")
    kwargs.setdefault("endpoint_url", "http://127.0.0.1:9")
    return get_session().create_client(
        service, aws_access_key_id="a", aws_secret_access_key="b", **kwargs
    )


# ------------------------------------------------------------------------ fast emitter


async def _emit_everything(client: Any) -> list[Any]:
    """Sync and async handlers, a None and a value, stop on response: what emit returns."""
    calls: list[str] = []

    def sync_none(**_: Any) -> None:
        calls.append("sync_none")

    def sync_value(**_: Any) -> str:
        calls.append("sync_value")
        return "sync"

    async def async_value(**kwargs: Any) -> str:
        calls.append(f"async_value:{kwargs['event_name']}")
        return "async"

    events = client.meta.events
    events.register("my-event.ses.Op", sync_none)
    events.register("my-event.ses", async_value)
    events.register("my-event", sync_value)
    everything = await events.emit("my-event.ses.Op", extra=1)
    first = await events.emit_until_response("my-event.ses.Op")
    nothing = await events.emit("no-listener.ses.Op")
    return [
        [(handler.__name__, response) for handler, response in everything],
        (first[0].__name__, first[1]),
        nothing,
        calls,
    ]


async def test_fast_emitter_calls_the_same_handlers_with_the_same_results() -> None:
    async with _client() as stock, _client() as fast:
        assert use_fast_emitter(fast)
        assert type(_emitter(stock)) is AioHierarchicalEmitter
        assert type(_emitter(fast)) is not AioHierarchicalEmitter
        expected = await _emit_everything(stock)
        assert await _emit_everything(fast) == expected
    assert expected[0] == [("sync_none", None), ("async_value", "async"), ("sync_value", "sync")]
    assert expected[1] == ("async_value", "async")


async def test_fast_emitter_keeps_botocores_debug_log(caplog: pytest.LogCaptureFixture) -> None:
    async with _client() as fast:
        use_fast_emitter(fast)
        fast.meta.events.register("my-event.ses", lambda **_: None)
        with caplog.at_level(logging.DEBUG, logger="botocore.hooks"):
            await fast.meta.events.emit("my-event.ses")
    assert any("Event my-event.ses: calling handler" in r.getMessage() for r in caplog.records)


async def test_fast_emitter_is_not_put_on_an_emitter_it_does_not_know() -> None:
    class Custom(AioHierarchicalEmitter):
        pass

    async with _client() as client:
        _emitter(client).__class__ = Custom
        assert not use_fast_emitter(client)
        assert type(_emitter(client)) is Custom


# ------------------------------------------------------------------------ endpoint cache


async def _resolve(client: Any, operation: str, call_args: dict[str, Any]) -> Any:
    """What the client's request path gets: URL, headers, properties, signing context."""
    model = client.meta.service_model.operation_model(operation)
    context: dict[str, Any] = {}
    url, headers, properties = await client._resolve_endpoint_ruleset(model, call_args, context)
    return url, headers, properties, context


async def _rule_set(client: Any, operation: str, call_args: dict[str, Any]) -> Any:
    """The rule set's own answer (before an auth scheme is chosen)."""
    model = client.meta.service_model.operation_model(operation)
    return await client._ruleset_resolver.construct_endpoint(model, call_args, {})


@pytest.mark.parametrize(
    ("service", "operation", "call_args", "kwargs"),
    [
        ("ses", "SendRawEmail", {}, {}),
        ("ses", "SendRawEmail", {}, {"endpoint_url": None}),
        ("ses", "GetSendQuota", {}, {"endpoint_url": None, "region_name": "us-east-1"}),
        ("sesv2", "SendEmail", {}, {"endpoint_url": None}),
    ],
)
async def test_cached_endpoints_equal_botocores(
    service: str, operation: str, call_args: dict[str, Any], kwargs: dict[str, Any]
) -> None:
    async with _client(service, **kwargs) as stock, _client(service, **kwargs) as cached:
        assert cache_endpoints(cached)
        expected = await _resolve(stock, operation, call_args)
        for _ in range(3):  # the first fills the cache, the others read it
            assert await _resolve(cached, operation, call_args) == expected


async def test_endpoint_cache_keys_on_the_requests_context_parameters() -> None:
    # SESv2's EndpointId (a multi-region endpoint) changes the URL: never one for another.
    # (Sending to one needs SigV4a, which botocore signs only with awscrt: compared here at
    # the rule set.)
    async with (
        _client("sesv2", endpoint_url=None) as stock,
        _client("sesv2", endpoint_url=None) as cached,
    ):
        cache_endpoints(cached)
        plain = await _rule_set(cached, "SendEmail", {})
        multi = await _rule_set(cached, "SendEmail", {"EndpointId": "abc123.xyz"})
        again = await _rule_set(cached, "SendEmail", {})
        assert multi == await _rule_set(stock, "SendEmail", {"EndpointId": "abc123.xyz"})
        assert plain == await _rule_set(stock, "SendEmail", {})
    assert plain.url != multi.url
    assert "abc123.xyz" in multi.url
    assert again == plain


async def test_endpoint_headers_are_the_callers_own() -> None:
    async with _client() as cached:
        cache_endpoints(cached)
        first = await _resolve(cached, "SendRawEmail", {})
        first[1]["X-Mine"] = "1"
        second = await _resolve(cached, "SendRawEmail", {})
    assert "X-Mine" not in second[1]


async def test_no_endpoint_cache_when_a_hook_customizes_resolution() -> None:
    def pin_region(builtins: dict[str, Any], **_: Any) -> None:
        builtins["AWS::Region"] = "us-west-2"

    async with _client(endpoint_url=None) as client:
        client.meta.events.register("before-endpoint-resolution.ses", pin_region)
        assert not cache_endpoints(client)
        url = (await _resolve(client, "SendRawEmail", {}))[0]
    assert "us-west-2" in url


# ------------------------------------------------------------------------ in the transport


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_transport_client_is_tuned_and_still_delivers(api: str) -> None:
    async with (
        SESEndpoint() as endpoint,
        SESTransport(endpoint_url=endpoint.url, api=api) as ses,  # type: ignore[arg-type]
    ):
        assert type(_emitter(ses.client)) is not AioHierarchicalEmitter
        for n in range(3):
            result = await ses.send_mail(from_=SENDER, to=f"r{n}@example.org", text=f"n{n}")
            assert result.response
        assert len(endpoint.messages()) == 3


async def test_a_client_passed_in_is_not_tuned() -> None:
    config = AioConfig(retries={"mode": "standard", "total_max_attempts": 1})
    async with (
        SESEndpoint() as endpoint,
        _client(endpoint_url=endpoint.url, config=config) as client,
    ):
        resolver = client._ruleset_resolver
        async with SESTransport(client) as ses:
            await ses.send_mail(from_=SENDER, to="a@example.org", text="x")
        assert type(_emitter(client)) is AioHierarchicalEmitter
        assert "construct_endpoint" not in vars(resolver)
