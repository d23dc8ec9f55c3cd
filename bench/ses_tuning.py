"""Prototype: make SESTransport's own aiobotocore client cheaper per request.

Nothing here changes asyncmailer; :class:`TunedSESTransport` subclasses
:class:`~asyncmailer.transports.SESTransport` so the benchmarks can measure what each tweak
saves before it is moved into ``SESTransport._create_client``. The tweaks, by name:

``query``
    SES v1 only. botocore serialises ``SendRawEmail`` to a dict and url-encodes it in
    ``AWSRequestPreparer._prepare_body``, once for SigV4's payload hash and again for the
    wire (``AWSRequest.body`` re-prepares each time it is read). ``urllib.parse.quote_plus``
    walks the ~6 KB base64 body byte by byte in Python (~250 µs each time). A
    ``before-call`` handler encodes the body once; the base64 value only needs ``+ / =``
    escaped, which ``str.replace`` does at C speed. Same bytes on the wire.
``ua``
    botocore rebuilds the User-Agent string twice per request (in
    ``_convert_to_request_dict`` and in a ``request-created`` handler). It does not change
    between sends of one client, so build it once, on the first request, and reuse it.
``novalidate``
    ``parameter_validation=False``: the transport builds the parameters itself, so
    botocore's schema walk over them is pure overhead.

Two more changes concern the edges of a transport's life rather than each request:

``preload``
    Creating an aiobotocore client reads and parses botocore's JSON data files (service
    model, endpoint rules, partitions) synchronously, blocking the event loop for 50–200 ms.
    :func:`preload_botocore_data` reads them in a worker thread first, into the session's
    loader cache, so ``create_client`` finds them there.
``warm``
    aiobotocore builds its aiohttp session, connector and SSL context on the first request
    (in a thread, but tens of ms during which that request waits after the rate limiter
    granted it). One cheap request in ``__aenter__`` (``GetSendQuota`` / ``GetAccount``,
    errors ignored) moves that cost out of the rate-limited sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote_plus

from asyncmailer.transports.ses import SESTransport

__all__ = [
    "ALL_TWEAKS",
    "TunedSESTransport",
    "encode_query",
    "preload_botocore_data",
    "tune_client",
]

#: Every tweak :func:`tune_client` knows.
ALL_TWEAKS = ("query", "ua", "novalidate")

# A value made only of base64 characters: quote_plus() would only escape "+", "/" and "=".
_BASE64 = re.compile(r"[A-Za-z0-9+/=]*\Z")


def encode_query(body: dict[str, Any]) -> bytes:
    """``urllib.parse.urlencode(body)`` as bytes, with a fast path for long base64 values."""
    parts = []
    for key, value in body.items():
        text = value if isinstance(value, str) else str(value)
        if len(text) > 256 and _BASE64.match(text):
            encoded = text.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
        else:
            encoded = quote_plus(text)
        parts.append(f"{quote_plus(str(key))}={encoded}")
    return "&".join(parts).encode("ascii")


def _encode_body_once(params: dict[str, Any], **kwargs: Any) -> None:
    """``before-call`` handler: replace the serialised dict body by its encoding."""
    body = params.get("body")
    if isinstance(body, dict):
        params["body"] = encode_query(body)


class _CachedUserAgent:
    """Stands in for botocore's ``UserAgentString``: builds the string once per client."""

    def __init__(self, creator: Any) -> None:
        self._creator = creator
        self._value: str | None = None

    def to_string(self) -> str:
        if self._value is None:
            return str(self._creator.to_string())
        return self._value

    def rebuild(self, request: Any, **kwargs: Any) -> None:
        # The first request's final string includes the features registered while it was
        # built (retry mode, endpoint override...); later sends of this client are alike.
        if self._value is None:
            self._value = str(self._creator.to_string())
        if request.headers.get("User-Agent"):
            request.headers.replace_header("User-Agent", self._value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._creator, name)


