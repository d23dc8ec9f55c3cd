"""The message model: what to send, as keyword fields mirroring Nodemailer's options.

:class:`Message` holds *what the user asked for*; nothing is parsed or encoded here.
:func:`asyncmailer.compose` turns it into wire-format bytes and raises typed errors
naming the offending field.

Example::

    Message(
        from_="Shop <shop@example.com>",
        to=["ada@example.com", ("Bob", "bob@example.com")],
        subject="Your order",
        text="Thanks!",
        html='<p>Thanks! <img src="cid:logo"></p>',
        attachments=[Attachment(path="logo.png", cid="logo")],
    )
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from asyncmailer.address import AddressesLike, AddressLike

if TYPE_CHECKING:
    from asyncmailer.dkim import DKIMSigner  # dkim imports this module (via result)

__all__ = [
    "Attachment",
    "Envelope",
    "HeaderValue",
    "IcalEvent",
    "ListHeaders",
    "ListLink",
    "Message",
    "PreparedHeader",
]


@dataclass(frozen=True, slots=True)
class Envelope:
    """The SMTP envelope: who the message is *from* and who receives it.

    ``to`` holds every recipient (To + Cc + Bcc), de-duplicated, in order. Addresses are
    bare ``addr-spec`` strings with IDNA-encoded domains.
    """

    #: Envelope sender (MAIL FROM / SES ``Source``).
    from_: str
    #: Envelope recipients (RCPT TO / SES ``Destinations``).
    to: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    """A file attached to the message, an inline (``cid``) image, or an alternative body.

    Exactly one source is used, in this order: ``raw`` (a complete prebuilt MIME part),
    ``content``, ``path`` (read with anyio, never blocking the loop), ``href`` (fetched
    only when URL access is enabled).
    """

    #: File name shown to the recipient; guessed from ``path``/``href`` when absent.
    filename: str | None = None
    #: The data: bytes, text (see ``encoding``) or an async iterator of bytes.
    content: bytes | str | AsyncIterable[bytes] | None = None
    #: A local file to read.
    path: str | None = None
    #: An ``http(s)://`` URL (off unless URL access is enabled; redirects are refused) or a
    #: ``data:`` URL (its media type must be a valid ``type/subtype``).
    href: str | None = None
    #: MIME type; guessed from the filename when absent.
    content_type: str | None = None
    #: ``"attachment"`` (default) or ``"inline"`` (default when ``cid`` is set).
    content_disposition: Literal["attachment", "inline"] | None = None
    #: Content-ID for ``<img src="cid:...">`` references in the HTML body.
    cid: str | None = None
    #: How ``str`` content is encoded: ``"base64"``, ``"hex"``, or a charset (default utf-8).
    encoding: str | None = None
    #: Force a transfer encoding (``"base64"``, ``"quoted-printable"``, ``"7bit"``...).
    content_transfer_encoding: str | None = None
    #: Extra headers for this part.
    headers: Mapping[str, HeaderValue] | None = None
    #: A complete MIME part (headers and body) inserted as given, after validation.
    raw: bytes | str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class IcalEvent:
    """A calendar invitation: a ``text/calendar`` alternative plus an ``.ics`` attachment."""

    #: The iCalendar text.
    content: str | bytes | None = None
    #: Or a local ``.ics`` file.
    path: str | None = None
    #: Or a URL (URL access must be enabled).
    href: str | None = None
    #: The iTIP method (``REQUEST``, ``CANCEL``, ``PUBLISH``...).
    method: str = "PUBLISH"
    #: Name of the attached file.
    filename: str = "invite.ics"
    #: Encoding of ``content`` when it is ``str`` (default utf-8).
    encoding: str | None = None


@dataclass(frozen=True, slots=True)
class PreparedHeader:
    """A header value written exactly as given, not encoded.

    Validated first: CR and LF only as ``CRLF`` + space/tab folds, no other control
    character (NUL, NEL, U+2028/U+2029...; TAB is allowed), lines of at most 998 octets.
    """

    #: The value, already folded/encoded by the caller.
    value: str


#: A custom header's value: one string, several (repeated header), or a prepared value.
HeaderValue = str | Sequence[str] | PreparedHeader


@dataclass(frozen=True, slots=True)
class ListLink:
    """One URL in a ``List-*`` header, with an optional comment (RFC 2369)."""

    #: ``https://...``, ``mailto:...`` or a bare address (becomes ``mailto:``).
    url: str
    #: Optional comment written after the URL.
    comment: str | None = None


#: What each List-* field accepts.
ListValue = str | ListLink | Sequence[str | ListLink]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListHeaders:
    """RFC 2369 ``List-*`` headers (Nodemailer's ``list`` option), plus RFC 8058 one-click.

    ``one_click=True`` adds ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``; it
    requires an ``https`` unsubscribe URL.
    """

    #: ``List-Help``: where to get help.
    help: ListValue | None = None
    #: ``List-Unsubscribe``: ``https`` and/or ``mailto`` unsubscribe links.
    unsubscribe: ListValue | None = None
    #: ``List-Subscribe``.
    subscribe: ListValue | None = None
    #: ``List-Post``: how to post to the list.
    post: ListValue | None = None
    #: ``List-Owner``.
    owner: ListValue | None = None
    #: ``List-Archive``.
    archive: ListValue | None = None
    #: ``List-ID``: a ``ListLink(url="list.example.com", comment="My list")`` or a string.
    id: str | ListLink | None = None
    #: Add RFC 8058 one-click unsubscribe.
    one_click: bool = False


@dataclass(frozen=True, kw_only=True)
class Message:
    """An email to send. Every field is keyword-only and optional; see the module docs."""

    #: The author (``From``).
    from_: AddressLike | None = None
    #: ``Sender`` header, when it differs from ``from_``.
    sender: AddressLike | None = None
    to: AddressesLike | None = None
    cc: AddressesLike | None = None
    #: Envelope-only recipients; never written as a header unless ``keep_bcc``.
    bcc: AddressesLike | None = None
    reply_to: AddressesLike | None = None
    #: Message-ID this replies to.
    in_reply_to: str | None = None
    #: Message-IDs of the thread.
    references: str | Sequence[str] | None = None
    subject: str | None = None
    #: Plain text body (or an :class:`Attachment` naming its source).
    text: str | bytes | Attachment | None = None
    #: HTML body.
    html: str | bytes | Attachment | None = None
    #: AMP4EMAIL body (``text/x-amp-html``).
    amp: str | bytes | Attachment | None = None
    #: Apple Watch body (``text/watch-html``).
    watch_html: str | bytes | Attachment | None = None
    #: A calendar invitation.
    ical_event: IcalEvent | str | None = None
    #: Extra alternatives (``multipart/alternative`` siblings after the html one).
    alternatives: Sequence[Attachment] = ()
    attachments: Sequence[Attachment] = ()
    #: Custom headers: ``{"X-Tag": "a"}``, ``{"X-Multi": ["a", "b"]}``,
    #: ``{"X-P": PreparedHeader(...)}``, or a sequence of ``(name, value)`` pairs.
    headers: Mapping[str, HeaderValue] | Sequence[tuple[str, str]] | None = None
    #: ``List-*`` headers (Nodemailer's ``list``): a :class:`ListHeaders` or a mapping.
    list_headers: ListHeaders | Mapping[str, Any] | None = None
    #: ``"high"``, ``"normal"`` or ``"low"``.
    priority: Literal["high", "normal", "low"] | None = None
    #: Use this Message-ID instead of generating one.
    message_id: str | None = None
    #: The ``Date`` header (default: now).
    date: datetime.datetime | str | None = None
    #: Override the SMTP envelope (default: derived from the headers).
    envelope: Envelope | Mapping[str, Any] | None = None
    #: A complete prebuilt message (bytes, text, or an :class:`Attachment` source) sent as is.
    raw: bytes | str | Attachment | None = None
    #: Turn ``data:`` images in ``html`` into inline ``cid`` attachments.
    attach_data_urls: bool = False
    #: Force the text parts' transfer encoding: ``"quoted-printable"`` or ``"base64"``.
    text_encoding: Literal["quoted-printable", "base64"] | None = None
    #: Write the ``Bcc`` header into the message (off by default).
    keep_bcc: bool = False
    #: Refuse ``path`` sources.
    disable_file_access: bool = False
    #: Refuse ``http(s)`` ``href`` sources (on by default).
    disable_url_access: bool = True
    #: Per-message SES API options (``Tags``, ``ConfigurationSetName``...), merged into the call.
    ses: Mapping[str, Any] | None = None
    #: Per-message DKIM options (see :class:`asyncmailer.dkim.DKIMSigner`); ``False`` disables.
    dkim: DKIMSigner | Mapping[str, Any] | bool | None = None
    #: Free-form data for your own code (hooks, logs); never sent.
    metadata: Mapping[str, Any] = field(default_factory=dict)
