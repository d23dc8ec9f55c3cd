"""LeanHTTPSession (asyncmailer.transports._ses_http) against real servers.

Every test talks to a real socket: scripted raw TCP servers (``asyncio.start_server`` on
127.0.0.1, port 0) that record the bytes they read and the connections they accept, TLS
servers with certificates from ``trustme``, and moto's real HTTP server for aiobotocore
clients. Nothing of the network is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import socket
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiobotocore.config import AioConfig
from aiobotocore.httpsession import AIOHTTPSession
from aiobotocore.session import get_session
from botocore.auth import _host_from_url
from botocore.awsrequest import AWSPreparedRequest, AWSRequest
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
    SSLError,
)

from asyncmailer import SESTransport
from asyncmailer.errors import Outcome, ServiceUnavailableError
from asyncmailer.retry import RetryPolicy
from asyncmailer.transports._ses_client import ON_CONNECTED
from asyncmailer.transports._ses_http import (
    MAX_HEAD,
    ConnectFailedError,
    LeanHTTPSession,
    _target,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
#: Connect and read timeouts of most sessions here: short, so a hang fails fast.
TIMEOUT = (2.0, 2.0)


# --------------------------------------------------------------------------- servers


class Peer:
    """The server side of one accepted connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        #: Every byte read from the client.
        self.received = bytearray()
        #: Every complete request read (head and body).
        self.requests: list[bytes] = []
        #: Set when the connection has ended (the client closed or reset it, or we did).
        self.closed = asyncio.Event()

    async def request(self) -> bytes | None:
        """Read one request (head + Content-Length body); None when the client closed."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            self.received += exc.partial
            return None
        except ConnectionError:
            return None
        self.received += head
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length) if length else b""
        self.received += body
        self.requests.append(head + body)
        return head + body

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def drip(self, data: bytes, delay: float = 0.0) -> None:
        """Write ``data`` one byte per write, ``delay`` seconds apart (at least one turn)."""
        for i in range(len(data)):
            self.writer.write(data[i : i + 1])
            await self.writer.drain()
            await asyncio.sleep(delay)
            if not delay:
                await asyncio.sleep(0)

    async def serve(self, *answers: bytes) -> None:
        """Answer each request in turn with the next answer (the last one repeats)."""
        index = 0
        while await self.request() is not None:
            await self.send(answers[min(index, len(answers) - 1)])
            index += 1

    async def until_client_closes(self) -> None:
        try:
            while data := await self.reader.read(65536):
                self.received += data
        except ConnectionError:
            pass


Script = Callable[[Peer], Awaitable[None]]


class Server:
    """A scripted TCP server: ``script(peer)`` runs for each accepted connection."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.peers: list[Peer] = []
        self.host = "127.0.0.1"
        self.port = 0
        #: Connections open right now, and the most ever open at once (server side).
        self.open = 0
        self.max_open = 0
        self.errors: list[BaseException] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def accepted(self) -> int:
        return len(self.peers)

    def url(self, path: str = "/", scheme: str = "http") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = Peer(reader, writer)
        self.peers.append(peer)
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            await self.script(peer)
            await peer.until_client_closes()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as exc:  # pragma: no cover - surfaced by the fixture
            self.errors.append(exc)
        finally:
            self.open -= 1
            peer.closed.set()
            writer.close()
            # Bounded: a TLS stream whose peer aborted can wait out its 30 s shutdown.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), 2)


@contextlib.asynccontextmanager
async def serve(
    script: Script, *, ssl_context: ssl.SSLContext | None = None, host: str = "127.0.0.1"
) -> AsyncIterator[Server]:
    server = Server(script)
    server.host = host
    listener = await asyncio.start_server(server._handle, host, 0, ssl=ssl_context)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        await asyncio.sleep(0.01)  # let connections closed by the client reach the server
        for task in list(server._tasks):
            task.cancel()
        await asyncio.gather(*server._tasks, return_exceptions=True)
        await listener.wait_closed()
        for _ in range(3):  # closed transports finish closing in the next loop turns
            await asyncio.sleep(0)
    assert not server.errors, server.errors


def answering(*answers: bytes) -> Script:
    async def script(peer: Peer) -> None:
        await peer.serve(*answers)

    return script


def request(
    url: str,
    body: bytes | str | None = b"hello",
    *,
    method: str = "POST",
    headers: dict[str, Any] | None = None,
    stream_output: bool = False,
) -> AWSPreparedRequest:
    return AWSRequest(
        method=method, url=url, headers=headers or {}, data=body, stream_output=stream_output
    ).prepare()


def session(**kwargs: Any) -> LeanHTTPSession:
    kwargs.setdefault("timeout", TIMEOUT)
    return LeanHTTPSession(**kwargs)


def head_lines(raw: bytes) -> tuple[bytes, list[tuple[str, str]], bytes]:
    """(request line, [(lowercased name, value)], body) of a raw request."""
    head, _, body = raw.partition(b"\r\n\r\n")
    first, *rest = head.split(b"\r\n")
    pairs = []
    for line in rest:
        name, _, value = line.partition(b":")
        pairs.append((name.decode().lower(), value.strip().decode()))
    return first, pairs, body


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- 1. wire format


