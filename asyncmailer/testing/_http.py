"""A minimal HTTP/1.1 server on :class:`asyncio.Protocol`, built for speed on loopback.

It knows just enough HTTP for AWS SDK clients: keep-alive, ``Content-Length`` and
``Transfer-Encoding: chunked`` request bodies, ``Expect: 100-continue``, one request at a
time per connection (pipelined requests wait in the buffer). The application is a plain
callable ``app(request) -> Response`` (or an awaitable of one, for work that must leave
the event loop); a :class:`Response` may ask for a delay before it is written, or for the
connection to be closed without any answer, which is how the fault injection works.

Nothing here is SES-specific; see ``_endpoint.py`` for the application.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import cast

__all__ = ["App", "HTTPServer", "Request", "Response"]

_log = logging.getLogger("asyncmailer.testing")

#: Requests with a larger header block are refused (431) and the connection closed.
MAX_HEAD = 64 * 1024
#: Requests with a larger body are refused (413) and the connection closed. SESv2 accepts
#: 40 MB messages, which are ~54 MB once base64-encoded inside JSON.
MAX_BODY = 128 * 1024 * 1024

_REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


class Request:
    """One parsed HTTP request."""

    __slots__ = ("_head", "_headers", "body", "keep_alive", "method", "path", "query")

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        head: str | dict[str, str],
        body: bytes,
        keep_alive: bool,
    ) -> None:
        #: ``"GET"``, ``"POST"``...
        self.method = method
        #: The target's path, still percent-encoded.
        self.path = path
        #: The target's query string without ``?`` (``""`` when absent).
        self.query = query
        #: The de-chunked body.
        self.body = body
        #: Whether the connection stays open after the response.
        self.keep_alive = keep_alive
        self._head = head if isinstance(head, str) else ""
        self._headers = head if isinstance(head, dict) else None

    @property
    def headers(self) -> dict[str, str]:
        """Header names lower-cased; a repeated header keeps its last value (parsed lazily)."""
        if self._headers is None:
            self._headers = parse_headers(self._head)
        return self._headers


class Response:
    """What to answer, when, or whether to hang up instead."""

    __slots__ = ("body", "delay", "drop", "headers", "on_done", "status")

    def __init__(
        self,
        status: int = 200,
        body: bytes = b"",
        *,
        headers: tuple[tuple[str, str], ...] = (),
        delay: float = 0.0,
        drop: bool = False,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        #: HTTP status code.
        self.status = status
        #: Response body; ``Content-Length`` is added automatically.
        self.body = body
        #: Extra headers (``Content-Type``...).
        self.headers = headers
        #: Seconds to wait before answering (or hanging up).
        self.delay = delay
        #: Close the connection instead of answering.
        self.drop = drop
        #: Called once when the response was written, dropped, or the client went away.
        self.on_done = on_done


#: The application: returns a response, or an awaitable of one.
App = Callable[[Request], "Response | Awaitable[Response]"]


def _error_response(status: int) -> Response:
    reason = _REASONS.get(status, "Error").encode()
    return Response(status, reason, headers=(("Content-Type", "text/plain"),))


class _BadRequest(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Head:
    """The parsed request line and framing headers, kept while the body arrives."""

    __slots__ = (
        "body_start",
        "chunked",
        "continued",
        "length",
        "lower",
        "method",
        "target",
        "text",
        "v10",
    )

    def __init__(self, method: str, target: str, v10: bool, text: str, body_start: int) -> None:
        self.method = method
        self.target = target
        self.v10 = v10
        #: The header block, request line included, without the final blank line.
        self.text = text
        #: ``text`` lower-cased, to find header names.
        self.lower = text.lower()
        self.body_start = body_start
        self.length = 0
        self.chunked = False
        self.continued = False


def _field(text: str, lower: str, name: str) -> str | None:
    """The value of header ``name`` (lower-case), found without parsing every header."""
    key = f"\r\n{name}:"
    index = lower.find(key)
    if index < 0:
        return None
    start = index + len(key)
    end = text.find("\r\n", start)
    return (text[start:end] if end >= 0 else text[start:]).strip()


def parse_headers(text: str) -> dict[str, str]:
    """All header fields of a header block (names lower-cased; the last repeat wins)."""
    headers: dict[str, str] = {}
    for line in text.split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def _parse_head(buf: bytearray, end: int) -> _Head:
    text = bytes(buf[:end]).decode("latin-1")
    line_end = text.find("\r\n")
    parts = (text[:line_end] if line_end >= 0 else text).split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(400)
    head = _Head(parts[0], parts[1], parts[2] == "HTTP/1.0", text, end + 4)
    # Only the framing headers are looked at here; Request.headers parses the rest on demand.
    lower = head.lower
    encoding = _field(text, lower, "transfer-encoding")
    if encoding is not None and "chunked" in encoding.lower():
        head.chunked = True
    else:
        raw_length = _field(text, lower, "content-length")
        if raw_length is not None:
            if not raw_length.isdigit():
                raise _BadRequest(400)
            head.length = int(raw_length)
            if head.length > MAX_BODY:
                raise _BadRequest(413)
    return head


def _dechunk(buf: bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a complete chunked body starting at ``start``: (body, end) or None if incomplete."""
    pieces: list[bytes] = []
    pos = start
    total = 0
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size_text = bytes(buf[pos:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _BadRequest(400) from None
        pos = line_end + 2
        if size == 0:
            # Skip trailers up to the empty line.
            while True:
                line_end = buf.find(b"\r\n", pos)
                if line_end < 0:
                    return None
                if line_end == pos:
                    return b"".join(pieces), line_end + 2
                pos = line_end + 2
        total += size
        if total > MAX_BODY:
            raise _BadRequest(413)
        if len(buf) < pos + size + 2:
            return None
        pieces.append(bytes(buf[pos : pos + size]))
        pos += size + 2


class _Connection(asyncio.Protocol):
    """One client connection: parse, dispatch, answer, repeat."""

    __slots__ = (
        "_buf",
        "_busy",
        "_closed",
        "_head",
        "_keep_alive",
        "_loop",
        "_pending",
        "_server",
        "_task",
        "_timer",
        "_transport",
    )

    def __init__(self, server: HTTPServer) -> None:
        self._server = server
        self._loop = server.loop
        self._buf = bytearray()
        self._head: _Head | None = None
        self._transport: asyncio.Transport | None = None
        self._busy = False
        self._closed = False
        self._keep_alive = True
        self._pending: Response | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Response] | None = None

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, but not always an asyncio.Transport subclass (uvloop's is not).
        self._transport = cast(asyncio.Transport, transport)
        self._server.connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # A running application task is left to finish: it may be storing a message, and
        # its response's on_done must still run (see _schedule).
        self._finish_pending()
        self._server.connection_closed(self)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self._busy:
            self._process()

    # ------------------------------------------------------------------------- internals

    def close(self) -> None:
        """Hang up (used when the server shuts down)."""
        if self._transport is not None and not self._closed:
            self._transport.abort()

    def _process(self) -> None:
        while not self._busy and not self._closed:
            try:
                request = self._next_request()
            except _BadRequest as exc:
                self._keep_alive = False
                self._write(_error_response(exc.status))
                return
            if request is None:
                return
            self._dispatch(request)

    def _next_request(self) -> Request | None:
        buf = self._buf
        head = self._head
        if head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise _BadRequest(431)
                return None
            head = self._head = _parse_head(buf, end)
        if head.chunked:
            decoded = _dechunk(buf, head.body_start)
            if decoded is None:
                self._maybe_continue(head)
                return None
            body, stop = decoded
        else:
            stop = head.body_start + head.length
            if len(buf) < stop:
                self._maybe_continue(head)
                return None
            # One copy (slicing the bytearray first would make two); the view must be
            # released before the buffer is resized below.
            with memoryview(buf) as view:
                body = bytes(view[head.body_start : stop])
        del buf[:stop]
        self._head = None
        connection = (_field(head.text, head.lower, "connection") or "").lower()
        keep_alive = connection == "keep-alive" if head.v10 else connection != "close"
        path, _, query = head.target.partition("?")
        return Request(head.method, path, query, head.text, body, keep_alive)

    def _maybe_continue(self, head: _Head) -> None:
        if (
            not head.continued
            and (_field(head.text, head.lower, "expect") or "").lower() == "100-continue"
            and self._transport is not None
        ):
            head.continued = True
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _dispatch(self, request: Request) -> None:
        self._keep_alive = request.keep_alive
        self._busy = True
        try:
            result = self._server.app(request)
        except Exception:
            _log.exception("the application failed on %s %s", request.method, request.path)
            result = _error_response(500)
        if isinstance(result, Response):
            self._schedule(result)
        else:
            self._task = self._loop.create_task(_as_coroutine(result))
            self._task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Response]) -> None:
        self._task = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            _log.error("the application failed", exc_info=exc)
            self._schedule(_error_response(500))
        else:
            self._schedule(task.result())

    def _schedule(self, response: Response) -> None:
        self._pending = response
        if self._closed:
            self._finish_pending()
        elif response.delay > 0:
            self._timer = self._loop.call_later(response.delay, self._answer)
        else:
            self._answer()

    def _answer(self) -> None:
        self._timer = None
        response = self._pending
        if response is None or self._closed:
            return
        if response.drop:
            self._keep_alive = False
            assert self._transport is not None
            self._transport.close()
            self._finish_pending()
            return
        self._write(response)
        self._finish_pending()
        self._busy = False
        if self._buf and not self._closed:
            self._process()

    def _write(self, response: Response) -> None:
        transport = self._transport
        assert transport is not None
        body = response.body
        lines = [
            f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}\r\n"
            f"Content-Length: {len(body)}\r\n"
        ]
        lines.extend(f"{name}: {value}\r\n" for name, value in response.headers)
        if not self._keep_alive:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        # One write for small responses keeps it to one send() call.
        if len(body) < 16384:
            transport.write(head + body)
        else:
            transport.writelines((head, body))
        if not self._keep_alive:
            transport.close()

    def _finish_pending(self) -> None:
        response = self._pending
        self._pending = None
        if response is not None and response.on_done is not None:
            response.on_done()


