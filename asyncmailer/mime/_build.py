"""The synchronous builder: a :class:`~asyncmailer.message.Message` (sources already read) → bytes.

The tree follows Nodemailer's MailComposer: alternatives in the order text, watch_html, amp,
html, calendar, extra ``alternatives``; html plus ``cid`` attachments → ``multipart/related``;
several alternatives → ``multipart/alternative``; other attachments → ``multipart/mixed``;
a single part is the root.
"""

from __future__ import annotations

import binascii
import mimetypes
import os
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from asyncmailer._controls import CONTROL_CLASS, control_char_error
from asyncmailer.address import Address, Group, ascii_addr_spec, parse_address, parse_addresses
from asyncmailer.errors import ContentError, HeaderError, MessageError
from asyncmailer.message import Attachment, Envelope, IcalEvent, ListHeaders, Message
from asyncmailer.mime._encoding import (
    base64_body,
    choose_text_encoding,
    has_long_line,
    quoted_printable_body,
    rfc2231_segments,
)
from asyncmailer.mime._headers import (
    MAX_LINE,
    address_tokens,
    check_header_name,
    check_media_type,
    check_text,
    custom_header_lines,
    fold,
    format_date,
    list_header_lines,
    msg_id,
    msg_id_list,
    text_tokens,
    word_limit,
)
from asyncmailer.mime._sources import is_http_url, parse_data_url
from asyncmailer.result import ComposedMessage

__all__ = ["BuildOptions", "build_message", "make_envelope", "new_token"]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A parameter: token = token / quoted-string (no control character but TAB, even escaped).
_PARAM = re.compile(
    r"[ \t]*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)[ \t]*=[ \t]*"
    rf'("(?:[^"\\{CONTROL_CLASS}]|\\[^{CONTROL_CLASS}])*"|[!#$%&\'*+\-.^_`|~0-9A-Za-z]+)[ \t]*'
)
_CID = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]{1,250}")
_DATA_IMG = re.compile(r"(<img\b[^<>]{0,1024}?\ssrc\s*=\s*[\"']?)(data:[^\"'\s<>]+)", re.IGNORECASE)
_RAW_HEADER_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+:|[ \t]")
_PRIORITY = {
    "high": (
        b"X-Priority: 1 (Highest)\r\n",
        b"X-MSMail-Priority: High\r\n",
        b"Importance: High\r\n",
    ),
    "low": (b"X-Priority: 5 (Lowest)\r\n", b"X-MSMail-Priority: Low\r\n", b"Importance: Low\r\n"),
    "normal": (),
}
_TEXT_ENCODINGS = frozenset(("7bit", "8bit", "quoted-printable", "base64"))

# mimetypes reads the system's mime.types files on first use; do it at import time rather
# than inside compose() on the event loop
if not mimetypes.inited:
    mimetypes.init()


@dataclass(slots=True)
class BuildOptions:
    """Per-call composition switches (see :func:`asyncmailer.mime.compose`)."""

    #: Seed for Message-ID, boundaries and generated cids; None → ``os.urandom``.
    seed: int | None = None
    #: Date used when the message has none; None → the current time.
    now: Any = None
    #: Overrides ``Message.keep_bcc`` when not None.
    keep_bcc: bool | None = None
    #: Overrides the envelope when not None.
    envelope: Envelope | Mapping[str, Any] | None = None
    #: Random source, created from ``seed``.
    rng: random.Random | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.seed is not None:
            self.rng = random.Random(self.seed)


def new_token(options: BuildOptions, nbytes: int = 12) -> str:
    """A random hex string (deterministic when ``options.seed`` is set)."""
    if options.rng is not None:
        return options.rng.randbytes(nbytes).hex()
    return os.urandom(nbytes).hex()


# ------------------------------------------------------------------------- tree


