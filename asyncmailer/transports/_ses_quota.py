"""The SES account quota: the sending rate it allows and the 24-hour guard.

Read with ``GetSendQuota`` (v1) or ``GetAccount().SendQuota`` (v2) when the transport
opens, then every ``refresh_interval`` seconds. Between reads, every recipient we send is
counted against ``Max24HourSend`` so that a send that would exceed it fails (or waits)
before any request is made.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from asyncmailer.errors import ConfigurationError, DailyQuotaExceededError
from asyncmailer.options import DailyQuotaPolicy

__all__ = ["QuotaTracker"]

logger = logging.getLogger("asyncmailer.ses")

QuotaReader = Callable[[], Awaitable[tuple[float, float, float]]]


class QuotaTracker:
    """Holds the last quota read from SES and guards the 24-hour limit."""

    def __init__(
        self,
        *,
        safety_factor: float,
        refresh_interval: float | None,
        policy: DailyQuotaPolicy,
        enabled: bool,
    ) -> None:
        if enabled and policy == "wait" and not refresh_interval:
            # Nothing would ever wake a waiting send: refuse instead of hanging.
            raise ConfigurationError(
                "QuotaPolicy(daily='wait') needs refresh: the quota is only seen to grow "
                "when it is read again",
                option="refresh",
            )
        #: Fraction of MaxSendRate used as the sending rate.
        self.safety_factor = safety_factor
        #: Seconds between quota reads (None: read once).
        self.refresh_interval = refresh_interval
        #: What to do when a send would exceed Max24HourSend.
        self.policy: DailyQuotaPolicy = policy
        #: Whether the quota is read at all.
        self.enabled = enabled
        #: MaxSendRate as last read (recipients per second).
        self.max_send_rate: float | None = None
        #: Max24HourSend as last read (negative or None: unlimited/unknown).
        self.max_24_hour_send: float | None = None
        #: SentLast24Hours as last read, plus what we sent since.
        self.sent_last_24_hours = 0.0
        self._reader: QuotaReader | None = None
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[float], object]] = []
        self._changed: asyncio.Event | None = None

    @property
    def rate(self) -> float | None:
        """The sending rate to use: MaxSendRate × safety factor (None until read)."""
        if self.max_send_rate is None:
            return None
        return self.max_send_rate * self.safety_factor

    def on_rate_change(self, listener: Callable[[float], object]) -> None:
        """Call ``listener(rate)`` whenever a refresh changes the rate."""
        self._listeners.append(listener)

    async def start(self, reader: QuotaReader) -> None:
        """Read the quota now and start the periodic refresh."""
        self._reader = reader
        self._changed = asyncio.Event()
        await self.refresh()
        if self.rate is None or self.rate <= 0:
            raise ConfigurationError(
                f"the account's MaxSendRate is {self.max_send_rate!r}: cannot derive a rate",
                option="sending_rate",
            )
        if self.refresh_interval:
            self._task = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def stop(self) -> None:
        """Stop refreshing."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._listeners.clear()

    async def refresh(self) -> None:
        """Read the quota again; notify listeners if the rate changed."""
        assert self._reader is not None
        old_rate = self.rate
        max_rate, max_24h, sent = await self._reader()
        self.max_send_rate = max_rate
        self.max_24_hour_send = max_24h
        self.sent_last_24_hours = sent
        rate = self.rate
        if rate is not None and rate > 0 and rate != old_rate and old_rate is not None:
            logger.info("asyncmailer: SES MaxSendRate changed, sending at %.3f/s", rate)
            for listener in self._listeners:
                listener(rate)
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    async def _refresh_loop(self) -> None:
        assert self.refresh_interval
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self.refresh()
            except Exception:  # keep the last known quota; never kill the transport
                logger.warning("asyncmailer: could not refresh the SES quota", exc_info=True)

    def _unlimited(self) -> bool:
        limit = self.max_24_hour_send
        return limit is None or limit < 0

    async def reserve(self, weight: int) -> None:
        """Count ``weight`` recipients against the daily quota, or fail/wait if it is used up."""
        if not self.enabled or self.policy == "ignore" or self._unlimited():
            return
        while True:
            limit = self.max_24_hour_send
            assert limit is not None
            if self.sent_last_24_hours + weight <= limit:
                self.sent_last_24_hours += weight
                return
            if self.policy == "fail" or self._changed is None:
                raise DailyQuotaExceededError(
                    f"sending {weight} more recipient(s) would exceed the SES daily quota "
                    f"({self.sent_last_24_hours:.0f} of {limit:.0f} used); nothing was sent. "
                    "Request a higher quota or use QuotaPolicy(daily='wait')",
                    code="Max24HourSend",
                )
            await self._changed.wait()

    def release(self, weight: int) -> None:
        """Give back ``weight`` recipients counted by :meth:`reserve` (the send failed)."""
        if self.enabled and not self._unlimited():
            self.sent_last_24_hours = max(0.0, self.sent_last_24_hours - weight)
