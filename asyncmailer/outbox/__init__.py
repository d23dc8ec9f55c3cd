"""A durable outbox on Redis Streams: accepted mail survives crashes and deploys.

``enqueue`` composes a message and returns an id once Redis holds it; workers in any
number of processes send it through a transport and record one outcome per message:
``sent``, ``failed`` or ``unknown`` (in flight when its worker died; never resent
automatically). See ``docs/durable-sending.md``. Example::

    from asyncmailer.outbox import Outbox

    outbox = Outbox("redis://localhost:6379/0", transport=ses, stream="mail:{outbox}")
    async with ses, outbox, outbox.worker(concurrency=8):
        outbox_id = await outbox.enqueue(from_="shop@example.com", to="ada@example.com",
                                         subject="Hi", text="Hello", key="welcome-ada")
        print(await outbox.status(outbox_id))
"""

from __future__ import annotations

from asyncmailer.outbox._model import (
    Durability,
    DurabilityError,
    OutboxError,
    OutboxFullError,
    OutboxResult,
    OutboxState,
    OutboxStats,
    OutboxStatus,
)
from asyncmailer.outbox._outbox import Outbox, StoredMessage
from asyncmailer.outbox._worker import OutboxWorker, WorkerCounts

__all__ = [
    "Durability",
    "DurabilityError",
    "Outbox",
    "OutboxError",
    "OutboxFullError",
    "OutboxResult",
    "OutboxState",
    "OutboxStats",
    "OutboxStatus",
    "OutboxWorker",
    "StoredMessage",
    "WorkerCounts",
]