@dataclass(slots=True)
class Leaf:
    """A single MIME part with its body already transfer-encoded."""

    ctype: str
    params: list[str]
    cte: str | None
    body: bytes
    disposition: str | None = None
    disp_params: list[str] = field(default_factory=list)
    cid: str | None = None
    extra: list[bytes] = field(default_factory=list)
    #: A complete prebuilt part (headers, blank line, body) written as is.
    raw: bytes | None = None

    @property
    def verbatim(self) -> bool:
        """True when the body is not base64/QP, so it could contain a boundary."""
        return self.raw is not None or self.cte in (None, "7bit", "8bit")


@dataclass(slots=True)
class Multi:
    """A ``multipart/*`` node."""

    subtype: str
    children: list[Leaf | Multi]
    params: list[str] = field(default_factory=list)


Node = Leaf | Multi


def _header_lines(node: Node, boundaries: dict[int, str]) -> list[bytes]:
    if isinstance(node, Multi):
        boundary = boundaries[id(node)]
        tokens = [f"multipart/{node.subtype};", *[p + ";" for p in node.params]]
        tokens.append(f'boundary="{boundary}"')
        return [fold("Content-Type", tokens)]
    if node.raw is not None:
        return []
    lines: list[bytes] = []
    if node.params:
        tokens = [node.ctype + ";", *[p + ";" for p in node.params[:-1]], node.params[-1]]
        lines.append(fold("Content-Type", tokens))
    else:
        lines.append(f"Content-Type: {node.ctype}\r\n".encode())
    if node.cte:
        lines.append(f"Content-Transfer-Encoding: {node.cte}\r\n".encode())
    if node.disposition:
        if node.disp_params:
            tokens = [
                node.disposition + ";",
                *[p + ";" for p in node.disp_params[:-1]],
                node.disp_params[-1],
            ]
            lines.append(fold("Content-Disposition", tokens))
        else:
            lines.append(f"Content-Disposition: {node.disposition}\r\n".encode())
    if node.cid:
        lines.append(f"Content-ID: <{node.cid}>\r\n".encode())
    lines.extend(node.extra)
    return lines


def _write_body(node: Node, out: list[bytes], boundaries: dict[int, str]) -> None:
    if isinstance(node, Leaf):
        out.append(node.body)
        return
    delimiter = b"--" + boundaries[id(node)].encode()
    for child in node.children:
        out.append(delimiter + b"\r\n")
        if isinstance(child, Leaf) and child.raw is not None:
            out.append(child.raw)
        else:
            out.extend(_header_lines(child, boundaries))
            out.append(b"\r\n")
            _write_body(child, out, boundaries)
        out.append(b"\r\n")
    out.append(delimiter + b"--")


def _walk(node: Node) -> list[Node]:
    nodes: list[Node] = [node]
    if isinstance(node, Multi):
        for child in node.children:
            nodes.extend(_walk(child))
    return nodes


def _assign_boundaries(root: Node, options: BuildOptions) -> dict[int, str]:
    nodes = _walk(root)
    multis = [n for n in nodes if isinstance(n, Multi)]
    if not multis:
        return {}
    verbatim = [
        n.raw if n.raw is not None else n.body for n in nodes if isinstance(n, Leaf) and n.verbatim
    ]
    while True:
        token = new_token(options)
        probe = token.encode()
        if not any(probe in body for body in verbatim):
            break
    return {id(n): f"=_AM_{token}_{i}" for i, n in enumerate(multis, 1)}


# ------------------------------------------------------------------------ parts


def _ctype(value: str, field: str) -> tuple[str, list[str]]:
    """Split and validate ``type/subtype; k=v`` → (``type/subtype``, [``k=v``...])."""
    check_text(value, field)
    why = control_char_error(value)
    if why is not None:
        raise HeaderError(f"{field}: invalid content type {value!r}: {why}", field=field)
    main, _, rest = value.partition(";")
    main = check_media_type(main.strip(" \t").lower(), field)
    params: list[str] = []
    if rest.strip(" \t"):
        for piece in rest.split(";"):
            if not piece.strip(" \t"):
                continue
            match = _PARAM.fullmatch(piece)
            if match is None:
                raise HeaderError(f"{field}: invalid parameter {piece!r}", field=field)
            params.append(f"{match.group(1).lower()}={match.group(2)}")
    return main, params


