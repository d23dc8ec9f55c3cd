"""Testing helpers: a fast local SES-compatible endpoint with fault injection.

:class:`SESEndpoint` serves the SES v1 query API and SESv2 on loopback so the real
:class:`~asyncmailer.transports.SESTransport` and real aiobotocore HTTP can be exercised
without an AWS account, with counters for rate tests and configurable faults. It serves
HTTP with aiohttp's low-level server (aiohttp comes with aiobotocore), so it needs nothing
beyond asyncmailer's own dependencies. Example::

    from asyncmailer.testing import SESEndpoint

    async with SESEndpoint(throttle_rate=14) as endpoint:
        ...  # point a client at endpoint.url
        assert endpoint.stats().max_starts_in_window(1.0, weighted=True) <= 14

From the command line: ``python -m asyncmailer.testing --port 0`` prints the URL.
See ``docs/local-ses-endpoint.md``.
"""

from asyncmailer.testing._config import EndpointConfig
from asyncmailer.testing._endpoint import SESEndpoint
from asyncmailer.testing._remote import RemoteEndpoint
from asyncmailer.testing._stats import EndpointStats, max_events_in_window, sustained_rate
from asyncmailer.testing._store import StoredMessage

__all__ = [
    "EndpointConfig",
    "EndpointStats",
    "RemoteEndpoint",
    "SESEndpoint",
    "StoredMessage",
    "max_events_in_window",
    "sustained_rate",
]
