"""Header fields: validation, RFC 2047 text, address lists, folding at 78 columns.

Every header is produced as a list of *tokens* that may be separated by folding
whitespace; :func:`fold` packs them into lines of at most 78 characters where it can
(a single token longer than that keeps its own line, always under 998 octets because
tokens are bounded). Nothing a caller passes can put a CR or LF into the output except
the ``CRLF WSP`` folds of a validated :class:`~asyncmailer.message.PreparedHeader`.
"""

from __future__ import annotations

import datetime
import email.utils
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from asyncmailer._controls import control_char_error
from asyncmailer.address import Address, Group, ascii_addr_spec, parse_addresses
from asyncmailer.errors import AddressError, HeaderError
from asyncmailer.message import ListHeaders, ListLink, PreparedHeader
from asyncmailer.mime._encoding import encoded_words

__all__ = [
    "LINE_LIMIT",
    "MAX_LINE",
    "address_tokens",
    "check_header_name",
    "check_media_type",
    "fold",
    "format_date",
    "list_header_lines",
    "msg_id",
    "prepared_line",
    "text_tokens",
]

#: Soft limit for header lines (RFC 5322 "SHOULD"), CRLF excluded.
LINE_LIMIT = 78
#: Hard limit for any line (RFC 5322 "MUST"), CRLF excluded.
MAX_LINE = 998

# Words longer than this are encoded (so they can be split) instead of written plain.
_LONG_WORD = 900
_FTEXT = re.compile(r"[\x21-\x39\x3b-\x7e]+")
_SIMPLE_TEXT = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")
_UNSAFE_WORD = re.compile(r"[^\x21-\x7e]|=\?")
_ATOM_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?: [A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*")
_QUOTABLE = re.compile(r"[\x20-\x7e]{1,60}")
_QUOTE_ESCAPE = re.compile(r'(["\\])')
_PREPARED_BAD = re.compile(r"\x00|\r(?!\n[ \t])|(?<!\r)\n|\r\n[ \t]*(?=\r|$)")
# Every other forbidden control (asyncmailer._controls, CR and LF excepted: folds are
# checked above); one search per prepared value.
_PREPARED_CONTROL = re.compile("[\x01-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# RFC 2045 token: the type and the subtype of a media type.
_MEDIA_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ID_ATOM = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*"
_MSG_ID = re.compile(rf"<?({_ID_ATOM}@(?:{_ID_ATOM}|\[[\x21-\x5a\x5e-\x7e]*\]))>?")

# Header names the composer writes itself; custom headers may not use them.
RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "From",
        "Sender",
        "To",
        "Cc",
        "Bcc",
        "Reply-To",
        "Subject",
        "Message-ID",
        "Date",
        "In-Reply-To",
        "References",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
        "Content-ID",
    )
)


def check_header_name(name: object, field: str) -> str:
    """Return ``name`` if it is a valid RFC 5322 field name (printable ASCII, no ``:``)."""
    if not isinstance(name, str) or not _FTEXT.fullmatch(name):
        raise HeaderError(f"{field}: invalid header name {name!r}", field=field)
    return name


def check_media_type(value: str, field: str) -> str:
    """Return ``value`` (``type/subtype``, no parameters) if both parts are RFC 2045 tokens.

    Every media type the composer writes passes here, whether it comes from
    ``content_type``, a ``data:`` URL or a guess from a file name: a type is the one
    Content-Type part written without encoding, so nothing else may reach it.
    """
    kind, slash, sub = value.partition("/")
    if not slash or not _MEDIA_TOKEN.fullmatch(kind) or not _MEDIA_TOKEN.fullmatch(sub):
        why = control_char_error(value)
        raise HeaderError(
            f"{field}: invalid media type {value!r}" + (f" ({why})" if why else ""), field=field
        )
    return value