def tune_client(client: Any, tweaks: Iterable[str] = ALL_TWEAKS) -> None:
    """Apply the named tweaks to an aiobotocore ``ses`` / ``sesv2`` client, in place."""
    import botocore.serialize

    tweaks = set(tweaks)
    unknown = tweaks - set(ALL_TWEAKS)
    if unknown:
        raise ValueError(f"unknown tweaks: {sorted(unknown)}")
    model = client.meta.service_model
    service_id = model.service_id.hyphenize()
    events = client.meta.events
    if "query" in tweaks and model.protocol == "query":
        events.register(f"before-call.{service_id}.SendRawEmail", _encode_body_once)
    if "ua" in tweaks:
        creator = client._user_agent_creator
        cached = _CachedUserAgent(creator)
        events.unregister(
            f"request-created.{service_id}", creator.rebuild_and_replace_user_agent_handler
        )
        events.register_last(f"request-created.{service_id}", cached.rebuild)
        client._user_agent_creator = cached
    if "novalidate" in tweaks:
        # What AioConfig(parameter_validation=False) gives at creation.
        client._serializer = botocore.serialize.create_serializer(
            model.protocol, include_validation=False
        )


async def preload_botocore_data(session: Any, service: str) -> None:
    """Read the botocore data files a ``service`` client needs, in a worker thread.

    They land in the session's loader cache, so ``session.create_client(service)`` no longer
    parses JSON on the event loop.
    """
    loader = session.get_component("data_loader")

    def load() -> None:
        for kind in ("service-2", "endpoint-rule-set-1"):
            with contextlib.suppress(Exception):
                loader.load_service_model(service, kind)
        for name in ("endpoints", "partitions", "sdk-default-configuration"):
            with contextlib.suppress(Exception):
                loader.load_data(name)

    await asyncio.to_thread(load)


