"""Prebuilt messages: ``Message.raw``, ``bytes``/``str`` and :class:`email.message.EmailMessage`.

The message is sent as is except for three things: line endings become CRLF, ``Bcc`` header
fields are removed (unless ``keep_bcc``), and a ``Message-ID`` is added when there is none.
The envelope comes from the override, else the message's address fields, else the headers.
"""

from __future__ import annotations

import email.message
import re
from collections.abc import Mapping, Sequence
from typing import Any

from asyncmailer.address import Address, Group, parse_address, parse_addresses
from asyncmailer.errors import HeaderError, MessageError
from asyncmailer.message import Attachment, Envelope, Message
from asyncmailer.mime._build import (
    BuildOptions,
    _content_of,
    envelope_from_headers,
    make_envelope,
    new_token,
)
from asyncmailer.mime._encoding import has_long_crlf_line
from asyncmailer.mime._headers import MAX_LINE, msg_id
from asyncmailer.result import ComposedMessage

__all__ = ["compose_raw", "compose_raw_message", "email_message_bytes", "to_crlf"]

_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")


def to_crlf(data: bytes) -> bytes:
    """Normalise CRLF, lone CR and lone LF line endings to CRLF."""
    cr = data.count(b"\r")
    if cr == data.count(b"\n") == data.count(b"\r\n"):
        return data  # already CRLF throughout: no copies (three passes over 27 MB hold the GIL)
    if cr:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return data.replace(b"\n", b"\r\n")


def email_message_bytes(msg: email.message.Message) -> bytes:
    """Serialise an :class:`email.message.EmailMessage` (or legacy Message) with CRLF endings."""
    try:
        policy = msg.policy.clone(linesep="\r\n", mangle_from_=False)
        return msg.as_bytes(policy=policy)
    except (TypeError, ValueError, LookupError, UnicodeError, AttributeError) as exc:
        raise MessageError(
            f"message: cannot serialise the EmailMessage: {exc}", field="message"
        ) from exc


def _fields(head: bytes, field: str) -> list[tuple[str, list[bytes]]]:
    """Split a header block into (lower-case name, physical lines) pairs."""
    fields: list[tuple[str, list[bytes]]] = []
    for line in head.split(b"\r\n") if head else ():
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1].append(line)
            continue
        match = _FIELD_NAME.match(line)
        if match is None:
            raise HeaderError(f"{field}: invalid header line {line[:80]!r}", field=field)
        fields.append((match.group(1).decode("ascii").lower(), [line]))
    return fields


def _value(lines: list[bytes]) -> str:
    joined = b"".join(lines)
    return joined.partition(b":")[2].decode("utf-8", "surrogateescape").strip()


def _header_addresses(
    fields: list[tuple[str, list[bytes]]], name: str, field: str
) -> list[Address | Group]:
    out: list[Address | Group] = []
    for key, lines in fields:
        if key == name:
            out.extend(parse_addresses(_value(lines), field=f"{field}[{name!r}]"))
    return out


def compose_raw(
    data: bytes,
    options: BuildOptions,
    *,
    keep_bcc: bool = False,
    envelope: Envelope | Mapping[str, Any] | None = None,
    header_from: Sequence[Address | Group] | None = None,
    header_rcpt: list[tuple[str, Sequence[Address | Group]]] | None = None,
    field: str = "raw",
) -> ComposedMessage:
    """Compose a prebuilt message given as bytes (see the module docstring)."""
    data = to_crlf(data)
    if data.startswith(b"\r\n"):
        head, body = b"", data
    else:
        head, sep, rest = data.partition(b"\r\n\r\n")
        body = b"\r\n" + rest if sep else b"\r\n"
    if has_long_crlf_line(data, MAX_LINE):  # to_crlf() left CRLF line breaks only
        raise MessageError(f"{field}: a line is longer than {MAX_LINE} octets", field=field)
    fields = _fields(head, field)
    if envelope is not None:
        env = make_envelope(envelope)
    else:
        origin = header_from or _header_addresses(fields, "from", field)
        sender = [] if header_from else _header_addresses(fields, "sender", field)
        rcpt = header_rcpt or [
            (name, _header_addresses(fields, name, field)) for name in ("to", "cc", "bcc")
        ]
        env = envelope_from_headers(origin, sender, rcpt)
    smtputf8 = not env.from_.isascii() or not all(a.isascii() for a in env.to)
    kept = [lines for name, lines in fields if keep_bcc or name != "bcc"]
    message_id = None
    for name, lines in fields:
        if name == "message-id":
            value = _value(lines)
            try:
                message_id = msg_id(value, field)
            except HeaderError:
                message_id = value
            break
    if message_id is not None and len(kept) == len(fields):
        # Nothing to add or remove: the fields and the body put back together are ``data``.
        return ComposedMessage(data, env, message_id, smtputf8)
    out: list[bytes] = []
    if message_id is None:
        message_id = f"<{new_token(options, 16)}@{env.from_.rpartition('@')[2]}>"
        out.append(f"Message-ID: {message_id}\r\n".encode())
    for lines in kept:
        out.append(b"\r\n".join(lines) + b"\r\n")
    out.append(body)
    return ComposedMessage(b"".join(out), env, message_id, smtputf8)


def compose_raw_message(
    message: Message, resolved: Mapping[str, bytes], options: BuildOptions
) -> ComposedMessage:
    """Compose a :class:`Message` whose ``raw`` field holds the whole message."""
    raw = message.raw
    if isinstance(raw, Attachment):
        data = _content_of(raw, "raw", resolved).data if raw.raw is None else _as_bytes(raw.raw)
    elif raw is not None:
        data = _as_bytes(raw)
    else:  # pragma: no cover - guarded by the caller
        raise MessageError("raw: missing", field="raw")
    header_from: list[Address | Group] | None = None
    if message.from_ is not None:
        header_from = [parse_address(message.from_, field="from_")]
    elif message.sender is not None:
        header_from = [parse_address(message.sender, field="sender")]
    rcpt: list[tuple[str, Sequence[Address | Group]]] = [
        (name, parse_addresses(getattr(message, name), field=name)) for name in ("to", "cc", "bcc")
    ]
    has_rcpt = any(items for _, items in rcpt)
    return compose_raw(
        data,
        options,
        keep_bcc=message.keep_bcc if options.keep_bcc is None else options.keep_bcc,
        envelope=options.envelope if options.envelope is not None else message.envelope,
        header_from=header_from,
        header_rcpt=rcpt if has_rcpt else None,
    )


def _as_bytes(value: bytes | str) -> bytes:
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            raise MessageError("raw: text is not valid Unicode", field="raw") from None
    return bytes(value)
