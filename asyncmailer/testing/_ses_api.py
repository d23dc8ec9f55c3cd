"""SES wire formats: the v1 query protocol, SESv2 rest-json, errors, ids and raw-message headers.

Everything here is a pure function of its inputs (plus a :class:`random.Random` for ids),
so the endpoint logic in ``_endpoint.py`` reads as SES behaviour, not as parsing.

The shapes follow botocore's service models (``ses/2010-12-01``, ``sesv2/2019-09-27``):
v1 answers ``<{Action}Response><{Action}Result>...`` XML and errors as
``<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>``;
SESv2 answers JSON and names its errors in the ``x-amzn-ErrorType`` header with a
``{"message": ...}`` body.
"""

from __future__ import annotations

import binascii
import email.policy
import json
import random
import re
from collections.abc import Iterable, Sequence
from email.message import EmailMessage
from email.utils import formatdate, getaddresses
from typing import Any
from urllib.parse import unquote_to_bytes
from xml.sax.saxutils import escape

__all__ = [
    "V1_NAMESPACE",
    "EncodedMessage",
    "SESError",
    "address_list",
    "compose_simple",
    "content_data",
    "encoded_message",
    "envelope_from_headers",
    "fill_envelope",
    "header_addresses",
    "loads_send_email",
    "message_id_header",
    "new_message_id",
    "new_request_id",
    "parse_query",
    "request_region",
    "signing_region",
    "unflatten",
    "v1_error_body",
    "v1_result_body",
    "v2_error_body",
]

V1_NAMESPACE = "http://ses.amazonaws.com/doc/2010-12-01/"


class SESError(Exception):
    """An SES error, in both its v1 (query/XML) and SESv2 (rest-json) spellings."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int = 400,
        v2_code: str | None = None,
        v2_status: int | None = None,
    ) -> None:
        super().__init__(message)
        #: The v1 error code (``Throttling``, ``MessageRejected``...).
        self.code = code
        #: The error text.
        self.message = message
        #: The v1 HTTP status.
        self.status = status
        #: The SESv2 error type (``TooManyRequestsException``...).
        self.v2_code = v2_code or code
        #: The SESv2 HTTP status.
        self.v2_status = v2_status if v2_status is not None else status

    @property
    def fault_type(self) -> str:
        """``Sender`` for 4xx, ``Receiver`` for 5xx, as the v1 ``<Type>`` element says."""
        return "Receiver" if self.status >= 500 else "Sender"

    # ---------------------------------------------------------------- the errors SES sends

    @classmethod
    def rate_exceeded(cls) -> SESError:
        """The per-second sending rate was exceeded."""
        return cls(
            "Throttling",
            "Maximum sending rate exceeded.",
            v2_code="TooManyRequestsException",
            v2_status=429,
        )

    @classmethod
    def daily_quota_exceeded(cls) -> SESError:
        """The 24-hour quota is used up."""
        return cls("Throttling", "Daily message quota exceeded.", v2_code="LimitExceededException")

    @classmethod
    def sending_paused(cls) -> SESError:
        """Sending is disabled for the account."""
        return cls(
            "AccountSendingPausedException",
            "Email sending is disabled for this account.",
            v2_code="SendingPausedException",
        )

    @classmethod
    def not_verified(cls, region: str, identities: Sequence[str]) -> SESError:
        """A sender (or, in the sandbox, a recipient) identity is not verified."""
        return cls(
            "MessageRejected",
            "Email address is not verified. The following identities failed the check in "
            f"region {region.upper()}: {', '.join(identities)}",
        )

    @classmethod
    def configuration_set_missing(cls, name: str) -> SESError:
        """The configuration set named in the request does not exist."""
        return cls(
            "ConfigurationSetDoesNotExist",
            f"Configuration set <{name}> does not exist.",
            v2_code="NotFoundException",
            v2_status=404,
        )

    @classmethod
    def invalid(cls, message: str) -> SESError:
        """A parameter is missing or malformed."""
        return cls("InvalidParameterValue", message, v2_code="BadRequestException")

    @classmethod
    def internal_failure(cls) -> SESError:
        """An injected HTTP 500."""
        return cls(
            "InternalFailure",
            "The request processing has failed because of an unknown error, exception or failure.",
            status=500,
        )

    @classmethod
    def service_unavailable(cls) -> SESError:
        """An injected HTTP 503."""
        return cls("ServiceUnavailable", "Service is unable to handle request.", status=503)

    @classmethod
    def not_found(cls, message: str) -> SESError:
        """A SESv2 resource does not exist."""
        return cls("NotFoundException", message, status=404)


# ------------------------------------------------------------------------------ v1 query


_ENCODED = ((b"%2B", b"+"), (b"%2F", b"/"), (b"%3D", b"="))
_ENCODED_LOWER = ((b"%2b", b"+"), (b"%2f", b"/"), (b"%3d", b"="))


def _unquote(value: bytes) -> str:
    """Form-decode one value, fast for big base64 payloads (``+/=`` are most of the escapes)."""
    if b"+" in value:
        value = value.replace(b"+", b" ")
    if b"%" in value:
        # In valid percent-encoding every % starts a triplet, so replacing whole triplets
        # is exact; what remains goes through the general (slow, per-escape) decoder.
        for encoded, plain in _ENCODED:
            value = value.replace(encoded, plain)
        if b"%" in value:
            for encoded, plain in _ENCODED_LOWER:
                value = value.replace(encoded, plain)
            if b"%" in value:
                value = unquote_to_bytes(value)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise SESError.invalid("Request parameters are not valid UTF-8.") from None


def parse_query(*parts: bytes, keep_encoded: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Decode ``application/x-www-form-urlencoded`` data (query string and/or body).

    Values of the keys in ``keep_encoded`` are left as percent-encoded :class:`bytes`, for
    :class:`EncodedMessage` to decode only if and when needed.
    """
    params: dict[str, Any] = {}
    for data in parts:
        for pair in data.split(b"&"):
            if not pair:
                continue
            key, _, value = pair.partition(b"=")
            name = _unquote(key)
            params[name] = value if name in keep_encoded else _unquote(value)
    return params


