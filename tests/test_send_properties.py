"""Hypothesis over the whole send path: hostile input through SESTransport to the endpoint.

Every example goes through ``send_mail`` on a real SESTransport (v1 and v2, real
aiobotocore HTTP) to the local SES endpoint, with CR/LF/NUL and header-looking text in
every field, huge headers, up to 60 recipients and bodies over the size limit. Whatever
the input:

- the outcome is a :class:`SendResult` or a typed :class:`~asyncmailer.errors.MailError`,
  never another exception;
- invalid input raises before any request: the endpoint received nothing;
- the endpoint never refuses what the transport let through (the checks happen first);
- what the endpoint stored has no injected header, the envelope we reported, and wire
  format lines.

Profiles come from tests/conftest.py (``ci`` by default; the campaign is
``HYPOTHESIS_PROFILE=long pytest tests/test_send_properties.py``). To keep oversize bodies
cheap, the SES size limits are lowered to 64 KiB for this module (transport and endpoint
alike).
"""

from __future__ import annotations

import asyncio
import string
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from asyncmailer import Attachment, Message, RetryPolicy, SendResult, SESTransport
from asyncmailer.errors import DeliveryError, MailError, MessageError, UsageError
from asyncmailer.testing import SESEndpoint
from asyncmailer.transports import ses as ses_module
from tests.mime_helpers import check_wire, header_names

LIMIT = 64 * 1024
#: Each example is a real HTTP round trip: a third of the profile's count (50 in CI,
#: a third of 100 000 in the long campaign).
EXAMPLES = max(50, settings().max_examples // 3)
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
SEND_ACTION = {"v1": "ses:SendRawEmail", "v2": "sesv2:SendEmail"}
APIS: tuple[Literal["v1", "v2"], ...] = ("v1", "v2")
MARKER = "X-Injected"


@dataclass
class Stack:
    """One event loop, one endpoint and a transport per API, shared by all examples."""

    loop: asyncio.AbstractEventLoop
    endpoint: SESEndpoint
    transports: dict[str, SESTransport]

    def sends(self, api: str) -> int:
        return self.endpoint.stats().requests.get(SEND_ACTION[api], 0)

    def send(self, api: str, message: Any) -> SendResult | MailError:
        """Send one example; return the outcome, or let any untyped exception escape."""
        try:
            return self.loop.run_until_complete(self.transports[api].send_mail(message))
        except MailError as exc:
            return exc


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    saved = dict(ses_module.SES_LIMITS)
    ses_module.SES_LIMITS.update(v1=LIMIT, v2=LIMIT)
    loop = asyncio.new_event_loop()
    endpoint = SESEndpoint(max_message_size_v1=LIMIT, max_message_size_v2=LIMIT)
    transports: dict[str, SESTransport] = {}
    try:
        loop.run_until_complete(endpoint.start())
        for api in APIS:
            # Explicit keys: a module fixture runs before the autouse AWS-env fixture.
            transport = SESTransport(
                api=api,
                retry=RetryPolicy(max_attempts=1),
                endpoint_url=endpoint.url,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            loop.run_until_complete(transport.__aenter__())
            transports[api] = transport
        yield Stack(loop, endpoint, transports)
    finally:
        for transport in transports.values():
            loop.run_until_complete(transport.aclose())
        loop.run_until_complete(endpoint.aclose())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        ses_module.SES_LIMITS.clear()
        ses_module.SES_LIMITS.update(saved)


# ---------------------------------------------------------------------------- strategies

HOSTILE = st.sampled_from(
    [
        "\r",
        "\n",
        "\r\n",
        "\x00",
        "\r\n ",
        f"\r\n{MARKER}: yes",
        f"\n{MARKER}: yes\n",
        "\r\nBcc: evil@evil.test",
        "\r\n\r\nbody?",
        "\r\n.\r\n",
        ":",
        ";",
        ",",
        "<",
        ">",
        '"',
        "@",
        "\\",
        "=?utf-8?b?DQpYLUluamVjdGVkOiB5ZXM=?=",
        "é",
        "\u2028",
        "\u2029",
        "\x85",
        "\x0b",
        "\x1b",
        "\x7f",
        "\t",
    ]
)


def hostile(max_pieces: int = 6) -> st.SearchStrategy[str]:
    piece = st.one_of(st.text(max_size=8), HOSTILE)
    return st.lists(piece, max_size=max_pieces).map("".join)


ATEXT = string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~"
good_addresses = st.builds(
    "{}@{}.example".format,
    st.text(ATEXT, min_size=1, max_size=10),
    st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True),
)
# Display names may hold anything printable, header-looking text included; control
# characters in them are refused (AddressError), which the "address" breakage covers.
PRINTABLE_TRAPS = st.sampled_from(
    [":", ";", ",", "<", ">", '"', "@", "\\", "=?utf-8?b?DQpYLUluamVjdGVkOiB5ZXM=?=", "é", " "]
)
display_names = st.lists(
    st.one_of(
        st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=6), PRINTABLE_TRAPS
    ),
    max_size=5,
).map("".join)
mailboxes = st.one_of(good_addresses, st.tuples(display_names, good_addresses))
# The endpoint's size limit is 64 KiB: bodies near and over it come from the "size" breakage.
bodies = hostile(10)
huge = st.integers(min_value=1000, max_value=30_000).map(lambda n: "h" * n)
header_values = st.one_of(hostile(), huge, st.tuples(hostile(), huge).map("".join))
filenames = st.one_of(hostile(4), st.sampled_from(["report.pdf", "x.txt\r\nX-Injected: y"]))

