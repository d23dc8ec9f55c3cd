"""Shared helpers for the composer tests: parse a composed message and insist on no defects."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, cast

from asyncmailer.mime import compose_sync

FIXED_DATE = "Mon, 02 Nov 2026 10:00:00 +0000"
_PARSER = BytesParser(policy=email.policy.default)


def parse(raw: bytes) -> EmailMessage:
    """Parse ``raw`` with the stdlib and assert that no part or header has a defect."""
    msg = cast(EmailMessage, _PARSER.parsebytes(raw))
    problems: list[str] = []
    for part in msg.walk():
        problems.extend(f"{part.get_content_type()}: {d!r}" for d in part.defects)
        for name, value in part.items():
            problems.extend(f"{name}: {d!r}" for d in getattr(value, "defects", ()))
    assert not problems, problems
    return msg


def check_wire(raw: bytes) -> None:
    """Every line ends with CRLF, no line is over 998 octets, and the output is 7-bit."""
    assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF"
    assert b"\r" not in raw.replace(b"\r\n", b""), "bare CR"
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert raw.isascii()


def header_names(raw: bytes) -> list[str]:
    """Names of the top-level header fields, in order, read straight from the bytes."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    return [
        line.split(b":", 1)[0].decode()
        for line in head.split(b"\r\n")
        if line and line[:1] not in b" \t"
    ]


def part_header_names(raw: bytes) -> list[list[str]]:
    """Header names of every MIME part, read from the bytes (after each delimiter line)."""
    out: list[list[str]] = []
    lines = raw.split(b"\r\n")
    for index, line in enumerate(lines):
        if not line.startswith(b"--=_AM_") or line.endswith(b"--"):
            continue
        names: list[str] = []
        for header in lines[index + 1 :]:
            if not header:
                break
            if header[:1] not in b" \t":
                names.append(header.split(b":", 1)[0].decode())
        out.append(names)
    return out


def compose_parsed(message: Any, **kwargs: Any) -> tuple[bytes, EmailMessage]:
    """compose_sync() then parse(), checking wire rules too."""
    raw = compose_sync(message, **kwargs).raw
    check_wire(raw)
    return raw, parse(raw)
