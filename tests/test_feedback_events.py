"""parse_ses_event: AWS's documented examples in every shape, and mutated ones."""

from __future__ import annotations

import json
from datetime import timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncmailer.feedback import (
    BouncedRecipient,
    BounceEvent,
    ClickEvent,
    ComplaintEvent,
    DelayedRecipient,
    DeliveryDelayEvent,
    DeliveryEvent,
    FeedbackError,
    OpenEvent,
    RejectEvent,
    RenderingFailureEvent,
    SendEvent,
    SESEvent,
    SubscriptionEvent,
    TopicPreferences,
    parse_ses_event,
)
from tests.feedback_helpers import (
    BOUNCE_NOTIFICATION,
    COMPLAINT_NOTIFICATION,
    DELIVERY_NOTIFICATION,
    EVENTBRIDGE_BOUNCE,
    EVENTS,
    MAIL,
    deep,
    notification,
    utc,
)


def test_bounce_notification() -> None:
    event = parse_ses_event(json.dumps(BOUNCE_NOTIFICATION))
    assert isinstance(event, BounceEvent)
    assert event.kind == "Bounce"
    assert event.message_id == MAIL["messageId"]
    assert event.timestamp == utc("2016-01-27T14:59:38.237Z")
    assert event.timestamp.tzinfo is not None
    assert event.source == "john@example.com"
    assert event.destinations == ("jane@example.com", "mary@example.com", "richard@example.com")
    assert event.tags == {}
    assert event.headers is not None and event.headers[0] == (
        "From",
        '"John Doe" <john@example.com>',
    )
    assert event.subject == "Hello"
    assert event.sending_account_id == "123456789012"
    assert event.bounce_type == "Permanent"
    assert event.bounce_subtype == "General"
    assert event.feedback_id.endswith("068a-000000")
    assert event.recipients == (
        BouncedRecipient(
            email="jane@example.com",
            status="5.1.1",
            action="failed",
            diagnostic_code="smtp; 550 5.1.1 <jane@example.com>... User",
        ),
    )
    assert event.reporting_mta == "dns; email.example.com"
    assert event.remote_mta_ip == "127.0.2.0"
    assert event.raw["notificationType"] == "Bounce"


def test_complaint_notification() -> None:
    event = parse_ses_event(json.dumps(COMPLAINT_NOTIFICATION).encode())
    assert isinstance(event, ComplaintEvent)
    assert event.recipients == ("richard@example.com",)
    assert event.complaint_feedback_type == "abuse"
    assert event.complaint_subtype is None
    assert event.user_agent == "AnyCompany Feedback Loop (V0.01)"
    assert event.arrival_date == utc("2016-01-27T14:59:38.237Z")
    assert event.feedback_id.startswith("000001378603177f")


def test_delivery_notification() -> None:
    event = parse_ses_event(DELIVERY_NOTIFICATION)
    assert isinstance(event, DeliveryEvent)
    assert event.recipients == ("jane@example.com",)
    assert event.processing_time == timedelta(milliseconds=546)
    assert event.smtp_response == "250 ok:  Message 64111812 accepted"
    assert event.reporting_mta == "a8-70.smtp-out.amazonses.com"


def test_every_published_kind() -> None:
    expected: dict[str, type[SESEvent]] = {
        "Bounce": BounceEvent,
        "Complaint": ComplaintEvent,
        "Delivery": DeliveryEvent,
        "Send": SendEvent,
        "Reject": RejectEvent,
        "Open": OpenEvent,
        "Click": ClickEvent,
        "Rendering Failure": RenderingFailureEvent,
        "DeliveryDelay": DeliveryDelayEvent,
        "Subscription": SubscriptionEvent,
    }
    for kind, cls in expected.items():
        event = parse_ses_event(EVENTS[kind])
        assert type(event) is cls, kind
        assert event.kind == kind
        assert event.message_id.startswith("EXAMPLE7c191be45")
        assert event.tags["ses:configuration-set"] == ["ConfigSet"]
        assert event.tags["myCustomTag1"] == ["myCustomTagValue1"]
        assert event.sent_at == utc("2017-08-05T00:41:02.669Z")


