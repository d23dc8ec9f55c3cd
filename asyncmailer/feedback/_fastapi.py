"""A FastAPI router for SNS deliveries of SES events (FastAPI is imported when called).

This module does not use postponed annotations: FastAPI reads the endpoint's annotations
at definition time, and ``Request`` is imported inside the factory.
"""

from typing import TYPE_CHECKING

from asyncmailer.feedback._suppression import EventCallback
from asyncmailer.feedback._webhook import SNSWebhook

if TYPE_CHECKING:
    from fastapi import APIRouter
    from typing_extensions import Unpack

    from asyncmailer.feedback._webhook import SNSWebhookOptions

__all__ = ["sns_router"]


def sns_router(
    callback: EventCallback,
    *,
    path: str = "/sns",
    include_in_schema: bool = False,
    **options: "Unpack[SNSWebhookOptions]",
) -> "APIRouter":
    """An ``APIRouter`` with one ``POST`` route that feeds SES events to ``callback``.

    The options are those of :class:`~asyncmailer.feedback.SNSWebhook`. Example::

        app.include_router(
            sns_router(apply_to(suppression), topic_arns=[TOPIC], confirm_subscriptions=True)
        )

    The body is read in chunks and refused (413) as soon as it exceeds ``max_size``.
    """
    from fastapi import APIRouter, Request, Response

    webhook = SNSWebhook(callback, **options)
    router = APIRouter()

    async def sns_endpoint(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > webhook.max_size:
            return Response("body too large", status_code=413, media_type="text/plain")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > webhook.max_size:
                return Response("body too large", status_code=413, media_type="text/plain")
        answer = await webhook.handle(
            bytes(body), message_type=request.headers.get("x-amz-sns-message-type")
        )
        return Response(answer.body, status_code=answer.status, media_type="text/plain")

    router.add_api_route(path, sns_endpoint, methods=["POST"], include_in_schema=include_in_schema)
    return router
