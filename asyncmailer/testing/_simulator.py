"""The SES mailbox simulator: the events SES sends back, signed as SNS signs them, published.

Sending to ``success@``, ``bounce@``, ``ooto@``, ``complaint@`` or
``suppressionlist@simulator.amazonses.com`` (labels such as ``bounce+order-7@`` included)
makes the endpoint produce the events SES produces for them:

====================  ===========================================================
address               events
====================  ===========================================================
``success@``          ``Delivery``
``bounce@``           ``Bounce`` (``Permanent``/``General``, ``smtp; 550 5.1.1``)
``ooto@``             ``Delivery``, and an out-of-office reply to the sender
``complaint@``        ``Delivery``, then ``Complaint`` (``abuse``)
``suppressionlist@``  ``Bounce`` (``Permanent``/``OnAccountSuppressionList``)
====================  ===========================================================

Each event is an SES notification (``notificationType``) or an event-publishing record
(``eventType``), wrapped in an SNS ``Notification`` envelope signed with a test RSA key
(SignatureVersion 1 or 2, the canonical string AWS documents), then POSTed to a subscriber
URL as SNS does and/or sent to an SQS queue as an SNS subscription delivers it. The key and
its self-signed certificate are generated once per process with ``cryptography``, which is
imported only when something is published: the endpoint itself needs no extra.

Publishing happens after the send is answered, in worker tasks fed by a bounded queue; a
subscriber that is down or slow never fails, delays or blocks a send.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.policy
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import formatdate, make_msgid, parseaddr
from typing import TYPE_CHECKING, Any, Literal

from asyncmailer.errors import ConfigurationError
from asyncmailer.testing._config import EndpointConfig
from asyncmailer.testing._store import StoredMessage

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

__all__ = [
    "ACCOUNT_ID",
    "SIMULATOR_CERT_URL",
    "SIMULATOR_DOMAIN",
    "Simulator",
    "SimulatorEvent",
    "require_cryptography",
    "simulator_certificate",
    "simulator_outcome",
    "simulator_resolver",
]

_log = logging.getLogger("asyncmailer.testing")

#: The mailbox simulator's domain.
SIMULATOR_DOMAIN = "simulator.amazonses.com"
#: The ``SigningCertURL`` of the envelopes the endpoint signs. It passes the production
#: SNS host check; only :func:`simulator_resolver` serves it, never the network.
SIMULATOR_CERT_URL = (
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-asyncmailer-test.pem"
)
#: The AWS account id in ARNs and ``sendingAccountId``.
ACCOUNT_ID = "123456789012"

Outcome = Literal["success", "bounce", "ooto", "complaint", "suppressionlist"]
_OUTCOMES: frozenset[str] = frozenset(("success", "bounce", "ooto", "complaint", "suppressionlist"))
Status = Literal["pending", "delivered", "failed", "dropped"]

_INSTALL_HINT = (
    "publishing simulator events needs cryptography: pip install 'asyncmailer[feedback]'"
)
_SUPPRESSED_DIAGNOSTIC = (
    "Amazon SES did not send the message to this address because it is on the suppression "
    "list for your account. For more information about removing addresses from the "
    "suppression list, see the Amazon SES Developer Guide at "
    "https://docs.aws.amazon.com/ses/latest/DeveloperGuide/sending-email-suppression-list.html"
)
_SNS_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SNS_HEADERS = {
    "Content-Type": "text/plain; charset=UTF-8",
    "User-Agent": "Amazon Simple Notification Service Agent",
    "x-amz-sns-message-type": "Notification",
}
# Delays before the second and third delivery attempts (SNS retries 5xx and failed
# connections; its real back-off is longer, a test wants it short).
_RETRY_DELAYS = (0.1, 0.5, 1.0, 2.0)
_MAX_KEPT_EVENTS = 10_000


def require_cryptography() -> None:
    """Raise :class:`ConfigurationError` when ``cryptography`` cannot be imported."""
    try:
        import cryptography  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(_INSTALL_HINT, option="sns_subscriber_url") from exc


def simulator_outcome(address: str) -> Outcome | None:
    """Which simulator mailbox ``address`` is (``"bounce"``...), or None for other addresses.

    Labels are allowed (``bounce+order-7@simulator.amazonses.com``); case does not matter.
    """
    local, at, domain = address.strip().rpartition("@")
    if not at or domain.lower().rstrip(">") != SIMULATOR_DOMAIN:
        return None
    box = local.lstrip("<").partition("+")[0].lower()
    return box if box in _OUTCOMES else None  # type: ignore[return-value]


# ----------------------------------------------------------------- the signing authority


class _Authority:
    """The test RSA key and its self-signed certificate for ``sns.amazonaws.com``."""

    __slots__ = ("certificate", "key", "pem")

    def __init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        now = datetime.now(timezone.utc)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "asyncmailer test (not AWS)"),
            ]
        )
        self.key: RSAPrivateKey = key
        self.certificate: x509.Certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName("sns.amazonaws.com")]), critical=False
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.pem: bytes = self.certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, data: bytes, version: Literal["1", "2"]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 # SNS v1
        return base64.b64encode(self.key.sign(data, padding.PKCS1v15(), algorithm)).decode()


_AUTHORITY: list[_Authority] = []
_AUTHORITY_LOCK = threading.Lock()


def _authority() -> _Authority:
    if not _AUTHORITY:
        with _AUTHORITY_LOCK:
            if not _AUTHORITY:
                try:
                    _AUTHORITY.append(_Authority())
                except ImportError as exc:
                    raise ConfigurationError(_INSTALL_HINT, option="sns_subscriber_url") from exc
    return _AUTHORITY[0]


def simulator_certificate() -> bytes:
    """The PEM certificate whose key signs this process's simulator events.

    It is self-signed, issued to ``sns.amazonaws.com``, generated on first use (needs
    ``cryptography``) and lives as long as the process; its URL is
    :data:`SIMULATOR_CERT_URL`. An endpoint in another process has its own: read it with
    :meth:`RemoteEndpoint.simulator_certificate`.
    """
    return _authority().pem


def simulator_resolver(
    endpoint: str | None = None, *, certificate: bytes | str | None = None
) -> Callable[[str], Awaitable[x509.Certificate]]:
    """A certificate resolver for ``verify_sns_message(resolver=...)`` that trusts the simulator.

    It answers :data:`SIMULATOR_CERT_URL` with the simulator's certificate and refuses
    every other URL (``SNSVerificationError``, reason ``"cert_invalid"``), so envelopes
    signed by anyone else, AWS included, fail. Which certificate:

    * by default, this process's (:func:`simulator_certificate`): the endpoint runs here;
    * ``endpoint="http://127.0.0.1:8025"``: the one of the endpoint serving there (another
      process), read from its control API once, on first use;
    * ``certificate=``: a PEM given.

    Example::

        resolver = simulator_resolver()
        sns = await verify_sns_message(body, resolver=resolver)
        app.router.add_post("/sns", sns_handler(apply_to(suppression), resolver=resolver))

    Use it in tests and demos only: in production, the default resolver fetches and checks
    AWS's certificate.
    """
    from asyncmailer.feedback._errors import SNSVerificationError

    cache: list[x509.Certificate] = []
    lock = asyncio.Lock() if endpoint is not None else None

    def load(pem: bytes | str) -> x509.Certificate:
        from cryptography import x509

        return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)

    async def resolve(url: str) -> x509.Certificate:
        if url != SIMULATOR_CERT_URL:
            raise SNSVerificationError(
                f"{url} is not the local SES endpoint's simulator certificate",
                reason="cert_invalid",
                field="SigningCertURL",
            )
        if cache:
            return cache[0]
        if certificate is not None:
            cache.append(load(certificate))
        elif endpoint is not None:
            assert lock is not None
            async with lock:
                if not cache:
                    from asyncmailer.testing._remote import RemoteEndpoint

                    remote = RemoteEndpoint(endpoint)
                    cache.append(load(await asyncio.to_thread(remote.simulator_certificate)))
        else:
            cache.append((await asyncio.to_thread(_authority)).certificate)
        return cache[0]

    return resolve


# ----------------------------------------------------------------------------- events


class SimulatorEvent:
    """One event the endpoint produced for a message sent to the mailbox simulator.

    ``event`` is the SES event as SES would deliver it (what
    ``asyncmailer.feedback.parse_ses_event`` reads); ``envelope`` the signed SNS
    ``Notification`` carrying it, once built. The statuses say what became of the
    deliveries: ``None`` (not configured), ``"pending"``, ``"delivered"``, ``"failed"``
    (after the retries; see ``error``) or ``"dropped"`` (the publish queue was full).
    Example::

        await endpoint.wait_for_events()
        [event] = endpoint.events()
        assert event.kind == "Bounce" and event.sns_status == "delivered"
    """

    __slots__ = (
        "auto_reply",
        "created_at",
        "envelope",
        "error",
        "event",
        "kind",
        "message_id",
        "recipient",
        "sns_status",
        "sqs_status",
    )

    def __init__(
        self,
        *,
        kind: str,
        recipient: str,
        message_id: str,
        event: dict[str, Any],
        created_at: float,
        auto_reply: bytes | None = None,
    ) -> None:
        #: ``"Delivery"``, ``"Bounce"`` or ``"Complaint"``.
        self.kind = kind
        #: The simulator address the event is about.
        self.recipient = recipient
        #: The SES message id the endpoint returned for the send.
        self.message_id = message_id
        #: The SES event (a JSON object).
        self.event = event
        #: When it was produced (:func:`time.time`).
        self.created_at = created_at
        #: For ``ooto@``'s delivery: the out-of-office reply sent back to the sender (octets).
        self.auto_reply = auto_reply
        #: The signed SNS envelope, once built (None when nothing needs one).
        self.envelope: dict[str, str] | None = None
        #: What became of the POST to the subscriber URL.
        self.sns_status: Status | None = None
        #: What became of the SQS message.
        self.sqs_status: Status | None = None
        #: The last delivery error, if any.
        self.error: str | None = None

    def __repr__(self) -> str:
        return (
            f"SimulatorEvent(kind={self.kind!r}, recipient={self.recipient!r}, "
            f"message_id={self.message_id!r}, sns_status={self.sns_status!r}, "
            f"sqs_status={self.sqs_status!r})"
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the auto reply as text)."""
        return {
            "kind": self.kind,
            "recipient": self.recipient,
            "message_id": self.message_id,
            "event": self.event,
            "envelope": self.envelope,
            "created_at": self.created_at,
            "auto_reply": None if self.auto_reply is None else self.auto_reply.decode("utf-8"),
            "sns_status": self.sns_status,
            "sqs_status": self.sqs_status,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SimulatorEvent:
        """Rebuild an event from :meth:`to_json` output."""
        reply = data.get("auto_reply")
        item = cls(
            kind=data["kind"],
            recipient=data["recipient"],
            message_id=data["message_id"],
            event=dict(data["event"]),
            created_at=float(data["created_at"]),
            auto_reply=reply.encode("utf-8") if isinstance(reply, str) else None,
        )
        item.envelope = data.get("envelope")
        item.sns_status = data.get("sns_status")
        item.sqs_status = data.get("sqs_status")
        item.error = data.get("error")
        return item


def _iso(when: float) -> str:
    stamp = datetime.fromtimestamp(when, timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _feedback_id(now: float) -> str:
    r = uuid.uuid4().hex
    return f"01{int(now * 1000):014x}-{r[:8]}-{r[8:12]}-{r[12:16]}-{r[16:20]}-{r[20:]}-000000"


def _region(config: EndpointConfig) -> str:
    return config.region or "us-east-1"


def _domain(address: str) -> str:
    return (parseaddr(address)[1] or address).rpartition("@")[2].lower()


def _user_tags(params: Mapping[str, Any]) -> dict[str, list[str]]:
    tags: dict[str, list[str]] = {}
    for key in ("EmailTags", "Tags"):
        items = params.get(key)
        if isinstance(items, list):
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("Name"), str):
                    tags.setdefault(item["Name"], []).append(str(item.get("Value", "")))
    return tags


def _headers(record: StoredMessage) -> tuple[list[dict[str, str]], dict[str, Any]]:
    message = BytesHeaderParser(policy=email.policy.compat32).parsebytes(record.raw)
    headers = [{"name": name, "value": str(value)} for name, value in message.items()]
    common: dict[str, Any] = {}
    for field, key in (("from", "From"), ("to", "To"), ("cc", "Cc"), ("replyTo", "Reply-To")):
        values = message.get_all(key)
        if values:
            common[field] = [str(value) for value in values]
    for field, key in (("date", "Date"), ("messageId", "Message-ID"), ("subject", "Subject")):
        value = message.get(key)
        if value is not None:
            common[field] = str(value)
    return headers, common


def build_events(
    record: StoredMessage, config: EndpointConfig, now: float | None = None
) -> list[SimulatorEvent]:
    """The events SES produces for ``record``'s simulator recipients (none for others)."""
    outcomes = [(d, simulator_outcome(d)) for d in record.destinations]
    targets = [(d, o) for d, o in outcomes if o is not None]
    if not targets:
        return []
    now = time.time() if now is None else now
    region = _region(config)
    event_style = config.event_style == "event"
    include_headers = config.include_headers if config.include_headers is not None else event_style
    source = parseaddr(record.source)[1] or record.source
    domain = _domain(source)
    mail: dict[str, Any] = {
        "timestamp": _iso(record.received_at),
        "source": record.source,
        "sourceArn": f"arn:aws:ses:{region}:{ACCOUNT_ID}:identity/{domain}",
        "sourceIp": "127.0.0.1",
        "callerIdentity": "asyncmailer-test",
        "sendingAccountId": ACCOUNT_ID,
        "messageId": record.message_id,
        "destination": list(record.destinations),
    }
    common: dict[str, Any] = {}
    if include_headers:
        headers, common = _headers(record)
        mail["headersTruncated"] = False
        mail["headers"] = headers
        mail["commonHeaders"] = common
    if event_style:
        tags: dict[str, list[str]] = {
            "ses:operation": [record.action],
            "ses:source-ip": ["127.0.0.1"],
            "ses:from-domain": [domain],
            "ses:caller-identity": ["asyncmailer-test"],
        }
        config_set = record.params.get("ConfigurationSetName")
        if isinstance(config_set, str):
            tags["ses:configuration-set"] = [config_set]
        tags.update(_user_tags(record.params))
        mail["tags"] = tags
    kind_key = "eventType" if event_style else "notificationType"
    stamp = _iso(now)
    events: list[SimulatorEvent] = []

    def add(kind: str, recipient: str, body_key: str, body: dict[str, Any]) -> SimulatorEvent:
        payload = {kind_key: kind, "mail": mail, body_key: body}
        item = SimulatorEvent(
            kind=kind,
            recipient=recipient,
            message_id=record.message_id,
            event=payload,
            created_at=now,
        )
        events.append(item)
        return item

    processing = max(0, int((now - record.received_at) * 1000))
    for recipient, outcome in targets:
        if outcome in ("success", "ooto", "complaint"):
            delivered = add(
                "Delivery",
                recipient,
                "delivery",
                {
                    "timestamp": stamp,
                    "processingTimeMillis": processing,
                    "recipients": [recipient],
                    "smtpResponse": "250 2.6.0 Message received",
                    "remoteMtaIp": "127.0.0.1",
                    "reportingMTA": f"a8-70.smtp-out.{region}.amazonses.com",
                },
            )
            if outcome == "ooto":
                delivered.auto_reply = _auto_reply(recipient, source, common, record)
        if outcome == "complaint":
            add(
                "Complaint",
                recipient,
                "complaint",
                {
                    "feedbackId": _feedback_id(now),
                    "complaintSubType": None,
                    "complainedRecipients": [{"emailAddress": recipient}],
                    "complaintFeedbackType": "abuse",
                    "userAgent": "Amazon SES Mailbox Simulator",
                    "arrivalDate": stamp,
                    "timestamp": stamp,
                },
            )
        elif outcome == "bounce":
            add(
                "Bounce",
                recipient,
                "bounce",
                {
                    "feedbackId": _feedback_id(now),
                    "bounceType": "Permanent",
                    "bounceSubType": "General",
                    "bouncedRecipients": [
                        {
                            "emailAddress": recipient,
                            "action": "failed",
                            "status": "5.1.1",
                            "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                        }
                    ],
                    "timestamp": stamp,
                    "remoteMtaIp": "127.0.0.1",
                    "reportingMTA": f"dsn; a8-70.smtp-out.{region}.amazonses.com",
                },
            )
        elif outcome == "suppressionlist":
            add(
                "Bounce",
                recipient,
                "bounce",
                {
                    "feedbackId": _feedback_id(now),
                    "bounceType": "Permanent",
                    "bounceSubType": "OnAccountSuppressionList",
                    "bouncedRecipients": [
                        {
                            "emailAddress": recipient,
                            "action": "failed",
                            "status": "5.1.1",
                            "diagnosticCode": _SUPPRESSED_DIAGNOSTIC,
                        }
                    ],
                    "timestamp": stamp,
                    "reportingMTA": "dns; amazonses.com",
                },
            )
    return events


def _auto_reply(
    recipient: str, sender: str, common: Mapping[str, Any], record: StoredMessage
) -> bytes:
    """The out-of-office answer ``ooto@`` sends back to the message's sender."""
    if not common:
        _, common = _headers(record)
    reply = EmailMessage(policy=email.policy.SMTP)
    reply["From"] = recipient
    reply["To"] = sender
    subject = common.get("subject")
    reply["Subject"] = f"Out of the office: {subject}" if subject else "Out of the office"
    reply["Date"] = formatdate(usegmt=True)
    reply["Message-ID"] = make_msgid(domain=SIMULATOR_DOMAIN)
    original = common.get("messageId")
    if isinstance(original, str) and original:
        reply["In-Reply-To"] = original
        reply["References"] = original
    reply["Auto-Submitted"] = "auto-replied"
    reply.set_content(
        "I am out of the office and will answer your message when I return.\n"
        "(An automatic reply from the SES mailbox simulator.)\n"
    )
    return reply.as_bytes()


def canonical_string(envelope: Mapping[str, str]) -> bytes:
    """The string SNS signs for a ``Notification``: ``Key\\nValue\\n`` in AWS's key order."""
    return "".join(
        f"{key}\n{envelope[key]}\n" for key in _SNS_KEYS if envelope.get(key) is not None
    ).encode("utf-8")


def topic_arn(config: EndpointConfig) -> str:
    """The topic ARN the envelopes name."""
    default = f"arn:aws:sns:{_region(config)}:{ACCOUNT_ID}:asyncmailer-simulator"
    return config.sns_topic_arn or default


def sign_envelope(event: Mapping[str, Any], config: EndpointConfig, now: float) -> dict[str, str]:
    """``event`` in an SNS ``Notification`` envelope, signed as SNS signs it."""
    authority = _authority()
    arn = topic_arn(config)
    region = _region(config)
    envelope = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": arn,
        "Message": json.dumps(event, separators=(",", ":")),
        "Timestamp": _iso(now),
        "SignatureVersion": config.sns_signature_version,
    }
    envelope["Signature"] = authority.sign(canonical_string(envelope), config.sns_signature_version)
    envelope["SigningCertURL"] = SIMULATOR_CERT_URL
    envelope["UnsubscribeURL"] = (
        f"https://sns.{region}.amazonaws.com/?Action=Unsubscribe"
        f"&SubscriptionArn={arn}:{uuid.uuid4()}"
    )
    return envelope


# -------------------------------------------------------------------------- publishing


class Simulator:
    """The endpoint's side of the simulator: events kept, a bounded queue, publishing workers."""

    def __init__(self, *, workers: int = 4) -> None:
        self._events: deque[SimulatorEvent] = deque(maxlen=_MAX_KEPT_EVENTS)
        self._lock = threading.Lock()
        self._workers = workers
        self._queue: asyncio.Queue[tuple[SimulatorEvent, EndpointConfig]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stack: contextlib.AsyncExitStack | None = None
        self._sqs: dict[tuple[str | None, str], Any] = {}
        self._http: Any = None  # aiohttp.ClientSession, made on first POST
        self._sqs_lock: asyncio.Lock | None = None

    # ------------------------------------------------------------------------ lifecycle

    def start(self, config: EndpointConfig) -> None:
        """Create the queue in the running loop (the workers start with the first event)."""
        self._queue = asyncio.Queue(maxsize=config.publish_queue_size)
        self._stack = contextlib.AsyncExitStack()
        self._sqs_lock = asyncio.Lock()

    def _start_workers(self) -> None:
        # Only an endpoint that publishes runs tasks of its own.
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._work(), name="asyncmailer-simulator")
                for _ in range(self._workers)
            ]

    async def aclose(self, timeout: float) -> None:
        """Let queued events go out for up to ``timeout`` seconds, then stop."""
        queue = self._queue
        if queue is not None and timeout > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(queue.join(), timeout)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if queue is not None:  # what could not go out in time
            while not queue.empty():
                item, _ = queue.get_nowait()
                self._mark_failed(item, "the endpoint closed before it was published")
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
        self._sqs.clear()

    # ----------------------------------------------------------------------------- intake

    def accepted(self, record: StoredMessage, config: EndpointConfig) -> None:
        """A message was accepted: produce its simulator events and queue their publishing.

        Called once the send is answered (or dropped after acceptance), in the loop.
        """
        for destination in record.destinations:
            if destination.lower().endswith(SIMULATOR_DOMAIN):
                break
        else:
            return  # the common case: nothing to do
        try:
            events = build_events(record, config)
        except Exception:
            _log.exception("the mailbox simulator failed on %s", record.message_id)
            return
        publish = config.sns_subscriber_url is not None or config.sqs_queue_url is not None
        queue = self._queue
        for item in events:
            with self._lock:
                self._events.append(item)
            if not publish or queue is None:
                continue
            if config.sns_subscriber_url is not None:
                item.sns_status = "pending"
            if config.sqs_queue_url is not None:
                item.sqs_status = "pending"
            self._start_workers()
            try:
                queue.put_nowait((item, config))
            except asyncio.QueueFull:
                _log.warning("simulator event queue full: %s event dropped", item.kind)
                self._mark(item, "dropped", "the publish queue was full")

    def events(self) -> list[SimulatorEvent]:
        """Every event produced (up to the last 10,000), oldest first."""
        with self._lock:
            return list(self._events)

    def reset(self) -> None:
        """Forget the events (those being published still are)."""
        with self._lock:
            self._events.clear()

    async def wait(self, timeout: float | None) -> None:
        """Until every queued event has been published or has failed."""
        if self._queue is not None:
            await asyncio.wait_for(self._queue.join(), timeout)

    # ----------------------------------------------------------------------------- output

    @staticmethod
    def _mark(item: SimulatorEvent, status: Status, error: str | None = None) -> None:
        if item.sns_status == "pending":
            item.sns_status = status
        if item.sqs_status == "pending":
            item.sqs_status = status
        if error is not None:
            item.error = error

    def _mark_failed(self, item: SimulatorEvent, error: str) -> None:
        self._mark(item, "failed", error)

    async def _work(self) -> None:
        queue = self._queue
        assert queue is not None
        while True:
            item, config = await queue.get()
            try:
                await self._publish(item, config)
            except asyncio.CancelledError:
                self._mark_failed(item, "publishing was cancelled")
                queue.task_done()
                raise
            except Exception as exc:  # never let one event stop the worker
                _log.warning("publishing a simulator event failed: %r", exc)
                self._mark_failed(item, repr(exc))
            queue.task_done()

    async def _publish(self, item: SimulatorEvent, config: EndpointConfig) -> None:
        raw_sqs = config.sqs_raw_delivery
        needs_envelope = config.sns_subscriber_url is not None or (
            config.sqs_queue_url is not None and not raw_sqs
        )
        if needs_envelope and item.envelope is None:
            await asyncio.to_thread(_authority)  # the first key is slow to make: not in the loop
            item.envelope = sign_envelope(item.event, config, time.time())
        if config.sns_subscriber_url is not None:
            assert item.envelope is not None
            error = await self._post(config.sns_subscriber_url, item.envelope, config)
            item.sns_status = "failed" if error else "delivered"
            if error:
                item.error = error
                _log.warning("simulator event not delivered to the subscriber: %s", error)
        if config.sqs_queue_url is not None:
            body = (
                json.dumps(item.event, separators=(",", ":"))
                if raw_sqs
                else json.dumps(item.envelope)
            )
            error = await self._send_sqs(config, body)
            item.sqs_status = "failed" if error else "delivered"
            if error:
                item.error = error
                _log.warning("simulator event not sent to SQS: %s", error)

    async def _post(
        self, url: str, envelope: Mapping[str, str], config: EndpointConfig
    ) -> str | None:
        """POST as SNS does, retrying 5xx answers and failed connections; the error or None."""
        import aiohttp

        if self._http is None:
            self._http = aiohttp.ClientSession()
        session: aiohttp.ClientSession = self._http
        headers = {
            **_SNS_HEADERS,
            "x-amz-sns-message-id": envelope["MessageId"],
            "x-amz-sns-topic-arn": envelope["TopicArn"],
        }
        body = json.dumps(envelope).encode()
        timeout = aiohttp.ClientTimeout(total=config.publish_timeout)
        error: str | None = None
        for attempt in range(config.publish_attempts):
            if attempt:
                await asyncio.sleep(_RETRY_DELAYS[min(attempt - 1, len(_RETRY_DELAYS) - 1)])
            try:
                async with session.post(
                    url, data=body, headers=headers, timeout=timeout, allow_redirects=False
                ) as response:
                    await response.read()
                    if response.status < 300:
                        return None
                    error = f"the subscriber answered HTTP {response.status}"
                    if response.status < 500:
                        return error  # SNS does not retry 4xx answers
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                error = f"POST {url} failed: {exc!r}"
        return error

    async def _send_sqs(self, config: EndpointConfig, body: str) -> str | None:
        assert config.sqs_queue_url is not None
        try:
            client = await self._sqs_client(config)
            await client.send_message(QueueUrl=config.sqs_queue_url, MessageBody=body)
        except Exception as exc:
            return f"SQS SendMessage to {config.sqs_queue_url} failed: {exc!r}"
        return None

    async def _sqs_client(self, config: EndpointConfig) -> Any:
        key = (config.sqs_endpoint_url, _region(config))
        client = self._sqs.get(key)
        if client is not None:
            return client
        assert self._sqs_lock is not None
        async with self._sqs_lock:  # one client per endpoint, however many workers ask
            client = self._sqs.get(key)
            if client is not None:
                return client
            from aiobotocore.config import AioConfig
            from aiobotocore.session import get_session

            assert self._stack is not None
            kwargs: dict[str, Any] = {
                "region_name": key[1],
                "config": AioConfig(
                    connect_timeout=config.publish_timeout,
                    read_timeout=config.publish_timeout,
                    retries={"mode": "standard", "total_max_attempts": config.publish_attempts},
                ),
            }
            if config.sqs_endpoint_url is not None:
                # A local queue (moto): dummy keys, the developer's are never read.
                kwargs.update(
                    endpoint_url=config.sqs_endpoint_url,
                    aws_access_key_id="testing",
                    aws_secret_access_key="testing",  # noqa: S106 - not a secret
                )
            client = await self._stack.enter_async_context(
                get_session().create_client("sqs", **kwargs)
            )
            self._sqs[key] = client
            return client
