"""After the send: typed SES events, verified SNS webhooks, an SQS consumer, suppression.

A service that sends at volume must act on bounces and complaints: AWS reviews, and can
pause, an account whose bounce rate nears 5 % or whose complaint rate nears 0.1 %. This
subpackage turns what SES reports into typed events and a suppression list that stops the
next send. Example::

    from asyncmailer.feedback import RedisSuppressionList, SQSEventConsumer, apply_to

    async with RedisSuppressionList(REDIS_URL) as suppression, SQSEventConsumer(
        QUEUE_URL, apply_to(suppression), region_name="eu-west-1"
    ):
        ...

Modules, one concept each: ``_events`` (parsing), ``_sns`` (signature verification),
``_webhook`` / ``_fastapi`` / ``_aiohttp`` (HTTP endpoints), ``_sqs`` (the queue consumer),
``_suppression`` / ``_redis`` / ``_ses`` (suppression lists), ``_errors``. Optional
dependencies (cryptography, aiohttp, fastapi, redis) are imported only when used:
``pip install 'asyncmailer[feedback]'``.
"""

from asyncmailer.feedback._aiohttp import sns_handler
from asyncmailer.feedback._errors import (
    FeedbackError,
    SNSVerificationError,
    SNSVerificationReason,
    SuppressedRecipientError,
    SuppressionUnavailableError,
)
from asyncmailer.feedback._events import (
    DEFAULT_MAX_BODY,
    BouncedRecipient,
    BounceEvent,
    BounceType,
    ClickEvent,
    ComplaintEvent,
    DelayedRecipient,
    DeliveryDelayEvent,
    DeliveryEvent,
    OpenEvent,
    RejectEvent,
    RenderingFailureEvent,
    SendEvent,
    SESEvent,
    SubscriptionEvent,
    TopicPreferences,
    parse_ses_event,
)
from asyncmailer.feedback._fastapi import sns_router
from asyncmailer.feedback._redis import RedisSuppressionList
from asyncmailer.feedback._ses import SESSuppressionList
from asyncmailer.feedback._sns import (
    DEFAULT_MAX_AGE,
    CertificateResolver,
    SNSCertificateFetcher,
    SNSMessage,
    SNSMessageType,
    check_sns_url,
    is_sns_host,
    verify_sns_message,
)
from asyncmailer.feedback._sqs import SQSEventConsumer
from asyncmailer.feedback._suppression import (
    EventCallback,
    MemorySuppressionList,
    SuppressionCheck,
    SuppressionEntry,
    SuppressionList,
    SuppressionPolicy,
    SuppressionReason,
    apply_to,
    check_suppression,
    normalize_address,
)
from asyncmailer.feedback._webhook import SNSWebhook, SNSWebhookOptions, WebhookResponse

__all__ = [
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
