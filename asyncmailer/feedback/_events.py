"""Typed SES events: one frozen class per kind, parsed from every shape SES delivers.

:func:`parse_ses_event` accepts

* an SNS envelope (``"Type": "Notification"``, the event JSON in ``Message``);
* an identity notification (``notificationType``: ``Bounce``, ``Complaint``, ``Delivery``);
* an event-publishing record (``eventType``: ``Send``, ``Reject``, ``Bounce``, ...);
* an EventBridge envelope (``detail-type`` such as ``"Email Bounced"``, the event in
  ``detail``).

Example::

    event = parse_ses_event(request_body)
    if isinstance(event, BounceEvent) and event.bounce_type == "Permanent":
        for recipient in event.recipients:
            ...

Every parser reads each field once (linear time) and the body size is bounded before
``json.loads``. A kind this module does not know parses to a plain :class:`SESEvent`;
a known kind without the fields AWS documents raises :class:`FeedbackError` naming the
missing field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Literal, TypeAlias, TypedDict

from asyncmailer.feedback._errors import FeedbackError

__all__ = [
    "DEFAULT_MAX_BODY",
    "BounceEvent",
    "BounceType",
    "BouncedRecipient",
    "ClickEvent",
    "ComplaintEvent",
    "DelayedRecipient",
    "DeliveryDelayEvent",
    "DeliveryEvent",
    "OpenEvent",
    "RejectEvent",
    "RenderingFailureEvent",
    "SESEvent",
    "SendEvent",
    "SubscriptionEvent",
    "TopicPreferences",
    "parse_ses_event",
]

#: Bodies larger than this many octets are refused before parsing (SES events are a few KB;
#: SNS caps a message at 256 KiB).
DEFAULT_MAX_BODY = 256 * 1024

#: What SES says about a bounce: ``Permanent`` (do not send again), ``Transient``
#: (may succeed later) or ``Undetermined``. A value SES may add later reads as
#: ``Undetermined``; the original stays in ``raw``.
BounceType = Literal["Permanent", "Transient", "Undetermined"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

JSONObject = Mapping[str, object]
Input: TypeAlias = bytes | bytearray | memoryview | str | Mapping[str, object]


# ----------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True, kw_only=True)
class SESEvent:
    """What every SES event tells: which message, when, from whom, to whom.

    A kind this library does not know is returned as a plain ``SESEvent`` with its
    ``kind``; when it carries no ``mail`` object (SES's ``AmazonSnsSubscriptionSucceeded``
    notice), ``message_id`` and ``source`` are ``""`` and ``timestamp`` is the envelope's.
    """

    #: ``"Bounce"``, ``"Complaint"``, ``"Delivery"``, ``"Send"``, ``"Reject"``,
    #: ``"DeliveryDelay"``, ``"Open"``, ``"Click"``, ``"Rendering Failure"``,
    #: ``"Subscription"``, or the unknown kind as SES named it.
    kind: str
    #: The SES message id (``mail.messageId``), as returned by ``SendEmail``.
    message_id: str
    #: When the event happened (its own timestamp, else when SES accepted the message).
    timestamp: datetime
    #: When SES accepted the message (``mail.timestamp``); ``None`` without ``mail``.
    sent_at: datetime | None = None
    #: The envelope sender (``mail.source``).
    source: str = ""
    #: Every envelope recipient of the message (``mail.destination``).
    destinations: tuple[str, ...] = ()
    #: Message tags (``mail.tags``), event publishing only: name → values.
    tags: dict[str, list[str]] = field(default_factory=dict)
    #: The original headers ``(name, value)`` when SES included them, else ``None``.
    headers: tuple[tuple[str, str], ...] | None = None
    #: True when SES cut the header list short.
    headers_truncated: bool = False
    #: The ``Subject`` from ``mail.commonHeaders``, when present.
    subject: str | None = None
    #: The sending identity's ARN (``mail.sourceArn``).
    source_arn: str | None = None
    #: The AWS account that sent the message (``mail.sendingAccountId``).
    sending_account_id: str | None = None
    #: The SES event as parsed (inside any SNS or EventBridge envelope).
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class BouncedRecipient:
    """One recipient of a bounce."""

    #: The address that bounced.
    email: str
    #: The enhanced status code (``"5.1.1"``), when the remote server gave one.
    status: str | None = None
    #: ``"failed"`` as in RFC 3464, when given.
    action: str | None = None
    #: The remote server's answer (``"smtp; 550 5.1.1 user unknown"``), when given.
    diagnostic_code: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DelayedRecipient:
    """One recipient of a delayed delivery."""

    #: The address whose delivery is delayed.
    email: str
    #: The enhanced status code, when given.
    status: str | None = None
    #: The remote server's answer, when given.
    diagnostic_code: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BounceEvent(SESEvent):
    """A bounce: ``Permanent`` ones must never be mailed again."""

    #: ``Permanent``, ``Transient`` or ``Undetermined``.
    bounce_type: BounceType
    #: ``General``, ``NoEmail``, ``Suppressed``, ``OnAccountSuppressionList``, ``MailboxFull``...
    bounce_subtype: str
    #: SES's unique id of this bounce.
    feedback_id: str
    #: The recipients that bounced.
    recipients: tuple[BouncedRecipient, ...]
    #: The MTA that reported the bounce, when known.
    reporting_mta: str | None = None
    #: The IP address of the MTA that refused the message, when known.
    remote_mta_ip: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ComplaintEvent(SESEvent):
    """A complaint (a recipient marked the message as spam)."""

    #: The recipients that complained.
    recipients: tuple[str, ...]
    #: The ISP's feedback type (``abuse``, ``fraud``, ``not-spam``...), when given.
    complaint_feedback_type: str | None
    #: ``None``, or ``OnAccountSuppressionList`` when SES itself refused the recipient.
    complaint_subtype: str | None
    #: SES's unique id of this complaint.
    feedback_id: str
    #: The user agent of the reporting system, when given.
    user_agent: str | None = None
    #: When the ISP received the report, when given.
    arrival_date: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryEvent(SESEvent):
    """SES handed the message to the recipients' mail server."""

    #: The recipients it was delivered to.
    recipients: tuple[str, ...]
    #: From SES accepting the message to the remote server accepting it.
    processing_time: timedelta
    #: The remote server's SMTP answer.
    smtp_response: str
    #: The SES host that delivered it.
    reporting_mta: str
    #: The IP address of the receiving server, when given.
    remote_mta_ip: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SendEvent(SESEvent):
    """SES accepted the send request (event publishing only)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectEvent(SESEvent):
    """SES refused the message (a virus found); it was not sent."""

    #: Why (``"Bad content"``).
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryDelayEvent(SESEvent):
    """Delivery is delayed; SES keeps trying until ``expiration_time``."""

    #: ``InternalFailure``, ``General``, ``MailboxFull``, ``SpamDetected``,
    #: ``RecipientServerError``, ``IPFailure``, ``TransientCommunicationFailure``,
    #: ``BYOIPHostNameLookupUnavailable``, ``Undetermined``, ``SendingDeferral``...
    delay_type: str
    #: When SES stops trying, when given.
    expiration_time: datetime | None
    #: The recipients whose delivery is delayed.
    recipients: tuple[DelayedRecipient, ...]
    #: The MTA that reported the delay, when given.
    reporting_mta: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenEvent(SESEvent):
    """A recipient opened the message (open tracking)."""

    #: The recipient's IP address, when given.
    ip_address: str | None = None
    #: The recipient's user agent, when given.
    user_agent: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClickEvent(SESEvent):
    """A recipient clicked a tracked link."""

    #: The URL clicked.
    link: str
    #: The link's tags (``ses:tags`` attribute): name → values.
    link_tags: dict[str, list[str]] = field(default_factory=dict)
    #: The recipient's IP address, when given.
    ip_address: str | None = None
    #: The recipient's user agent, when given.
    user_agent: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderingFailureEvent(SESEvent):
    """A template could not be rendered; the message was not sent."""

    #: SES's explanation.
    error_message: str
    #: The template, when given.
    template_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicPreferences:
    """A contact's subscription preferences (SES contact lists)."""

    #: True when the contact left every topic.
    unsubscribe_all: bool
    #: Topic name → ``"OptIn"`` or ``"OptOut"``.
    topics: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionEvent(SESEvent):
    """A contact changed its subscription (the list-unsubscribe header or page)."""

    #: The contact list.
    contact_list: str
    #: How the change was made (``"UnsubscribeHeader"``...); AWS's ``subscription.source``.
    change_source: str | None = None
    #: Preferences after the change.
    new_topic_preferences: TopicPreferences | None = None
    #: Preferences before the change.
    old_topic_preferences: TopicPreferences | None = None