def _without_param(params: list[str], name: str) -> list[str]:
    prefix = name + "="
    return [p for p in params if not p.startswith(prefix)]


def _decode_str_content(value: str, encoding: str | None, field: str) -> tuple[bytes, str | None]:
    """Bytes for ``str`` content and the charset to declare (None for base64/hex input)."""
    enc = (encoding or "utf-8").lower()
    if enc not in ("base64", "hex") and not _TOKEN.fullmatch(enc):
        # the name is written as the charset parameter: codec lookup alone would accept
        # "utf-8\r\n" (it ignores punctuation around the name)
        raise ContentError(
            f"{field}.encoding: invalid charset name {encoding!r}", field=f"{field}.encoding"
        )
    try:
        if enc == "base64":
            return binascii.a2b_base64(value), None
        if enc == "hex":
            return bytes.fromhex(value), None
        return value.encode(enc), enc
    except (binascii.Error, ValueError, LookupError, UnicodeError) as exc:
        raise ContentError(f"{field}: cannot encode content as {enc}: {exc}", field=field) from None


def _normalize_newlines(data: bytes) -> bytes:
    """LF line endings (CRLF and lone CR become LF)."""
    if b"\r" in data:
        return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return data


def _encode_text(data: bytes, cte: str | None, field: str) -> tuple[bytes, str]:
    """Transfer-encode text (any line endings) → (body, cte). ``cte`` None picks one."""
    data = _normalize_newlines(data)
    if cte is None:
        cte = choose_text_encoding(data)
    if cte == "quoted-printable":
        return quoted_printable_body(data), cte
    crlf = data.replace(b"\n", b"\r\n")
    if cte == "base64":
        return base64_body(crlf), cte
    if b"\x00" in data or (cte == "7bit" and not data.isascii()):
        raise MessageError(
            f"{field}: content cannot be sent as {cte} (NUL or non-ASCII)", field=field
        )
    if has_long_line(crlf, MAX_LINE):
        raise MessageError(f"{field}: a line is longer than {MAX_LINE} octets", field=field)
    return crlf, cte


