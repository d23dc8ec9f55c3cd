"""Transports: where composed messages go. All share :class:`Transport`'s ``send_mail``."""

from __future__ import annotations

from asyncmailer.transports.base import Delivery, Transport, TransportState
from asyncmailer.transports.file import FileTransport
from asyncmailer.transports.memory import MemoryTransport, SentMessage
from asyncmailer.transports.ses import SESTransport
from asyncmailer.transports.smtp import SMTPTransport

__all__ = [
    "Delivery",
    "FileTransport",
    "MemoryTransport",
    "SESTransport",
    "SMTPTransport",
    "SentMessage",
    "Transport",
    "TransportState",
]
