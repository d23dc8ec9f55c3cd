"""The exception tree of asyncmailer.

Every error the library raises on purpose derives from :class:`MailError`. The tree
separates *usage* errors (your code or your transport's settings are wrong; nothing was
sent), *message* errors (this one message cannot be sent as given; nothing was sent) and
*delivery* errors (the backend said no, or we cannot tell what it did). The right-hand
column is each delivery error's :attr:`DeliveryError.outcome`: a class attribute, the same
for every instance, wherever the error is raised::

    MailError
    ├── UsageError                       misuse of the API; nothing sent
    │   ├── TransportStateError           (RuntimeError) used before __aenter__ / after close
    │   └── ConfigurationError            (ValueError) invalid transport setting (option)
    ├── MessageError                      (ValueError) this message is invalid (field); nothing sent
    │   ├── AddressError                  a malformed address (field, text)
    │   ├── HeaderError                   CR/LF/NUL or a bad header name/value (field)
    │   ├── ContentError                  a body/attachment source cannot be read (field, source)
    │   ├── MessageTooLargeError          bigger than the transport accepts (size, limit)
    │   ├── TooManyRecipientsError        more recipients than allowed (count, limit)
    │   └── SMTPUTF8RequiredError         non-ASCII local part on a transport without SMTPUTF8
    ├── DeliveryError                     the backend refused or failed           final
    │   ├── MessageRejectedError          the backend refused this message        final
    │   │   ├── IdentityNotVerifiedError   sender/recipient not verified (identity) final
    │   │   ├── MailFromDomainNotVerifiedError                                    final
    │   │   └── RecipientsRefusedError     SMTP: recipients refused for good       final
    │   ├── AccessDeniedError             (PermissionError) not allowed (action)  final
    │   ├── DailyQuotaExceededError       the 24-hour quota is used up            final
    │   ├── SendingPausedError            sending is paused                       final
    │   ├── ConfigurationSetDoesNotExistError                                     final
    │   ├── ServiceRefusedError           session refused for good (5xx, TLS)     final
    │   ├── ThrottlingError               the backend asked us to slow down       retry-safe
    │   │   └── SendingRateExceededError   per-second rate exceeded                retry-safe
    │   ├── ServiceUnavailableError       failed before accepting (5xx, 4xx...)   retry-safe
    │   │   ├── ConnectTimeoutError        (TimeoutError) could not connect in time retry-safe
    │   │   └── RecipientsDeferredError    SMTP: recipients refused for now        retry-safe
    │   ├── SendAbortedError              closed before the message was sent      retry-safe
    │   └── DeliveryUnknownError          may or may not have been accepted       ambiguous
    │       └── DeliveryTimeoutError       (TimeoutError) no answer after sending  ambiguous
    ├── RateLimiterError                  the shared rate limiter backend failed (fail closed)
    └── UndeliveredError                  close() ended with messages not delivered (failures)

**One rule decides which class a backend failure becomes**, in every transport:

1. the backend *may* have accepted the message (the request or the message data left and
   no answer came back) → :class:`DeliveryUnknownError` (:class:`DeliveryTimeoutError` for
   a timeout): ``AMBIGUOUS``;
2. else, nothing was accepted and trying again later can succeed (throttling, a temporary
   failure, a connection that could not be opened) → :class:`ThrottlingError` or
   :class:`ServiceUnavailableError` (or a subclass): ``RETRY_SAFE``;
3. else → the ``FINAL`` class that names the reason.

The outcome is not an argument: it cannot disagree with the class. ``except
ServiceUnavailableError`` therefore catches only failures that are safe to retry, and
``except DeliveryUnknownError`` every failure that could duplicate the message. Backend
exceptions are mapped to this tree in one place per transport, and the original exception
is always chained as ``__cause__``. Problems with one message are :class:`MessageError`
(``field`` names the culprit); problems with the transport's settings are
:class:`ConfigurationError` (``option`` names it).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, TypedDict

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "AccessDeniedError",
    "AddressError",
    "ConfigurationError",
    "ConfigurationSetDoesNotExistError",
    "ConnectTimeoutError",
    "ContentError",
    "DailyQuotaExceededError",
    "DeliveryError",
    "DeliveryTimeoutError",
    "DeliveryUnknownError",
    "HeaderError",
    "IdentityNotVerifiedError",
    "MailError",
    "MailFromDomainNotVerifiedError",
    "MessageError",
    "MessageRejectedError",
    "MessageTooLargeError",
    "Outcome",
    "RateLimiterError",
    "RecipientsDeferredError",
    "RecipientsRefusedError",
    "SMTPUTF8RequiredError",
    "SendAbortedError",
    "SendingPausedError",
    "SendingRateExceededError",
    "ServiceRefusedError",
    "ServiceUnavailableError",
    "ThrottlingError",
    "TooManyRecipientsError",
    "TransportStateError",
    "UndeliveredError",
    "UsageError",
]


class Outcome(enum.Enum):
    """What a failed delivery attempt means for a retry."""

    #: The backend refused the request and sent nothing: retrying cannot duplicate.
    RETRY_SAFE = "retry_safe"
    #: The request may have been accepted: a retry could deliver the message twice.
    AMBIGUOUS = "ambiguous"
    #: Retrying will not help (rejected message, permissions, quota, configuration).
    FINAL = "final"


class MailError(Exception):
    """Root of every error asyncmailer raises on purpose."""


# --------------------------------------------------------------------------- usage


class UsageError(MailError):
    """The API was used wrongly; nothing was sent."""


class TransportStateError(UsageError, RuntimeError):
    """A transport was used before ``__aenter__`` or after it was closed."""

    def __init__(self, message: str, *, state: str) -> None:
        super().__init__(message)
        #: The transport's state at the call: ``"unopened"``, ``"closing"`` or ``"closed"``.
        self.state = state


class ConfigurationError(UsageError, ValueError):
    """A transport setting, or a combination of settings, is invalid.

    Mistakes in one message (an unknown field, a bad per-message ``ses`` option) are
    :class:`MessageError` instead.
    """

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        #: The offending option's name, when one option is to blame.
        self.option = option


# -------------------------------------------------------------------------- message


class MessageError(MailError, ValueError):
    """The message cannot be composed or sent as given; nothing was sent."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        #: The message field at fault (``"to"``, ``"headers['X-Tag']"``, ``"attachments[2]"``...).
        self.field = field


