"""The local SES endpoint's parts: window measures, settings, wire parsing, raw HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
from email.utils import getaddresses
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncmailer.errors import ConfigurationError
from asyncmailer.testing import (
    EndpointConfig,
    EndpointStats,
    SESEndpoint,
    StoredMessage,
    max_events_in_window,
    sustained_rate,
)
from asyncmailer.testing._ses_api import (
    EncodedMessage,
    SESError,
    envelope_from_headers,
    loads_send_email,
    message_id_header,
    parse_query,
    unflatten,
)

# -------------------------------------------------------------------- window measures


@pytest.fixture(autouse=True, scope="module")
def _no_implicit_event_loop() -> None:
    """Unset the event loop as asyncio.run() leaves it.

    The looptime plugin asks the loop policy for a loop even in sync tests; before any loop
    was set or unset that creates one, which is never closed and later fails a random test
    with an "unclosed event loop" ResourceWarning.
    """
    asyncio.set_event_loop(None)


def test_max_events_in_window_uses_half_open_windows() -> None:
    assert max_events_in_window([]) == 0
    assert max_events_in_window([5.0]) == 1
    assert max_events_in_window([0.0, 0.5, 0.99, 1.0, 1.2]) == 4
    assert max_events_in_window([0.0, 1.0, 2.0, 3.0]) == 1  # exactly one window apart
    assert max_events_in_window([3.0, 0.0, 2.5, 0.2, 2.9]) == 3  # order does not matter
    assert max_events_in_window([0.0, 0.1, 0.2, 0.3], window=0.25) == 3
    assert max_events_in_window([0.0, 0.5, 1.0], weights=[1, 5, 5]) == 10
    assert max_events_in_window([0.0, 0.5, 1.4], weights=[7, 1, 1]) == 8


def test_max_events_in_window_checks_lengths() -> None:
    with pytest.raises(ValueError, match="same length"):
        max_events_in_window([0.0, 1.0], weights=[1])


@given(
    st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), max_size=40),
    st.floats(min_value=0.01, max_value=3),
)
def test_max_events_in_window_matches_brute_force(times: list[float], window: float) -> None:
    brute = max((sum(1 for u in times if t <= u < t + window) for t in times), default=0)
    assert max_events_in_window(times, window=window) == brute


def test_sustained_rate() -> None:
    assert sustained_rate([]) == 0.0
    assert sustained_rate([1.0]) == 0.0
    assert sustained_rate([1.0, 1.0]) == 0.0
    assert sustained_rate([0.0, 0.1, 0.2, 0.3, 0.4]) == pytest.approx(10.0)
    # A burst of 5 at t=0 then one every 0.5 s: skipping the burst shows the pace.
    times = [0.0] * 5 + [0.5 * i for i in range(1, 9)]
    assert sustained_rate(times, skip=0.25) == pytest.approx(2.0)
    assert sustained_rate([0.0, 1.0, 2.0], weights=[9, 3, 3]) == pytest.approx(3.0)


def test_stats_helpers_select_accepted_sends_and_round_trip_json() -> None:
    stats = EndpointStats(
        requests={"ses:SendRawEmail": 4},
        errors={"Throttling": 1},
        messages_accepted=3,
        recipients_accepted=6,
        dropped_before_accept=0,
        dropped_after_accept=0,
        in_flight=0,
        max_in_flight=2,
        connections_opened=1,
        connections_current=1,
        send_arrivals=(0.0, 0.1, 0.2, 2.0),
        send_recipients=(1, 5, 2, 3),
        send_accepted=(True, False, True, True),
        started_clock=0.0,
        started_time=1.0,
    )
    assert stats.max_starts_in_window() == 3
    assert stats.max_starts_in_window(1.0, True) == 8
    assert stats.max_starts_in_window(1.0, weighted=True, accepted_only=True) == 3
    assert stats.sustained_rate(accepted_only=True) == pytest.approx(1.0)
    assert EndpointStats.from_json(json.loads(json.dumps(stats.to_json()))) == stats


# ------------------------------------------------------------------------- settings


def test_config_validation_names_the_option() -> None:
    cases = [
        ({"latency": -1}, "latency"),
        ({"throttle_ratio": 1.5}, "throttle_ratio"),
        ({"throttle_ratio": 0.6, "server_error_ratio": 0.6}, "throttle_ratio"),
        ({"throttle_rate": 0}, "throttle_rate"),
        ({"latency_spike_probability": 2}, "latency_spike_probability"),
        ({"verified_identities": "example.com"}, "verified_identities"),
        ({"max_recipients": 0}, "max_recipients"),
        ({"bogus": 1}, "bogus"),
    ]
    for changes, option in cases:
        with pytest.raises(ConfigurationError) as error:
            EndpointConfig().replace(**changes)
        assert error.value.option == option, changes


def test_config_normalizes_and_round_trips() -> None:
    config = EndpointConfig(
        verified_identities=[" Ada@Example.COM", "example.org"],  # type: ignore[arg-type]
        configuration_sets=["CaseKept"],  # type: ignore[arg-type]
        throttle_rate=14,
    )
    assert config.verified_identities == frozenset({"ada@example.com", "example.org"})
    assert config.configuration_sets == frozenset({"CaseKept"})
    data = json.loads(json.dumps(config.to_json()))
    assert data["verified_identities"] == ["ada@example.com", "example.org"]
    assert EndpointConfig.from_json(data) == config
    assert EndpointConfig.from_json({"latency": 0.5}, base=config).throttle_rate == 14


# --------------------------------------------------------------------- wire parsing

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)


@given(st.lists(st.tuples(st.from_regex(r"[A-Za-z][A-Za-z0-9.]{0,10}", fullmatch=True), TEXT)))
def test_parse_query_decodes_what_urlencode_writes(pairs: list[tuple[str, str]]) -> None:
    expected = dict(pairs)
    assert parse_query(urlencode(pairs).encode()) == expected
    assert parse_query(urlencode(pairs, quote_via=quote).encode()) == expected


def test_parse_query_accepts_lowercase_escapes_and_can_keep_values_encoded() -> None:
    body = b"A=x%2by%2fz%3d%25&RawMessage.Data=QUJD%2B%2F%3D&E="
    assert parse_query(body) == {"A": "x+y/z=%", "RawMessage.Data": "QUJD+/=", "E": ""}
    kept = parse_query(body, keep_encoded=frozenset({"RawMessage.Data"}))
    assert kept["RawMessage.Data"] == b"QUJD%2B%2F%3D"


def test_unflatten_builds_lists_and_structures() -> None:
    params = {
        "Destinations.member.2": "b@x",
        "Destinations.member.10": "c@x",
        "Destinations.member.1": "a@x",
        "Tags.member.1.Name": "n",
        "Tags.member.1.Value": "v",
        "Message.Body.Text.Data": "hi",
    }
    assert unflatten(params) == {
        "Destinations": ["a@x", "b@x", "c@x"],
        "Tags": [{"Name": "n", "Value": "v"}],
        "Message": {"Body": {"Text": {"Data": "hi"}}},
    }
    with pytest.raises(SESError):
        unflatten({"A": "1", "A.B": "2"})
    with pytest.raises(SESError):
        unflatten({"A.member.x": "1"})


@given(st.binary(max_size=5000), st.booleans())
def test_encoded_message_sizes_and_decodes_without_mistakes(raw: bytes, form: bool) -> None:
    encoded = base64.b64encode(raw).decode()
    if not raw:
        with pytest.raises(SESError):
            EncodedMessage(encoded)
        return
    message = (
        EncodedMessage(quote(encoded, safe="").encode(), form_encoded=True)
        if form
        else EncodedMessage(encoded)
    )
    assert message.size() == len(raw)
    assert message.size_at_most(len(raw))
    assert not message.size_at_most(len(raw) - 1)
    assert message.decode() == raw


@pytest.mark.parametrize("form", [False, True])
@pytest.mark.parametrize("head_lines", [1, 30, 300])
def test_header_block_decodes_only_what_it_needs(form: bool, head_lines: int) -> None:
    head = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 60) for i in range(head_lines))
    raw = head + b"From: a@b.c\r\nTo: d@e.f\r\n\r\n" + b"body line\r\n" * 5000
    encoded = base64.b64encode(raw).decode()
    message = (
        EncodedMessage(quote(encoded, safe="").encode(), form_encoded=True)
        if form
        else EncodedMessage(encoded)
    )
    block = message.header_block()
    assert block == raw[: raw.index(b"\r\n\r\n")]
    assert envelope_from_headers(block) == (["a@b.c"], ["d@e.f"])


@pytest.mark.parametrize(
    "document",
    [
        {"Content": {"Raw": {"Data": "QUJD"}}, "EmailTags": [{"Name": "Raw", "Value": "x"}]},
        {"FromEmailAddress": "a@b.c", "Content": {"Raw": {"Data": "QUJDRA=="}}},
        {"Content": {"Simple": {"Subject": {"Data": '"Raw": {"Data": "'}}}},
        {"Content": {"Raw": {"Data": "not \\ base64"}}},
        {"Other": {"Raw": {"Data": "QUJD"}}, "Content": {}},
        ["a list"],
    ],
)
@pytest.mark.parametrize("separators", [(",", ":"), (", ", ": ")])
def test_loads_send_email_equals_json_loads(document: object, separators: tuple[str, str]) -> None:
    body = json.dumps(document, separators=separators).encode()
    loaded = loads_send_email(body)
    if isinstance(loaded, dict) and not isinstance(
        loaded.get("Content", {}).get("Raw", {}).get("Data", ""), str
    ):
        loaded["Content"]["Raw"]["Data"] = bytes(loaded["Content"]["Raw"]["Data"]).decode()
    assert loaded == document


def test_encoded_message_accepts_a_memoryview() -> None:
    raw = b"From: a@b.c\r\nTo: d@e.f\r\n\r\n" + b"x" * 3000
    body = b'{"Data": "' + base64.b64encode(raw) + b'"}'
    message = EncodedMessage(memoryview(body)[10:-2])
    assert message.size() == len(raw)
    assert message.header_block() == b"From: a@b.c\r\nTo: d@e.f"
    assert message.decode() == raw


def test_encoded_message_rejects_truncated_base64() -> None:
    with pytest.raises(SESError):
        EncodedMessage("QUJDR")


@pytest.mark.parametrize(
    "value",
    [
        "a@b.c",
        "Ada <ada@example.com>, bob@example.org",
        '"Lovelace, Ada" <ada@example.com>, b@c.d',
        "undisclosed-recipients:;",
        "team: a@b.c, Bob <b@c.d>;, e@f.g",
        "ada@example.com (Ada)",
        "=?utf-8?q?Ad=C3=A1?= <ada@example.com>",
        "",
    ],
)
def test_envelope_addresses_match_the_stdlib(value: str) -> None:
    block = f"From: x@y.z\r\nTo: {value}\r\nCc:\r\n {value}".encode()
    expected = [addr for _, addr in getaddresses([value]) if addr]
    assert envelope_from_headers(block) == (["x@y.z"], expected + expected)


def test_message_id_header() -> None:
    assert (
        message_id_header(b"Subject: x\r\nMessage-Id:\r\n  <a@b>\r\n\r\nMessage-ID: <no>") == "a@b"
    )
    assert message_id_header(b"Subject: x\r\n\r\n") is None


def test_stored_message_json_round_trip() -> None:
    record = StoredMessage(
        message_id="id",
        api="v2",
        action="SendEmail",
        source="a@b.c",
        destinations=("d@e.f",),
        raw=b"Message-ID: <m@x>\r\n\r\nhi\xff",
        params={"EmailTags": [{"Name": "a", "Value": "b"}]},
        received_at=1.5,
        arrival=2.5,
    )
    data = json.loads(json.dumps(record.to_json()))
    copy = StoredMessage.from_json(data)
    assert (copy.raw, copy.params, copy.message_id_header) == (record.raw, record.params, "m@x")
    assert data["size"] == len(record.raw)
    assert "raw" not in record.to_json(raw=False)
    assert "size=" in repr(record)


# ------------------------------------------------------------------------- raw HTTP


async def exchange(endpoint: SESEndpoint, data: bytes, read_until_close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    try:
        writer.write(data)
        await writer.drain()
        if read_until_close:
            return await asyncio.wait_for(reader.read(), 5)
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()
        await writer.wait_closed()


def v2_send(raw: bytes) -> bytes:
    return json.dumps({"Content": {"Raw": {"Data": base64.b64encode(raw).decode()}}}).encode()


RAW = b"From: a@example.com\r\nTo: b@example.org\r\n\r\nhi\r\n"


async def test_chunked_bodies_pipelining_and_connection_close() -> None:
    body = v2_send(RAW)
    chunked = b"".join(
        b"%x;ext=1\r\n%s\r\n" % (len(piece), piece) for piece in (body[:10], body[10:])
    )
    request = (
        b"POST /v2/email/outbound-emails HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\nX-Trailer: 1\r\n\r\n"
    )
    last = b"GET /v2/email/account HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    async with SESEndpoint() as endpoint:
        answer = await exchange(endpoint, request + request + last)
        records = endpoint.messages()

    assert answer.count(b"HTTP/1.1 200 OK") == 3
    assert answer.index(b"MessageId") < answer.index(b"SendQuota")
    assert answer.rstrip().endswith(b"}")
    assert b"Connection: close" in answer
    assert [r.raw for r in records] == [RAW, RAW]


async def test_expect_100_continue() -> None:
    body = v2_send(RAW)
    async with SESEndpoint() as endpoint:
        reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        writer.write(
            b"POST /v2/email/outbound-emails HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.write(body)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()
        await writer.wait_closed()
        assert len(endpoint.messages()) == 1

    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_http_10_closes_and_unknown_routes_answer_like_aws() -> None:
    async with SESEndpoint() as endpoint:
        v10 = await exchange(endpoint, b"GET /v2/email/account HTTP/1.0\r\n\r\n")
        unknown_v2 = await exchange(
            endpoint, b"GET /v2/email/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        unknown_v1 = await exchange(
            endpoint,
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 11\r\n\r\n"
            b"Action=Nope",
        )
        missing = await exchange(endpoint, b"GET /_asyncmailer/nothing HTTP/1.0\r\n\r\n")
        query_get = await exchange(
            endpoint,
            b"GET /?Action=GetSendQuota HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        stats = endpoint.stats()

    assert v10.startswith((b"HTTP/1.0 200 OK", b"HTTP/1.1 200 OK"))
    assert unknown_v2.startswith(b"HTTP/1.1 404")
    assert b"x-amzn-ErrorType: UnknownOperationException" in unknown_v2
    assert unknown_v1.startswith(b"HTTP/1.1 400")
    assert b"<Code>InvalidAction</Code>" in unknown_v1
    assert missing.startswith(b"HTTP/1.0 404")  # answered in the version asked
    assert b"<Max24HourSend>50000.0</Max24HourSend>" in query_get
    assert stats.requests == {
        "sesv2:GetAccount": 1,
        "sesv2:?": 1,
        "ses:Nope": 1,
        "ses:GetSendQuota": 1,
    }
    assert stats.errors == {"UnknownOperationException": 1, "InvalidAction": 1}
