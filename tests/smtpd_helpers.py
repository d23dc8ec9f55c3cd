"""A real aiosmtpd server on a free loopback port, in the test's own event loop.

``SMTPServer`` counts connections (opened, open now, most open at once), records every
byte its clients sent, can cap concurrent sessions as Postfix does
(``smtpd_client_connection_count_limit``: ``421`` at connect beyond the cap), and hands
every protocol event to a ``RecordingHandler``, which stores accepted messages and can be
told to refuse recipients, answer MAIL or DATA with given replies, slow DATA or QUIT down
or drop the connection instead of answering.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

#: What Postfix answers at connect beyond ``smtpd_client_connection_count_limit``.
TOO_MANY_CONNECTIONS = b"421 4.7.0 Error: too many connections from 127.0.0.1\r\n"


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str]
    #: Number of the connection (1 = the first the server accepted).
    connection: int


@dataclass
class RecordingHandler:
    """aiosmtpd handler: records messages; scripted refusals, replies, delays and drops."""

    messages: list[Received] = field(default_factory=list)
    #: Recipient (lower case) → reply to its RCPT, e.g. ``"550 5.1.1 no such user"``.
    refuse: dict[str, str] = field(default_factory=dict)
    #: Like ``refuse``, for the next RCPT of that recipient only.
    refuse_once: dict[str, str] = field(default_factory=dict)
    #: Replies to the next MAIL commands instead of 250.
    mail_replies: list[str] = field(default_factory=list)
    #: Replies to the next ends of DATA instead of 250 (the message is then not stored).
    data_replies: list[str] = field(default_factory=list)
    #: Seconds each DATA waits before answering.
    data_delay: float = 0.0
    #: The next N ends of DATA close the connection without an answer (message stored).
    drop_after_data: int = 0
    #: The next N ends of DATA never answer (message stored).
    hang_after_data: int = 0
    #: Seconds each QUIT waits before answering (the session stays open meanwhile).
    quit_delay: float = 0.0
    in_data: int = 0
    max_in_data: int = 0
    mails: int = 0
    #: ``loop.time()`` of every MAIL command.
    mail_times: list[float] = field(default_factory=list)
    rsets: int = 0
    quits: int = 0

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.mails += 1
        self.mail_times.append(asyncio.get_running_loop().time())
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.refuse_once.pop(address.lower(), None) or self.refuse.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.in_data += 1
        self.max_in_data = max(self.max_in_data, self.in_data)
        try:
            if self.data_delay:
                await asyncio.sleep(self.data_delay)
            if self.data_replies:
                return self.data_replies.pop(0)
            content = envelope.original_content or b""
            self.messages.append(
                Received(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=list(envelope.rcpt_tos),
                    data=content,
                    mail_options=list(envelope.mail_options),
                    connection=getattr(server, "number", 0),
                )
            )
            if self.drop_after_data:
                self.drop_after_data -= 1
                assert server.transport is not None
                server.transport.close()
                await asyncio.sleep(3600)  # cancelled by connection_lost
            if self.hang_after_data:
                self.hang_after_data -= 1
                await asyncio.sleep(3600)
            return f"250 OK queued as {len(self.messages)}"
        finally:
            self.in_data -= 1

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.rsets += 1
        return "250 OK"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quits += 1
        if self.quit_delay:
            await asyncio.sleep(self.quit_delay)
        return "221 Bye"


def password_authenticator(users: dict[str, str]) -> Any:
    """An aiosmtpd authenticator accepting ``users`` (login → password)."""

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode()
            if users.get(login) == auth_data.password.decode():
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    return authenticate


class _CountingSMTP(SMTP):
    """aiosmtpd's protocol, reporting connects and disconnects to its server."""

    def __init__(self, owner: SMTPServer, handler: Any, **kwargs: Any) -> None:
        self.owner = owner
        self.number = 0
        self._counted = False
        #: Refused at connect (over the server's session cap): aiosmtpd never ran.
        self._refused = False
        super().__init__(handler, **kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # STARTTLS calls this again on the same protocol
        if first and self.owner._over_cap():
            self._refused = self._counted = True
            self.owner._connected(self, refused=True)
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(TOO_MANY_CONNECTIONS)
            transport.close()
            return
        super().connection_made(transport)
        if first:
            self._counted = True
            self.number = self.owner._connected(self)

    def data_received(self, data: bytes) -> None:
        self.owner.received_bytes += data
        if not self._refused:
            super().data_received(data)

    def eof_received(self) -> bool | None:
        return None if self._refused else super().eof_received()

    def connection_lost(self, error: Exception | None) -> None:
        if not self._refused:
            super().connection_lost(error)
        if self._counted:
            self._counted = False
            self.owner._disconnected(self)


class SMTPServer:
    """aiosmtpd on ``127.0.0.1``, a free port, in the running loop. Use ``async with``.

    ``ssl_context`` makes it implicit TLS; ``tls_context`` offers STARTTLS.
    ``max_sessions`` caps the sessions open at once: a connection beyond it gets
    ``421 4.7.0 Error: too many connections`` and is closed, as Postfix does (the attribute
    may be changed while the server runs). Other keywords go to aiosmtpd's ``SMTP``
    (``authenticator``, ``auth_require_tls``, ``require_starttls``, ``enable_SMTPUTF8``,
    ``data_size_limit``...).
    """

    def __init__(
        self,
        handler: RecordingHandler | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_sessions: int | None = None,
        **smtp_kwargs: Any,
    ) -> None:
        self.handler = handler or RecordingHandler()
        self.ssl_context = ssl_context
        smtp_kwargs.setdefault("hostname", "localhost")  # no FQDN lookup per connection
        smtp_kwargs.setdefault("enable_SMTPUTF8", True)
        self.smtp_kwargs = smtp_kwargs
        self.host = "127.0.0.1"
        self.port = 0
        #: Sessions allowed at once (None: no cap); more are refused with ``421`` at connect.
        self.max_sessions = max_sessions
        #: Connections accepted so far (refused ones not included).
        self.connections = 0
        #: Connections refused at connect because of ``max_sessions``.
        self.refused = 0
        #: TCP connections open now, refused ones included until they are closed.
        self.open = 0
        #: Most TCP connections open at the same time, refused ones included.
        self.max_open = 0
        #: Every byte the clients sent (after STARTTLS: as decrypted).
        self.received_bytes = bytearray()
        self._live: set[_CountingSMTP] = set()
        self._server: asyncio.Server | None = None

    def _factory(self) -> _CountingSMTP:
        return _CountingSMTP(
            self, self.handler, loop=asyncio.get_running_loop(), **self.smtp_kwargs
        )

    def _over_cap(self) -> bool:
        accepted = sum(1 for p in self._live if not p._refused)
        return self.max_sessions is not None and accepted >= self.max_sessions

    def _connected(self, protocol: _CountingSMTP, *, refused: bool = False) -> int:
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        self._live.add(protocol)
        if refused:
            self.refused += 1
            return 0
        self.connections += 1
        return self.connections

    def _disconnected(self, protocol: _CountingSMTP) -> None:
        self.open -= 1
        self._live.discard(protocol)

    @property
    def messages(self) -> list[Received]:
        """Messages accepted so far."""
        return self.handler.messages

    def delivered(self) -> Counter[str]:
        """How many times each Message-ID was accepted."""
        return Counter(_message_id(m.data) for m in self.handler.messages)

    def drop_all(self) -> None:
        """Close every open connection at once, as a server restart would."""
        for protocol in list(self._live):
            if protocol.transport is not None:
                protocol.transport.close()

    async def __aenter__(self) -> SMTPServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._factory, self.host, 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        tasks = [
            p._handler_coroutine
            for p in self._live
            if not p._refused and p._handler_coroutine is not None
        ]
        self.drop_all()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        # let transports finish closing (SSL shutdown) before the loop goes away
        for _ in range(5):
            await asyncio.sleep(0)


def _message_id(data: bytes) -> str:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"message-id":
            return value.strip().decode()
    return ""