def fold(name: str, tokens: Sequence[str]) -> bytes:
    """Write ``Name: tok tok ...`` CRLF, breaking lines between tokens at 78 columns."""
    if tokens:
        # Everything fits on one line (the common case): then every prefix fits too, and
        # the loop below would write exactly this.
        single = f"{name}: {' '.join(tokens)}"
        if len(single) <= LINE_LIMIT:
            return (single + "\r\n").encode("utf-8")
    line = name + ":"
    lines: list[str] = []
    first = True
    for token in tokens:
        if len(line) + 1 + len(token) > LINE_LIMIT and not first:
            lines.append(line)
            line = " " + token
        else:
            line = line + " " + token
        first = False
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def word_limit(name: str) -> int:
    """Longest encoded-word that still fits on the first line of header ``name``."""
    return max(40, min(75, LINE_LIMIT - len(name) - 2))


def text_tokens(value: str, limit: int = 75) -> list[str]:
    """Tokens for an unstructured value (``Subject``, custom headers), encoding as needed.

    Printable-ASCII words stay as they are; the span from the first to the last word
    holding anything else (non-ASCII, CR, LF, NUL, TAB, an ``=?`` look-alike) becomes
    encoded-words, so the value round-trips exactly and can never break a line.
    """
    if _SIMPLE_TEXT.fullmatch(value) and "=?" not in value:
        words = value.split(" ")
        if max(map(len, words)) <= _LONG_WORD:
            return words
    elif not value:
        return []
    if value != value.strip(" ") or "  " in value:
        return encoded_words(value, limit)
    words = value.split(" ")
    unsafe = [i for i, w in enumerate(words) if _UNSAFE_WORD.search(w) or len(w) > _LONG_WORD]
    first, last = unsafe[0], unsafe[-1]
    return [
        *words[:first],
        *encoded_words(" ".join(words[first : last + 1]), limit),
        *words[last + 1 :],
    ]


def _name_tokens(name: str, limit: int = 75) -> list[str]:
    """Tokens for a display name: plain atoms, a quoted-string, or encoded-words."""
    if "=?" in name:
        return encoded_words(name, limit)
    if _ATOM_PHRASE.fullmatch(name) and max(map(len, name.split(" "))) <= 70:
        return name.split(" ")
    if _QUOTABLE.fullmatch(name):
        return ['"' + _QUOTE_ESCAPE.sub(r"\\\1", name) + '"']
    return encoded_words(name, limit)


def _mailbox_tokens(addr: Address, field: str, limit: int) -> tuple[list[str], bool]:
    """Tokens for one mailbox, and whether its local part is non-ASCII."""
    spec = ascii_addr_spec(addr.address, field=field)
    utf8 = not spec.isascii()
    if not addr.name:
        return [spec], utf8
    return [*_name_tokens(addr.name, limit), f"<{spec}>"], utf8


def address_tokens(
    items: Iterable[Address | Group], field: str, limit: int = 75
) -> tuple[list[str], bool]:
    """Tokens for an address-list header, and whether any local part needs SMTPUTF8."""
    tokens: list[str] = []
    utf8 = False
    items = list(items)
    for index, item in enumerate(items):
        if isinstance(item, Group):
            head = _name_tokens(item.name, limit) if item.name else ['""']
            head[-1] += ":"
            tokens.extend(head)
            for m_index, member in enumerate(item.members):
                member_tokens, member_utf8 = _mailbox_tokens(member, field, limit)
                utf8 = utf8 or member_utf8
                if m_index < len(item.members) - 1:
                    member_tokens[-1] += ","
                tokens.extend(member_tokens)
            tokens[-1] += ";"
        else:
            item_tokens, item_utf8 = _mailbox_tokens(item, field, limit)
            utf8 = utf8 or item_utf8
            tokens.extend(item_tokens)
        if index < len(items) - 1:
            tokens[-1] += ","
    return tokens, utf8


def prepared_line(name: str, value: PreparedHeader, field: str) -> bytes:
    """Validate a prepared header value: only ``CRLF WSP`` folds, no other control
    character (NUL, NEL, U+2028...; TAB is allowed), lines ≤ 998 octets."""
    text = value.value
    if not isinstance(text, str):
        raise HeaderError(f"{field}: a PreparedHeader value must be a string", field=field)
    bad = _PREPARED_CONTROL.search(text)
    if bad is not None:
        raise HeaderError(
            f"{field}: a prepared value cannot contain control character "
            f"U+{ord(bad.group()):04X} (index {bad.start()})",
            field=field,
        )
    if _PREPARED_BAD.search(text) or not text.strip():
        raise HeaderError(
            f"{field}: a prepared value may contain CRLF only as a fold (CRLF + space/tab), "
            "no NUL, and must not be empty",
            field=field,
        )
    line = f"{name}: {text}\r\n".encode()
    if any(len(part) > MAX_LINE for part in line.split(b"\r\n")):
        raise HeaderError(f"{field}: a line is longer than {MAX_LINE} octets", field=field)
    return line