# --------------------------------------------------------------------------- readers

_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))"
)


def parse_timestamp(text: str, where: str = "timestamp") -> datetime:
    """An ISO 8601 timestamp with a zone (``"2016-01-27T14:59:38.237Z"``) as an aware datetime."""
    m = _ISO.fullmatch(text)
    if m is None:
        raise FeedbackError(f"{where}: not an ISO 8601 timestamp with a zone", field=where)
    y, mo, d, h, mi, s, frac, z, sign, oh, om = m.groups()
    if z:
        tz = timezone.utc
    else:
        offset = timedelta(hours=int(oh), minutes=int(om))
        tz = timezone(-offset if sign == "-" else offset)
    micro = int((frac or "0")[:6].ljust(6, "0"))
    try:
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tzinfo=tz)
    except ValueError as exc:
        raise FeedbackError(f"{where}: {exc}", field=where) from None


def _path(base: str, key: str) -> str:
    return f"{base}.{key}" if base else key


def _obj(data: JSONObject, key: str, base: str) -> JSONObject:
    value = data.get(key)
    if not isinstance(value, Mapping):
        what = "missing" if value is None else "not an object"
        raise FeedbackError(f"{_path(base, key)} is {what}", field=_path(base, key))
    return value


def _str(data: JSONObject, key: str, base: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        what = "missing" if value is None else "not a string"
        raise FeedbackError(f"{_path(base, key)} is {what}", field=_path(base, key))
    return value


def _opt_str(data: JSONObject, key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _time(data: JSONObject, key: str, base: str) -> datetime:
    return parse_timestamp(_str(data, key, base), _path(base, key))


def _opt_time(data: JSONObject, key: str, base: str) -> datetime | None:
    value = data.get(key)
    return parse_timestamp(value, _path(base, key)) if isinstance(value, str) else None


def _list(data: JSONObject, key: str, base: str) -> list[object]:
    value = data.get(key)
    if not isinstance(value, list):
        what = "missing" if value is None else "not a list"
        raise FeedbackError(f"{_path(base, key)} is {what}", field=_path(base, key))
    return value


def _str_list(data: JSONObject, key: str, base: str) -> tuple[str, ...]:
    items = _list(data, key, base)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            where = f"{_path(base, key)}[{i}]"
            raise FeedbackError(f"{where} is not a string", field=where)
    return tuple(items)  # type: ignore[arg-type]  # checked just above


def _objects(data: JSONObject, key: str, base: str) -> list[tuple[str, JSONObject]]:
    out: list[tuple[str, JSONObject]] = []
    for i, item in enumerate(_list(data, key, base)):
        where = f"{_path(base, key)}[{i}]"
        if not isinstance(item, Mapping):
            raise FeedbackError(f"{where} is not an object", field=where)
        out.append((where, item))
    return out


def _tag_map(data: JSONObject, key: str, base: str) -> dict[str, list[str]]:
    value = data.get(key)
    if value is None:
        return {}
    where = _path(base, key)
    if not isinstance(value, Mapping):
        raise FeedbackError(f"{where} is not an object", field=where)
    tags: dict[str, list[str]] = {}
    for name, values in value.items():
        if isinstance(values, str):  # tolerate a single value
            tags[name] = [values]
        elif isinstance(values, list) and all(isinstance(v, str) for v in values):
            tags[name] = list(values)
        else:
            raise FeedbackError(f"{where}.{name} is not a list of strings", field=f"{where}.{name}")
    return tags


def _load(data: Input, max_size: int, what: str) -> JSONObject:
    if isinstance(data, Mapping):
        return data
    if isinstance(data, (bytes, bytearray, memoryview, str)):
        size = len(data)
    else:
        raise FeedbackError(f"{what} must be bytes, str or a mapping, not {type(data).__name__}")
    if size > max_size:
        raise FeedbackError(f"{what} is {size} octets, more than the limit of {max_size}")
    try:
        parsed = json.loads(data if not isinstance(data, memoryview) else bytes(data))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise FeedbackError(f"{what} is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise FeedbackError(f"{what} is not a JSON object")
    return parsed


# ----------------------------------------------------------------------------- kinds

_EVENTBRIDGE_KINDS = {
    "Email Sent": "Send",
    "Email Delivered": "Delivery",
    "Email Bounced": "Bounce",
    "Email Complaint Received": "Complaint",
    "Email Rejected": "Reject",
    "Email Delivery Delayed": "DeliveryDelay",
    "Email Opened": "Open",
    "Email Clicked": "Click",
    "Email Rendering Failed": "Rendering Failure",
    "Email Subscribed": "Subscription",
}


class _COMMON(TypedDict):
    message_id: str
    sent_at: datetime | None
    timestamp: datetime
    source: str
    destinations: tuple[str, ...]
    tags: dict[str, list[str]]
    headers: tuple[tuple[str, str], ...] | None
    headers_truncated: bool
    subject: str | None
    source_arn: str | None
    sending_account_id: str | None


def _mail_fields(event: JSONObject) -> _COMMON:
    mail = _obj(event, "mail", "")
    headers: tuple[tuple[str, str], ...] | None = None
    if isinstance(mail.get("headers"), list):
        pairs = []
        for where, header in _objects(mail, "headers", "mail"):
            pairs.append((_str(header, "name", where), _str(header, "value", where)))
        headers = tuple(pairs)
    common = mail.get("commonHeaders")
    subject = common.get("subject") if isinstance(common, Mapping) else None
    sent_at = _time(mail, "timestamp", "mail")
    return {
        "message_id": _str(mail, "messageId", "mail"),
        "sent_at": sent_at,
        "timestamp": sent_at,
        "source": _str(mail, "source", "mail"),
        "destinations": _str_list(mail, "destination", "mail"),
        "tags": _tag_map(mail, "tags", "mail"),
        "headers": headers,
        "headers_truncated": mail.get("headersTruncated") is True,
        "subject": subject if isinstance(subject, str) else None,
        "source_arn": _opt_str(mail, "sourceArn"),
        "sending_account_id": _opt_str(mail, "sendingAccountId"),
    }


def _own_time(section: JSONObject, name: str, common: _COMMON) -> None:
    stamp = _opt_time(section, "timestamp", name)
    if stamp is not None:
        common["timestamp"] = stamp


_BOUNCE_TYPES: dict[str, BounceType] = {
    "Permanent": "Permanent",
    "Transient": "Transient",
    "Undetermined": "Undetermined",
}


def _bounce(event: JSONObject, common: _COMMON) -> SESEvent:
    b = _obj(event, "bounce", "")
    _own_time(b, "bounce", common)
    kind = _str(b, "bounceType", "bounce")
    bounce_type = _BOUNCE_TYPES.get(kind, "Undetermined")
    recipients = tuple(
        BouncedRecipient(
            email=_str(r, "emailAddress", where),
            status=_opt_str(r, "status"),
            action=_opt_str(r, "action"),
            diagnostic_code=_opt_str(r, "diagnosticCode"),
        )
        for where, r in _objects(b, "bouncedRecipients", "bounce")
    )
    return BounceEvent(
        kind="Bounce",
        bounce_type=bounce_type,
        bounce_subtype=_opt_str(b, "bounceSubType") or "Undetermined",
        feedback_id=_str(b, "feedbackId", "bounce"),
        recipients=recipients,
        reporting_mta=_opt_str(b, "reportingMTA"),
        remote_mta_ip=_opt_str(b, "remoteMtaIp"),
        raw=event,
        **common,
    )


def _complaint(event: JSONObject, common: _COMMON) -> SESEvent:
    c = _obj(event, "complaint", "")
    _own_time(c, "complaint", common)
    recipients = tuple(
        _str(r, "emailAddress", where)
        for where, r in _objects(c, "complainedRecipients", "complaint")
    )
    return ComplaintEvent(
        kind="Complaint",
        recipients=recipients,
        complaint_feedback_type=_opt_str(c, "complaintFeedbackType"),
        complaint_subtype=_opt_str(c, "complaintSubType"),
        feedback_id=_str(c, "feedbackId", "complaint"),
        user_agent=_opt_str(c, "userAgent"),
        arrival_date=_opt_time(c, "arrivalDate", "complaint"),
        raw=event,
        **common,
    )


def _delivery(event: JSONObject, common: _COMMON) -> SESEvent:
    d = _obj(event, "delivery", "")
    _own_time(d, "delivery", common)
    millis = d.get("processingTimeMillis")
    if not isinstance(millis, (int, float)) or isinstance(millis, bool):
        raise FeedbackError(
            "delivery.processingTimeMillis is missing or not a number",
            field="delivery.processingTimeMillis",
        )
    return DeliveryEvent(
        kind="Delivery",
        recipients=_str_list(d, "recipients", "delivery"),
        processing_time=timedelta(milliseconds=millis),
        smtp_response=_str(d, "smtpResponse", "delivery"),
        reporting_mta=_str(d, "reportingMTA", "delivery"),
        remote_mta_ip=_opt_str(d, "remoteMtaIp"),
        raw=event,
        **common,
    )


def _send(event: JSONObject, common: _COMMON) -> SESEvent:
    return SendEvent(kind="Send", raw=event, **common)


def _reject(event: JSONObject, common: _COMMON) -> SESEvent:
    r = _obj(event, "reject", "")
    return RejectEvent(kind="Reject", reason=_str(r, "reason", "reject"), raw=event, **common)


def _delay(event: JSONObject, common: _COMMON) -> SESEvent:
    d = _obj(event, "deliveryDelay", "")
    _own_time(d, "deliveryDelay", common)
    recipients = tuple(
        DelayedRecipient(
            email=_str(r, "emailAddress", where),
            status=_opt_str(r, "status"),
            diagnostic_code=_opt_str(r, "diagnosticCode"),
        )
        for where, r in _objects(d, "delayedRecipients", "deliveryDelay")
    )
    return DeliveryDelayEvent(
        kind="DeliveryDelay",
        delay_type=_str(d, "delayType", "deliveryDelay"),
        expiration_time=_opt_time(d, "expirationTime", "deliveryDelay"),
        recipients=recipients,
        reporting_mta=_opt_str(d, "reportingMTA"),
        raw=event,
        **common,
    )


def _open(event: JSONObject, common: _COMMON) -> SESEvent:
    o = _obj(event, "open", "")
    _own_time(o, "open", common)
    return OpenEvent(
        kind="Open",
        ip_address=_opt_str(o, "ipAddress"),
        user_agent=_opt_str(o, "userAgent"),
        raw=event,
        **common,
    )


def _click(event: JSONObject, common: _COMMON) -> SESEvent:
    c = _obj(event, "click", "")
    _own_time(c, "click", common)
    return ClickEvent(
        kind="Click",
        link=_str(c, "link", "click"),
        link_tags=_tag_map(c, "linkTags", "click"),
        ip_address=_opt_str(c, "ipAddress"),
        user_agent=_opt_str(c, "userAgent"),
        raw=event,
        **common,
    )


def _rendering(event: JSONObject, common: _COMMON) -> SESEvent:
    f = _obj(event, "failure", "")
    return RenderingFailureEvent(
        kind="Rendering Failure",
        error_message=_str(f, "errorMessage", "failure"),
        template_name=_opt_str(f, "templateName"),
        raw=event,
        **common,
    )


def _preferences(data: JSONObject, key: str, base: str) -> TopicPreferences | None:
    value = data.get(key)
    if not isinstance(value, Mapping):
        return None
    topics: dict[str, str] = {}
    status = value.get("topicSubscriptionStatus")
    if isinstance(status, list):
        for where, item in _objects(value, "topicSubscriptionStatus", _path(base, key)):
            topics[_str(item, "topicName", where)] = _str(item, "subscriptionStatus", where)
    return TopicPreferences(unsubscribe_all=value.get("unsubscribeAll") is True, topics=topics)


def _subscription(event: JSONObject, common: _COMMON) -> SESEvent:
    s = _obj(event, "subscription", "")
    _own_time(s, "subscription", common)
    return SubscriptionEvent(
        kind="Subscription",
        contact_list=_str(s, "contactList", "subscription"),
        change_source=_opt_str(s, "source"),
        new_topic_preferences=_preferences(s, "newTopicPreferences", "subscription"),
        old_topic_preferences=_preferences(s, "oldTopicPreferences", "subscription"),
        raw=event,
        **common,
    )


_PARSERS: dict[str, Callable[[JSONObject, _COMMON], SESEvent]] = {
    "Bounce": _bounce,
    "Complaint": _complaint,
    "Delivery": _delivery,
    "Send": _send,
    "Reject": _reject,
    "DeliveryDelay": _delay,
    "Open": _open,
    "Click": _click,
    "Rendering Failure": _rendering,
    "Subscription": _subscription,
}
# Identity notifications only ever carry these three.
_NOTIFICATION_KINDS = frozenset({"Bounce", "Complaint", "Delivery"})


def _generic(kind: str, event: JSONObject, fallback: datetime | None) -> SESEvent:
    if "mail" in event:
        return SESEvent(kind=kind, raw=event, **_mail_fields(event))
    stamp = event.get("timestamp")
    when = parse_timestamp(stamp) if isinstance(stamp, str) else fallback
    return SESEvent(kind=kind, message_id="", timestamp=when or _EPOCH, raw=event)


def parse_ses_event(data: Input, *, max_size: int = DEFAULT_MAX_BODY) -> SESEvent:
    """Parse one SES event, in any of the shapes SES delivers, into its typed class.

    ``data`` is the body as received (``bytes`` or ``str``) or an already parsed mapping.
    Bodies over ``max_size`` octets are refused before parsing. Raises
    :class:`~asyncmailer.feedback.FeedbackError` when the input is not an SES event or
    lacks a field AWS documents for its kind; an unknown kind is not an error.

    This does **not** verify an SNS signature: call
    :func:`~asyncmailer.feedback.verify_sns_message` first for bodies from the network.
    """
    top = _load(data, max_size, "the event")
    fallback: datetime | None = None
    event: JSONObject = top
    if "Type" in top and "Message" in top:  # an SNS envelope
        kind = top.get("Type")
        if kind != "Notification":
            raise FeedbackError(f"an SNS {kind!s} message is not an SES event", field="Type")
        message = top.get("Message")
        if not isinstance(message, str):
            raise FeedbackError("Message is not a string", field="Message")
        event = _load(message, max_size, "the SNS Message")
        stamp = top.get("Timestamp")
        fallback = parse_timestamp(stamp, "Timestamp") if isinstance(stamp, str) else None
    elif "detail-type" in top and "detail" in top:  # an EventBridge envelope
        event = _obj(top, "detail", "")
        stamp = top.get("time")
        fallback = parse_timestamp(stamp, "time") if isinstance(stamp, str) else None
        if "eventType" not in event and "notificationType" not in event:
            detail_type = _str(top, "detail-type", "")
            kind_name = _EVENTBRIDGE_KINDS.get(detail_type, detail_type)
            parser = _PARSERS.get(kind_name)
            if parser is None:
                return _generic(kind_name, event, fallback)
            return parser(event, _mail_fields(event))

    kind_value = event.get("eventType")
    notification = False
    if kind_value is None:
        kind_value = event.get("notificationType")
        notification = True
    if not isinstance(kind_value, str):
        raise FeedbackError(
            "neither eventType nor notificationType is a string: not an SES event",
            field="eventType",
        )
    parser = _PARSERS.get(kind_value)
    if parser is None or (notification and kind_value not in _NOTIFICATION_KINDS):
        return _generic(kind_value, event, fallback)
    return parser(event, _mail_fields(event))
