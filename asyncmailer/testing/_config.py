"""The endpoint's settings: account values, limits, and the faults to inject."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from asyncmailer.errors import ConfigurationError

__all__ = ["EndpointConfig"]

_RATIOS = (
    "drop_before_accept_ratio",
    "server_error_ratio",
    "throttle_ratio",
    "drop_after_accept_ratio",
)
_IDENTITY_SETS = ("verified_identities", "configuration_sets")


@dataclasses.dataclass(frozen=True, kw_only=True)
class EndpointConfig:
    """How the local SES endpoint behaves; immutable, replaced whole by ``configure()``.

    Every field can be given to :class:`SESEndpoint` as a keyword, changed at runtime with
    :meth:`SESEndpoint.configure` or ``POST /_asyncmailer/config``, and set from the command
    line. Example::

        config = EndpointConfig(latency=0.05, throttle_rate=14, verified_identities={"example.com"})

    The four ``*_ratio`` faults are drawn from one random number per send request, so their
    sum must not exceed 1; they apply to send requests only (``SendRawEmail``, ``SendEmail``
    and SESv2 ``SendEmail``). Latency applies to every SES API request.
    """

    #: Region named in error messages; None uses the region the client signed for.
    region: str | None = None
    #: Seconds added before every SES API answer (or hang-up).
    latency: float = 0.0
    #: Probability that a request gets :attr:`latency_spike` extra seconds.
    latency_spike_probability: float = 0.0
    #: Extra seconds of a latency spike.
    latency_spike: float = 0.0
    #: Recipients per second accepted over any sliding 1-second window, as SES counts its
    #: maximum send rate; above it sends fail with ``Throttling`` / 429. None: no limit.
    throttle_rate: float | None = None
    #: Share of send requests answered ``Throttling`` (v1) / ``TooManyRequestsException`` (v2).
    throttle_ratio: float = 0.0
    #: Share of send requests answered HTTP 500 ``InternalFailure`` or 503
    #: ``ServiceUnavailable`` (half each); nothing is stored.
    server_error_ratio: float = 0.0
    #: Share of send requests whose message is stored, then the connection closed without an
    #: answer: the client sees a connection error although the message was accepted.
    drop_after_accept_ratio: float = 0.0
    #: Share of send requests whose connection is closed without an answer; nothing stored.
    drop_before_accept_ratio: float = 0.0
    #: ``MaxSendRate`` reported by GetSendQuota / GetAccount.
    max_send_rate: float = 14.0
    #: ``Max24HourSend`` reported by GetSendQuota / GetAccount (-1 means unlimited).
    max_24_hour_send: float = 50000.0
    #: Refuse sends once the recipients accepted over 24 hours would exceed
    #: :attr:`max_24_hour_send` (``Throttling "Daily message quota exceeded."`` /
    #: ``LimitExceededException``).
    enforce_daily_quota: bool = False
    #: False pauses sending: ``AccountSendingPausedException`` / ``SendingPausedException``.
    sending_enabled: bool = True
    #: Email addresses and domains allowed as senders (lower-cased; a domain also covers its
    #: subdomains). None accepts every sender.
    verified_identities: frozenset[str] | None = None
    #: Sandbox mode: recipients must be verified identities too.
    sandbox: bool = False
    #: Configuration sets that exist; a send naming another fails with
    #: ``ConfigurationSetDoesNotExist`` / ``NotFoundException``. None accepts any name.
    configuration_sets: frozenset[str] | None = None
    #: Most recipients (To + Cc + Bcc) per message.
    max_recipients: int = 50
    #: Largest raw message, in octets, accepted by v1 SendRawEmail.
    max_message_size_v1: int = 10 * 1024 * 1024
    #: Largest raw message, in octets, accepted by SESv2 SendEmail.
    max_message_size_v2: int = 40 * 1024 * 1024

    # Mailbox simulator events (see docs/local-ses-endpoint.md, "Mailbox simulator and
    # events"). Publishing needs ``cryptography`` (the ``feedback`` extra).

    #: URL the signed SNS envelopes are POSTed to, as an SNS HTTP/S subscription does
    #: (a webhook such as ``sns_handler``). None: no POST.
    sns_subscriber_url: str | None = None
    #: SQS queue the envelopes are sent to, as an SNS → SQS subscription delivers them.
    sqs_queue_url: str | None = None
    #: Endpoint of that queue's SQS (moto's server); dummy credentials are then used.
    #: None: AWS, with the default credential chain.
    sqs_endpoint_url: str | None = None
    #: SQS gets the bare event, as with SNS raw message delivery, instead of the envelope.
    sqs_raw_delivery: bool = False
    #: ``"notification"``: identity notifications (``notificationType``); ``"event"``:
    #: configuration-set event publishing (``eventType``, with ``mail.tags``).
    event_style: Literal["notification", "event"] = "notification"
    #: Put the original headers in ``mail`` (``headers``, ``commonHeaders``). None: as SES
    #: does, only for event publishing.
    include_headers: bool | None = None
    #: ``TopicArn`` of the envelopes. None:
    #: ``arn:aws:sns:<region>:123456789012:asyncmailer-simulator``.
    sns_topic_arn: str | None = None
    #: ``"1"`` (SHA1withRSA, SNS's default) or ``"2"`` (SHA256withRSA).
    sns_signature_version: Literal["1", "2"] = "1"
    #: Seconds allowed for each POST or SQS request.
    publish_timeout: float = 5.0
    #: Attempts per delivery (5xx answers and failed connections are retried).
    publish_attempts: int = 3
    #: Events waiting to be published at most; more are dropped (and marked so).
    publish_queue_size: int = 1000

    def __post_init__(self) -> None:
        for name in _IDENTITY_SETS:
            value: Any = getattr(self, name)
            if value is not None:
                if isinstance(value, str) or not isinstance(value, Iterable):
                    raise ConfigurationError(f"{name} must be a collection of names", option=name)
                if name == "verified_identities":  # SES compares identities case-insensitively
                    normalized = frozenset(str(item).strip().lower() for item in value)
                else:
                    normalized = frozenset(str(item) for item in value)
                object.__setattr__(self, name, normalized)
        for name in ("latency", "latency_spike", *_RATIOS, "latency_spike_probability"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigurationError(f"{name} must be a finite number ≥ 0", option=name)
        for name in (*_RATIOS, "latency_spike_probability"):
            if getattr(self, name) > 1:
                raise ConfigurationError(f"{name} must be between 0 and 1", option=name)
        if sum(getattr(self, name) for name in _RATIOS) > 1 + 1e-9:
            raise ConfigurationError(
                "the fault ratios (" + ", ".join(_RATIOS) + ") must add up to at most 1",
                option="throttle_ratio",
            )
        if self.throttle_rate is not None and not self.throttle_rate > 0:
            raise ConfigurationError("throttle_rate must be > 0 or None", option="throttle_rate")
        if self.max_recipients < 1:
            raise ConfigurationError("max_recipients must be ≥ 1", option="max_recipients")
        self._check_publishing()

    def _check_publishing(self) -> None:
        for name in ("sns_subscriber_url", "sqs_queue_url", "sqs_endpoint_url"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https"):
                raise ConfigurationError(f"{name} must be an http(s) URL", option=name)
            if not urlsplit(value).hostname:
                raise ConfigurationError(f"{name} has no host: {value!r}", option=name)
        if self.event_style not in ("notification", "event"):
            raise ConfigurationError(
                "event_style must be 'notification' or 'event'", option="event_style"
            )
        if self.sns_signature_version not in ("1", "2"):
            raise ConfigurationError(
                "sns_signature_version must be '1' or '2'", option="sns_signature_version"
            )
        timeout = self.publish_timeout
        if not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0:
            raise ConfigurationError("publish_timeout must be > 0", option="publish_timeout")
        if self.publish_attempts < 1:
            raise ConfigurationError("publish_attempts must be ≥ 1", option="publish_attempts")
        if self.publish_queue_size < 1:
            raise ConfigurationError("publish_queue_size must be ≥ 1", option="publish_queue_size")
        if self.sns_subscriber_url is not None or self.sqs_queue_url is not None:
            from asyncmailer.testing._simulator import require_cryptography

            require_cryptography()

    def replace(self, **changes: Any) -> EndpointConfig:
        """A copy with ``changes`` applied; unknown names raise :class:`ConfigurationError`."""
        names = {field.name for field in dataclasses.fields(self)}
        for name in changes:
            if name not in names:
                raise ConfigurationError(f"unknown endpoint setting {name!r}", option=name)
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (sets become sorted lists)."""
        data = dataclasses.asdict(self)
        for name in _IDENTITY_SETS:
            if data[name] is not None:
                data[name] = sorted(data[name])
        return data

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], *, base: EndpointConfig | None = None
    ) -> EndpointConfig:
        """Apply a JSON dict (as produced by :meth:`to_json`, or a subset) to ``base``."""
        return (base or cls()).replace(**dict(data))
