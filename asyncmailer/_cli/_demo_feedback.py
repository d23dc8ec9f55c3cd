"""``asyncmailer demo --feedback``: the bounce loop, closed, with no AWS account.

1. The local SES endpoint and an aiohttp SNS webhook (:func:`asyncmailer.feedback.sns_handler`)
   start on loopback; the endpoint publishes the mailbox simulator's events to the webhook.
2. :class:`SESTransport` sends to ``bounce@simulator.amazonses.com``.
3. The endpoint POSTs the signed Bounce; the webhook verifies it
   (:func:`~asyncmailer.feedback.verify_sns_message` with the simulator's certificate),
   parses it, and :func:`~asyncmailer.feedback.apply_to` adds the address to a
   :class:`~asyncmailer.feedback.MemorySuppressionList`.
4. The next send to that address is refused before any request reaches SES.

Step 4 uses :func:`~asyncmailer.feedback.check_suppression` before ``send_mail``; once the
transport takes a suppression list itself, the demo will hand it the list instead.
Needs the ``feedback`` extra (cryptography, aiohttp). Tests call :func:`run_feedback_demo`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from asyncmailer.message import Message
from asyncmailer.options import AWSClientSettings, Credentials
from asyncmailer.result import SendResult
from asyncmailer.testing import SESEndpoint, SimulatorEvent, simulator_resolver
from asyncmailer.transports import SESTransport

if TYPE_CHECKING:
    from asyncmailer.feedback import BounceEvent, SuppressedRecipientError

__all__ = ["FeedbackDemoResult", "format_feedback_demo", "run_feedback_demo"]

SENDER = "Asyncmailer Demo <demo@example.com>"
BOUNCE = "bounce@simulator.amazonses.com"


@dataclass(frozen=True, slots=True)
class FeedbackDemoResult:
    """What :func:`run_feedback_demo` did, step by step."""

    #: The endpoint's URL while it ran.
    endpoint_url: str
    #: The webhook's URL while it ran.
    webhook_url: str
    #: The first send (to the bounce simulator).
    first: SendResult
    #: The simulator's record of the Bounce it published.
    published: SimulatorEvent
    #: The event as the webhook verified and parsed it.
    event: BounceEvent
    #: The suppression entry ``apply_to`` added, as ``(address, reason, detail)``.
    suppressed: tuple[str, str, str | None]
    #: The error that refused the second send.
    refusal: SuppressedRecipientError
    #: Messages the endpoint accepted in all (the refused send made no request).
    messages_accepted: int


async def run_feedback_demo(*, api: Literal["v1", "v2"] = "v2") -> FeedbackDemoResult:
    """Run the loop: send to the bounce simulator, take the signed event, refuse the next send."""
    from aiohttp import web

    from asyncmailer.feedback import (
        BounceEvent,
        MemorySuppressionList,
        SESEvent,
        SuppressedRecipientError,
        apply_to,
        sns_handler,
    )

    suppression = MemorySuppressionList()
    store = apply_to(suppression)
    received: asyncio.Queue[SESEvent] = asyncio.Queue()

    async def on_event(event: SESEvent) -> None:
        await store(event)
        received.put_nowait(event)

    app = web.Application()
    app.router.add_post("/hooks/sns", sns_handler(on_event, resolver=simulator_resolver()))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        webhook_url = f"http://{host}:{port}/hooks/sns"
        async with SESEndpoint(sns_subscriber_url=webhook_url) as endpoint:
            kwargs = endpoint.client_kwargs()
            async with SESTransport(
                api=api,
                aws=AWSClientSettings(
                    endpoint_url=kwargs["endpoint_url"],
                    region_name=kwargs["region_name"],
                    credentials=Credentials(
                        access_key_id=kwargs["aws_access_key_id"],
                        secret_access_key=kwargs["aws_secret_access_key"],
                    ),
                    connect_timeout=5.0,
                    read_timeout=10.0,
                ),
                # The transport looks every recipient up before it spends a request.
                suppression=suppression,
            ) as transport:

                def message() -> Message:
                    return Message(
                        from_=SENDER,
                        to=BOUNCE,
                        subject="Your order has shipped",
                        text="Hello,\n\nyour order is on its way.\n",
                    )

                first = await transport.send_mail(message())
                event = await asyncio.wait_for(received.get(), 15)
                [published] = await endpoint.wait_for_events(15)
                try:
                    await transport.send_mail(message())
                except SuppressedRecipientError as exc:
                    refusal = exc
                else:  # pragma: no cover - the loop is broken
                    raise AssertionError("the second send was not refused")
            messages_accepted = endpoint.stats().messages_accepted
            endpoint_url = endpoint.url
    finally:
        await runner.cleanup()
    entries = await suppression.suppressed([BOUNCE])
    entry = entries[BOUNCE]
    assert isinstance(event, BounceEvent)
    return FeedbackDemoResult(
        endpoint_url=endpoint_url,
        webhook_url=webhook_url,
        first=first,
        published=published,
        event=event,
        suppressed=(entry.email, entry.reason.value, entry.detail),
        refusal=refusal,
        messages_accepted=messages_accepted,
    )


def format_feedback_demo(demo: FeedbackDemoResult) -> str:
    """The demo's report, as printed by ``asyncmailer demo --feedback``."""
    event = demo.event
    envelope = demo.published.envelope or {}
    recipient = event.recipients[0]
    address, reason, detail = demo.suppressed
    return "\n".join(
        [
            f"Local SES endpoint: {demo.endpoint_url} (in-process; no AWS account, no network)",
            f"SNS webhook:        {demo.webhook_url} (aiohttp, sns_handler)",
            "",
            f"1. Sent to {BOUNCE} through SESTransport:",
            f"     SES id       {demo.first.response}",
            "",
            "2. The endpoint published a signed SNS notification to the webhook:",
            f"     TopicArn         {envelope.get('TopicArn', '')}",
            f"     SignatureVersion {envelope.get('SignatureVersion', '')} "
            f"(SHA{'1' if envelope.get('SignatureVersion') == '1' else '256'}withRSA)",
            f"     SigningCertURL   {envelope.get('SigningCertURL', '')}",
            "   The webhook verified the signature (verify_sns_message, simulator certificate)",
            "   and parsed the event:",
            f"     {type(event).__name__}  {event.bounce_type}/{event.bounce_subtype}",
            f"     recipient    {recipient.email}  {recipient.status}  {recipient.diagnostic_code}",
            f"     message id   {event.message_id}"
            + ("  (the id of send 1)" if event.message_id == demo.first.response else ""),
            "",
            "3. apply_to(suppression) added it to the suppression list:",
            f"     {address}  {reason}  {detail}",
            "",
            "4. The next send to it was refused before any request",
            "   (SESTransport(suppression=...) looked the recipient up before any request):",
            f"     {type(demo.refusal).__name__}: {demo.refusal}",
            f"     messages the endpoint accepted in all: {demo.messages_accepted}",
            "",
            "The event, as SES delivers it:",
            _indent(json.dumps(demo.published.event, indent=2)),
        ]
    )


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
