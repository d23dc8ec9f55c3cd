"""Fixtures for the feedback tests: AWS's documented example events, and SNS signing.

The example events reproduce the field values of the examples in the SES developer guide
("Examples of notifications" and "Examples of event data that Amazon SES publishes to
Amazon SNS"). The SNS side uses a test CA (trustme, RSA) and a signing certificate
issued to ``sns.amazonaws.com``; :func:`sign` signs an envelope exactly as SNS does.
"""

from __future__ import annotations

import base64
import copy
import json
import socket
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import trustme
from aiohttp import web
from aiohttp.abc import AbstractResolver
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MAIL: dict[str, Any] = {
    "timestamp": "2016-01-27T14:59:38.237Z",
    "messageId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
    "source": "john@example.com",
    "sourceArn": "arn:aws:ses:us-east-1:888888888888:identity/example.com",
    "sourceIp": "127.0.3.0",
    "sendingAccountId": "123456789012",
    "callerIdentity": "IAM_user_or_role_name",
    "destination": ["jane@example.com", "mary@example.com", "richard@example.com"],
    "headersTruncated": False,
    "headers": [
        {"name": "From", "value": '"John Doe" <john@example.com>'},
        {"name": "To", "value": '"Jane Doe" <jane@example.com>'},
        {"name": "Message-ID", "value": "custom-message-ID"},
        {"name": "Subject", "value": "Hello"},
    ],
    "commonHeaders": {
        "from": ["John Doe <john@example.com>"],
        "date": "Wed, 27 Jan 2016 14:05:45 +0000",
        "to": ["Jane Doe <jane@example.com>, Mary Doe <mary@example.com>"],
        "messageId": "custom-message-ID",
        "subject": "Hello",
    },
}

BOUNCE_NOTIFICATION: dict[str, Any] = {
    "notificationType": "Bounce",
    "bounce": {
        "bounceType": "Permanent",
        "reportingMTA": "dns; email.example.com",
        "bouncedRecipients": [
            {
                "emailAddress": "jane@example.com",
                "status": "5.1.1",
                "action": "failed",
                "diagnosticCode": "smtp; 550 5.1.1 <jane@example.com>... User",
            }
        ],
        "bounceSubType": "General",
        "timestamp": "2016-01-27T14:59:38.237Z",
        "feedbackId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000",
        "remoteMtaIp": "127.0.2.0",
    },
    "mail": MAIL,
}

COMPLAINT_NOTIFICATION: dict[str, Any] = {
    "notificationType": "Complaint",
    "complaint": {
        "userAgent": "AnyCompany Feedback Loop (V0.01)",
        "complainedRecipients": [{"emailAddress": "richard@example.com"}],
        "complaintFeedbackType": "abuse",
        "arrivalDate": "2016-01-27T14:59:38.237Z",
        "timestamp": "2016-01-27T14:59:38.237Z",
        "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000",
    },
    "mail": MAIL,
}

DELIVERY_NOTIFICATION: dict[str, Any] = {
    "notificationType": "Delivery",
    "mail": {**MAIL, "destination": ["jane@example.com"]},
    "delivery": {
        "timestamp": "2016-01-27T14:59:38.237Z",
        "recipients": ["jane@example.com"],
        "processingTimeMillis": 546,
        "reportingMTA": "a8-70.smtp-out.amazonses.com",
        "smtpResponse": "250 ok:  Message 64111812 accepted",
        "remoteMtaIp": "127.0.2.0",
    },
}

EVENT_MAIL: dict[str, Any] = {
    "timestamp": "2017-08-05T00:41:02.669Z",
    "source": "Sender Name <sender@example.com>",
    "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/sender@example.com",
    "sendingAccountId": "123456789012",
    "messageId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
    "destination": ["recipient@example.com"],
    "headersTruncated": False,
    "headers": [
        {"name": "From", "value": "Sender Name <sender@example.com>"},
        {"name": "To", "value": "recipient@example.com"},
        {"name": "Subject", "value": "Message sent from Amazon SES"},
    ],
    "commonHeaders": {
        "from": ["Sender Name <sender@example.com>"],
        "to": ["recipient@example.com"],
        "messageId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
        "subject": "Message sent from Amazon SES",
    },
    "tags": {
        "ses:configuration-set": ["ConfigSet"],
        "ses:source-ip": ["192.0.2.0"],
        "ses:from-domain": ["example.com"],
        "ses:caller-identity": ["ses_user"],
        "myCustomTag1": ["myCustomTagValue1"],
    },
}