async def test_request_bytes_on_the_wire() -> None:
    async with serve(answering(OK)) as srv, session() as s:
        url = srv.url("/v2/email/outbound-emails?a=1&b=%2F")
        body = b'{"FromEmailAddress": "shop@example.com", "x": "\xc3\xa9"}'
        resp = await s.send(
            request(
                url,
                body,
                headers={
                    "Content-Type": "application/json",
                    "X-Amz-Date": b"20240101T000000Z",  # bytes values are sent as text
                    "Accept-Encoding": "gzip",  # replaced: answers are never compressed
                    "Connection": "close",  # dropped: the pool decides
                },
            )
        )
        assert resp.status_code == 200
        assert await resp.content == b"ok"
    (raw,) = srv.peers[0].requests
    first, pairs, sent = head_lines(raw)
    assert first == b"POST /v2/email/outbound-emails?a=1&b=%2F HTTP/1.1"
    headers = dict(pairs)
    assert len(headers) == len(pairs), f"a header was sent twice: {pairs}"
    assert headers["host"] == _host_from_url(url) == f"127.0.0.1:{srv.port}"
    assert headers["content-length"] == str(len(body))
    assert headers["accept-encoding"] == "identity"
    assert headers["x-amz-date"] == "20240101T000000Z"
    assert headers["content-type"] == "application/json"
    assert "connection" not in headers
    assert sent == body
    assert srv.peers[0].received == raw  # nothing else was written


async def test_get_without_body_has_no_content_length_and_str_bodies_are_utf8() -> None:
    async with serve(answering(OK)) as srv, session() as s:
        await s.send(request(srv.url("/quota"), None, method="GET"))
        await s.send(request(srv.url("/"), "é=1", method="PUT"))
    get, put = srv.peers[0].requests
    first, pairs, body = head_lines(get)
    assert first == b"GET /quota HTTP/1.1"
    assert "content-length" not in dict(pairs) and body == b""
    first, pairs, body = head_lines(put)
    assert first == b"PUT / HTTP/1.1"
    assert dict(pairs)["content-length"] == "4" and body == "é=1".encode()


async def test_body_larger_than_the_join_limit_arrives_whole() -> None:
    body = bytes(range(256)) * 1200  # 300 KB: written after the head, not joined to it
    async with serve(answering(OK)) as srv, session() as s:
        resp = await s.send(request(srv.url(), body))
        assert await resp.content == b"ok"
    _, pairs, sent = head_lines(srv.peers[0].requests[0])
    assert dict(pairs)["content-length"] == str(len(body))
    assert sent == body


async def test_ipv6_literal_host() -> None:
    async with serve(answering(OK), host="::1") as srv, session() as s:
        url = srv.url("/v6")
        resp = await s.send(request(url))
        assert await resp.content == b"ok"
    first, pairs, _ = head_lines(srv.peers[0].requests[0])
    assert first == b"POST /v6 HTTP/1.1"
    assert dict(pairs)["host"] == _host_from_url(url) == f"[::1]:{srv.port}"


async def test_host_name_is_resolved_and_sent_as_host() -> None:
    async with serve(answering(OK)) as srv, session() as s:
        url = f"http://localhost:{srv.port}/"
        resp = await s.send(request(url))
        assert await resp.content == b"ok"
    assert dict(head_lines(srv.peers[0].requests[0])[1])["host"] == f"localhost:{srv.port}"


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://email.us-east-1.amazonaws.com/", "email.us-east-1.amazonaws.com"),
        ("https://email.us-east-1.amazonaws.com:443/", "email.us-east-1.amazonaws.com"),
        ("http://example.com:80/x", "example.com"),
        ("http://example.com:8080/x", "example.com:8080"),
        ("https://example.com:80/", "example.com:80"),
        ("http://[::1]:8080/", "[::1]:8080"),
    ],
)
def test_host_header_is_what_botocore_signs(url: str, host: str) -> None:
    # Default ports cannot be listened on here: the head is built without the network.
    target = _target(url)
    assert target is not None
    head = LeanHTTPSession._head(request(url), target, b"hello")
    assert head is not None
    (line,) = [x for x in head.split(b"\r\n") if x.lower().startswith(b"host:")]
    assert line == f"Host: {host}".encode()
    assert host == _host_from_url(url)


# --------------------------------------------------------------------------- 2. answers

CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNKED = (
    CHUNKED_HEAD + b"5;name=value\r\nhello\r\n"
    b'6 ; x="y"\r\n world\r\n'
    b"A\r\n, chunked!\r\n"
    b"0;last\r\nX-Trailer: t\r\nX-Checksum: abc\r\n\r\n"
)


