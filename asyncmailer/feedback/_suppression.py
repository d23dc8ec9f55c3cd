"""Suppression lists: addresses that must not be mailed again, and the policy that applies them.

A :class:`SuppressionList` answers, for all recipients of a message at once, which ones are
suppressed and why. Three implementations ship: :class:`MemorySuppressionList` (one
process), :class:`~asyncmailer.feedback.RedisSuppressionList` (every process and host) and
:class:`~asyncmailer.feedback.SESSuppressionList` (the SES account-level list).
:func:`check_suppression` applies a :data:`SuppressionPolicy` to a message's recipients;
it is what a transport calls in its preflight, once per message. :func:`apply_to` makes the
feedback callback that fills a list. Example::

    suppression = MemorySuppressionList()
    consumer = SQSEventConsumer(queue_url, apply_to(suppression))
    ...
    check = await check_suppression(suppression, envelope_to, policy="drop")
    send_to = check.allowed

Addresses are compared case-insensitively (as SES does): a list stores and looks up
:func:`normalize_address` of each address, and answers with the addresses as given.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal, Protocol, runtime_checkable

from asyncmailer.feedback._errors import SuppressedRecipientError
from asyncmailer.feedback._events import BounceEvent, ComplaintEvent, SESEvent

__all__ = [
    "EventCallback",
    "MemorySuppressionList",
    "SuppressionCheck",
    "SuppressionEntry",
    "SuppressionList",
    "SuppressionPolicy",
    "SuppressionReason",
    "apply_to",
    "check_suppression",
    "normalize_address",
]

#: What happens to a message with suppressed recipients: ``"fail"`` raises
#: :class:`~asyncmailer.feedback.SuppressedRecipientError` (nothing is sent), ``"drop"``
#: sends to the others (and raises when none is left).
SuppressionPolicy = Literal["fail", "drop"]

#: An async callback that receives each event (webhooks, the SQS consumer).
EventCallback = Callable[[SESEvent], Awaitable[None]]


class SuppressionReason(str, enum.Enum):
    """Why an address is suppressed; the values are SESv2's ``SuppressionListReason``."""

    #: A permanent bounce.
    BOUNCE = "BOUNCE"
    #: A complaint.
    COMPLAINT = "COMPLAINT"


@dataclass(frozen=True, slots=True, kw_only=True)
class SuppressionEntry:
    """One suppressed address."""

    #: The address, normalized (:func:`normalize_address`).
    email: str
    #: Why it is suppressed.
    reason: SuppressionReason
    #: When it was added (the bounce or complaint time when it came from an event).
    since: datetime
    #: The SES message id of the message that bounced or drew the complaint, when known.
    message_id: str | None = None
    #: SES's feedback id of the bounce or complaint, when known.
    feedback_id: str | None = None
    #: A short explanation (``"Permanent/General: smtp; 550 5.1.1 user unknown"``).
    detail: str | None = field(default=None, compare=False)


def normalize_address(address: str) -> str:
    """The form a suppression list stores: surrounding space removed, lower case."""
    return address.strip().lower()


@runtime_checkable
class SuppressionList(Protocol):
    """Where suppressed addresses live. Implementations must be safe to share between tasks."""

    async def suppressed(self, addresses: Sequence[str]) -> Mapping[str, SuppressionEntry]:
        """The suppressed ones among ``addresses``, keyed as given. One backend round trip."""
        ...

    async def add(self, entry: SuppressionEntry) -> None:
        """Suppress ``entry.email`` (replacing an earlier entry for it)."""
        ...

    async def remove(self, address: str) -> bool:
        """Stop suppressing ``address``; True if it was suppressed."""
        ...


