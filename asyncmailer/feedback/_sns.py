"""Verifying SNS envelopes: the signature, the signing certificate, and the message's age.

:func:`verify_sns_message` checks an SNS HTTP/S body before anything trusts it, and returns
it as an :class:`SNSMessage`; every rejection raises
:class:`~asyncmailer.feedback.SNSVerificationError` (it never returns ``False``). Example::

    sns = await verify_sns_message(body)             # fetches and caches AWS's certificate
    event = parse_ses_event(sns.message)

What is checked, in this order, so that hostile input is refused before any fetch:

1. the body's size (``max_size``), that it is a JSON object, its ``Type`` and
   ``SignatureVersion`` (``1`` = SHA1withRSA, ``2`` = SHA256withRSA), and that every key
   of the canonical string is present;
2. its age: ``Timestamp`` no older than ``max_age`` and not in the future (replays);
3. ``SigningCertURL``: ``https://sns.<region>.<AWS partition domain>/<name>.pem``, exactly,
   with no port, user, query or fragment (:func:`check_sns_url`);
4. the certificate, from the ``resolver`` (by default an :class:`SNSCertificateFetcher`,
   which fetches it with aiohttp, checks its chain and caches it by URL), valid at the
   message's own ``Timestamp``;
5. the RSA PKCS#1 v1.5 signature over the canonical string AWS documents:
   ``Key\\nValue\\n`` for ``Message, MessageId, [Subject,] Timestamp, TopicArn, Type``
   (``Notification``) or ``Message, MessageId, SubscribeURL, Timestamp, Token, TopicArn,
   Type`` (``SubscriptionConfirmation`` and ``UnsubscribeConfirmation``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Literal, TypeAlias
from urllib.parse import urlsplit

from asyncmailer.feedback._errors import (
    FeedbackError,
    SNSVerificationError,
    SNSVerificationReason,
)
from asyncmailer.feedback._events import DEFAULT_MAX_BODY, parse_timestamp

if TYPE_CHECKING:
    import aiohttp
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

__all__ = [
    "DEFAULT_MAX_AGE",
    "CertificateResolver",
    "SNSCertificateFetcher",
    "SNSMessage",
    "SNSMessageType",
    "check_sns_url",
    "is_sns_host",
    "verify_sns_message",
]

logger = logging.getLogger("asyncmailer.feedback")

INSTALL_HINT = "SNS verification needs: pip install 'asyncmailer[feedback]'"

#: SNS retries an HTTP/S delivery for at most an hour; a message older than this (plus
#: some slack) is a replay.
DEFAULT_MAX_AGE = timedelta(minutes=65)
#: How far in the future a ``Timestamp`` may be (clock skew).
FUTURE_SKEW = timedelta(minutes=5)

#: The three kinds of SNS envelope.
SNSMessageType = Literal["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]

#: Returns the certificate for a ``SigningCertURL``. One passed to
#: :func:`verify_sns_message` is trusted as given (tests, closed networks, audits of stored
#: messages); only its validity at the message's ``Timestamp`` is still checked.
CertificateResolver: TypeAlias = "Callable[[str], Awaitable[x509.Certificate]]"

# The domains of AWS partitions: aws, aws-cn, aws-us-gov (amazonaws.com), aws-iso,
# aws-iso-b, aws-iso-e, aws-iso-f, aws-eusc.
_PARTITION_DOMAINS = (
    r"amazonaws\.com|amazonaws\.com\.cn|c2s\.ic\.gov|sc2s\.sgov\.gov|cloud\.adc-e\.uk"
    r"|csp\.hci\.ic\.gov|amazonaws\.eu"
)
_SNS_HOST = re.compile(rf"sns\.[a-z]{{2,5}}(?:-[a-z]+)+-[0-9]{{1,2}}\.(?:{_PARTITION_DOMAINS})")
_CERT_PATH = re.compile(r"/[A-Za-z0-9._-]{1,200}\.pem")
# Names an SNS signing certificate is issued to (``sns.amazonaws.com`` in the aws partition).
_SNS_CERT_NAME = re.compile(rf"sns(?:\.[a-z0-9-]+)?\.(?:{_PARTITION_DOMAINS})")
# Intermediate certificates missing from a fetched PEM are fetched from these hosts only.
_AIA_HOST = re.compile(r"(?:[a-z0-9-]+\.)*amazontrust\.com")

_CANONICAL_KEYS: dict[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_CANONICAL_KEYS["UnsubscribeConfirmation"] = _CANONICAL_KEYS["SubscriptionConfirmation"]
_OPTIONAL_KEYS = frozenset({"Subject"})


@dataclass(frozen=True, slots=True, kw_only=True)
class SNSMessage:
    """A verified SNS envelope."""

    #: ``Notification``, ``SubscriptionConfirmation`` or ``UnsubscribeConfirmation``.
    type: SNSMessageType
    #: SNS's id of this message (the same on every retry of it).
    message_id: str
    #: The topic it was published to.
    topic_arn: str
    #: The payload: for SES, the event JSON.
    message: str
    #: When SNS published it (signed, so a replay keeps it).
    timestamp: datetime
    #: ``"1"`` (SHA1withRSA) or ``"2"`` (SHA256withRSA).
    signature_version: Literal["1", "2"]
    #: Where the signing certificate is.
    signing_cert_url: str
    #: The subject, when the publisher set one (``Notification``).
    subject: str | None = None
    #: The confirmation URL (``SubscriptionConfirmation``, ``UnsubscribeConfirmation``).
    subscribe_url: str | None = None
    #: The confirmation token (``SubscriptionConfirmation``, ``UnsubscribeConfirmation``).
    token: str | None = None
    #: The URL that ends the subscription (``Notification``).
    unsubscribe_url: str | None = None
    #: The envelope as parsed.
    raw: Mapping[str, object] = field(default_factory=dict, repr=False, compare=False)


def is_sns_host(host: str) -> bool:
    """True when ``host`` is an SNS endpoint of an AWS partition (``sns.eu-west-1.amazonaws.com``).

    The match is exact and case-sensitive: ``sns.us-east-1.amazonaws.com.evil.com``,
    ``evil-sns.us-east-1.amazonaws.com`` and ``SNS.us-east-1.amazonaws.com`` are refused.
    """
    return _SNS_HOST.fullmatch(host) is not None


def check_sns_url(url: str, *, what: str = "SigningCertURL", certificate: bool = True) -> None:
    """Refuse a URL that is not ``https`` on an SNS host, before anything fetches it.

    With ``certificate=True`` the path must name a ``.pem`` file and nothing may follow it;
    otherwise (``SubscribeURL``) a query is allowed. Raises
    :class:`~asyncmailer.feedback.SNSVerificationError` with reason ``"cert_url"``.
    """
    if not isinstance(url, str) or len(url) > 2048 or not url.isascii() or not url.isprintable():
        raise SNSVerificationError(f"{what} is not a URL", reason="cert_url", field=what)
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise SNSVerificationError(f"{what} is not https: {url!r}", reason="cert_url", field=what)
    if not is_sns_host(parts.netloc):  # netloc, not hostname: no port, no user, exact case
        raise SNSVerificationError(
            f"{what} is not on an SNS host: {parts.netloc!r}", reason="cert_url", field=what
        )
    if parts.fragment or " " in url:
        raise SNSVerificationError(f"{what} has a fragment", reason="cert_url", field=what)
    if certificate and (parts.query or _CERT_PATH.fullmatch(parts.path) is None):
        raise SNSVerificationError(
            f"{what} does not name a .pem file: {parts.path!r}", reason="cert_url", field=what
        )


def _fail(
    message: str, reason: SNSVerificationReason, field: str | None = None
) -> SNSVerificationError:
    return SNSVerificationError(message, reason=reason, field=field)


def _load_envelope(data: bytes | str | Mapping[str, object], max_size: int) -> Mapping[str, object]:
    if isinstance(data, Mapping):
        return data
    if not isinstance(data, (bytes, bytearray, str)):
        raise _fail(f"the body must be bytes or str, not {type(data).__name__}", "malformed")
    if len(data) > max_size:
        raise _fail(f"the body is {len(data)} octets, over the limit of {max_size}", "too_large")
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise _fail(f"the body is not JSON: {exc}", "not_json") from None
    if not isinstance(parsed, dict):
        raise _fail("the body is not a JSON object", "not_json")
    return parsed


def canonical_string(envelope: Mapping[str, object]) -> bytes:
    """The string SNS signs, for an envelope whose ``Type`` is known and whose keys are strings."""
    kind = envelope["Type"]
    keys = _CANONICAL_KEYS[kind]  # type: ignore[index]
    parts: list[str] = []
    for key in keys:
        value = envelope.get(key)
        if value is None and key in _OPTIONAL_KEYS:
            continue
        parts.append(f"{key}\n{value}\n")
    return "".join(parts).encode("utf-8")


def _as_utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise FeedbackError("now must be an aware datetime")
    return when.astimezone(timezone.utc)


# Public keys by certificate, so that a cached certificate costs one dict lookup.
_KEYS: dict[bytes, RSAPublicKey] = {}


def _public_key(cert: x509.Certificate) -> RSAPublicKey:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    fingerprint = cert.signature  # unique per certificate, and free to read
    key = _KEYS.get(fingerprint)
    if key is None:
        candidate = cert.public_key()
        if not isinstance(candidate, RSAPublicKey):
            raise _fail("the signing certificate's key is not RSA", "cert_invalid")
        if len(_KEYS) >= 256:
            _KEYS.clear()
        _KEYS[fingerprint] = key = candidate
    return key


async def verify_sns_message(
    message: bytes | str | Mapping[str, object],
    *,
    resolver: CertificateResolver | None = None,
    max_age: timedelta | float | None = DEFAULT_MAX_AGE,
    now: datetime | None = None,
    max_size: int = DEFAULT_MAX_BODY,
) -> SNSMessage:
    """Verify an SNS envelope's signature and age, and return it as an :class:`SNSMessage`.

    ``resolver`` returns the certificate for a ``SigningCertURL``; by default a process-wide
    :class:`SNSCertificateFetcher` fetches it over HTTPS, checks its chain and caches it.
    ``max_age`` (a ``timedelta`` or seconds) refuses replays: a message whose ``Timestamp``
    is older, or more than five minutes in the future, is refused; ``None`` turns the
    check off (audits of stored messages). ``now`` replaces the clock for that check.

    Raises :class:`~asyncmailer.feedback.SNSVerificationError`; its ``reason`` says why.
    """
    envelope = _load_envelope(message, max_size)
    kind = envelope.get("Type")
    if not isinstance(kind, str) or kind not in _CANONICAL_KEYS:
        raise _fail(f"unsupported SNS message Type {kind!r}", "unsupported", "Type")
    version = envelope.get("SignatureVersion")
    if version not in ("1", "2"):
        raise _fail(f"unsupported SignatureVersion {version!r}", "unsupported", "SignatureVersion")
    for key in (*_CANONICAL_KEYS[kind], "Signature", "SigningCertURL"):
        value = envelope.get(key)
        if isinstance(value, str):
            continue
        if value is None and key in _OPTIONAL_KEYS:
            continue
        raise _fail(f"{key} is missing or not a string", "malformed", key)
    try:
        timestamp = parse_timestamp(envelope["Timestamp"], "Timestamp")  # type: ignore[arg-type]
    except FeedbackError as exc:
        raise _fail(str(exc), "malformed", "Timestamp") from None

    if max_age is not None:
        limit = max_age if isinstance(max_age, timedelta) else timedelta(seconds=max_age)
        current = _as_utc(now) if now is not None else datetime.now(timezone.utc)
        age = current - timestamp
        if age > limit:
            raise _fail(f"the message is {age} old, older than {limit}", "expired", "Timestamp")
        if -age > FUTURE_SKEW:
            raise _fail(f"the message is dated {-age} in the future", "expired", "Timestamp")

    cert_url: str = envelope["SigningCertURL"]  # type: ignore[assignment]
    check_sns_url(cert_url)
    try:
        signature = base64.b64decode(envelope["Signature"], validate=True)  # type: ignore[arg-type]
    except (binascii.Error, ValueError):
        raise _fail("Signature is not base64", "signature", "Signature") from None

    if resolver is None:
        resolver = _default_fetcher()
    try:
        cert = await resolver(cert_url)
    except SNSVerificationError:
        raise
    except Exception as exc:
        raise _fail(
            f"the signing certificate could not be obtained: {exc!r}", "cert_unavailable"
        ) from exc
    if not (cert.not_valid_before_utc <= timestamp <= cert.not_valid_after_utc):
        raise _fail(
            f"the signing certificate was not valid at the message's Timestamp {timestamp}",
            "cert_invalid",
        )

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 # SNS v1
    try:
        _public_key(cert).verify(
            signature, canonical_string(envelope), padding.PKCS1v15(), algorithm
        )
    except InvalidSignature:
        raise _fail("the signature does not match the message", "signature", "Signature") from None

    def opt(key: str) -> str | None:
        value = envelope.get(key)
        return value if isinstance(value, str) else None

    return SNSMessage(
        type=kind,  # type: ignore[arg-type]  # checked against _CANONICAL_KEYS
        message_id=envelope["MessageId"],  # type: ignore[arg-type]
        topic_arn=envelope["TopicArn"],  # type: ignore[arg-type]
        message=envelope["Message"],  # type: ignore[arg-type]
        timestamp=timestamp,
        signature_version=version,
        signing_cert_url=cert_url,
        subject=opt("Subject"),
        subscribe_url=opt("SubscribeURL"),
        token=opt("Token"),
        unsubscribe_url=opt("UnsubscribeURL"),
        raw=envelope,
    )


# ----------------------------------------------------------------------- the fetcher


def _system_roots() -> list[x509.Certificate]:
    """The trust store OpenSSL uses by default (certifi's when it has none)."""
    from cryptography import x509

    paths = ssl.get_default_verify_paths()
    files = [paths.cafile, paths.openssl_cafile]
    try:
        import certifi

        files.append(certifi.where())
    except ImportError:  # pragma: no cover
        pass
    for name in files:
        if name and os.path.isfile(name):
            with open(name, "rb") as fh:
                data = fh.read()
            roots = []
            for block in re.findall(
                rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", data, re.S
            ):
                try:
                    roots.append(x509.load_pem_x509_certificate(block))
                except ValueError:  # a certificate OpenSSL takes but we cannot: skip it
                    continue
            if roots:
                return roots
    return []


class SNSCertificateFetcher:
    """The default :data:`CertificateResolver`: fetches SNS signing certificates and caches them.

    It refuses any URL that :func:`check_sns_url` refuses (so it never fetches from another
    host), fetches with aiohttp under ``timeout`` seconds, refuses bodies over ``max_size``
    octets and redirects, and verifies the certificate chain with
    ``cryptography.x509.verification`` against ``trust_roots`` (default: the system trust
    store): the leaf must be issued to an SNS name (``sns.amazonaws.com``) by a trusted CA.
    Intermediates missing from the PEM are fetched from the certificate's
    ``caIssuers`` URL, on ``amazontrust.com`` hosts only. Certificates are cached by URL
    (up to ``cache_size``). Example::

        fetcher = SNSCertificateFetcher(timeout=5)
        sns = await verify_sns_message(body, resolver=fetcher)

    ``session`` is an aiohttp session to fetch with (by default one per fetch); it is also
    the documented test hook: a session whose connector resolves SNS host names to a local
    server and trusts a test CA lets tests run the real fetch, host check included.
    """

    __slots__ = (
        "_cache",
        "_pending",
        "_roots",
        "_session",
        "cache_size",
        "max_size",
        "timeout",
        "trust_roots",
    )

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        trust_roots: Sequence[x509.Certificate] | None = None,
        max_size: int = 64 * 1024,
        cache_size: int = 64,
    ) -> None:
        #: Seconds allowed for one fetch (connect and read).
        self.timeout = timeout
        #: Certificates trusted as roots; ``None``: the system trust store.
        self.trust_roots = list(trust_roots) if trust_roots is not None else None
        #: Largest certificate file accepted, in octets.
        self.max_size = max_size
        #: How many certificates are kept.
        self.cache_size = cache_size
        self._session = session
        self._cache: dict[str, x509.Certificate] = {}
        self._pending: dict[str, asyncio.Task[x509.Certificate]] = {}
        self._roots: list[x509.Certificate] | None = self.trust_roots

    async def __call__(self, url: str) -> x509.Certificate:
        """The verified certificate at ``url`` (from the cache when fetched before)."""
        check_sns_url(url)
        cert = self._cache.get(url)
        if cert is not None:
            return cert
        task = self._pending.get(url)
        if task is None:
            task = asyncio.ensure_future(self._fetch_and_check(url))
            self._pending[url] = task
            task.add_done_callback(lambda _t: self._pending.pop(url, None))
        cert = await asyncio.shield(task)
        if len(self._cache) >= self.cache_size:
            self._cache.pop(next(iter(self._cache)))
        self._cache[url] = cert
        return cert

    def clear(self) -> None:
        """Forget every cached certificate."""
        self._cache.clear()

    async def _get(self, url: str) -> bytes:
        try:
            import aiohttp
        except ImportError as exc:  # pragma: no cover
            raise _fail(INSTALL_HINT, "cert_unavailable") from exc
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        if self._session is not None:
            return await self._read(self._session, url, timeout)
        async with aiohttp.ClientSession() as session:
            return await self._read(session, url, timeout)

    async def _read(
        self, session: aiohttp.ClientSession, url: str, timeout: aiohttp.ClientTimeout
    ) -> bytes:
        import aiohttp

        try:
            async with session.get(url, timeout=timeout, allow_redirects=False) as response:
                if response.status != 200:
                    raise _fail(
                        f"fetching {url} answered HTTP {response.status}", "cert_unavailable"
                    )
                body = bytearray()
                async for chunk in response.content.iter_chunked(16384):
                    body += chunk
                    if len(body) > self.max_size:
                        raise _fail(f"{url} is larger than {self.max_size} octets", "cert_invalid")
                return bytes(body)
        except SNSVerificationError:
            raise
        except (OSError, asyncio.TimeoutError, aiohttp.ClientError) as exc:
            raise _fail(f"fetching {url} failed: {exc!r}", "cert_unavailable") from exc

    async def _trust_roots(self) -> list[x509.Certificate]:
        if self._roots is None:
            self._roots = await asyncio.to_thread(_system_roots)
        return self._roots

    async def _fetch_and_check(self, url: str) -> x509.Certificate:
        from cryptography import x509

        pem = await self._get(url)
        try:
            certs = x509.load_pem_x509_certificates(pem)
        except ValueError as exc:
            raise _fail(f"{url} is not a PEM certificate: {exc}", "cert_invalid") from None
        leaf, intermediates = certs[0], list(certs[1:])
        try:
            self._verify_chain(leaf, intermediates, await self._trust_roots())
        except SNSVerificationError:
            extra = await self._aia_intermediate(leaf)
            if extra is None:
                raise
            self._verify_chain(leaf, [*intermediates, extra], await self._trust_roots())
        return leaf

    def _verify_chain(
        self,
        leaf: x509.Certificate,
        intermediates: list[x509.Certificate],
        roots: list[x509.Certificate],
    ) -> None:
        from cryptography import x509
        from cryptography.x509.verification import (
            PolicyBuilder,
            Store,
            VerificationError,
        )

        if not roots:
            raise _fail("no trusted root certificates to check the chain with", "cert_invalid")
        try:
            names = leaf.extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            ).value.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            names = []
        name = next((n for n in names if _SNS_CERT_NAME.fullmatch(n)), None)
        if name is None:
            raise _fail(f"the certificate is not issued to an SNS name: {names}", "cert_invalid")
        verifier = (
            PolicyBuilder()
            .store(Store(roots))
            .time(datetime.now(timezone.utc))
            .build_server_verifier(x509.DNSName(name))
        )
        try:
            verifier.verify(leaf, intermediates)
        except VerificationError as exc:
            raise _fail(f"the certificate chain does not verify: {exc}", "cert_invalid") from None

    async def _aia_intermediate(self, leaf: x509.Certificate) -> x509.Certificate | None:
        from cryptography import x509
        from cryptography.x509.oid import AuthorityInformationAccessOID

        try:
            aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
        except x509.ExtensionNotFound:
            return None
        for description in aia.value:
            if description.access_method != AuthorityInformationAccessOID.CA_ISSUERS:
                continue
            location = description.access_location
            if not isinstance(location, x509.UniformResourceIdentifier):
                continue
            parts = urlsplit(location.value)
            if parts.scheme not in ("http", "https") or not _AIA_HOST.fullmatch(parts.netloc):
                continue
            try:
                data = await self._get(location.value)
            except SNSVerificationError:
                return None
            try:
                if data.lstrip().startswith(b"-----BEGIN"):
                    return x509.load_pem_x509_certificate(data)
                return x509.load_der_x509_certificate(data)
            except ValueError:
                return None
        return None


_DEFAULT: list[SNSCertificateFetcher] = []


def _default_fetcher() -> SNSCertificateFetcher:
    if not _DEFAULT:
        _DEFAULT.append(SNSCertificateFetcher())
    return _DEFAULT[0]
