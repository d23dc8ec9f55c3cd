"""SESTransport over HTTPS and plain HTTP, with every api setting, on the stock client.

The local endpoint serves TLS with a certificate from a trustme CA; botocore checks it
against that CA (``AWSClientSettings(verify=...)``). ``nox -s tests_lowest`` runs this at
the lowest aiobotocore the package allows, so the defaults are shown to send over both
schemes at both ends of the range.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from asyncmailer import AWSClientSettings, RetryPolicy, SESTransport
from asyncmailer.errors import DeliveryError
from asyncmailer.testing import SESEndpoint

SENDER = "shop@example.com"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = Path(tmp_path_factory.mktemp("ca")) / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def _server_context(ca: trustme.CA):  # type: ignore[no-untyped-def]
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.mark.parametrize("scheme", ["https", "http"])
@pytest.mark.parametrize("api", ["auto", "v1", "v2"])
async def test_the_defaults_send_over_https_and_http(
    ca: trustme.CA, ca_file: str, scheme: str, api: str
) -> None:
    context = _server_context(ca) if scheme == "https" else None
    async with SESEndpoint(ssl_context=context) as endpoint:
        assert endpoint.url.startswith(f"{scheme}://")
        async with SESTransport(
            **endpoint.client_kwargs(),  # type: ignore[arg-type]
            api=api,  # type: ignore[arg-type]
            aws=AWSClientSettings(verify=ca_file),
        ) as ses:
            result = await ses.send_mail(from_=SENDER, to="ada@example.org", text="hi")
            assert ses.api == ("v1" if api == "v1" else "v2")
    (stored,) = endpoint.messages()
    assert stored.api == ses.api
    assert result.message_id.startswith("<")


async def test_a_client_passed_in_sends_over_https(ca: trustme.CA, ca_file: str) -> None:
    async with SESEndpoint(ssl_context=_server_context(ca)) as endpoint:
        config = AioConfig(retries={"mode": "standard", "total_max_attempts": 1})
        async with (
            get_session().create_client(
                "sesv2", verify=ca_file, config=config, **endpoint.client_kwargs()
            ) as client,
            SESTransport(client) as ses,
        ):
            await ses.send_mail(from_=SENDER, to="ada@example.org", text="hi")
    assert len(endpoint.messages()) == 1


async def test_an_untrusted_certificate_sends_nothing(ca: trustme.CA) -> None:
    # No CA given: botocore's own bundle does not trust the test CA. The TLS handshake
    # fails before any byte of the request is written.
    async with (
        SESEndpoint(ssl_context=_server_context(ca)) as endpoint,
        SESTransport(
            **endpoint.client_kwargs(),  # type: ignore[arg-type]
            retry=RetryPolicy(max_attempts=1),
            warm_up=False,
        ) as ses,
    ):
        with pytest.raises(DeliveryError) as info:
            await ses.send_mail(from_=SENDER, to="ada@example.org", text="hi")
    assert info.value.retry_safe
    assert "certificate" in str(info.value).lower() or "ssl" in str(info.value).lower()
    assert endpoint.messages() == []
