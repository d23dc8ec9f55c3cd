"""Creating (and tuning) the aiobotocore client that SESTransport owns.

Only clients the transport creates are tuned; a client you pass in is used unchanged.
The tuning pays back what composing and rate limiting cost (see docs/benchmarks.md):

- botocore url-encodes a v1 ``SendRawEmail`` body twice per request (once for the SigV4
  payload hash, once for the wire), walking the base64 text byte by byte in Python. The
  base64 alphabet only needs ``+``, ``/`` and ``=`` escaped, which :meth:`str.replace` does
  at C speed: a ``before-call`` handler encodes the body once. Same bytes on the wire.
- botocore rebuilds the User-Agent string for every request; it does not change between
  sends of one client, so it is built once and reused.
- botocore's SigV4 signer repeats work that gives the same answer for every request (the
  headers to sign, the Host value, the request prepared just to hash its body, the signing
  key): :mod:`asyncmailer.transports._ses_signing` does it once; same signature.
- ``parameter_validation=False``: the transport builds the parameters itself and checks the
  user's ``ses`` option names against the operation's model.
- aiobotocore's event emitter passes every handler's result (~30 per request) through
  ``inspect.isawaitable`` and formats a debug line for each: the client's emitter is
  swapped for a subclass that skips both where they cannot matter. Same handlers, order
  and results.
- botocore runs the endpoint rule set for every request; for one client its answer only
  changes with the operation and the request's context parameters, so it is cached.
- botocore's JSON data files are read in a worker thread before the client is created, so
  creating it does not stall the event loop; one cheap request (``GetSendQuota`` /
  ``GetAccount``) opens the HTTP session before the first rate-limited send.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
from functools import lru_cache
from typing import Any
from urllib.parse import quote_plus

from aiobotocore.hooks import AioHierarchicalEmitter

from asyncmailer.transports._ses_signing import use_fast_signer

__all__ = ["ON_CONNECTED", "encode_query", "preload_data", "tune_client", "warm_up"]

#: Key in a botocore request's ``context``: a callable the HTTP session calls when the
#: request had to wait for a new connection and is about to be written on it. The transport
#: sets it to ``limiter.mark_sent`` for its send requests: the request leaves then, not
#: when botocore's ``before-send`` fired, so a rate window counts what the server sees.
ON_CONNECTED = "asyncmailer_on_connected"

logger = logging.getLogger("asyncmailer.ses")

# A value made only of base64 characters: quote_plus() would only escape "+", "/" and "=".
_BASE64 = re.compile(r"[A-Za-z0-9+/=]*\Z")


# Names and short values repeat from one request to the next (Action, Version, the sender).
_quote_short = lru_cache(maxsize=512)(quote_plus)
#: The query protocol serialises blobs as base64: this one needs no check.
_BASE64_KEYS = frozenset({"RawMessage.Data"})


def encode_query(body: dict[str, Any]) -> bytes:
    """``urllib.parse.urlencode(body)`` as bytes, with a fast path for long base64 values."""
    parts = []
    for key, value in body.items():
        text = value if isinstance(value, str) else str(value)
        if len(text) <= 256:
            encoded = _quote_short(text)
        elif key in _BASE64_KEYS or _BASE64.match(text):
            encoded = text.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
        else:
            encoded = quote_plus(text)
        parts.append(f"{_quote_short(str(key))}={encoded}")
    return "&".join(parts).encode("ascii")


def _encode_body_once(params: dict[str, Any], **_: Any) -> None:
    body = params.get("body")
    if isinstance(body, dict):
        params["body"] = encode_query(body)


class _CachedUserAgent:
    """Stands in for botocore's user-agent creator; builds the string once per client."""

    def __init__(self, creator: Any) -> None:
        self._creator = creator
        self._value: str | None = None

    def to_string(self) -> str:
        return self._value if self._value is not None else str(self._creator.to_string())

    def rebuild(self, request: Any, **_: Any) -> None:
        # The first request's string includes what botocore registers while building it
        # (retry mode, endpoint override); later requests of this client are alike.
        if self._value is None:
            self._value = str(self._creator.to_string())
        if request.headers.get("User-Agent"):
            request.headers.replace_header("User-Agent", self._value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._creator, name)