@pytest.mark.parametrize(
    ("answer", "status", "body", "reused"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, b"hello", True, id="length"
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 200, b"", True, id="zero"),
        pytest.param(b"HTTP/1.1 204 No Content\r\n\r\n", 204, b"", True, id="204"),
        pytest.param(
            b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", True, id="no-reason"
        ),
        pytest.param(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3, 3\r\n\r\nbad",
            400,
            b"bad",
            True,
            id="same-lengths",
        ),
        pytest.param(CHUNKED, 200, b"hello world, chunked!", True, id="chunked"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
            200,
            b"ab",
            True,
            id="chunked-last-coding",
        ),
        pytest.param(
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", False, id="http10"
        ),
        pytest.param(
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok",
            200,
            b"ok",
            True,
            id="http10-keep-alive",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            200,
            b"ok",
            False,
            id="connection-close",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 2\r\n\r\nok",
            200,
            b"ok",
            False,
            id="connection-close-listed",
        ),
        pytest.param(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone",
            201,
            b"done",
            True,
            id="interim",
        ),
    ],
)
async def test_answer_framing_delivered_one_byte_per_write(
    answer: bytes, status: int, body: bytes, reused: bool
) -> None:
    async def script(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.drip(answer)

    async with serve(script) as srv, session() as s:
        for _ in range(2):
            resp = await s.send(request(srv.url()))
            assert (resp.status_code, await resp.content) == (status, body)
            assert "link" not in resp.headers  # an interim answer's headers are not kept
        assert srv.accepted == (1 if reused else 2)
        assert [len(p.requests) for p in srv.peers] == ([2] if reused else [1, 1])
        if not reused:  # the client closed the connection it did not keep
            await asyncio.wait_for(srv.peers[0].closed.wait(), 2)


async def test_answer_ending_with_the_connection() -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.drip(b"HTTP/1.1 200 OK\r\nX-A: b\r\n\r\nuntil ")
        await peer.send(b"the end")
        peer.writer.close()

    async with serve(script) as srv, session() as s:
        resp = await s.send(request(srv.url()))
        assert (resp.status_code, await resp.content) == (200, b"until the end")
        resp = await s.send(request(srv.url()))
        assert await resp.content == b"until the end"
        assert srv.accepted == 2


async def test_answer_headers_lowercased_and_repeated_names_joined() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\n"
        b"X-Amzn-RequestId: 1234-abcd\r\n"
        b"Content-Type: text/xml\r\n"
        b"Vary: Origin\r\n"
        b"vary:  Accept  \r\n"
        b"VARY:\tX\r\n"
        b"Content-Length: 2\r\n\r\nok"
    )
    async with serve(answering(answer)) as srv, session() as s:
        resp = await s.send(request(srv.url()))
    assert sorted(resp.headers) == ["content-length", "content-type", "vary", "x-amzn-requestid"]
    assert resp.headers["vary"] == "Origin, Accept, X"
    assert resp.headers["x-amzn-requestid"] == "1234-abcd"
    assert resp.headers["X-Amzn-RequestId"] == "1234-abcd"  # botocore's case-insensitive view
    assert resp.url == srv.url()


async def test_head_request_answer_has_no_body() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
    async with serve(answering(answer, OK)) as srv, session() as s:
        resp = await s.send(request(srv.url(), None, method="HEAD"))
        assert (resp.status_code, resp.headers["content-length"], await resp.content) == (
            200,
            "1234",
            b"",
        )
        resp = await s.send(request(srv.url()))
        assert await resp.content == b"ok"
    assert srv.accepted == 1


# --------------------------------------------------------------------------- 3. reuse


async def test_keep_alive_requests_share_one_connection() -> None:
    async with serve(answering(OK)) as srv, session() as s:
        for i in range(3):
            resp = await s.send(request(srv.url(f"/{i}"), f"body {i}".encode()))
            assert await resp.content == b"ok"
        assert s.connections == 1
    assert srv.accepted == 1
    assert [head_lines(r)[2] for r in srv.peers[0].requests] == [b"body 0", b"body 1", b"body 2"]


async def test_on_connected_fires_in_the_sending_task_before_a_new_connection_is_written() -> None:
    # The rate limiter counts a request from when it leaves. A request that had to wait
    # for a new connection leaves when that connection is ready, not at before-send.
    calls: list[tuple[asyncio.Task[Any] | None, int]] = []
    async with serve(answering(OK)) as srv, session() as s:

        def connected() -> None:
            calls.append((asyncio.current_task(), sum(len(p.received) for p in srv.peers)))

        for i in range(3):
            req = request(srv.url(f"/{i}"))
            req.context[ON_CONNECTED] = connected
            resp = await s.send(req)
            assert await resp.content == b"ok"
        # Once, for the one new connection; nothing had been written yet. Reused: no call.
        assert calls == [(asyncio.current_task(), 0)]
        assert srv.accepted == 1


async def test_idle_connection_closed_by_the_server_is_not_reused() -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK)  # keep-alive answer, then the server closes anyway
        peer.writer.close()

    async with serve(script) as srv, session() as s:
        await s.send(request(srv.url()))
        await asyncio.wait_for(srv.peers[0].closed.wait(), 2)
        await asyncio.sleep(0.05)  # the client reads the EOF...
        assert s.connections == 0  # ...and takes the connection out of its pool
        resp = await s.send(request(srv.url()))
        assert (resp.status_code, await resp.content) == (200, b"ok")
        assert srv.accepted == 2
        assert len(srv.peers[1].requests) == 1


async def test_idle_connection_whose_eof_was_just_read_is_not_reused() -> None:
    async with serve(answering(OK)) as srv, session() as s:
        await s.send(request(srv.url()))
        # The server half-closes the idle connection; the FIN reaches the client socket.
        srv.peers[0].writer.transport.get_extra_info("socket").shutdown(socket.SHUT_WR)
        time.sleep(0.05)
        # Resume in the turn after the one that reads the EOF (eof_received), which is
        # before the turn of connection_lost: as a task woken by another socket would.
        loop = asyncio.get_running_loop()
        turn = loop.create_future()
        loop.call_soon(turn.set_result, None)
        await turn
        resp = await s.send(request(srv.url()))
        assert (resp.status_code, await resp.content) == (200, b"ok")
        assert srv.accepted == 2


