"""The transport's SigV4 signer must sign exactly as botocore's does."""

from __future__ import annotations

import datetime
from typing import Any, Literal

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from asyncmailer import SESTransport
from asyncmailer.testing import SESEndpoint
from asyncmailer.transports._ses_signing import FastSigV4Auth, SigningKeys

SENDER = "shop@example.com"
_WHEN = datetime.datetime(2026, 11, 28, 12, 30, 45)
_SECRET_1 = "first-secret-wJalrXUtnFEMI/K7MDENG"
_SECRET_2 = "second-secret-bPxRfiCYEXAMPLEKEY"


def _request(
    url: str = "https://email.eu-west-1.amazonaws.com/v2/email/outbound-emails",
    data: Any = b'{"FromEmailAddress":"shop@example.com"}',
    headers: list[tuple[str, str]] | None = None,
    params: dict[str, str] | None = None,
    method: str = "POST",
) -> AWSRequest:
    request = AWSRequest(method=method, url=url, data=data, params=params or {})
    for name, value in headers or [("Content-Type", "application/json")]:
        request.headers[name] = value
    return request


def _copy(request: AWSRequest) -> AWSRequest:
    clone = AWSRequest(
        method=request.method, url=request.url, data=request.data, params=dict(request.params)
    )
    for name, value in request.headers.items():
        clone.headers[name] = value
    clone.context = dict(request.context)
    return clone


def _sign_both(
    request: AWSRequest,
    monkeypatch: pytest.MonkeyPatch,
    credentials: Any = None,
    region: str = "eu-west-1",
    service: str = "ses",
    when: datetime.datetime = _WHEN,
    keys: SigningKeys | None = None,
) -> tuple[AWSRequest, AWSRequest]:
    credentials = credentials or Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCY")
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: when)
    theirs, ours = _copy(request), _copy(request)
    SigV4Auth(credentials, service, region).add_auth(theirs)
    fast = FastSigV4Auth(credentials, service, region)
    fast.signing_keys = keys if keys is not None else SigningKeys()
    fast.add_auth(ours)
    return theirs, ours