async def _as_coroutine(awaitable: Awaitable[Response]) -> Response:
    return await awaitable


class HTTPServer:
    """Serve ``app`` on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, app: App, *, host: str = "127.0.0.1", port: int = 0) -> None:
        #: The application callable.
        self.app = app
        #: The address to bind.
        self.host = host
        #: The port asked for; after :meth:`start`, the port bound.
        self.port = port
        #: Connections accepted since start.
        self.connections_opened = 0
        self._connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self.loop = asyncio.get_running_loop()

    @property
    def connections_current(self) -> int:
        """Connections open right now."""
        return len(self._connections)

    async def start(self) -> None:
        """Bind and start accepting connections."""
        self._server = await self.loop.create_server(
            lambda: _Connection(self), self.host, self.port, backlog=1024
        )
        sockname = self._server.sockets[0].getsockname()
        self.port = int(sockname[1])

    async def aclose(self) -> None:
        """Stop accepting, hang up on every connection, and wait until the socket is closed."""
        server = self._server
        if server is None:
            return
        self._server = None
        server.close()
        for connection in list(self._connections):
            connection.close()
        await server.wait_closed()

    def connection_opened(self, connection: _Connection) -> None:
        """Called by a connection when it starts."""
        self.connections_opened += 1
        self._connections.add(connection)

    def connection_closed(self, connection: _Connection) -> None:
        """Called by a connection when it ends."""
        self._connections.discard(connection)
