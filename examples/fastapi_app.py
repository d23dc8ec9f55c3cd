"""FastAPI + asyncmailer: one SES transport for the application's lifetime.

- The transport is opened in the lifespan and handed to routes through a dependency: one
  aiobotocore client, one rate limiter and one connection pool for every request.
- ``POST /welcome`` sends and waits: the caller learns the Message-ID, or gets an error.
- ``POST /welcome/later`` answers 202 at once and sends from a ``BackgroundTasks`` job. The
  job logs failures (nobody else would see them); at shutdown uvicorn waits for running
  jobs, then the lifespan closes the transport, which drains whatever is still pending.
- ``POST /hooks/sns`` is the SNS webhook (:func:`~asyncmailer.feedback.sns_router`): it
  verifies each notification's signature and adds permanent bounces and complaints to a
  suppression list (:func:`~asyncmailer.feedback.apply_to`); both welcome routes refuse
  (422) an address on that list before anything is sent.
- Configuration comes from environment variables (see :class:`Settings`).

Run it against the local SES endpoint, no AWS account needed::

    python -m asyncmailer.testing --port 8025 &
    ASYNCMAILER_SES_ENDPOINT_URL=http://127.0.0.1:8025 AWS_ACCESS_KEY_ID=x \\
        AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 uvicorn fastapi_app:app
    curl -XPOST localhost:8000/welcome -H 'content-type: application/json' \\
        -d '{"to": "ada@example.org", "name": "Ada"}'

And close the bounce loop: let the endpoint publish the mailbox simulator's events to the
webhook, and trust its test certificate (``ASYNCMAILER_SNS_SIMULATOR=1``)::

    python -m asyncmailer.testing --port 8025 --sns-subscriber http://127.0.0.1:8000/hooks/sns &
    ASYNCMAILER_SNS_SIMULATOR=1 ASYNCMAILER_SES_ENDPOINT_URL=... uvicorn fastapi_app:app
    curl ... -d '{"to": "bounce@simulator.amazonses.com", "name": "B"}'   # 200, then 422
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import getaddresses
from html import escape
from typing import Annotated, Any, Literal

from fastapi import BackgroundTasks, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from asyncmailer import Limits, Message, SendResult, SESTransport, Transport
from asyncmailer.errors import DeliveryError, MailError, MessageError, Outcome, UndeliveredError
from asyncmailer.feedback import (
    CertificateResolver,
    MemorySuppressionList,
    SuppressionList,
    apply_to,
    check_suppression,
    sns_router,
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
    #: ``ASYNCMAILER_SENDING_RATE``: recipients per second, ``auto`` (the account's quota),
    #: or empty for no limit.
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

    def transport(self) -> SESTransport:
        """The transport these settings describe (not open yet)."""
        return SESTransport(
            api=self.api,
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            sending_rate=self.sending_rate,
            max_connections=self.max_connections,
            limits=Limits(drain_timeout=self.drain_timeout),
        )


class Welcome(BaseModel):
    """The body of the welcome routes."""

    to: str
    name: str


def welcome_message(settings: Settings, body: Welcome) -> Message:
    """The message both routes send."""
    return Message(
        from_=settings.sender,
        to=body.to,
        subject=f"Welcome, {body.name}!",
        text=f"Hello {body.name},\n\nthanks for signing up.\n",
        # User input goes into HTML escaped: a name like <a href=...> must stay text.
        html=f"<p>Hello {escape(body.name)},</p><p>thanks for signing up.</p>",
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


def get_transport(request: Request) -> Transport:
    """Dependency: the transport the lifespan opened."""
    transport: Transport = request.state.transport
    return transport


def get_suppression(request: Request) -> SuppressionList:
    """Dependency: the suppression list the webhook fills."""
    suppression: SuppressionList = request.state.suppression
    return suppression


def get_settings(request: Request) -> Settings:
    """Dependency: the settings the lifespan read."""
    settings: Settings = request.state.settings
    return settings


TransportDep = Annotated[Transport, Depends(get_transport)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
SuppressionDep = Annotated[SuppressionList, Depends(get_suppression)]


def create_app(
    settings: Settings | None = None, *, suppression: SuppressionList | None = None
) -> FastAPI:
    """The application; ``settings`` default to :meth:`Settings.from_env`.

    ``suppression`` defaults to a :class:`MemorySuppressionList` (one process); give every
    worker the same :class:`~asyncmailer.feedback.RedisSuppressionList` in production.
    """
    config = settings or Settings.from_env()
    suppressed = suppression if suppression is not None else MemorySuppressionList()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        try:
            async with config.transport() as transport:
                # Lifespan state: every request sees these as request.state.<name>.
                yield {"transport": transport, "settings": config, "suppression": suppressed}
            # Leaving the block closed the transport: pending sends were drained first.
        except UndeliveredError as exc:
            # The drain timed out: each sender got (and logged) its own error as well.
            logger.error("%d message(s) not delivered at shutdown", len(exc.failures))
        logger.info("mail transport closed")

    app = FastAPI(title="asyncmailer example", lifespan=lifespan)

    @app.exception_handler(MailError)
    async def mail_error(request: Request, exc: MailError) -> JSONResponse:
        if isinstance(exc, MessageError):
            status = 422  # the input made an invalid message
        elif isinstance(exc, DeliveryError) and exc.outcome is Outcome.RETRY_SAFE:
            status = 503  # nothing was sent: the client may try again
        else:
            status = 502
        return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=status)

    @app.post("/welcome")
    async def welcome(
        body: Welcome, transport: TransportDep, config: SettingsDep, suppression: SuppressionDep
    ) -> Any:
        message = welcome_message(config, body)
        result = await send_checked(transport, suppression, message, body.to)
        return {"message_id": result.message_id, "ses_id": result.response}

    @app.post("/welcome/later", status_code=202)
    async def welcome_later(
        body: Welcome,
        tasks: BackgroundTasks,
        transport: TransportDep,
        config: SettingsDep,
        suppression: SuppressionDep,
    ) -> Any:
        message = welcome_message(config, body)
        tasks.add_task(send_logged, transport, suppression, message, body.to)
        return {"queued": True}

    # SES → SNS → here: verified, then permanent bounces and complaints are suppressed.
    app.include_router(
        sns_router(
            apply_to(suppressed),
            path="/hooks/sns",
            topic_arns=config.sns_topic_arns or None,
            confirm_subscriptions=bool(config.sns_topic_arns),
            resolver=config.sns_resolver(),
        )
    )
    return app


app = create_app()