def _check_cte(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    cte = value.strip().lower()
    if cte not in _TEXT_ENCODINGS:
        raise MessageError(
            f"{field}: unsupported content_transfer_encoding {value!r} "
            "(base64, quoted-printable, 7bit, 8bit)",
            field=f"{field}.content_transfer_encoding",
        )
    return cte


def _raw_part(raw: bytes | str, field: str) -> bytes:
    """Validate a prebuilt MIME part: header lines, a blank line, lines ≤ 998 octets."""
    data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    data = _normalize_newlines(data).replace(b"\n", b"\r\n")
    head, sep, _ = data.partition(b"\r\n\r\n")
    if data.startswith(b"\r\n"):
        head = b""
    elif not sep:
        raise HeaderError(
            f"{field}: a raw part needs headers, a blank line, then the body", field=field
        )
    for index, line in enumerate(head.split(b"\r\n") if head else ()):
        if (
            not _RAW_HEADER_LINE.match(line)
            or (index == 0 and line[:1] in b" \t")
            or b"\x00" in line
        ):
            raise HeaderError(f"{field}: invalid header line {line[:80]!r}", field=field)
    if has_long_line(data, MAX_LINE):
        raise MessageError(f"{field}: a line is longer than {MAX_LINE} octets", field=field)
    return data


@dataclass(slots=True)
class _Content:
    data: bytes
    charset: str | None
    mime_type: str | None
    location: str | None


def _content_of(
    value: Attachment | IcalEvent, field: str, resolved: Mapping[str, bytes]
) -> _Content:
    """The bytes of an attachment-like value (sources already resolved)."""
    encoding = value.encoding
    location: str | None = None
    if field in resolved:
        data, charset, mime = resolved[field], None, None
    else:
        content = value.content
        if isinstance(content, str):
            data, charset = _decode_str_content(content, encoding, field)
            mime = None
        elif isinstance(content, (bytes, bytearray, memoryview)):
            data, charset, mime = bytes(content), None, None
        else:
            data, charset, mime = b"", None, None
            for source in (value.path, value.href):
                if source is None:
                    continue
                if source[:5].lower() == "data:":
                    data, mime = parse_data_url(source, field)
                    break
                raise ContentError(  # pending_sources() should have caught it
                    f"{field}: {source!r} needs I/O; use compose()", field=field, source=source
                )
    if field in resolved or value.content is None:
        for source in (value.path, value.href):
            if source is not None and source[:5].lower() != "data:":
                location = source
                break
    return _Content(data, charset, mime, location)


def _basename(location: str) -> str:
    if is_http_url(location):
        location = location.split("?", 1)[0].split("#", 1)[0]
    return re.split(r"[/\\]", location)[-1]


def _guess_type(filename: str | None, field: str) -> str | None:
    if not filename:
        return None
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    # guess_type() reads a file name that looks like a data: URL as one, media type
    # included: the guess is checked like any content_type
    return None if guessed is None else check_media_type(guessed, f"{field}.filename")


def _disposition_params(filename: str | None, field: str) -> list[str]:
    if not filename:
        return []
    check_text(filename, f"{field}.filename")
    return rfc2231_segments("filename", filename)


def _cid(value: str, field: str) -> str:
    check_text(value, field)
    cid = value.strip()
    if cid.startswith("<") and cid.endswith(">"):
        cid = cid[1:-1]
    if not _CID.fullmatch(cid):
        raise HeaderError(
            f"{field}: a cid must be printable ASCII without spaces or <>: {value!r}", field=field
        )
    return cid


def _attachment_leaf(
    att: Attachment, field: str, index: int, resolved: Mapping[str, bytes], *, alternative: bool
) -> Leaf:
    if not isinstance(att, Attachment):
        raise MessageError(
            f"{field}: expected an Attachment, not {type(att).__name__}", field=field
        )
    extra = custom_header_lines(att.headers, f"{field}.headers")
    if att.raw is not None:
        return Leaf("", [], None, b"", raw=_raw_part(att.raw, field), extra=extra)
    content = _content_of(att, field, resolved)
    filename = att.filename
    if filename is None and content.location is not None:
        filename = _basename(content.location) or None
    if att.content_type is not None:
        ctype, params = _ctype(att.content_type, f"{field}.content_type")
    else:
        guessed = content.mime_type or _guess_type(filename, field)
        default = "text/plain" if alternative else "application/octet-stream"
        ctype, params = (guessed or default), []
    is_text = ctype.startswith("text/")
    if is_text and content.charset and not any(p.startswith("charset=") for p in params):
        params.append(f"charset={content.charset}")
    elif is_text and alternative and not any(p.startswith("charset=") for p in params):
        params.append("charset=utf-8")
    if filename is None and not alternative and not ctype.startswith("message/"):
        ext = mimetypes.guess_extension(ctype, strict=False) or ".bin"
        filename = f"attachment-{index + 1}{ext}"
    if filename is not None and not isinstance(filename, str):
        raise HeaderError(f"{field}.filename: expected a string", field=f"{field}.filename")
    forced = _check_cte(att.content_transfer_encoding, field)
    if ctype.startswith("message/"):
        if forced is None:
            forced = "7bit" if content.data.isascii() else "8bit"
        body, cte = _encode_text(content.data, forced, field)
        if cte not in ("7bit", "8bit"):
            raise MessageError(
                f"{field}: a message/* part must be 7bit or 8bit (RFC 2046)", field=field
            )
    elif (alternative and is_text) or forced in ("7bit", "8bit", "quoted-printable"):
        body, cte = _encode_text(content.data, forced, field)
    else:
        body, cte = base64_body(content.data), "base64"
    cid = _cid(att.cid, f"{field}.cid") if att.cid is not None else None
    disposition = att.content_disposition
    if disposition is None and not alternative:
        disposition = "inline" if cid else "attachment"
    if disposition not in (None, "inline", "attachment"):
        raise HeaderError(
            f"{field}.content_disposition: expected 'inline' or 'attachment'",
            field=f"{field}.content_disposition",
        )
    disp_params = _disposition_params(filename, field)
    if filename and disposition is None:
        disposition = "attachment" if not alternative else "inline"
    if filename and len(disp_params) == 1 and disp_params[0].startswith('filename="'):
        params = [*_without_param(params, "name"), "name" + disp_params[0][8:]]
    return Leaf(ctype, params, cte, body, disposition, disp_params, cid, extra)


def _body_leaf(
    value: str | bytes | Attachment,
    field: str,
    ctype: str,
    resolved: Mapping[str, bytes],
    text_encoding: str | None,
) -> Leaf:
    """A text/plain, text/html... alternative from a string, bytes or an Attachment source."""
    if isinstance(value, Attachment):
        if value.raw is not None:
            return _attachment_leaf(value, field, 0, resolved, alternative=True)
        content = _content_of(value, field, resolved)
        data = content.data
        forced = _check_cte(value.content_transfer_encoding, field) or text_encoding
        extra = custom_header_lines(value.headers, f"{field}.headers")
        charset = content.charset or "utf-8"
    elif isinstance(value, str):
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError:
            raise ContentError(f"{field}: text is not valid Unicode", field=field) from None
        forced, extra, charset = text_encoding, [], "utf-8"
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data, forced, extra, charset = bytes(value), text_encoding, [], "utf-8"
    else:
        raise MessageError(f"{field}: expected str, bytes or Attachment", field=field)
    body, cte = _encode_text(data, forced, field)
    return Leaf(ctype, [f"charset={charset}"], cte, body, extra=extra)


def _ical(
    value: IcalEvent | str, resolved: Mapping[str, bytes], text_encoding: str | None
) -> tuple[Leaf, Leaf]:
    field = "ical_event"
    event = IcalEvent(content=value) if isinstance(value, str) else value
    if not isinstance(event, IcalEvent):
        raise MessageError("ical_event: expected an IcalEvent or a string", field=field)
    method = (event.method or "PUBLISH").strip().upper()
    if not _TOKEN.fullmatch(method):
        raise HeaderError(
            f"ical_event.method: invalid method {event.method!r}", field="ical_event.method"
        )
    data = _content_of(event, field, resolved).data
    body, cte = _encode_text(data, text_encoding, field)
    alternative = Leaf("text/calendar", ["charset=utf-8", f"method={method}"], cte, body)
    filename = event.filename or "invite.ics"
    disp = _disposition_params(filename, field)
    params = ["name" + disp[0][8:]] if len(disp) == 1 and disp[0].startswith('filename="') else []
    attached = Leaf("application/ics", params, "base64", base64_body(data), "attachment", disp)
    return alternative, attached


_IMG_COUNTER_EXT = {"image/jpeg": ".jpg", "image/svg+xml": ".svg"}


def _attach_data_urls(html: str, options: BuildOptions, resolved_extra: list[Leaf]) -> str:
    """Replace ``<img src="data:...">`` with ``cid:`` references; the images become leaves."""
    counter = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal counter
        try:
            data, mime = parse_data_url(match.group(2), "html")
        except ContentError:
            return match.group(0)
        counter += 1
        cid = f"{new_token(options, 10)}@asyncmailer"
        ext = _IMG_COUNTER_EXT.get(mime) or mimetypes.guess_extension(mime, strict=False) or ".bin"
        filename = f"image-{counter}{ext}"
        resolved_extra.append(
            Leaf(
                mime,
                [f'name="{filename}"'],
                "base64",
                base64_body(data),
                "inline",
                [f'filename="{filename}"'],
                cid,
            )
        )
        return match.group(1) + "cid:" + cid

    return _DATA_IMG.sub(replace, html)


def _html_text(value: str | bytes | Attachment, resolved: Mapping[str, bytes]) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    elif isinstance(value, Attachment) and value.raw is None:
        data = _content_of(value, "html", resolved).data
    else:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ContentError("html: attach_data_urls needs UTF-8 html", field="html") from None


def _tree(message: Message, resolved: Mapping[str, bytes], options: BuildOptions) -> Node:
    text_encoding = message.text_encoding
    if text_encoding not in (None, "quoted-printable", "base64"):
        raise MessageError(
            "text_encoding: expected 'quoted-printable' or 'base64'", field="text_encoding"
        )
    alternatives: list[Leaf] = []
    html_leaf: Leaf | None = None
    data_images: list[Leaf] = []
    ics_attachment: Leaf | None = None
    for name, ctype in (
        ("text", "text/plain"),
        ("watch_html", "text/watch-html"),
        ("amp", "text/x-amp-html"),
        ("html", "text/html"),
    ):
        value = getattr(message, name)
        if value is None:
            continue
        if name == "html" and message.attach_data_urls:
            html = _html_text(value, resolved)
            if html is not None:
                value = _attach_data_urls(html, options, data_images)
        leaf = _body_leaf(value, name, ctype, resolved, text_encoding)
        alternatives.append(leaf)
        if name == "html":
            html_leaf = leaf
    if message.ical_event is not None:
        calendar, ics_attachment = _ical(message.ical_event, resolved, text_encoding)
        alternatives.append(calendar)
    for index, att in enumerate(message.alternatives):
        leaf = _attachment_leaf(att, f"alternatives[{index}]", index, resolved, alternative=True)
        alternatives.append(leaf)
        if leaf.ctype == "text/html":
            html_leaf = leaf
    related: list[Leaf] = list(data_images)
    attached: list[Leaf] = []
    for index, att in enumerate(message.attachments):
        leaf = _attachment_leaf(att, f"attachments[{index}]", index, resolved, alternative=False)
        if html_leaf is not None and leaf.cid is not None:
            related.append(leaf)
        else:
            attached.append(leaf)
    if html_leaf is None:
        attached = related + attached
        related = []
    if ics_attachment is not None:
        attached.append(ics_attachment)

    def related_node() -> Multi:
        assert html_leaf is not None
        return Multi("related", [html_leaf, *related], ['type="text/html"'])

    if len(alternatives) > 1:
        core: Node | None = Multi(
            "alternative",
            [related_node() if (related and leaf is html_leaf) else leaf for leaf in alternatives],
        )
    elif related:
        core = related_node()
    elif alternatives:
        core = alternatives[0]
    else:
        core = None
    if attached and (core is not None or len(attached) > 1):
        children: list[Node] = [core, *attached] if core is not None else [*attached]
        return Multi("mixed", children)
    if core is not None:
        return core
    if attached:
        return attached[0]
    return Leaf("text/plain", [], None, b"")


# --------------------------------------------------------------------- envelope


def _flatten(items: Sequence[Address | Group]) -> list[Address]:
    out: list[Address] = []
    for item in items:
        if isinstance(item, Group):
            out.extend(item.members)
        else:
            out.append(item)
    return out


def _dedupe(addresses: list[str]) -> tuple[str, ...]:
    seen: set[str] = set()
    out: list[str] = []
    for address in addresses:
        local, _, domain = address.rpartition("@")
        key = f"{local}@{domain.lower()}"
        if key not in seen:
            seen.add(key)
            out.append(address)
    return tuple(out)


# Envelope → the validated envelope made of it: the result depends on the values alone
# (plain ``str`` addresses in a plain ``Envelope``), and a sender passing the envelope of
# a composed message, or the same one again, skips re-validating it. Only successes are
# stored; the cache is emptied when full.
_ENVELOPES: dict[Envelope, Envelope] = {}
_ENVELOPES_MAX = 1024


def make_envelope(
    value: Envelope | Mapping[str, Any],
) -> Envelope:
    """Validate a user-supplied envelope (``Envelope`` or a mapping with ``from_``/``to``)."""
    if (
        type(value) is Envelope
        and type(value.from_) is str
        and type(value.to) is tuple
        and all(type(address) is str for address in value.to)
    ):
        checked = _ENVELOPES.get(value)
        if checked is None:
            checked = _make_envelope(value)
            if len(_ENVELOPES) >= _ENVELOPES_MAX:
                _ENVELOPES.clear()
            _ENVELOPES[value] = checked
        return checked
    return _make_envelope(value)


def _make_envelope(value: Envelope | Mapping[str, Any]) -> Envelope:
    recipients: list[Address | str] = []
    if isinstance(value, Envelope):
        sender: object = value.from_
        recipients.extend(value.to)
    elif isinstance(value, Mapping):
        unknown = set(value) - {"from_", "from", "to", "cc", "bcc"}
        if unknown:
            raise MessageError(f"envelope: unknown keys {sorted(unknown)}", field="envelope")
        sender = value.get("from_", value.get("from"))
        for key in ("to", "cc", "bcc"):
            recipients.extend(_flatten(parse_addresses(value.get(key), field=f"envelope.{key}")))
    else:
        raise MessageError("envelope: expected an Envelope or a mapping", field="envelope")
    if sender is None or sender == "":
        raise MessageError("envelope.from_: missing sender", field="envelope.from_")
    from_ = ascii_addr_spec(
        parse_address(sender, field="envelope.from_").address, field="envelope.from_"
    )
    rcpt: list[str] = []
    for item in recipients:
        addr = item if isinstance(item, Address) else parse_address(item, field="envelope.to")
        rcpt.append(ascii_addr_spec(addr.address, field="envelope.to"))
    if not rcpt:
        raise MessageError("envelope.to: no recipients", field="envelope.to")
    return Envelope(from_, _dedupe(rcpt))


def envelope_from_headers(
    from_: Sequence[Address | Group],
    sender: Sequence[Address | Group],
    recipients: list[tuple[str, Sequence[Address | Group]]],
) -> Envelope:
    """The envelope derived from header addresses: From (else Sender); To + Cc + Bcc."""
    origin = _flatten(from_) or _flatten(sender)
    if not origin:
        raise MessageError("from_: a sender is required (from_, sender or envelope)", field="from_")
    sender_addr = ascii_addr_spec(origin[0].address, field="from_")
    rcpt: list[str] = []
    for name, items in recipients:
        rcpt.extend(ascii_addr_spec(a.address, field=name) for a in _flatten(items))
    if not rcpt:
        raise MessageError("to: no recipients (to, cc, bcc or envelope)", field="to")
    return Envelope(sender_addr, _dedupe(rcpt))


# ------------------------------------------------------------------------ build

# (header name, parsed addresses) → (the folded header line, whether it needs SMTPUTF8):
# transactional mail repeats its From. Parsed addresses are immutable values; only
# successes are stored; the cache is emptied when full.
_ADDRESS_LINES: dict[tuple[str, tuple[Address | Group, ...]], tuple[bytes, bool]] = {}
_ADDRESS_LINES_MAX = 1024


def _address_line(
    name: str, field_name: str, items: Sequence[Address | Group]
) -> tuple[bytes, bool]:
    key = (name, tuple(items))
    cached = _ADDRESS_LINES.get(key)
    if cached is None:
        tokens, utf8 = address_tokens(items, field_name, word_limit(name))
        cached = (fold(name, tokens), utf8)
        if len(_ADDRESS_LINES) >= _ADDRESS_LINES_MAX:
            _ADDRESS_LINES.clear()
        _ADDRESS_LINES[key] = cached
    return cached


def build_message(
    message: Message, resolved: Mapping[str, bytes], options: BuildOptions
) -> ComposedMessage:
    """Compose ``message`` (I/O sources already read into ``resolved``) into bytes."""
    if message.raw is not None:
        from asyncmailer.mime._raw import compose_raw_message

        return compose_raw_message(message, resolved, options)
    from_ = [parse_address(message.from_, field="from_")] if message.from_ is not None else []
    sender = [parse_address(message.sender, field="sender")] if message.sender is not None else []
    to = parse_addresses(message.to, field="to")
    cc = parse_addresses(message.cc, field="cc")
    bcc = parse_addresses(message.bcc, field="bcc")
    reply_to = parse_addresses(message.reply_to, field="reply_to")
    envelope_value = options.envelope if options.envelope is not None else message.envelope
    if envelope_value is not None:
        envelope = make_envelope(envelope_value)
    else:
        envelope = envelope_from_headers(from_, sender, [("to", to), ("cc", cc), ("bcc", bcc)])
    keep_bcc = message.keep_bcc if options.keep_bcc is None else options.keep_bcc

    lines: list[bytes] = []
    smtputf8 = not all(address.partition("@")[0].isascii() for address in envelope.to) or not (
        envelope.from_.isascii()
    )
    for name, field_name, items in (
        ("From", "from_", from_),
        ("Sender", "sender", sender),
        ("To", "to", to),
        ("Cc", "cc", cc),
        ("Bcc", "bcc", bcc if keep_bcc else []),
        ("Reply-To", "reply_to", reply_to),
    ):
        if items:
            line, utf8 = _address_line(name, field_name, items)
            smtputf8 = smtputf8 or utf8
            lines.append(line)
    if message.subject is not None:
        lines.append(fold("Subject", text_tokens(check_text(message.subject, "subject"), 69)))
    if message.message_id is not None:
        message_id = msg_id(message.message_id, "message_id")
    else:
        domain = envelope.from_.rpartition("@")[2] if envelope.from_ else "localhost"
        message_id = f"<{new_token(options, 16)}@{domain}>"
    lines.append(f"Message-ID: {message_id}\r\n".encode())
    if message.in_reply_to is not None:
        lines.append(fold("In-Reply-To", [msg_id(message.in_reply_to, "in_reply_to")]))
    if message.references is not None:
        lines.append(fold("References", msg_id_list(message.references, "references")))
    lines.append(f"Date: {format_date(message.date, options.now)}\r\n".encode())
    if message.priority is not None:
        priority = _PRIORITY.get(message.priority) if isinstance(message.priority, str) else None
        if priority is None:
            raise MessageError(
                f"priority: expected 'high', 'normal' or 'low', not {message.priority!r}",
                field="priority",
            )
        lines.extend(priority)
    if message.list_headers is not None:
        if not isinstance(message.list_headers, (ListHeaders, Mapping)):
            raise HeaderError(
                "list_headers: expected ListHeaders or a mapping", field="list_headers"
            )
        lines.extend(list_header_lines(message.list_headers))
    lines.extend(custom_header_lines(message.headers, "headers"))
    lines.append(b"MIME-Version: 1.0\r\n")

    root = _tree(message, resolved, options)
    boundaries = _assign_boundaries(root, options)
    out = lines
    if isinstance(root, Leaf) and root.raw is not None:
        out.append(root.raw)
    else:
        out.extend(_header_lines(root, boundaries))
        out.append(b"\r\n")
        _write_body(root, out, boundaries)
        if isinstance(root, Multi):
            out.append(b"\r\n")
    return ComposedMessage(b"".join(out), envelope, message_id, smtputf8)


def header_name(name: str, field: str) -> str:
    """Validate a header name (re-exported for the raw composer)."""
    return check_header_name(name, field)