class _FastEmitter(AioHierarchicalEmitter):  # type: ignore[misc]
    """aiobotocore's emitter: the same handlers in the same order, with the same results.

    aiobotocore's ``_emit`` passes every handler's result through ``inspect.isawaitable``
    and formats a debug log line per handler, ~1 µs each for ~30 handler calls per
    request. Most handlers return None, which is never awaited; the line is formatted
    only when botocore's hooks logger would emit it.
    """

    async def _emit(
        self, event_name: str, kwargs: dict[str, Any], stop_on_response: bool = False
    ) -> list[tuple[Any, Any]]:
        handlers = self._lookup_cache.get(event_name)
        if handlers is None:
            handlers = self._handlers.prefix_search(event_name)
            self._lookup_cache[event_name] = handlers
        elif not handlers:
            return []
        kwargs["event_name"] = event_name
        debug = _hooks_logger.isEnabledFor(logging.DEBUG)
        responses: list[tuple[Any, Any]] = []
        for handler in handlers:
            if debug:
                _hooks_logger.debug("Event %s: calling handler %s", event_name, handler)
            response = handler(**kwargs)
            if response is not None and inspect.isawaitable(response):
                response = await response
            responses.append((handler, response))
            if stop_on_response and response is not None:
                return responses
        return responses


_hooks_logger = logging.getLogger("botocore.hooks")


def _own_emitter(client: Any) -> Any:
    """The client's own event emitter (botocore wraps it in an ``EventAliaser``)."""
    events = client.meta.events
    return getattr(events, "_emitter", events)


def use_fast_emitter(client: Any) -> bool:
    """Swap the client's own event emitter for :class:`_FastEmitter`; True if done."""
    emitter = _own_emitter(client)
    if type(emitter) is not AioHierarchicalEmitter:
        return False  # a subclass someone made, or another aiobotocore: left alone
    if not hasattr(emitter, "_lookup_cache") or not hasattr(emitter, "_handlers"):
        return False  # pragma: no cover - other botocore versions
    emitter.__class__ = _FastEmitter
    return True


def cache_endpoints(client: Any) -> bool:
    """Resolve each operation's endpoint once per client instead of once per request.

    botocore runs the endpoint rule set for every request (~30 µs): the builtins (region,
    FIPS, dual-stack, endpoint URL) are fixed for a client, so the answer only changes
    with the operation and the request's context parameters (SESv2's ``EndpointId``),
    which form the cache key. Not done when a ``before-endpoint-resolution`` hook could
    change the builtins per request, or when an operation has static context parameters.
    True if installed.
    """
    resolver: Any = getattr(client, "_ruleset_resolver", None)
    construct = getattr(resolver, "construct_endpoint", None)
    handlers = getattr(_own_emitter(client), "_handlers", None)
    if construct is None or handlers is None:
        return False  # pragma: no cover - other botocore versions
    service_id = client.meta.service_model.service_id.hyphenize()
    if list(handlers.prefix_search(f"before-endpoint-resolution.{service_id}")):
        return False
    cache: dict[tuple[Any, ...], Any] = {}

    async def construct_endpoint(operation_model: Any, call_args: Any, request_context: Any) -> Any:
        if operation_model.static_context_parameters:
            return await construct(operation_model, call_args, request_context)
        args = call_args or {}
        key = (
            operation_model.name,
            *(args.get(param.member_name) for param in operation_model.context_parameters),
        )
        result = cache.get(key)
        if result is None:
            result = await construct(operation_model, call_args, request_context)
            cache[key] = result
        # The headers dict is the caller's to keep; the rest is only read.
        return result._replace(headers=dict(result.headers))

    resolver.construct_endpoint = construct_endpoint
    return True


def tune_client(client: Any) -> None:
    """Apply the per-request savings to a client the transport created."""
    model = client.meta.service_model
    service_id = model.service_id.hyphenize()
    events = client.meta.events
    use_fast_emitter(client)
    cache_endpoints(client)
    if model.protocol == "query":
        events.register(f"before-call.{service_id}.SendRawEmail", _encode_body_once)
    use_fast_signer(client)
    creator = getattr(client, "_user_agent_creator", None)
    handler = getattr(creator, "rebuild_and_replace_user_agent_handler", None)
    if creator is None or handler is None:  # pragma: no cover - other botocore versions
        return
    cached = _CachedUserAgent(creator)
    events.unregister(f"request-created.{service_id}", handler)
    events.register_last(f"request-created.{service_id}", cached.rebuild)
    client._user_agent_creator = cached


async def preload_data(session: Any, service: str) -> None:
    """Read the botocore data files a ``service`` client needs, in a worker thread."""
    loader = session.get_component("data_loader")

    def load() -> None:
        for kind in ("service-2", "endpoint-rule-set-1"):
            with contextlib.suppress(Exception):
                loader.load_service_model(service, kind)
        for name in ("endpoints", "partitions", "sdk-default-configuration"):
            with contextlib.suppress(Exception):
                loader.load_data(name)

    await asyncio.to_thread(load)


async def warm_up(client: Any, api: str) -> None:
    """One cheap request, so the HTTP session exists before the first rate-limited send."""
    try:
        await (client.get_account() if api == "v2" else client.get_send_quota())
    except Exception:  # a missing IAM permission is no reason to fail
        logger.debug("asyncmailer: SES warm-up request failed", exc_info=True)
