"""A small synchronous client of the endpoint's control API, for other processes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from asyncmailer.errors import ConfigurationError
from asyncmailer.testing._config import EndpointConfig
from asyncmailer.testing._simulator import SimulatorEvent
from asyncmailer.testing._stats import EndpointStats
from asyncmailer.testing._store import StoredMessage, find_by_message_id

__all__ = ["RemoteEndpoint"]


class RemoteEndpoint:
    """Read and steer an endpoint running elsewhere (another process, ``python -m``).

    It speaks the control API (``/_asyncmailer/...``) with :mod:`urllib`, so its calls
    block: use it from synchronous code, or wrap calls in :func:`asyncio.to_thread`.
    Example::

        remote = RemoteEndpoint("http://127.0.0.1:8025")
        remote.configure(throttle_rate=14)
        ...
        assert remote.stats().max_starts_in_window(1.0, weighted=True) <= 14
    """

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        #: The endpoint's base URL, as printed by ``python -m asyncmailer.testing``.
        self.url = url.rstrip("/")
        #: Seconds to wait for each control request.
        self.timeout = timeout

    def _call(self, method: str, resource: str, payload: Any = None) -> Any:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {self.url!r}")
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
            f"{self.url}/_asyncmailer/{resource}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 400:
                detail = json.loads(exc.read() or b"{}")
                raise ConfigurationError(
                    detail.get("message", str(exc)), option=detail.get("option")
                ) from exc
            raise

    def stats(self) -> EndpointStats:
        """The endpoint's counters."""
        return EndpointStats.from_json(self._call("GET", "stats"))

    def messages(self, *, raw: bool = True) -> list[StoredMessage]:
        """The stored messages, oldest first; without ``raw`` their ``raw`` is ``b""``."""
        data = self._call("GET", "messages?raw=1" if raw else "messages")
        return [StoredMessage.from_json(item) for item in data]

    def find_by_message_id(self, message_id: str) -> StoredMessage | None:
        """The stored message whose Message-ID header is ``message_id`` (``<>`` optional)."""
        return find_by_message_id(self.messages(), message_id)

    def events(self) -> list[SimulatorEvent]:
        """The mailbox simulator's events, oldest first."""
        return [SimulatorEvent.from_json(item) for item in self._call("GET", "events")]

    def simulator_certificate(self) -> bytes:
        """The PEM certificate that endpoint signs its simulator events with.

        :func:`~asyncmailer.testing.simulator_resolver` with ``endpoint=`` calls this.
        """
        data = self._call("GET", "simulator-certificate")
        pem: str = data["pem"]
        return pem.encode("ascii")

    def reset(self) -> None:
        """Forget messages and counters (see :meth:`SESEndpoint.reset`)."""
        self._call("POST", "reset", {})

    def config(self) -> EndpointConfig:
        """The settings in force."""
        return EndpointConfig.from_json(self._call("GET", "config"))

    def configure(self, **settings: Any) -> EndpointConfig:
        """Change settings; returns the new configuration.

        Refused settings raise :class:`~asyncmailer.errors.ConfigurationError`.
        """
        return EndpointConfig.from_json(self._call("POST", "config", settings))