def test_published_fields() -> None:
    click = parse_ses_event(EVENTS["Click"])
    assert isinstance(click, ClickEvent)
    assert click.link.startswith("http://docs.aws.amazon.com/")
    assert click.link_tags == {"samplekey0": ["samplevalue0"], "samplekey1": ["samplevalue1"]}
    assert click.ip_address == "192.0.2.1"
    assert click.timestamp == utc("2017-08-09T23:51:25.570Z")

    delay = parse_ses_event(EVENTS["DeliveryDelay"])
    assert isinstance(delay, DeliveryDelayEvent)
    assert delay.delay_type == "TransientCommunicationFailure"
    assert delay.expiration_time == utc("2020-06-16T00:25:40.914Z")
    assert delay.recipients == (
        DelayedRecipient(
            email="recipient@example.com",
            status="4.4.1",
            diagnostic_code="smtp; 421 4.4.0 Unable to lookup DNS for example.com",
        ),
    )

    reject = parse_ses_event(EVENTS["Reject"])
    assert isinstance(reject, RejectEvent) and reject.reason == "Bad content"

    failure = parse_ses_event(EVENTS["Rendering Failure"])
    assert isinstance(failure, RenderingFailureEvent)
    assert failure.template_name == "MyTemplate"
    assert "attributeName" in failure.error_message

    opened = parse_ses_event(EVENTS["Open"])
    assert isinstance(opened, OpenEvent) and opened.user_agent is not None

    sub = parse_ses_event(EVENTS["Subscription"])
    assert isinstance(sub, SubscriptionEvent)
    assert sub.contact_list == "ContactListName"
    assert sub.change_source == "UnsubscribeHeader"
    assert sub.new_topic_preferences == TopicPreferences(
        unsubscribe_all=True, topics={"ExampleTopicName": "OptOut"}
    )

    bounce = parse_ses_event(EVENTS["Bounce"])
    assert isinstance(bounce, BounceEvent) and bounce.recipients[0].email == "recipient@example.com"


def test_sns_envelope() -> None:
    envelope = notification(BOUNCE_NOTIFICATION)
    for data in (envelope, json.dumps(envelope), json.dumps(envelope).encode()):
        event = parse_ses_event(data)
        assert isinstance(event, BounceEvent)
        assert event.raw == BOUNCE_NOTIFICATION  # the SES event, not the envelope


def test_eventbridge_envelope() -> None:
    event = parse_ses_event(EVENTBRIDGE_BOUNCE)
    assert isinstance(event, BounceEvent) and event.bounce_type == "Permanent"
    # detail without eventType: the detail-type decides
    detail = deep(EVENTS["Complaint"])
    del detail["eventType"]
    event = parse_ses_event(
        {**EVENTBRIDGE_BOUNCE, "detail-type": "Email Complaint Received", "detail": detail}
    )
    assert isinstance(event, ComplaintEvent)
    unknown = parse_ses_event(
        {**EVENTBRIDGE_BOUNCE, "detail-type": "Email Teleported", "detail": detail}
    )
    assert type(unknown) is SESEvent and unknown.kind == "Email Teleported"


def test_unknown_kinds_are_generic_events() -> None:
    event = parse_ses_event(
        {"eventType": "Teleport", "mail": EVENTS["Send"]["mail"], "teleport": {}}
    )
    assert type(event) is SESEvent
    assert event.kind == "Teleport" and event.message_id.startswith("EXAMPLE")
    # SES's own notice when an SNS topic is attached: no mail object at all
    notice = {"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "You have ..."}
    envelope = notification(notice)
    event = parse_ses_event(envelope)
    assert type(event) is SESEvent
    assert event.kind == "AmazonSnsSubscriptionSucceeded"
    assert event.message_id == ""
    assert event.timestamp == utc(envelope["Timestamp"])
    # identity notifications only ever carry three kinds; another one is generic
    event = parse_ses_event({**EVENTS["Open"], "notificationType": "Open", "eventType": None})
    assert type(event) is SESEvent


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: e.pop("mail"), "mail"),
        (lambda e: e["mail"].pop("messageId"), "mail.messageId"),
        (lambda e: e["mail"].__setitem__("timestamp", "yesterday"), "mail.timestamp"),
        (lambda e: e["mail"].__setitem__("timestamp", "2016-01-27T14:59:38"), "mail.timestamp"),
        (lambda e: e["mail"].__setitem__("destination", "jane@example.com"), "mail.destination"),
        (lambda e: e["mail"]["destination"].append(7), "mail.destination[3]"),
        (lambda e: e.pop("bounce"), "bounce"),
        (lambda e: e["bounce"].pop("bounceType"), "bounce.bounceType"),
        (lambda e: e["bounce"].pop("feedbackId"), "bounce.feedbackId"),
        (
            lambda e: e["bounce"]["bouncedRecipients"][0].pop("emailAddress"),
            "bounce.bouncedRecipients[0].emailAddress",
        ),
        (lambda e: e["bounce"]["bouncedRecipients"].append("x"), "bounce.bouncedRecipients[1]"),
        (lambda e: e["mail"]["headers"][1].pop("value"), "mail.headers[1].value"),
    ],
)
def test_malformed_names_the_field(mutate: Any, field: str) -> None:
    event = deep(BOUNCE_NOTIFICATION)
    mutate(event)
    with pytest.raises(FeedbackError) as info:
        parse_ses_event(event)
    assert info.value.field == field
    assert field in str(info.value)