#: At most one field is made invalid per example; "none" keeps every field valid (but
#: still full of CR/LF/NUL and header-looking text where the composer must encode it).
BREAKAGES = ["none"] * 8 + [
    "address",
    "recipients",
    "no recipient",
    "header name",
    "message id",
    "size",
    "blocked attachment",
    "quoted local",
    "data url",
    "idn",
]


@st.composite
def messages(draw: st.DrawFn) -> Message:
    breakage = draw(st.sampled_from(BREAKAGES))
    fields: dict[str, Any] = {
        "from_": draw(mailboxes),
        "to": draw(st.lists(mailboxes, min_size=1, max_size=4)),
        "subject": draw(st.one_of(hostile(), huge)),
        "text": draw(bodies),
    }
    if draw(st.booleans()):
        fields["cc"] = draw(st.lists(mailboxes, max_size=3))
    if draw(st.booleans()):
        fields["bcc"] = draw(st.lists(mailboxes, max_size=3))
    if draw(st.booleans()):
        fields["reply_to"] = draw(mailboxes)
    if draw(st.booleans()):
        fields["html"] = draw(hostile(8))
    if draw(st.booleans()):
        names = st.sampled_from(["X-Tag", "X-Campaign", "Keywords", "Comments"])
        fields["headers"] = draw(st.dictionaries(names, header_values, max_size=3))
    if draw(st.booleans()):
        fields["in_reply_to"] = "<parent.1@example.com>"
    if draw(st.booleans()):
        files = draw(st.lists(st.tuples(filenames, st.binary(max_size=200)), max_size=2))
        fields["attachments"] = [Attachment(filename=n, content=d) for n, d in files]

    if breakage == "address":
        field = draw(st.sampled_from(["from_", "to", "cc", "bcc", "reply_to"]))
        bad = draw(
            st.one_of(
                hostile().filter(lambda t: "@" not in t), st.tuples(hostile(), good_addresses)
            )
        )
        fields[field] = [bad] if field in ("to", "cc", "bcc") else bad
    elif breakage == "recipients":
        fields["to"] = draw(st.lists(good_addresses, min_size=51, max_size=60, unique=True))
    elif breakage == "no recipient":
        fields["to"] = []
        fields.pop("cc", None)
        fields.pop("bcc", None)
    elif breakage == "header name":
        fields["headers"] = {draw(hostile(3)): "v"}
    elif breakage == "message id":
        fields["message_id"] = draw(hostile())
    elif breakage == "size":
        fields["text"] = "x" * draw(st.integers(min_value=LIMIT - 2000, max_value=LIMIT + 4000))
    elif breakage == "quoted local":
        # reaches SES Destinations: controls must be refused before the request
        local = draw(hostile(3)).replace('"', "").replace("\\", "")
        fields["to"] = [("", f'"{local}"@example.com')]
    elif breakage == "data url":
        fields["attachments"] = [Attachment(href=f"data:{draw(hostile(3))},x")]
    elif breakage == "idn":
        label = draw(
            st.sampled_from(["faß", "ｆａｓｓ", "fa\u00adss", "bücher", "e\u0301", "xn--abc-"])
        )
        fields["to"] = [f"b@{label}.example"]
    elif breakage == "blocked attachment":
        name = draw(st.sampled_from(["setup.exe", "run.BAT", "a.js", "x.vbs"]))
        fields["attachments"] = [Attachment(filename=name, content=b"MZ")]
    return Message(**fields)


