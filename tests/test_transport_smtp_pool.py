"""SMTPTransport's pool against a server that caps concurrent sessions, as Postfix does.

The server (tests/smtpd_helpers.py) answers ``421 4.7.0 Error: too many connections`` at
connect beyond ``max_sessions`` and counts every TCP session (refused ones included) and
every Message-ID it accepted. The pool must shrink to what the server accepts instead of
failing sends, never hold more than ``max_connections`` sessions (a closing session
counts until its socket is closed, QUIT included), and grow back when the cap is lifted.
Every test runs without retries: a send that needed one would fail it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from asyncmailer.errors import ServiceUnavailableError
from asyncmailer.message import Message
from asyncmailer.options import SMTPPool
from asyncmailer.result import SendResult
from asyncmailer.retry import RetryPolicy
from asyncmailer.transports.smtp import SMTPTransport
from tests.smtpd_helpers import RecordingHandler, SMTPServer

NO_RETRY = RetryPolicy(max_attempts=1)


def msg(n: int) -> Message:
    return Message(
        from_="shop@example.com", to="ada@example.org", subject=f"Order {n}", text=f"order {n}"
    )


def smtp_for(server: SMTPServer, **options: Any) -> SMTPTransport:
    options.setdefault("local_hostname", "localhost")
    options.setdefault("retry", NO_RETRY)
    options.setdefault("timeout", 5.0)
    pool = {"connection_probe_interval": 0.05}
    for name in ("connection_probe_interval", "max_messages_per_connection", "idle_timeout"):
        if name in options:
            pool[name] = options.pop(name)
    return SMTPTransport(hostname=server.host, port=server.port, pool=SMTPPool(**pool), **options)


def failures(outcomes: list[Any]) -> list[BaseException]:
    return [o for o in outcomes if isinstance(o, BaseException)]


def assert_each_delivered_once(server: SMTPServer, outcomes: list[Any], count: int) -> None:
    assert failures(outcomes) == []
    sent = {o.message_id for o in outcomes if isinstance(o, SendResult)}
    assert len(sent) == count
    delivered = server.delivered()
    assert set(delivered) == sent
    assert set(delivered.values()) == {1}


# ------------------------------------------------------------- the server's cap


async def test_400_concurrent_sends_through_a_server_capped_at_3() -> None:
    """The measured Postfix case: cap 3, max_connections=8, 400 sends at once."""
    async with SMTPServer(max_sessions=3) as server:
        async with smtp_for(server, max_connections=8) as smtp:
            outcomes = await asyncio.gather(
                *(smtp.send_mail(msg(n)) for n in range(400)), return_exceptions=True
            )
            assert smtp.connection_limit == 3
            assert smtp.connections_refused >= 1
        assert_each_delivered_once(server, outcomes, 400)
        assert server.refused >= 1  # the cap was hit, and absorbed
        assert server.max_open <= 3 + 1  # the sessions it accepts, plus one probe at most


async def test_send_many_through_a_capped_server() -> None:
    async with SMTPServer(max_sessions=3) as server:
        async with smtp_for(server, max_connections=8) as smtp:
            outcomes = [o async for o in smtp.send_many(msg(n) for n in range(400))]
        assert_each_delivered_once(server, outcomes, 400)
        assert server.max_open <= 4


async def test_pool_grows_back_when_the_cap_is_lifted() -> None:
    handler = RecordingHandler(data_delay=0.005)
    async with SMTPServer(handler, max_sessions=2) as server:
        async with smtp_for(server, max_connections=6, connection_probe_interval=0.02) as smtp:
            first = await asyncio.gather(
                *(smtp.send_mail(msg(n)) for n in range(40)), return_exceptions=True
            )
            assert smtp.connection_limit == 2
            assert server.max_open <= 3
            server.max_sessions = None
            server.max_open = 0
            second = await asyncio.gather(
                *(smtp.send_mail(msg(n)) for n in range(40, 400)), return_exceptions=True
            )
            assert smtp.connection_limit == 6
            assert smtp.connections_open == 6
        assert_each_delivered_once(server, first + second, 400)
        assert server.max_open == 6  # grown back to max_connections, never beyond


async def test_refusal_with_nothing_open_is_retry_safe() -> None:
    """Alone, a refused session fails the send (retry-safe): nothing can be waited for."""
    async with SMTPServer(max_sessions=0) as server:
        async with smtp_for(server, max_connections=5) as smtp:
            outcomes = await asyncio.gather(
                *(smtp.send_mail(msg(n)) for n in range(5)), return_exceptions=True
            )
        errors = failures(outcomes)
        assert len(errors) == 5
        assert len({id(e) for e in errors}) == 5
        for error in errors:
            assert isinstance(error, ServiceUnavailableError)
            assert error.retry_safe
            assert error.code == 421
            assert "too many connections" in str(error)
        # one connection attempt answered all the sends waiting for it
        assert server.refused == 1
        assert server.messages == []


async def test_cancelled_waiting_sends_leak_no_slot() -> None:
    handler = RecordingHandler(data_delay=0.01)
    async with SMTPServer(handler, max_sessions=2) as server:
        # Retries on: a cancelled send's session may still count at the server for a moment,
        # so a new session can be refused while none of ours is open (retry-safe).
        retry = RetryPolicy(max_attempts=5, initial_backoff=0.01)
        async with smtp_for(
            server, max_connections=6, connection_probe_interval=0.005, retry=retry
        ) as smtp:
            tasks = [asyncio.ensure_future(smtp.send_mail(msg(n))) for n in range(30)]
            await asyncio.sleep(0.03)
            for task in tasks[::2]:
                task.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            done = [o for o in outcomes if isinstance(o, SendResult)]
            odd = [o for o in outcomes if not isinstance(o, (SendResult, asyncio.CancelledError))]
            assert not odd, [(type(o).__name__, str(o), repr(o.__cause__)) for o in odd]
            more = await asyncio.gather(*(smtp.send_mail(msg(100 + n)) for n in range(20)))
            assert len(more) == 20
        assert smtp._sessions == 0  # every slot given back
        assert server.open == 0
        delivered = server.delivered()
        assert set(delivered.values()) == {1}
        assert {r.message_id for r in [*done, *more]} <= set(delivered)


# ------------------------------------------------------------ max_connections


async def test_closing_sessions_count_until_their_socket_is_closed() -> None:
    """A retired session's QUIT holds its slot: never max_connections + 1 sessions."""
    handler = RecordingHandler(quit_delay=0.02)
    async with SMTPServer(handler) as server:
        async with smtp_for(server, max_connections=2, max_messages_per_connection=1) as smtp:
            outcomes = await asyncio.gather(
                *(smtp.send_mail(msg(n)) for n in range(10)), return_exceptions=True
            )
        assert_each_delivered_once(server, outcomes, 10)
        assert server.connections == 10
        assert server.max_open == 2


