"""The errors of :mod:`asyncmailer.feedback`.

They join the library's tree (:mod:`asyncmailer.errors`) here, in the subpackage, until
the tree itself lists them::

    MailError
    ├── FeedbackError                   (ValueError) a feedback message is malformed or unusable
    │   ├── SNSVerificationError         an SNS envelope failed verification (reason)
    │   └── SuppressionUnavailableError  the suppression backend (Redis, SES) failed
    └── MessageError
        └── SuppressedRecipientError     recipients are on the suppression list (suppressed)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from asyncmailer.errors import MailError, MessageError

if TYPE_CHECKING:
    from asyncmailer.feedback._suppression import SuppressionEntry

__all__ = [
    "FeedbackError",
    "SNSVerificationError",
    "SNSVerificationReason",
    "SuppressedRecipientError",
    "SuppressionUnavailableError",
]

#: Why :func:`~asyncmailer.feedback.verify_sns_message` refused a message.
#:
#: * ``"too_large"``, ``"not_json"``, ``"malformed"``: the body is not an SNS envelope;
#: * ``"unsupported"``: an unknown ``Type`` or ``SignatureVersion``;
#: * ``"cert_url"``: ``SigningCertURL`` is not ``https`` on an SNS host (nothing fetched);
#: * ``"cert_unavailable"``: the certificate could not be fetched (network, HTTP status);
#:   the only reason that may go away on a retry;
#: * ``"cert_invalid"``: the certificate does not parse, does not chain to a trusted root,
#:   or was not valid at the message's ``Timestamp``;
#: * ``"signature"``: the signature does not match the canonical string;
#: * ``"expired"``: the message is older than ``max_age`` (or dated in the future);
#: * ``"topic"``: the topic is not in the allow-list (webhooks).
SNSVerificationReason = Literal[
    "too_large",
    "not_json",
    "malformed",
    "unsupported",
    "cert_url",
    "cert_unavailable",
    "cert_invalid",
    "signature",
    "expired",
    "topic",
]


class FeedbackError(MailError, ValueError):
    """A feedback message (SES event, SNS envelope) is malformed or cannot be used.

    ``field`` names the missing or invalid part, as a JSON path (``"mail.messageId"``).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        #: The JSON path at fault (``"bounce.bouncedRecipients[0].emailAddress"``), if one is.
        self.field = field


class SNSVerificationError(FeedbackError):
    """An SNS envelope failed verification; nothing in it may be trusted."""

    def __init__(
        self, message: str, *, reason: SNSVerificationReason, field: str | None = None
    ) -> None:
        super().__init__(message, field=field)
        #: Why it failed: see :data:`SNSVerificationReason`.
        self.reason: SNSVerificationReason = reason

    @property
    def retryable(self) -> bool:
        """True when the failure may go away (the certificate could not be fetched)."""
        return self.reason == "cert_unavailable"


class SuppressionUnavailableError(FeedbackError):
    """The suppression backend (Redis, the SES API) could not answer."""


class SuppressedRecipientError(MessageError):
    """Recipients of the message are on the suppression list; nothing was sent.

    Raised by :func:`~asyncmailer.feedback.check_suppression` under the ``"fail"`` policy,
    and under ``"drop"`` when no recipient is left.
    """

    def __init__(self, message: str, *, suppressed: Mapping[str, SuppressionEntry]) -> None:
        super().__init__(message, field="envelope.to")
        #: Each suppressed recipient (as given) → why and since when it is suppressed.
        self.suppressed: dict[str, SuppressionEntry] = dict(suppressed)
