"""A cheaper SigV4 signer for the SES client the transport creates: same signature, less work.

botocore's :class:`~botocore.auth.SigV4Auth` does several things per request that give
the same answer every time, or that it does twice:

- it collects the headers to sign into a new ``HTTPHeaders`` (an :mod:`email.message`
  ``Message``) twice, once for the canonical request and once for the ``Authorization``
  header;
- it derives the ``Host`` value from the URL twice (``urlsplit`` and an IPv6 check each
  time), although a client sends every request to the same endpoint;
- it prepares the whole request (headers copied, body encoded) just to hash the body,
  before the endpoint prepares it again for the wire;
- it derives the signing key (four HMACs) for every request, although the key only
  changes with the date, the region, the service and the secret. :func:`use_fast_signer`
  gives each client its own :class:`SigningKeys` (keyed by a digest of the secret; gone
  with the client; its repr shows no key).

:class:`FastSigV4Auth` keeps botocore's algorithm and overrides only those steps; the
signature is byte for byte botocore's (``tests/test_ses_signing.py`` compares them over
requests with query strings, repeated headers, session tokens, ports and IPv6 hosts).
Anything it does not recognise (a body that is not plain bytes, unsigned payloads,
streaming checksums) goes to botocore's own code.
"""

from __future__ import annotations

import hmac
from functools import lru_cache
from hashlib import sha256
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import SIGNED_HEADERS_BLACKLIST, SigV4Auth, _host_from_url

__all__ = ["FastSigV4Auth", "SigningKeys", "use_fast_signer"]

_UNSIGNED = frozenset(SIGNED_HEADERS_BLACKLIST)
# The Host value of each endpoint URL (a client sends every request to the same one or two).
_host = lru_cache(maxsize=16)(_host_from_url)


class SigningKeys:
    """One client's SigV4 signing keys, by (digest of the secret, date, region, service).

    Lives as long as the client's signer; its repr shows no key. At most ``size`` entries
    (a client has one or two live ones: today's, and yesterday's around midnight).
    """

    __slots__ = ("_keys", "_size")

    def __init__(self, size: int = 8) -> None:
        self._keys: dict[tuple[bytes, str, str, str], bytes] = {}
        self._size = size

    def __repr__(self) -> str:
        return f"<SigningKeys: {len(self._keys)} cached>"

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key: tuple[bytes, str, str, str]) -> bytes | None:
        """The signing key for ``key``, or None."""
        return self._keys.get(key)

    def put(self, key: tuple[bytes, str, str, str], value: bytes) -> None:
        """Remember a signing key (forgetting all others when full)."""
        if len(self._keys) >= self._size:
            self._keys.clear()
        self._keys[key] = value


class FastSigV4Auth(SigV4Auth):  # type: ignore[misc]  # botocore ships no types
    """botocore's SigV4 with the repeated work done once (see the module docstring)."""

    _signed_names: str | None = None
    #: Where signing keys are kept between requests (None: derived for every request).
    signing_keys: SigningKeys | None = None

    def _headers_to_sign(self, request: Any) -> dict[str, list[str]]:
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            lname = name.lower()
            if lname not in _UNSIGNED:
                values = headers.get(lname)
                if values is None:
                    headers[lname] = [value]
                else:
                    values.append(value)
        if "host" not in headers:
            headers["host"] = [_host(request.url)]
        return headers

    def canonical_request(self, request: Any) -> str:
        """The canonical request, as botocore builds it; keeps the signed header names."""
        headers = self._headers_to_sign(request)
        names = sorted(headers)
        canonical_headers = "\n".join(
            f"{name}:{','.join(' '.join(v.split()) for v in headers[name])}" for name in names
        )
        signed = ";".join(sorted(name.strip() for name in names))
        self._signed_names = signed
        if "X-Amz-Content-SHA256" in request.headers:
            body_checksum = request.headers["X-Amz-Content-SHA256"]
        else:
            body_checksum = self.payload(request)
        return "\n".join(
            (
                request.method.upper(),
                self._normalize_url_path(urlsplit(request.url).path),
                self.canonical_query_string(request),
                canonical_headers + "\n",
                signed,
                body_checksum,
            )
        )

    def payload(self, request: Any) -> str:
        """Hash a plain bytes body directly (botocore would prepare the request first)."""
        data = request.data
        if (
            type(data) is bytes
            and data
            and not self._is_streaming_checksum_payload(request)
            and self._should_sha256_sign_payload(request)
        ):
            return sha256(data).hexdigest()
        return str(super().payload(request))

    def signature(self, string_to_sign: str, request: Any) -> str:
        """Sign with the day's signing key, derived once per date, region and service."""
        secret = f"{self.credentials.secret_key}"  # as botocore formats it
        date = request.context["timestamp"][0:8]
        cache = self.signing_keys
        # Keyed by a digest, so the cache never holds the secret itself.
        key = (sha256(secret.encode()).digest(), date, self._region_name, self._service_name)
        k_signing = cache.get(key) if cache is not None else None
        if k_signing is None:
            k_date = self._sign(f"AWS4{secret}".encode(), date)
            k_region = self._sign(k_date, self._region_name)
            k_service = self._sign(k_region, self._service_name)
            k_signing = self._sign(k_service, "aws4_request")
            if cache is not None:
                cache.put(key, k_signing)
        return hmac.new(k_signing, string_to_sign.encode("utf-8"), sha256).hexdigest()

    def _inject_signature_to_request(self, request: Any, signature: str) -> Any:
        signed = self._signed_names
        if signed is None:  # pragma: no cover - add_auth always builds the request first
            return super()._inject_signature_to_request(request, signature)
        request.headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.scope(request)}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        return request


def use_fast_signer(client: Any) -> bool:
    """Have ``client`` sign with :class:`FastSigV4Auth` wherever botocore picks SigV4.

    Returns False (and changes nothing) on a botocore without the expected signer shape.
    """
    signer: Any = getattr(client, "_request_signer", None)
    original = getattr(signer, "get_auth_instance", None)
    if original is None:
        return False

    keys = SigningKeys()

    async def get_auth_instance(*args: Any, **kwargs: Any) -> Any:
        auth = await original(*args, **kwargs)
        if type(auth) is SigV4Auth:
            auth.__class__ = FastSigV4Auth
            auth.signing_keys = keys
        return auth

    signer.get_auth_instance = get_auth_instance
    return True
