"""Value objects returned by the composer and the transports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from asyncmailer.message import Envelope

if TYPE_CHECKING:
    from asyncmailer.feedback import SuppressionEntry

__all__ = ["ComposedMessage", "SendResult"]


@dataclass(frozen=True, slots=True)
class ComposedMessage:
    """A message in wire format, ready for any transport.

    ``raw`` uses CRLF line endings; ``envelope.to`` holds To + Cc + Bcc, de-duplicated.
    """

    #: The complete message (headers and body), CRLF line endings.
    raw: bytes
    #: Envelope sender and recipients.
    envelope: Envelope
    #: The ``Message-ID`` header value, with angle brackets (``"<...@example.com>"``).
    message_id: str
    #: True when an address has a non-ASCII local part (needs SMTPUTF8 end to end).
    smtputf8: bool = False


@dataclass(frozen=True, slots=True)
class SendResult:
    """What a transport reports for one delivered message.

    ``message_id`` is what recipients see: for SES it is ``<SesId@REGION.amazonses.com>``
    because SES replaces the Message-ID header; ``response`` is the backend's own answer
    (the SES MessageId, the SMTP reply, the file path).
    """

    #: Envelope actually used.
    envelope: Envelope
    #: The Message-ID recipients will see.
    message_id: str
    #: The backend's answer: SES MessageId, SMTP reply text, file path...
    response: str
    #: Seconds spent waiting for the rate limiter (all attempts).
    rate_wait: float = 0.0
    #: Seconds spent waiting for a connection slot (all attempts).
    connection_wait: float = 0.0
    #: Number of delivery attempts (1 when no retry was needed).
    attempts: int = 1
    #: Seconds from the call to the final answer.
    elapsed: float = 0.0
    #: Name of the transport that delivered it (``"ses"``, ``"smtp"``...).
    transport: str = ""
    #: Recipients left out by ``Suppression(policy="drop")``, each with why it is suppressed.
    suppressed: Mapping[str, SuppressionEntry] = field(default_factory=dict)
