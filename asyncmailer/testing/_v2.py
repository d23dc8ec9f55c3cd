"""SESv2 (rest-json): JSON requests on ``/v2/email/...`` paths, JSON answers."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from asyncmailer.testing._account import Account, Region, SendRequest
from asyncmailer.testing._config import EndpointConfig
from asyncmailer.testing._server import Request, Response
from asyncmailer.testing._ses_api import (
    SESError,
    address_list,
    compose_simple,
    content_data,
    encoded_message,
    fill_envelope,
    loads_send_email,
)
from asyncmailer.testing._store import StoredMessage
from asyncmailer.testing._templates import (
    handle_template_request,
    record_failure,
    templated_send,
)
from asyncmailer.testing._v1 import region_of

__all__ = ["JSON", "RestAPI"]

#: The Content-Type of SESv2 answers.
JSON = ("Content-Type", "application/json")


class RestAPI:
    """Serves the SESv2 operations the transports use, against an account."""

    def __init__(self, account: Account) -> None:
        self._account = account

    def handle(
        self, request: Request, config: EndpointConfig, request_id: str
    ) -> tuple[Response, StoredMessage | list[StoredMessage] | None]:
        """Answer one request: (the response, the record(s) to store if accepted).

        Refusals raise :class:`SESError`; the caller renders them as SESv2 errors.
        """
        path, method = request.path, request.method
        if path.startswith("/v2/email/templates") or path == "/v2/email/outbound-bulk-emails":
            # Template operations and SendBulkEmail live in _templates.py.
            return handle_template_request(
                self._account, request, config, request_id, region_of(request, config)
            )
        identity = ""
        if path == "/v2/email/outbound-emails" and method == "POST":
            operation = "SendEmail"
        elif path == "/v2/email/account" and method == "GET":
            operation = "GetAccount"
        elif path == "/v2/email/identities" and method == "POST":
            operation = "CreateEmailIdentity"
        elif (path == "/v2/email/identities" and method == "GET") or (
            path == "/v2/email/list-identities" and method == "POST"
        ):
            operation = "ListEmailIdentities"
        elif path.startswith("/v2/email/identities/") and method in ("GET", "DELETE"):
            identity = unquote(path[len("/v2/email/identities/") :])
            operation = "GetEmailIdentity" if method == "GET" else "DeleteEmailIdentity"
        else:
            self._account.count("sesv2:?")
            raise SESError(
                "UnknownOperationException",
                f"The local endpoint does not implement {method} {path}.",
                status=404,
            )
        self._account.count(f"sesv2:{operation}")
        body: Any = {}
        if request.body:
            try:
                body = (
                    loads_send_email(request.body)
                    if operation == "SendEmail"
                    else json.loads(request.body)
                )
            except ValueError:
                raise SESError.invalid("The request body is not valid JSON.") from None
            if not isinstance(body, dict):
                raise SESError.invalid("The request body must be a JSON object.")
        result: Any
        record: StoredMessage | None = None
        if operation == "SendEmail":
            message_id, record = self._send_email(body, config, region_of(request, config))
            if message_id is None:
                return Response(drop=True), record
            return (
                Response(
                    200,
                    b'{"MessageId":"%s"}' % message_id.encode(),
                    headers=(JSON, ("x-amzn-RequestId", request_id)),
                ),
                record,
            )
        if operation == "GetAccount":
            max_day, max_rate, sent = self._account.quota(config)
            result = {
                "DedicatedIpAutoWarmupEnabled": False,
                "EnforcementStatus": "HEALTHY",
                "ProductionAccessEnabled": not config.sandbox,
                "SendQuota": {
                    "Max24HourSend": max_day,
                    "MaxSendRate": max_rate,
                    "SentLast24Hours": sent,
                },
                "SendingEnabled": config.sending_enabled,
            }
        elif operation == "CreateEmailIdentity":
            result = self._create_email_identity(body)
        elif operation == "ListEmailIdentities":
            result = {
                "EmailIdentities": [
                    {
                        "IdentityType": "EMAIL_ADDRESS" if "@" in name else "DOMAIN",
                        "IdentityName": name,
                        "SendingEnabled": True,
                        "VerificationStatus": "SUCCESS",
                    }
                    for name in self._account.identities(config)
                ]
            }
        elif operation == "GetEmailIdentity":
            if not self._account.known(config, identity):
                raise SESError.not_found(f"Email identity <{identity}> does not exist.")
            result = self._identity(identity)
        else:  # DeleteEmailIdentity
            if not self._account.unregister(identity):
                raise SESError.not_found(f"Email identity <{identity}> does not exist.")
            result = {}
        return (
            Response(
                200,
                json.dumps(result).encode(),
                headers=(JSON, ("x-amzn-RequestId", request_id)),
            ),
            record,
        )

    def _identity(self, identity: str) -> dict[str, Any]:
        domain = "@" not in identity
        return {
            "IdentityType": "DOMAIN" if domain else "EMAIL_ADDRESS",
            "FeedbackForwardingStatus": True,
            "VerifiedForSendingStatus": True,
            "VerificationStatus": "SUCCESS",
            "DkimAttributes": {
                "SigningEnabled": domain,
                "Status": "SUCCESS" if domain else "NOT_STARTED",
                "Tokens": self._account.dkim_tokens(identity) if domain else [],
                "SigningAttributesOrigin": "AWS_SES",
                "NextSigningKeyLength": "RSA_2048_BIT",
                "CurrentSigningKeyLength": "RSA_2048_BIT",
            },
            "Policies": {},
            "Tags": [],
        }

    def _create_email_identity(self, body: dict[str, Any]) -> dict[str, Any]:
        identity = body.get("EmailIdentity")
        if not isinstance(identity, str) or not identity:
            raise SESError.invalid("EmailIdentity is required.")
        if self._account.is_registered(identity):
            raise SESError("AlreadyExistsException", f"Email identity <{identity}> already exists.")
        self._account.register(identity)
        result = self._identity(identity)
        return {
            key: result[key]
            for key in ("IdentityType", "VerifiedForSendingStatus", "DkimAttributes")
        }

    def _send_email(
        self, body: dict[str, Any], config: EndpointConfig, region: Region
    ) -> tuple[str | None, StoredMessage | None]:
        rendering: list[str] = []  # a templated send SES accepts but cannot render

        def parse() -> SendRequest:
            content = body.get("Content")
            if not isinstance(content, dict):
                raise SESError.invalid("Content is required.")
            destination = body.get("Destination")
            if not isinstance(destination, dict):
                destination = {}
            to = address_list(destination.get("ToAddresses"), "Destination.ToAddresses")
            cc = address_list(destination.get("CcAddresses"), "Destination.CcAddresses")
            bcc = address_list(destination.get("BccAddresses"), "Destination.BccAddresses")
            source = body.get("FromEmailAddress")
            source = source if isinstance(source, str) else ""
            if "Raw" in content:
                node = content["Raw"]
                raw = encoded_message(
                    node.get("Data") if isinstance(node, dict) else None,
                    "Content.Raw.Data",
                    form_encoded=False,
                )
                source, destinations = fill_envelope(raw, source, to + cc + bcc)
                extra = {
                    key: value
                    for key, value in body.items()
                    if key not in ("Content", "Destination", "FromEmailAddress")
                }
                return SendRequest(source, destinations, raw, extra)
            if "Simple" in content:
                return self._simple(body, content["Simple"], source, to, cc, bcc)
            if "Template" in content:
                destinations, compose = templated_send(
                    self._account, body, content["Template"], source, to, cc, bcc, rendering
                )
                extra = {k: v for k, v in body.items() if k not in ("Destination",)}
                return SendRequest(source, destinations, None, extra, compose)
            raise SESError.invalid(
                "Only Raw, Simple and Template content are supported by the local endpoint."
            )

        message_id, record = self._account.send(
            config, api="v2", action="SendEmail", parse=parse, region=region
        )
        if rendering and record is not None:
            # Accepted, never sent: SES emits a Rendering Failure event instead.
            record_failure(self._account, record.message_id, rendering[0])
            record = None
        return message_id, record

    def _simple(
        self,
        body: dict[str, Any],
        simple: Any,
        source: str,
        to: list[str],
        cc: list[str],
        bcc: list[str],
    ) -> SendRequest:
        if not source:
            raise SESError.invalid("FromEmailAddress is required.")
        if not isinstance(simple, dict):
            raise SESError.invalid("Content.Simple must be an object.")
        if simple.get("Attachments"):
            raise SESError.invalid(
                "Attachments in Simple content are not supported by the local endpoint; "
                "send a Raw message."
            )
        subject = content_data(simple.get("Subject")) or ""
        parts = simple.get("Body")
        parts = parts if isinstance(parts, dict) else {}
        text = content_data(parts.get("Text"))
        html = content_data(parts.get("Html"))
        headers = [
            (str(item.get("Name")), str(item.get("Value")))
            for item in simple.get("Headers") or []
            if isinstance(item, dict)
        ]
        reply_to = address_list(body.get("ReplyToAddresses"), "ReplyToAddresses")

        def compose(message_id: str) -> bytes:
            return compose_simple(
                source=source,
                to=to,
                cc=cc,
                reply_to=reply_to,
                subject=subject,
                text=text,
                html=html,
                message_id=message_id,
                extra_headers=headers,
            )

        extra = {
            key: value
            for key, value in body.items()
            if key not in ("Destination", "FromEmailAddress")
        }
        return SendRequest(source, to + cc + bcc, None, extra, compose)
