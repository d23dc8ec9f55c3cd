"""The keyword fields of ``send_mail`` and ``prepare``, typed for your IDE and type checker.

:class:`MessageFields` is a :class:`~typing.TypedDict` with one key per field of
:class:`~asyncmailer.Message`, and the same value types. Transports declare
``**fields: Unpack[MessageFields]`` (PEP 692), so that::

    await ses.send_mail(from_="shop@example.com", to="ada@example.com", subjct="Hi")

is flagged by mypy and pyright (``subjct`` is not a field), completed by your IDE, and
refused at run time with a :class:`~asyncmailer.errors.MessageError` naming ``subjct``
and suggesting ``subject``. ``tests/test_fields.py`` keeps this class in step with
:class:`~asyncmailer.Message`.

Build fields ahead of a call with the TypedDict itself (they override the fields of the
message given)::

    common: MessageFields = {"from_": "shop@example.com", "reply_to": "help@example.com"}
    await ses.send_mail(Message(to="ada@example.com", subject="Hi", text="Hello"), **common)
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypedDict

from asyncmailer.address import AddressesLike, AddressLike
from asyncmailer.dkim import DKIMSigner
from asyncmailer.errors import MessageError
from asyncmailer.message import (
    Attachment,
    Envelope,
    HeaderValue,
    IcalEvent,
    ListHeaders,
    Message,
)

__all__ = ["MessageFields", "check_field_names"]


class MessageFields(TypedDict, total=False):
    """Every field of :class:`~asyncmailer.Message`, as optional keyword arguments.

    See :class:`~asyncmailer.Message` for what each one means; the types are the same.
    """

    from_: AddressLike | None
    sender: AddressLike | None
    to: AddressesLike | None
    cc: AddressesLike | None
    bcc: AddressesLike | None
    reply_to: AddressesLike | None
    in_reply_to: str | None
    references: str | Sequence[str] | None
    subject: str | None
    text: str | bytes | Attachment | None
    html: str | bytes | Attachment | None
    amp: str | bytes | Attachment | None
    watch_html: str | bytes | Attachment | None
    ical_event: IcalEvent | str | None
    alternatives: Sequence[Attachment]
    attachments: Sequence[Attachment]
    headers: Mapping[str, HeaderValue] | Sequence[tuple[str, str]] | None
    list_headers: ListHeaders | Mapping[str, Any] | None
    priority: Literal["high", "normal", "low"] | None
    message_id: str | None
    date: datetime.datetime | str | None
    envelope: Envelope | Mapping[str, Any] | None
    raw: bytes | str | Attachment | None
    attach_data_urls: bool
    text_encoding: Literal["quoted-printable", "base64"] | None
    keep_bcc: bool
    disable_file_access: bool
    disable_url_access: bool
    ses: Mapping[str, Any] | None
    dkim: DKIMSigner | Mapping[str, Any] | bool | None
    metadata: Mapping[str, Any]


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Message))


def check_field_names(names: Mapping[str, object]) -> None:
    """Raise :class:`~asyncmailer.errors.MessageError` for a name that is not a field.

    The error names the first unknown field and suggests the closest known one::

        MessageError: 'subjct' is not a message field; did you mean 'subject'?
    """
    for name in names:
        if name in _FIELD_NAMES:
            continue
        close = difflib.get_close_matches(name, _FIELD_NAMES, n=1, cutoff=0.6)
        if not close and name.rstrip("_") + "_" in _FIELD_NAMES:
            close = [name.rstrip("_") + "_"]  # from= is a syntax error; "from" → "from_"
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise MessageError(
            f"{name!r} is not a message field{hint} (fields: {', '.join(_FIELD_NAMES)})",
            field=name,
        )
