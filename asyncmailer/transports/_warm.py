"""After an idle spell, the first send goes alone and the others wait for its answer.

A client opens connections lazily, and closes idle ones after its keep-alive timeout.
When a burst of sends starts on a cold pool, every request granted by the rate limiter
first opens a connection (a TCP and TLS handshake, and on first use the HTTP session
itself): the ones granted meanwhile then leave together, and the server sees a burst
the limiter never granted. :class:`WarmGate` makes the first send after ``idle_after``
seconds without traffic go alone; the others wait (holding no rate unit) until it has
been answered, by which time a connection is open and warm. While traffic flows the gate
costs one comparison per send.
"""

from __future__ import annotations

import asyncio

__all__ = ["WarmGate"]


class WarmGate:
    """Decides, for each send, whether it must go alone; see the module docstring.

    Usage (one send)::

        alone = await gate.enter()
        try:
            ...  # acquire the rate unit, send the request
        finally:
            gate.leave(alone)
    """

    __slots__ = ("_active", "_last", "_leader", "_loop", "idle_after")

    def __init__(self, loop: asyncio.AbstractEventLoop, idle_after: float) -> None:
        self._loop = loop
        #: Seconds without traffic after which the pool counts as cold.
        self.idle_after = idle_after
        # When a request last ended (-inf: never, the pool is cold).
        self._last = float("-inf")
        # Sends between enter() and leave().
        self._active = 0
        # Resolved when the send that went alone has its answer.
        self._leader: asyncio.Future[None] | None = None

    def warmed(self) -> None:
        """Note that the pool is warm now (a warm-up request was answered)."""
        self._last = self._loop.time()

    async def enter(self) -> bool:
        """Wait while a send goes alone; return True if this send must go alone."""
        while self._leader is not None:
            # asyncio.wait: a waiter being cancelled does not cancel the shared future.
            await asyncio.wait((self._leader,))
        self._active += 1
        if self._active == 1 and self._loop.time() - self._last > self.idle_after:
            self._leader = self._loop.create_future()
            return True
        return False

    def leave(self, alone: bool) -> None:
        """The send that entered is answered (or failed, or was cancelled)."""
        self._active -= 1
        self._last = self._loop.time()
        if alone:
            leader, self._leader = self._leader, None
            if leader is not None and not leader.done():
                leader.set_result(None)