class AddressError(MessageError):
    """An address could not be parsed or is not allowed."""

    def __init__(self, message: str, *, field: str | None = None, text: str = "") -> None:
        super().__init__(message, field=field)
        #: The offending text, as given.
        self.text = text


class HeaderError(MessageError):
    """A header name or value is invalid (for instance it contains CR, LF or NUL)."""


class ContentError(MessageError):
    """A body or attachment source could not be read (missing file, URL refused, too big)."""

    def __init__(self, message: str, *, field: str | None = None, source: str = "") -> None:
        super().__init__(message, field=field)
        #: The path or URL that failed, when there is one.
        self.source = source


class MessageTooLargeError(MessageError):
    """The composed message is larger than the transport accepts."""

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message, field="raw")
        #: Size of the message in octets, as the backend measures it.
        self.size = size
        #: The backend's limit in octets.
        self.limit = limit


class TooManyRecipientsError(MessageError):
    """The message has more envelope recipients than the transport allows."""

    def __init__(self, message: str, *, count: int, limit: int) -> None:
        super().__init__(message, field="envelope.to")
        #: Number of envelope recipients (To + Cc + Bcc, de-duplicated).
        self.count = count
        #: The backend's limit.
        self.limit = limit


class SMTPUTF8RequiredError(MessageError):
    """An address has a non-ASCII local part, and the transport cannot carry SMTPUTF8."""

    def __init__(self, message: str, *, field: str | None = None, address: str = "") -> None:
        super().__init__(message, field=field)
        #: The address that needs SMTPUTF8.
        self.address = address


# ------------------------------------------------------------------------- delivery


class _Details(TypedDict, total=False):
    """The keyword arguments every :class:`DeliveryError` takes."""

    code: str | int | None
    service_message: str | None
    request_id: str | None
    message_id: str | None
    attempts: int


