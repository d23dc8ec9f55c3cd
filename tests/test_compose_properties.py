"""Property tests: arbitrary Unicode round-trips exactly; CR/LF/NUL never inject a header.

Profiles come from tests/conftest.py: ``HYPOTHESIS_PROFILE=ci`` (default, 150 examples per
test) or ``HYPOTHESIS_PROFILE=long`` (100 000 examples, the campaign)::

    HYPOTHESIS_PROFILE=long pytest tests/test_compose_properties.py
"""

from __future__ import annotations

import email.header
import email.utils
import re
import string
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from asyncmailer.errors import MessageError
from asyncmailer.message import Attachment, ListHeaders, Message, PreparedHeader
from asyncmailer.mime import compose_sync
from tests.mime_helpers import (
    check_wire,
    header_names,
    parse,
    part_header_names,
)

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~"
local_parts = st.lists(st.text(ATEXT, min_size=1, max_size=12), min_size=1, max_size=3).map(
    ".".join
)
labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
domains = st.lists(labels, min_size=1, max_size=3).map(lambda ls: ".".join([*ls, "com"]))
addr_specs = st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains)
# display names: anything but control characters (refused with AddressError by design)
names = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)
mailboxes = st.tuples(names, addr_specs)
cids = st.text(
    string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~.@", min_size=1, max_size=30
)
bodies = st.text(max_size=300)
filenames = st.text(min_size=1, max_size=80)
CTRL = st.sampled_from(
    [
        "\r",
        "\n",
        "\r\n",
        "\x00",
        "\n ",
        "\r\nBcc: evil@x.com\r\n",
        # line ends for Unicode-aware readers, other controls (see test_security_properties.py)
        "\x85",
        "\u2028",
        "\u2029",
        "\x0b",
        "\x0c",
        "\x1b",
        "\x7f",
        "\u2028Bcc: evil@x.com\u2028",
    ]
)


def _mailboxes(raw: bytes, name: str) -> list[tuple[str, str]]:
    """(display name, address) pairs of header ``name``, decoded per RFC 2047.

    The stdlib's modern parser inserts a space between adjacent encoded-words in a
    display name (RFC 2047 6.2 says to drop it), so names are decoded with the legacy
    ``decode_header``, which follows the RFC; the modern parser still checks for defects.
    """
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii").replace("\r\n ", " ")
    value = next(line for line in head.split("\r\n") if line.startswith(name + ": "))
    pairs = email.utils.getaddresses([value[len(name) + 2 :]])
    return [(str(email.header.make_header(email.header.decode_header(n))), a) for n, a in pairs]


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


@given(
    subject=st.text(max_size=200),
    sender=mailboxes,
    recipients=st.lists(mailboxes, min_size=1, max_size=4),
    text=bodies,
    html=bodies,
    attachments=st.lists(st.tuples(st.binary(max_size=300), filenames), max_size=3),
    inline=st.lists(
        st.tuples(st.binary(min_size=1, max_size=100), cids), max_size=2, unique_by=lambda t: t[1]
    ),
)
def test_round_trip(
    subject: str,
    sender: tuple[str, str],
    recipients: list[tuple[str, str]],
    text: str,
    html: str,
    attachments: list[tuple[bytes, str]],
    inline: list[tuple[bytes, str]],
) -> None:
    message = Message(
        from_=sender,
        to=recipients,
        subject=subject,
        text=text,
        html=html,
        attachments=[Attachment(content=data, filename=name) for data, name in attachments]
        + [Attachment(content=data, cid=cid, content_type="image/png") for data, cid in inline],
    )
    composed = compose_sync(message)
    check_wire(composed.raw)
    msg = parse(composed.raw)
    assert str(msg["Subject"]) == subject
    assert _mailboxes(composed.raw, "From") == [sender]
    assert _mailboxes(composed.raw, "To") == recipients
    assert [a.addr_spec for a in msg["To"].addresses] == [a for _, a in recipients]
    parts = {
        p.get_content_type(): p for p in msg.walk() if not p.is_multipart() and not p.get_filename()
    }
    assert _newlines(parts["text/plain"].get_content()) == _newlines(text)
    assert _newlines(parts["text/html"].get_content()) == _newlines(html)
    files = [p for p in msg.walk() if p.get_content_disposition() == "attachment"]
    # the stdlib reader unquotes ("..." or <...>) and strips decoded file names
    assert [(p.get_payload(decode=True), p.get_filename()) for p in files] == [
        (data, email.utils.unquote(name).strip()) for data, name in attachments
    ]
    related = [p for p in msg.walk() if p.get_content_disposition() == "inline"]
    assert [(p.get_payload(decode=True), str(p["Content-ID"])) for p in related] == [
        (data, f"<{cid}>") for data, cid in inline
    ]


