"""The public entry points: :func:`compose` (async) and :func:`compose_sync`."""

from __future__ import annotations

import datetime
import email.message
from collections.abc import Mapping
from typing import Any

import anyio.to_thread

from asyncmailer.errors import ContentError, MessageError
from asyncmailer.message import Attachment, Envelope, Message
from asyncmailer.mime._build import BuildOptions, build_message
from asyncmailer.mime._raw import compose_raw, email_message_bytes
from asyncmailer.mime._sources import (
    DEFAULT_MAX_URL_BYTES,
    DEFAULT_URL_TIMEOUT,
    pending_sources,
    resolve_sources,
)
from asyncmailer.result import ComposedMessage

__all__ = ["THREAD_THRESHOLD", "compose", "compose_sync"]

#: Messages whose content adds up to more than this many octets are encoded in a worker
#: thread, so a 20 MB attachment does not stall the event loop for tens of milliseconds.
THREAD_THRESHOLD = 1024 * 1024

MessageInput = Message | email.message.Message | bytes | bytearray | memoryview | str


def _size(value: object) -> int:
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        return len(value)
    if isinstance(value, Attachment):
        return _size(value.content) + _size(value.raw) + _size(value.href)
    return 0


def _content_size(message: Message, resolved: Mapping[str, bytes]) -> int:
    total = sum(len(data) for data in resolved.values())
    for name in ("raw", "text", "html", "amp", "watch_html"):
        total += _size(getattr(message, name))
    for att in (*message.attachments, *message.alternatives):
        total += _size(att)
    return total


def _options(
    seed: int | None,
    now: datetime.datetime | None,
    keep_bcc: bool | None,
    envelope: Envelope | Mapping[str, Any] | None,
) -> BuildOptions:
    return BuildOptions(seed=seed, now=now, keep_bcc=keep_bcc, envelope=envelope)


def _compose_prebuilt(
    message: email.message.Message | bytes | bytearray | memoryview | str, options: BuildOptions
) -> ComposedMessage:
    """Compose a prebuilt message: an EmailMessage, or the whole message as bytes/str."""
    if isinstance(message, email.message.Message):
        data = email_message_bytes(message)
    elif isinstance(message, str):
        try:
            data = message.encode("utf-8")
        except UnicodeEncodeError:
            raise MessageError("message: text is not valid Unicode", field="message") from None
    elif isinstance(message, (bytes, bytearray, memoryview)):
        data = bytes(message)
    else:
        raise MessageError(
            f"message: expected a Message, EmailMessage, bytes or str, "
            f"not {type(message).__name__}",
            field="message",
        )
    return compose_raw(
        data, options, keep_bcc=bool(options.keep_bcc), envelope=options.envelope, field="message"
    )


async def compose(
    message: MessageInput,
    *,
    seed: int | None = None,
    now: datetime.datetime | None = None,
    keep_bcc: bool | None = None,
    envelope: Envelope | Mapping[str, Any] | None = None,
    max_url_bytes: int = DEFAULT_MAX_URL_BYTES,
    url_timeout: float = DEFAULT_URL_TIMEOUT,
) -> ComposedMessage:
    """Compose ``message`` into wire-format bytes, its envelope and its Message-ID.

    ``message`` is a :class:`~asyncmailer.message.Message`, an
    :class:`email.message.EmailMessage`, or a complete message as ``bytes``/``str``
    (line endings are normalised to CRLF, ``Bcc`` is removed, a Message-ID is added when
    missing, and the envelope comes from the headers).

    Example::

        composed = await compose(Message(from_="a@example.com", to="b@example.com", text="Hi"))
        composed.raw          # b"From: a@example.com\\r\\nTo: b@example.com\\r\\n..."
        composed.envelope     # Envelope(from_="a@example.com", to=("b@example.com",))

    Files are read with anyio, URLs fetched with aiohttp (only when the message sets
    ``disable_url_access=False``; at most ``max_url_bytes`` within ``url_timeout``
    seconds each) and async iterators consumed before the message is built. Messages
    with more than :data:`THREAD_THRESHOLD` octets of content are encoded in a worker
    thread.

    Keyword-only switches:

    - ``seed``: make the Message-ID, the MIME boundaries and generated cids deterministic
      (golden tests); the default uses ``os.urandom``.
    - ``now``: the ``Date`` when the message has none (default: the current time, UTC).
    - ``keep_bcc``: write ``Bcc`` (overrides ``Message.keep_bcc``; for raw input, keep
      the ``Bcc`` header instead of removing it).
    - ``envelope``: override the envelope (an :class:`Envelope` or a mapping with
      ``from_`` and ``to``/``cc``/``bcc``).

    Raises :class:`~asyncmailer.errors.MessageError` subclasses naming the faulty field.
    """
    options = _options(seed, now, keep_bcc, envelope)
    if not isinstance(message, Message):
        # serialising an EmailMessage is CPU-heavy, and so is scanning a big raw message:
        # keep both off the event loop
        if isinstance(message, email.message.Message) or (
            isinstance(message, (bytes, bytearray, memoryview, str))
            and len(message) > THREAD_THRESHOLD
        ):
            return await anyio.to_thread.run_sync(_compose_prebuilt, message, options)
        return _compose_prebuilt(message, options)
    resolved = await resolve_sources(message, max_url_bytes=max_url_bytes, url_timeout=url_timeout)
    if _content_size(message, resolved) > THREAD_THRESHOLD:
        return await anyio.to_thread.run_sync(build_message, message, resolved, options)
    return build_message(message, resolved, options)


def compose_sync(
    message: MessageInput,
    *,
    seed: int | None = None,
    now: datetime.datetime | None = None,
    keep_bcc: bool | None = None,
    envelope: Envelope | Mapping[str, Any] | None = None,
) -> ComposedMessage:
    """Compose without an event loop; same result as :func:`compose` for in-memory content.

    Messages with ``path``/``href`` (other than ``data:``) sources or async iterators raise
    :class:`~asyncmailer.errors.ContentError`: use :func:`compose`.

    Example::

        compose_sync(Message(from_="a@example.com", to="b@example.com", text="Hi")).raw
    """
    options = _options(seed, now, keep_bcc, envelope)
    if not isinstance(message, Message):
        return _compose_prebuilt(message, options)
    pending = pending_sources(message)
    if pending:
        item = pending[0]
        source = item.source if isinstance(item.source, str) else ""
        raise ContentError(
            f"{item.field}: {item.kind} sources need I/O; use 'await compose(...)'",
            field=item.field,
            source=source,
        )
    return build_message(message, {}, options)
