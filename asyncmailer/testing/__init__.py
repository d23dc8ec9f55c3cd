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

Mail to the SES mailbox simulator (``bounce@simulator.amazonses.com``...) produces the
events SES would send, signed as SNS signs them and published to a webhook or an SQS
queue; :func:`simulator_resolver` lets ``verify_sns_message`` trust their test
certificate. From the command line: ``python -m asyncmailer.testing --port 0`` prints
the URL. See ``docs/local-ses-endpoint.md``.
"""

from asyncmailer.testing._config import EndpointConfig
from asyncmailer.testing._endpoint import SESEndpoint
from asyncmailer.testing._remote import RemoteEndpoint
from asyncmailer.testing._simulator import (
    SIMULATOR_CERT_URL,
    SimulatorEvent,
    simulator_certificate,
    simulator_resolver,
)
from asyncmailer.testing._stats import EndpointStats, max_events_in_window, sustained_rate
from asyncmailer.testing._store import StoredMessage

__all__ = [
    "SIMULATOR_CERT_URL",
    "EndpointConfig",
    "EndpointStats",
    "RemoteEndpoint",
    "SESEndpoint",
    "SimulatorEvent",
    "StoredMessage",
    "max_events_in_window",
    "simulator_certificate",
    "simulator_resolver",
    "sustained_rate",
]
