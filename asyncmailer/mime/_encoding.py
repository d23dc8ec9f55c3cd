"""Transfer and header encodings: base64, quoted-printable, RFC 2047 and RFC 2231.

Everything here works on whole buffers with C-level helpers (``binascii``, ``bytes.translate``,
regexes) instead of per-character Python loops, except the RFC 2047 encoder, which only ever
sees short header values.
"""

from __future__ import annotations

import binascii
import re
from urllib.parse import quote

__all__ = [
    "BASE64_LINE",
    "TEXT_7BIT_MAX_LINE",
    "base64_body",
    "choose_text_encoding",
    "encoded_words",
    "has_long_crlf_line",
    "has_long_line",
    "is_7bit_text",
    "quoted_printable_body",
    "rfc2231_segments",
]

#: Characters per base64 line (RFC 2045: at most 76).
BASE64_LINE = 76
#: Longest line (octets, CRLF excluded) a text part may have and still be sent as ``7bit``.
#: 76, like Nodemailer: longer lines are quoted-printable, so no relay ever rewraps them.
TEXT_7BIT_MAX_LINE = 76

# base64 in pieces of whole lines so that a worker thread encoding megabytes lets the
# event loop's thread take the GIL between pieces (binascii holds it for a whole call).
_B64_PIECE = 57 * 16384  # 57 input octets → one 76-column line
# has_long_line() splits this much of the input at a time (bounds the list of lines).
_LINE_CHUNK = 1 << 20
_ASCII_PRINTABLE = bytes(range(0x20, 0x7F)) + b"\t\n"
_NON_ASCII_DELETE = bytes(range(0x80))


def base64_body(data: bytes) -> bytes:
    """Base64 ``data`` in 76-column CRLF-separated lines (no trailing CRLF)."""
    if not data:
        return b""
    b2a = binascii.b2a_base64
    step = BASE64_LINE
    if len(data) <= _B64_PIECE:
        enc = b2a(data, newline=False)
        return b"\r\n".join([enc[i : i + step] for i in range(0, len(enc), step)])
    lines: list[bytes] = []
    for start in range(0, len(data), _B64_PIECE):
        enc = b2a(data[start : start + _B64_PIECE], newline=False)
        lines.extend([enc[i : i + step] for i in range(0, len(enc), step)])
    return b"\r\n".join(lines)


def _qp_piece(data: bytes) -> bytes:
    # b2a_qp picks its line ending from the first line break it sees; feeding LF-only
    # text and converting afterwards gives CRLF soft and hard breaks everywhere.
    return binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)


def quoted_printable_body(data: bytes) -> bytes:
    """Quoted-printable ``data`` (LF or CRLF line endings) with CRLF line endings.

    Lines are at most 76 characters; trailing whitespace before a line break, ``=``,
    control characters and non-ASCII octets are escaped.
    """
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if len(data) <= _B64_PIECE:
        return _qp_piece(data).replace(b"\n", b"\r\n")
    out: list[bytes] = []
    start = 0
    n = len(data)
    while start < n:
        end = data.find(b"\n", start + _B64_PIECE)
        end = n if end < 0 else end + 1
        out.append(_qp_piece(data[start:end]))
        start = end
    return b"".join(out).replace(b"\n", b"\r\n")


def has_long_line(data: bytes, limit: int, *, chunk: int = _LINE_CHUNK) -> bool:
    """True when a line of ``data`` (ended by CR, LF or the end) is longer than ``limit`` octets.

    Linear time, at C speed: the input is split at its line ends, ``chunk`` octets at a
    time. (A regular expression such as ``[^\\r\\n]{999}`` retries at every offset of every
    line: ~500 µs for a 5 KB message, seconds for megabytes.)
    """
    if len(data) <= limit:
        return False
    carry = 0  # length of the line that runs on from the previous chunk
    for start in range(0, len(data), chunk):
        piece = data if len(data) <= chunk else data[start : start + chunk]
        if b"\r" in piece:  # LF-only text (the 7bit check) skips this copy
            piece = piece.replace(b"\r", b"\n")
        lines = piece.split(b"\n")
        if len(lines) == 1:
            carry += len(lines[0])
            if carry > limit:
                return True
            continue
        if carry + len(lines[0]) > limit:
            return True
        if len(lines) > 2 and max(map(len, lines[1:-1])) > limit:
            return True
        carry = len(lines[-1])
    return carry > limit


def has_long_crlf_line(data: bytes, limit: int) -> bool:
    """:func:`has_long_line` for ``data`` whose line breaks are all CRLF (no lone CR or LF).

    One split at ``CRLF`` and no copy of the data, for inputs up to ``_LINE_CHUNK``
    octets (bigger ones go through :func:`has_long_line`).
    """
    if len(data) <= limit:
        return False
    if len(data) > _LINE_CHUNK:
        return has_long_line(data, limit)
    return max(map(len, data.split(b"\r\n"))) > limit