class DeliveryError(MailError):
    """The backend refused the message, failed, or left its fate unknown.

    Raised as such for a backend error no subclass describes (final). Every subclass
    fixes its own :attr:`outcome`; see the module docstring for the rule.
    """

    #: Whether a retry is safe, ambiguous, or pointless: fixed by the class.
    outcome: ClassVar[Outcome] = Outcome.FINAL

    def __init__(
        self,
        message: str,
        *,
        code: str | int | None = None,
        service_message: str | None = None,
        request_id: str | None = None,
        message_id: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        #: The backend's error code (``"MessageRejected"``, an SMTP reply code...).
        self.code = code
        #: The backend's own error text.
        self.service_message = service_message
        #: The backend's request id, for support tickets.
        self.request_id = request_id
        #: Our Message-ID of the message concerned, when known.
        self.message_id = message_id
        #: How many attempts were made before giving up.
        self.attempts = attempts

    @property
    def retry_safe(self) -> bool:
        """True when retrying cannot deliver the message twice."""
        return self.outcome is Outcome.RETRY_SAFE


class MessageRejectedError(DeliveryError):
    """The backend refused this message; sending it again unchanged will fail again. Final."""


class IdentityNotVerifiedError(MessageRejectedError):
    """SES refused because an identity (sender, or recipient in the sandbox) is not verified."""

    def __init__(self, message: str, *, identity: str = "", **details: Unpack[_Details]) -> None:
        super().__init__(message, **details)
        #: The email address or domain SES named as unverified.
        self.identity = identity


class MailFromDomainNotVerifiedError(MessageRejectedError):
    """The custom MAIL FROM domain of the sending identity is not verified. Final."""


class RecipientsRefusedError(MessageRejectedError):
    """SMTP: recipients were refused for good (a 5xx), or after the others got the message.

    ``refused`` maps each refused recipient to ``(code, text)``. Final: either nothing
    was sent and the server will refuse again, or the message was delivered to the other
    recipients and a retry would send it to them twice. A refusal made only of 4xx
    replies, with nothing sent, is a :class:`RecipientsDeferredError` instead.
    """

    def __init__(
        self,
        message: str,
        *,
        refused: Mapping[str, tuple[int, str]] | None = None,
        **details: Unpack[_Details],
    ) -> None:
        super().__init__(message, **details)
        #: Refused recipient → (SMTP reply code, reply text).
        self.refused: dict[str, tuple[int, str]] = dict(refused or {})


class AccessDeniedError(DeliveryError, PermissionError):
    """The credentials are not allowed to perform the action (IAM, SMTP AUTH, file). Final."""

    def __init__(self, message: str, *, action: str = "", **details: Unpack[_Details]) -> None:
        DeliveryError.__init__(self, message, **details)
        #: The action that was denied, such as ``ses:SendRawEmail`` or ``smtp:AUTH``.
        self.action = action


class DailyQuotaExceededError(DeliveryError):
    """The 24-hour sending quota is used up; retrying soon will not help. Final."""


class SendingPausedError(DeliveryError):
    """Sending is paused for the account or the configuration set. Final."""


class ConfigurationSetDoesNotExistError(DeliveryError):
    """The configuration set named in the request does not exist. Final."""

    def __init__(
        self, message: str, *, configuration_set: str = "", **details: Unpack[_Details]
    ) -> None:
        super().__init__(message, **details)
        #: The configuration set name that was used.
        self.configuration_set = configuration_set


class ServiceRefusedError(DeliveryError):
    """The backend refused the session for good; nothing was sent. Final.

    An SMTP server answering 5xx to the greeting (or to EHLO), or a TLS handshake or
    certificate check that failed: trying again will meet the same answer until the
    server or the settings change.
    """


class ThrottlingError(DeliveryError):
    """The backend asked us to slow down; nothing was sent. Safe to retry later."""

    outcome = Outcome.RETRY_SAFE


class SendingRateExceededError(ThrottlingError):
    """The per-second sending rate was exceeded; the message was not sent. Safe to retry."""


class ServiceUnavailableError(DeliveryError):
    """The backend could not take the message now; nothing was sent. Safe to retry.

    An HTTP 5xx, an SMTP 4xx reply, a connection that could not be opened or was lost
    before the message data was sent, a local write that failed and left nothing behind.
    """

    outcome = Outcome.RETRY_SAFE


class ConnectTimeoutError(ServiceUnavailableError, TimeoutError):
    """No connection (or no greeting) in time; nothing was sent. Safe to retry."""


class RecipientsDeferredError(ServiceUnavailableError):
    """SMTP: recipients were refused for now (4xx only), so nothing was sent. Safe to retry.

    ``refused`` maps each refused recipient to ``(code, text)``.
    """

    def __init__(
        self,
        message: str,
        *,
        refused: Mapping[str, tuple[int, str]] | None = None,
        **details: Unpack[_Details],
    ) -> None:
        super().__init__(message, **details)
        #: Refused recipient → (SMTP reply code, reply text).
        self.refused: dict[str, tuple[int, str]] = dict(refused or {})


class SendAbortedError(DeliveryError):
    """The transport was closed (drain timeout) before this message was handed to the backend.

    Nothing was sent, so sending it again through another transport is safe.
    """

    outcome = Outcome.RETRY_SAFE


class DeliveryUnknownError(DeliveryError):
    """The backend may or may not have accepted the message. Ambiguous.

    The request (or the SMTP message data) left and no usable answer came back: the
    connection was lost, the transport closed while it was in flight, or an earlier
    attempt of a retried send was itself ambiguous. A retry could deliver it twice.
    """

    outcome = Outcome.AMBIGUOUS


class DeliveryTimeoutError(DeliveryUnknownError, TimeoutError):
    """No answer in time after the message was sent; it may have been accepted. Ambiguous."""


# ----------------------------------------------------------------------------- other


class RateLimiterError(MailError):
    """The shared rate limiter backend (Redis) failed and the policy is to fail closed."""


class UndeliveredError(MailError):
    """Closing the transport left messages undelivered.

    ``failures`` lists ``(message_id, exception)`` pairs: messages that were still queued
    when the drain timeout ran out, or that failed while draining.
    """

    def __init__(
        self, message: str, *, failures: Sequence[tuple[str | None, BaseException]]
    ) -> None:
        super().__init__(message)
        #: ``(message_id or None, exception)`` for each message that was not delivered.
        self.failures = list(failures)