def test_malformed_bodies() -> None:
    for body in (b"not json", b"[1, 2]", '"text"', b"\xff\xfe", b"{", b"[" * 100_000):
        with pytest.raises(FeedbackError):
            parse_ses_event(body)
    with pytest.raises(FeedbackError, match="limit"):
        parse_ses_event(b" " * 300_000)
    with pytest.raises(FeedbackError, match="limit"):
        parse_ses_event(json.dumps(EVENTS["Send"]), max_size=100)
    with pytest.raises(FeedbackError, match="not an SES event"):
        parse_ses_event({"hello": "world"})
    with pytest.raises(FeedbackError, match="SubscriptionConfirmation"):
        parse_ses_event({"Type": "SubscriptionConfirmation", "Message": "hi"})
    with pytest.raises(FeedbackError):
        parse_ses_event({"Type": "Notification", "Message": "not json"})
    with pytest.raises(FeedbackError):
        parse_ses_event(12)  # type: ignore[arg-type]
    delivery = deep(DELIVERY_NOTIFICATION)
    delivery["delivery"]["processingTimeMillis"] = True
    with pytest.raises(FeedbackError, match="processingTimeMillis"):
        parse_ses_event(delivery)


def test_timestamps_with_offsets_and_precision() -> None:
    for text, expected_micro in (
        ("2016-01-27T14:59:38Z", 0),
        ("2016-01-27T14:59:38.1Z", 100000),
        ("2016-01-27T14:59:38.123456789Z", 123456),
    ):
        event = deep(EVENTS["Send"])
        event["mail"]["timestamp"] = text
        assert parse_ses_event(event).timestamp.microsecond == expected_micro
    event = deep(EVENTS["Send"])
    event["mail"]["timestamp"] = "2016-01-27T16:59:38+02:00"
    assert parse_ses_event(event).timestamp.astimezone(timezone.utc) == utc("2016-01-27T14:59:38Z")
    event["mail"]["timestamp"] = "2016-02-30T16:59:38Z"
    with pytest.raises(FeedbackError, match="day is out of range"):
        parse_ses_event(event)


def test_unknown_bounce_type_is_undetermined() -> None:
    event = deep(BOUNCE_NOTIFICATION)
    event["bounce"]["bounceType"] = "Cosmic"
    parsed = parse_ses_event(event)
    assert isinstance(parsed, BounceEvent) and parsed.bounce_type == "Undetermined"


def test_events_are_frozen() -> None:
    event = parse_ses_event(EVENTS["Send"])
    with pytest.raises(AttributeError):
        event.kind = "x"  # type: ignore[misc]
    assert not hasattr(event, "__dict__")  # slots


# ----------------------------------------------------------------------- hypothesis

JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)
)
JSON = st.recursive(
    JSON_LEAF,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += _paths(child, (*prefix, i))
    return out


EXAMPLES = [BOUNCE_NOTIFICATION, COMPLAINT_NOTIFICATION, DELIVERY_NOTIFICATION, *EVENTS.values()]


@given(
    example=st.sampled_from(EXAMPLES),
    data=st.data(),
    action=st.sampled_from(["delete", "replace"]),
    wrap=st.sampled_from(["none", "sns", "eventbridge", "bytes"]),
)
def test_mutated_examples_parse_or_raise_feedback_error(
    example: dict[str, Any], data: st.DataObject, action: str, wrap: str
) -> None:
    event = deep(example)
    path = data.draw(st.sampled_from(_paths(event)))
    parent: Any = event
    for step in path[:-1]:
        parent = parent[step]
    if action == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(JSON)
    body: Any = event
    if wrap == "sns":
        body = notification(event)
    elif wrap == "eventbridge":
        body = {**EVENTBRIDGE_BOUNCE, "detail": event}
    elif wrap == "bytes":
        body = json.dumps(event).encode()
    try:
        parsed = parse_ses_event(body)
    except FeedbackError:
        return
    assert isinstance(parsed, SESEvent)
    assert parsed.timestamp.tzinfo is not None


@given(st.binary(max_size=200) | st.text(max_size=200))
def test_arbitrary_bytes_never_crash(body: bytes | str) -> None:
    try:
        parse_ses_event(body)
    except FeedbackError:
        pass
