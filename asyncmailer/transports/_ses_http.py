"""A lean HTTP/1.1 connection pool for the aiobotocore client that SESTransport creates.

aiobotocore sends every request through aiohttp. For SES that is one small POST with a
small answer, and on loopback aiohttp's request machinery costs more CPU than the kernel
work underneath it: measured ~240 µs per request inside aiobotocore's HTTP session, of
~680 µs for the whole ``send_email`` call (``docs/benchmarks.md``). :class:`LeanHTTPSession`
speaks HTTP/1.1 directly on asyncio protocols: one write per request, answers parsed as
they arrive, kept-alive connections reused newest first.

It handles what an SES endpoint needs: a pool of keep-alive connections bounded by
``max_pool_connections`` (callers queue for a free one; a connection the server is seen
to have closed while idle is not written to), Happy Eyeballs over the host's addresses, TLS with
botocore's ``verify`` setting (the context built in a worker thread), the client's connect
and read timeouts (the read timeout measured between signs of progress, as a socket
timeout is; a request's own ``read_timeout`` wins), answers with ``Content-Length``,
chunked answers, interim ``1xx`` answers, and answers that end with the connection.
Anything else goes to aiobotocore's aiohttp session (this class is a subclass of it):
proxies, client certificates, connector arguments other than ``keepalive_timeout``,
streamed bodies and streamed answers. Errors are botocore's HTTP errors, as aiobotocore
raises them: ``EndpointConnectionError``, ``ConnectTimeoutError``, ``ReadTimeoutError``,
``SSLError`` and ``ConnectionClosedError``.

A POST is never sent twice by this layer: a connection that fails after the request was
written raises ``ConnectionClosedError`` (the transport reports the outcome as unknown).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
from collections import deque
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from aiobotocore.awsrequest import AioAWSResponse
from aiobotocore.httpsession import AIOHTTPSession
from botocore.auth import _host_from_url
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
    SSLError,
)

from asyncmailer.transports._ses_client import ON_CONNECTED

aiohappyeyeballs: Any
try:  # aiohttp's own dependency since aiohttp 3.10
    import aiohappyeyeballs
except ImportError:  # pragma: no cover - older aiohttp: connect without Happy Eyeballs
    aiohappyeyeballs = None

__all__ = ["ConnectFailedError", "InvalidRequestError", "LeanHTTPSession"]

#: Largest status line + headers accepted (aiohttp's limit is 8 KB per line).
MAX_HEAD = 64 * 1024
#: Seconds an idle connection is kept (aiobotocore's default ``keepalive_timeout``).
KEEPALIVE_TIMEOUT = 12.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HEX = b"0123456789abcdefABCDEF"
#: Seconds before the next address of a host is tried (RFC 8305's recommended delay).
HAPPY_EYEBALLS_DELAY = 0.25
# Bodies up to this size are joined to the head and written with one call; larger ones
# are written in pieces of _PIECE octets, waiting for the transport to drain between them.
_JOIN_LIMIT = 256 * 1024
_PIECE = 64 * 1024


class _Target(NamedTuple):
    scheme: str
    host: str
    port: int
    path: str
    host_header: str


@lru_cache(maxsize=64)
def _target(url: str) -> _Target | None:
    """Where a request for ``url`` goes, or None for URLs left to aiohttp."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or parts.username or parts.password:
        return None
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    # The value botocore's signer signed (default ports left out, IPv6 in brackets).
    host_header = _host_from_url(url)
    if any(c in path or c in host_header for c in "\r\n\0 \t"):
        return None
    return _Target(scheme, host, port or _DEFAULT_PORTS[scheme], path, host_header)


class ConnectFailedError(OSError):
    """Opening the connection failed, so nothing was sent (the ``error`` of an
    ``EndpointConnectionError`` this session raises)."""


class InvalidRequestError(ValueError):
    """The request cannot be written as it is (a CR, LF or NUL in a header, a CA bundle
    that cannot be loaded): nothing was sent. The ``error`` of an ``HTTPClientError``."""


def _unsent(transport: asyncio.Transport) -> int:
    """Octets written but not yet handed to the kernel, TLS layers included."""
    size = transport.get_write_buffer_size()
    # asyncio's TLS transport does not count what it already passed to the socket's own
    # transport; read that one too where it can be reached (CPython's asyncio).
    inner = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
    if inner is not None:
        with contextlib.suppress(Exception):
            size += int(inner.get_write_buffer_size())
    return size