def unflatten(params: dict[str, Any]) -> dict[str, Any]:
    """Turn query keys into structures: ``Tags.member.1.Name`` → ``{"Tags": [{"Name": ..}]}``."""
    root: dict[str, Any] = {}
    for key, value in params.items():
        parts = key.split(".")
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SESError.invalid(f"Parameter {key} conflicts with another parameter.")
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise SESError.invalid(f"Parameter {key} conflicts with another parameter.")
        node[parts[-1]] = value
    result = _listify(root)
    assert isinstance(result, dict)
    return result


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if len(node) == 1 and "member" in node and isinstance(node["member"], dict):
        members = node["member"]
        try:
            order = sorted(members, key=int)
        except ValueError:
            raise SESError.invalid("List members must be numbered.") from None
        return [_listify(members[index]) for index in order]
    return {key: _listify(value) for key, value in node.items()}


def v1_result_body(action: str, result_xml: str, request_id: str) -> bytes:
    """A v1 success document; ``result_xml`` is the already-escaped content of the Result."""
    return (
        f'<{action}Response xmlns="{V1_NAMESPACE}">'
        f"<{action}Result>{result_xml}</{action}Result>"
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    ).encode()


def v1_error_body(error: SESError, request_id: str) -> bytes:
    """A v1 ``ErrorResponse`` document."""
    return (
        f'<ErrorResponse xmlns="{V1_NAMESPACE}"><Error>'
        f"<Type>{error.fault_type}</Type><Code>{escape(error.code)}</Code>"
        f"<Message>{escape(error.message)}</Message>"
        f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()


def xml_members(name: str, values: Iterable[str]) -> str:
    """``<name><member>v</member>...</name>``, escaped."""
    inner = "".join(f"<member>{escape(value)}</member>" for value in values)
    return f"<{name}>{inner}</{name}>"


def xml_bool(value: bool) -> str:
    """``true`` / ``false``."""
    return "true" if value else "false"


# ------------------------------------------------------------------------------- SESv2


def v2_error_body(error: SESError) -> bytes:
    """The SESv2 JSON error body (the code travels in ``x-amzn-ErrorType``)."""
    return json.dumps({"message": error.message}).encode()


# ------------------------------------------------------------------------------------ ids


def new_message_id(rng: random.Random, now_ms: int) -> str:
    """An SES-shaped message id: ``01`` + 14 hex digits of ms time, a UUID, ``-000000``."""
    r = f"{rng.getrandbits(128):032x}"
    return f"01{now_ms:014x}-{r[:8]}-{r[8:12]}-{r[12:16]}-{r[16:20]}-{r[20:]}-000000"


def new_request_id(rng: random.Random) -> str:
    """A UUID-shaped request id."""
    r = f"{rng.getrandbits(128):032x}"
    return f"{r[:8]}-{r[8:12]}-{r[12:16]}-{r[16:20]}-{r[20:]}"


# ----------------------------------------------------------------- message data, lazily


class EncodedMessage:
    """A message as it came in (base64, possibly inside form encoding), decoded on demand.

    Decoding base64 costs ~2 µs per KB; most tests never read most messages, so the
    endpoint keeps the encoded form and decodes it when ``raw`` is first read. The size
    and the header block are available without decoding the whole message.
    """

    __slots__ = ("_data", "_decoded", "_form", "_head")

    def __init__(self, data: str | bytes | memoryview, *, form_encoded: bool = False) -> None:
        if not data:
            raise SESError.invalid("The raw message data is required.")
        self._data = data
        self._form = form_encoded
        self._decoded: bytes | None = None
        self._head: bytes | None = None
        if self._encoded_length() % 4:
            raise SESError.invalid("The raw message data is not valid base64.")

    @classmethod
    def from_bytes(cls, raw: bytes) -> EncodedMessage:
        """Wrap octets that are already decoded."""
        message = cls.__new__(cls)
        message._data = b""
        message._form = False
        message._decoded = raw
        message._head = None
        return message

    def _encoded_length(self) -> int:
        data = self._data
        if not self._form:
            return len(data)
        assert isinstance(data, bytes)
        return len(data) - 2 * data.count(b"%") if b"%" in data else len(data)

    def _padding(self) -> int:
        data = self._data
        tail = data[-6:]
        if isinstance(tail, memoryview):
            tail = bytes(tail)
        if isinstance(tail, bytes) and self._form:
            tail = _unquote(tail[tail.find(b"%") :] if b"%" in tail else tail).encode()
        text = tail if isinstance(tail, str) else tail.decode("latin-1")
        return len(text) - len(text.rstrip("="))

    def size_at_most(self, limit: int) -> bool:
        """Whether the decoded message has at most ``limit`` octets (cheap when far below)."""
        if self._decoded is not None:
            return len(self._decoded) <= limit
        if len(self._data) // 4 * 3 <= limit:
            return True
        return self.size() <= limit

    def size(self) -> int:
        """The decoded size in octets."""
        if self._decoded is not None:
            return len(self._decoded)
        return self._encoded_length() // 4 * 3 - self._padding()

    def decode(self) -> bytes:
        """The message octets."""
        decoded = self._decoded
        if decoded is None:
            data = self._data
            if self._form:
                assert isinstance(data, bytes)
                data = _unquote(data)
            try:
                decoded = binascii.a2b_base64(data)
            except (binascii.Error, ValueError):
                decoded = b""
            # _data is kept: another thread may be reading it right now.
            self._decoded = decoded
        return decoded

    def header_block(self) -> bytes:
        """The decoded header block (up to the blank line), decoding as little as possible."""
        head = self._head
        if head is None:
            data = self._data
            # A few KB of base64 hold the header block of nearly every message.
            if self._decoded is None and len(data) > 2048:
                head = self._header_block_from_prefix(data[:2048])
                if head is None and len(data) > 16384:
                    head = self._header_block_from_prefix(data[:16384])
            if head is None:
                raw = self.decode()
                match = _HEADER_END.search(raw)
                head = raw[: match.start()] if match else raw
            self._head = head
        return head

    def _header_block_from_prefix(self, prefix: str | bytes | memoryview) -> bytes | None:
        text: str | bytes | memoryview = prefix
        if self._form:
            assert isinstance(prefix, bytes)
            cut = prefix.rfind(b"%", len(prefix) - 2)
            text = _unquote(prefix[:cut] if cut >= 0 else prefix)
        try:
            head = binascii.a2b_base64(text[: len(text) // 4 * 4])
        except (binascii.Error, ValueError):
            head = b""
        match = _HEADER_END.search(head)
        return head[: match.start()] if match else None


# ------------------------------------------------------------------ raw message headers

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELDS: dict[frozenset[str], re.Pattern[bytes]] = {}
# Address lists without quotes, comments, groups or escapes split safely on commas.
_NOT_SIMPLE = re.compile(r'["():;\\]')


def header_values(raw: bytes, names: Iterable[str]) -> list[str]:
    """The values of the named header fields (case-insensitive), unfolded, in message order."""
    key = frozenset(name.lower() for name in names)
    pattern = _FIELDS.get(key)
    if pattern is None:
        alternatives = b"|".join(re.escape(name.encode()) for name in sorted(key))
        pattern = _FIELDS[key] = re.compile(
            rb"^(?:" + alternatives + rb")[ \t]*:(.*(?:\r?\n[ \t].*)*)",
            re.IGNORECASE | re.MULTILINE,
        )
    match = _HEADER_END.search(raw)
    block = raw[: match.start()] if match else raw
    return [
        value.replace(b"\r\n", b"").replace(b"\n", b"").decode("utf-8", "replace").strip()
        for value in pattern.findall(block)
    ]


def _split_addresses(value: str) -> list[str]:
    if _NOT_SIMPLE.search(value):
        return [addr for _, addr in getaddresses([value]) if addr]
    found = []
    for piece in value.split(","):
        start = piece.rfind("<")
        if start >= 0:
            end = piece.find(">", start)
            if end < 0:
                return [addr for _, addr in getaddresses([value]) if addr]
            piece = piece[start + 1 : end]
        piece = piece.strip()
        if piece:
            found.append(piece)
    return found


def header_addresses(raw: bytes, names: Iterable[str]) -> list[str]:
    """The addr-specs found in the named address fields (groups are flattened)."""
    found: list[str] = []
    for value in header_values(raw, names):
        found.extend(_split_addresses(value))
    return found


_ENVELOPE_FIELDS = re.compile(
    rb"^(from|to|cc|bcc)[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE
)


def envelope_from_headers(block: bytes) -> tuple[list[str], list[str]]:
    """(From addresses, To + Cc + Bcc addresses) of a header block, in one pass."""
    senders: list[str] = []
    recipients: list[str] = []
    for name, value in _ENVELOPE_FIELDS.findall(block):
        text = value.replace(b"\r\n", b"").replace(b"\n", b"").decode("utf-8", "replace")
        (senders if name.lower() == b"from" else recipients).extend(_split_addresses(text))
    return senders, recipients


def message_id_header(raw: bytes) -> str | None:
    """The Message-ID field of a raw message without angle brackets, or None."""
    values = header_values(raw, ("message-id",))
    if not values:
        return None
    return values[0].strip().strip("<>").strip()


# ------------------------------------------------------------------------ simple content


def compose_simple(
    *,
    source: str,
    to: Sequence[str],
    cc: Sequence[str],
    reply_to: Sequence[str],
    subject: str,
    text: str | None,
    html: str | None,
    message_id: str,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """Build the MIME message SES would send for a "simple" (formatted) SendEmail request."""
    msg = EmailMessage(policy=email.policy.SMTP)
    try:
        msg["From"] = source
        if to:
            msg["To"] = ", ".join(to)
        if cc:
            msg["Cc"] = ", ".join(cc)
        if reply_to:
            msg["Reply-To"] = ", ".join(reply_to)
        msg["Subject"] = subject
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = f"<{message_id}@email.amazonses.com>"
        for name, value in extra_headers:
            msg[name] = value
        if text is not None:
            msg.set_content(text)
            if html is not None:
                msg.add_alternative(html, subtype="html")
        elif html is not None:
            msg.set_content(html, subtype="html")
        else:
            msg.set_content("")
        return msg.as_bytes()
    except (ValueError, TypeError) as exc:
        raise SESError.invalid(f"Cannot build the message: {exc}") from None


# -------------------------------------------------------------------- request values

_JUST_STR = {str}
_SCOPE = re.compile(r"Credential=[^/,]*/\d{8}/([a-z0-9-]+)/")


def encoded_message(data: Any, what: str, *, form_encoded: bool) -> EncodedMessage:
    """The raw-message parameter: base64 text, possibly still form-encoded (v1)."""
    if isinstance(data, (bytes, str, memoryview)) and data:
        return EncodedMessage(data, form_encoded=form_encoded and isinstance(data, bytes))
    raise SESError.invalid(f"{what} is required.")


_RAW_DATA = re.compile(rb'"Raw"\s*:\s*\{\s*"Data"\s*:\s*"')


def loads_send_email(body: bytes) -> Any:
    """``json.loads`` for SESv2 bodies, leaving ``Content.Raw.Data`` as undecoded bytes.

    The base64 message is most of the body, and JSON-decoding it costs ~1 µs per KB
    for nothing: base64 holds no quote or backslash, so the value is cut out with two
    searches, the rest is parsed, and the value put back. Anything unexpected falls back
    to a plain ``json.loads``.
    """
    match = _RAW_DATA.search(body)
    if match:
        start = match.end()
        end = body.find(b'"', start)
        if end > start and body.find(b"\\", start, end) < 0:
            document = json.loads(body[:start] + body[end:])
            raw = document.get("Content", {}).get("Raw") if isinstance(document, dict) else None
            if isinstance(raw, dict) and raw.get("Data") == "":
                # A view, not a copy: the stored message keeps the request body alive.
                raw["Data"] = memoryview(body)[start:end]
                return document
    return json.loads(body)


def address_list(value: Any, what: str) -> list[str]:
    """A list-of-addresses parameter (None gives an empty list)."""
    if value is None:
        return []
    # set(map(type, ...)) checks every item at C speed.
    if type(value) is not list or (value and set(map(type, value)) != _JUST_STR):
        raise SESError.invalid(f"{what} must be a list of addresses.")
    return value


def fill_envelope(
    raw: EncodedMessage, source: Any, destinations: list[str]
) -> tuple[str, list[str]]:
    """Like SES: a missing sender or recipient list is read from the message's headers."""
    if isinstance(source, str) and source and destinations:
        return source, destinations
    senders, recipients = envelope_from_headers(raw.header_block())
    if not isinstance(source, str) or not source:
        if not senders:
            raise SESError.invalid("Missing required header 'From'.")
        source = senders[0]
    return source, destinations or recipients


def content_data(node: Any) -> str | None:
    """The ``Data`` of a ``{"Data": ..., "Charset": ...}`` content parameter, or None."""
    if isinstance(node, dict):
        data = node.get("Data")
        if isinstance(data, str):
            return data
    return None


def signing_region(authorization: str) -> str | None:
    """The region of a SigV4 ``Authorization`` header's credential scope, or None."""
    match = _SCOPE.search(authorization)
    return match.group(1) if match else None


def request_region(configured: str | None, authorization: str) -> str:
    """The configured region, else the one the client signed for, else us-east-1."""
    return configured or signing_region(authorization) or "us-east-1"