EVENTS: dict[str, dict[str, Any]] = {
    "Bounce": {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": "recipient@example.com",
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": "2017-08-05T00:41:02.669Z",
            "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
            "reportingMTA": "dsn; mta.example.com",
        },
        "mail": EVENT_MAIL,
    },
    "Complaint": {
        "eventType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": "recipient@example.com"}],
            "timestamp": "2017-08-05T00:41:02.669Z",
            "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
            "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
            "complaintFeedbackType": "abuse",
            "arrivalDate": "2017-08-05T00:41:02.669Z",
        },
        "mail": EVENT_MAIL,
    },
    "Delivery": {
        "eventType": "Delivery",
        "mail": EVENT_MAIL,
        "delivery": {
            "timestamp": "2016-10-19T23:21:04.133Z",
            "processingTimeMillis": 11893,
            "recipients": ["recipient@example.com"],
            "smtpResponse": "250 2.6.0 Message received",
            "reportingMTA": "mta.example.com",
        },
    },
    "Send": {"eventType": "Send", "mail": EVENT_MAIL, "send": {}},
    "Reject": {"eventType": "Reject", "mail": EVENT_MAIL, "reject": {"reason": "Bad content"}},
    "Open": {
        "eventType": "Open",
        "mail": EVENT_MAIL,
        "open": {
            "ipAddress": "192.0.2.1",
            "timestamp": "2017-08-09T22:00:19.652Z",
            "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 10_3_3 like Mac OS X)",
        },
    },
    "Click": {
        "eventType": "Click",
        "click": {
            "ipAddress": "192.0.2.1",
            "link": "http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html",
            "linkTags": {"samplekey0": ["samplevalue0"], "samplekey1": ["samplevalue1"]},
            "timestamp": "2017-08-09T23:51:25.570Z",
            "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
        },
        "mail": EVENT_MAIL,
    },
    "Rendering Failure": {
        "eventType": "Rendering Failure",
        "mail": EVENT_MAIL,
        "failure": {
            "errorMessage": "Attribute 'attributeName' is not present in the rendering data.",
            "templateName": "MyTemplate",
        },
    },
    "DeliveryDelay": {
        "eventType": "DeliveryDelay",
        "mail": EVENT_MAIL,
        "deliveryDelay": {
            "timestamp": "2020-06-16T00:15:40.641Z",
            "delayType": "TransientCommunicationFailure",
            "expirationTime": "2020-06-16T00:25:40.914Z",
            "delayedRecipients": [
                {
                    "emailAddress": "recipient@example.com",
                    "status": "4.4.1",
                    "diagnosticCode": "smtp; 421 4.4.0 Unable to lookup DNS for example.com",
                }
            ],
        },
    },
    "Subscription": {
        "eventType": "Subscription",
        "mail": EVENT_MAIL,
        "subscription": {
            "contactList": "ContactListName",
            "timestamp": "2022-01-12T01:00:17.910Z",
            "source": "UnsubscribeHeader",
            "newTopicPreferences": {
                "unsubscribeAll": True,
                "topicSubscriptionStatus": [
                    {"topicName": "ExampleTopicName", "subscriptionStatus": "OptOut"}
                ],
            },
            "oldTopicPreferences": {
                "unsubscribeAll": False,
                "topicSubscriptionStatus": [
                    {"topicName": "ExampleTopicName", "subscriptionStatus": "OptOut"}
                ],
            },
        },
    },
}

EVENTBRIDGE_BOUNCE: dict[str, Any] = {
    "version": "0",
    "id": "c6d0b4fb-3ce5-a8b3-4c4b-7d6b0d2a1b33",
    "detail-type": "Email Bounced",
    "source": "aws.ses",
    "account": "123456789012",
    "time": "2017-08-05T00:41:03Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ses:us-east-1:123456789012:configuration-set/ConfigSet"],
    "detail": EVENTS["Bounce"],
}