class _ProtocolError(Exception):
    """The server's answer is not valid HTTP/1.1."""


class _Answer(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


class _Body:
    """The ``raw`` of an :class:`AioAWSResponse`: the answer's body, already read."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def read(self) -> bytes:
        return self._data


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, its answer parsed as it arrives."""

    def __init__(
        self,
        session: LeanHTTPSession,
        loop: asyncio.AbstractEventLoop,
        key: tuple[str, str, int],
    ) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        #: True while the connection sits in the session's idle list.
        self.pooled = False
        self.idle_since = 0.0
        self._session = session
        self._loop = loop
        self._buffer = bytearray()
        self._waiter: asyncio.Future[_Answer] | None = None
        self._head_request = False
        self._timeout = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._activity = 0.0
        self._unsent = 0
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        #: Requests written on this connection.
        self.requests = 0
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._headers: dict[str, str] | None = None
        self._mode = ""  # "length", "chunked" or "close" once the head is parsed
        self._length = 0
        self._keep_alive = False
        self._scan = 0  # where the search for the end of the head resumes
        self._chunks: list[bytes] = []
        self._pos = 0  # chunked: parse position in the buffer

    # ---------------------------------------------------------------- asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        assert self.transport is not None
        # A TLS transport buffers up to 512 KB of encrypted data before it pauses us by
        # default, and what it has handed to the socket's transport is not in its buffer
        # size: a small limit keeps the part of an upload we cannot see progress on small.
        self.transport.set_write_buffer_limits(high=_PIECE)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            # Bytes nobody asked for: the connection cannot be trusted any more.
            self._abort()
            return
        self._activity = self._loop.time()
        self._buffer += data
        try:
            answer = self._parse()
        except _ProtocolError as exc:
            waiter.set_exception(exc)
            self._abort()
            return
        if answer is not None:
            waiter.set_result(answer)
            self._wake_writer()  # an early answer ends the upload too

    def eof_received(self) -> bool:
        # The server will send no more: never hand this connection out again.
        self.closed = True
        self._finish_on_close(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._finish_on_close(exc)
        self._wake_writer()
        if self.pooled:
            self._session._forget(self)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._activity = self._loop.time()  # the request is still being written: progress
        self._wake_writer()

    def _wake_writer(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    # ---------------------------------------------------------------- requests

    async def exchange(
        self, data: bytes, body: bytes, timeout: float | None, head_request: bool
    ) -> _Answer:
        """Write one request and return its answer."""
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            raise _NotWritten()
        self.requests += 1
        loop = self._loop
        self._reset()
        self._buffer.clear()
        self._head_request = head_request
        waiter: asyncio.Future[_Answer] = loop.create_future()
        self._waiter = waiter
        self._activity = loop.time()
        if timeout:
            self._timeout = timeout
            self._unsent = 0
            self._timer = loop.call_at(self._activity + timeout, self._check_timeout)
        try:
            if len(body) <= _JOIN_LIMIT:
                transport.write(data + body if body else data)
            else:
                await self._write_in_pieces(transport, data, body, waiter)
            if timeout:  # only the read-timeout check reads it
                self._unsent = _unsent(transport)
            return await waiter
        finally:
            self._waiter = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    async def _write_in_pieces(
        self,
        transport: asyncio.Transport,
        data: bytes,
        body: bytes,
        waiter: asyncio.Future[_Answer],
    ) -> None:
        """Write a large body a piece at a time, waiting while the transport is paused.

        With TLS, asyncio encrypts what it is given at once and its buffer size does not
        show the socket's backlog; written in pieces, the transport pauses and resumes as
        the bytes leave, and each resume counts as progress for the read timeout. Stops
        early when the answer (or an error) arrives before the whole body was sent.
        """
        transport.write(data)
        view = memoryview(body)
        for start in range(0, len(body), _PIECE):
            if waiter.done() or self.closed:
                return
            transport.write(view[start : start + _PIECE])
            if self._paused and not waiter.done() and not self.closed:
                self._drain = self._loop.create_future()
                await self._drain

    def _check_timeout(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done() or self.transport is None:
            return
        now = self._loop.time()
        unsent = _unsent(self.transport)
        if unsent < self._unsent:  # the request is still being written: progress
            self._unsent = unsent
            self._activity = now
        if now - self._activity < self._timeout:
            self._timer = self._loop.call_at(self._activity + self._timeout, self._check_timeout)
            return
        waiter.set_exception(_Timeout())
        self._wake_writer()
        self._abort()

    def close(self) -> None:
        """Close the connection (politely: buffered data is still written)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _finish_on_close(self, exc: Exception | None) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._mode == "close" and exc is None:
            assert self._headers is not None
            waiter.set_result(_Answer(self._status, self._headers, bytes(self._buffer), False))
        else:
            waiter.set_exception(_ClosedBeforeAnswer(exc))

    # ---------------------------------------------------------------- parsing

    def _parse(self) -> _Answer | None:
        buffer = self._buffer
        while self._headers is None:
            end = buffer.find(b"\r\n\r\n", self._scan)
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise _ProtocolError("the answer's head is too long")
                self._scan = max(0, len(buffer) - 3)
                return None
            if end > MAX_HEAD:
                raise _ProtocolError("the answer's head is too long")
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            self._scan = 0
            self._parse_head(head)
        if self._mode == "length":
            if len(buffer) < self._length:
                return None
            if len(buffer) > self._length:
                raise _ProtocolError("the server sent more than the answer's Content-Length")
            body = bytes(buffer)
            buffer.clear()
            return _Answer(self._status, self._headers, body, self._keep_alive)
        if self._mode == "chunked":
            return self._parse_chunks()
        return None  # "close": the body ends with the connection

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        status_line = lines[0]
        version, _, rest = status_line.partition(b" ")
        code = rest[:3]
        if (
            version not in (b"HTTP/1.1", b"HTTP/1.0")
            or len(code) != 3
            or not code.isdigit()
            or rest[3:4] not in (b"", b" ")
        ):
            raise _ProtocolError(f"bad status line {status_line[:100]!r}")
        status = int(code)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip() or line[:1] in b" \t":
                raise _ProtocolError(f"bad header line {line[:100]!r}")
            if b"\r" in line or b"\n" in line:
                raise _ProtocolError(f"bare CR or LF in header line {line[:100]!r}")
            key = name.decode("latin-1").lower()
            text = value.strip(b" \t").decode("utf-8", "surrogateescape")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        if 100 <= status < 200:
            if status == 101:
                raise _ProtocolError("the server switched protocols")
            return  # an interim answer (100 Continue): the real one follows
        connection = {t.strip() for t in headers.get("connection", "").lower().split(",")}
        if version == b"HTTP/1.1":
            keep_alive = "close" not in connection
        else:
            keep_alive = "keep-alive" in connection
        self._status = status
        self._headers = headers
        self._keep_alive = keep_alive
        encoding = headers.get("transfer-encoding")
        length = headers.get("content-length")
        if self._head_request or status in (204, 304):
            self._mode, self._length = "length", 0
        elif encoding is not None:
            if encoding.lower().rsplit(",", 1)[-1].strip() == "chunked":
                self._mode = "chunked"
                if length is not None:  # RFC 9112 6.3: do not trust this connection again
                    self._keep_alive = False
            else:
                self._mode, self._keep_alive = "close", False
        elif length is not None:
            values = {v.strip() for v in length.split(",")}
            number = values.pop() if len(values) == 1 else ""
            if not (number.isascii() and number.isdigit()):
                raise _ProtocolError(f"bad Content-Length {length[:100]!r}")
            self._mode, self._length = "length", int(number)
        else:
            self._mode, self._keep_alive = "close", False

    def _parse_chunks(self) -> _Answer | None:
        buffer, pos = self._buffer, self._pos
        while True:
            end = buffer.find(b"\r\n", pos)
            if end < 0:
                if len(buffer) - pos > MAX_HEAD:
                    raise _ProtocolError("bad chunk header")
                break
            if self._length < 0:  # trailers: skip lines until an empty one
                if end == pos:
                    if end + 2 != len(buffer):
                        raise _ProtocolError("the server sent more than the chunked answer")
                    buffer.clear()
                    self._pos = 0
                    assert self._headers is not None
                    body = b"".join(self._chunks)
                    return _Answer(self._status, self._headers, body, self._keep_alive)
                pos = end + 2
                continue
            size_text = bytes(buffer[pos:end]).split(b";", 1)[0].strip(b" \t")
            if not 0 < len(size_text) <= 16 or size_text.translate(None, _HEX):
                raise _ProtocolError(f"bad chunk size {size_text[:40]!r}")
            size = int(size_text, 16)
            if size == 0:
                self._length = -1
                pos = end + 2
                continue
            start = end + 2
            if len(buffer) < start + size + 2:
                break
            if buffer[start + size : start + size + 2] != b"\r\n":
                raise _ProtocolError("a chunk does not end with CRLF")
            self._chunks.append(bytes(buffer[start : start + size]))
            pos = start + size + 2
        # Drop what has been parsed, so the buffer holds only the unparsed tail.
        del buffer[:pos]
        self._pos = 0
        return None


class _Timeout(Exception):
    """No sign of progress for the read timeout."""


class _NotWritten(Exception):
    """The connection was found closed before anything was written on it."""


class _ClosedBeforeAnswer(Exception):
    """The connection ended before the whole answer arrived."""

    def __init__(self, cause: BaseException | None) -> None:
        super().__init__("the connection closed before the whole answer arrived")
        self.cause = cause


class LeanHTTPSession(AIOHTTPSession):  # type: ignore[misc]  # aiobotocore ships no types
    """aiobotocore's HTTP session, with SES-sized requests sent on lean HTTP/1.1 connections.

    Pass it as ``AioConfig(http_session_cls=LeanHTTPSession)``; :class:`SESTransport` does
    for the client it creates (``lean_http=True``). See the module docstring for what it
    handles itself and what it leaves to aiohttp.
    """

    def __init__(
        self,
        verify: Any = True,
        proxies: dict[str, str] | None = None,
        timeout: Any = None,
        max_pool_connections: int = 10,
        socket_options: Any = None,
        client_cert: Any = None,
        proxies_config: Any = None,
        connector_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            verify=verify,
            proxies=proxies,
            timeout=timeout,
            max_pool_connections=max_pool_connections,
            socket_options=socket_options,
            client_cert=client_cert,
            proxies_config=proxies_config,
            connector_args=connector_args,
        )
        args = dict(connector_args or {})
        # As aiohttp reads it: 0 closes connections after each answer, None keeps them.
        keepalive = args.pop("keepalive_timeout", KEEPALIVE_TIMEOUT)
        #: False when this session leaves every request to aiohttp.
        self.lean = not proxies and client_cert is None and not args
        if isinstance(timeout, (list, tuple)):
            connect_timeout, read_timeout = timeout
        else:
            connect_timeout = read_timeout = timeout
        self._connect_timeout: float | None = connect_timeout or None
        self._read_timeout: float | None = read_timeout or None
        self._keepalive = float("inf") if keepalive is None else float(keepalive)
        self._limit = max(1, int(max_pool_connections or 10))
        self._lean_socket_options = list(socket_options or [])
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open = 0  # connections counted against the limit: idle, busy and connecting
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._ssl: asyncio.Future[ssl.SSLContext] | None = None
        self._lean_closed = False
        #: The event loop of the first lean request (the client belongs to one loop).
        self.loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        idle = sum(len(c) for c in self._idle.values())
        return (
            f"<LeanHTTPSession lean={self.lean} open={self._open} idle={idle} limit={self._limit}>"
        )

    @property
    def connections(self) -> int:
        """Connections open or opening (idle ones included)."""
        return self._open

    async def __aexit__(self, *exc_info: Any) -> None:
        self._lean_closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.pooled = False
                conn.close()
        self._idle.clear()
        self._open = 0
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        await super().__aexit__(*exc_info)

    async def send(self, request: Any) -> Any:
        """Send a prepared botocore request and return its ``AioAWSResponse``."""
        target = _target(request.url) if self.lean else None
        body = request.body
        if body is None:
            body = b""
        elif isinstance(body, str):
            body = body.encode("utf-8")
        elif isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        if target is None or request.stream_output or not isinstance(body, bytes):
            return await super().send(request)
        head = self._head(request, target, body)
        if head is None:
            return await super().send(request)
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        if self._lean_closed:
            raise HTTPClientError(error="the HTTP session is closed")
        url = request.url
        read_timeout = self._read_timeout
        context = getattr(request, "context", None)
        if context is not None and context.get("read_timeout") is not None:
            read_timeout = context["read_timeout"] or None  # a per-request override
        head_request = request.method.upper() == "HEAD"
        # A pooled connection the server closed while it sat idle is found out before
        # anything is written on it; the request then takes the next one (or a new one).
        for _ in range(self._limit + 1):
            conn = await self._acquire(target, url)
            if conn.requests == 0 and context is not None:
                connected = context.get(ON_CONNECTED)
                if connected is not None:
                    connected()
            reuse = False
            try:
                answer = await conn.exchange(head, body, read_timeout, head_request)
                reuse = answer.keep_alive
            except _NotWritten:
                if conn.requests == 0:  # a new connection, closed at once: nothing sent
                    error = ConnectFailedError(
                        errno.ECONNRESET, "the server closed the new connection at once"
                    )
                    raise EndpointConnectionError(endpoint_url=url, error=error) from None
                continue  # a kept-alive one the server closed while idle: take the next
            except _Timeout as exc:
                raise ReadTimeoutError(endpoint_url=url, error=exc) from None
            except _ClosedBeforeAnswer as exc:
                cause = exc.cause or exc
                if isinstance(cause, ssl.SSLError):
                    raise SSLError(endpoint_url=url, error=cause) from cause
                raise ConnectionClosedError(
                    endpoint_url=url, request=request, error=cause
                ) from cause
            except _ProtocolError as exc:
                raise ConnectionClosedError(endpoint_url=url, request=request, error=exc) from exc
            finally:
                self._release(conn, reuse)
            return AioAWSResponse(url, answer.status, answer.headers, _Body(answer.body))
        error = ConnectFailedError(errno.ECONNRESET, "every pooled connection was closed")
        raise EndpointConnectionError(endpoint_url=url, error=error)

    @staticmethod
    def _head(request: Any, target: _Target, body: bytes) -> bytes | None:
        """The request line and headers, or None for requests left to aiohttp."""
        lines = [f"{request.method} {target.path} HTTP/1.1"]
        has_host = False
        for name, value in request.headers.items():
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            text = f"{name}: {value}"
            if "\r" in text or "\n" in text or "\0" in text:
                problem = f"a CR, LF or NUL in the {name!r} header (check the credentials)"
                raise HTTPClientError(error=InvalidRequestError(problem))
            lowered = name.lower()
            if lowered in ("content-length", "accept-encoding", "connection"):
                continue
            if lowered == "transfer-encoding":
                return None  # a streamed upload: aiohttp's job
            if lowered == "host":
                has_host = True
            lines.append(text)
        if not has_host:
            lines.append(f"Host: {target.host_header}")
        lines.append("Accept-Encoding: identity")
        if body or request.method.upper() in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8")

    # ---------------------------------------------------------------- the pool

    async def _acquire(self, target: _Target, url: str) -> _Connection:
        key = (target.scheme, target.host, target.port)
        loop = self.loop
        assert loop is not None
        while True:
            idle = self._idle.get(key)
            if idle:
                now = loop.time()
                while idle:
                    conn = idle.pop()  # the newest: the least likely to be closed by now
                    conn.pooled = False
                    if (
                        not conn.closed
                        and conn.transport is not None
                        and not conn.transport.is_closing()
                        and now - conn.idle_since < self._keepalive
                    ):
                        return conn
                    self._drop(conn)
            if self._open < self._limit or self._close_idle():
                self._open += 1
                try:
                    conn = await self._connect(key, target, url)
                except BaseException:
                    self._open = max(0, self._open - 1)
                    self._wake()
                    raise
                if self._lean_closed:  # closed while connecting: send nothing
                    conn.close()
                    raise HTTPClientError(error="the HTTP session is closed")
                return conn
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # handed a place while being cancelled: pass it on
                raise
            if self._lean_closed:
                raise HTTPClientError(error="the HTTP session is closed")

    def _close_idle(self) -> bool:
        """Make room by closing an idle connection to another endpoint."""
        for conns in self._idle.values():
            if conns:
                conn = conns.pop(0)
                conn.pooled = False
                self._drop(conn)
                return True
        return False

    async def _connect(self, key: tuple[str, str, int], target: _Target, url: str) -> _Connection:
        loop = self.loop
        assert loop is not None
        try:
            context = await self._ssl_context() if target.scheme == "https" else None
        except (OSError, ssl.SSLError) as exc:  # e.g. a missing or unreadable CA bundle
            problem = f"cannot load the CA bundle for TLS: {exc}"
            raise HTTPClientError(error=InvalidRequestError(problem)) from exc
        conn = _Connection(self, loop, key)
        try:
            await asyncio.wait_for(
                self._open_connection(loop, conn, target, context), self._connect_timeout
            )
        except asyncio.TimeoutError as exc:
            raise ConnectTimeoutError(endpoint_url=url, error=exc) from exc
        except (ssl.SSLError, ssl.CertificateError) as exc:
            # The handshake failed: nothing was sent (``connected=False`` says so).
            raise SSLError(endpoint_url=url, error=exc, connected=False) from exc
        except (OSError, UnicodeError) as exc:  # UnicodeError: a host name IDNA refuses
            error = ConnectFailedError(getattr(exc, "errno", None), str(exc))
            raise EndpointConnectionError(endpoint_url=url, error=error) from exc
        sock = conn.transport.get_extra_info("socket") if conn.transport else None
        if sock is not None:
            try:
                for option in self._lean_socket_options:
                    sock.setsockopt(*option)
            except OSError as exc:
                conn.close()
                error = ConnectFailedError(exc.errno, exc.strerror or str(exc))
                raise EndpointConnectionError(endpoint_url=url, error=error) from exc
        return conn

    @staticmethod
    async def _open_connection(
        loop: asyncio.AbstractEventLoop,
        conn: _Connection,
        target: _Target,
        context: ssl.SSLContext | None,
    ) -> None:
        # Happy Eyeballs (RFC 8305) over every address of the host, with aiohappyeyeballs
        # (aiohttp's own dependency): it closes the losing and the cancelled sockets, which
        # asyncio's staggered race does not on every Python we support.
        infos = await loop.getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        if not infos:
            raise OSError(f"no address found for {target.host!r}")
        if aiohappyeyeballs is None:  # pragma: no cover - aiohttp older than 3.10
            family, kind, proto, _, address = infos[0]
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, address)
            except BaseException:
                sock.close()
                raise
        else:
            sock = await aiohappyeyeballs.start_connection(
                infos, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY, interleave=1
            )
        # From here the socket is the transport's: asyncio closes it if the TLS handshake
        # fails or is cancelled (the transport exists before the first suspension).
        await loop.create_connection(
            lambda: conn,
            sock=sock,
            ssl=context,
            server_hostname=target.host if context is not None else None,
        )

    async def _ssl_context(self) -> ssl.SSLContext:
        # Loading the CA bundle reads files: done once, in a worker thread, shared by the
        # connections opening meanwhile (a caller cancelled meanwhile does not cancel it).
        if self._ssl is None:
            self._ssl = asyncio.ensure_future(asyncio.to_thread(self._build_verify_context))
            # Retrieved even if every caller was cancelled meanwhile (no "never retrieved").
            self._ssl.add_done_callback(lambda t: t.cancelled() or t.exception())
        task = self._ssl
        try:
            return await asyncio.shield(task)
        except Exception:
            if self._ssl is task:
                self._ssl = None  # the next connection tries again
            raise

    def _release(self, conn: _Connection, reuse: bool) -> None:
        if (
            reuse
            and self._keepalive > 0
            and not conn.closed
            and not self._lean_closed
            and self.loop is not None
        ):
            conn.idle_since = self.loop.time()
            conn.pooled = True
            self._idle.setdefault(conn.key, []).append(conn)
        else:
            if not conn.closed:
                conn._abort()
            self._open = max(0, self._open - 1)
        self._wake()

    def _drop(self, conn: _Connection) -> None:
        conn.close()
        self._open = max(0, self._open - 1)

    def _forget(self, conn: _Connection) -> None:
        """An idle connection was closed by the server: take it out of the pool."""
        conns = self._idle.get(conn.key)
        if conns and conn in conns:
            conns.remove(conn)
            conn.pooled = False
            self._open = max(0, self._open - 1)
            self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