def is_7bit_text(data: bytes) -> bool:
    """True when LF-normalised ``data`` may be sent as ``7bit``: ASCII, no NUL/CR, short lines."""
    return (
        data.isascii()
        and b"\x00" not in data
        and b"\r" not in data
        and not has_long_line(data, TEXT_7BIT_MAX_LINE)
    )


def choose_text_encoding(data: bytes) -> str:
    """Pick ``7bit``, ``quoted-printable`` or ``base64`` for LF-normalised text ``data``.

    Mostly-ASCII text is quoted-printable (readable, smaller); text where escapes would
    outweigh base64's 4/3 growth (more than 1 in 6 octets escaped) is base64.
    """
    if is_7bit_text(data):
        return "7bit"
    escaped = len(data.translate(None, _ASCII_PRINTABLE))
    if escaped * 6 <= len(data):
        return "quoted-printable"
    return "base64"


def count_non_ascii(data: bytes) -> int:
    """Number of octets ≥ 0x80 in ``data``."""
    return len(data) - len(data.translate(None, _NON_ASCII_DELETE))


# ------------------------------------------------------------------------ RFC 2047

# Characters allowed literally in a Q encoded-word anywhere, including phrases
# (RFC 2047 section 5 rule 3); "_" stands for a space.
_Q_LITERAL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q_CACHE: dict[str, str] = {" ": "_"}
for _code in range(0x80):
    _ch = chr(_code)
    if _ch in _Q_LITERAL:
        _Q_CACHE[_ch] = _ch
    elif _ch != " ":
        _Q_CACHE[_ch] = f"={_code:02X}"


def _q_char(ch: str) -> str:
    encoded = _Q_CACHE.get(ch)
    if encoded is None:
        encoded = "".join(f"={b:02X}" for b in ch.encode("utf-8"))
    return encoded


_PREFIX_Q = "=?utf-8?Q?"
_PREFIX_B = "=?utf-8?B?"


def encoded_words(text: str, max_len: int = 75) -> list[str]:
    """Encode ``text`` as RFC 2047 encoded-words of at most ``max_len`` characters each.

    Q encoding when at most a third of the characters need escaping, B otherwise.
    Words split between characters, never inside a UTF-8 sequence. Adjacent words are
    meant to be separated by folding whitespace, which decoders drop.
    """
    if not text:
        return [_PREFIX_Q + "?="]
    non_ascii = sum(1 for ch in text if ch not in _Q_LITERAL)
    room = max_len - len(_PREFIX_Q) - 2
    words: list[str] = []
    if non_ascii * 3 <= len(text):
        current: list[str] = []
        size = 0
        for ch in text:
            enc = _q_char(ch)
            if size + len(enc) > room and current:
                words.append(_PREFIX_Q + "".join(current) + "?=")
                current = []
                size = 0
            current.append(enc)
            size += len(enc)
        words.append(_PREFIX_Q + "".join(current) + "?=")
        return words
    max_octets = (room // 4) * 3
    chunk: list[str] = []
    octets = 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        if octets + n > max_octets and chunk:
            data = "".join(chunk).encode("utf-8")
            words.append(_PREFIX_B + binascii.b2a_base64(data, newline=False).decode() + "?=")
            chunk = []
            octets = 0
        chunk.append(ch)
        octets += n
    data = "".join(chunk).encode("utf-8")
    words.append(_PREFIX_B + binascii.b2a_base64(data, newline=False).decode() + "?=")
    return words


# ------------------------------------------------------------------------ RFC 2231

_SIMPLE_PARAM = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,60}")


def rfc2231_segments(name: str, value: str, segment: int = 60) -> list[str]:
    """Format parameter ``name=value``: quoted when simple, RFC 2231 ``name*N*=`` otherwise.

    Returns one string per parameter segment (``["filename*0*=utf-8''%E2...",
    "filename*1*=..."]``), to be joined with ``"; "`` and folded between segments.
    """
    if _SIMPLE_PARAM.fullmatch(value):
        return [f'{name}="{value}"']
    encoded = quote(value.encode("utf-8"), safe="")
    head = f"{name}*=utf-8''"
    if len(head) + len(encoded) <= segment + 12:
        return [head + encoded]
    # segments end on character boundaries: some decoders (the stdlib's) decode each
    # segment on its own, so a UTF-8 sequence must not straddle two of them
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for ch in value:
        piece = quote(ch.encode("utf-8"), safe="")
        if size + len(piece) > segment and current:
            parts.append("".join(current))
            current = []
            size = 0
        current.append(piece)
        size += len(piece)
    parts.append("".join(current))
    return [
        (f"{name}*{i}*=utf-8''{part}" if i == 0 else f"{name}*{i}*={part}")
        for i, part in enumerate(parts)
    ]