async def test_connection_idle_past_keepalive_timeout_is_replaced() -> None:
    async with serve(answering(OK)) as srv, session(connector_args={"keepalive_timeout": 0.2}) as s:
        assert s.lean is True
        await s.send(request(srv.url()))
        await s.send(request(srv.url()))  # within the keep-alive time: reused
        assert srv.accepted == 1
        await asyncio.sleep(0.3)
        resp = await s.send(request(srv.url()))
        assert await resp.content == b"ok"
        assert srv.accepted == 2
        assert s.connections == 1
        await asyncio.wait_for(srv.peers[0].closed.wait(), 2)  # the stale one was closed
        assert not srv.peers[1].closed.is_set()


@pytest.mark.parametrize(
    "session_cls",
    [
        AIOHTTPSession,
        LeanHTTPSession,
    ],
)
async def test_keepalive_timeout_zero_means_no_reuse(session_cls: type[AIOHTTPSession]) -> None:
    args = {"keepalive_timeout": 0}
    async with serve(answering(OK)) as srv, session_cls(timeout=TIMEOUT, connector_args=args) as s:
        for _ in range(2):
            resp = await s.send(request(srv.url()))
            assert await resp.content == b"ok"
        assert srv.accepted == 2


async def test_unsolicited_bytes_on_an_idle_connection_retire_it() -> None:
    junk_sent = asyncio.Event()

    async def script(peer: Peer) -> None:
        if peer is srv.peers[0]:
            await peer.request()
            await peer.send(OK)
            await asyncio.sleep(0.02)
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno")
            junk_sent.set()
        else:
            await peer.serve(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes")

    async with serve(script) as srv, session() as s:
        await s.send(request(srv.url()))
        await asyncio.wait_for(junk_sent.wait(), 2)
        await asyncio.wait_for(srv.peers[0].closed.wait(), 2)  # the client dropped it
        await asyncio.sleep(0.02)
        assert s.connections == 0
        resp = await s.send(request(srv.url()))
        assert (resp.status_code, await resp.content) == (200, b"yes")
        assert srv.accepted == 2
        assert s.connections == 1


# --------------------------------------------------------------------------- 4. protocol errors


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n", id="status-not-digits"),
        pytest.param(b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n", id="status-two-digits"),
        pytest.param(b"ICY 200 OK\r\nContent-Length: 0\r\n\r\n", id="not-http"),
        pytest.param(b"HTTP/2 200\r\nContent-Length: 0\r\n\r\n", id="http2"),
        pytest.param(b"HTTP/1.1\r\n\r\n", id="no-status"),
        pytest.param(b"\r\n\r\n", id="empty-head"),
        pytest.param(
            b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
            id="status-four-digits",
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", id="header-no-colon"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 0\r\n\r\n", id="space-before-colon"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX-A: b\r\n folded\r\nContent-Length: 0\r\n\r\n", id="obs-fold"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n: empty-name\r\nContent-Length: 0\r\n\r\n", id="empty-name"
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", id="length-text"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", id="length-negative"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", id="length-plus"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 0x2\r\n\r\nok", id="length-hex"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nok", id="length-conflict"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", id="length-empty"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
            id="length-twice",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: \xd9\xa2\r\n\r\nok", id="length-arabic-digit"
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", id="more-than-length"),
        pytest.param(
            CHUNKED_HEAD + b"0x10\r\n0123456789abcdef\r\n0\r\n\r\n",
            id="chunk-0x",
        ),
        pytest.param(
            CHUNKED_HEAD + b"-1\r\nx\r\n0\r\n\r\n",
            id="chunk-negative",
        ),
        pytest.param(
            CHUNKED_HEAD + b"+5\r\nhello\r\n0\r\n\r\n",
            id="chunk-plus",
        ),
        pytest.param(
            CHUNKED_HEAD + b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n",
            id="chunk-underscore",
        ),
        pytest.param(
            CHUNKED_HEAD + b"\r\nx\r\n0\r\n\r\n",
            id="chunk-empty",
        ),
        pytest.param(
            CHUNKED_HEAD + b"1" * 17 + b"\r\n",
            id="chunk-17-digits",
        ),
        pytest.param(
            CHUNKED_HEAD + b"2\r\nokX\r\n0\r\n\r\n",
            id="chunk-no-crlf",
        ),
        pytest.param(
            CHUNKED_HEAD + b"2\r\nok\r\n0\r\n\r\nEXTRA",
            id="more-than-chunked",
        ),
        pytest.param(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", id="101"),
    ],
)
async def test_protocol_errors_are_connection_closed(answer: bytes) -> None:
    async with serve(answering(answer)) as srv, session(timeout=(2.0, 1.0)) as s:
        started = time.monotonic()
        with pytest.raises(ConnectionClosedError) as info:
            await s.send(request(srv.url()))
        assert time.monotonic() - started < 0.9  # from the parser, not from a timeout
        assert info.value.kwargs["endpoint_url"] == srv.url()
        assert s.connections == 0
        await asyncio.wait_for(srv.peers[0].closed.wait(), 2)  # the client dropped it
        # The session still works (on a new connection).
        srv.script = answering(OK)
        resp = await s.send(request(srv.url()))
        assert await resp.content == b"ok"
        assert srv.accepted == 2


async def test_head_larger_than_64k_arriving_in_pieces() -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\n")
        for _ in range(MAX_HEAD // 1000 + 2):  # a head that never ends
            await peer.send(b"X-Pad: " + b"a" * 991 + b"\r\n")
            await asyncio.sleep(0)

    async with serve(script) as srv, session(timeout=(2.0, 1.0)) as s:
        started = time.monotonic()
        with pytest.raises(ConnectionClosedError):
            await s.send(request(srv.url()))
        assert time.monotonic() - started < 0.9
        await asyncio.wait_for(srv.peers[0].closed.wait(), 2)


async def test_head_larger_than_64k_ending_in_the_same_read() -> None:
    # Just over the limit (by 100 bytes): a first read of up to 64 KB cannot hold it all
    # without its end, so the head is either whole in one read or completed by the next.
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
    pad = MAX_HEAD + 100 - len(head) - len(b"X-Pad: \r\n\r\n")
    answer = head + b"X-Pad: " + b"a" * pad + b"\r\n\r\nok"
    assert len(answer) == MAX_HEAD + 100 + 2
    async with serve(answering(answer)) as srv, session() as s:
        with pytest.raises(ConnectionClosedError):
            await s.send(request(srv.url()))


@pytest.mark.parametrize(
    "partial",
    [
        pytest.param(b"", id="before-answer"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Le", id="mid-head"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", id="mid-body"),
        pytest.param(CHUNKED_HEAD + b"5\r\nab", id="mid-chunk"),
        pytest.param(
            CHUNKED_HEAD + b"2\r\nab\r\n0\r\nX-T: 1\r\n",
            id="mid-trailers",
        ),
        pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n", id="after-interim"),
    ],
)
async def test_server_closing_before_the_whole_answer(partial: bytes) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(partial)
        peer.writer.close()

    async with serve(script) as srv, session() as s:
        with pytest.raises(ConnectionClosedError) as info:
            await s.send(request(srv.url()))
        assert info.value.kwargs["endpoint_url"] == srv.url()
        assert s.connections == 0
    assert srv.peers[0].requests  # the request had been sent: the outcome is unknown


# --------------------------------------------------------------------------- 5. timeouts


async def test_no_answer_is_a_read_timeout() -> None:
    async def script(peer: Peer) -> None:
        await peer.request()  # and never answer

    async with serve(script) as srv, session(timeout=(2.0, 0.2)) as s:
        started = time.monotonic()
        with pytest.raises(ReadTimeoutError) as info:
            await s.send(request(srv.url()))
        elapsed = time.monotonic() - started
        assert 0.18 <= elapsed < 1.0
        assert info.value.kwargs["endpoint_url"] == srv.url()
        assert s.connections == 0
        await asyncio.wait_for(srv.peers[0].closed.wait(), 2)  # the client gave up on it


async def test_stalled_after_the_head_is_a_read_timeout() -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")

    async with serve(script) as srv, session(timeout=(2.0, 0.2)) as s:
        started = time.monotonic()
        with pytest.raises(ReadTimeoutError):
            await s.send(request(srv.url()))
        assert 0.18 <= time.monotonic() - started < 1.0


async def test_read_timeout_is_inactivity_not_total_time() -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await asyncio.sleep(0.1)
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n")
        await peer.drip(b"dripped", 0.1)

    async with serve(script) as srv, session(timeout=(2.0, 0.3)) as s:
        started = time.monotonic()
        resp = await s.send(request(srv.url()))
        elapsed = time.monotonic() - started
        assert (resp.status_code, await resp.content) == (200, b"dripped")
        assert elapsed > 0.6  # twice the read timeout, with a sign of progress every 0.1 s


async def test_per_request_read_timeout_from_the_request_context() -> None:
    async def script(peer: Peer) -> None:
        await peer.request()

    async with serve(script) as srv, session(timeout=(2.0, 5.0)) as s:
        aws_request = AWSRequest(method="POST", url=srv.url(), data=b"x")
        aws_request.context["read_timeout"] = 0.2
        with pytest.raises(ReadTimeoutError):
            await asyncio.wait_for(s.send(aws_request.prepare()), 0.8)


async def test_tls_handshake_never_answered_is_a_connect_timeout() -> None:
    async def script(peer: Peer) -> None:
        pass  # accept, then only read (the ClientHello) until the client closes

    async with serve(script) as srv, session(timeout=(0.2, 2.0), verify=False) as s:
        started = time.monotonic()
        with pytest.raises(ConnectTimeoutError) as info:
            await s.send(request(srv.url(scheme="https")))
        assert time.monotonic() - started < 1.0
        assert info.value.kwargs["endpoint_url"] == srv.url(scheme="https")
        assert s.connections == 0
        await asyncio.wait_for(srv.peers[0].closed.wait(), 2)


# --------------------------------------------------------------------------- 6. connect failures


async def test_refused_connection_is_endpoint_connection_error() -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    async with session() as s:
        with pytest.raises(EndpointConnectionError) as info:
            await s.send(request(url))
        error = info.value.kwargs["error"]
        assert isinstance(error, ConnectFailedError)
        assert error.errno == errno.ECONNREFUSED
        assert info.value.kwargs["endpoint_url"] == url
        assert s.connections == 0


async def test_ses_transport_maps_refused_connection_to_retry_safe() -> None:
    transport = SESTransport(
        endpoint_url=f"http://127.0.0.1:{closed_port()}",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        warm_up=False,
        api="v2",
        retry=RetryPolicy(max_attempts=1),
    )
    async with transport:
        assert isinstance(transport.client._endpoint.http_session, LeanHTTPSession)
        with pytest.raises(ServiceUnavailableError) as info:
            await transport.send_mail(from_="shop@example.com", to="ada@example.org", text="hi")
    assert info.value.outcome is Outcome.RETRY_SAFE
    assert info.value.attempts == 1
    cause = info.value.__cause__
    assert isinstance(cause, EndpointConnectionError)
    assert isinstance(cause.kwargs["error"], ConnectFailedError)


# --------------------------------------------------------------------------- 7. the pool bound


def slow_answers(delay: float) -> Script:
    async def script(peer: Peer) -> None:
        while await peer.request() is not None:
            await asyncio.sleep(delay)
            await peer.send(OK)

    return script


async def test_pool_bound_holds_at_the_server() -> None:
    async with serve(slow_answers(0.05)) as srv, session(max_pool_connections=2) as s:
        answers = await asyncio.gather(*(s.send(request(srv.url(f"/{i}"))) for i in range(6)))
        assert [a.status_code for a in answers] == [200] * 6
        assert [await a.content for a in answers] == [b"ok"] * 6
        assert s.connections == 2
    assert srv.max_open == 2
    assert srv.accepted == 2
    assert sum(len(p.requests) for p in srv.peers) == 6


async def test_full_pool_closes_an_idle_connection_to_another_endpoint() -> None:
    async with (
        serve(answering(OK)) as first,
        serve(answering(OK)) as second,
        session(max_pool_connections=1) as s,
    ):
        await s.send(request(first.url()))
        resp = await asyncio.wait_for(s.send(request(second.url())), 2)
        assert await resp.content == b"ok"
        await asyncio.wait_for(first.peers[0].closed.wait(), 2)  # made room for `second`
        assert s.connections == 1
        resp = await asyncio.wait_for(s.send(request(first.url())), 2)
        assert await resp.content == b"ok"
        assert (first.accepted, second.accepted) == (2, 1)
        assert first.max_open == second.max_open == 1


async def test_cancelled_waiter_gives_its_place_back() -> None:
    async with serve(slow_answers(0.1)) as srv, session(max_pool_connections=2) as s:
        tasks = [asyncio.ensure_future(s.send(request(srv.url(f"/{i}")))) for i in range(4)]
        await asyncio.sleep(0.03)  # two in flight, two waiting for a connection
        assert s.connections == 2
        tasks[2].cancel()
        done, _ = await asyncio.wait(tasks, timeout=2)
        assert len(done) == 4
        assert tasks[2].cancelled()
        assert [t.result().status_code for t in (tasks[0], tasks[1], tasks[3])] == [200] * 3
        assert s.connections <= 2
        resp = await s.send(request(srv.url()))
        assert resp.status_code == 200
    assert srv.max_open <= 2
    assert sorted(head_lines(r)[0] for p in srv.peers for r in p.requests) == sorted(
        [b"POST /0 HTTP/1.1", b"POST /1 HTTP/1.1", b"POST /3 HTTP/1.1", b"POST / HTTP/1.1"]
    )


async def test_waiter_cancelled_after_being_handed_a_place_passes_it_on() -> None:
    async with serve(slow_answers(0.05)) as srv, session(max_pool_connections=1) as s:
        second = asyncio.ensure_future(s.send(request(srv.url("/second"))))
        third = asyncio.ensure_future(s.send(request(srv.url("/third"))))
        # Sent from this task, which takes the only place before the two tasks start: once
        # they wait, releasing the connection hands the place to `second`...
        resp = await s.send(request(srv.url("/first")))
        assert resp.status_code == 200 and not second.done()
        second.cancel()  # ...which is cancelled in the same turn, before it could run
        resp = await asyncio.wait_for(third, 2)
        assert resp.status_code == 200
        assert second.cancelled()
        assert s.connections == 1
    assert [head_lines(r)[0] for r in srv.peers[0].requests] == [
        b"POST /first HTTP/1.1",
        b"POST /third HTTP/1.1",
    ]


async def test_cancelling_a_request_in_flight_closes_its_connection() -> None:
    async def script(peer: Peer) -> None:
        if peer is srv.peers[0]:
            await peer.request()  # never answered
        else:
            await peer.serve(OK)

    async with serve(script) as srv, session(max_pool_connections=1) as s:
        task = asyncio.ensure_future(s.send(request(srv.url())))
        await asyncio.sleep(0.05)
        assert srv.peers[0].requests
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(srv.peers[0].closed.wait(), 2)  # the server sees it closed
        assert s.connections == 0
        for _ in range(2):
            resp = await s.send(request(srv.url()))
            assert await resp.content == b"ok"
        assert srv.accepted == 2
        assert s.connections == 1


# --------------------------------------------------------------------------- 8. TLS


@pytest.fixture(scope="module")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_bundle(tls_ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)


async def test_https_with_a_ca_bundle(tls_server_context: ssl.SSLContext, ca_bundle: str) -> None:
    async with (
        serve(answering(OK), ssl_context=tls_server_context) as srv,
        session(verify=ca_bundle) as s,
    ):
        for _ in range(2):
            resp = await s.send(request(srv.url("/tls", scheme="https")))
            assert (resp.status_code, await resp.content) == (200, b"ok")
    assert srv.accepted == 1
    first, pairs, body = head_lines(srv.peers[0].requests[0])
    assert first == b"POST /tls HTTP/1.1" and body == b"hello"
    assert dict(pairs)["host"] == f"127.0.0.1:{srv.port}"


async def test_https_untrusted_certificate_is_ssl_error(tls_server_context: ssl.SSLContext) -> None:
    async with serve(answering(OK), ssl_context=tls_server_context) as srv, session() as s:
        with pytest.raises(SSLError) as info:
            await s.send(request(srv.url(scheme="https")))
        assert isinstance(info.value.kwargs["error"], ssl.SSLCertVerificationError)
        assert s.connections == 0
    assert not any(p.requests for p in srv.peers)


async def test_https_certificate_for_another_host_is_ssl_error(
    tls_ca: trustme.CA, ca_bundle: str
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("mail.example.com").configure_cert(context)
    async with serve(answering(OK), ssl_context=context) as srv, session(verify=ca_bundle) as s:
        with pytest.raises(SSLError):
            await s.send(request(srv.url(scheme="https")))
    assert not any(p.requests for p in srv.peers)


async def test_https_verify_false(tls_server_context: ssl.SSLContext) -> None:
    async with (
        serve(answering(OK), ssl_context=tls_server_context) as srv,
        session(verify=False) as s,
    ):
        resp = await s.send(request(srv.url(scheme="https")))
        assert (resp.status_code, await resp.content) == (200, b"ok")
    assert len(srv.peers[0].requests) == 1


async def test_missing_ca_bundle_is_a_botocore_error(tmp_path: Path) -> None:
    async with serve(answering(OK)) as srv:
        url = srv.url(scheme="https")
        missing = str(tmp_path / "missing.pem")
        async with AIOHTTPSession(verify=missing, timeout=TIMEOUT) as parent:
            with pytest.raises(HTTPClientError):
                await parent.send(request(url))
        async with session(verify=missing) as s:
            with pytest.raises(HTTPClientError):
                await s.send(request(url))


# --------------------------------------------------------------------------- 9. header injection


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Amz-Target": "a\r\nX-Injected: 1"},
        {"X-Amz-Target": b"a\r\n\r\nGET /smuggled HTTP/1.1"},
        {"X-Amz-Target": "a\nb"},
        {"X-Amz-Target": "a\rb"},
        {"X-Amz-Target": "a\0b"},
        {"X-Bad\r\nName": "v"},
    ],
)
async def test_crlf_in_a_header_is_refused_before_sending(headers: dict[str, Any]) -> None:
    async with serve(answering(OK)) as srv, session() as s:
        with pytest.raises(HTTPClientError):
            await s.send(request(srv.url(), headers=headers))
        await asyncio.sleep(0.05)
        assert srv.accepted == 0
        assert s.connections == 0
        resp = await s.send(request(srv.url()))  # the session is still fine
        assert resp.status_code == 200
    assert len(srv.peers[0].requests) == 1
    assert b"Injected" not in srv.peers[0].received and b"smuggled" not in srv.peers[0].received


# --------------------------------------------------------------------------- 10. fallbacks


@pytest.mark.parametrize(
    ("kwargs", "lean"),
    [
        ({}, True),
        ({"connector_args": {"keepalive_timeout": 5}}, True),
        ({"connector_args": None}, True),
        ({"proxies": {"https": "http://proxy:3128"}}, False),
        ({"connector_args": {"keepalive_timeout": 5, "force_close": True}}, False),
        ({"connector_args": {"ttl_dns_cache": 60}}, False),
        ({"client_cert": "/nonexistent/client.pem"}, False),
    ],
)
def test_what_stays_lean(kwargs: dict[str, Any], lean: bool) -> None:
    assert LeanHTTPSession(**kwargs).lean is lean


async def test_not_lean_session_sends_through_aiohttp() -> None:
    async with serve(answering(OK)) as srv:
        async with session(connector_args={"force_close": True}) as s:
            assert s.lean is False
            resp = await s.send(request(srv.url("/via-aiohttp")))
            assert (resp.status_code, await resp.content) == (200, b"ok")
            assert isinstance(resp.raw, aiohttp.ClientResponse)
            assert s.connections == 0  # the lean pool was never used
        await asyncio.wait_for(srv.peers[0].closed.wait(), 2)
    first, pairs, body = head_lines(srv.peers[0].requests[0])
    assert first == b"POST /via-aiohttp HTTP/1.1" and body == b"hello"
    assert "aiohttp" in dict(pairs)["user-agent"]  # aiohttp's own default header


async def test_streamed_answer_goes_through_aiohttp() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstream"
    async with serve(answering(answer)) as srv, session() as s:
        assert s.lean is True
        resp = await s.send(request(srv.url(), stream_output=True))
        assert isinstance(resp.raw, aiohttp.ClientResponse)
        assert resp.status_code == 200
        assert await resp.raw.read() == b"stream"
        resp.raw.release()
        assert s.connections == 0
        resp = await s.send(request(srv.url()))  # and the lean path right after
        assert not isinstance(resp.raw, aiohttp.ClientResponse)
        assert await resp.content == b"stream"
        assert s.connections == 1
    assert srv.accepted == 2  # one connection per pool
    assert "user-agent" in dict(head_lines(srv.peers[0].requests[0])[1])


async def test_streamed_upload_goes_through_aiohttp() -> None:
    async def script(peer: Peer) -> None:
        head = await peer.reader.readuntil(b"\r\n\r\n")
        body = await peer.reader.readuntil(b"0\r\n\r\n")
        peer.requests.append(head + body)
        await peer.send(OK)

    async with serve(script) as srv, session() as s:
        headers = {"Transfer-Encoding": "chunked"}
        resp = await s.send(request(srv.url(), b"abc", method="PUT", headers=headers))
        assert isinstance(resp.raw, aiohttp.ClientResponse)
        assert await resp.content == b"ok"
        assert s.connections == 0
    first, pairs, body = head_lines(srv.peers[0].requests[0])
    assert first == b"PUT / HTTP/1.1"
    assert dict(pairs)["transfer-encoding"] == "chunked"
    assert body == b"3\r\nabc\r\n0\r\n\r\n"


# --------------------------------------------------------------------------- 11. closing


async def test_closed_session_refuses_requests_and_closes_idle_connections() -> None:
    async with serve(answering(OK)) as srv:
        s = session()
        async with s:
            await s.send(request(srv.url()))
            assert s.connections == 1
        await asyncio.wait_for(srv.peers[0].closed.wait(), 2)  # EOF at the server
        assert s.connections == 0
        with pytest.raises(HTTPClientError):
            await s.send(request(srv.url()))
        await asyncio.sleep(0.05)
        assert srv.accepted == 1
        assert len(srv.peers[0].requests) == 1


async def test_closing_wakes_requests_waiting_for_a_connection() -> None:
    async with serve(slow_answers(0.1)) as srv:
        s = session(max_pool_connections=1)
        async with s:
            first = asyncio.ensure_future(s.send(request(srv.url("/first"))))
            await asyncio.sleep(0.02)
            waiting = asyncio.ensure_future(s.send(request(srv.url("/waiting"))))
            await asyncio.sleep(0.02)
            assert not waiting.done()
        with pytest.raises(HTTPClientError):
            await asyncio.wait_for(waiting, 2)
        resp = await asyncio.wait_for(first, 2)  # the request in flight still completes
        assert resp.status_code == 200
        await asyncio.wait_for(srv.peers[0].closed.wait(), 2)  # and its connection is closed
    assert srv.accepted == 1
    assert [head_lines(r)[0] for r in srv.peers[0].requests] == [b"POST /first HTTP/1.1"]


# --------------------------------------------------------------------------- 12. integration


def _lean_config() -> AioConfig:
    return AioConfig(
        http_session_cls=LeanHTTPSession, retries={"mode": "standard", "total_max_attempts": 1}
    )


def _moto_raw_messages(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=10) as response:
        return list(json.load(response)["ses"]["RawMessage"])


def _record_answers(http: Any) -> list[Any]:
    """Record the ``raw`` of every answer the client's HTTP session returns (a spy, the
    network untouched): the lean path answers with its own body object, aiohttp with a
    ``ClientResponse``."""
    raws: list[Any] = []
    send = http.send

    async def recording_send(prepared: Any) -> Any:
        response = await send(prepared)
        raws.append(response.raw)
        return response

    http.send = recording_send
    return raws


RAW = (
    b"From: shop@example.com\r\nTo: ada@example.org\r\nSubject: lean\r\n\r\n"
    b"Hello over lean HTTP.\r\n"
)


async def test_sesv2_client_on_lean_session_against_moto(moto_url: str) -> None:
    async with get_session().create_client(
        "sesv2",
        region_name="us-east-1",
        endpoint_url=moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=_lean_config(),
    ) as client:
        http = client._endpoint.http_session
        assert type(http) is LeanHTTPSession and http.lean
        raws = _record_answers(http)
        await client.create_email_identity(EmailIdentity="shop@example.com")
        answer = await client.send_email(
            FromEmailAddress="shop@example.com",
            Destination={"ToAddresses": ["ada@example.org"]},
            Content={"Raw": {"Data": RAW}},
        )
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert len(raws) == 2
    assert not any(isinstance(raw, aiohttp.ClientResponse) for raw in raws)
    (stored,) = _moto_raw_messages(moto_url)
    assert answer["MessageId"] == stored["id"]
    assert "Hello over lean HTTP." in stored["raw_data"]


async def test_ses_v1_client_on_lean_session_against_moto(moto_url: str) -> None:
    async with get_session().create_client(
        "ses",
        region_name="us-east-1",
        endpoint_url=moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=_lean_config(),
    ) as client:
        http = client._endpoint.http_session
        assert type(http) is LeanHTTPSession
        raws = _record_answers(http)
        await client.verify_email_identity(EmailAddress="shop@example.com")
        answer = await client.send_raw_email(
            Source="shop@example.com", Destinations=["ada@example.org"], RawMessage={"Data": RAW}
        )
        quota = await client.get_send_quota()
        assert quota["SentLast24Hours"] >= 1.0  # moto counts per recipient and source
    assert len(raws) == 3
    assert not any(isinstance(raw, aiohttp.ClientResponse) for raw in raws)
    (stored,) = _moto_raw_messages(moto_url)
    assert answer["MessageId"] == stored["id"]


@pytest.mark.parametrize("lean_http", [True, False])
async def test_ses_transport_session_type(moto_url: str, lean_http: bool) -> None:
    async with SESTransport(
        endpoint_url=moto_url, region_name="us-east-1", api="v2", lean_http=lean_http, warm_up=False
    ) as transport:
        http = transport.client._endpoint.http_session
        if lean_http:
            assert type(http) is LeanHTTPSession and http.lean
        else:
            assert type(http) is AIOHTTPSession
        raws = _record_answers(http)
        await transport.client.create_email_identity(EmailIdentity="shop@example.com")
        result = await transport.send_mail(
            from_="shop@example.com", to="ada@example.org", text="hi"
        )
    assert len(raws) == 2
    assert [isinstance(raw, aiohttp.ClientResponse) for raw in raws] == [not lean_http] * 2
    (stored,) = _moto_raw_messages(moto_url)
    assert result.message_id == f"<{stored['id']}@email.amazonses.com>"
