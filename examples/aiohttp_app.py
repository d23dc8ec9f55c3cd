"""aiohttp + asyncmailer: one SES transport for the application's lifetime.

- The transport is opened in a ``cleanup_ctx`` and stored under an ``AppKey``: one
  aiobotocore client, one rate limiter and one connection pool for every request.
- ``POST /welcome`` sends and waits: the caller learns the Message-ID, or gets an error.
- ``POST /welcome/later`` answers 202 at once and sends from a task the app keeps track
  of. The task logs failures; at shutdown the context waits for these tasks, then closes
  the transport, which drains whatever is still pending.
- ``POST /hooks/sns`` is the SNS webhook (:func:`~asyncmailer.feedback.sns_handler`): it
  verifies each notification's signature and adds permanent bounces and complaints to a
  suppression list (:func:`~asyncmailer.feedback.apply_to`); both welcome routes refuse
  (422) an address on that list before anything is sent.
- Configuration comes from environment variables (the same as ``fastapi_app.py``).

Run it against the local SES endpoint, no AWS account needed::

    python -m asyncmailer.testing --port 8025 &
    ASYNCMAILER_SES_ENDPOINT_URL=http://127.0.0.1:8025 AWS_ACCESS_KEY_ID=x \\
        AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 python aiohttp_app.py

With ``--sns-subscriber http://127.0.0.1:8080/hooks/sns`` on the endpoint and
``ASYNCMAILER_SNS_SIMULATOR=1`` here, mail to ``bounce@simulator.amazonses.com`` comes back
as a signed Bounce, and the next welcome to that address is refused.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from email.utils import getaddresses
from html import escape
from typing import Literal

from aiohttp import web

from asyncmailer import Limits, Message, SendResult, SESTransport, Transport
from asyncmailer.errors import DeliveryError, MailError, MessageError, Outcome, UndeliveredError
from asyncmailer.feedback import (
    CertificateResolver,
    MemorySuppressionList,
    SuppressionList,
    apply_to,
    check_suppression,
    sns_handler,
)

logger = logging.getLogger("examples.mail")


@dataclass(frozen=True)
class Settings:
    """The app's mail settings, read from the environment by :meth:`from_env`."""

    #: ``ASYNCMAILER_FROM``: the sender of every message.
    sender: str = "Example <no-reply@example.com>"
    #: ``ASYNCMAILER_SES_ENDPOINT_URL``: another SES endpoint (the local one in tests).
    endpoint_url: str | None = None
    #: ``AWS_REGION`` (read by the transport itself when unset here).
    region: str | None = None
    #: ``ASYNCMAILER_SES_API``: ``v1`` or ``v2``.
    api: Literal["v1", "v2"] = "v2"
    #: ``ASYNCMAILER_SENDING_RATE``: recipients per second, ``auto``, or empty for no limit.
    sending_rate: float | Literal["auto"] | None = "auto"
    #: ``ASYNCMAILER_MAX_CONNECTIONS``: requests to SES in flight at most.
    max_connections: int = 10
    #: ``ASYNCMAILER_DRAIN_TIMEOUT``: seconds shutdown waits for pending sends.
    drain_timeout: float = 30.0
    #: ``ASYNCMAILER_SNS_TOPIC_ARNS`` (comma-separated): the topics the webhook accepts and
    #: confirms subscriptions to. Empty: any topic's notifications, no confirmation.
    sns_topic_arns: tuple[str, ...] = ()
    #: ``ASYNCMAILER_SNS_SIMULATOR=1``: trust the test certificate of the local SES endpoint
    #: at ``endpoint_url`` instead of AWS's (the local endpoint's events; never production).
    sns_simulator: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Settings from environment variables; unset ones keep their defaults."""
        rate = environ.get("ASYNCMAILER_SENDING_RATE", "auto").strip()
        api = environ.get("ASYNCMAILER_SES_API", "v2")
        if api not in ("v1", "v2"):
            raise ValueError(f"ASYNCMAILER_SES_API must be v1 or v2, not {api!r}")
        return cls(
            sender=environ.get("ASYNCMAILER_FROM", cls.sender),
            endpoint_url=environ.get("ASYNCMAILER_SES_ENDPOINT_URL") or None,
            region=environ.get("AWS_REGION") or None,
            api=api,  # type: ignore[arg-type]
            sending_rate="auto" if rate == "auto" else (float(rate) if rate else None),
            max_connections=int(environ.get("ASYNCMAILER_MAX_CONNECTIONS", "10")),
            drain_timeout=float(environ.get("ASYNCMAILER_DRAIN_TIMEOUT", "30")),
            sns_topic_arns=tuple(
                arn.strip()
                for arn in environ.get("ASYNCMAILER_SNS_TOPIC_ARNS", "").split(",")
                if arn.strip()
            ),
            sns_simulator=environ.get("ASYNCMAILER_SNS_SIMULATOR", "") in ("1", "true", "yes"),
        )

    def sns_resolver(self) -> CertificateResolver | None:
        """Where the webhook gets signing certificates: AWS (None), or the local endpoint."""
        if not self.sns_simulator:
            return None
        if self.endpoint_url is None:
            raise ValueError("ASYNCMAILER_SNS_SIMULATOR needs ASYNCMAILER_SES_ENDPOINT_URL")
        from asyncmailer.testing import simulator_resolver

        return simulator_resolver(self.endpoint_url)


SETTINGS = web.AppKey("settings", Settings)
TRANSPORT = web.AppKey("transport", Transport)
BACKGROUND = web.AppKey("background", set[asyncio.Task[None]])
SUPPRESSION = web.AppKey("suppression", SuppressionList)


async def mail_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: open the transport at startup; at shutdown, drain then close it."""
    settings = app[SETTINGS]
    transport = SESTransport(
        api=settings.api,
        region_name=settings.region,
        endpoint_url=settings.endpoint_url,
        sending_rate=settings.sending_rate,
        max_connections=settings.max_connections,
        limits=Limits(drain_timeout=settings.drain_timeout),
    )
    try:
        async with transport:
            app[TRANSPORT] = transport
            background: set[asyncio.Task[None]] = set()
            app[BACKGROUND] = background
            yield
            # Background sends may still be composing: let them reach the transport (or
            # finish) before closing it; the transport then drains what is in flight.
            if background:
                await asyncio.wait(background, timeout=settings.drain_timeout)
    except UndeliveredError as exc:
        # The drain timed out: each sender got (and logged) its own error as well.
        logger.error("%d message(s) not delivered at shutdown", len(exc.failures))
    logger.info("mail transport closed")


