"""The SNS HTTP/S endpoint logic, independent of the web framework.

:class:`SNSWebhook` turns a request body into an answer: it verifies the envelope
(:func:`~asyncmailer.feedback.verify_sns_message`), checks the topic against the
allow-list, confirms a ``SubscriptionConfirmation`` when asked to (opt-in, allow-listed
topics only), parses the SES event and awaits your callback. The FastAPI router
(:func:`~asyncmailer.feedback.sns_router`) and the aiohttp handler
(:func:`~asyncmailer.feedback.sns_handler`) are thin shells around it.

Answer codes follow SNS's retry rules (it retries 5xx answers and failed connections,
never 2xx or 4xx):

====================================================  ======  =========
case                                                  status  SNS retry
====================================================  ======  =========
event handled (callback returned)                     200     no
confirmation done / not enabled / unsubscribe notice  200     no
callback raised                                       500     yes
signing certificate or SubscribeURL unreachable       503     yes
forged, expired, bad certificate URL, wrong topic     403     no
not an SNS envelope, not an SES event                 400     no
body over ``max_size``                                413     no
====================================================  ======  =========
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, TypedDict

from asyncmailer.feedback._errors import FeedbackError, SNSVerificationError
from asyncmailer.feedback._events import DEFAULT_MAX_BODY, parse_ses_event
from asyncmailer.feedback._sns import (
    DEFAULT_MAX_AGE,
    CertificateResolver,
    SNSMessage,
    check_sns_url,
    verify_sns_message,
)
from asyncmailer.feedback._suppression import EventCallback

if TYPE_CHECKING:
    import aiohttp

__all__ = ["SNSWebhook", "SNSWebhookOptions", "WebhookResponse"]

logger = logging.getLogger("asyncmailer.feedback")

_STATUS = {
    "too_large": 413,
    "not_json": 400,
    "malformed": 400,
    "unsupported": 400,
    "cert_url": 403,
    "cert_unavailable": 503,
    "cert_invalid": 403,
    "signature": 403,
    "expired": 403,
    "topic": 403,
}


class SNSWebhookOptions(TypedDict, total=False):
    """The keyword options of :class:`SNSWebhook`, :func:`sns_router` and :func:`sns_handler`."""

    topic_arns: Collection[str] | None
    confirm_subscriptions: bool
    resolver: CertificateResolver | None
    max_age: timedelta | float | None
    max_size: int
    http_session: aiohttp.ClientSession | None
    confirm_timeout: float


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    """What to answer SNS."""

    #: The HTTP status.
    status: int
    #: A short plain-text body.
    body: str


class SNSWebhook:
    """Verifies, confirms, parses and dispatches SNS deliveries of SES events.

    :param callback: ``async def callback(event: SESEvent) -> None``.
    :param topic_arns: the topics accepted; ``None`` accepts any topic's notifications but
        never confirms a subscription.
    :param confirm_subscriptions: visit the ``SubscribeURL`` of a ``SubscriptionConfirmation``
        from an allow-listed topic (checked to be ``https`` on an SNS host first).
    :param resolver: the certificate resolver (default: the shared fetcher).
    :param max_age: replay window, see :func:`~asyncmailer.feedback.verify_sns_message`.
    :param max_size: largest body accepted, in octets.
    :param http_session: aiohttp session for the confirmation request (default: one per
        request). Tests pass one whose connector resolves SNS names to a local server.
    :param confirm_timeout: seconds allowed for the confirmation request.
    """

    __slots__ = (
        "callback",
        "confirm_subscriptions",
        "confirm_timeout",
        "http_session",
        "max_age",
        "max_size",
        "resolver",
        "topic_arns",
    )

    def __init__(
        self,
        callback: EventCallback,
        *,
        topic_arns: Collection[str] | None = None,
        confirm_subscriptions: bool = False,
        resolver: CertificateResolver | None = None,
        max_age: timedelta | float | None = DEFAULT_MAX_AGE,
        max_size: int = DEFAULT_MAX_BODY,
        http_session: aiohttp.ClientSession | None = None,
        confirm_timeout: float = 10.0,
    ) -> None:
        #: The user's callback.
        self.callback = callback
        #: Accepted topics (``None``: any, without confirmation).
        self.topic_arns = frozenset(topic_arns) if topic_arns is not None else None
        #: Whether subscriptions are confirmed.
        self.confirm_subscriptions = confirm_subscriptions
        #: The certificate resolver.
        self.resolver = resolver
        #: The replay window.
        self.max_age = max_age
        #: Largest body accepted, in octets.
        self.max_size = max_size
        #: Session for the confirmation request.
        self.http_session = http_session
        #: Seconds allowed for the confirmation request.
        self.confirm_timeout = confirm_timeout

    async def handle(self, body: bytes, *, message_type: str | None = None) -> WebhookResponse:
        """Answer one delivery; ``message_type`` is the ``x-amz-sns-message-type`` header."""
        if len(body) > self.max_size:
            return WebhookResponse(413, "body too large")
        try:
            sns = await verify_sns_message(
                body, resolver=self.resolver, max_age=self.max_age, max_size=self.max_size
            )
        except SNSVerificationError as exc:
            logger.warning("SNS message refused (%s): %s", exc.reason, exc)
            return WebhookResponse(_STATUS.get(exc.reason, 400), f"refused: {exc.reason}")
        if message_type is not None and message_type != sns.type:
            return WebhookResponse(400, "x-amz-sns-message-type does not match Type")
        if self.topic_arns is not None and sns.topic_arn not in self.topic_arns:
            logger.warning("SNS message from a topic not allowed: %s", sns.topic_arn)
            return WebhookResponse(403, "refused: topic")
        if sns.type == "SubscriptionConfirmation":
            return await self._confirm(sns)
        if sns.type == "UnsubscribeConfirmation":
            logger.warning("SNS subscription to %s was ended", sns.topic_arn)
            return WebhookResponse(200, "noted")
        try:
            event = parse_ses_event(sns.message, max_size=self.max_size)
        except FeedbackError as exc:
            logger.warning("SNS notification %s is not an SES event: %s", sns.message_id, exc)
            return WebhookResponse(400, "not an SES event")
        try:
            await self.callback(event)
        except Exception:
            logger.exception("the SES event callback failed for %s", event.message_id)
            return WebhookResponse(500, "callback failed")
        return WebhookResponse(200, "ok")

    async def _confirm(self, sns: SNSMessage) -> WebhookResponse:
        if not self.confirm_subscriptions or self.topic_arns is None:
            logger.warning(
                "SNS subscription to %s not confirmed (confirmation is off): %s",
                sns.topic_arn,
                sns.subscribe_url,
            )
            return WebhookResponse(200, "confirmation disabled")
        url = sns.subscribe_url or ""
        try:
            check_sns_url(url, what="SubscribeURL", certificate=False)
        except SNSVerificationError:
            return WebhookResponse(403, "refused: SubscribeURL")
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.confirm_timeout)
        try:
            if self.http_session is not None:
                status = await _visit(self.http_session, url, timeout)
            else:
                async with aiohttp.ClientSession() as session:
                    status = await _visit(session, url, timeout)
        except Exception as exc:
            logger.warning("SNS subscription confirmation failed: %r", exc)
            return WebhookResponse(503, "confirmation failed")
        if status != 200:
            logger.warning("SNS subscription confirmation answered HTTP %s", status)
            return WebhookResponse(503, "confirmation failed")
        logger.info("SNS subscription to %s confirmed", sns.topic_arn)
        return WebhookResponse(200, "confirmed")


async def _visit(session: aiohttp.ClientSession, url: str, timeout: aiohttp.ClientTimeout) -> int:
    async with session.get(url, timeout=timeout, allow_redirects=False) as response:
        await response.read()
        return response.status