CASES = {
    "json body": _request(),
    "query body": _request(
        url="https://email.us-east-1.amazonaws.com/",
        data=b"Action=SendRawEmail&RawMessage.Data=QUJD%2B%2F%3D",
        headers=[("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")],
    ),
    "dict body": _request(
        url="https://email.us-east-1.amazonaws.com/",
        data={"Action": "SendRawEmail", "RawMessage.Data": "QUJD+/="},
    ),
    "query string in url": _request(url="https://h.example/a/b?z=1&a=2&a=1", data=b""),
    "params": _request(params={"b": "x y", "a": "é~"}, data=None, method="GET"),
    "repeated and spaced headers": _request(
        headers=[
            ("X-Amz-Meta-A", "  one   two "),
            ("x-amz-meta-a", "three"),
            ("User-Agent", "ignored"),
            ("X-Amzn-Trace-Id", "ignored"),
            ("Content-Type", "application/json"),
        ]
    ),
    "explicit host header": _request(headers=[("Host", "example.org")]),
    "http with port": _request(url="http://127.0.0.1:8123/v2/email/outbound-emails"),
    "https default port": _request(url="https://email.eu-west-1.amazonaws.com:443/"),
    "ipv6 host": _request(url="http://[::1]:9000/"),
    "ipv6 host, tab in path": _request(url="http://[::1]:9000/a\tb"),
    "userinfo": _request(url="http://user:pw@Example.ORG:81/x"),
    "dot segments": _request(url="https://h.example/a/./b/../c"),
    "content sha header": _request(headers=[("X-Amz-Content-SHA256", "UNSIGNED-PAYLOAD")]),
    "empty body": _request(data=b""),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_signature_is_botocores(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    theirs, ours = _sign_both(CASES[case], monkeypatch)
    assert ours.headers["Authorization"] == theirs.headers["Authorization"]
    assert sorted(ours.headers.items()) == sorted(theirs.headers.items())


def test_session_token_is_signed(monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = Credentials("AKID", "secret", token="session-token")
    theirs, ours = _sign_both(_request(), monkeypatch, credentials=credentials)
    assert ours.headers["X-Amz-Security-Token"] == "session-token"
    assert ours.headers["Authorization"] == theirs.headers["Authorization"]
    assert "x-amz-security-token" in ours.headers["Authorization"]


def test_signing_key_follows_date_secret_region_and_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Signing keys are cached: a new day, secret, region or service must not reuse a stale one.
    keys = SigningKeys()
    variants = [
        (_SECRET_1, "eu-west-1", "ses", _WHEN),
        (_SECRET_1, "eu-west-1", "ses", _WHEN + datetime.timedelta(days=1)),
        (_SECRET_2, "eu-west-1", "ses", _WHEN + datetime.timedelta(days=1)),
        (_SECRET_2, "us-east-1", "ses", _WHEN + datetime.timedelta(days=1)),
        (_SECRET_2, "us-east-1", "email", _WHEN + datetime.timedelta(days=1)),
        (_SECRET_1, "eu-west-1", "ses", _WHEN),
    ]
    seen = set()
    for secret, region, service, when in variants:
        credentials = ReadOnlyCredentials("AKID", secret, None)
        theirs, ours = _sign_both(
            _request(),
            monkeypatch,
            credentials=credentials,
            region=region,
            service=service,
            when=when,
            keys=keys,
        )
        assert ours.headers["Authorization"] == theirs.headers["Authorization"]
        seen.add(ours.headers["Authorization"])
    assert len(seen) == 5  # the first and last variants are the same request
    assert len(keys) == 5
    # The cache shows neither the secrets nor the derived keys.
    assert _SECRET_1 not in repr(keys) and _SECRET_2 not in repr(keys)
    assert repr(keys) == "<SigningKeys: 5 cached>"


def test_streaming_checksum_payload_goes_to_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    request = _request()
    request.context["checksum"] = {"request_algorithm": {"in": "trailer", "algorithm": "crc32"}}
    theirs, ours = _sign_both(request, monkeypatch)
    assert "STREAMING-UNSIGNED-PAYLOAD-TRAILER" in _canonical(ours, monkeypatch)
    assert ours.headers["Authorization"] == theirs.headers["Authorization"]


def _canonical(request: AWSRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    copy = _copy(request)
    del copy.headers["Authorization"]
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCY")
    return str(FastSigV4Auth(credentials, "ses", "eu-west-1").canonical_request(copy))


def test_a_url_without_a_host_fails_as_in_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = Credentials("AKID", "secret")
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: _WHEN)
    for signer in (SigV4Auth, FastSigV4Auth):
        with pytest.raises(AttributeError):  # botocore: the URL's hostname is None
            signer(credentials, "ses", "eu-west-1").add_auth(_request(url="http:///x"))


def test_unsigned_payload_over_https_goes_to_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    request = _request()
    request.context["payload_signing_enabled"] = False
    theirs, ours = _sign_both(request, monkeypatch)
    assert "UNSIGNED-PAYLOAD" in ours.headers["X-Amz-Content-SHA256"]
    assert ours.headers["Authorization"] == theirs.headers["Authorization"]


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_transport_requests_carry_botocores_signature(
    api: Literal["v1", "v2"], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through the real client: after the request is signed, sign a copy with botocore's own
    # SigV4Auth at the same timestamp and compare the Authorization headers.
    checked: list[str] = []
    async with SESEndpoint() as endpoint, SESTransport(endpoint_url=endpoint.url, api=api) as ses:
        client = ses.client
        service_id = client.meta.service_model.service_id.hyphenize()
        frozen = await client._request_signer._credentials.get_frozen_credentials()

        def recheck(request: AWSRequest, operation_name: str, **_: Any) -> None:
            if not operation_name.startswith("Send"):
                return
            when = datetime.datetime.strptime(request.context["timestamp"], "%Y%m%dT%H%M%SZ")
            copy = _copy(request)
            del copy.headers["Authorization"]
            with monkeypatch.context() as patch:
                patch.setattr(botocore.auth, "get_current_datetime", lambda: when)
                signer = SigV4Auth(frozen, client.meta.service_model.signing_name, "us-east-1")
                signer._region_name = client.meta.region_name
                signer.add_auth(copy)
            assert copy.headers["Authorization"] == request.headers["Authorization"]
            checked.append(request.headers["Authorization"])

        client.meta.events.register_last(f"request-created.{service_id}", recheck)
        for n in range(3):
            await ses.send_mail(from_=SENDER, to=f"r{n}@example.org", text=f"body {n}")
    assert len(checked) == 3
    assert len(endpoint.messages()) == 3


async def test_transport_client_uses_the_fast_signer() -> None:
    async with SESEndpoint() as endpoint, SESTransport(endpoint_url=endpoint.url) as ses:
        signer = ses.client._request_signer
        auth = await signer.get_auth_instance(
            signing_name=signer._signing_name, region_name=signer._region_name
        )
    assert type(auth) is FastSigV4Auth
