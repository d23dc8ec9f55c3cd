"""asyncmailer: asyncio-native mail transports with precise sending limits.

Compose a message once, send it through Amazon SES (aiobotocore, v1 or v2), SMTP, memory or
files, at an exact rate and with bounded concurrency::

    import asyncmailer

    async with asyncmailer.SESTransport(region_name="eu-west-1", sending_rate=14) as ses:
        await ses.send_mail(from_="shop@example.com", to="ada@example.com",
                            subject="Hello", text="Hi Ada")
"""

from __future__ import annotations

from asyncmailer import errors
from asyncmailer.address import Address, Group
from asyncmailer.dkim import DKIMSigner
from asyncmailer.fields import MessageFields
from asyncmailer.limits import LocalRateLimiter, RateLimiter, RedisRateLimiter
from asyncmailer.message import (
    Attachment,
    Envelope,
    IcalEvent,
    ListHeaders,
    ListLink,
    Message,
    PreparedHeader,
)
from asyncmailer.mime import compose, compose_sync
from asyncmailer.options import (
    AWSClientSettings,
    Credentials,
    Limits,
    QuotaPolicy,
    SMTPPool,
    Suppression,
    TLSSettings,
    TransportOptions,
)
from asyncmailer.result import ComposedMessage, SendResult
from asyncmailer.retry import RetryPolicy
from asyncmailer.transports import (
    FileTransport,
    MemoryTransport,
    SESTransport,
    SMTPTransport,
    Transport,
    TransportState,
)

__all__ = [
    "AWSClientSettings",
    "Address",
    "Attachment",
    "ComposedMessage",
    "Credentials",
    "DKIMSigner",
    "Envelope",
    "FileTransport",
    "Group",
    "IcalEvent",
    "Limits",
    "ListHeaders",
    "ListLink",
    "LocalRateLimiter",
    "MemoryTransport",
    "Message",
    "MessageFields",
    "PreparedHeader",
    "QuotaPolicy",
    "RateLimiter",
    "RedisRateLimiter",
    "RetryPolicy",
    "SESTransport",
    "SMTPPool",
    "SMTPTransport",
    "SendResult",
    "Suppression",
    "TLSSettings",
    "Transport",
    "TransportOptions",
    "TransportState",
    "compose",
    "compose_sync",
    "errors",
]

__version__ = "0.1.0.dev0"
