"""Reading content: bytes, text, async iterators, files (anyio), ``data:`` and ``http(s)`` URLs.

:func:`pending_sources` lists the sources that need I/O; :func:`resolve_sources` reads them
without blocking the event loop and returns ``{field: bytes}``. The synchronous builder then
only ever sees bytes or text, which is how :func:`~asyncmailer.mime.compose` and
:func:`~asyncmailer.mime.compose_sync` share one code path.
"""

from __future__ import annotations

import asyncio
import binascii
import re
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from anyio import Path as AsyncPath

from asyncmailer._controls import control_char_error
from asyncmailer.errors import ConfigurationError, ContentError, HeaderError
from asyncmailer.message import Attachment, IcalEvent, Message
from asyncmailer.mime._headers import check_media_type

__all__ = [
    "DEFAULT_MAX_URL_BYTES",
    "DEFAULT_URL_TIMEOUT",
    "PendingSource",
    "is_http_url",
    "parse_data_url",
    "pending_sources",
    "resolve_sources",
]

#: Largest response body fetched for an ``http(s)`` ``href`` (octets).
DEFAULT_MAX_URL_BYTES = 25 * 1024 * 1024
#: Seconds allowed for one ``http(s)`` fetch, connection included.
DEFAULT_URL_TIMEOUT = 30.0

_DATA_URL = re.compile(r"data:([^,]*?)(;base64)?,(.*)", re.DOTALL | re.IGNORECASE)
_HTTP_URL = re.compile(r"https?://", re.IGNORECASE)
_BASE64 = re.compile(
    rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2,3})?"
)


def is_http_url(value: str) -> bool:
    """True for ``http://`` and ``https://`` URLs."""
    return _HTTP_URL.match(value) is not None


def parse_data_url(url: str, field: str) -> tuple[bytes, str]:
    """Decode a ``data:`` URL into (bytes, media type); the type defaults to ``text/plain``.

    Raises :class:`~asyncmailer.errors.ContentError` for a malformed URL and
    :class:`~asyncmailer.errors.HeaderError` for a media type that is not a valid
    ``type/subtype`` (a data URL's type is written into the part's ``Content-Type``).
    """
    match = _DATA_URL.fullmatch(url.strip())
    if match is None:
        raise ContentError(f"{field}: malformed data: URL", field=field, source=url[:64])
    media, is_b64, payload = match.groups()
    try:
        if is_b64:
            compact = re.sub(r"\s+", "", payload).encode("ascii")
            if not _BASE64.fullmatch(compact):
                raise ValueError("invalid base64")
            data = binascii.a2b_base64(compact + b"=" * (-len(compact) % 4))
        else:
            data = unquote_to_bytes(payload)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ContentError(f"{field}: malformed data: URL", field=field, source=url[:64]) from None
    # The media type becomes the part's Content-Type: it passes the content_type check,
    # and the (ignored) parameters must be printable ASCII like the rest of a URL.
    why = control_char_error(media)
    if why is not None or not media.isascii():
        raise HeaderError(
            f"{field}: invalid media type in data: URL {media!r}: "
            + (why or "non-ASCII character"),
            field=field,
        )
    mime_type = media.split(";", 1)[0].strip(" \t").lower() or "text/plain"
    return data, check_media_type(mime_type, field)


@dataclass(frozen=True, slots=True)
class PendingSource:
    """A source that needs I/O before the message can be built."""

    #: The message field it belongs to (``"attachments[2]"``, ``"html"``...).
    field: str
    #: ``"path"``, ``"url"`` or ``"iter"``.
    kind: str
    #: The path, the URL, or the async iterable.
    source: Any


def _source_io(field: str, value: object) -> PendingSource | None:
    """The I/O a body/attachment value needs, if any."""
    if isinstance(value, Attachment):
        if value.raw is not None:
            return None
        content: object = value.content
        path, href = value.path, value.href
    elif isinstance(value, IcalEvent):
        content, path, href = value.content, value.path, value.href
    else:
        return None
    if content is not None:
        if isinstance(content, (bytes, bytearray, memoryview, str)):
            return None
        return PendingSource(field, "iter", content)
    for location in (path, href):
        if location is None:
            continue
        if location[:5].lower() == "data:":
            return None
        if is_http_url(location):
            return PendingSource(field, "url", location)
        if location is path:
            return PendingSource(field, "path", location)
        raise ContentError(
            f"{field}: href must be an http(s):// or data: URL", field=field, source=location
        )
    return None


def pending_sources(message: Message) -> list[PendingSource]:
    """Every source of ``message`` that needs reading (files, URLs, async iterators)."""
    pending: list[PendingSource] = []
    for field in ("raw", "text", "html", "amp", "watch_html", "ical_event"):
        item = _source_io(field, getattr(message, field))
        if item is not None:
            pending.append(item)
    for group in ("alternatives", "attachments"):
        for index, value in enumerate(getattr(message, group)):
            item = _source_io(f"{group}[{index}]", value)
            if item is not None:
                pending.append(item)
    return pending


