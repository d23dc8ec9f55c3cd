"""The local SES-compatible endpoint: lifecycle, dispatch, and the control API.

HTTP itself is aiohttp's (see ``_server.py``); this module routes requests to the SES API
modules and serves the control API, which only answers requests that a web page in the
developer's browser cannot make (see :meth:`SESEndpoint._refuse_foreign`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from asyncmailer.errors import ConfigurationError, TransportStateError
from asyncmailer.testing._account import Account
from asyncmailer.testing._config import EndpointConfig
from asyncmailer.testing._server import HTTPServer, Request, Response
from asyncmailer.testing._ses_api import SESError, v1_error_body, v2_error_body
from asyncmailer.testing._simulator import Simulator, SimulatorEvent, simulator_certificate
from asyncmailer.testing._stats import EndpointStats
from asyncmailer.testing._store import (
    DirectoryStore,
    MemoryStore,
    MessageStore,
    StoredMessage,
    find_by_message_id,
)
from asyncmailer.testing._v1 import XML, QueryAPI
from asyncmailer.testing._v2 import JSON, RestAPI

__all__ = ["SESEndpoint"]

#: Prefix of the control API's paths.
CONTROL_PREFIX = "/_asyncmailer/"

_log = logging.getLogger("asyncmailer.testing")


class SESEndpoint:
    """A fast local SES endpoint (v1 query API and SESv2) for tests, demos and benchmarks.

    Point a real aiobotocore client at :attr:`url` (dummy credentials work: signatures are
    not checked). Accepted messages are kept in memory or, with ``store_dir``, written to a
    directory; counters record every request; faults are injected on demand. Settings are
    the fields of :class:`EndpointConfig`, given as keywords or as ``config``, and can be
    changed while running with :meth:`configure`. Example::

        async with SESEndpoint(latency=0.05, throttle_rate=14) as endpoint:
            async with session.create_client("sesv2", **endpoint.client_kwargs()) as client:
                await client.send_email(...)
            assert endpoint.stats().messages_accepted == 1

    ``seed`` makes the random faults and ids reproducible (:meth:`reset` restarts the
    sequence). ``clock`` (default :func:`time.monotonic`) times arrivals and the send-rate
    and 24-hour windows; tests may pass a fake one. Injected latency always uses the event
    loop's timer.

    The control API (``/_asyncmailer/...``) answers only requests whose ``Host`` is an IP
    address, ``localhost``, ``host`` or one of ``allowed_hosts`` (names by which other
    machines or containers reach the endpoint, such as a compose service name), that carry
    no foreign ``Origin``, and whose ``POST`` bodies are ``application/json``: a web page
    the developer visits can neither reconfigure it nor read its messages, even through
    DNS rebinding.

    ``ssl_context`` serves HTTPS instead of HTTP (:attr:`url` then starts with
    ``https://``), to test clients over TLS; pass the CA to the client
    (``AWSClientSettings(verify=...)``).
    """

    def __init__(
        self,
        *,
        config: EndpointConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        store_dir: str | os.PathLike[str] | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        allowed_hosts: Iterable[str] = (),
        ssl_context: ssl.SSLContext | None = None,
        **settings: Any,
    ) -> None:
        base = config if config is not None else EndpointConfig()
        self._config = base.replace(**settings) if settings else base
        self._host = host
        self._port = port
        # TLS for the listening socket (tests of HTTPS clients); None: plain HTTP.
        self._ssl_context = ssl_context
        self._allowed_hosts = frozenset(
            name.lower().strip("[]") for name in (host, "localhost", *allowed_hosts)
        )
        self._store: MessageStore = (
            DirectoryStore(store_dir) if store_dir is not None else MemoryStore()
        )
        self._account = Account(store=self._store, clock=clock, seed=seed)
        self._v1 = QueryAPI(self._account)
        self._v2 = RestAPI(self._account)
        self._simulator = Simulator()
        self._server: HTTPServer | None = None
        self._state: Literal["unopened", "open", "closed"] = "unopened"

    # ------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> SESEndpoint:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Bind the socket and start serving in the running event loop."""
        if self._state != "unopened":
            raise TransportStateError(
                f"the endpoint cannot be started when {self._state}", state=self._state
            )
        server = HTTPServer(
            self._app, host=self._host, port=self._port, ssl_context=self._ssl_context
        )
        self._simulator.start(self._config)  # before the first request can arrive
        try:
            await server.start()
        except BaseException:
            await self._simulator.aclose(0)
            raise
        self._server = server
        self._port = server.port
        self._state = "open"
        self._account.restart_clock()

    async def aclose(self) -> None:
        """Stop serving and close every connection. Stored messages stay readable."""
        if self._state == "open" and self._server is not None:
            self._state = "closed"
            await self._server.aclose()
            await self._simulator.aclose(self._config.publish_timeout)
        self._state = "closed"

    async def serve_forever(self) -> None:
        """Serve until cancelled (starting first if needed), then close."""
        if self._state == "unopened":
            await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.aclose()

    @contextlib.contextmanager
    def run_in_thread(self, *, startup_timeout: float = 10.0) -> Iterator[SESEndpoint]:
        """Serve from a background thread with its own event loop, for synchronous code.

        Example::

            with SESEndpoint(seed=1).run_in_thread() as endpoint:
                boto3.client("sesv2", **endpoint.client_kwargs()).send_email(...)
        """
        ready = threading.Event()
        box: dict[str, Any] = {}

        async def main() -> None:
            async with self:
                stop = asyncio.Event()
                box["loop"] = asyncio.get_running_loop()
                box["stop"] = stop
                ready.set()
                await stop.wait()

        def target() -> None:
            try:
                asyncio.run(main())
            except BaseException as exc:
                box["error"] = exc
            finally:
                ready.set()

        thread = threading.Thread(target=target, name="asyncmailer-ses-endpoint", daemon=True)
        thread.start()
        if not ready.wait(startup_timeout):
            raise TimeoutError("the SES endpoint thread did not start in time")
        if "error" in box:
            thread.join()
            raise box["error"]
        try:
            yield self
        finally:
            loop: asyncio.AbstractEventLoop = box["loop"]
            stop: asyncio.Event = box["stop"]
            with contextlib.suppress(RuntimeError):  # the loop may be gone already
                loop.call_soon_threadsafe(stop.set)
            thread.join()

    # --------------------------------------------------------------------- public helpers

    @property
    def host(self) -> str:
        """The address served."""
        return self._host

    @property
    def port(self) -> int:
        """The port served (the one picked, when 0 was asked)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port`` (``https://`` with ``ssl_context``), for ``endpoint_url``."""
        if self._state == "unopened" and self._port == 0:
            raise TransportStateError("the endpoint has no port before it starts", state="unopened")
        host = f"[{self._host}]" if ":" in self._host else self._host
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{host}:{self._port}"

    @property
    def config(self) -> EndpointConfig:
        """The settings in force."""
        return self._config

    def configure(self, **settings: Any) -> EndpointConfig:
        """Change settings while running (thread-safe); returns the new configuration.

        Example: ``endpoint.configure(max_send_rate=50, throttle_rate=50)``.
        """
        new = self._config.replace(**settings)
        self._config = new
        return new

    def client_kwargs(self) -> dict[str, str]:
        """Keywords for ``session.create_client(service, **kwargs)``: url, region, dummy keys."""
        return {
            "endpoint_url": self.url,
            "region_name": self._config.region or "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }

    def messages(self) -> list[StoredMessage]:
        """Every accepted message, oldest first (reads the directory when ``store_dir`` is set)."""
        return self._store.messages()

    def find_by_message_id(self, message_id: str) -> StoredMessage | None:
        """The stored message whose Message-ID header is ``message_id`` (``<>`` optional)."""
        return find_by_message_id(self._store.messages(), message_id)

    def events(self) -> list[SimulatorEvent]:
        """The mailbox simulator's events, oldest first (see :class:`SimulatorEvent`)."""
        return self._simulator.events()

    async def wait_for_events(self, timeout: float | None = 10.0) -> list[SimulatorEvent]:
        """Wait until every simulator event produced so far is published (or has failed).

        Returns :meth:`events`; raises :class:`TimeoutError` after ``timeout`` seconds.
        Call it from the endpoint's event loop.
        """
        try:
            await self._simulator.wait(timeout)
        except asyncio.TimeoutError:
            raise TimeoutError("simulator events were still being published") from None
        return self._simulator.events()

    def stats(self) -> EndpointStats:
        """A snapshot of the counters."""
        server = self._server
        return self._account.counters.snapshot(
            server.connections_opened if server else 0,
            server.connections_current if server else 0,
        )

    def reset(self) -> None:
        """Forget messages, counters, rate windows and registered identities; reseed.

        Requests in flight stay counted in ``in_flight``. The settings are kept. With
        ``store_dir`` this deletes the stored files (blocking file I/O). Simulator events
        are forgotten too.
        """
        self._account.reset()
        self._simulator.reset()

    # ----------------------------------------------------------------------- dispatching

    def _app(self, request: Request) -> Response | Awaitable[Response]:
        if request.path.startswith(CONTROL_PREFIX):
            return self._control(request)
        config = self._config  # one consistent view for the whole request
        account = self._account
        request_id, delay = account.request_started(config)
        v2 = request.path.startswith("/v2/")
        record: StoredMessage | list[StoredMessage] | None = None
        try:
            if v2:
                response, record = self._v2.handle(request, config, request_id)
            else:
                response, record = self._v1.handle(request, config, request_id)
        except Exception as exc:
            if isinstance(exc, SESError):
                error = exc
            else:
                _log.exception("the local SES endpoint failed on %s", request.path)
                error = SESError.internal_failure()
            code = error.v2_code if v2 else error.code
            account.count_error(code)
            if v2:
                response = Response(
                    error.v2_status,
                    v2_error_body(error),
                    headers=(JSON, ("x-amzn-ErrorType", code), ("x-amzn-RequestId", request_id)),
                )
            else:
                response = Response(
                    error.status,
                    v1_error_body(error, request_id),
                    headers=(XML, ("x-amzn-RequestId", request_id)),
                )
        response.delay = delay
        response.on_done = account.request_done
        if isinstance(record, list):  # SendBulkEmail: one record per accepted entry
            response.on_done = self._after_accept_all(record, config)
            if self._store.blocking:
                return self._store_many_then(record, response)
            for one in record:
                self._store.add(one)
        elif record is not None:
            response.on_done = self._after_accept(record, config)
            if self._store.blocking:
                return self._store_then(record, response)
            self._store.add(record)
        return response

    def _after_accept(self, record: StoredMessage, config: EndpointConfig) -> Callable[[], None]:
        """``on_done`` of an accepted send: the mailbox simulator runs once it is answered."""
        account, simulator = self._account, self._simulator

        def done() -> None:
            account.request_done()
            simulator.accepted(record, config)

        return done

    def _after_accept_all(
        self, records: list[StoredMessage], config: EndpointConfig
    ) -> Callable[[], None]:
        """``on_done`` of an accepted bulk send: the simulator runs for every entry."""
        account, simulator = self._account, self._simulator

        def done() -> None:
            account.request_done()
            for record in records:
                simulator.accepted(record, config)

        return done

    async def _store_then(self, record: StoredMessage, response: Response) -> Response:
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._store.add, record)
        except Exception:
            _log.exception("the local SES endpoint could not store %s", record.message_id)
            response = Response(500, delay=response.delay, on_done=response.on_done)
        return response

    async def _store_many_then(self, records: list[StoredMessage], response: Response) -> Response:
        for record in records:
            response = await self._store_then(record, response)
        return response

    def rendering_failures(self) -> list[dict[str, str]]:
        """Templated sends SES accepted but could not render (its Rendering Failure events).

        Each is ``{"messageId", "templateName", "errorMessage"}``, oldest first; nothing was
        stored for them.
        """
        with self._account.lock:
            return list(self._account.rendering_failures)

    # ------------------------------------------------------------------------ control API

    def _refuse_foreign(self, request: Request) -> Response | None:
        """A 403 or 415 for a control request a browser may have made for another site.

        DNS rebinding points a name the attacker owns at 127.0.0.1: the browser then sends
        that name as ``Host``, which is refused. A cross-origin request from a page carries
        its ``Origin`` (or ``Sec-Fetch-Site``), which is refused. A page can send
        ``application/json`` elsewhere only after a CORS preflight, which this endpoint
        never grants, so requiring it on ``POST`` refuses the rest. Tools (curl, urllib,
        :class:`RemoteEndpoint`) send none of these headers and are served.
        """
        headers = request.headers
        host = headers.get("Host")
        if host is not None and not self._is_own_host(host):
            return _json_response({"message": f"foreign Host {host!r} refused"}, 403)
        origin = headers.get("Origin")
        if origin is not None and (host is None or origin.lower() != f"http://{host.lower()}"):
            return _json_response({"message": f"cross-origin request from {origin!r}"}, 403)
        site = headers.get("Sec-Fetch-Site")
        if site is not None and site.lower() not in ("same-origin", "none"):
            return _json_response({"message": f"{site} browser request refused"}, 403)
        if request.method not in ("GET", "HEAD"):
            media_type = headers.get("Content-Type", "").partition(";")[0].strip().lower()
            if media_type != "application/json":
                return _json_response({"message": "the body must be application/json"}, 415)
        return None

    def _is_own_host(self, host: str) -> bool:
        parts = urlsplit(f"//{host}")
        try:
            name, _ = parts.hostname, parts.port  # .port raises ValueError when malformed
        except ValueError:
            return False
        if name is None or parts.path or parts.query or parts.username is not None:
            return False
        if name in self._allowed_hosts:
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def _control(self, request: Request) -> Response | Awaitable[Response]:
        refusal = self._refuse_foreign(request)
        if refusal is not None:
            return refusal
        name = request.path[len(CONTROL_PREFIX) :].strip("/")
        method = request.method
        try:
            if name == "stats" and method == "GET":
                return _json_response(self.stats().to_json())
            if name == "messages" and method == "GET":
                values = parse_qs(request.query).get("raw", ["0"])
                raw = values[-1].lower() in ("1", "true", "yes")
                if self._store.blocking:
                    return self._in_thread(lambda: [m.to_json(raw=raw) for m in self.messages()])
                return _json_response([m.to_json(raw=raw) for m in self.messages()])
            if name == "reset" and method == "POST":
                if self._store.blocking:
                    return self._in_thread(self._reset_json)
                self.reset()
                return _json_response({"reset": True})
            if name == "events" and method == "GET":
                return _json_response([event.to_json() for event in self.events()])
            if name == "simulator-certificate" and method == "GET":
                return self._simulator_certificate()
            if name == "config" and method == "GET":
                return _json_response(self._config.to_json())
            if name == "config" and method == "POST":
                changes = json.loads(request.body or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("the body must be a JSON object")
                return _json_response(self.configure(**changes).to_json())
        except ConfigurationError as exc:
            return _json_response({"message": str(exc), "option": exc.option}, status=400)
        except ValueError as exc:
            return _json_response({"message": str(exc)}, status=400)
        return _json_response({"message": f"no control resource {method} {request.path}"}, 404)

    async def _simulator_certificate(self) -> Response:
        try:  # the first call makes an RSA key: not on the event loop
            pem = await asyncio.get_running_loop().run_in_executor(None, simulator_certificate)
        except ConfigurationError as exc:
            return _json_response({"message": str(exc), "option": exc.option}, status=400)
        return _json_response({"pem": pem.decode("ascii")})

    def _reset_json(self) -> dict[str, bool]:
        self.reset()
        return {"reset": True}

    async def _in_thread(self, work: Callable[[], Any]) -> Response:
        result = await asyncio.get_running_loop().run_in_executor(None, work)
        return _json_response(result)


def _json_response(data: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(data).encode(), headers=(JSON,))