def custom_header_lines(
    headers: Mapping[str, Any] | Sequence[tuple[str, Any]] | None, field: str
) -> list[bytes]:
    """Lines for user-supplied headers: a value, a list (repeated header) or prepared."""
    if not headers:
        return []
    pairs: Iterable[tuple[str, Any]] = headers.items() if isinstance(headers, Mapping) else headers
    out: list[bytes] = []
    for pair in pairs:
        try:
            name, value = pair
        except (TypeError, ValueError):
            raise HeaderError(f"{field}: expected (name, value) pairs", field=field) from None
        where = f"{field}[{name!r}]"
        check_header_name(name, where)
        if name.lower() in RESERVED_HEADERS:
            raise HeaderError(
                f"{where}: {name} is written by the composer; set the message field instead",
                field=where,
            )
        values = [value] if isinstance(value, (str, PreparedHeader)) else value
        if not isinstance(values, Sequence):
            raise HeaderError(f"{where}: a header value must be a string", field=where)
        for item in values:
            if isinstance(item, PreparedHeader):
                out.append(prepared_line(name, item, where))
            elif isinstance(item, str):
                tokens = text_tokens(_check_text(item, where), word_limit(name))
                out.append(fold(name, tokens))
            else:
                raise HeaderError(f"{where}: a header value must be a string", field=where)
    return out