async def _read_iter(field: str, iterable: AsyncIterable[Any]) -> bytes:
    chunks: list[bytes] = []
    try:
        async for chunk in iterable:
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise ContentError(
                    f"{field}: an async iterator must yield bytes, not {type(chunk).__name__}",
                    field=field,
                )
            chunks.append(bytes(chunk))
    except ContentError:
        raise
    except Exception as exc:
        raise ContentError(f"{field}: reading the content failed: {exc!r}", field=field) from exc
    return b"".join(chunks)


async def _read_path(field: str, path: str) -> bytes:
    try:
        return await AsyncPath(path).read_bytes()
    except (OSError, ValueError) as exc:
        raise ContentError(
            f"{field}: cannot read {path!r}: {exc}", field=field, source=path
        ) from exc


async def _fetch(field: str, url: str, max_bytes: int, seconds: float) -> bytes:
    try:
        import aiohttp  # optional dependency, only for URLs
    except ImportError:  # pragma: no cover - aiohttp is installed in tests
        raise ContentError(
            f"{field}: fetching URLs needs aiohttp (pip install 'asyncmailer[http]')",
            field=field,
            source=url,
        ) from None
    try:
        client_timeout = aiohttp.ClientTimeout(total=seconds)
        async with (
            aiohttp.ClientSession(timeout=client_timeout) as session,
            # Redirects are not followed: the caller approved this URL, not wherever its
            # server points next (a redirect to 127.0.0.1 or a cloud metadata address
            # would attach internal data to outgoing mail).
            session.get(url, allow_redirects=False) as response,
        ):
            if 300 <= response.status < 400:
                location = response.headers.get("Location", "")
                raise ContentError(
                    f"{field}: GET {url} answered HTTP {response.status} (a redirect to "
                    f"{location[:200]!r}); redirects are not followed: use the final URL",
                    field=field,
                    source=url,
                )
            if response.status != 200:
                raise ContentError(
                    f"{field}: GET {url} answered HTTP {response.status}", field=field, source=url
                )
            if response.content_length is not None and response.content_length > max_bytes:
                raise ContentError(
                    f"{field}: {url} is larger than {max_bytes} octets", field=field, source=url
                )
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(65536):
                size += len(chunk)
                if size > max_bytes:
                    raise ContentError(
                        f"{field}: {url} is larger than {max_bytes} octets",
                        field=field,
                        source=url,
                    )
                chunks.append(chunk)
            return b"".join(chunks)
    except ContentError:
        raise
    except (TimeoutError, asyncio.TimeoutError) as exc:
        raise ContentError(f"{field}: GET {url} timed out", field=field, source=url) from exc
    except (aiohttp.ClientError, ValueError) as exc:
        raise ContentError(f"{field}: GET {url} failed: {exc}", field=field, source=url) from exc


async def resolve_sources(
    message: Message, *, max_url_bytes: int, url_timeout: float
) -> dict[str, bytes]:
    """Read every pending source of ``message``; ``{field: content}``.

    Honours ``disable_file_access`` and ``disable_url_access`` with
    :class:`~asyncmailer.errors.ContentError`. Each URL is fetched with one ``GET``
    (redirects are refused, not followed), at most ``max_url_bytes`` octets (decoded)
    within ``url_timeout`` seconds, connection and body included.
    """
    if isinstance(max_url_bytes, bool) or not isinstance(max_url_bytes, int) or max_url_bytes < 0:
        raise ConfigurationError(
            f"max_url_bytes must be an int >= 0, not {max_url_bytes!r}", option="max_url_bytes"
        )
    if not isinstance(url_timeout, (int, float)) or not 0 < url_timeout < float("inf"):
        raise ConfigurationError(
            f"url_timeout must be a positive number of seconds, not {url_timeout!r}",
            option="url_timeout",
        )
    resolved: dict[str, bytes] = {}
    for item in pending_sources(message):
        if item.kind == "iter":
            resolved[item.field] = await _read_iter(item.field, item.source)
        elif item.kind == "path":
            if message.disable_file_access:
                raise ContentError(
                    f"{item.field}: file access is disabled", field=item.field, source=item.source
                )
            resolved[item.field] = await _read_path(item.field, item.source)
        else:
            if message.disable_url_access:
                raise ContentError(
                    f"{item.field}: URL access is disabled (set disable_url_access=False)",
                    field=item.field,
                    source=item.source,
                )
            resolved[item.field] = await _fetch(item.field, item.source, max_url_bytes, url_timeout)
    return resolved
