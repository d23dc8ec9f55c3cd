"""Options that belong together, as frozen value objects (like httpx's ``Timeout`` and ``Limits``).

- :class:`Limits`: how fast and how wide every transport sends, and how long it drains.
- :class:`AWSClientSettings` and :class:`Credentials`: how :class:`~asyncmailer.SESTransport`
  creates its aiobotocore client.
- :class:`QuotaPolicy`: how SESTransport follows the account's sending quota.
- :class:`TLSSettings` and :class:`SMTPPool`: SMTPTransport's certificates and session reuse.
- :class:`Suppression`: the list of addresses never to mail again, and what a send to one does.
- :class:`TransportOptions`: the keyword arguments every transport takes.

Each object checks its values when it is created and raises
:class:`~asyncmailer.errors.ConfigurationError` naming the option. The common case needs
none of them: ``SESTransport(region_name="eu-west-1", sending_rate=14)``. Build one when
several transports share settings, or for the less common options::

    limits = Limits(rate_limiter=RedisRateLimiter(url, key="ses", rate=14), drain_timeout=60)
    async with SESTransport(limits=limits, quota=QuotaPolicy(daily="wait")) as ses:
        ...
"""

from __future__ import annotations

import math
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypedDict

from asyncmailer.dkim import DKIMSigner
from asyncmailer.errors import ConfigurationError
from asyncmailer.limits import RateLimiter
from asyncmailer.retry import RetryPolicy

if TYPE_CHECKING:
    from aiobotocore.session import AioSession

    from asyncmailer.feedback import SuppressionList

__all__ = [
    "AWSClientSettings",
    "Credentials",
    "DailyQuotaPolicy",
    "Limits",
    "QuotaPolicy",
    "SMTPPool",
    "Suppression",
    "TLSSettings",
    "TransportOptions",
]

#: What a send that would exceed the SES daily quota does: fail, wait, or send anyway.
DailyQuotaPolicy = Literal["fail", "wait", "ignore"]


