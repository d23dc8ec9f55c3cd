"""The exception tree of asyncmailer.

Every error the library raises on purpose derives from :class:`MailError`. The tree
separates *usage* errors (your code or your message is wrong; nothing was sent) from
*delivery* errors (the backend said no, or we cannot tell what it did)::

    MailError
    ├── UsageError                      misuse of the API; nothing sent
    │   ├── TransportStateError          (RuntimeError) used before __aenter__ / after close
    │   └── ConfigurationError           (ValueError) invalid option or option combination
    ├── MessageError                     (ValueError) the message is invalid; nothing sent
    │   ├── AddressError                 a malformed address (field, text)
    │   ├── HeaderError                  CR/LF/NUL or a bad header name/value (field)
    │   ├── ContentError                 a body/attachment source cannot be read (field, source)
    │   ├── MessageTooLargeError         bigger than the transport accepts (size, limit)
    │   ├── TooManyRecipientsError       more recipients than allowed (count, limit)
    │   └── SMTPUTF8RequiredError        non-ASCII local part on a transport without SMTPUTF8
    ├── DeliveryError                    the backend refused or failed (outcome, code, ...)
    │   ├── MessageRejectedError         the backend refused this message (final)
    │   │   ├── IdentityNotVerifiedError  sender/recipient identity not verified (identity)
    │   │   ├── MailFromDomainNotVerifiedError
    │   │   └── RecipientsRefusedError   SMTP: some recipients refused (refused)
    │   ├── AccessDeniedError            (PermissionError) IAM denies the action (action)
    │   ├── ThrottlingError              the backend asked us to slow down
    │   │   ├── SendingRateExceededError  per-second rate; safe to retry later
    │   │   └── DailyQuotaExceededError   24-hour quota; final until the window moves
    │   ├── SendingPausedError           account or configuration set sending is paused
    │   ├── ConfigurationSetDoesNotExistError
    │   ├── ServiceUnavailableError      5xx before acceptance; safe to retry
    │   ├── DeliveryTimeoutError         (TimeoutError) no answer in time (ambiguous)
    │   ├── DeliveryUnknownError         the message may or may not have been accepted
    │   └── SendAbortedError             the transport closed before the message was sent
    ├── RateLimiterError                 the shared rate limiter backend failed (fail closed)
    └── UndeliveredError                 close() ended with messages not delivered (failures)

Each :class:`DeliveryError` carries an :class:`Outcome` telling whether a retry is safe
(``RETRY_SAFE``), could duplicate the message (``AMBIGUOUS``) or is pointless (``FINAL``).
Backend exceptions are mapped to this tree in one place per transport, and the original
exception is always chained as ``__cause__``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

__all__ = [
    "AccessDeniedError",
    "AddressError",
    "ConfigurationError",
    "ConfigurationSetDoesNotExistError",
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
    "RecipientsRefusedError",
    "SMTPUTF8RequiredError",
    "SendAbortedError",
    "SendingPausedError",
    "SendingRateExceededError",
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
    """An option, or a combination of options, is invalid."""

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


class DeliveryError(MailError):
    """The backend refused the message, failed, or left its fate unknown."""

    #: Default outcome for this class; instances may carry a more precise one.
    default_outcome: Outcome = Outcome.FINAL

    def __init__(
        self,
        message: str,
        *,
        outcome: Outcome | None = None,
        code: str | int | None = None,
        service_message: str | None = None,
        request_id: str | None = None,
        message_id: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        #: Whether a retry is safe, ambiguous, or pointless.
        self.outcome = outcome if outcome is not None else self.default_outcome
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
    """The backend refused this message; sending it again unchanged will fail again."""


class IdentityNotVerifiedError(MessageRejectedError):
    """SES refused because an identity (sender, or recipient in the sandbox) is not verified."""

    def __init__(self, message: str, *, identity: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        #: The email address or domain SES named as unverified.
        self.identity = identity


class MailFromDomainNotVerifiedError(MessageRejectedError):
    """The custom MAIL FROM domain of the sending identity is not verified."""


class RecipientsRefusedError(MessageRejectedError):
    """Some recipients were refused (SMTP); ``refused`` maps each one to (code, text)."""

    def __init__(
        self, message: str, *, refused: dict[str, tuple[int, str]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        #: Refused recipient → (SMTP reply code, reply text).
        self.refused: dict[str, tuple[int, str]] = dict(refused or {})


class AccessDeniedError(DeliveryError, PermissionError):
    """The credentials are not allowed to perform the API action."""

    def __init__(self, message: str, *, action: str = "", **kwargs: Any) -> None:
        DeliveryError.__init__(self, message, **kwargs)
        #: The IAM action that was denied, such as ``ses:SendRawEmail``.
        self.action = action


class ThrottlingError(DeliveryError):
    """The backend asked us to slow down."""


class SendingRateExceededError(ThrottlingError):
    """The per-second sending rate was exceeded; the message was not sent. Safe to retry."""

    default_outcome = Outcome.RETRY_SAFE


class DailyQuotaExceededError(ThrottlingError):
    """The 24-hour sending quota is used up; retrying soon will not help."""


class SendingPausedError(DeliveryError):
    """Sending is paused for the account or the configuration set."""


class ConfigurationSetDoesNotExistError(DeliveryError):
    """The configuration set named in the request does not exist."""

    def __init__(self, message: str, *, configuration_set: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        #: The configuration set name that was used.
        self.configuration_set = configuration_set


class ServiceUnavailableError(DeliveryError):
    """The backend failed before accepting the message (5xx); safe to retry."""

    default_outcome = Outcome.RETRY_SAFE


class DeliveryTimeoutError(DeliveryError, TimeoutError):
    """No answer in time; the message may have been accepted."""

    default_outcome = Outcome.AMBIGUOUS


class DeliveryUnknownError(DeliveryError):
    """The request may have been accepted (connection lost after the body was sent...)."""

    default_outcome = Outcome.AMBIGUOUS


class SendAbortedError(DeliveryError):
    """The transport was closed (drain timeout) before this message was handed to the backend.

    Nothing was sent, so sending it again through another transport is safe.
    """

    default_outcome = Outcome.RETRY_SAFE


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
