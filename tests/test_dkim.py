"""DKIM signatures, checked by an independent verifier (dkimpy) with a supplied DNS answer."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from asyncmailer.dkim import (
    DEFAULT_SIGNED_HEADERS,
    DEFAULT_THREAD_THRESHOLD,
    DKIMSigner,
    resolve_signer,
)
from asyncmailer.errors import ConfigurationError, MessageError
from asyncmailer.message import Attachment, Message
from asyncmailer.mime import compose_sync
from asyncmailer.result import ComposedMessage
from asyncmailer.transports.base import MessageInput
from asyncmailer.transports.memory import MemoryTransport
from asyncmailer.transports.smtp import SMTPTransport
from tests.smtpd_helpers import SMTPServer

NOW = 1_790_000_000


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def pem(rsa_key: rsa.RSAPrivateKey) -> bytes:
    return rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def signer(rsa_key: rsa.RSAPrivateKey) -> DKIMSigner:
    return DKIMSigner("example.com", "s2026", private_key=rsa_key)


def dns_for(*signers: DKIMSigner) -> Callable[..., bytes | None]:
    """dkimpy's ``dnsfunc``: answers TXT queries for the signers' keys only."""
    records = {f"{s.dns_name}.".encode(): s.dns_record().encode() for s in signers}

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return dnsfunc


def verifies(raw: bytes, signer: DKIMSigner, index: int = 0) -> bool:
    checker = dkim.DKIM(raw)
    try:
        return bool(checker.verify(idx=index, dnsfunc=dns_for(signer)))
    except dkim.DKIMException:  # body hash mismatch and other hard failures
        return False


def order(**fields: Any) -> ComposedMessage:
    base: dict[str, Any] = {
        "from_": "Shop <shop@example.com>",
        "to": ["ada@example.org", "Bob <bob@example.org>"],
        "cc": "carol@example.org",
        "reply_to": "help@example.com",
        "subject": "Votre commande n° 42 — merci beaucoup, elle part aujourd'hui " * 2,
        "text": "Hello   Ada,\n\ntrailing spaces   \n\tand tabs\n\n\n",
        "html": "<p>Hello <b>Ada</b></p>",
        "attachments": [Attachment(filename="invoice.pdf", content=b"%PDF-1.4 " * 200)],
        "list_headers": {"unsubscribe": "https://example.com/u/42", "one_click": True},
    }
    base.update(fields)
    return compose_sync(Message(**base))


def set_header(raw: bytes, name: bytes, value: bytes) -> bytes:
    """Replace every instance of header ``name`` (folded lines included), like a relay."""
    pattern = re.compile(rb"(?im)^" + re.escape(name) + rb":.*\r\n(?:[ \t].*\r\n)*")
    assert pattern.search(raw), name
    return pattern.sub(name + b": " + value + b"\r\n", raw)


def like_ses(raw: bytes) -> bytes:
    """What SES does to a raw message: new Message-ID and Date, its own headers on top."""
    raw = set_header(raw, b"Message-ID", b"<0100018c-aaaa-bbbb@email.amazonses.com>")
    raw = set_header(raw, b"Date", b"Tue, 3 Feb 2026 10:00:00 +0000")
    ses_headers = (
        b"DKIM-Signature: v=1; a=rsa-sha256; d=amazonses.com; s=x; h=from; bh=AAAA; b=AAAA\r\n"
        b"Feedback-ID: 1.us-east-1.abc=:AmazonSES\r\n"
        b"X-SES-Outgoing: 2026.02.03-54.240.0.1\r\n"
    )
    return ses_headers + raw


# ------------------------------------------------------------------ verifying


@pytest.mark.parametrize(
    "canonicalization", ["relaxed/relaxed", "relaxed/simple", "simple/simple", "simple/relaxed"]
)
def test_signature_verifies(rsa_key: rsa.RSAPrivateKey, canonicalization: str) -> None:
    signer = DKIMSigner(
        "example.com", "s2026", private_key=rsa_key, canonicalization=canonicalization
    )
    composed = order()
    signed = signer.sign(composed)
    assert signed.raw.endswith(composed.raw)
    assert signed.raw.startswith(
        b"DKIM-Signature: v=1; a=rsa-sha256; c=" + canonicalization.encode()
    )
    assert signed.envelope == composed.envelope
    assert signed.message_id == composed.message_id
    assert verifies(signed.raw, signer)


def test_every_header_line_is_short(signer: DKIMSigner) -> None:
    header = signer.signature_header(order().raw, now=NOW)
    lines = header.split(b"\r\n")
    assert lines[-1] == b""
    assert all(len(line) <= 78 for line in lines)
    assert all(line[:1] in (b" ", b"\t") for line in lines[1:-1])


def test_default_headers_leave_out_message_id_and_date(signer: DKIMSigner) -> None:
    assert "message-id" not in DEFAULT_SIGNED_HEADERS
    assert "date" not in DEFAULT_SIGNED_HEADERS
    header = signer.signature_header(order().raw, now=NOW)
    tags = dict(dkim.util.parse_tag_value(header.split(b":", 1)[1]))
    signed = tags[b"h"].replace(b" ", b"").replace(b"\r\n", b"").split(b":")
    assert signed == [
        b"from",
        b"reply-to",
        b"subject",
        b"to",
        b"cc",
        b"mime-version",
        b"content-type",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
        b"from",  # oversigned: a second From breaks the signature
    ]
    assert tags[b"t"] == str(NOW).encode()
    assert b"x" not in tags


def test_survives_ses_rewriting_message_id_and_date(signer: DKIMSigner) -> None:
    signed = signer.sign(order())
    after_ses = like_ses(signed.raw)
    assert b"amazonses.com>" in after_ses
    assert verifies(after_ses, signer, index=1)  # index 0 is SES's own signature


def test_signing_message_id_breaks_under_ses(rsa_key: rsa.RSAPrivateKey) -> None:
    # The control experiment: the check above can fail.
    signer = DKIMSigner(
        "example.com", "s2026", private_key=rsa_key, headers=[*DEFAULT_SIGNED_HEADERS, "message-id"]
    )
    signed = signer.sign(order())
    assert verifies(signed.raw, signer)
    assert not verifies(like_ses(signed.raw), signer, index=1)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda raw: raw.replace(b"JVBERi0x", b"JVBERi0y", 1), id="body"),
        pytest.param(lambda raw: set_header(raw, b"Subject", b"Free money"), id="subject"),
        pytest.param(lambda raw: set_header(raw, b"To", b"eve@example.net"), id="to"),
        pytest.param(
            lambda raw: raw.replace(b"\r\nFrom:", b"\r\nFrom: eve@example.net\r\nFrom:", 1),
            id="second-from",
        ),
    ],
)
def test_tampering_is_detected(signer: DKIMSigner, tamper: Callable[[bytes], bytes]) -> None:
    signed = signer.sign(order()).raw
    assert verifies(signed, signer)
    tampered = tamper(signed)
    assert tampered != signed
    assert not verifies(tampered, signer)


def test_relaxed_tolerates_refolding_simple_does_not(rsa_key: rsa.RSAPrivateKey) -> None:
    def refold(raw: bytes) -> bytes:
        return raw.replace(b"Reply-To: help@example.com", b"Reply-To:   help@example.com  ")

    relaxed = DKIMSigner("example.com", "s", private_key=rsa_key)
    simple = relaxed.replace(canonicalization="simple/simple")
    assert verifies(refold(relaxed.sign(order()).raw), relaxed)
    assert not verifies(refold(simple.sign(order()).raw), simple)


@pytest.mark.parametrize(
    "body", [b"", b"\r\n", b"\r\n\r\n", b"x", b"x  \r\n\r\n", b" \t \r\n", b"a\r\n \r\n\r\n"]
)
@pytest.mark.parametrize("canonicalization", ["relaxed/relaxed", "simple/simple"])
def test_edge_case_bodies(rsa_key: rsa.RSAPrivateKey, body: bytes, canonicalization: str) -> None:
    signer = DKIMSigner("example.com", "s", private_key=rsa_key, canonicalization=canonicalization)
    raw = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: s\r\n\r\n" + body
    assert verifies(signer.sign_bytes(raw), signer)


def test_headers_only_message(signer: DKIMSigner) -> None:
    raw = b"From: a@example.com\r\nSubject: no body\r\n"
    assert verifies(signer.sign_bytes(raw), signer)


def test_ed25519() -> None:
    pytest.importorskip("nacl", reason="dkimpy verifies Ed25519 with PyNaCl")
    key = ed25519.Ed25519PrivateKey.generate()
    signer = DKIMSigner("example.com", "ed", private_key=key)
    assert signer.algorithm == "ed25519-sha256"
    assert signer.dns_record().startswith("v=DKIM1; k=ed25519; p=")
    assert verifies(signer.sign(order()).raw, signer)
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    import base64

    # dkimpy's key format (base64 seed) works too and signs identically
    same = DKIMSigner("example.com", "ed", private_key=base64.b64encode(seed))
    assert same.signature_header(b"From: a@x.org\r\n\r\nhi", now=NOW) == signer.signature_header(
        b"From: a@x.org\r\n\r\nhi", now=NOW
    )


def test_signing_is_deterministic_for_a_given_time(signer: DKIMSigner) -> None:
    composed = order()
    assert signer.sign(composed, now=NOW) == signer.sign(composed, now=NOW)
    assert signer.sign(composed, now=NOW) != signer.sign(composed, now=NOW + 1)


def test_identity_and_expiry(rsa_key: rsa.RSAPrivateKey) -> None:
    signer = DKIMSigner(
        "example.com", "s", private_key=rsa_key, identity="news@mail.example.com", expires_in=3600
    )
    header = signer.signature_header(order().raw, now=NOW)
    assert b"i=news@mail.example.com;" in header
    assert f"x={NOW + 3600};".encode() in header
    no_time = signer.replace(timestamp=False, expires_in=None)
    assert b" t=" not in no_time.signature_header(order().raw, now=NOW)


async def test_sign_async_big_message_matches_sign(signer: DKIMSigner) -> None:
    big = order(
        attachments=[Attachment(filename="big.bin", content=b"\x00" * DEFAULT_THREAD_THRESHOLD)]
    )
    assert len(big.raw) > DEFAULT_THREAD_THRESHOLD
    threaded = await signer.sign_async(big, now=NOW)
    assert threaded == signer.sign(big, now=NOW)
    assert verifies(threaded.raw, signer)
    small = order()
    assert await signer.sign_async(small, now=NOW) == signer.sign(small, now=NOW)


# ----------------------------------------------------------------------- keys


def test_key_formats(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # quick to load
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    pkcs8 = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    encrypted = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"hunter2"),
    )
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(pkcs8)
    signers = [
        DKIMSigner("example.com", "s", private_key=pem),
        DKIMSigner("example.com", "s", private_key=pem.decode()),
        DKIMSigner("example.com", "s", private_key=pkcs8),
        DKIMSigner("example.com", "s", private_key=key_file),
        DKIMSigner("example.com", "s", private_key=str(key_file)),
        DKIMSigner("example.com", "s", private_key=rsa_key),
        DKIMSigner("example.com", "s", private_key=encrypted, password=b"hunter2"),
    ]
    headers = {s.signature_header(b"From: a@example.com\r\n\r\nx", now=NOW) for s in signers}
    assert len(headers) == 1
    assert {s.key_size for s in signers} == {1024}


def test_bad_keys_never_echo_key_material(pem: bytes, tmp_path: Path) -> None:
    broken = pem.replace(pem[100:140], b"A" * 40)
    with pytest.raises(ConfigurationError) as info:
        DKIMSigner("example.com", "s", private_key=broken)
    assert info.value.option == "private_key"
    assert pem[200:240].decode() not in str(info.value)
    with pytest.raises(ConfigurationError, match="cannot read"):
        DKIMSigner("example.com", "s", private_key=tmp_path / "missing.pem")
    with pytest.raises(ConfigurationError):
        DKIMSigner("example.com", "s", private_key=12345)
    encrypted_without_password = rsa.generate_private_key(
        public_exponent=65537, key_size=1024
    ).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(ConfigurationError):
        DKIMSigner("example.com", "s", private_key=encrypted_without_password)


def test_repr_hides_the_key(signer: DKIMSigner, pem: bytes) -> None:
    text = repr(signer)
    assert "example.com" in text and "s2026" in text
    assert "BEGIN" not in text and pem[40:60].decode() not in text


# --------------------------------------------------------------- configuration


def test_options_are_validated(pem: bytes) -> None:
    with pytest.raises(ConfigurationError, match="selector"):
        DKIMSigner("example.com", "bad selector", private_key=pem)
    with pytest.raises(ConfigurationError, match="domain"):
        DKIMSigner("not a domain", "s", private_key=pem)
    with pytest.raises(ConfigurationError, match="must not be signed"):
        DKIMSigner("example.com", "s", private_key=pem, headers=["from", "bcc"])
    with pytest.raises(ConfigurationError, match="must not be signed"):
        DKIMSigner("example.com", "s", private_key=pem, oversign=["dkim-signature"])
    with pytest.raises(ConfigurationError, match="sequence"):
        DKIMSigner("example.com", "s", private_key=pem, headers="from")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="canonicalization"):
        DKIMSigner("example.com", "s", private_key=pem, canonicalization="loose/relaxed")
    with pytest.raises(ConfigurationError, match="identity"):
        DKIMSigner("example.com", "s", private_key=pem, identity="a@example.net")
    with pytest.raises(ConfigurationError, match="expires_in"):
        DKIMSigner("example.com", "s", private_key=pem, expires_in=0)
    with pytest.raises(ConfigurationError, match="unknown DKIM option"):
        DKIMSigner("example.com", "s", private_key=pem).replace(selectr="x")


def test_domain_is_idna_encoded(rsa_key: rsa.RSAPrivateKey) -> None:
    signer = DKIMSigner("Bücher.Example.", "s", private_key=rsa_key)
    assert signer.domain == "xn--bcher-kva.example"
    assert signer.dns_name == "s._domainkey.xn--bcher-kva.example"


def test_from_is_always_signed(rsa_key: rsa.RSAPrivateKey) -> None:
    signer = DKIMSigner("example.com", "s", private_key=rsa_key, headers=["subject"])
    assert signer.headers == ("from", "subject")


def test_lone_canonicalization_means_simple_body(rsa_key: rsa.RSAPrivateKey) -> None:
    signer = DKIMSigner("example.com", "s", private_key=rsa_key, canonicalization="relaxed")
    assert (signer.header_canonicalization, signer.body_canonicalization) == ("relaxed", "simple")


def test_message_without_from_is_refused(signer: DKIMSigner) -> None:
    with pytest.raises(MessageError) as info:
        signer.sign_bytes(b"To: a@example.com\r\nSubject: x\r\n\r\nbody")
    assert info.value.field == "from"


# ------------------------------------------------------- per-message override


def test_resolve_signer(signer: DKIMSigner) -> None:
    other = signer.replace(selector="other")
    assert resolve_signer(signer, None) is signer
    assert resolve_signer(signer, True) is signer
    assert resolve_signer(None, None) is None
    assert resolve_signer(signer, False) is None
    assert resolve_signer(signer, other) is other
    changed = resolve_signer(signer, {"selector": "s2027"})
    assert changed is not None and changed.selector == "s2027" and changed.domain == "example.com"
    with pytest.raises(ConfigurationError):
        resolve_signer(None, True)
    with pytest.raises(ConfigurationError):
        resolve_signer(signer, "yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        resolve_signer(None, {"domain": "example.com"})  # selector and key missing


async def test_end_to_end_per_transport_and_per_message(signer: DKIMSigner) -> None:
    other = signer.replace(selector="marketing")
    base = {"from_": "shop@example.com", "to": "ada@example.org", "text": "hi"}
    async with MemoryTransport(dkim=signer) as transport:
        await transport.send_mail(Message(subject="default", **base))
        await transport.send_mail(Message(subject="off", dkim=False, **base))
        await transport.send_mail(Message(subject="other", dkim=other, **base))
        await transport.send_mail(
            Message(subject="mapping", dkim={"selector": "marketing"}, **base)
        )
    default, off, by_signer, by_mapping = transport.messages
    assert verifies(default.raw, signer)
    assert not off.raw.startswith(b"DKIM-Signature")
    for sent in (by_signer, by_mapping):
        assert b"s=marketing;" in sent.raw
        assert dkim.DKIM(sent.raw).verify(dnsfunc=dns_for(other))
    assert default.header("DKIM-Signature") is not None


async def test_end_to_end_through_smtp(signer: DKIMSigner) -> None:
    class SigningSMTP(SMTPTransport):
        async def prepare(
            self, message: MessageInput | None = None, /, **fields: Any
        ) -> tuple[ComposedMessage, Message | None]:
            composed, msg = await super().prepare(message, **fields)
            return await signer.sign_async(composed), msg

    async with SMTPServer() as server:
        async with SigningSMTP(
            hostname=server.host, port=server.port, local_hostname="localhost"
        ) as smtp:
            await smtp.send_mail(
                from_="shop@example.com", to="ada@example.org", text="line\n.\n.dot line\n"
            )
        [received] = server.messages
    assert verifies(received.data, signer)


def test_missing_cryptography_gives_an_install_hint(
    monkeypatch: pytest.MonkeyPatch, rsa_key: rsa.RSAPrivateKey
) -> None:
    from asyncmailer import dkim as module

    module._crypto.cache_clear()
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives", None)
    try:
        with pytest.raises(ImportError, match=r"asyncmailer\[dkim\]"):
            DKIMSigner("example.com", "s", private_key=rsa_key)
    finally:
        module._crypto.cache_clear()


async def test_ses_transport_signs_and_the_signature_survives_id_rewrites(
    signer: DKIMSigner,
) -> None:
    """End to end through SESTransport: the endpoint stores a verifiable signature."""
    from asyncmailer import SESTransport
    from asyncmailer.testing import SESEndpoint

    async with (
        SESEndpoint() as endpoint,
        SESTransport(endpoint_url=endpoint.url, dkim=signer) as ses,
    ):
        await ses.send_mail(from_="shop@example.com", to="ada@example.org", text="hi")
    (stored,) = endpoint.messages()
    assert verifies(stored.raw, signer)
