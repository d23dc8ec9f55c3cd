"""What each of SESTransport's client tweaks saves per request, measured without the network.

``SESTransport`` tunes the aiobotocore client it creates
(``asyncmailer/transports/_ses_client.py``). This script measures each tweak alone on a
bare aiobotocore client, and the transport with and without its tuning:

``query``
    SES v1 only. botocore serialises ``SendRawEmail`` to a dict and url-encodes it in
    ``AWSRequestPreparer._prepare_body`` twice per request (``AWSRequest.body`` re-prepares
    the request for the SigV4 payload hash, then again for the wire), with
    ``urllib.parse.quote_plus`` walking the ~6 KB base64 body byte by byte in Python. A
    ``before-call`` handler encodes the body once; base64 only needs ``+ / =`` escaped,
    which ``str.replace`` does at C speed. Same bytes on the wire.
``ua``
    botocore rebuilds the User-Agent string twice per request; it does not change between
    sends of one client, so it is built once and reused.
``sigv4``
    botocore's SigV4 signer collects the headers to sign twice, derives the Host value from
    the URL twice, prepares the whole request just to hash its body, and derives the
    signing key (four HMACs) every time; ``FastSigV4Auth`` does each once, same signature.
``novalidate``
    ``parameter_validation=False``: the transport builds the parameters itself.
``emitter``
    aiobotocore's event emitter passes each of ~30 handler results per request through
    ``inspect.isawaitable`` and formats a debug line for each; the client's emitter is
    swapped for one that awaits only what is awaitable and logs only when debug is on.
``endpoints``
    botocore runs the endpoint rule set for every request; its answer only changes with
    the operation and the request's context parameters, so it is cached per client.

The network is taken out with a ``before-send`` handler that answers every request with a
canned SES response, so the loop times exactly the client's work (serialise, sign, build
the request, parse the answer) and, for the transport rows, asyncmailer's own (compose,
checks, limiter, result). Run::

    python bench/ses_tuning.py                 # best of 5 interleaved rounds
    python bench/ses_tuning.py --rounds 1 --calls 200   # quick look
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import inspect
import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import _common
from asyncmailer.transports._ses_signing import use_fast_signer

import asyncmailer.transports.ses as ses_module
from asyncmailer.transports import SESTransport
from asyncmailer.transports._ses_client import (
    _CachedUserAgent,
    _encode_body_once,
    cache_endpoints,
    use_fast_emitter,
)

__all__ = ["ALL_TWEAKS", "BREAKDOWN_ROWS", "apply_tweaks", "breakdown", "untuned"]

#: Every tweak :func:`apply_tweaks` knows.
ALL_TWEAKS = ("query", "ua", "sigv4", "novalidate", "emitter", "endpoints")

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


def apply_tweaks(client: Any, tweaks: Iterable[str]) -> None:
    """Apply the named tweaks (asyncmailer's own implementation of each) to ``client``."""
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
    if "sigv4" in tweaks:
        use_fast_signer(client)
    if "novalidate" in tweaks:
        # What AioConfig(parameter_validation=False) gives at creation.
        client._serializer = botocore.serialize.create_serializer(
            model.protocol, include_validation=False
        )
    if "emitter" in tweaks:
        use_fast_emitter(client)
    if "endpoints" in tweaks:
        cache_endpoints(client)


@contextlib.contextmanager
def untuned() -> Iterator[None]:
    """Within the block, SESTransport does not apply ``tune_client`` to the client it creates.

    (Its other settings stay: no parameter validation, data files preloaded, warm-up.)
    """
    original = ses_module.tune_client
    ses_module.tune_client = lambda client: None
    try:
        yield
    finally:
        ses_module.tune_client = original


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


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Collect, then keep the cyclic GC out of the timed loop (as :mod:`timeit` does)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _client_cost(api: str, tweaks: tuple[str, ...], calls: int) -> float:
    """CPU seconds per prebuilt-bytes send through a bare aiobotocore client."""
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
        apply_tweaks(client, tweaks)
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
        with _no_gc():
            start = time.process_time()
            for _ in range(calls):
                await send()
            return (time.process_time() - start) / calls


async def _transport_cost(api: str, tuned: bool, calls: int) -> float:
    """CPU seconds per ``send_mail(message)`` (composing) through SESTransport."""
    options: dict[str, Any] = {
        "endpoint_url": "http://127.0.0.1:9",
        "region_name": _common.REGION,
        "api": api,
        "sending_rate": 100_000,
        **_common.CREDENTIALS,
    }
    if "warm_up" in inspect.signature(SESTransport).parameters:
        options["warm_up"] = False  # nothing listens on the dummy endpoint
    with contextlib.nullcontext() if tuned else untuned():
        transport = SESTransport(**options)
        async with transport:
            _answer_locally(transport.client, api)
            message = _common.message()
            for _ in range(50):
                await transport.send_mail(message)
            with _no_gc():
                start = time.process_time()
                for _ in range(calls):
                    await transport.send_mail(message)
                return (time.process_time() - start) / calls


#: (label, kind, tweaks) of every breakdown row.
BREAKDOWN_ROWS: list[tuple[str, str, tuple[str, ...]]] = [
    ("aiobotocore client, default", "client", ()),
    ("+ query (v1 body encoded once)", "client", ("query",)),
    ("+ ua (User-Agent built once)", "client", ("ua",)),
    ("+ sigv4 (signer's repeated work done once)", "client", ("sigv4",)),
    ("+ novalidate (parameter_validation=False)", "client", ("novalidate",)),
    ("+ emitter (handler results awaited only if awaitable)", "client", ("emitter",)),
    ("+ endpoints (endpoint rule set run once per operation)", "client", ("endpoints",)),
    ("+ all six", "client", ALL_TWEAKS),
    ("SESTransport, tune_client off (composes)", "transport", ()),
    ("SESTransport (composes)", "transport", ALL_TWEAKS),
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
        "| work per send, network left out | v1 µs | v1 saved | v2 µs | v2 saved |",
        "|---|---:|---:|---:|---:|",
    ]
    untuned_row = next(label for label, kind, _ in BREAKDOWN_ROWS if kind == "transport")
    for label, kind, _ in BREAKDOWN_ROWS:
        cells = ""
        for api in ("v1", "v2"):
            cost = best[(label, api)]
            base_label = BREAKDOWN_ROWS[0][0] if kind == "client" else untuned_row
            base = best[(base_label, api)]
            if label in (BREAKDOWN_ROWS[0][0], untuned_row):
                saved = ""
            elif label.startswith("+ query") and api == "v2":
                saved = "(v1 only)"
            else:
                saved = f"{(base - cost) * 1e6:,.0f} µs ({(base - cost) / base:.0%})"
            cells += f" {cost * 1e6:,.0f} | {saved} |"
        lines.append(f"| {label} |{cells}")
    return "\n".join(lines)


def main() -> None:
    """Print the per-tweak breakdown (one JSON line with --json)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--json", action="store_true", help="print the table as one JSON line")
    args = parser.parse_args()
    table = breakdown_table(breakdown(args.rounds, args.calls))
    print(json.dumps({"table": table}) if args.json else table)


if __name__ == "__main__":
    main()
