"""SES's own account-level suppression list, read through a local cache.

SES refuses to deliver to an address on the account's suppression list (and counts a
bounce for it). :class:`SESSuppressionList` lets asyncmailer check that list *before* it
spends a send request: ``GetSuppressedDestination`` per address not cached, concurrently
(bounded), with answers cached for ``cache_ttl`` seconds (found) or ``miss_ttl`` seconds
(not found). :meth:`SESSuppressionList.add` calls ``PutSuppressedDestination``. Example::

    async with SESSuppressionList(region_name="eu-west-1") as suppression:
        found = await suppression.suppressed(["a@example.com"])

IAM: ``ses:GetSuppressedDestination``, ``ses:PutSuppressedDestination``,
``ses:DeleteSuppressedDestination``, and ``ses:ListSuppressedDestinations`` for
:meth:`SESSuppressionList.preload`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any

from asyncmailer.errors import ConfigurationError, TransportStateError
from asyncmailer.feedback._errors import SuppressionUnavailableError
from asyncmailer.feedback._suppression import (
    SuppressionEntry,
    SuppressionReason,
    _with_email,
    normalize_address,
)

if TYPE_CHECKING:
    from aiobotocore.session import AioSession
    from types_aiobotocore_sesv2.client import SESV2Client
    from typing_extensions import Self

__all__ = ["SESSuppressionList"]


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        error = response.get("Error")
        if isinstance(error, Mapping):
            code = error.get("Code")
            return code if isinstance(code, str) else None
    return None


def _entry(email: str, data: Mapping[str, Any]) -> SuppressionEntry:
    reason = data.get("Reason", "BOUNCE")
    since = data.get("LastUpdateTime")
    if not isinstance(since, datetime):
        since = datetime.now(timezone.utc)
    elif since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    attributes = data.get("Attributes") or {}
    return SuppressionEntry(
        email=email,
        reason=SuppressionReason(reason)
        if reason in SuppressionReason.__members__
        else SuppressionReason.BOUNCE,
        since=since,
        message_id=attributes.get("MessageId"),
        feedback_id=attributes.get("FeedbackId"),
        detail="SES account-level suppression list",
    )


class SESSuppressionList:
    """A :class:`~asyncmailer.feedback.SuppressionList` backed by SESv2's account-level list.

    Pass ``client`` (an open aiobotocore ``sesv2`` client, left open) or let the list create
    one in ``async with`` from ``session``, ``region_name`` and ``endpoint_url``.
    ``max_concurrency`` bounds the lookups in flight (SES rate-limits these API calls).
    ``clock`` replaces :func:`time.monotonic` for the cache (tests).
    """

    __slots__ = (
        "_cache",
        "_client",
        "_clock",
        "_region",
        "_semaphore",
        "_session",
        "_stack",
        "cache_ttl",
        "endpoint_url",
        "max_concurrency",
        "miss_ttl",
    )

    def __init__(
        self,
        *,
        client: SESV2Client | None = None,
        session: AioSession | None = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        cache_ttl: float = 300.0,
        miss_ttl: float = 60.0,
        max_concurrency: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cache_ttl < 0 or miss_ttl < 0:
            raise ConfigurationError("cache_ttl and miss_ttl must be >= 0", option="cache_ttl")
        if max_concurrency < 1:
            raise ConfigurationError("max_concurrency must be >= 1", option="max_concurrency")
        #: Seconds a suppressed answer is cached.
        self.cache_ttl = cache_ttl
        #: Seconds a "not suppressed" answer is cached.
        self.miss_ttl = miss_ttl
        #: Lookups in flight at most.
        self.max_concurrency = max_concurrency
        #: The SES endpoint (``None``: AWS's, from the region).
        self.endpoint_url = endpoint_url
        self._client = client
        self._session = session
        self._region = region_name
        self._clock = clock
        self._cache: dict[str, tuple[float, SuppressionEntry | None]] = {}
        self._semaphore: asyncio.Semaphore | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    async def __aenter__(self) -> Self:
        if self._client is None:
            from aiobotocore.session import get_session

            session = self._session or get_session()
            stack = contextlib.AsyncExitStack()
            self._client = await stack.enter_async_context(
                session.create_client(
                    "sesv2", region_name=self._region, endpoint_url=self.endpoint_url
                )
            )
            self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client if this list created it."""
        stack, self._stack = self._stack, None
        if stack is not None:
            self._client = None
            await stack.aclose()

    def _require(self) -> SESV2Client:
        if self._client is None:
            raise TransportStateError(
                "SESSuppressionList is used outside `async with` and got no client",
                state="unopened",
            )
        return self._client

    def clear_cache(self) -> None:
        """Forget every cached answer."""
        self._cache.clear()

    async def _lookup(self, client: SESV2Client, email: str) -> SuppressionEntry | None:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
        async with self._semaphore:
            try:
                response = await client.get_suppressed_destination(EmailAddress=email)
            except Exception as exc:
                if _error_code(exc) == "NotFoundException":
                    entry = None
                else:
                    raise SuppressionUnavailableError(
                        f"GetSuppressedDestination failed for {email}: {exc!r}"
                    ) from exc
            else:
                data: Mapping[str, Any] = response.get("SuppressedDestination", {})
                entry = _entry(email, data)
        ttl = self.cache_ttl if entry is not None else self.miss_ttl
        self._cache[email] = (self._clock() + ttl, entry)
        return entry

    async def suppressed(self, addresses: Sequence[str]) -> Mapping[str, SuppressionEntry]:
        """The suppressed ones among ``addresses``, keyed as given (cached answers first)."""
        now = self._clock()
        found: dict[str, SuppressionEntry] = {}
        missing: dict[str, list[str]] = {}
        for address in addresses:
            email = normalize_address(address)
            cached = self._cache.get(email)
            if cached is not None and cached[0] > now:
                if cached[1] is not None:
                    found[address] = cached[1]
            else:
                missing.setdefault(email, []).append(address)
        if missing:
            client = self._require()
            emails = list(missing)
            results = await asyncio.gather(*(self._lookup(client, e) for e in emails))
            for email, entry in zip(emails, results, strict=True):
                if entry is not None:
                    for address in missing[email]:
                        found[address] = entry
        return found

    async def add(self, entry: SuppressionEntry) -> None:
        """Put ``entry.email`` on the account's list (``PutSuppressedDestination``)."""
        client = self._require()
        email = normalize_address(entry.email)
        try:
            await client.put_suppressed_destination(EmailAddress=email, Reason=entry.reason.value)
        except Exception as exc:
            raise SuppressionUnavailableError(
                f"PutSuppressedDestination failed for {email}: {exc!r}"
            ) from exc
        if entry.email != email:
            entry = _with_email(entry, email)
        self._cache[email] = (self._clock() + self.cache_ttl, entry)

    async def remove(self, address: str) -> bool:
        """Take ``address`` off the account's list (``DeleteSuppressedDestination``)."""
        client = self._require()
        email = normalize_address(address)
        self._cache.pop(email, None)
        try:
            await client.delete_suppressed_destination(EmailAddress=email)
        except Exception as exc:
            if _error_code(exc) == "NotFoundException":
                return False
            raise SuppressionUnavailableError(
                f"DeleteSuppressedDestination failed for {email}: {exc!r}"
            ) from exc
        return True

    async def preload(self) -> int:
        """Cache the whole list (``ListSuppressedDestinations``, every page); returns its size.

        Addresses cached this way are answered locally for ``cache_ttl`` seconds; others
        are still looked up one by one.
        """
        client = self._require()
        count = 0
        token: str | None = None
        expires = self._clock() + self.cache_ttl
        while True:
            try:
                if token:
                    page = await client.list_suppressed_destinations(PageSize=1000, NextToken=token)
                else:
                    page = await client.list_suppressed_destinations(PageSize=1000)
            except Exception as exc:
                raise SuppressionUnavailableError(
                    f"ListSuppressedDestinations failed: {exc!r}"
                ) from exc
            for summary in page.get("SuppressedDestinationSummaries", []):
                email = normalize_address(summary["EmailAddress"])
                self._cache[email] = (expires, _entry(email, summary))
                count += 1
            token = page.get("NextToken")
            if not token:
                return count