TOPIC_ARN = "arn:aws:sns:us-west-2:123456789012:MyTopic"
CERT_URL = (
    "https://sns.us-west-2.amazonaws.com/"
    "SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem"
)
SUBSCRIBE_URL = (
    "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription"
    f"&TopicArn={TOPIC_ARN}&Token=2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92"
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class SigningAuthority:
    """A test root CA, and a signing certificate for ``sns.amazonaws.com`` issued by it.

    Built with cryptography to the Web PKI profile (as AWS's are), so that
    ``cryptography.x509.verification`` accepts the chain.
    """

    def __init__(
        self,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        name: str = "sns.amazonaws.com",
    ) -> None:
        now = datetime.now(timezone.utc)
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "asyncmailer test root")])
        ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=3650))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(days=1))
            .not_valid_after(not_after or now + timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    async def resolver(self, url: str) -> x509.Certificate:
        return self.cert


def canonical(envelope: Mapping[str, Any]) -> bytes:
    """The string-to-sign, written from AWS's documentation (independently of the library)."""
    if envelope["Type"] == "Notification":
        keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    out = ""
    for key in keys:
        if key in envelope:
            out += f"{key}\n{envelope[key]}\n"
    return out.encode()


def sign(envelope: dict[str, Any], key: rsa.RSAPrivateKey, version: str = "1") -> dict[str, Any]:
    signed = dict(envelope)
    signed["SignatureVersion"] = version
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(canonical(signed), padding.PKCS1v15(), algorithm)
    signed["Signature"] = base64.b64encode(signature).decode()
    return signed


def notification(
    event: Mapping[str, Any],
    *,
    when: datetime | None = None,
    subject: str | None = None,
    message_id: str = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
) -> dict[str, Any]:
    when = when or datetime.now(timezone.utc)
    envelope: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC_ARN,
        "Message": json.dumps(event),
        "Timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe&x=1",
    }
    if subject is not None:
        envelope["Subject"] = subject
    return envelope


def confirmation(
    kind: str = "SubscriptionConfirmation", when: datetime | None = None
) -> dict[str, Any]:
    when = when or datetime.now(timezone.utc)
    return {
        "Type": kind,
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92",
        "TopicArn": TOPIC_ARN,
        "Message": f"You have chosen to subscribe to the topic {TOPIC_ARN}.",
        "SubscribeURL": SUBSCRIBE_URL,
        "Timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "SigningCertURL": CERT_URL,
    }


def deep(value: Any) -> Any:
    return copy.deepcopy(value)


# ------------------------------------------------- a local "sns.<region>.amazonaws.com"


class LoopbackResolver(AbstractResolver):
    """aiohttp's public DNS hook: every host name resolves to 127.0.0.1:``port``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[dict[str, Any]]:
        # Plain dicts: aiohttp's ResolveResult TypedDict only exists from 3.10 on.
        self.asked.append(host)
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": self.port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


class FakeSNSHost:
    """A real HTTPS server (aiohttp + trustme) that serves as ``sns.us-west-2.amazonaws.com``.

    It serves the signing certificate at any ``*.pem`` path and answers ``GET /?Action=
    ConfirmSubscription`` with 200; it records every request.
    """

    def __init__(self, tls_ca: trustme.CA, pem: bytes, *, status: int = 200) -> None:
        self.tls_ca = tls_ca
        self.pem = pem
        self.status = status
        self.requests: list[str] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        import ssl

        async def serve(request: web.Request) -> web.Response:
            self.requests.append(str(request.rel_url))
            if self.status != 200:
                return web.Response(status=self.status)
            if request.path.endswith(".pem"):
                return web.Response(body=self.pem, content_type="application/x-pem-file")
            return web.Response(text="<ConfirmSubscriptionResponse/>", content_type="text/xml")

        app = web.Application()
        app.router.add_get("/{tail:.*}", serve)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls_ca.issue_cert("sns.us-west-2.amazonaws.com").configure_cert(context)
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def client_session(self) -> Any:
        """An aiohttp session that reaches this server for any host name, trusting its CA."""
        import ssl

        import aiohttp

        context = ssl.create_default_context()
        self.tls_ca.configure_trust(context)
        connector = aiohttp.TCPConnector(resolver=LoopbackResolver(self.port), ssl=context)
        return aiohttp.ClientSession(connector=connector)


def now_minus(**kwargs: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(**kwargs)
