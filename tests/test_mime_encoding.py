"""The encoders on their own: base64 lines, quoted-printable, RFC 2047 words, RFC 2231 segments."""

from __future__ import annotations

import base64
import binascii
import os
import quopri
import re
from urllib.parse import unquote

import pytest

from asyncmailer.mime._encoding import (
    base64_body,
    choose_text_encoding,
    encoded_words,
    quoted_printable_body,
    rfc2231_segments,
)
from asyncmailer.mime._headers import fold, text_tokens


@pytest.mark.parametrize("size", [0, 1, 56, 57, 58, 1000, 57 * 16384 + 5])
def test_base64_body(size: int) -> None:
    data = os.urandom(size)
    body = base64_body(data)
    lines = body.split(b"\r\n") if body else []
    assert all(len(line) == 76 for line in lines[:-1])
    assert base64.b64decode(b"".join(lines)) == data


def test_quoted_printable_body() -> None:
    data = b"tab\tend\t\nspace end \n=equals\n" + "é".encode() * 100 + b"\x00\n"
    body = quoted_printable_body(data)
    assert b"\n" not in body.replace(b"\r\n", b"")
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))
    assert re.search(rb"[ \t]\r\n", body) is None
    assert quopri.decodestring(body).replace(b"\r\n", b"\n") == data
    big = b"line of text with a caf\xc3\xa9\n" * 60000
    assert quopri.decodestring(quoted_printable_body(big)).replace(b"\r\n", b"\n") == big


def test_choose_text_encoding() -> None:
    assert choose_text_encoding(b"short ascii\n") == "7bit"
    assert choose_text_encoding(b"a" * 77) == "quoted-printable"
    assert choose_text_encoding("mostly ascii, one é".encode()) == "quoted-printable"
    assert choose_text_encoding("ほとんど日本語".encode()) == "base64"


@pytest.mark.parametrize(
    "text", ["", "plain", "é" * 100, "日本語" * 40, "a" * 200 + "😀" * 30, "x\r\ny\x00z", "_=?"]
)
@pytest.mark.parametrize("limit", [40, 60, 75])
def test_encoded_words(text: str, limit: int) -> None:
    words = encoded_words(text, limit)
    decoded = []
    for word in words:
        assert len(word) <= limit
        match = re.fullmatch(r"=\?utf-8\?([QB])\?([^?]*)\?=", word)
        assert match is not None
        kind, payload = match.groups()
        if kind == "B":
            octets = base64.b64decode(payload)
        else:
            octets = binascii.a2b_qp(payload.encode(), header=True)
        decoded.append(octets.decode("utf-8"))  # never a split UTF-8 sequence
        assert re.fullmatch(r"[A-Za-z0-9!*+\-/=_]*|[A-Za-z0-9+/=]*", payload)
    assert "".join(decoded) == text


@pytest.mark.parametrize(
    ("value", "simple"),
    [("report.pdf", True), ('we"ird.txt', False), ("é.txt", False), ("x" * 61, False)],
)
def test_rfc2231_segments(value: str, simple: bool) -> None:
    segments = rfc2231_segments("filename", value)
    if simple:
        assert segments == [f'filename="{value}"']
        return
    assert all(len(s) <= 80 for s in segments)
    encoded = "".join(s.split("=", 1)[1] for s in segments)
    assert unquote(encoded.removeprefix("utf-8''")) == value
    for segment in segments:
        unquote(segment.split("=", 1)[1].removeprefix("utf-8''"), errors="strict")


def test_long_rfc2231_names_split_on_characters() -> None:
    segments = rfc2231_segments("filename", "日本語のファイル名" * 10)
    assert len(segments) > 1
    assert segments[0].startswith("filename*0*=utf-8''")
    assert segments[1].startswith("filename*1*=")
    for segment in segments:
        unquote(segment.split("=", 1)[1].removeprefix("utf-8''"), errors="strict")


def test_fold() -> None:
    line = fold("Subject", text_tokens("word " * 40 + "end"))
    lines = line.split(b"\r\n")
    assert lines[-1] == b""
    assert all(len(x) <= 78 for x in lines)
    assert all(x.startswith(b" ") for x in lines[1:-1])
    assert b"".join(lines).replace(b"Subject: ", b"", 1) == ("word " * 40 + "end").encode()


# -- has_long_line: linear-time stand-in for re.search(rb"[^\r\n]{limit+1}", data) ------------

_LINE_PIECES = [b"a", b"bb", b"x" * 7, b"\r", b"\n", b"\r\n", b"\n\n"]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8, 64, 1 << 20])
@pytest.mark.parametrize("limit", [0, 1, 4, 7, 9])
def test_has_long_line_agrees_with_the_regex(limit: int, chunk: int) -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from asyncmailer.mime._encoding import has_long_line

    pattern = re.compile(rb"[^\r\n]{%d}" % (limit + 1))

    @given(st.lists(st.sampled_from(_LINE_PIECES), max_size=30).map(b"".join))
    def check(data: bytes) -> None:
        expected = pattern.search(data) is not None
        assert has_long_line(data, limit, chunk=chunk) is expected, (data, limit, chunk)

    check()


def test_has_long_line_at_the_smtp_limit() -> None:
    from asyncmailer.mime._encoding import has_long_line

    ok = b"a" * 998
    assert not has_long_line(ok, 998)
    assert not has_long_line(b"\r\n".join([ok] * 5000), 998)
    assert has_long_line(b"\r\n".join([ok] * 4000 + [ok + b"b"] + [ok] * 10), 998)
    # A long line across the chunk boundary, and at the very end.
    assert has_long_line(b"x" * 10 + b"\r\n" + b"y" * 999, 998, chunk=500)
    assert has_long_line(b"y" * 999 + b"\r\n", 998, chunk=7)
    assert not has_long_line(b"", 998)


# -- has_long_crlf_line: the prebuilt-message fast path, same answers as has_long_line -------


@pytest.mark.parametrize("limit", [0, 1, 4, 7, 9, 998])
def test_has_long_crlf_line_agrees_with_has_long_line(limit: int) -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from asyncmailer.mime._encoding import has_long_crlf_line, has_long_line
    from asyncmailer.mime._raw import to_crlf

    pieces = [*_LINE_PIECES, b"y" * 997, b"z" * 998, b"w" * 999]

    @given(st.lists(st.sampled_from(pieces), max_size=30).map(b"".join))
    def check(data: bytes) -> None:
        crlf = to_crlf(data)  # the fast path's precondition: CRLF line breaks only
        assert has_long_crlf_line(crlf, limit) is has_long_line(crlf, limit), (crlf, limit)

    check()


def test_has_long_crlf_line_on_big_input_goes_through_the_chunked_scan() -> None:
    from asyncmailer.mime._encoding import has_long_crlf_line

    ok = b"a" * 998
    big = b"\r\n".join([ok] * 1100)  # over 1 MB
    assert len(big) > 1 << 20
    assert not has_long_crlf_line(big, 998)
    assert has_long_crlf_line(big + b"\r\n" + ok + b"b", 998)
    assert has_long_crlf_line(b"b" + big, 998)
