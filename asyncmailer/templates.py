"""SES templates and bulk destinations: what ``send_mail(template=...)`` and ``send_bulk`` take.

Example::

    from asyncmailer.templates import BulkDestination, SESTemplate

    welcome = SESTemplate(name="welcome", data={"shop": "Example"})
    async with SESTransport(sending_rate=200) as ses:
        await ses.send_mail(from_="shop@example.com", to="ada@example.com", template=welcome)
        async for outcome in ses.send_bulk(
            welcome,
            [BulkDestination(to="bob@example.com", data={"name": "Bob"}), "eve@example.com"],
            from_="shop@example.com",
        ):
            print(outcome)

A template is *stored* (``name`` or ``arn``: created with
:meth:`~asyncmailer.SESTransport.create_template`) or *inline* (``subject`` plus ``text``
and/or ``html``: SESv2 ``TemplateContent``). SES renders it with its Handlebars subset
(``{{name}}``, ``{{contact.city}}``, ``{{#if}}``, ``{{#each}}``); it does **not**
HTML-escape the data, so escape user input yourself. A variable missing from the data is
a rendering failure (SES then drops that message and emits a Rendering Failure event).
See ``docs/templates.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formataddr
from typing import Any, Literal, TypeAlias

from asyncmailer.address import Address, Group, ascii_addr_spec, parse_addresses
from asyncmailer.errors import AddressError, HeaderError, MessageError

__all__ = [
    "MAX_BULK_ENTRIES",
    "MAX_RECIPIENTS_PER_ENTRY",
    "BulkDestination",
    "DestinationInput",
    "SESTemplate",
    "TemplateAttachment",
    "TemplateContent",
]

#: SES accepts at most this many entries (destinations) in one ``SendBulkEmail`` request.
MAX_BULK_ENTRIES = 50
#: SES accepts at most this many recipients (To + Cc + Bcc) per message, and so per entry.
MAX_RECIPIENTS_PER_ENTRY = 50

_HEADER_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII without ':'
_BAD_VALUE = re.compile(r"[\r\n\x00]")


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise MessageError(f"{what} must be JSON-serialisable: {exc}", field=what) from exc


def _headers(
    value: Mapping[str, str] | Sequence[tuple[str, str]], what: str
) -> tuple[tuple[str, str], ...]:
    pairs = list(value.items()) if isinstance(value, Mapping) else list(value)
    out: list[tuple[str, str]] = []
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise HeaderError(f"{what} must be (name, value) pairs, got {pair!r}", field=what)
        name, text = pair
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise HeaderError(f"{what}: invalid header name {name!r}", field=what)
        if not isinstance(text, str) or _BAD_VALUE.search(text):
            raise HeaderError(f"{what}: header {name} has CR, LF or NUL", field=what)
        out.append((name, text))
    return tuple(out)


def _sesv2_headers(headers: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"Name": name, "Value": value} for name, value in headers]


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateAttachment:
    """A file sent with every message of a template (SESv2 ``Template.Attachments``).

    Needs a botocore whose SESv2 model has ``Template.Attachments`` (2025 models); the
    transport refuses it with a clear error on older ones.
    """

    #: File name shown to the recipient.
    filename: str
    #: The file's bytes (SES base64-encodes them).
    content: bytes
    #: MIME type; None lets SES guess it from the name.
    content_type: str | None = None
    #: ``"ATTACHMENT"`` or ``"INLINE"`` (with ``content_id``, for ``cid:`` images).
    disposition: Literal["ATTACHMENT", "INLINE"] = "ATTACHMENT"
    #: Content-ID for inline parts (without angle brackets).
    content_id: str | None = None
    #: Content-Description, optional.
    description: str | None = None

    def to_sesv2(self) -> dict[str, Any]:
        """The SESv2 ``Attachment`` structure."""
        item: dict[str, Any] = {
            "RawContent": self.content,
            "FileName": self.filename,
            "ContentDisposition": self.disposition,
        }
        if self.content_type:
            item["ContentType"] = self.content_type
        if self.content_id:
            item["ContentId"] = self.content_id
        if self.description:
            item["ContentDescription"] = self.description
        return item


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateContent:
    """The parts of a stored template: what ``create_template`` stores and ``get_template`` reads.

    Example::

        TemplateContent(subject="Hello {{name}}", text="Hi {{name}}", html="<p>Hi {{name}}</p>")
    """

    #: Subject line template.
    subject: str
    #: Plain-text body template.
    text: str | None = None
    #: HTML body template.
    html: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.subject, str) or not self.subject:
            raise MessageError("a template needs a subject", field="subject")
        if self.text is None and self.html is None:
            raise MessageError("a template needs text, html or both", field="text")

    def to_sesv2(self) -> dict[str, str]:
        """The SESv2 ``EmailTemplateContent`` structure."""
        content = {"Subject": self.subject}
        if self.text is not None:
            content["Text"] = self.text
        if self.html is not None:
            content["Html"] = self.html
        return content


@dataclass(frozen=True, slots=True, kw_only=True)
class SESTemplate:
    """One SES template with its default data: stored (``name``/``arn``) or inline.

    Example::

        SESTemplate(name="welcome", data={"shop": "Example"})
        SESTemplate(subject="Hi {{name}}", text="Hello {{name}}", data={"name": "Ada"})

    ``data`` (JSON-serialisable, usually a dict) is serialised once, when the value is
    created. In :meth:`~asyncmailer.SESTransport.send_bulk` it is the default data; each
    destination's ``data`` replaces it for that destination (SES does not merge them).
    ``headers`` and ``attachments`` go with every message; they need a botocore whose
    SESv2 model has ``Template.Headers`` / ``Template.Attachments``.
    """

    #: Name of a stored template.
    name: str | None = None
    #: ARN of a stored template (instead of ``name``).
    arn: str | None = None
    #: Inline subject template.
    subject: str | None = None
    #: Inline plain-text body template.
    text: str | None = None
    #: Inline HTML body template.
    html: str | None = None
    #: Template data (JSON-serialisable); ``{}`` when None.
    data: Any = None
    #: Headers added to every message (SESv2 ``Template.Headers``).
    headers: Mapping[str, str] | Sequence[tuple[str, str]] = ()
    #: Files sent with every message (SESv2 ``Template.Attachments``).
    attachments: Sequence[TemplateAttachment] = ()
    _data_json: str = field(init=False, repr=False, compare=False, default="{}")
    _headers: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        inline = self.subject is not None or self.text is not None or self.html is not None
        sources = sum((self.name is not None, self.arn is not None, inline))
        if sources != 1:
            raise MessageError(
                "an SESTemplate is either stored (name or arn) or inline (subject with text "
                "and/or html), exactly one of them",
                field="template",
            )
        if inline:
            TemplateContent(subject=self.subject or "", text=self.text, html=self.html)
        for what in ("name", "arn"):
            value = getattr(self, what)
            if value is not None and (not isinstance(value, str) or not value):
                raise MessageError(f"template {what} must be a non-empty string", field=what)
        object.__setattr__(
            self, "_data_json", _json({} if self.data is None else self.data, "data")
        )
        object.__setattr__(self, "_headers", _headers(self.headers, "headers"))
        for item in self.attachments:
            if not isinstance(item, TemplateAttachment):
                raise MessageError(
                    "attachments must be TemplateAttachment values", field="attachments"
                )

    @property
    def stored(self) -> bool:
        """True for a stored template (``name`` or ``arn``)."""
        return self.name is not None or self.arn is not None

    @property
    def data_json(self) -> str:
        """``data`` as the JSON SES receives (``TemplateData``)."""
        return self._data_json

    def to_sesv2(self, *, data_json: str | None = None) -> dict[str, Any]:
        """The SESv2 ``Template`` structure (``data_json`` replaces the template's data)."""
        node: dict[str, Any] = {"TemplateData": self._data_json if data_json is None else data_json}
        if self.name is not None:
            node["TemplateName"] = self.name
        elif self.arn is not None:
            node["TemplateArn"] = self.arn
        else:
            node["TemplateContent"] = TemplateContent(
                subject=self.subject or "", text=self.text, html=self.html
            ).to_sesv2()
        if self._headers:
            node["Headers"] = _sesv2_headers(self._headers)
        if self.attachments:
            node["Attachments"] = [item.to_sesv2() for item in self.attachments]
        return node


def _addresses(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) and "," not in value and "<" not in value and ":" not in value:
        # The common case, one bare address: no tokenizer needed.
        return (ascii_addr_spec(value.strip(), field=what),)
    out: list[str] = []
    for item in parse_addresses(value, field=what):
        members = item.members if isinstance(item, Group) else (item,)
        for member in members:
            assert isinstance(member, Address)
            spec = ascii_addr_spec(member.address, field=what)
            out.append(formataddr((member.name, spec), "utf-8") if member.name else spec)
    return tuple(out)


def bare(address: str) -> str:
    """The addr-spec of a formatted destination address (``"Ada <a@x>"`` → ``a@x``)."""
    if address.endswith(">"):
        return address[address.rindex("<") + 1 : -1]
    return address


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkDestination:
    """One destination of :meth:`~asyncmailer.SESTransport.send_bulk`: one message, its data.

    Example::

        BulkDestination(to="ada@example.com", data={"name": "Ada"}, tags={"campaign": "spring"})

    ``to``, ``cc`` and ``bcc`` take what ``send_mail`` takes (strings, lists, ``Address``);
    together they hold 1 to 50 recipients, each counted by the rate limiter and by SES.
    ``data`` (JSON-serialisable) replaces the template's data for this destination;
    ``tags`` become SES ``ReplacementTags``; ``headers`` become ``ReplacementHeaders``
    (newer botocore models only). Addresses are checked when the value is created.
    """

    #: To recipients.
    to: Any = None
    #: Cc recipients.
    cc: Any = None
    #: Bcc recipients.
    bcc: Any = None
    #: Replacement template data (None: the template's data).
    data: Any = None
    #: Message tags (SES ``ReplacementTags``): name → value.
    tags: Mapping[str, str] = field(default_factory=dict)
    #: Replacement headers (SES ``ReplacementHeaders``).
    headers: Mapping[str, str] | Sequence[tuple[str, str]] = ()
    _to: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())
    _cc: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())
    _bcc: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())
    _data_json: str | None = field(init=False, repr=False, compare=False, default=None)
    _headers: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "_to", _addresses(self.to, "to"))
        object.__setattr__(self, "_cc", _addresses(self.cc, "cc"))
        object.__setattr__(self, "_bcc", _addresses(self.bcc, "bcc"))
        if not (self._to or self._cc or self._bcc):
            raise AddressError("a destination needs at least one recipient", field="to", text="")
        if self.data is not None:
            object.__setattr__(self, "_data_json", _json(self.data, "data"))
        for key, value in self.tags.items():
            if not isinstance(key, str) or not isinstance(value, str) or not key:
                raise MessageError(f"tags must map names to strings, got {key!r}", field="tags")
        if self.headers:
            object.__setattr__(self, "_headers", _headers(self.headers, "headers"))

    @property
    def recipients(self) -> tuple[str, ...]:
        """Every recipient (To + Cc + Bcc) as SES receives it, in order."""
        return self._to + self._cc + self._bcc

    @property
    def data_json(self) -> str | None:
        """``data`` as JSON, or None when the template's data applies."""
        return self._data_json

    def without(self, addresses: Collection[str]) -> BulkDestination:
        """This destination without the recipients whose addr-spec is in ``addresses``.

        Raises :class:`~asyncmailer.errors.AddressError` when no recipient is left.
        """

        def keep(values: tuple[str, ...]) -> list[str] | None:
            return [v for v in values if bare(v) not in addresses] or None

        return BulkDestination(
            to=keep(self._to),
            cc=keep(self._cc),
            bcc=keep(self._bcc),
            data=self.data,
            tags=self.tags,
            headers=self.headers,
        )

    def to_sesv2(self) -> dict[str, Any]:
        """The SESv2 ``BulkEmailEntry`` structure."""
        destination: dict[str, list[str]] = {}
        if self._to:
            destination["ToAddresses"] = list(self._to)
        if self._cc:
            destination["CcAddresses"] = list(self._cc)
        if self._bcc:
            destination["BccAddresses"] = list(self._bcc)
        entry: dict[str, Any] = {"Destination": destination}
        if self._data_json is not None:
            entry["ReplacementEmailContent"] = {
                "ReplacementTemplate": {"ReplacementTemplateData": self._data_json}
            }
        if self.tags:
            entry["ReplacementTags"] = [{"Name": k, "Value": v} for k, v in self.tags.items()]
        if self._headers:
            entry["ReplacementHeaders"] = _sesv2_headers(self._headers)
        return entry

    @classmethod
    def coerce(cls, value: DestinationInput) -> BulkDestination:
        """A :class:`BulkDestination` from itself, an address string or an ``Address``."""
        if isinstance(value, BulkDestination):
            return value
        if isinstance(value, (str, Address)):
            return cls(to=value)
        raise MessageError(
            f"a destination is a BulkDestination or an address, not {type(value).__name__}",
            field="destinations",
        )


#: What ``send_bulk`` accepts for each destination.
DestinationInput: TypeAlias = "BulkDestination | str | Address"