def _inject(base: str, ctrl: str, at: int) -> str:
    at = at % (len(base) + 1)
    return base[:at] + ctrl + base[at:]


FIELDS = [
    "subject",
    "name",
    "filename",
    "cid",
    "header_value",
    "header_name",
    "list_url",
    "message_id",
    "in_reply_to",
    "address",
    "date",
    "quoted_local",
    "content_type",
    "data_url",
    "prepared",
]


@given(
    where=st.sampled_from(FIELDS),
    base=st.text(string.ascii_letters + " :;<>@.", min_size=1, max_size=20),
    ctrl=CTRL,
    at=st.integers(min_value=0, max_value=40),
)
def test_no_header_injection(where: str, base: str, ctrl: str, at: int) -> None:
    evil = _inject(base, ctrl, at)
    fields: dict[str, Any] = {
        "from_": ("Shop", "shop@example.com"),
        "to": "ada@example.com",
        "subject": "s",
        "text": "t",
        "html": '<img src="cid:c@x">',
    }
    attachment: dict[str, Any] = {"content": b"x", "filename": "f.bin"}
    image: dict[str, Any] = {"content": b"i", "cid": "c@x", "content_type": "image/png"}
    if where == "subject":
        fields["subject"] = evil
    elif where == "name":
        fields["from_"] = (evil, "shop@example.com")
    elif where == "filename":
        attachment["filename"] = evil
    elif where == "cid":
        image["cid"] = evil
    elif where == "header_value":
        fields["headers"] = {"X-Custom": evil}
    elif where == "header_name":
        fields["headers"] = {evil: "v"}
    elif where == "list_url":
        fields["list_headers"] = ListHeaders(unsubscribe=evil)
    elif where == "message_id":
        fields["message_id"] = evil
    elif where == "in_reply_to":
        fields["in_reply_to"] = evil
    elif where == "address":
        fields["to"] = evil
    elif where == "quoted_local":
        fields["to"] = [("", '"' + evil.replace('"', "").replace("\\", "") + '"@example.com')]
    elif where == "content_type":
        attachment["content_type"] = 'application/pdf; name="' + evil.replace('"', "") + '"'
    elif where == "data_url":
        attachment = {"href": f"data:{evil},x", "filename": "f.bin"}
    elif where == "prepared":
        fields["headers"] = {"X-Custom": PreparedHeader(evil)}
    else:
        fields["date"] = evil
    message = Message(**fields, attachments=[Attachment(**attachment), Attachment(**image)])
    try:
        raw = compose_sync(message).raw
    except MessageError as exc:  # a typed refusal is fine; it must name a field
        refused_field = exc.field
        assert refused_field
        return
    check_wire(raw)
    # no control character but TAB left anywhere, once the CRLF line ends are taken out
    assert not re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", raw.replace(b"\r\n", b""))
    parse(raw)
    expected = {"From", "To", "Subject", "Message-ID", "Date", "MIME-Version", "Content-Type"}
    expected |= {
        "headers": set(),
        "header_value": {"X-Custom"},
        "prepared": {"X-Custom"},
        "list_url": {"List-Unsubscribe"},
        "in_reply_to": {"In-Reply-To"},
    }.get(where, set())
    if where == "header_name":
        assume(False)  # any accepted name is ftext with no CR/LF: nothing else to check
    assert set(header_names(raw)) == expected
    for names in part_header_names(raw):
        assert set(names) <= {
            "Content-Type",
            "Content-Transfer-Encoding",
            "Content-Disposition",
            "Content-ID",
        }
