"""An aiohttp handler for SNS deliveries of SES events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from asyncmailer.feedback._suppression import EventCallback
from asyncmailer.feedback._webhook import SNSWebhook

if TYPE_CHECKING:
    from aiohttp import web
    from typing_extensions import Unpack

    from asyncmailer.feedback._webhook import SNSWebhookOptions

__all__ = ["sns_handler"]


def sns_handler(
    callback: EventCallback, **options: Unpack[SNSWebhookOptions]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp request handler that feeds SES events to ``callback``.

    The options are those of :class:`~asyncmailer.feedback.SNSWebhook`. Example::

        app.router.add_post("/sns", sns_handler(apply_to(suppression), topic_arns=[TOPIC]))

    The body is read in chunks and refused (413) as soon as it exceeds ``max_size``.
    """
    from aiohttp import web

    webhook = SNSWebhook(callback, **options)

    async def handler(request: web.Request) -> web.Response:
        length = request.content_length
        if length is not None and length > webhook.max_size:
            return web.Response(status=413, text="body too large")
        body = bytearray()
        async for chunk in request.content.iter_chunked(65536):
            body += chunk
            if len(body) > webhook.max_size:
                return web.Response(status=413, text="body too large")
        answer = await webhook.handle(
            bytes(body), message_type=request.headers.get("x-amz-sns-message-type")
        )
        return web.Response(status=answer.status, text=answer.body)

    return handler
