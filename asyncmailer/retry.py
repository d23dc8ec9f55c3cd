"""When and how a failed delivery attempt is tried again.

Every failed attempt ends in a :class:`~asyncmailer.errors.DeliveryError` whose
:class:`~asyncmailer.errors.Outcome` was decided where the backend error was mapped:

- ``RETRY_SAFE`` (rate throttling, 5xx before acceptance, could not connect): retried with
  exponential backoff and full jitter, through the same rate limiter, while attempts and
  the deadline allow;
- ``AMBIGUOUS`` (connection lost after the body was sent, read timeout): **not** retried
  unless ``retry_ambiguous=True``, because the backend may already have accepted the
  message and a retry could deliver it twice;
- ``FINAL``: raised at once.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from asyncmailer.errors import ConfigurationError, DeliveryError, Outcome

__all__ = ["RetryPolicy"]


def _check_number(name: str, value: object, *, minimum: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < minimum
    ):
        raise ConfigurationError(
            f"{name} must be a finite number >= {minimum:g}, got {value!r}", option=name
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Retry settings for a transport. ``RetryPolicy(max_attempts=1)`` disables retries.

    Example::

        SESTransport(retry=RetryPolicy(max_attempts=8, deadline=120))

    The backoff before retry *n* is drawn uniformly from
    ``[0, min(max_backoff, initial_backoff × multiplier^(n-1))]`` ("full jitter"), so that
    senders throttled together do not come back together. A retry whose backoff would end
    after ``deadline`` is not made: the last error is raised instead.

    ``retry_ambiguous=True`` also retries failures whose outcome is unknown (the connection
    dropped after the request was sent, no answer in time). The backend may have accepted
    the first attempt, so **the recipient may get the message twice**; use it only when a
    duplicate is better than a missing message. When such a retry then fails, the error
    raised is a :class:`~asyncmailer.errors.DeliveryUnknownError`, never a retry-safe one.
    """

    #: Attempts per message, the first included.
    max_attempts: int = 5
    #: No retry starts later than this many seconds after ``send_mail`` was called
    #: (None: only ``max_attempts`` limits retries).
    deadline: float | None = 60.0
    #: Backoff ceiling before the first retry, seconds (grows by ``multiplier`` each time).
    initial_backoff: float = 0.1
    #: Upper bound of one backoff, seconds.
    max_backoff: float = 10.0
    #: Growth factor of the backoff ceiling.
    multiplier: float = 2.0
    #: Also retry ambiguous outcomes. The message may then be delivered twice.
    retry_ambiguous: bool = False

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise ConfigurationError(
                f"max_attempts must be an integer >= 1, got {self.max_attempts!r}",
                option="max_attempts",
            )
        if self.deadline is not None:
            _check_number("deadline", self.deadline, minimum=0)
        _check_number("initial_backoff", self.initial_backoff, minimum=0)
        _check_number("max_backoff", self.max_backoff, minimum=0)
        _check_number("multiplier", self.multiplier, minimum=1)

    def should_retry(self, error: DeliveryError, attempt: int, elapsed: float) -> bool:
        """True when ``error``, after ``attempt`` attempts and ``elapsed`` seconds, may be retried.

        This looks at the outcome, the attempts and the deadline; :meth:`next_delay` also
        checks that the backoff ends before the deadline.
        """
        if attempt >= self.max_attempts:
            return False
        if self.deadline is not None and elapsed >= self.deadline:
            return False
        if error.outcome is Outcome.RETRY_SAFE:
            return True
        return error.outcome is Outcome.AMBIGUOUS and self.retry_ambiguous

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): full jitter."""
        exponent = min(max(attempt - 1, 0), 64)  # 2**64 × anything already exceeds max_backoff
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier**exponent)
        return (rng or random).uniform(0, ceiling)

    def next_delay(
        self,
        error: DeliveryError,
        attempt: int,
        elapsed: float,
        rng: random.Random | None = None,
    ) -> float | None:
        """The backoff before retrying ``error``, or None when it is not retried.

        Example: ``policy.next_delay(err, attempt=1, elapsed=0.2)`` → ``0.07`` (random).
        """
        if not self.should_retry(error, attempt, elapsed):
            return None
        delay = self.backoff(attempt, rng)
        if self.deadline is not None and elapsed + delay > self.deadline:
            return None
        return delay
