"""Counters of the local endpoint and the two rate measures the tests need."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["EndpointStats", "max_events_in_window", "sustained_rate"]


def max_events_in_window(
    times: Sequence[float], *, window: float = 1.0, weights: Sequence[int] | None = None
) -> int:
    """The most events (or the largest weight sum) inside any window of ``window`` seconds.

    A window is half-open, ``[t, t + window)``: two events exactly ``window`` apart are never
    in the same window. Example::

        >>> max_events_in_window([0.0, 0.5, 0.99, 1.0, 1.2])
        4
        >>> max_events_in_window([0.0, 0.5, 1.0], weights=[1, 5, 5])
        10
    """
    if weights is None:
        weights = [1] * len(times)
    elif len(weights) != len(times):
        raise ValueError("times and weights must have the same length")
    events = sorted(zip(times, weights, strict=True))
    best = current = left = 0
    for t, weight in events:
        current += weight
        while events[left][0] + window <= t:
            current -= events[left][1]
            left += 1
        best = max(best, current)
    return best


def sustained_rate(
    times: Sequence[float], *, weights: Sequence[int] | None = None, skip: float = 0.0
) -> float:
    """Events (or weight) per second from the first to the last event, after ``skip`` seconds.

    ``skip`` ignores the events of the first ``skip`` seconds (an initial burst). The rate is
    measured over intervals: N events spread over D seconds give (N - 1) / D; with weights,
    the first event's weight is left out the same way. Fewer than two events, or no time
    between them, give 0.0. Example::

        >>> sustained_rate([0.0, 0.1, 0.2, 0.3, 0.4])
        10.0
    """
    if weights is None:
        weights = [1] * len(times)
    elif len(weights) != len(times):
        raise ValueError("times and weights must have the same length")
    events = sorted(zip(times, weights, strict=True))
    if not events:
        return 0.0
    start = events[0][0] + skip
    kept = [(t, w) for t, w in events if t >= start]
    if len(kept) < 2:
        return 0.0
    duration = kept[-1][0] - kept[0][0]
    if duration <= 0:
        return 0.0
    return (sum(w for _, w in kept) - kept[0][1]) / duration


@dataclasses.dataclass(frozen=True, kw_only=True)
class EndpointStats:
    """A snapshot of the endpoint's counters.

    Send arrivals are measured on the endpoint's clock (:func:`time.monotonic`, shared by
    every process on the machine) when the whole request has been read, for every send
    request whatever its fate; ``send_recipients[i]`` and ``send_accepted[i]`` describe
    ``send_arrivals[i]``. Example::

        stats = endpoint.stats()
        assert stats.max_starts_in_window(1.0, weighted=True) <= 14
    """

    #: Requests per API action: ``"ses:SendRawEmail"``, ``"sesv2:SendEmail"``, ``"control"``...
    requests: Mapping[str, int]
    #: Error answers per error code (``Throttling``, ``TooManyRequestsException``...).
    errors: Mapping[str, int]
    #: Messages stored.
    messages_accepted: int
    #: Envelope recipients of the messages stored.
    recipients_accepted: int
    #: Send requests hung up on before acceptance (nothing stored).
    dropped_before_accept: int
    #: Send requests hung up on after their message was stored.
    dropped_after_accept: int
    #: SES API requests received and not yet answered (injected latency included).
    in_flight: int
    #: The highest :attr:`in_flight` seen.
    max_in_flight: int
    #: TCP connections accepted.
    connections_opened: int
    #: TCP connections open now.
    connections_current: int
    #: Arrival time of each send request on the endpoint's clock.
    send_arrivals: tuple[float, ...]
    #: Envelope recipients of each send request (0 when it could not be parsed).
    send_recipients: tuple[int, ...]
    #: Whether each send request's message was stored.
    send_accepted: tuple[bool, ...]
    #: The endpoint clock's value at start (or last reset).
    started_clock: float
    #: :func:`time.time` at start (or last reset).
    started_time: float

    def _select(self, accepted_only: bool) -> tuple[list[float], list[int]]:
        if not accepted_only:
            return list(self.send_arrivals), list(self.send_recipients)
        chosen = [i for i, accepted in enumerate(self.send_accepted) if accepted]
        return [self.send_arrivals[i] for i in chosen], [self.send_recipients[i] for i in chosen]

    def max_starts_in_window(
        self, window: float = 1.0, weighted: bool = False, *, accepted_only: bool = False
    ) -> int:
        """The most send-request arrivals (recipients if ``weighted``) in any ``window`` s.

        See :func:`max_events_in_window`; ``accepted_only`` counts stored messages only.
        """
        times, weights = self._select(accepted_only)
        return max_events_in_window(times, window=window, weights=weights if weighted else None)

    def sustained_rate(
        self, *, weighted: bool = False, skip: float = 0.0, accepted_only: bool = False
    ) -> float:
        """Send requests (recipients if ``weighted``) per second; see :func:`sustained_rate`."""
        times, weights = self._select(accepted_only)
        return sustained_rate(times, weights=weights if weighted else None, skip=skip)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = dataclasses.asdict(self)
        for name in ("send_arrivals", "send_recipients", "send_accepted"):
            data[name] = list(data[name])
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EndpointStats:
        """Rebuild a snapshot from :meth:`to_json` output."""
        values = dict(data)
        for name in ("send_arrivals", "send_recipients", "send_accepted"):
            values[name] = tuple(values[name])
        values["requests"] = dict(values["requests"])
        values["errors"] = dict(values["errors"])
        return cls(**values)


class Counters:
    """The mutable counters behind :class:`EndpointStats` (one lock for consistent snapshots)."""

    __slots__ = (
        "dropped_after_accept",
        "dropped_before_accept",
        "errors",
        "in_flight",
        "lock",
        "max_in_flight",
        "messages_accepted",
        "recipients_accepted",
        "requests",
        "send_accepted",
        "send_arrivals",
        "send_recipients",
        "started_clock",
        "started_time",
    )

    def __init__(self, started_clock: float, started_time: float) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.clear(started_clock, started_time)

    def clear(self, started_clock: float, started_time: float) -> None:
        """Zero everything but the requests in flight now."""
        self.requests: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.messages_accepted = 0
        self.recipients_accepted = 0
        self.dropped_before_accept = 0
        self.dropped_after_accept = 0
        self.max_in_flight = self.in_flight
        self.send_arrivals: list[float] = []
        self.send_recipients: list[int] = []
        self.send_accepted: list[bool] = []
        self.started_clock = started_clock
        self.started_time = started_time

    def snapshot(self, connections_opened: int, connections_current: int) -> EndpointStats:
        """A consistent copy."""
        with self.lock:
            return EndpointStats(
                requests=dict(self.requests),
                errors=dict(self.errors),
                messages_accepted=self.messages_accepted,
                recipients_accepted=self.recipients_accepted,
                dropped_before_accept=self.dropped_before_accept,
                dropped_after_accept=self.dropped_after_accept,
                in_flight=self.in_flight,
                max_in_flight=self.max_in_flight,
                connections_opened=connections_opened,
                connections_current=connections_current,
                send_arrivals=tuple(self.send_arrivals),
                send_recipients=tuple(self.send_recipients),
                send_accepted=tuple(self.send_accepted),
                started_clock=self.started_clock,
                started_time=self.started_time,
            )
