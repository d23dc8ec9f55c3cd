"""Transports: where composed messages go. All share :class:`Transport`'s ``send_mail``."""

from __future__ import annotations

from asyncmailer.transports.base import Delivery, Transport, TransportState
from asyncmailer.transports.ses import SESTransport

__all__ = ["Delivery", "SESTransport", "Transport", "TransportState"]
