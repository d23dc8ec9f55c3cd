"""A suppression list in Redis, shared by every process and host.

All entries live in one Redis hash (``key``; field: the normalized address, value: a small
JSON document), so a message's whole recipient list is one ``HMGET``: one round trip,
whatever the number of recipients. Use the same Redis as
:class:`~asyncmailer.limits.RedisRateLimiter`. Example::

    async with RedisSuppressionList("redis://redis:6379/0") as suppression:
        found = await suppression.suppressed(["a@example.com", "b@example.com"])

A Redis failure raises :class:`~asyncmailer.feedback.SuppressionUnavailableError`: the
caller (a transport's preflight) decides whether to send without the check.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from asyncmailer.errors import ConfigurationError
from asyncmailer.feedback._errors import SuppressionUnavailableError
from asyncmailer.feedback._events import parse_timestamp
from asyncmailer.feedback._suppression import (
    SuppressionEntry,
    SuppressionReason,
    normalize_address,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from typing_extensions import Self

__all__ = ["RedisSuppressionList"]

INSTALL_HINT = "RedisSuppressionList needs the redis package: pip install 'asyncmailer[redis]'"


def _encode(entry: SuppressionEntry) -> str:
    return json.dumps(
        {
            "r": entry.reason.value,
            "t": entry.since.isoformat(),
            "m": entry.message_id,
            "f": entry.feedback_id,
            "d": entry.detail,
        },
        separators=(",", ":"),
    )


def _decode(email: str, data: bytes | str) -> SuppressionEntry:
    doc = json.loads(data)
    return SuppressionEntry(
        email=email,
        reason=SuppressionReason(doc["r"]),
        since=parse_timestamp(doc["t"]),
        message_id=doc.get("m"),
        feedback_id=doc.get("f"),
        detail=doc.get("d"),
    )


class RedisSuppressionList:
    """A :class:`~asyncmailer.feedback.SuppressionList` in a Redis hash.

    ``url_or_client`` is a Redis URL (the client is created on first use and closed by
    :meth:`aclose`) or a ``redis.asyncio.Redis`` client (left open). ``timeout`` bounds each
    command, in seconds, for a client created from a URL.
    """

    __slots__ = ("_client", "_owned", "key", "timeout")

    def __init__(
        self,
        url_or_client: str | Redis,
        *,
        key: str = "asyncmailer:suppression",
        timeout: float = 1.0,
    ) -> None:
        if not isinstance(key, str) or not key:
            raise ConfigurationError("key must be a non-empty string", option="key")
        #: The Redis hash holding the entries.
        self.key = key
        #: Seconds allowed for one command (clients created from a URL).
        self.timeout = timeout
        if isinstance(url_or_client, str):
            try:
                from redis.asyncio import Redis
            except ImportError as exc:  # pragma: no cover
                raise ConfigurationError(INSTALL_HINT, option="url_or_client") from exc
            self._client: Redis = Redis.from_url(
                url_or_client, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            self._owned = True
        elif hasattr(url_or_client, "hmget"):
            self._client = url_or_client
            self._owned = False
        else:
            raise ConfigurationError(
                "url_or_client must be a Redis URL or a redis.asyncio.Redis client",
                option="url_or_client",
            )

    async def __aenter__(self) -> Self:
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
        if self._owned:
            await self._client.aclose()

    async def suppressed(self, addresses: Sequence[str]) -> Mapping[str, SuppressionEntry]:
        """The suppressed ones among ``addresses``, keyed as given: one ``HMGET``."""
        if not addresses:
            return {}
        fields = [normalize_address(a) for a in addresses]
        try:
            values = await self._client.hmget(self.key, fields)
        except Exception as exc:
            raise SuppressionUnavailableError(f"Redis suppression lookup failed: {exc!r}") from exc
        found: dict[str, SuppressionEntry] = {}
        for address, email, value in zip(addresses, fields, values, strict=True):
            if value is not None:
                found[address] = _decode(email, value)
        return found

    async def add(self, entry: SuppressionEntry) -> None:
        """Suppress ``entry.email`` (``HSET``)."""
        email = normalize_address(entry.email)
        try:
            await self._client.hset(self.key, email, _encode(entry))
        except Exception as exc:
            raise SuppressionUnavailableError(f"Redis suppression update failed: {exc!r}") from exc

    async def remove(self, address: str) -> bool:
        """Stop suppressing ``address`` (``HDEL``); True if it was suppressed."""
        try:
            removed = await self._client.hdel(self.key, normalize_address(address))
        except Exception as exc:
            raise SuppressionUnavailableError(f"Redis suppression update failed: {exc!r}") from exc
        return bool(removed)

    async def count(self) -> int:
        """How many addresses are suppressed (``HLEN``)."""
        try:
            return int(await self._client.hlen(self.key))
        except Exception as exc:
            raise SuppressionUnavailableError(f"Redis suppression count failed: {exc!r}") from exc
