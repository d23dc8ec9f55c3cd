"""SMTP over aiosmtplib, with a pool of reused connections.

Example::

    async with SMTPTransport(hostname="smtp.example.com", port=587, start_tls=True,
                             username="app", password=secret, max_connections=5) as smtp:
        result = await smtp.send_mail(from_="shop@example.com", to="ada@example.com",
                                      subject="Hi", text="Hello")
        print(result.response)   # "250 2.0.0 Ok: queued as 4Xyz"

The pool keeps up to ``max_connections`` SMTP sessions open (the base class's semaphore
bounds the sends in flight to the same number) and reuses them: a connection carries at
most ``max_messages_per_connection`` messages, and is closed (QUIT) after
``idle_timeout`` seconds unused. A session counts against ``max_connections`` from its
connect until its socket is closed, QUIT included. A pooled connection the server closed
meanwhile is noticed at ``MAIL FROM``, before anything was sent, and replaced at once. A
new session refused while others are open (Postfix's ``421 too many connections``)
shrinks the pool to what the server accepts: the send waits for an open session, and
one session more is tried every ``connection_probe_interval`` seconds.

Credentials are only sent over TLS (implicit, or STARTTLS): a session without it raises
:class:`ConfigurationError` before AUTH unless ``allow_insecure_auth=True``.

How SMTP outcomes map to :mod:`asyncmailer.errors` (all in :func:`_map_smtp_error`), by
the rule of that module; the outcome is the class's own:

=====================================  =============================================
4xx reply (before or after DATA)        :class:`ServiceUnavailableError`, retry-safe
``454 Throttling failure: Maximum       :class:`SendingRateExceededError`, retry-safe
sending rate exceeded``                 (Amazon SES's SMTP interface)
``Daily message quota exceeded``        :class:`DailyQuotaExceededError`, final
5xx reply to MAIL, RCPT or DATA         :class:`MessageRejectedError`, final
5xx greeting or reply while connecting  :class:`ServiceRefusedError`, final
recipients refused (5xx, or delivered   :class:`RecipientsRefusedError`, final
to the others)
recipients refused, 4xx only, nothing   :class:`RecipientsDeferredError`, retry-safe
sent
AUTH refused (5xx)                      :class:`AccessDeniedError`, final
AUTH refused for now (4xx)              :class:`ServiceUnavailableError`, retry-safe
timeout while connecting                :class:`ConnectTimeoutError`, retry-safe
timeout at MAIL FROM or RCPT TO         :class:`ServiceUnavailableError`, retry-safe
timeout during DATA                     :class:`DeliveryTimeoutError`, ambiguous
connection lost before DATA             :class:`ServiceUnavailableError`, retry-safe
connection lost during DATA             :class:`DeliveryUnknownError`, ambiguous
TLS handshake / certificate failure     :class:`ServiceRefusedError`, final
STARTTLS or AUTH not offered            :class:`ConfigurationError`
credentials, no TLS on the session      :class:`ConfigurationError` (``allow_insecure_auth``)
4xx greeting, others open               none: the send waits for an open session
SMTPUTF8 needed, server lacks it        :class:`SMTPUTF8RequiredError` (nothing sent)
bigger than the server's SIZE           :class:`MessageTooLargeError` (nothing sent)
=====================================  =============================================

**Refused recipients.** With ``refused_recipients="abort"`` (the default, and what SES
does with an invalid recipient) a refusal at RCPT ends the transaction with RSET before
DATA: nobody gets the message and :class:`RecipientsRefusedError` maps each refused
address to its ``(code, text)``; when every refusal was a 4xx it is
:class:`RecipientsDeferredError` instead (retry-safe, same ``refused``). With
``"deliver"`` the message goes to the accepted recipients and *then*
:class:`RecipientsRefusedError` is raised, final (a retry would duplicate the message for
the others), with the delivery noted in its text. When every recipient is refused, nothing
is sent in either mode.

Credentials are never shown in ``repr`` or logs. Requires ``pip install 'asyncmailer[smtp]'``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import anyio.to_thread

from asyncmailer.errors import (
    AccessDeniedError,
    ConfigurationError,
    ConnectTimeoutError,
    DailyQuotaExceededError,
    DeliveryError,
    DeliveryTimeoutError,
    DeliveryUnknownError,
    MailError,
    MessageError,
    MessageRejectedError,
    MessageTooLargeError,
    RecipientsDeferredError,
    RecipientsRefusedError,
    SendingRateExceededError,
    ServiceRefusedError,
    ServiceUnavailableError,
    SMTPUTF8RequiredError,
)
from asyncmailer.message import Message
from asyncmailer.options import SMTPPool, TLSSettings, TransportOptions
from asyncmailer.result import ComposedMessage
from asyncmailer.transports.base import Delivery, Transport, TransportState

if TYPE_CHECKING:
    import aiosmtplib
    from typing_extensions import Unpack

__all__ = ["SMTPTransport"]

logger = logging.getLogger("asyncmailer.smtp")

_INSTALL_HINT = "SMTPTransport needs aiosmtplib: pip install 'asyncmailer[smtp]'"

#: Where in the SMTP dialogue an error happened; decides what a failure means.
Phase = Literal["connect", "mail", "rcpt", "data"]
RefusedPolicy = Literal["abort", "deliver"]


def _require_aiosmtplib() -> None:
    try:
        import aiosmtplib  # noqa: F401
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(_INSTALL_HINT) from exc


class _StaleConnectionError(Exception):
    """A pooled connection turned out to be closed before MAIL FROM: nothing was sent."""


class _Connection:
    """One pooled SMTP session."""

    __slots__ = (
        "clean",
        "client",
        "closing",
        "idle_since",
        "idle_timer",
        "number",
        "pooled",
        "socket",
        "transactions",
    )

    def __init__(self, client: aiosmtplib.SMTP, number: int) -> None:
        self.client = client
        #: Sequence number, for logs.
        self.number = number
        #: The TCP socket (asyncio's ``TransportSocket``): closed means the slot is free.
        self.socket: Any = client.get_transport_info("socket")
        #: True once it is being closed: its slot is released once, when the socket is.
        self.closing = False
        #: MAIL FROM commands issued on this connection.
        self.transactions = 0
        #: True while no transaction is half done (the connection may be reused).
        self.clean = True
        #: True once it went back to the pool: the server may have closed it since.
        self.pooled = False
        self.idle_since = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None


class _Slot:
    """Permission to open one session; ``probe``: one more than the server last accepted."""

    __slots__ = ("probe",)

    def __init__(self, probe: bool) -> None:
        self.probe = probe


class SMTPTransport(Transport):
    """Send through an SMTP server with aiosmtplib, over a pool of reused connections.

    Example::

        SMTPTransport(hostname="smtp.example.com", start_tls=True, username="app",
                      password=secret, max_connections=5)

    Connection keywords are aiosmtplib's: ``hostname``, ``port`` (default 465 with
    ``use_tls``, 587 with ``start_tls=True``, else 25), ``username``, ``password``,
    ``use_tls`` (implicit TLS), ``start_tls`` (``None``: upgrade when offered, ``True``:
    required, ``False``: never), ``timeout`` (seconds, per command), ``local_hostname``
    (default: this host's FQDN, looked up once when the transport opens),
    ``source_address``, ``oauth_token_generator`` (XOAUTH2). Certificates:
    ``tls`` (:class:`~asyncmailer.options.TLSSettings`: verification, CA bundle, client
    certificate).

    Credentials are only sent over TLS: without ``use_tls``, and when the server does not
    offer STARTTLS, the session is refused with :class:`ConfigurationError` before AUTH,
    unless ``allow_insecure_auth=True`` (a trusted network, a local relay).

    Pool: ``max_connections`` (default 5) bounds both the sends in flight and the open
    sessions, counted from connect until the socket is closed (QUIT included); ``pool``
    (:class:`~asyncmailer.options.SMTPPool`) sets the messages per session (default 100),
    the idle timeout (default 60 s) and the probe interval. A server that refuses a new
    session while others are open (Postfix's ``421 too many connections``) shrinks the
    pool to the sessions it accepted; sends wait for those, and one more session is tried
    ``connection_probe_interval`` seconds later (default 10, doubled while refused).
    ``refused_recipients``: ``"abort"`` or ``"deliver"`` (see the module docs).

    ``limits`` (``sending_rate`` in messages per second), ``retry`` and ``dkim`` work as
    for every transport (:class:`Transport`).
    """

    name = "smtp"
    default_max_connections = 5

    def __init__(
        self,
        *,
        hostname: str = "localhost",
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool = False,
        start_tls: bool | None = None,
        allow_insecure_auth: bool = False,
        tls: TLSSettings | None = None,
        timeout: float | None = 60.0,
        local_hostname: str | None = None,
        source_address: tuple[str, int] | None = None,
        oauth_token_generator: Callable[[], Awaitable[str]] | None = None,
        pool: SMTPPool | None = None,
        refused_recipients: RefusedPolicy = "abort",
        **options: Unpack[TransportOptions],
    ) -> None:
        _require_aiosmtplib()
        super().__init__(**options)
        if tls is None:
            tls = TLSSettings()
        elif not isinstance(tls, TLSSettings):
            raise ConfigurationError(
                f"tls must be a TLSSettings, not {type(tls).__name__}", option="tls"
            )
        if pool is None:
            pool = SMTPPool()
        elif not isinstance(pool, SMTPPool):
            raise ConfigurationError(
                f"pool must be an SMTPPool, not {type(pool).__name__}", option="pool"
            )
        if use_tls and start_tls:
            raise ConfigurationError(
                "use_tls (implicit TLS) and start_tls (STARTTLS) exclude each other",
                option="start_tls",
            )
        if password is not None and username is None:
            raise ConfigurationError("password given without username", option="username")
        if oauth_token_generator is not None and username is None:
            raise ConfigurationError(
                "oauth_token_generator needs the username it authenticates", option="username"
            )
        if password is not None and oauth_token_generator is not None:
            raise ConfigurationError(
                "pass either password or oauth_token_generator", option="oauth_token_generator"
            )
        if username is not None and start_tls is False and not use_tls and not allow_insecure_auth:
            raise ConfigurationError(
                "start_tls=False without use_tls would send the credentials in the clear; "
                "use TLS, or pass allow_insecure_auth=True for a trusted network",
                option="allow_insecure_auth",
            )
        if timeout is not None and timeout <= 0:
            raise ConfigurationError("timeout must be positive or None", option="timeout")
        if refused_recipients not in ("abort", "deliver"):
            raise ConfigurationError(
                f"refused_recipients must be 'abort' or 'deliver', not {refused_recipients!r}",
                option="refused_recipients",
            )
        #: Certificate checks and client certificate.
        self.tls = tls
        #: Session reuse: messages per session, idle timeout, probe interval.
        self.pool = pool
        max_messages_per_connection = pool.max_messages_per_connection
        idle_timeout = pool.idle_timeout
        connection_probe_interval = pool.connection_probe_interval
        validate_certs = tls.validate_certs
        #: SMTP server host name or address.
        self.hostname = hostname
        #: Port (None: aiosmtplib's default for the TLS mode).
        self.port = port
        #: Implicit TLS from the first byte (usually port 465).
        self.use_tls = use_tls
        #: STARTTLS: None (when offered), True (required) or False (never).
        self.start_tls = start_tls
        #: Authenticate over a connection without TLS (the credentials travel in the clear).
        self.allow_insecure_auth = allow_insecure_auth
        #: Verify the server's certificate.
        self.validate_certs = validate_certs
        #: Seconds allowed for connecting and for each command.
        self.timeout = timeout
        #: Name sent in EHLO (resolved on open when None).
        self.local_hostname = local_hostname
        #: Messages (MAIL FROM transactions) per connection before it is replaced.
        self.max_messages_per_connection = max_messages_per_connection
        #: Seconds an unused connection stays open.
        self.idle_timeout = idle_timeout
        #: Seconds after a refused session before the pool tries one session more.
        self.connection_probe_interval = connection_probe_interval
        #: What a partial refusal does: ``"abort"`` or ``"deliver"``.
        self.refused_recipients: RefusedPolicy = refused_recipients
        # Connection settings, credentials included: never shown in repr or logs.
        self.__settings: dict[str, Any] = {
            "username": username,
            "password": password,
            "oauth_token_generator": oauth_token_generator,
            "tls_context": tls.context,
            "cert_bundle": tls.cert_bundle,
            "client_cert": tls.client_cert,
            "client_key": tls.client_key,
            "source_address": source_address,
        }
        self._free: list[_Connection] = []  # idle connections, most recently used last
        self._busy: set[_Connection] = set()
        self._background: set[asyncio.Task[None]] = set()
        # Sends waiting for a session, first come first served.
        self._waiters: deque[asyncio.Future[_Connection | _Slot]] = deque()
        # Sessions counted against the limit: connecting, busy, idle and closing.
        self._sessions = 0
        self._connecting = 0
        # Sessions the server accepts, as far as we know (None: no limit).
        self._limit: int | None = self.max_connections
        self._probe_at = 0.0
        self._probes_refused = 0
        self._connections_opened = 0
        self._refused = 0
        self._stale_replaced = 0

    def __repr__(self) -> str:
        auth = self.__settings["username"] is not None or bool(
            self.__settings["oauth_token_generator"]
        )
        return (
            f"SMTPTransport(hostname={self.hostname!r}, port={self.port!r}, "
            f"use_tls={self.use_tls!r}, start_tls={self.start_tls!r}, auth={auth!r}, "
            f"max_connections={self.max_connections!r}, state={self.state.value!r})"
        )

    # ------------------------------------------------------------------ stats

    @property
    def connections_open(self) -> int:
        """SMTP connections open now (in use or idle in the pool)."""
        return len(self._free) + len(self._busy)

    @property
    def connections_opened(self) -> int:
        """SMTP connections opened since the transport was opened."""
        return self._connections_opened

    @property
    def connection_limit(self) -> int | None:
        """Sessions the pool may hold now: ``max_connections``, or less after refusals."""
        return self._limit

    @property
    def connections_refused(self) -> int:
        """New sessions the server refused (``421`` at connect...) since the transport opened."""
        return self._refused

    @property
    def stale_connections_replaced(self) -> int:
        """Pooled connections found closed at MAIL FROM and replaced transparently."""
        return self._stale_replaced

    # ------------------------------------------------------------------ lifecycle

    async def _open(self) -> None:
        if self.local_hostname is None:
            # aiosmtplib would look the FQDN up (a blocking call, in a thread) for every
            # new connection; once is enough.
            self.local_hostname = await anyio.to_thread.run_sync(socket.getfqdn)

    async def _close(self) -> None:
        for conn in self._free:
            self._cancel_idle_timer(conn)
        free, self._free = self._free, []
        for conn in free:
            self._retire(conn)
        for conn in list(self._busy):
            # Only after a drain timeout: the sends were cancelled, the sessions are dirty.
            self._discard(conn)
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # ------------------------------------------------------------------ the pool
    #
    # A session holds a slot from connect until its socket is closed (QUIT included), and
    # the slots never exceed ``_limit`` (at most ``max_connections``). Sessions are opened
    # one at a time: with an unknown server cap, two attempts at once could both be
    # refused. A new session refused while others are open lowers ``_limit`` to those
    # others; the send waits for one of them instead of failing. One session more is
    # tried (a probe) after ``connection_probe_interval``, doubled while probes are
    # refused; an accepted probe keeps its slot and the next one comes an interval later.

    async def _checkout(self) -> _Connection:
        front = False
        while True:
            while self._waiters and self._waiters[0].done():
                self._waiters.popleft()  # cancelled, not yet removed by its task
            if not self._waiters:
                conn = self._pop_free()
                if conn is not None:
                    self._busy.add(conn)
                    return conn
            slot = None if self._waiters else self._take_slot()
            if slot is None:
                got = await self._wait(front=front)
                if isinstance(got, _Connection):
                    self._busy.add(got)
                    return got
                slot = got
            conn = await self._open_session(slot)
            if conn is not None:
                return conn
            front = True  # refused while others are open: first in line for one of them

    def _pop_free(self) -> _Connection | None:
        loop = asyncio.get_running_loop()
        while self._free:
            conn = self._free.pop()
            self._cancel_idle_timer(conn)
            expired = (
                self.idle_timeout is not None and loop.time() - conn.idle_since >= self.idle_timeout
            )
            if expired or not conn.client.is_connected:
                self._retire(conn)
                continue
            return conn
        return None

    def _take_slot(self) -> _Slot | None:
        """A slot to open a session now, if the limit (or a due probe) allows one."""
        if self._connecting:
            return None  # one connection attempt at a time
        probe = False
        if self._limit is not None and self._sessions >= self._limit:
            ceiling = self.max_connections
            if (ceiling is not None and self._limit >= ceiling) or (
                asyncio.get_running_loop().time() < self._probe_at
            ):
                return None
            self._limit += 1
            probe = True
        self._sessions += 1
        self._connecting += 1
        return _Slot(probe)

    async def _wait(self, *, front: bool) -> _Connection | _Slot:
        """Wait for a session handed over, or for a slot to open one."""
        waiter: asyncio.Future[_Connection | _Slot] = asyncio.get_running_loop().create_future()
        if front:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                got = waiter.result()  # woken, then cancelled: pass it on
                if isinstance(got, _Connection):
                    self._checkin(got)
                else:
                    self._connecting -= 1
                    self._sessions -= 1
                    if got.probe and self._limit is not None:
                        self._limit -= 1
                    self._dispatch()
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
                self._dispatch()  # it may have stood first in line
            raise

    def _dispatch(self) -> None:
        """Give idle sessions, then free slots, to the sends waiting, in order."""
        while self._waiters:
            waiter = self._waiters[0]
            if waiter.done():  # cancelled meanwhile
                self._waiters.popleft()
                continue
            grant: _Connection | _Slot | None = self._pop_free() or self._take_slot()
            if grant is None:
                return
            if isinstance(grant, _Connection):
                self._busy.add(grant)
            self._waiters.popleft()
            waiter.set_result(grant)

    def _fail_waiters(self, cause: BaseException) -> None:
        """No session is open or opening: every waiting send fails as this attempt did."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                error = _map_smtp_error(cause, phase="connect", message_id=None)
                error.__cause__ = cause
                waiter.set_exception(error)

    async def _open_session(self, slot: _Slot) -> _Connection | None:
        """Open a session on ``slot``; None when refused while other sessions are open."""
        try:
            conn = await self._connect()
        except BaseException as error:
            wait = False
            try:
                if not isinstance(error, asyncio.CancelledError):
                    # aiosmtplib closed the transport; the socket closes on the next turn
                    await asyncio.sleep(0)
            finally:
                self._connecting -= 1
                self._sessions -= 1
                wait = self._attempt_failed(error, slot)
            if wait:
                return None
            raise
        self._connecting -= 1
        self._busy.add(conn)
        if slot.probe:
            self._probes_refused = 0
            self._probe_at = asyncio.get_running_loop().time() + self.connection_probe_interval
            logger.info(
                "asyncmailer: %s:%s accepted one more SMTP session; pool limit now %d",
                self.hostname,
                self.port,
                self._limit,
            )
        self._dispatch()
        return conn

    def _attempt_failed(self, error: BaseException, slot: _Slot) -> bool:
        """Account for a failed connection attempt; True: wait for another session instead."""
        now = asyncio.get_running_loop().time()
        if slot.probe and self._limit is not None:
            self._limit -= 1
            self._probe_at = now + self.connection_probe_interval
        cause = error.__cause__ if isinstance(error, DeliveryError) else None
        wait = False
        if cause is not None and _is_session_refusal(cause):
            self._refused += 1
            if self._sessions:
                self._shrink(self._sessions, probe=slot.probe, now=now)
                wait = True
        if not wait and cause is not None and not (self._busy or self._free or self._connecting):
            self._fail_waiters(cause)
        self._dispatch()
        return wait

    def _shrink(self, others: int, *, probe: bool, now: float) -> None:
        limit = others if self._limit is None else min(self._limit, others)
        if probe:
            self._probes_refused += 1
        else:
            self._probes_refused = 0
        delay = self.connection_probe_interval * 2 ** min(self._probes_refused, 4)
        self._probe_at = now + delay
        if limit != self._limit:
            logger.info(
                "asyncmailer: %s:%s refused a new SMTP session with %d open; pool limit %d, "
                "one more tried in %.1fs",
                self.hostname,
                self.port,
                others,
                limit,
                delay,
            )
        self._limit = limit

    def _checkin(self, conn: _Connection) -> None:
        limit = self.max_messages_per_connection
        if (
            not conn.clean
            or not conn.client.is_connected
            or self.state is TransportState.CLOSED
            or (limit is not None and conn.transactions >= limit)
        ):
            self._retire(conn)
            return
        conn.pooled = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)  # stays busy: handed to the next send
                self._dispatch()  # a probe may be due
                return
        self._busy.discard(conn)
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        if self.idle_timeout is not None:
            conn.idle_timer = loop.call_later(self.idle_timeout, self._expire, conn)
        self._free.append(conn)

    def _expire(self, conn: _Connection) -> None:
        conn.idle_timer = None
        if conn in self._free:
            self._free.remove(conn)
            logger.debug("asyncmailer: SMTP connection #%d idle, closing", conn.number)
            self._retire(conn)

    @staticmethod
    def _cancel_idle_timer(conn: _Connection) -> None:
        if conn.idle_timer is not None:
            conn.idle_timer.cancel()
            conn.idle_timer = None

    def _retire(self, conn: _Connection) -> None:
        """Close politely (QUIT) in the background; the slot is free once the socket is."""
        self._end(conn, polite=conn.client.is_connected)

    def _discard(self, conn: _Connection) -> None:
        """Drop a connection at once (its state is unknown): no QUIT."""
        self._end(conn, polite=False)

    def _end(self, conn: _Connection, *, polite: bool) -> None:
        self._busy.discard(conn)
        self._cancel_idle_timer(conn)
        if conn.closing:
            return
        conn.closing = True
        if not polite:
            conn.client.close()
        task = asyncio.ensure_future(self._close_session(conn, polite=polite))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _close_session(self, conn: _Connection, *, polite: bool) -> None:
        import aiosmtplib

        limit = min(self.timeout or 5.0, 5.0)
        try:
            if polite:
                try:
                    await conn.client.quit(timeout=limit)
                except (aiosmtplib.SMTPException, OSError):
                    pass  # the server went first; nothing to do
                finally:
                    conn.client.close()
            await _socket_closed(conn.socket, within=limit)
        finally:
            self._sessions -= 1
            self._dispatch()

    async def _connect(self) -> _Connection:
        import aiosmtplib

        settings = self.__settings
        # No credentials for aiosmtplib: it would send them after connect() whether or
        # not the session is encrypted. We authenticate ourselves, once TLS is checked.
        client = aiosmtplib.SMTP(
            hostname=self.hostname,
            port=self.port,
            local_hostname=self.local_hostname,
            source_address=settings["source_address"],
            timeout=self.timeout,
            use_tls=self.use_tls,
            start_tls=self.start_tls,
            validate_certs=self.validate_certs,
            client_cert=settings["client_cert"],
            client_key=settings["client_key"],
            tls_context=settings["tls_context"],
            cert_bundle=settings["cert_bundle"],
        )
        try:
            await client.connect()
            if client.is_ehlo_or_helo_needed:
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
            await self._authenticate(client)
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            raise _map_smtp_error(exc, phase="connect", message_id=None) from exc
        except BaseException:
            client.close()
            raise
        self._connections_opened += 1
        conn = _Connection(client, self._connections_opened)
        logger.debug(
            "asyncmailer: SMTP connection #%d to %s:%s open", conn.number, self.hostname, self.port
        )
        return conn

    async def _authenticate(self, client: aiosmtplib.SMTP) -> None:
        """AUTH with the configured credentials, never over a connection without TLS."""
        import aiosmtplib

        settings = self.__settings
        username: str | None = settings["username"]
        if username is None:
            return
        if client.get_transport_info("sslcontext") is None and not self.allow_insecure_auth:
            raise ConfigurationError(
                f"refusing to send SMTP credentials to {self.hostname} without TLS: the "
                "connection is not encrypted ("
                + (
                    "start_tls=False"
                    if self.start_tls is False
                    else "the server did not offer STARTTLS"
                )
                + "). Use start_tls=True or use_tls=True, or pass allow_insecure_auth=True "
                "if the network to this server is trusted",
                option="allow_insecure_auth",
            )
        token_generator: Callable[[], Awaitable[str]] | None = settings["oauth_token_generator"]
        if token_generator is None:
            await client.login(username, settings["password"] or "")
            return
        if "xoauth2" not in client.server_auth_methods:
            raise aiosmtplib.SMTPException("the server does not offer AUTH XOAUTH2")
        await client.auth_xoauth2(username, await token_generator())

    # ------------------------------------------------------------------ sending

    async def _deliver(self, composed: ComposedMessage, message: Message | None) -> Delivery:
        conn = await self._checkout()
        while True:
            try:
                reply, refused = await self._transaction(conn, composed)
            except _StaleConnectionError:
                # The server had closed this pooled connection; MAIL FROM never got
                # through, so another connection cannot duplicate anything.
                self._discard(conn)
                self._stale_replaced += 1
                conn = await self._checkout()
                continue
            except BaseException:
                if conn.clean and conn.client.is_connected:
                    self._checkin(conn)
                else:
                    self._discard(conn)
                raise
            break
        self._checkin(conn)
        if refused:
            accepted = len(composed.envelope.to) - len(refused)
            logger.warning(
                "asyncmailer: %s delivered to %d recipient(s), %d refused: %s",
                composed.message_id,
                accepted,
                len(refused),
                ", ".join(f"{r} ({c})" for r, (c, _) in refused.items()),
            )
            raise _refused_error(refused, composed, delivered_to=accepted)
        return Delivery(response=reply, message_id=composed.message_id)

    def _mail_options(
        self, client: aiosmtplib.SMTP, composed: ComposedMessage
    ) -> tuple[list[str], str]:
        """MAIL FROM parameters and address encoding; raise if the server cannot take it."""
        options: list[str] = []
        size = len(composed.raw)
        if client.supports_extension("size"):
            limit_text = client.esmtp_extensions.get("size", "").strip()
            limit = int(limit_text) if limit_text.isdigit() else 0
            if limit and size > limit:
                raise MessageTooLargeError(
                    f"the message is {size} octets; the server accepts at most {limit}",
                    size=size,
                    limit=limit,
                )
            options.append(f"SIZE={size}")
        if not composed.raw.isascii() and client.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        if not composed.smtputf8:
            return options, "ascii"
        if not client.supports_extension("smtputf8"):
            needs = [a for a in (composed.envelope.from_, *composed.envelope.to) if not a.isascii()]
            raise SMTPUTF8RequiredError(
                f"{needs[0] if needs else 'an address'} has a non-ASCII local part and the "
                f"server {self.hostname} does not offer SMTPUTF8; nothing was sent",
                field="envelope",
                address=needs[0] if needs else "",
            )
        options.append("SMTPUTF8")
        return options, "utf-8"

    async def _transaction(
        self, conn: _Connection, composed: ComposedMessage
    ) -> tuple[str, dict[str, tuple[int, str]]]:
        """MAIL, RCPT..., DATA on ``conn``; return the DATA reply and refused recipients."""
        import aiosmtplib

        client = conn.client
        options, encoding = self._mail_options(client, composed)  # nothing sent yet
        recipients = composed.envelope.to
        refused: dict[str, tuple[int, str]] = {}
        phase: Phase = "mail"
        conn.clean = False
        conn.transactions += 1
        try:
            await client.mail(composed.envelope.from_, options=options, encoding=encoding)
            phase = "rcpt"
            for rcpt in recipients:
                try:
                    await client.rcpt(rcpt, encoding=encoding)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    if exc.code == 421:  # the server is closing the session
                        raise
                    refused[rcpt] = (exc.code, exc.message)
            if refused and (self.refused_recipients == "abort" or len(refused) == len(recipients)):
                await self._reset(conn)
                raise _refused_error(refused, composed, delivered_to=0)
            phase = "data"
            response = await client.data(composed.raw)
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            if isinstance(exc, MailError):
                raise
            if phase == "mail" and conn.pooled and _is_disconnect(exc):
                raise _StaleConnectionError from exc
            if isinstance(exc, aiosmtplib.SMTPResponseException):
                await self._reset(conn)
            raise _map_smtp_error(exc, phase=phase, message_id=composed.message_id) from exc
        conn.clean = True
        return f"{response.code} {response.message}", refused

    async def _reset(self, conn: _Connection) -> None:
        """RSET after a refusal, so the session can carry the next message."""
        import aiosmtplib

        if not conn.client.is_connected:
            return
        try:
            await conn.client.rset()
        except (aiosmtplib.SMTPException, OSError):
            conn.clean = False
        else:
            conn.clean = True


def _is_session_refusal(exc: BaseException) -> bool:
    """The server refused a new session: a 4xx greeting, or a connection refused or dropped."""
    import aiosmtplib

    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        return 400 <= exc.code < 500
    if isinstance(exc, aiosmtplib.SMTPConnectTimeoutError):
        return False
    return isinstance(exc, aiosmtplib.SMTPConnectError) and _tls_failure(exc) is None


async def _socket_closed(sock: Any, within: float) -> None:
    """Wait (``within`` seconds at most) until asyncio has closed ``sock``.

    A plain transport closes its socket on the loop's next turn; a TLS one after its
    shutdown exchange. Neither asyncio nor aiosmtplib offers a callback for it.
    """
    await asyncio.sleep(0)
    for _ in range(int(within / 0.002)):
        if sock is None or sock.fileno() == -1:
            return
        await asyncio.sleep(0.002)


def _is_disconnect(exc: BaseException) -> bool:
    import aiosmtplib

    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code == 421
    return isinstance(exc, (aiosmtplib.SMTPServerDisconnected, ConnectionError))


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _refused_error(
    refused: dict[str, tuple[int, str]], composed: ComposedMessage, *, delivered_to: int
) -> RecipientsRefusedError | RecipientsDeferredError:
    code, text = next(iter(refused.values()))
    total = len(composed.envelope.to)
    listing = "; ".join(f"{r}: {c} {t}" for r, (c, t) in refused.items())
    details: dict[str, Any] = {
        "refused": refused,
        "code": code,
        "service_message": text,
        "message_id": composed.message_id,
    }
    if delivered_to:
        # Final: a retry would send it twice to the recipients who have it.
        return RecipientsRefusedError(
            f"{len(refused)} of {total} recipient(s) refused ({listing}); the message was "
            f"delivered to the other {delivered_to}",
            **details,
        )
    if all(400 <= c < 500 for c, _ in refused.values()):
        return RecipientsDeferredError(
            f"{len(refused)} of {total} recipient(s) refused for now ({listing}); nothing was sent",
            **details,
        )
    return RecipientsRefusedError(
        f"{len(refused)} of {total} recipient(s) refused ({listing}); nothing was sent",
        **details,
    )


def _map_smtp_error(exc: BaseException, *, phase: Phase, message_id: str | None) -> MailError:
    """The one place where aiosmtplib and socket errors become asyncmailer errors.

    ``phase`` says how far the transaction went: an answer-less failure during ``"data"``
    is ambiguous (the server may have queued the message); before it, nothing was sent.
    """
    import aiosmtplib

    where = {"connect": "connecting", "mail": "at MAIL FROM", "rcpt": "at RCPT TO"}.get(
        phase, "during DATA"
    )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        code, text = exc.code, exc.message
        detail = f"{code} {text}"
        kwargs: dict[str, Any] = {"code": code, "service_message": text, "message_id": message_id}
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            if 400 <= code < 500:
                return ServiceUnavailableError(f"SMTP AUTH failed for now: {detail}", **kwargs)
            return AccessDeniedError(
                f"SMTP authentication refused: {detail}", action="smtp:AUTH", **kwargs
            )
        lowered = text.lower()
        if "maximum sending rate exceeded" in lowered:
            return SendingRateExceededError(f"throttled {where}: {detail}", **kwargs)
        if "daily message quota exceeded" in lowered:
            return DailyQuotaExceededError(f"daily quota exceeded: {detail}", **kwargs)
        if 400 <= code < 500:
            return ServiceUnavailableError(f"temporary failure {where}: {detail}", **kwargs)
        if phase == "connect":
            return ServiceRefusedError(f"the server refused the session: {detail}", **kwargs)
        return MessageRejectedError(f"the server refused the message {where}: {detail}", **kwargs)
    if isinstance(exc, (aiosmtplib.SMTPTimeoutError, TimeoutError)):
        if phase == "data":
            return DeliveryTimeoutError(
                f"no answer in time {where}; the server may have accepted the message",
                message_id=message_id,
            )
        if phase == "connect":
            return ConnectTimeoutError(
                f"no answer in time {where}; nothing was sent", message_id=message_id
            )
        return ServiceUnavailableError(
            f"no answer in time {where}; nothing was sent", message_id=message_id
        )
    tls = _tls_failure(exc)
    if tls is not None:
        return ServiceRefusedError(f"TLS failed {where}: {tls}", message_id=message_id)
    if isinstance(exc, (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, OSError)):
        if phase == "data":
            return DeliveryUnknownError(
                f"connection lost {where}: {exc}; the server may have accepted the message",
                message_id=message_id,
            )
        return ServiceUnavailableError(
            f"connection failed {where}: {exc}; nothing was sent", message_id=message_id
        )
    if isinstance(exc, ValueError):
        return MessageError(f"SMTP cannot carry this envelope: {exc}", field="envelope")
    # STARTTLS or AUTH not offered, or a similar mismatch between options and server.
    text = getattr(exc, "message", None) or str(exc)
    return ConfigurationError(f"SMTP {where}: {text}")