def welcome_message(settings: Settings, data: Mapping[str, str]) -> Message:
    """The message both routes send."""
    name = data["name"]
    return Message(
        from_=settings.sender,
        to=data["to"],
        subject=f"Welcome, {name}!",
        text=f"Hello {name},\n\nthanks for signing up.\n",
        # User input goes into HTML escaped: a name like <a href=...> must stay text.
        html=f"<p>Hello {escape(name)},</p><p>thanks for signing up.</p>",
    )


async def send_checked(
    transport: Transport, suppression: SuppressionList, message: Message, to: str
) -> SendResult:
    """Send, unless recipient ``to`` bounced or complained before (``SuppressedRecipientError``).

    The check runs before any request to SES: a suppressed address costs nothing and does
    not count against the account's bounce and complaint rates.
    """
    recipients = [address for _, address in getaddresses([to]) if address] or [to]
    await check_suppression(suppression, recipients, policy="fail")
    return await transport.send_mail(message)


async def send_logged(
    transport: Transport, suppression: SuppressionList, message: Message, to: str
) -> None:
    """A background job: send, and log the outcome (the response is gone already)."""
    try:
        result = await send_checked(transport, suppression, message, to)
    except MailError:
        logger.exception("background email to %s failed", to)
    else:
        logger.info("background email to %s sent: %s", to, result.message_id)


def send_in_background(app: web.Application, message: Message, to: str) -> None:
    """Start ``send_logged`` as a task the app keeps (and waits for at shutdown)."""
    job = send_logged(app[TRANSPORT], app[SUPPRESSION], message, to)
    task = asyncio.get_running_loop().create_task(job)
    app[BACKGROUND].add(task)
    task.add_done_callback(app[BACKGROUND].discard)


async def _body(request: web.Request) -> dict[str, str]:
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="expected a JSON body") from None
    if not isinstance(data, dict) or not {"to", "name"} <= data.keys():
        raise web.HTTPUnprocessableEntity(text='expected {"to": ..., "name": ...}')
    return {"to": str(data["to"]), "name": str(data["name"])}


def _error(exc: MailError) -> web.Response:
    if isinstance(exc, MessageError):
        status = 422
    elif isinstance(exc, DeliveryError) and exc.outcome is Outcome.RETRY_SAFE:
        status = 503
    else:
        status = 502
    return web.json_response({"error": type(exc).__name__, "detail": str(exc)}, status=status)


async def welcome(request: web.Request) -> web.Response:
    """Send the welcome message and answer with its Message-ID."""
    data = await _body(request)
    message = welcome_message(request.app[SETTINGS], data)
    app = request.app
    try:
        result = await send_checked(app[TRANSPORT], app[SUPPRESSION], message, data["to"])
    except MailError as exc:
        return _error(exc)
    return web.json_response({"message_id": result.message_id, "ses_id": result.response})


async def welcome_later(request: web.Request) -> web.Response:
    """Answer 202 at once; the message is sent in the background."""
    data = await _body(request)
    send_in_background(request.app, welcome_message(request.app[SETTINGS], data), data["to"])
    return web.json_response({"queued": True}, status=202)


def create_app(
    settings: Settings | None = None, *, suppression: SuppressionList | None = None
) -> web.Application:
    """The application; ``settings`` default to :meth:`Settings.from_env`.

    ``suppression`` defaults to a :class:`MemorySuppressionList` (one process); give every
    worker the same :class:`~asyncmailer.feedback.RedisSuppressionList` in production.
    """
    config = settings or Settings.from_env()
    app = web.Application()
    app[SETTINGS] = config
    app[SUPPRESSION] = suppression if suppression is not None else MemorySuppressionList()
    app.cleanup_ctx.append(mail_context)
    app.router.add_post("/welcome", welcome)
    app.router.add_post("/welcome/later", welcome_later)
    # SES → SNS → here: verified, then permanent bounces and complaints are suppressed.
    app.router.add_post(
        "/hooks/sns",
        sns_handler(
            apply_to(app[SUPPRESSION]),
            topic_arns=config.sns_topic_arns or None,
            confirm_subscriptions=bool(config.sns_topic_arns),
            resolver=config.sns_resolver(),
        ),
    )
    return app


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    web.run_app(create_app(), host="127.0.0.1", port=8080)
