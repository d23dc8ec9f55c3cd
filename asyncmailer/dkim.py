"""DKIM signatures (RFC 6376; Ed25519 per RFC 8463) for composed messages.

A :class:`DKIMSigner` adds one ``DKIM-Signature`` header to a
:class:`~asyncmailer.result.ComposedMessage`. Use one per transport (``dkim=``) or per
message (``Message.dkim``: a signer, a mapping of options, or ``False`` to disable)::

    signer = DKIMSigner("example.com", "mail2026", private_key=Path("dkim.pem"))
    print(signer.dns_name, signer.dns_record())   # publish this TXT record
    signed = signer.sign(composed)                # a new ComposedMessage

**Amazon SES safe by default.** SES replaces the ``Message-ID`` header and sets ``Date``
(and adds ``Feedback-ID``, ``X-SES-Outgoing`` and its own ``d=amazonses.com`` signature),
so a signature covering ``Message-ID`` or ``Date`` would fail at every receiver. The SES
developer guide says not to sign ``Message-ID``, ``Date``, ``Return-Path`` and
``Bounces-To``: :data:`DEFAULT_SIGNED_HEADERS` leaves them out. Pass ``headers=`` to sign
them over plain SMTP, where nothing rewrites them.

The canonicalization and the signature are computed here, with ``cryptography`` (OpenSSL)
for RSA and Ed25519: pure-Python RSA (dkimpy's) costs ~15 ms of CPU per message on our
machine, versus ~0.7 ms. Messages bigger than :data:`DEFAULT_THREAD_THRESHOLD` are signed in a
worker thread by :meth:`DKIMSigner.sign_async`. Install with ``pip install
'asyncmailer[dkim]'``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import hashlib
import math
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread

from asyncmailer.address import _ascii_domain as _address_domain
from asyncmailer.errors import ConfigurationError, MessageError
from asyncmailer.result import ComposedMessage

__all__ = [
    "DEFAULT_OVERSIGNED_HEADERS",
    "DEFAULT_SIGNED_HEADERS",
    "DEFAULT_THREAD_THRESHOLD",
    "DKIMSigner",
    "resolve_signer",
]

#: Header fields signed by default, when present: the ones that carry meaning for the
#: reader and that no relay (SES included) rewrites. ``Message-ID`` and ``Date`` are left
#: out on purpose (SES replaces them), as are trace fields added in transit.
DEFAULT_SIGNED_HEADERS: tuple[str, ...] = (
    "from",
    "sender",
    "reply-to",
    "subject",
    "to",
    "cc",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-language",
    "list-id",
    "list-help",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-subscribe",
    "list-post",
    "list-owner",
    "list-archive",
)

#: Header fields listed once more than they occur, so that adding another instance
#: later (a second ``From``) breaks the signature.
DEFAULT_OVERSIGNED_HEADERS: tuple[str, ...] = ("from",)

#: Default ``thread_threshold``: messages larger than this many octets are signed in a
#: worker thread by :meth:`DKIMSigner.sign_async` (canonicalizing and hashing cost about
#: 4 ms of CPU per MB, so inline signing stays under ~2 ms).
DEFAULT_THREAD_THRESHOLD = 512 * 1024

# Fields that may never be signed: the signature itself, and Bcc (whose presence differs
# between recipients). Trace fields are refused too: relays add them.
_NEVER_SIGNED = frozenset({"dkim-signature", "bcc", "resent-bcc", "received", "return-path"})
_CANONICALIZATIONS = ("simple", "relaxed")
# One DNS label of a selector or a domain (RFC 6376 3.1: sub-domain; "_" tolerated inside).
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\Z")
# A field name in h=: RFC 5322 ftext without ";", which would end the tag (RFC 6376 3.2).
_HEADER_NAME_RE = re.compile(r"[!-9<-~]+\Z")
# The local part of i= (RFC 6376 3.5): an ASCII dot-atom; "=" is written as "=3D".
_IDENTITY_LOCAL_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*\Z"
)
# t= and x= have at most 12 digits (RFC 6376 3.5).
_MAX_TIME = 10**12 - 1
_WSP_RUN = re.compile(rb"[ \t]+")
_SPACE_RUN = re.compile(rb" {2,}")
# Trailing CRLF pairs, matched on the *reversed* tail ("\n\r" pairs from the start):
# anchored at the start, the match never backtracks, where "(?:\r\n)*\Z" searched
# forwards retries from every offset (quadratic on "\r\n" * n + "\r").
_REVERSED_CRLFS = re.compile(rb"(?:\n\r)*")
_LINE_WIDTH = 76
_INSTALL_HINT = "DKIM signing needs the 'cryptography' package: pip install 'asyncmailer[dkim]'"

Canonicalization = Literal["simple", "relaxed"]


@dataclasses.dataclass(frozen=True)
class _Crypto:
    """The cryptography modules, imported on first use."""

    hashes: Any
    serialization: Any
    ed25519: Any
    padding: Any
    rsa: Any


@functools.cache
def _crypto() -> _Crypto:
    """Import cryptography lazily, with an install hint when it is missing."""
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(_INSTALL_HINT) from exc
    return _Crypto(hashes, serialization, ed25519, padding, rsa)


# ----------------------------------------------------------------------- keys


def _load_key(private_key: Any, password: bytes | None) -> Any:
    """A cryptography RSA or Ed25519 private key object from any accepted form."""
    crypto = _crypto()
    if isinstance(private_key, (crypto.rsa.RSAPrivateKey, crypto.ed25519.Ed25519PrivateKey)):
        return private_key
    data: bytes
    if isinstance(private_key, os.PathLike):
        data = _read_key_file(private_key)
    elif isinstance(private_key, str):
        if "-----BEGIN" in private_key:
            data = private_key.encode("ascii", "replace")
        elif _maybe_raw_ed25519(private_key.encode("ascii", "replace")):
            data = private_key.encode("ascii")
        else:
            data = _read_key_file(private_key)
    elif isinstance(private_key, (bytes, bytearray, memoryview)):
        data = bytes(private_key)
    else:
        raise ConfigurationError(
            "private_key must be PEM bytes/str, a path, or a cryptography private key, "
            f"not {type(private_key).__name__}",
            option="private_key",
        )
    seed = _maybe_raw_ed25519(data)
    if seed is not None:
        # dkimpy's format for Ed25519 keys: the base64 of the 32-octet seed.
        return crypto.ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    try:
        key = crypto.serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError) as exc:
        # Never echo the key material: only say what is wrong.
        raise ConfigurationError(
            f"private_key is not a usable PEM private key ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'unparsable'})",
            option="private_key",
        ) from None
    if not isinstance(key, (crypto.rsa.RSAPrivateKey, crypto.ed25519.Ed25519PrivateKey)):
        raise ConfigurationError(
            f"DKIM keys are RSA or Ed25519, not {type(key).__name__}", option="private_key"
        )
    return key


def _read_key_file(path: str | os.PathLike[str]) -> bytes:
    # Read once, when the signer is configured (usually at start-up), never per message.
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the DKIM private key file {os.fspath(path)!r}: {exc.strerror}",
            option="private_key",
        ) from None


def _maybe_raw_ed25519(data: bytes) -> bytes | None:
    text = data.strip()
    if len(text) != 44 or b"-" in text:
        return None
    try:
        seed = base64.b64decode(text, validate=True)
    except binascii.Error:
        return None
    return seed if len(seed) == 32 else None


# ---------------------------------------------------------- canonicalization


def _split_message(raw: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """Split ``raw`` into ``[(lowercase name, whole field without CRLF)]`` and the body."""
    end = raw.find(b"\r\n\r\n")
    if raw.startswith(b"\r\n"):
        head, body = b"", raw[2:]
    elif end < 0:
        head, body = raw if raw.endswith(b"\r\n") else raw + b"\r\n", b""
    else:
        head, body = raw[: end + 2], raw[end + 4 :]
    # continuation lines are gathered in lists and joined once: appending them to a
    # growing bytes value would copy it for each line (quadratic in a long folded field)
    pending: list[tuple[str, list[bytes]]] = []
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t") and pending:
            pending[-1][1].append(line)
            continue
        colon = line.find(b":")
        if colon <= 0:
            raise MessageError("DKIM: a header line has no field name", field="raw")
        pending.append((line[:colon].strip().decode("ascii", "replace").lower(), [line]))
    return [(name, b"\r\n".join(lines)) for name, lines in pending], body


def _canon_header(field: bytes, method: str) -> bytes:
    """Canonicalize one header field (no trailing CRLF added)."""
    if method == "simple":
        return field
    colon = field.index(b":")
    name = field[:colon].rstrip(b" \t").lower()
    value = _WSP_RUN.sub(b" ", field[colon + 1 :].replace(b"\r\n", b"")).strip(b" ")
    return name + b":" + value


def _canon_body(body: bytes, method: str) -> bytes:
    if method == "relaxed":
        if b"\t" in body:
            body = body.replace(b"\t", b" ")
        if b"  " in body:
            body = _SPACE_RUN.sub(b" ", body)
        if b" \r\n" in body:
            body = body.replace(b" \r\n", b"\r\n")
        if body.endswith(b" "):
            body = body[:-1]
    stripped = body.rstrip(b"\r\n")
    tail = body[len(stripped) :]
    match = _REVERSED_CRLFS.match(tail[::-1])
    assert match is not None  # the pattern matches the empty string
    body = stripped + tail[: len(tail) - match.end()]
    if body:
        return body + b"\r\n"
    return b"" if method == "relaxed" else b"\r\n"


def _select(fields: Sequence[tuple[str, bytes]], names: Iterable[str]) -> list[bytes]:
    """RFC 6376 5.4.2: for each listed name, the last instance not used yet (bottom up)."""
    used: dict[str, int] = {}
    chosen: list[bytes] = []
    for name in names:
        index = used.get(name, len(fields))
        while index > 0:
            index -= 1
            if fields[index][0] == name:
                chosen.append(fields[index][1])
                break
        used[name] = index
    return chosen


def _fold_tags(tags: Sequence[tuple[str, str]]) -> bytes:
    """``DKIM-Signature: v=1; a=...; ...;`` folded at tag (and ``h=`` colon) boundaries."""
    pieces: list[tuple[str, str]] = []  # (separator, text); a fold may replace a separator
    for tag, value in tags:
        if tag == "h":
            first, *rest = value.split(":")
            pieces.append((" ", f"h={first}" + ("" if rest else ";")))
            pieces.extend(
                ("", f":{name}" + (";" if i == len(rest) - 1 else ""))
                for i, name in enumerate(rest)
            )
        else:
            pieces.append((" ", f"{tag}={value};"))
    lines: list[str] = []
    line = "DKIM-Signature:"
    for sep, text in pieces:
        if len(line) + len(sep) + len(text) > _LINE_WIDTH:
            lines.append(line)
            line = " " + text
        else:
            line += sep + text
    lines.append(line)
    return "\r\n".join(lines).encode("ascii")


# --------------------------------------------------------------------- signer


class DKIMSigner:
    """Signs composed messages with one DKIM key; immutable, safe to share between tasks.

    Example::

        signer = DKIMSigner("example.com", "s1", private_key=open("s1.pem", "rb").read())
        signed = signer.sign(await compose(message))

    - ``domain``: the signing domain (``d=``), IDNA-encoded when needed.
    - ``selector``: the key's selector (``s=``): the public key is published at
      ``<selector>._domainkey.<domain>`` (see :meth:`dns_record`).
    - ``private_key``: PEM (PKCS#1 or PKCS#8, RSA ≥ 1024 bits or Ed25519) as ``bytes`` or
      ``str``, a path to a PEM file (read once, here), a ``cryptography`` private key, or
      an Ed25519 seed in base64 (dkimpy's format). ``password`` decrypts an encrypted PEM.
    - ``headers``: the fields to sign when present (default :data:`DEFAULT_SIGNED_HEADERS`,
      which leaves out ``Message-ID`` and ``Date`` for SES). ``From`` is always signed.
    - ``oversign``: fields listed once more than they occur, so none can be added
      (default ``("from",)``).
    - ``canonicalization``: ``"relaxed/relaxed"`` (default), ``"relaxed/simple"``,
      ``"simple/simple"``..., header then body.
    - ``identity``: the agent or user identifier (``i=``): ``[local]@domain``, in ``domain``
      or a subdomain, the local part an ASCII dot-atom (RFC 6376 3.5).

    Every option is validated here (ConfigurationError naming it), whether it comes from
    the constructor, :meth:`replace` or a message's ``dkim`` mapping: nothing a caller
    passes can add a tag or a header line to the signature.
    - ``timestamp``: write ``t=`` (default True); ``expires_in``: seconds until ``x=``.
    - ``thread_threshold``: :meth:`sign_async` signs bigger messages (octets) in a worker
      thread (default :data:`DEFAULT_THREAD_THRESHOLD`).
    """

    __slots__ = (
        "_key",
        "algorithm",
        "body_canonicalization",
        "domain",
        "expires_in",
        "header_canonicalization",
        "headers",
        "identity",
        "key_size",
        "oversign",
        "selector",
        "thread_threshold",
        "timestamp",
    )

    def __init__(
        self,
        domain: str,
        selector: str,
        private_key: bytes | str | os.PathLike[str] | Any,
        *,
        headers: Sequence[str] | None = None,
        oversign: Sequence[str] = DEFAULT_OVERSIGNED_HEADERS,
        canonicalization: str | tuple[str, str] = "relaxed/relaxed",
        identity: str | None = None,
        timestamp: bool = True,
        expires_in: float | None = None,
        password: bytes | None = None,
        thread_threshold: int = DEFAULT_THREAD_THRESHOLD,
    ) -> None:
        #: Signing domain (``d=``), as an ASCII (A-label) string.
        self.domain = _dkim_domain(domain, "domain")
        if not isinstance(selector, str) or not _dns_name_ok(selector):
            raise ConfigurationError(f"invalid DKIM selector {selector!r}", option="selector")
        #: Selector (``s=``).
        self.selector = selector
        #: Header fields signed when present, lower case, in signing order.
        self.headers = _header_names(DEFAULT_SIGNED_HEADERS if headers is None else headers)
        if "from" not in self.headers:
            self.headers = ("from", *self.headers)
        #: Header fields signed one extra time.
        self.oversign = _header_names(oversign, option="oversign")
        header_c, body_c = _canonicalization(canonicalization)
        #: Header canonicalization: ``"relaxed"`` or ``"simple"``.
        self.header_canonicalization: Canonicalization = header_c
        #: Body canonicalization: ``"relaxed"`` or ``"simple"``.
        self.body_canonicalization: Canonicalization = body_c
        #: Agent or user identifier (``i=``; domain as A-labels), or None.
        self.identity = None if identity is None else _identity(identity, self.domain)
        if not isinstance(timestamp, bool):
            raise ConfigurationError("timestamp must be True or False", option="timestamp")
        #: Whether ``t=`` is written.
        self.timestamp = timestamp
        if expires_in is not None and (
            isinstance(expires_in, bool)
            or not isinstance(expires_in, (int, float))
            or not math.isfinite(expires_in)
            or not 0 < expires_in <= _MAX_TIME // 10
        ):
            raise ConfigurationError(
                f"expires_in must be a positive number of seconds, not {expires_in!r}",
                option="expires_in",
            )
        if isinstance(thread_threshold, bool) or not isinstance(thread_threshold, int):
            raise ConfigurationError(
                "thread_threshold must be an int (octets)", option="thread_threshold"
            )
        #: Seconds from signing until the signature expires (``x=``), or None.
        self.expires_in = expires_in
        #: Messages larger than this (octets) are signed in a worker thread by :meth:`sign_async`.
        self.thread_threshold = thread_threshold
        key = _load_key(private_key, password)
        self._key = key
        crypto = _crypto()
        if isinstance(key, crypto.rsa.RSAPrivateKey):
            if key.key_size < 1024:
                raise ConfigurationError(
                    f"RSA DKIM keys must have at least 1024 bits (RFC 8301), not {key.key_size}",
                    option="private_key",
                )
            #: ``"rsa-sha256"`` or ``"ed25519-sha256"`` (from the key).
            self.algorithm = "rsa-sha256"
            #: Key size in bits.
            self.key_size: int = key.key_size
        else:
            self.algorithm = "ed25519-sha256"
            self.key_size = 256

    def __repr__(self) -> str:
        return (
            f"DKIMSigner(domain={self.domain!r}, selector={self.selector!r}, "
            f"algorithm={self.algorithm!r}, canonicalization="
            f"{self.header_canonicalization + '/' + self.body_canonicalization!r})"
        )

    def replace(self, **changes: Any) -> DKIMSigner:
        """A new signer with some options changed (``selector=``, ``headers=``...)."""
        options: dict[str, Any] = {
            "domain": self.domain,
            "selector": self.selector,
            "private_key": self._key,
            "headers": self.headers,
            "oversign": self.oversign,
            "canonicalization": (self.header_canonicalization, self.body_canonicalization),
            "identity": self.identity,
            "timestamp": self.timestamp,
            "expires_in": self.expires_in,
            "thread_threshold": self.thread_threshold,
        }
        unknown = set(changes) - set(options) - {"password"}
        if unknown:
            raise ConfigurationError(
                f"unknown DKIM option(s): {', '.join(sorted(unknown))}", option=min(unknown)
            )
        options.update(changes)
        return DKIMSigner(**options)

    # ------------------------------------------------------------------ DNS

    @property
    def dns_name(self) -> str:
        """Where the public key is published: ``<selector>._domainkey.<domain>``."""
        return f"{self.selector}._domainkey.{self.domain}"

    def dns_record(self) -> str:
        """The TXT record to publish at :attr:`dns_name` (``v=DKIM1; k=...; p=...``)."""
        crypto = _crypto()
        public = self._key.public_key()
        if self.algorithm == "rsa-sha256":
            der = public.public_bytes(
                crypto.serialization.Encoding.DER,
                crypto.serialization.PublicFormat.SubjectPublicKeyInfo,
            )
            return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")
        raw = public.public_bytes(
            crypto.serialization.Encoding.Raw, crypto.serialization.PublicFormat.Raw
        )
        return "v=DKIM1; k=ed25519; p=" + base64.b64encode(raw).decode("ascii")

    # -------------------------------------------------------------- signing

    def signature_header(self, raw: bytes, *, now: float | None = None) -> bytes:
        """The ``DKIM-Signature`` field for the CRLF message ``raw``, ending with CRLF."""
        fields, body = _split_message(raw)
        present: dict[str, int] = {}
        for name, _ in fields:
            present[name] = present.get(name, 0) + 1
        if "from" not in present:
            raise MessageError("DKIM signing needs a From header", field="from")
        names: list[str] = []
        for name in self.headers:
            names.extend([name] * present.get(name, 0))
        names.extend(self.oversign)
        body_hash = hashlib.sha256(_canon_body(body, self.body_canonicalization)).digest()
        signed_at = int(time.time() if now is None else now)
        tags: list[tuple[str, str]] = [
            ("v", "1"),
            ("a", self.algorithm),
            ("c", f"{self.header_canonicalization}/{self.body_canonicalization}"),
            ("d", self.domain),
            ("s", self.selector),
        ]
        if self.identity is not None:
            # dkim-quoted-printable: "=" is the one dot-atom character it escapes
            tags.append(("i", self.identity.replace("=", "=3D")))
        if self.timestamp:
            tags.append(("t", str(signed_at)))
        if self.expires_in is not None:
            tags.append(("x", str(signed_at + max(1, round(self.expires_in)))))
        tags.append(("h", ":".join(names)))
        tags.append(("bh", base64.b64encode(body_hash).decode("ascii")))
        # b= goes last, on its own line: the verifier deletes its value with the folding
        # whitespace around it, which leaves exactly the text signed below.
        unsigned = _fold_tags(tags) + b"\r\n b="
        method = self.header_canonicalization
        data = b"".join(_canon_header(f, method) + b"\r\n" for f in _select(fields, names))
        data += _canon_header(unsigned, method)
        signature = base64.b64encode(self._sign(data))
        chunks = [signature[i : i + 72] for i in range(0, len(signature), 72)]
        return unsigned + b"\r\n  ".join(chunks) + b"\r\n"

    def _sign(self, data: bytes) -> bytes:
        crypto = _crypto()
        if self.algorithm == "rsa-sha256":
            return bytes(self._key.sign(data, crypto.padding.PKCS1v15(), crypto.hashes.SHA256()))
        # RFC 8463: Ed25519 signs the SHA-256 hash of the canonicalized data.
        return bytes(self._key.sign(hashlib.sha256(data).digest()))

    def sign_bytes(self, raw: bytes, *, now: float | None = None) -> bytes:
        """``raw`` with the ``DKIM-Signature`` field prepended."""
        return self.signature_header(raw, now=now) + raw

    def sign(self, composed: ComposedMessage, *, now: float | None = None) -> ComposedMessage:
        """A copy of ``composed`` whose ``raw`` starts with a ``DKIM-Signature`` field.

        Pure and synchronous; ``now`` (Unix time) fixes ``t=`` for reproducible output.
        """
        return dataclasses.replace(composed, raw=self.sign_bytes(composed.raw, now=now))

    async def sign_async(
        self, composed: ComposedMessage, *, now: float | None = None
    ) -> ComposedMessage:
        """:meth:`sign`, in a worker thread when the message exceeds :attr:`thread_threshold`.

        This is what a transport calls, after composing and before its checks.
        """
        if len(composed.raw) > self.thread_threshold:
            return await anyio.to_thread.run_sync(functools.partial(self.sign, composed, now=now))
        return self.sign(composed, now=now)


# ------------------------------------------------------------------- helpers


def resolve_signer(
    default: DKIMSigner | None, override: DKIMSigner | Mapping[str, Any] | bool | None
) -> DKIMSigner | None:
    """The signer for one message: the transport's ``default`` and the message's ``dkim``.

    ``override`` is ``Message.dkim``: ``None`` (or ``True``) uses ``default``, ``False``
    disables signing, a :class:`DKIMSigner` replaces ``default``, and a mapping changes
    options of ``default`` (or, without one, holds every :class:`DKIMSigner` argument).
    """
    if override is None or override is True:
        if override is True and default is None:
            raise ConfigurationError("Message.dkim=True but the transport has no DKIM signer")
        return default
    if override is False:
        return None
    if isinstance(override, DKIMSigner):
        return override
    if isinstance(override, Mapping):
        if default is not None:
            return default.replace(**override)
        try:
            return DKIMSigner(**override)
        except TypeError as exc:
            raise ConfigurationError(f"Message.dkim: {exc}", option="dkim") from None
    raise ConfigurationError(
        f"Message.dkim must be a DKIMSigner, a mapping, True, False or None, "
        f"not {type(override).__name__}",
        option="dkim",
    )


def _dns_name_ok(name: str) -> bool:
    """True for a dot-separated name of LDH labels (``_`` inside) of at most 253 octets."""
    return len(name) <= 253 and all(_LABEL_RE.match(label) for label in name.split("."))


def _dkim_domain(domain: object, option: str) -> str:
    """The signing domain as lower-case A-labels (IDNA2008, UTS #46), or ConfigurationError."""
    what = "domain" if option == "domain" else f"{option} domain"
    # a trailing dot (the DNS root) is the one spelling variant taken off; nothing else is
    if not isinstance(domain, str) or not domain.rstrip("."):
        raise ConfigurationError(f"invalid DKIM {what} {domain!r}", option=option)
    ascii_domain, why = _address_domain(domain.removesuffix("."))
    if ascii_domain is None or not _dns_name_ok(ascii_domain) or "." not in ascii_domain:
        raise ConfigurationError(
            f"invalid DKIM {what} {domain!r}" + (f": {why}" if why else ""), option=option
        )
    return ascii_domain.lower()


def _identity(identity: object, domain: str) -> str:
    """Validate an ``i=`` value (RFC 6376 3.5): ``[local]@domain``, in ``domain`` or below it."""
    if not isinstance(identity, str):
        raise ConfigurationError("identity must be a string", option="identity")
    local, at, where = identity.rpartition("@")
    if not at or (local and not _IDENTITY_LOCAL_RE.match(local)):
        raise ConfigurationError(
            f"invalid DKIM identity {identity!r}: expected [local-part]@domain, the local "
            "part an ASCII dot-atom",
            option="identity",
        )
    ascii_where = _dkim_domain(where, "identity")
    if not (ascii_where == domain or ascii_where.endswith("." + domain)):
        raise ConfigurationError(
            f"identity {identity!r} must be '@{domain}' or in a subdomain of it",
            option="identity",
        )
    return f"{local}@{ascii_where}"


def _header_names(names: Iterable[str], *, option: str = "headers") -> tuple[str, ...]:
    if isinstance(names, str):
        raise ConfigurationError(f"{option} must be a sequence of header names", option=option)
    result: list[str] = []
    for name in names:
        lower = name.lower() if isinstance(name, str) else ""
        if not _HEADER_NAME_RE.match(lower):
            raise ConfigurationError(f"invalid header name {name!r} in {option}", option=option)
        if lower in _NEVER_SIGNED:
            raise ConfigurationError(f"the {name} header must not be signed", option=option)
        if lower not in result:
            result.append(lower)
    return tuple(result)


def _canonicalization(value: str | tuple[str, str]) -> tuple[Canonicalization, Canonicalization]:
    parts = tuple(value.split("/")) if isinstance(value, str) else tuple(value)
    if len(parts) == 1:
        parts = (parts[0], "simple")  # RFC 6376: a lone algorithm is the header's
    if len(parts) != 2 or any(p not in _CANONICALIZATIONS for p in parts):
        raise ConfigurationError(
            f"canonicalization must be 'relaxed/relaxed', 'relaxed/simple', 'simple/simple' "
            f"or 'simple/relaxed', not {value!r}",
            option="canonicalization",
        )
    return parts[0], parts[1]  # type: ignore[return-value]
