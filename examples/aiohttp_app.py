"""aiohttp + asyncmailer: one SES transport for the application's lifetime.

- The transport is opened in a ``cleanup_ctx`` and stored under an ``AppKey``: one
  aiobotocore client, one rate limiter and one connection pool for every request.
- ``POST /welcome`` sends and waits: the caller learns the Message-ID, or gets an error.
- ``POST /welcome/later`` answers 202 at once and sends from a task the app keeps track
  of. The task logs failures; at shutdown the context waits for these tasks, then closes
  the transport, which drains whatever is still pending.
- Configuration comes from environment variables (the same as ``fastapi_app.py``).

Run it against the local SES endpoint, no AWS account needed::

    python -m asyncmailer.testing --port 8025 &
    ASYNCMAILER_SES_ENDPOINT_URL=http://127.0.0.1:8025 AWS_ACCESS_KEY_ID=x \\
        AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 python aiohttp_app.py
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from html import escape
from typing import Literal

from aiohttp import web

from asyncmailer import Limits, Message, SESTransport, Transport
from asyncmailer.errors import DeliveryError, MailError, MessageError, Outcome, UndeliveredError

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
        )


SETTINGS = web.AppKey("settings", Settings)
TRANSPORT = web.AppKey("transport", Transport)
BACKGROUND = web.AppKey("background", set[asyncio.Task[None]])


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


async def send_logged(transport: Transport, message: Message) -> None:
    """A background job: send, and log the outcome (the response is gone already)."""
    try:
        result = await transport.send_mail(message)
    except MailError:
        logger.exception("background email to %s failed", message.to)
    else:
        logger.info("background email to %s sent: %s", message.to, result.message_id)


def send_in_background(app: web.Application, message: Message) -> None:
    """Start ``send_logged`` as a task the app keeps (and waits for at shutdown)."""
    task = asyncio.get_running_loop().create_task(send_logged(app[TRANSPORT], message))
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
    message = welcome_message(request.app[SETTINGS], await _body(request))
    try:
        result = await request.app[TRANSPORT].send_mail(message)
    except MailError as exc:
        return _error(exc)
    return web.json_response({"message_id": result.message_id, "ses_id": result.response})


async def welcome_later(request: web.Request) -> web.Response:
    """Answer 202 at once; the message is sent in the background."""
    message = welcome_message(request.app[SETTINGS], await _body(request))
    send_in_background(request.app, message)
    return web.json_response({"queued": True}, status=202)


def create_app(settings: Settings | None = None) -> web.Application:
    """The application; ``settings`` default to :meth:`Settings.from_env`."""
    app = web.Application()
    app[SETTINGS] = settings or Settings.from_env()
    app.cleanup_ctx.append(mail_context)
    app.router.add_post("/welcome", welcome)
    app.router.add_post("/welcome/later", welcome_later)
    return app


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    web.run_app(create_app(), host="127.0.0.1", port=8080)
