"""When and how a failed delivery attempt is tried again.

Every failed attempt ends in a :class:`~asyncmailer.errors.DeliveryError` whose
:class:`~asyncmailer.errors.Outcome` was decided where the backend error was mapped:

- ``RETRY_SAFE`` (rate throttling, 5xx before acceptance): retried with exponential backoff
  and full jitter, through the same rate limiter, while attempts and the deadline allow;
- ``AMBIGUOUS`` (connection lost after the body was sent, read timeout): **not** retried
  unless ``retry_ambiguous=True``, because the backend may already have accepted the
  message and a retry could deliver it twice;
- ``FINAL``: raised at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from asyncmailer.errors import ConfigurationError, DeliveryError, Outcome

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Retry settings for a transport. ``RetryPolicy(max_attempts=1)`` disables retries.

    Example::

        SESTransport(retry=RetryPolicy(max_attempts=8, deadline=120))
    """

    #: Attempts per message, the first included.
    max_attempts: int = 5
    #: Give up retrying once this many seconds have passed since ``send_mail`` was called.
    deadline: float | None = 60.0
    #: Backoff before the first retry, seconds (doubled each time, see ``multiplier``).
    initial_backoff: float = 0.1
    #: Upper bound of one backoff, seconds.
    max_backoff: float = 10.0
    #: Growth factor of the backoff.
    multiplier: float = 2.0
    #: Also retry ambiguous outcomes. The message may then be delivered twice.
    retry_ambiguous: bool = False

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1", option="max_attempts")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ConfigurationError("backoff settings must be non-negative", option="retry")

    def should_retry(self, error: DeliveryError, attempt: int, elapsed: float) -> bool:
        """True when ``error``, after ``attempt`` attempts and ``elapsed`` seconds, is retried."""
        if attempt >= self.max_attempts:
            return False
        if self.deadline is not None and elapsed >= self.deadline:
            return False
        if error.outcome is Outcome.RETRY_SAFE:
            return True
        return error.outcome is Outcome.AMBIGUOUS and self.retry_ambiguous

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): full jitter."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return (rng or random).uniform(0, ceiling)
