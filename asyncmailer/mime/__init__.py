"""The MIME composer: :class:`~asyncmailer.message.Message` → wire-format bytes.

Every transport calls :func:`compose`::

    from asyncmailer.mime import compose

    composed = await compose(message)
    composed.raw, composed.envelope, composed.message_id, composed.smtputf8

Modules: ``_encoding`` (base64, quoted-printable, RFC 2047, RFC 2231), ``_headers``
(header validation, folding, address lists, List-*), ``_sources`` (files, URLs, async
iterators, ``data:`` URLs), ``_build`` (the MIME tree and the writer), ``_raw`` (prebuilt
messages), ``_compose`` (the entry points).
"""

from __future__ import annotations

from asyncmailer.mime._compose import THREAD_THRESHOLD, compose, compose_sync
from asyncmailer.mime._encoding import TEXT_7BIT_MAX_LINE
from asyncmailer.mime._sources import DEFAULT_MAX_URL_BYTES, DEFAULT_URL_TIMEOUT

__all__ = [
    "DEFAULT_MAX_URL_BYTES",
    "DEFAULT_URL_TIMEOUT",
    "TEXT_7BIT_MAX_LINE",
    "THREAD_THRESHOLD",
    "compose",
    "compose_sync",
]