def _positive_number(name: str, value: object, *, allow_zero: bool = False) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
    )
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{name} must be a number {bound}, got {value!r}", option=name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """How fast and how wide a transport sends, and how long it drains when closing.

    Example::

        Limits(sending_rate=14, max_connections=10, drain_timeout=60)

    Every transport takes ``limits=``; ``sending_rate=`` and ``max_connections=`` are also
    accepted directly, as shortcuts for the same fields (giving a field both ways raises
    :class:`~asyncmailer.errors.ConfigurationError`). The rate limiter and the connection
    semaphore are created in ``__aenter__``, inside the event loop that uses them, so one
    ``Limits`` may configure many transports.
    """

    #: Units per second (SES: recipients; others: messages). None: not rate limited, or
    #: ``rate_limiter``. ``"auto"`` (SESTransport only): the account's ``MaxSendRate``.
    sending_rate: float | Literal["auto"] | None = None
    #: Requests in flight at most. None: the transport's default (SESTransport 10,
    #: SMTPTransport 5 connections, MemoryTransport and FileTransport unbounded).
    max_connections: int | None = None
    #: A rate limiter to share between transports or processes (e.g. ``RedisRateLimiter``),
    #: instead of ``sending_rate``.
    rate_limiter: RateLimiter | None = None
    #: Seconds ``aclose()`` waits for queued and in-flight sends (None: no limit).
    drain_timeout: float | None = 30.0
    #: Run at most one send's CPU-heavy steps (composing; building and writing its
    #: request) per event-loop iteration, so that a burst of sends cannot hold the loop.
    cooperative: bool = True

    def __post_init__(self) -> None:
        rate = self.sending_rate
        if rate is not None and rate != "auto":
            _positive_number("sending_rate", rate)
        if rate is not None and rate != "auto" and self.rate_limiter is not None:
            # "auto" with a shared limiter is fine: the account's rate is set on it.
            raise ConfigurationError(
                "pass either sending_rate or rate_limiter, not both", option="sending_rate"
            )
        if self.rate_limiter is not None and not isinstance(self.rate_limiter, RateLimiter):
            raise ConfigurationError(
                f"rate_limiter must be a RateLimiter, not {type(self.rate_limiter).__name__}",
                option="rate_limiter",
            )
        connections = self.max_connections
        if connections is not None and (
            isinstance(connections, bool) or not isinstance(connections, int) or connections < 1
        ):
            raise ConfigurationError(
                f"max_connections must be a positive integer, got {connections!r}",
                option="max_connections",
            )
        if self.drain_timeout is not None:
            _positive_number("drain_timeout", self.drain_timeout, allow_zero=True)


@dataclass(frozen=True, slots=True)
class Credentials:
    """AWS credentials given explicitly; ``repr()`` never shows the secrets.

    Without them the standard AWS chain is used (environment, profile, instance role),
    which is what production code should prefer. Example::

        Credentials("AKIA...", os.environ["SES_SECRET"])
    """

    #: The access key id (shown in ``repr``: it is not a secret).
    access_key_id: str
    #: The secret access key.
    secret_access_key: str = field(repr=False)
    #: A session token, for temporary credentials.
    session_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.access_key_id or not self.secret_access_key:
            raise ConfigurationError(
                "Credentials need both access_key_id and secret_access_key",
                option="credentials",
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class AWSClientSettings:
    """How :class:`~asyncmailer.SESTransport` creates its aiobotocore client.

    Example::

        AWSClientSettings(region_name="eu-west-1", read_timeout=20)

    Unused when you pass your own client. ``region_name`` and ``endpoint_url`` (and the
    credentials, as ``aws_access_key_id`` / ``aws_secret_access_key`` /
    ``aws_session_token``) are also accepted directly by ``SESTransport``, as shortcuts
    for the same fields.
    """

    #: The AWS region (default: ``AWS_REGION`` / the profile's region).
    region_name: str | None = None
    #: Another endpoint (a local SES endpoint, a VPC endpoint).
    endpoint_url: str | None = None
    #: Explicit credentials (default: the standard AWS credential chain).
    credentials: Credentials | None = None
    #: The aiobotocore session to create the client from (default: a new one).
    session: AioSession | None = None
    #: Seconds allowed to open a connection; past it the send is retry-safe.
    connect_timeout: float = 10.0
    #: Seconds allowed for SES's answer; past it the outcome is unknown (ambiguous).
    read_timeout: float = 30.0
    #: TLS certificate checks, passed to botocore as ``verify``: None (botocore's CA
    #: bundle, or ``AWS_CA_BUNDLE``), a path to a CA bundle, or False (no check: never
    #: against AWS).
    verify: bool | str | None = None

    def __post_init__(self) -> None:
        _positive_number("connect_timeout", self.connect_timeout)
        _positive_number("read_timeout", self.read_timeout)
        if self.verify is not None and not isinstance(self.verify, (bool, str)):
            raise ConfigurationError(
                f"verify must be None, a bool or a CA bundle path, not {self.verify!r}",
                option="verify",
            )
        if self.credentials is not None and not isinstance(self.credentials, Credentials):
            raise ConfigurationError(
                f"credentials must be Credentials, not {type(self.credentials).__name__}",
                option="credentials",
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaPolicy:
    """How :class:`~asyncmailer.SESTransport` follows the account's sending quota.

    Example::

        SESTransport(sending_rate="auto", quota=QuotaPolicy(safety_factor=0.8, daily="wait"))

    The quota is read (``GetAccount`` / ``GetSendQuota``) when the transport opens, then
    every ``refresh`` seconds, when ``sending_rate="auto"`` or ``track_daily=True``.
    """

    #: Fraction of ``MaxSendRate`` used by ``sending_rate="auto"``, in (0, 1].
    safety_factor: float = 0.9
    #: Seconds between quota reads (None: read once, when opening).
    refresh: float | None = 300.0
    #: Count every recipient against ``Max24HourSend`` (None: only with ``sending_rate="auto"``).
    track_daily: bool | None = None
    #: A send that would exceed the daily quota: ``"fail"`` raises
    #: :class:`~asyncmailer.errors.DailyQuotaExceededError` before any request, ``"wait"``
    #: waits for the window to move (needs ``refresh``), ``"ignore"`` sends anyway.
    daily: DailyQuotaPolicy = "fail"

    def __post_init__(self) -> None:
        factor = self.safety_factor
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= 1:
            raise ConfigurationError(
                f"safety_factor must be in (0, 1], got {factor!r}", option="safety_factor"
            )
        if self.refresh is not None:
            _positive_number("refresh", self.refresh)
        if self.daily not in ("fail", "wait", "ignore"):
            raise ConfigurationError(
                f"daily must be 'fail', 'wait' or 'ignore', not {self.daily!r}", option="daily"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Suppression:
    """Addresses never to mail again, checked before a rate unit or a request is spent.

    Example::

        suppressed = RedisSuppressionList("redis://redis:6379/0", key="ses:suppressed")
        async with SESTransport(region_name="eu-west-1", sending_rate=14,
                                suppression=Suppression(list=suppressed, policy="drop")) as ses:
            result = await ses.send_mail(...)      # result.suppressed: who was left out

    Every transport takes ``suppression=`` (a bare list means ``policy="fail"``). Each
    message's envelope recipients are looked up once, after composing and checking it:
    ``"fail"`` raises :class:`~asyncmailer.feedback.SuppressedRecipientError` (a
    ``MessageError``: nothing sent) naming every suppressed recipient; ``"drop"`` sends to
    the others and reports the dropped ones in :attr:`SendResult.suppressed` (and raises
    when nobody is left). Feed the list from bounces and complaints with
    :func:`asyncmailer.feedback.apply_to`.
    """

    #: Where suppressed addresses are kept (memory, Redis, SES's account list...).
    list: SuppressionList
    #: ``"fail"``: refuse the message; ``"drop"``: send to the other recipients.
    policy: Literal["fail", "drop"] = "fail"

    def __post_init__(self) -> None:
        if self.policy not in ("fail", "drop"):
            raise ConfigurationError(
                f"suppression policy must be 'fail' or 'drop', not {self.policy!r}",
                option="suppression",
            )
        if not callable(getattr(self.list, "suppressed", None)):
            raise ConfigurationError(
                "suppression list must have an async suppressed(addresses) method "
                "(asyncmailer.feedback.SuppressionList)",
                option="suppression",
            )


class TransportOptions(TypedDict, total=False):
    """The keyword arguments every transport takes (``**options`` in their signatures).

    ``sending_rate`` and ``max_connections`` are shortcuts for the fields of ``limits``;
    see :class:`~asyncmailer.Transport`.
    """

    #: Rate, connections, rate limiter, drain timeout, cooperative scheduling.
    limits: Limits | None
    #: Shortcut for ``Limits.sending_rate`` (``"auto"``: SESTransport only).
    sending_rate: float | Literal["auto"] | None
    #: Shortcut for ``Limits.max_connections``.
    max_connections: int | None
    #: Which failed attempts are tried again (default: ``RetryPolicy()``).
    retry: RetryPolicy | None
    #: Sign every message with this DKIM signer (a message's ``dkim`` may override it).
    dkim: DKIMSigner | None
    #: Addresses never to mail again (a bare list means ``policy="fail"``).
    suppression: Suppression | SuppressionList | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSSettings:
    """How :class:`~asyncmailer.SMTPTransport` checks the server and proves who it is.

    Example::

        SMTPTransport(hostname="smtp.example.com", start_tls=True,
                      tls=TLSSettings(cert_bundle="/etc/ssl/internal-ca.pem"))

    Whether TLS is used at all is ``use_tls`` / ``start_tls`` on the transport.
    """

    #: Verify the server's certificate and host name (keep it on outside tests).
    validate_certs: bool = True
    #: A complete ``ssl.SSLContext`` (then the other fields are not used).
    context: ssl.SSLContext | None = None
    #: CA certificates to trust, as a PEM file.
    cert_bundle: str | None = None
    #: A client certificate (PEM) presented to the server.
    client_cert: str | None = None
    #: The client certificate's private key (PEM).
    client_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class SMTPPool:
    """How :class:`~asyncmailer.SMTPTransport` reuses its SMTP sessions.

    Example::

        SMTPTransport(hostname="smtp.example.com", max_connections=5,
                      pool=SMTPPool(max_messages_per_connection=50, idle_timeout=30))

    The number of sessions is ``max_connections`` (:class:`Limits`).
    """

    #: Messages (MAIL FROM transactions) per session before it is replaced (None: no limit).
    max_messages_per_connection: int | None = 100
    #: Seconds an unused session stays open (None: until the transport closes).
    idle_timeout: float | None = 60.0
    #: Seconds after a refused session before the pool tries one session more (doubled
    #: while refused).
    connection_probe_interval: float = 10.0

    def __post_init__(self) -> None:
        limit = self.max_messages_per_connection
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise ConfigurationError(
                "max_messages_per_connection must be a positive integer or None",
                option="max_messages_per_connection",
            )
        if self.idle_timeout is not None:
            _positive_number("idle_timeout", self.idle_timeout)
        _positive_number("connection_probe_interval", self.connection_probe_interval)
