"""asyncmailer.feedback's public API is declared, documented and pinned."""

from __future__ import annotations

import inspect
import typing

import asyncmailer.feedback as feedback
from asyncmailer.errors import MailError, MessageError

EXPECTED = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_BODY",
    "BounceEvent",
    "BounceType",
    "BouncedRecipient",
    "CertificateResolver",
    "ClickEvent",
    "ComplaintEvent",
    "DelayedRecipient",
    "DeliveryDelayEvent",
    "DeliveryEvent",
    "EventCallback",
    "FeedbackError",
    "MemorySuppressionList",
    "OpenEvent",
    "RedisSuppressionList",
    "RejectEvent",
    "RenderingFailureEvent",
    "SESEvent",
    "SESSuppressionList",
    "SNSCertificateFetcher",
    "SNSMessage",
    "SNSMessageType",
    "SNSVerificationError",
    "SNSVerificationReason",
    "SNSWebhook",
    "SNSWebhookOptions",
    "SQSEventConsumer",
    "SendEvent",
    "SubscriptionEvent",
    "SuppressedRecipientError",
    "SuppressionCheck",
    "SuppressionEntry",
    "SuppressionList",
    "SuppressionPolicy",
    "SuppressionReason",
    "SuppressionUnavailableError",
    "TopicPreferences",
    "WebhookResponse",
    "apply_to",
    "check_sns_url",
    "check_suppression",
    "is_sns_host",
    "normalize_address",
    "parse_ses_event",
    "sns_handler",
    "sns_router",
    "verify_sns_message",
]


def test_all_is_pinned() -> None:
    assert feedback.__all__ == EXPECTED
    for name in EXPECTED:
        assert hasattr(feedback, name), name


def test_public_classes_and_functions_are_documented() -> None:
    for name in EXPECTED:
        obj = getattr(feedback, name)
        if typing.get_origin(obj) is not None:
            continue  # a type alias (on 3.10 inspect.isclass() is true for Callable[...])
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), name


def test_error_tree() -> None:
    assert issubclass(feedback.FeedbackError, MailError)
    assert issubclass(feedback.FeedbackError, ValueError)
    assert issubclass(feedback.SNSVerificationError, feedback.FeedbackError)
    assert issubclass(feedback.SuppressionUnavailableError, feedback.FeedbackError)
    assert issubclass(feedback.SuppressedRecipientError, MessageError)


def test_every_event_class_is_an_ses_event() -> None:
    for name in EXPECTED:
        obj = getattr(feedback, name)
        if inspect.isclass(obj) and name.endswith("Event"):
            assert issubclass(obj, feedback.SESEvent), name


def test_importing_needs_no_optional_dependency() -> None:
    import subprocess
    import sys

    code = (
        "import sys, asyncmailer.feedback\n"
        "bad = [m for m in ('fastapi', 'redis', 'aiohttp', 'cryptography') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