def _check_text(value: str, field: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise HeaderError(f"{field}: value is not valid Unicode text", field=field) from None
    return value


def check_text(value: object, field: str) -> str:
    """Return ``value`` if it is a ``str`` encodable as UTF-8 (no lone surrogates)."""
    if not isinstance(value, str):
        raise HeaderError(f"{field}: expected a string, not {type(value).__name__}", field=field)
    return _check_text(value, field)


class DateCache:
    """The ``Date`` value for the current second, formatted once per second.

    ``email.utils.format_datetime`` drops the fraction of a second, so every message
    composed within one second of ``clock()`` (seconds since the epoch) gets the same
    value: the cache keeps the last second and its text.
    """

    __slots__ = ("_clock", "_second", "_text")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._second: int | None = None
        self._text = ""

    def now(self) -> str:
        """The current time, UTC, as an RFC 5322 date (``Wed, 02 Dec 2026 16:53:57 +0000``)."""
        second = int(self._clock() // 1)
        if second != self._second:
            stamp = datetime.datetime.fromtimestamp(second, datetime.timezone.utc)
            self._text = email.utils.format_datetime(stamp)
            self._second = second
        return self._text


_DATE_NOW = DateCache()


def format_date(value: datetime.datetime | str | None, now: datetime.datetime | None) -> str:
    """The ``Date`` value (RFC 5322) for ``value``, or for ``now``/the current time."""
    if value is None:
        if now is None:
            return _DATE_NOW.now()
        value = now
    elif isinstance(value, str):
        try:
            value = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            raise HeaderError(f"date: cannot parse {value!r}", field="date") from None
    elif not isinstance(value, datetime.datetime):
        raise HeaderError("date: expected a datetime or a string", field="date")
    if value.tzinfo is None:
        value = value.astimezone()
    return email.utils.format_datetime(value)


def msg_id(value: object, field: str) -> str:
    """Normalise a message id to ``<left@right>`` form, refusing spaces and control characters."""
    if not isinstance(value, str):
        raise HeaderError(f"{field}: expected a string", field=field)
    match = _MSG_ID.fullmatch(value.strip(" \t"))
    if match is None:
        raise HeaderError(f"{field}: invalid message id {value!r}", field=field)
    return f"<{match.group(1)}>"


def msg_id_list(value: str | Sequence[str], field: str) -> list[str]:
    """Message ids from a space-separated string or a sequence of ids."""
    items = value.split() if isinstance(value, str) else list(value)
    if not items:
        raise HeaderError(f"{field}: empty", field=field)
    return [msg_id(item, field) for item in items]


# ---------------------------------------------------------------------- List-* (RFC 2369)

_URL_OK = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_LIST_FIELDS = (
    ("help", "List-Help"),
    ("unsubscribe", "List-Unsubscribe"),
    ("subscribe", "List-Subscribe"),
    ("post", "List-Post"),
    ("owner", "List-Owner"),
    ("archive", "List-Archive"),
)


def _list_url(url: object, field: str) -> str:
    if not isinstance(url, str):
        raise HeaderError(f"{field}: expected a URL string", field=field)
    url = url.strip()
    if url.startswith("<") and url.endswith(">"):
        url = url[1:-1]
    if "@" in url and not _SCHEME.match(url):
        try:
            url = "mailto:" + ascii_addr_spec(url, field=field)
        except AddressError:
            raise HeaderError(f"{field}: invalid address {url!r}", field=field) from None
    if not _URL_OK.fullmatch(url) or not _SCHEME.match(url) or len(url) > _LONG_WORD:
        raise HeaderError(f"{field}: invalid URL {url!r}", field=field)
    return url


def _comment_tokens(comment: str, field: str) -> list[str]:
    check_text(comment, field)
    if _ATOM_PHRASE.fullmatch(comment) and "=?" not in comment and len(comment) <= 70:
        words = comment.split(" ")
        words[0] = "(" + words[0]
        words[-1] += ")"
        return words
    words = encoded_words(comment)
    words[0] = "(" + words[0]
    words[-1] += ")"
    return words


def _list_items(value: Any, field: str) -> list[tuple[str, str | None]]:
    if value is None:
        return []
    items = [value] if isinstance(value, (str, ListLink)) else list(value)
    out: list[tuple[str, str | None]] = []
    for item in items:
        if isinstance(item, ListLink):
            out.append((_list_url(item.url, field), item.comment))
        else:
            out.append((_list_url(item, field), None))
    return out


def list_header_lines(value: ListHeaders | Mapping[str, Any]) -> list[bytes]:
    """Lines for RFC 2369 ``List-*``, ``List-ID`` and RFC 8058 one-click headers."""
    if isinstance(value, Mapping):
        try:
            value = ListHeaders(**value)
        except TypeError as exc:
            raise HeaderError(f"list_headers: {exc}", field="list_headers") from None
    out: list[bytes] = []
    for attr, header in _LIST_FIELDS:
        field = f"list_headers.{attr}"
        items = _list_items(getattr(value, attr), field)
        if not items:
            continue
        tokens: list[str] = []
        for index, (url, comment) in enumerate(items):
            tokens.append(f"<{url}>")
            if comment:
                tokens.extend(_comment_tokens(comment, field))
            if index < len(items) - 1:
                tokens[-1] += ","
        out.append(fold(header, tokens))
    if value.one_click:
        urls = [url for url, _ in _list_items(value.unsubscribe, "list_headers.unsubscribe")]
        if not any(url.lower().startswith("https://") for url in urls):
            raise HeaderError(
                "list_headers.one_click needs an https:// unsubscribe URL (RFC 8058)",
                field="list_headers.unsubscribe",
            )
        out.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    if value.id is not None:
        field = "list_headers.id"
        link = value.id if isinstance(value.id, ListLink) else ListLink(value.id)
        ident = link.url.strip()
        if ident.startswith("<") and ident.endswith(">"):
            ident = ident[1:-1]
        if not _URL_OK.fullmatch(ident) or len(ident) > 255:
            raise HeaderError(f"{field}: invalid list id {link.url!r}", field=field)
        tokens = []
        if link.comment:
            check_text(link.comment, field)
            tokens = _name_tokens(link.comment)
        out.append(fold("List-ID", [*tokens, f"<{ident}>"]))
    return out


def address_header(name: str, items: Sequence[Address | Group], field: str) -> tuple[bytes, bool]:
    """One address header line, and whether it needs SMTPUTF8."""
    tokens, utf8 = address_tokens(items, field, word_limit(name))
    return fold(name, tokens), utf8


def parse_field(value: object, field: str) -> list[Address | Group]:
    """:func:`parse_addresses` for a message field."""
    return parse_addresses(value, field=field)
