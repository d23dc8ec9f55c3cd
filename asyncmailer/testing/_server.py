"""The endpoint's HTTP server: aiohttp's low-level server, adapted to the SES modules.

All HTTP/1.1 is done by :class:`aiohttp.web.Server` (aiohttp's documented low-level
server; its request parser is llhttp's C parser when aiohttp's extensions are built):
parsing and validating request heads, ``Content-Length`` and chunked bodies, keep-alive,
pipelining, limits on request lines and header fields, and writing responses. aiohttp is
already installed with aiobotocore, so this adds no dependency.

This module only adapts it: it reads each body (at most :data:`MAX_BODY` octets) into a
small :class:`Request` for the SES API modules, and carries out their :class:`Response` --
an answer after a delay, or the connection closed with no answer (fault injection). It
also counts connections, for the endpoint's statistics.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

__all__ = ["MAX_BODY", "App", "HTTPServer", "Request", "Response"]

_log = logging.getLogger("asyncmailer.testing")
#: aiohttp reports malformed requests and failed handlers here.
_http_log = logging.getLogger("asyncmailer.testing.http")

#: Requests with a larger body are refused (413) and the connection closed. SESv2 accepts
#: 40 MB messages, which are ~54 MB once base64-encoded inside JSON.
MAX_BODY = 128 * 1024 * 1024
#: Seconds :meth:`HTTPServer.aclose` lets aiohttp wind down handlers and connections.
_SHUTDOWN_TIMEOUT = 1.0


class Request:
    """One request, as the SES API modules see it (aiohttp parsed it)."""

    __slots__ = ("body", "headers", "method", "path", "query")

    def __init__(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> None:
        #: ``"GET"``, ``"POST"``...
        self.method = method
        #: The target's path, still percent-encoded.
        self.path = path
        #: The target's query string without ``?`` (``""`` when absent), still encoded.
        self.query = query
        #: The header fields; lookups ignore case.
        self.headers = headers
        #: The body, de-chunked.
        self.body = body


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


class _Refused(Exception):
    """The body cannot be read: answer ``status`` and close."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Connection(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted and closable by the server."""

    def __init__(self, server: HTTPServer, inner: asyncio.Protocol) -> None:
        self._server = server
        self._inner = inner
        self._transport: asyncio.BaseTransport | None = None
        # The hot path goes straight to aiohttp's protocol.
        self.data_received = inner.data_received  # type: ignore[method-assign]
        self.eof_received = inner.eof_received  # type: ignore[method-assign]
        self.pause_writing = inner.pause_writing  # type: ignore[method-assign]
        self.resume_writing = inner.resume_writing  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._server.connection_opened(self)
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connection_closed(self)
        self._inner.connection_lost(exc)

    def abort(self) -> None:
        """Hang up at once (the server is shutting down)."""
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.abort()  # type: ignore[attr-defined]


class HTTPServer:
    """Serve ``app`` on ``host:port`` (port 0 picks a free one) with aiohttp."""

    def __init__(
        self,
        app: App,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        #: TLS for the listening socket (None: plain HTTP).
        self.ssl_context = ssl_context
        #: The application callable.
        self.app = app
        #: The address to bind.
        self.host = host
        #: The port asked for; after :meth:`start`, the port bound.
        self.port = port
        #: Connections accepted since start.
        self.connections_opened = 0
        self._connections: set[_Connection] = set()
        self._web: web.Server | None = None
        self._server: asyncio.Server | None = None

    @property
    def connections_current(self) -> int:
        """Connections open right now."""
        return len(self._connections)

    async def start(self) -> None:
        """Bind and start accepting connections."""
        web_server = web.Server(
            self._handle,
            # A client that hangs up while its answer is delayed is no longer in flight.
            handler_cancellation=True,
            access_log=None,
            # A compressed body would be inflated without the MAX_BODY check.
            auto_decompress=False,
            logger=_http_log,
        )
        self._web = web_server

        def accept() -> asyncio.Protocol:
            return _Connection(self, web_server())

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            accept, self.host, self.port, backlog=1024, ssl=self.ssl_context
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        """Stop accepting, hang up on every connection, and wait until all are closed."""
        server, web_server = self._server, self._web
        if server is None or web_server is None:
            return
        self._server = None
        server.close()
        for connection in list(self._connections):
            connection.abort()
        await web_server.shutdown(_SHUTDOWN_TIMEOUT)
        await server.wait_closed()

    def connection_opened(self, connection: _Connection) -> None:
        """Called by a connection when it starts."""
        self.connections_opened += 1
        self._connections.add(connection)

    def connection_closed(self, connection: _Connection) -> None:
        """Called by a connection when it ends."""
        self._connections.discard(connection)

    # --------------------------------------------------------------------------- requests

    async def _handle(self, http: web.BaseRequest) -> web.StreamResponse:
        try:
            body = await _read_body(http)
        except _Refused as exc:
            return await _refuse(http, exc.status)
        path, _, query = http.raw_path.partition("?")
        result = self.app(Request(http.method, path, query, http.headers, body))
        response = result if isinstance(result, Response) else await _settle(result)
        try:
            if response.delay > 0:
                await asyncio.sleep(response.delay)
            if response.drop:
                transport = http.transport
                if transport is not None:
                    transport.close()
                # Never written: aiohttp finds the connection closed and lets it go.
                return web.Response()
            return web.Response(
                status=response.status, body=response.body, headers=response.headers
            )
        finally:
            if response.on_done is not None:
                response.on_done()


async def _read_body(http: web.BaseRequest) -> bytes:
    """The request's body, read whole; too large or malformed raises :class:`_Refused`."""
    if not http.body_exists:
        return b""
    length = http.content_length
    if length is not None and length > MAX_BODY:
        raise _Refused(413)
    if http.version >= (1, 1) and http.headers.get("Expect", "").lower() == "100-continue":
        # aiohttp's low-level server leaves the interim answer to the application.
        transport = http.transport
        if transport is not None:
            transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    try:
        if length is not None:
            return await http.content.readexactly(length)
        body = bytearray()
        async for chunk in http.content.iter_any():
            body += chunk
            if len(body) > MAX_BODY:
                raise _Refused(413)
        return bytes(body)
    except (asyncio.IncompleteReadError, web.RequestPayloadError):
        raise _Refused(400) from None


async def _refuse(http: web.BaseRequest, status: int) -> web.StreamResponse:
    """Answer ``status`` and close: the rest of the body is not worth reading."""
    answer = web.Response(status=status, text=f"{status}: the request body was refused")
    answer.force_close()
    await answer.prepare(http)
    await answer.write_eof()
    transport = http.transport
    if transport is not None:
        transport.close()
    return answer


async def _settle(pending: Awaitable[Response]) -> Response:
    """Await the application's answer; if the client leaves first, still finish it.

    The application may be storing a message in a thread: the response's ``on_done``
    must run when it is done, even though nobody will read the answer.
    """
    task = asyncio.ensure_future(pending)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_finish_abandoned)
        raise


def _finish_abandoned(task: asyncio.Future[Response]) -> None:
    if task.cancelled() or task.exception() is not None:
        return
    on_done = task.result().on_done
    if on_done is not None:
        on_done()