class TunedSESTransport(SESTransport):
    """SESTransport with the proposed changes: client tweaks, preloading, warm-up."""

    def __init__(
        self,
        *args: Any,
        tweaks: Iterable[str] = ALL_TWEAKS,
        preload: bool = True,
        warm: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        #: The tweaks applied to the client created in ``__aenter__``.
        self.tweaks = tuple(tweaks)
        #: Read botocore's data files in a thread before creating the client.
        self.preload = preload
        #: Make one cheap request in ``__aenter__``.
        self.warm = warm

    async def _create_client(self) -> Any:
        if self.preload:
            from aiobotocore.session import get_session

            self._session = self._session or get_session()
            await preload_botocore_data(
                self._session, "sesv2" if self._api_asked == "v2" else "ses"
            )
        client = await super()._create_client()
        tune_client(client, self.tweaks)
        if self.warm:
            with contextlib.suppress(Exception):  # a missing IAM permission is no reason to fail
                await (client.get_account() if self._api_asked == "v2" else client.get_send_quota())
        return client


# --------------------------------------------------------------------------- breakdown
#
# What each tweak saves, measured without the network: a ``before-send`` handler answers
# every request with a canned SES response, so the loop times exactly the client's work
# (serialise, sign, build the request, parse the answer) and, for the transport rows,
# asyncmailer's own (compose, checks, limiter, result).

_CANNED = {
    "v1": (
        "text/xml",
        b'<SendRawEmailResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/">'
        b"<SendRawEmailResult><MessageId>0100018c-0000-0000-0000-000000000000-000000"
        b"</MessageId></SendRawEmailResult><ResponseMetadata><RequestId>r</RequestId>"
        b"</ResponseMetadata></SendRawEmailResponse>",
    ),
    "v2": ("application/json", b'{"MessageId":"0100018c-0000-0000-0000-000000000000-000000"}'),
}


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    async def read(self) -> bytes:
        return self._data


def _answer_locally(client: Any, api: str) -> None:
    from aiobotocore.awsrequest import AioAWSResponse

    content_type, body = _CANNED[api]

    def before_send(request: Any, **kwargs: Any) -> Any:
        headers = {"Content-Type": content_type, "x-amzn-RequestId": "r"}
        return AioAWSResponse(request.url, 200, headers, _Body(body))

    client.meta.events.register("before-send", before_send)


async def _client_cost(api: str, tweaks: tuple[str, ...], calls: int) -> float:
    """CPU seconds per prebuilt-bytes send through a bare aiobotocore client."""
    import time

    import _common
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    raw = _common.prebuilt_raw()
    config = AioConfig(retries={"mode": "standard", "total_max_attempts": 1})
    async with get_session().create_client(
        "sesv2" if api == "v2" else "ses",
        endpoint_url="http://127.0.0.1:9",
        region_name=_common.REGION,
        config=config,
        **_common.CREDENTIALS,
    ) as client:
        tune_client(client, tweaks)
        _answer_locally(client, api)

        async def send() -> None:
            if api == "v2":
                await client.send_email(
                    FromEmailAddress="shop@example.com",
                    Destination={"ToAddresses": ["ada@example.org"]},
                    Content={"Raw": {"Data": raw}},
                )
            else:
                await client.send_raw_email(
                    Source="shop@example.com",
                    Destinations=["ada@example.org"],
                    RawMessage={"Data": raw},
                )

        for _ in range(50):
            await send()
        start = time.process_time()
        for _ in range(calls):
            await send()
        return (time.process_time() - start) / calls


async def _transport_cost(api: str, tuned: bool, calls: int) -> float:
    """CPU seconds per ``send_mail(message)`` (composing) through SESTransport."""
    import time

    import _common

    options: dict[str, Any] = {
        "endpoint_url": "http://127.0.0.1:9",
        "region_name": _common.REGION,
        "api": api,
        "sending_rate": 100_000,
        **_common.CREDENTIALS,
    }
    transport = (
        TunedSESTransport(warm=False, preload=False, **options)
        if tuned
        else SESTransport(**options)
    )
    async with transport:
        _answer_locally(transport.client, api)
        message = _common.message()
        for _ in range(50):
            await transport.send_mail(message)
        start = time.process_time()
        for _ in range(calls):
            await transport.send_mail(message)
        return (time.process_time() - start) / calls


#: (label, kind, tweaks) of every breakdown row.
BREAKDOWN_ROWS: list[tuple[str, str, tuple[str, ...]]] = [
    ("aiobotocore client, default", "client", ()),
    ("+ query (v1 body encoded once)", "client", ("query",)),
    ("+ ua (User-Agent built once)", "client", ("ua",)),
    ("+ novalidate (parameter_validation=False)", "client", ("novalidate",)),
    ("+ all three", "client", ALL_TWEAKS),
    ("SESTransport as shipped (composes)", "transport", ()),
    ("SESTransport + all three (composes)", "transport", ALL_TWEAKS),
]


def breakdown(rounds: int, calls: int) -> dict[tuple[str, str], float]:
    """Best-of-``rounds`` CPU seconds per send for every row and API, rounds interleaved."""
    best: dict[tuple[str, str], float] = {}
    for _ in range(rounds):
        for api in ("v1", "v2"):
            for label, kind, tweaks in BREAKDOWN_ROWS:
                if kind == "client":
                    cost = asyncio.run(_client_cost(api, tweaks, calls))
                else:
                    cost = asyncio.run(_transport_cost(api, bool(tweaks), calls))
                key = (label, api)
                best[key] = min(best.get(key, float("inf")), cost)
    return best


def breakdown_table(best: dict[tuple[str, str], float]) -> str:
    """The breakdown as a markdown table (µs per send, and the saving over the default)."""
    lines = [
        "| client work per send (no network) | v1 µs | v1 saved | v2 µs | v2 saved |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, kind, _ in BREAKDOWN_ROWS:
        cells = ""
        for api in ("v1", "v2"):
            cost = best[(label, api)]
            base = best[(BREAKDOWN_ROWS[0][0], api)]
            if kind == "transport" or label == BREAKDOWN_ROWS[0][0]:
                saved = ""
            elif label.startswith("+ query") and api == "v2":
                saved = "(v1 only)"
            else:
                saved = f"{(base - cost) * 1e6:,.0f} µs ({(base - cost) / base:.0%})"
            cells += f" {cost * 1e6:,.0f} | {saved} |"
        lines.append(f"| {label} |{cells}")
    return "\n".join(lines)


def main() -> None:
    """``python bench/ses_tuning.py``: print the per-tweak breakdown (JSON with --json)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=800)
    parser.add_argument("--json", action="store_true", help="print the table as one JSON line")
    args = parser.parse_args()
    table = breakdown_table(breakdown(args.rounds, args.calls))
    print(json.dumps({"table": table}) if args.json else table)


if __name__ == "__main__":
    main()
