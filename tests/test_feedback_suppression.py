"""Suppression lists (memory, real Redis, SESv2 over HTTP), the policy, and apply_to."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import pytest
import redis.asyncio
from aiohttp import web

from asyncmailer.errors import ConfigurationError, MessageError
from asyncmailer.feedback import (
    MemorySuppressionList,
    RedisSuppressionList,
    SESSuppressionList,
    SuppressedRecipientError,
    SuppressionEntry,
    SuppressionList,
    SuppressionReason,
    SuppressionUnavailableError,
    apply_to,
    check_suppression,
    parse_ses_event,
)
from tests.feedback_helpers import BOUNCE_NOTIFICATION, COMPLAINT_NOTIFICATION, EVENTS, deep
from tests.redis_helpers import RedisServer, redis_server_fixture  # noqa: F401

WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def entry(email: str, reason: SuppressionReason = SuppressionReason.BOUNCE) -> SuppressionEntry:
    return SuppressionEntry(email=email, reason=reason, since=WHEN, message_id="m-1", detail="x")


async def exercise(suppression: SuppressionList) -> None:
    """The contract every implementation keeps."""
    assert isinstance(suppression, SuppressionList)
    assert await suppression.suppressed([]) == {}
    assert await suppression.suppressed(["a@example.com"]) == {}
    await suppression.add(entry("A@Example.com"))
    await suppression.add(entry("c@example.com", SuppressionReason.COMPLAINT))
    found = await suppression.suppressed(["b@example.com", " a@EXAMPLE.com", "c@example.com"])
    assert set(found) == {" a@EXAMPLE.com", "c@example.com"}  # keyed as given
    assert found[" a@EXAMPLE.com"].email == "a@example.com"
    assert found[" a@EXAMPLE.com"].reason is SuppressionReason.BOUNCE
    assert found["c@example.com"].reason is SuppressionReason.COMPLAINT
    assert await suppression.remove("a@example.com") is True
    assert await suppression.remove("a@example.com") is False
    assert set(await suppression.suppressed(["a@example.com", "c@example.com"])) == {
        "c@example.com"
    }


async def test_memory_list() -> None:
    suppression = MemorySuppressionList()
    await exercise(suppression)
    assert len(suppression) == 1
    found = await suppression.suppressed(["c@example.com"])
    assert found["c@example.com"].since == WHEN and found["c@example.com"].message_id == "m-1"


async def test_policy_fail_and_drop() -> None:
    suppression = MemorySuppressionList([entry("bad@example.com")])
    recipients = ["ok@example.com", "BAD@example.com", "fine@example.com"]
    check = await check_suppression(suppression, ["ok@example.com"], policy="fail")
    assert check.allowed == ("ok@example.com",) and check.suppressed == {}
    with pytest.raises(SuppressedRecipientError) as info:
        await check_suppression(suppression, recipients, policy="fail")
    assert isinstance(info.value, MessageError)
    assert list(info.value.suppressed) == ["BAD@example.com"]
    assert info.value.field == "envelope.to"
    check = await check_suppression(suppression, recipients, policy="drop")
    assert check.allowed == ("ok@example.com", "fine@example.com")
    assert list(check.suppressed) == ["BAD@example.com"]
    with pytest.raises(SuppressedRecipientError, match="1 recipient"):
        await check_suppression(suppression, ["bad@example.com"], policy="drop")
    with pytest.raises(ConfigurationError):
        await check_suppression(suppression, recipients, policy="ignore")  # type: ignore[arg-type]


async def test_apply_to_adds_permanent_bounces_and_complaints() -> None:
    suppression = MemorySuppressionList()
    callback = apply_to(suppression)
    await callback(parse_ses_event(BOUNCE_NOTIFICATION))
    await callback(parse_ses_event(COMPLAINT_NOTIFICATION))
    transient = deep(EVENTS["Bounce"])
    transient["bounce"]["bounceType"] = "Transient"
    transient["bounce"]["bouncedRecipients"][0]["emailAddress"] = "busy@example.com"
    await callback(parse_ses_event(transient))
    await callback(parse_ses_event(EVENTS["Delivery"]))
    found = await suppression.suppressed(
        ["jane@example.com", "richard@example.com", "busy@example.com", "recipient@example.com"]
    )
    assert set(found) == {"jane@example.com", "richard@example.com"}
    bounce = found["jane@example.com"]
    assert bounce.reason is SuppressionReason.BOUNCE
    assert bounce.since == datetime(2016, 1, 27, 14, 59, 38, 237000, tzinfo=timezone.utc)
    assert bounce.feedback_id is not None and bounce.message_id is not None
    assert bounce.detail is not None and "550 5.1.1" in bounce.detail
    assert found["richard@example.com"].reason is SuppressionReason.COMPLAINT
    assert found["richard@example.com"].detail == "abuse"
    # undetermined bounces only when asked
    undetermined = deep(transient)
    undetermined["bounce"]["bounceType"] = "Undetermined"
    await apply_to(suppression, undetermined=True)(parse_ses_event(undetermined))
    assert "busy@example.com" in await suppression.suppressed(["busy@example.com"])


# ----------------------------------------------------------------------------- Redis


async def test_redis_list(redis_server: RedisServer) -> None:
    async with RedisSuppressionList(redis_server.url, key="t:suppression") as suppression:
        await exercise(suppression)
        assert await suppression.count() == 1
    # shared: another client (another process or host) sees the same entries
    async with RedisSuppressionList(redis_server.url, key="t:suppression") as other:
        found = await other.suppressed(["c@example.com"])
        assert found["c@example.com"].reason is SuppressionReason.COMPLAINT
        assert found["c@example.com"].since == WHEN


async def test_redis_lookup_is_one_round_trip(redis_server: RedisServer) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        suppression = RedisSuppressionList(client)
        for i in range(0, 50, 5):
            await suppression.add(entry(f"user{i}@example.com"))
        before = (await client.info("stats"))["total_commands_processed"]
        found = await suppression.suppressed([f"user{i}@example.com" for i in range(50)])
        after = (await client.info("stats"))["total_commands_processed"]
        assert len(found) == 10
        assert after - before == 2  # our HMGET, and the first INFO
        await suppression.aclose()  # a given client stays open
        assert await client.ping()
    finally:
        await client.aclose()


async def test_redis_failure_is_typed(redis_server: RedisServer) -> None:
    async with RedisSuppressionList(redis_server.url, timeout=0.5) as suppression:
        await suppression.add(entry("a@example.com"))
        redis_server.kill()
        with pytest.raises(SuppressionUnavailableError):
            await suppression.suppressed(["a@example.com"])
        with pytest.raises(SuppressionUnavailableError):
            await suppression.add(entry("b@example.com"))


def test_redis_list_checks_its_arguments() -> None:
    with pytest.raises(ConfigurationError):
        RedisSuppressionList("redis://127.0.0.1:1/0", key="")
    with pytest.raises(ConfigurationError):
        RedisSuppressionList(42)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ SESv2


class FakeSESv2:
    """The three SESv2 suppression operations over real HTTP (moto does not have them).

    Routes, bodies and errors follow botocore's sesv2 model (restJson1): ``PUT
    /v2/email/suppression/addresses``, ``GET``/``DELETE .../{EmailAddress}``,
    ``NotFoundException`` as ``x-amzn-ErrorType`` with status 404.
    """

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}
        self.gets: list[str] = []
        self.fail = False
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        def not_found() -> web.Response:
            return web.json_response(
                {"message": "not on the list"},
                status=404,
                headers={"x-amzn-ErrorType": "NotFoundException"},
            )

        async def put(request: web.Request) -> web.Response:
            body = json.loads(await request.read())
            self.entries[body["EmailAddress"]] = {
                "EmailAddress": body["EmailAddress"],
                "Reason": body["Reason"],
                "LastUpdateTime": 1714564800,
                "Attributes": {"MessageId": "ses-1", "FeedbackId": "fb-1"},
            }
            return web.json_response({})

        async def get(request: web.Request) -> web.Response:
            email = request.match_info["email"]
            self.gets.append(email)
            if self.fail:
                return web.json_response(
                    {"message": "slow down"},
                    status=429,
                    headers={"x-amzn-ErrorType": "TooManyRequestsException"},
                )
            if email not in self.entries:
                return not_found()
            return web.json_response({"SuppressedDestination": self.entries[email]})

        async def delete(request: web.Request) -> web.Response:
            if self.entries.pop(request.match_info["email"], None) is None:
                return not_found()
            return web.json_response({})

        app = web.Application()
        app.router.add_put("/v2/email/suppression/addresses", put)
        app.router.add_get("/v2/email/suppression/addresses/{email}", get)
        app.router.add_delete("/v2/email/suppression/addresses/{email}", delete)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def sesv2() -> AsyncIterator[FakeSESv2]:
    server = FakeSESv2()
    await server.start()
    yield server
    await server.stop()


async def test_ses_list(sesv2: FakeSESv2) -> None:
    now = [0.0]
    async with SESSuppressionList(
        region_name="us-east-1", endpoint_url=sesv2.url, clock=lambda: now[0], miss_ttl=10
    ) as suppression:
        await exercise(suppression)
        sesv2.entries["x@example.com"] = {
            "EmailAddress": "x@example.com",
            "Reason": "BOUNCE",
            "LastUpdateTime": 1714564800,
        }
        sesv2.gets.clear()
        # x was never looked up: SES answers, and the answer is cached
        found = await suppression.suppressed(["x@example.com", "x@example.com", "y@example.com"])
        assert set(found) == {"x@example.com"}
        assert found["x@example.com"].since == datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
        assert sorted(sesv2.gets) == ["x@example.com", "y@example.com"]
        await suppression.suppressed(["x@example.com", "y@example.com"])
        assert len(sesv2.gets) == 2  # both cached
        now[0] = 11.0  # the miss expired, the hit did not
        await suppression.suppressed(["x@example.com", "y@example.com"])
        assert sorted(sesv2.gets) == ["x@example.com", "y@example.com", "y@example.com"]
        sesv2.fail = True
        with pytest.raises(SuppressionUnavailableError):
            await suppression.suppressed(["z@example.com"])


async def test_ses_list_outside_async_with() -> None:
    from asyncmailer.errors import TransportStateError

    with pytest.raises(TransportStateError):
        await SESSuppressionList().suppressed(["a@example.com"])