async def test_idle_expiry_and_reuse_keep_the_count() -> None:
    handler = RecordingHandler(quit_delay=0.02)
    async with SMTPServer(handler) as server:
        async with smtp_for(server, max_connections=3, idle_timeout=0.01) as smtp:
            for round_ in range(3):
                outcomes = await asyncio.gather(
                    *(smtp.send_mail(msg(10 * round_ + n)) for n in range(6)),
                    return_exceptions=True,
                )
                assert failures(outcomes) == []
                await asyncio.sleep(0.015)  # the idle sessions expire and QUIT slowly
        assert len(server.delivered()) == 18
        assert server.max_open <= 3


# ------------------------------------------------------------ random caps


@settings(max_examples=15, deadline=None)
@given(
    cap=st.integers(1, 8),
    max_connections=st.integers(1, 8),
    sends=st.integers(1, 40),
    per_connection=st.sampled_from([None, 1, 3, 20]),
    use_send_many=st.booleans(),
)
def test_any_cap_and_concurrency_deliver_everything_once(
    cap: int, max_connections: int, sends: int, per_connection: int | None, use_send_many: bool
) -> None:
    async def scenario() -> None:
        async with SMTPServer(max_sessions=cap) as server:
            async with smtp_for(
                server,
                max_connections=max_connections,
                max_messages_per_connection=per_connection,
                connection_probe_interval=0.005,
            ) as smtp:
                if use_send_many:
                    outcomes = [o async for o in smtp.send_many(msg(n) for n in range(sends))]
                else:
                    outcomes = list(
                        await asyncio.gather(
                            *(smtp.send_mail(msg(n)) for n in range(sends)),
                            return_exceptions=True,
                        )
                    )
            assert_each_delivered_once(server, outcomes, sends)
            assert server.max_open <= max_connections
            assert server.max_open <= cap + 1  # what it accepts, plus one attempt at most
            assert server.open == 0

    asyncio.run(scenario())
