"""LeanHTTPSession edge cases found by an independent review (real sockets only).

Each test failed before its fix: a slow TLS upload timed out while still being written;
connections the server closed at once were retried ``max_pool_connections + 1`` times and
reported "may have been accepted"; failures before anything was written were reported
ambiguous; closing the session did not stop a request that was still connecting.

Helpers (scripted asyncio servers, TLS fixtures) come from ``tests/test_ses_http.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, HTTPClientError

from asyncmailer.errors import ConfigurationError, DeliveryError, Outcome
from asyncmailer.transports._ses_errors import map_ses_error
from asyncmailer.transports._ses_http import LeanHTTPSession
from tests.test_ses_http import (
    OK,
    Peer,
    Script,
    Server,
    ca_bundle,  # noqa: F401  (fixture)
    head_lines,
    request,
    serve,
    session,
    tls_ca,  # noqa: F401  (fixture)
    tls_server_context,  # noqa: F401  (fixture)
)


@contextlib.asynccontextmanager
async def serve_small_buffers(
    script: Script, *, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Server]:
    """Like ``serve``, but accepted sockets have a small receive buffer (set on the
    listening socket, so the TCP window is small from the SYN on)."""
    server = Server(script)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    listener = await asyncio.start_server(server._handle, sock=sock, ssl=ssl_context)
    server.port = sock.getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        await asyncio.sleep(0.01)
        for task in list(server._tasks):
            task.cancel()
        await asyncio.gather(*server._tasks, return_exceptions=True)
        await listener.wait_closed()
        for _ in range(3):
            await asyncio.sleep(0)
    assert not server.errors, server.errors


def slow_reader(piece: int = 16384, pause: float = 0.01) -> Script:
    """Read the request head, then the body ``piece`` bytes at a time with a pause
    between reads (a slow uplink: the upload progresses all the time), then answer."""

    async def script(peer: Peer) -> None:
        head = await peer.reader.readuntil(b"\r\n\r\n")
        length = int(dict(head_lines(head)[1])["content-length"])
        got = 0
        while got < length:
            data = await peer.reader.read(piece)
            if not data:
                return
            got += len(data)
            await asyncio.sleep(pause)
        peer.requests.append(head)
        await peer.send(OK)

    return script


# ------------------------------------------------------------------ slow uploads
# The read timeout is inactivity: a large message on a slow link must not time out while
# it is still being written, on TLS (every real SES request) as on plain TCP.


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_read_timeout_does_not_fire_while_the_body_is_still_being_written(
    scheme: str,
    tls_server_context: ssl.SSLContext,  # noqa: F811
    ca_bundle: str,  # noqa: F811
) -> None:
    body = b"x" * (2 * 1024 * 1024)  # ~1.3 s to upload at the server's pace
    tls = tls_server_context if scheme == "https" else None
    async with (
        serve_small_buffers(slow_reader(), ssl_context=tls) as srv,
        session(
            timeout=(2.0, 0.4),
            verify=ca_bundle,
            socket_options=[(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)],
        ) as s,
    ):
        started = time.monotonic()
        resp = await s.send(request(srv.url(scheme=scheme), body))
        assert (resp.status_code, await resp.content) == (200, b"ok")
        assert time.monotonic() - started > 0.4  # the upload did outlast the read timeout


# ------------------------------------------------- servers that close at once
# A server that accepts and at once closes (a port forwarder whose backend is down, a
# load balancer with no healthy target, a server at its connection limit). When the
# server's EOF is read before the request task resumes after the connect, the new
# connection is found closed before anything is written: that is "never sent"
# (retry-safe), not "may have been accepted", and no burst of reconnections follows.


class LateResumingSession(LeanHTTPSession):
    """The request task resumes a little after its connection is open, as on a busy
    event loop (no other change: the connection, the server and the bytes are real)."""

    async def _connect(self, *args: Any) -> Any:
        conn = await super()._connect(*args)
        await asyncio.sleep(0.02)
        return conn


@pytest.mark.parametrize("limit", [1, 3])
async def test_connections_closed_before_the_request_was_written_are_not_ambiguous(
    limit: int,
) -> None:
    async def script(peer: Peer) -> None:
        peer.writer.write_eof()  # half-close at once; what the client sends is still read

    async with (
        serve(script) as srv,
        LateResumingSession(timeout=(2.0, 2.0), max_pool_connections=limit) as s,
    ):
        with pytest.raises((ConnectionClosedError, EndpointConnectionError)) as info:
            await s.send(request(srv.url()))
        assert s.connections == 0
    assert srv.accepted >= 1
    assert not any(p.received for p in srv.peers)  # not one byte of the request was sent
    mapped = map_ses_error(info.value, action="ses:SendEmail")
    assert isinstance(mapped, DeliveryError)
    assert mapped.outcome is Outcome.RETRY_SAFE, (repr(info.value), srv.accepted)
    assert srv.accepted <= 2  # and no burst of max_pool_connections + 1 connections


# ------------------------------------------------- failures before writing
# Failures the lean session knows happened before anything was written are not reported
# as "may have been accepted": a TLS handshake failure is retry-safe, and a header it
# refuses to send (a session token ending in a newline) is a configuration error.


@pytest.mark.parametrize("case", ["tls-handshake-fails", "crlf-in-session-token"])
async def test_failures_before_writing_are_not_reported_as_maybe_accepted(
    case: str,
    tls_server_context: ssl.SSLContext,  # noqa: F811
) -> None:
    from asyncmailer import SESTransport
    from asyncmailer.retry import RetryPolicy

    tls = tls_server_context if case == "tls-handshake-fails" else None
    async with serve(answering_ok(), ssl_context=tls) as srv:
        transport = SESTransport(
            # The trustme CA is not in the default bundle: the handshake fails.
            endpoint_url=srv.url(scheme="https" if tls else "http").rstrip("/"),
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="y",
            aws_session_token="token\n" if case == "crlf-in-session-token" else None,
            warm_up=False,
            api="v2",
            retry=RetryPolicy(max_attempts=1),
        )
        async with transport:
            assert isinstance(transport.client._endpoint.http_session, LeanHTTPSession)
            with pytest.raises((DeliveryError, ConfigurationError)) as info:
                await transport.send_mail(from_="shop@example.com", to="ada@example.org", text="hi")
    assert not any(p.requests for p in srv.peers)  # nothing reached the server
    if case == "crlf-in-session-token":
        # Not a delivery failure: the credentials are unusable. Nothing was sent.
        assert isinstance(info.value, ConfigurationError), info.value
        assert "X-Amz-Security-Token" in str(info.value)
    else:
        assert isinstance(info.value, DeliveryError)
        assert info.value.outcome is Outcome.RETRY_SAFE, (type(info.value).__name__, info.value)


def answering_ok() -> Script:
    async def script(peer: Peer) -> None:
        await peer.serve(OK)

    return script


# ------------------------------------------------------ closing while connecting
# Closing the session stops a request that is still connecting (nothing is written after
# the close), and a connect failing after the close leaves the count at zero.


async def test_request_still_connecting_when_the_session_closes_is_not_sent() -> None:
    async with serve(answering_ok()) as srv:
        s = session()
        async with s:
            task = asyncio.ensure_future(s.send(request(srv.url("/after-close"))))
            await asyncio.sleep(0)  # the request has its place and is connecting
            assert s.connections == 1 and not task.done()
        with pytest.raises(HTTPClientError):
            await asyncio.wait_for(task, 2)
        await asyncio.sleep(0.05)
        assert not any(p.requests for p in srv.peers)


async def test_connect_failing_after_the_session_closed_keeps_the_count_at_zero() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = session()
    async with s:
        task = asyncio.ensure_future(s.send(request(f"http://127.0.0.1:{port}/")))
        await asyncio.sleep(0)
    with pytest.raises(EndpointConnectionError):
        await asyncio.wait_for(task, 2)
    assert s.connections == 0
