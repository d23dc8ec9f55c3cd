"""Helpers around the aiobotocore client that SESTransport sends through.

The client is used as aiobotocore makes it: its own HTTP session, signer, event emitter
and endpoint resolution. What the transport adds goes through public mechanisms only:
``AioConfig`` options when it creates the client, and one handler on botocore's
documented ``before-send`` event (registered in :mod:`asyncmailer.transports.ses`).

- botocore's JSON data files are read in a worker thread before the client is created,
  so that creating it does not stall the event loop (:func:`preload_data`).
- One cheap request (``GetAccount`` / ``GetSendQuota``) opens the HTTP session before the
  first rate-limited send (:func:`warm_up`), on a client passed in too.
- :func:`idle_timeout` reads the client's keep-alive timeout from its config: after an
  idle spell of half that, the transport lets the first send go alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

__all__ = ["DEFAULT_KEEPALIVE", "idle_timeout", "preload_data", "warm_up"]

logger = logging.getLogger("asyncmailer.ses")

#: aiobotocore's keep-alive timeout for pooled connections when the config names none
#: (12 s in aiobotocore 3.x; aiohttp's own default of 15 s before that): the smaller.
DEFAULT_KEEPALIVE = 12.0


async def preload_data(session: Any, service: str) -> None:
    """Read the botocore data files a ``service`` client needs, in a worker thread."""
    loader = session.get_component("data_loader")

    def load() -> None:
        for kind in ("service-2", "endpoint-rule-set-1"):
            with contextlib.suppress(Exception):
                loader.load_service_model(service, kind)
        for name in ("endpoints", "partitions", "sdk-default-configuration"):
            with contextlib.suppress(Exception):
                loader.load_data(name)

    await asyncio.to_thread(load)


async def warm_up(client: Any, api: str) -> bool:
    """One cheap request, so the HTTP session exists before the first rate-limited send.

    Returns True when SES answered, even with an error (a missing IAM permission for
    ``ses:GetAccount`` / ``ses:GetSendQuota``): the connection is open and warm all the
    same. A failure is logged at WARNING with its cause; it never stops the transport.
    """
    from botocore.exceptions import ClientError

    action = "ses:GetAccount" if api == "v2" else "ses:GetSendQuota"
    try:
        await (client.get_account() if api == "v2" else client.get_send_quota())
    except ClientError as exc:
        error = exc.response.get("Error", {})
        logger.warning(
            "asyncmailer: the SES warm-up request (%s) was refused: %s %s; the connection is "
            "warm all the same (grant %s to silence this)",
            action,
            error.get("Code", ""),
            error.get("Message", ""),
            action,
        )
        return True
    except Exception as exc:
        logger.warning(
            "asyncmailer: the SES warm-up request (%s) failed: %s: %s; the first send will "
            "go alone",
            action,
            type(exc).__name__,
            exc,
            exc_info=True,
        )
        return False
    return True


def idle_timeout(client: Any) -> float:
    """Seconds without traffic after which the client's pooled connections may be gone."""
    config = getattr(client.meta, "config", None)
    connector_args = getattr(config, "connector_args", None) or {}
    keepalive = connector_args.get("keepalive_timeout")
    if not isinstance(keepalive, (int, float)) or keepalive <= 0:
        keepalive = DEFAULT_KEEPALIVE
    return float(keepalive) / 2
