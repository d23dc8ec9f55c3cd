"""The SES v1 query API: form-encoded requests in, XML out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import escape as escape_xml

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
    parse_query,
    request_region,
    unflatten,
    v1_result_body,
    xml_bool,
    xml_members,
)
from asyncmailer.testing._store import StoredMessage

__all__ = ["XML", "QueryAPI", "region_of"]

#: The Content-Type of v1 answers.
XML = ("Content-Type", "text/xml")
_V1_ENCODED = frozenset({"RawMessage.Data"})
_V1_SEND_OMIT = frozenset({"Action", "Version", "Source", "Destinations", "RawMessage"})

_Handler = Callable[
    [dict[str, Any], EndpointConfig, Region], "tuple[str | None, StoredMessage | None]"
]


def region_of(request: Request, config: EndpointConfig) -> Region:
    """The region of error messages for ``request``, worked out only when called."""
    return lambda: request_region(config.region, request.headers.get("authorization", ""))


class QueryAPI:
    """Serves the SES v1 actions (``Action=...&Version=2010-12-01``) against an account."""

    def __init__(self, account: Account) -> None:
        self._account = account
        self._actions: dict[str, _Handler] = {
            "SendRawEmail": self._send_raw_email,
            "SendEmail": self._send_email,
            "GetSendQuota": self._get_send_quota,
            "GetAccountSendingEnabled": self._get_account_sending_enabled,
            "ListIdentities": self._list_identities,
            "GetIdentityVerificationAttributes": self._get_identity_verification_attributes,
            "GetIdentityDkimAttributes": self._get_identity_dkim_attributes,
            "VerifyEmailIdentity": self._verify_email_identity,
            "VerifyEmailAddress": self._verify_email_identity,
            "VerifyDomainIdentity": self._verify_domain_identity,
            "DeleteIdentity": self._delete_identity,
        }

    def handle(
        self, request: Request, config: EndpointConfig, request_id: str
    ) -> tuple[Response, StoredMessage | None]:
        """Answer one request: (the response, the record to store if a message was accepted).

        Refusals raise :class:`SESError`; the caller renders them as v1 errors.
        """
        if request.method not in ("POST", "GET"):
            self._account.count("ses:?")
            raise SESError("InvalidAction", f"Method {request.method} is not supported.")
        body = request.body if request.method == "POST" else b""
        params = unflatten(
            parse_query(request.query.encode("latin-1"), body, keep_encoded=_V1_ENCODED)
        )
        action = params.get("Action")
        if not isinstance(action, str) or not action:
            self._account.count("ses:?")
            raise SESError("MissingAction", "Could not find operation to perform.")
        self._account.count(f"ses:{action}")
        handler = self._actions.get(action)
        if handler is None:
            raise SESError(
                "InvalidAction", f"The action {action} is not valid for this web service."
            )
        result, record = handler(params, config, region_of(request, config))
        if result is None:
            return Response(drop=True), record
        return (
            Response(
                200,
                v1_result_body(action, result, request_id),
                headers=(XML, ("x-amzn-RequestId", request_id)),
            ),
            record,
        )

    def _send_raw_email(
        self, params: dict[str, Any], config: EndpointConfig, region: Region
    ) -> tuple[str | None, StoredMessage | None]:
        def parse() -> SendRequest:
            node = params.get("RawMessage")
            raw = encoded_message(
                node.get("Data") if isinstance(node, dict) else None,
                "RawMessage.Data",
                form_encoded=True,
            )
            destinations = address_list(params.get("Destinations"), "Destinations")
            source = params.get("Source")
            source, destinations = fill_envelope(raw, source, destinations)
            extra = {key: value for key, value in params.items() if key not in _V1_SEND_OMIT}
            return SendRequest(source, destinations, raw, extra)

        message_id, record = self._account.send(
            config, api="v1", action="SendRawEmail", parse=parse, region=region
        )
        return (None if message_id is None else f"<MessageId>{message_id}</MessageId>"), record

    def _send_email(
        self, params: dict[str, Any], config: EndpointConfig, region: Region
    ) -> tuple[str | None, StoredMessage | None]:
        def parse() -> SendRequest:
            source = params.get("Source")
            if not isinstance(source, str) or not source:
                raise SESError.invalid("Source is required.")
            destination = params.get("Destination")
            if not isinstance(destination, dict):
                destination = {}
            to = address_list(destination.get("ToAddresses"), "Destination.ToAddresses")
            cc = address_list(destination.get("CcAddresses"), "Destination.CcAddresses")
            bcc = address_list(destination.get("BccAddresses"), "Destination.BccAddresses")
            reply_to = address_list(params.get("ReplyToAddresses"), "ReplyToAddresses")
            message = params.get("Message")
            if not isinstance(message, dict):
                raise SESError.invalid("Message is required.")
            subject = content_data(message.get("Subject")) or ""
            body = message.get("Body")
            body = body if isinstance(body, dict) else {}
            text = content_data(body.get("Text"))
            html = content_data(body.get("Html"))

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
                )

            extra = {key: value for key, value in params.items() if key not in _V1_SEND_OMIT}
            return SendRequest(source, to + cc + bcc, None, extra, compose)

        message_id, record = self._account.send(
            config, api="v1", action="SendEmail", parse=parse, region=region
        )
        return (None if message_id is None else f"<MessageId>{message_id}</MessageId>"), record

    def _get_send_quota(
        self, params: dict[str, Any], config: EndpointConfig, region: Region
    ) -> tuple[str, None]:
        max_day, max_rate, sent = self._account.quota(config)
        return (
            f"<SentLast24Hours>{sent!r}</SentLast24Hours>"
            f"<Max24HourSend>{max_day!r}</Max24HourSend>"
            f"<MaxSendRate>{max_rate!r}</MaxSendRate>"
        ), None

    def _get_account_sending_enabled(
        self, params: dict[str, Any], config: EndpointConfig, region: Region
    ) -> tuple[str, None]:
        return f"<Enabled>{xml_bool(config.sending_enabled)}</Enabled>", None

    def _list_identities(
        self, params: dict[str, Any], config: EndpointConfig, region: Region
    ) -> tuple[str, None]:
        kind = params.get("IdentityType")
        names = self._account.identities(config)
        if kind == "EmailAddress":
            names = [name for name in names if "@" in name]
        elif kind == "Domain":
            names = [name for name in names if "@" not in name]
        return xml_members("Identities", names), None

    def _requested_identities(self, params: dict[str, Any]) -> list[str]:
        identities = params.get("Identities")
        if not isinstance(identities, list) or not all(isinstance(i, str) for i in identities):
            raise SESError.invalid("Identities is required.")
        return identities

    def _get_identity_verification_attributes(
        self, params: dict[str, Any], config: EndpointConfig, region: Region
    ) -> tuple[str, None]:
        entries = []
        for identity in self._requested_identities(params):
            if not self._account.known(config, identity):
                continue  # SES leaves identities it has never seen out of the map.
            token = ""
            if "@" not in identity:
                value = self._account.verification_token(identity)
                token = f"<VerificationToken>{value}</VerificationToken>"
            entries.append(
                f"<entry><key>{escape_xml(identity)}</key><value>"
                f"<VerificationStatus>Success</VerificationStatus>{token}</value></entry>"
            )
        return f"<VerificationAttributes>{''.join(entries)}</VerificationAttributes>", None

    def _get_identity_dkim_attributes(
        self, params: dict[str, Any], config: EndpointConfig, region: Region
    ) -> tuple[str, None]:
        entries = []
        for identity in self._requested_identities(params):
            known = self._account.known(config, identity)
            domain = "@" not in identity
            tokens = ""
            if known and domain:
                tokens = xml_members("DkimTokens", self._account.dkim_tokens(identity))
            status = "Success" if known and domain else "NotStarted"
            entries.append(
                f"<entry><key>{escape_xml(identity)}</key><value>"
                f"<DkimEnabled>{xml_bool(known and domain)}</DkimEnabled>"
                f"<DkimVerificationStatus>{status}</DkimVerificationStatus>{tokens}"
                "</value></entry>"
            )
        return f"<DkimAttributes>{''.join(entries)}</DkimAttributes>", None

    def _verify_email_identity(
        self, params: dict[str, Any], config: EndpointConfig, region: Region
    ) -> tuple[str, None]:
        address = params.get("EmailAddress")
        if not isinstance(address, str) or "@" not in address:
            raise SESError.invalid("EmailAddress must be an email address.")
        self._account.register(address)
        return "", None

    def _verify_domain_identity(
        self, params: dict[str, Any], config: EndpointConfig, region: Region
    ) -> tuple[str, None]:
        domain = params.get("Domain")
        if not isinstance(domain, str) or not domain or "@" in domain:
            raise SESError.invalid("Domain must be a domain name.")
        self._account.register(domain)
        token = self._account.verification_token(domain)
        return f"<VerificationToken>{token}</VerificationToken>", None

    def _delete_identity(
        self, params: dict[str, Any], config: EndpointConfig, region: Region
    ) -> tuple[str, None]:
        identity = params.get("Identity")
        if not isinstance(identity, str) or not identity:
            raise SESError.invalid("Identity is required.")
        self._account.unregister(identity)
        return "", None