class MemorySuppressionList:
    """A suppression list in this process's memory (tests, single-process services).

    Example::

        suppression = MemorySuppressionList()
        await suppression.add(
            SuppressionEntry(email="a@example.com", reason=SuppressionReason.BOUNCE, since=now)
        )
    """

    __slots__ = ("_entries",)

    def __init__(self, entries: Sequence[SuppressionEntry] = ()) -> None:
        self._entries: dict[str, SuppressionEntry] = {}
        for entry in entries:
            self._entries[normalize_address(entry.email)] = entry

    def __len__(self) -> int:
        return len(self._entries)

    async def suppressed(self, addresses: Sequence[str]) -> Mapping[str, SuppressionEntry]:
        """The suppressed ones among ``addresses``, keyed as given."""
        return self.lookup(addresses)

    def lookup(self, addresses: Sequence[str]) -> dict[str, SuppressionEntry]:
        """:meth:`suppressed`, synchronously."""
        entries = self._entries
        if not entries:
            return {}
        found: dict[str, SuppressionEntry] = {}
        for address in addresses:
            entry = entries.get(address.strip().lower())
            if entry is not None:
                found[address] = entry
        return found

    async def add(self, entry: SuppressionEntry) -> None:
        """Suppress ``entry.email``."""
        email = normalize_address(entry.email)
        if email != entry.email:
            entry = _with_email(entry, email)
        self._entries[email] = entry

    async def remove(self, address: str) -> bool:
        """Stop suppressing ``address``; True if it was suppressed."""
        return self._entries.pop(normalize_address(address), None) is not None


def _with_email(entry: SuppressionEntry, email: str) -> SuppressionEntry:
    return SuppressionEntry(
        email=email,
        reason=entry.reason,
        since=entry.since,
        message_id=entry.message_id,
        feedback_id=entry.feedback_id,
        detail=entry.detail,
    )


@dataclass(frozen=True, slots=True)
class SuppressionCheck:
    """The outcome of :func:`check_suppression` for one message."""

    #: The recipients to send to, in their original order.
    allowed: tuple[str, ...]
    #: The suppressed recipients (as given) and why; empty when none is.
    suppressed: Mapping[str, SuppressionEntry]


async def check_suppression(
    suppression: SuppressionList,
    recipients: Sequence[str],
    *,
    policy: SuppressionPolicy = "fail",
) -> SuppressionCheck:
    """Apply ``policy`` to a message's envelope recipients: one lookup per message.

    Under ``"fail"`` any suppressed recipient raises
    :class:`~asyncmailer.feedback.SuppressedRecipientError` listing them all; under
    ``"drop"`` they are left out of :attr:`SuppressionCheck.allowed` (and reported in
    :attr:`SuppressionCheck.suppressed`), and the error is raised only when no recipient
    is left.
    """
    if policy not in ("fail", "drop"):
        from asyncmailer.errors import ConfigurationError

        raise ConfigurationError(f"unknown suppression policy {policy!r}", option="policy")
    found = await suppression.suppressed(recipients)
    if not found:
        return SuppressionCheck(tuple(recipients), {})
    allowed = tuple(r for r in recipients if r not in found)
    if policy == "fail" or not allowed:
        names = ", ".join(sorted(found))
        raise SuppressedRecipientError(
            f"{len(found)} recipient(s) on the suppression list: {names}", suppressed=found
        )
    return SuppressionCheck(allowed, found)


def apply_to(
    suppression: SuppressionList,
    *,
    bounces: bool = True,
    complaints: bool = True,
    undetermined: bool = False,
) -> EventCallback:
    """A ready event callback that suppresses permanent bounces and complaints.

    Each bounced (``Permanent``; also ``Undetermined`` with ``undetermined=True``) or
    complaining recipient is added with its reason, the event's time, the SES message id
    and feedback id. Other events are ignored. Use it as the callback of a webhook or of
    :class:`~asyncmailer.feedback.SQSEventConsumer`, or call it from your own.
    """

    async def callback(event: SESEvent) -> None:
        if isinstance(event, BounceEvent) and bounces:
            if event.bounce_type != "Permanent" and not (
                undetermined and event.bounce_type == "Undetermined"
            ):
                return
            for recipient in event.recipients:
                detail = f"{event.bounce_type}/{event.bounce_subtype}"
                if recipient.diagnostic_code:
                    detail += f": {recipient.diagnostic_code}"
                await suppression.add(
                    SuppressionEntry(
                        email=normalize_address(recipient.email),
                        reason=SuppressionReason.BOUNCE,
                        since=event.timestamp,
                        message_id=event.message_id or None,
                        feedback_id=event.feedback_id,
                        detail=detail[:500],
                    )
                )
        elif isinstance(event, ComplaintEvent) and complaints:
            for email in event.recipients:
                await suppression.add(
                    SuppressionEntry(
                        email=normalize_address(email),
                        reason=SuppressionReason.COMPLAINT,
                        since=event.timestamp,
                        message_id=event.message_id or None,
                        feedback_id=event.feedback_id,
                        detail=event.complaint_feedback_type,
                    )
                )

    return callback


def utcnow() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(timezone.utc)