raw_lines = st.lists(
    st.one_of(
        st.sampled_from(["Subject: hi", "Bcc: c@d.example", "X-A: b"]),
        hostile(4),
        st.integers(min_value=990, max_value=1010).map(lambda n: "X-Long: " + "y" * n),
    ),
    max_size=6,
).flatmap(lambda extra: st.permutations(["From: a@example.com", "To: b@example.com", *extra]))


# --------------------------------------------------------------------------- the checks

ALLOWED = {
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Subject",
    "Message-ID",
    "Date",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "In-Reply-To",
    "References",
}


def check(
    stack: Stack, api: str, message: Any, outcome: SendResult | MailError, before: int
) -> None:
    after = stack.sends(api)
    event(type(outcome).__name__)
    if isinstance(outcome, MailError):
        # Refused by us: typed, and nothing reached the endpoint.
        assert isinstance(outcome, MessageError | UsageError), outcome
        assert not isinstance(outcome, DeliveryError)
        assert after == before, f"a request was made for invalid input: {outcome!r}"
        return
    assert after == before + 1
    record = next(r for r in stack.endpoint.messages() if r.message_id == outcome.response)
    # The endpoint received the envelope we report.
    assert record.source == outcome.envelope.from_
    assert tuple(record.destinations) == outcome.envelope.to
    assert 1 <= len(outcome.envelope.to) <= 50
    raw = record.raw
    assert len(raw) <= LIMIT
    if isinstance(message, Message):
        check_wire(raw)
        names = header_names(raw)
        custom = set(message.headers or ()) if isinstance(message.headers, dict) else set()
        assert set(names) <= ALLOWED | custom, names
        for single in ("From", "To", "Subject", "Message-ID", "Date", "Content-Type"):
            assert names.count(single) <= 1
    else:
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert b"\nbcc:" not in b"\n" + head.lower()  # Bcc never leaves
    # No header injected by a value: the marker may only appear as a name the user chose.
    names_lower = {n.lower() for n in header_names(raw)}
    assert MARKER.lower() not in names_lower or isinstance(message, bytes)
    assert "bcc" not in names_lower


@pytest.mark.parametrize("api", ["v1", "v2"])
@settings(max_examples=EXAMPLES)
@given(message=messages())
def test_hostile_messages_end_typed_and_never_inject(
    stack: Stack, api: str, message: Message
) -> None:
    before = stack.sends(api)
    outcome = stack.send(api, message)
    check(stack, api, message, outcome, before)


@settings(max_examples=EXAMPLES)
@given(lines=raw_lines, body=bodies, api=st.sampled_from(["v1", "v2"]))
def test_hostile_raw_messages_end_typed(
    stack: Stack, lines: list[str], body: str, api: str
) -> None:
    raw = ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8", "surrogatepass")
    before = stack.sends(api)
    outcome = stack.send(api, raw)
    check(stack, api, raw, outcome, before)


@settings(max_examples=20)
@given(
    count=st.integers(min_value=51, max_value=120),
    api=st.sampled_from(["v1", "v2"]),
)
def test_too_many_recipients_never_reach_the_endpoint(stack: Stack, count: int, api: str) -> None:
    before = stack.sends(api)
    outcome = stack.send(
        api,
        Message(
            from_="a@example.com",
            to=[f"r{i}@example.org" for i in range(count // 2)],
            bcc=[f"b{i}@example.org" for i in range(count - count // 2)],
            text="x",
        ),
    )
    assert isinstance(outcome, MessageError)
    assert stack.sends(api) == before
