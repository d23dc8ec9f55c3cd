"""The one place where botocore/aiobotocore exceptions become asyncmailer errors.

Each mapped error says what to do, carries SES's code, text and request id, and chains
the original exception. The outcome (retry-safe / ambiguous / final) is decided here:

=====================================================  =========================================
botocore / SES says                                    asyncmailer raises
=====================================================  =========================================
``Throttling`` "Maximum sending rate exceeded."        SendingRateExceededError (retry-safe)
``TooManyRequestsException`` (v2, 429)                 SendingRateExceededError (retry-safe)
``Throttling`` "Daily message quota exceeded."         DailyQuotaExceededError (final)
``LimitExceededException`` (v2)                        DailyQuotaExceededError (final)
``MessageRejected`` "... not verified ..."             IdentityNotVerifiedError (final)
``MessageRejected`` (other)                            MessageRejectedError (final)
``MailFromDomainNotVerified(Exception)``               MailFromDomainNotVerifiedError (final)
``AccessDenied(Exception)``, bad credentials           AccessDeniedError (final)
``*SendingPausedException``                            SendingPausedError (final)
``ConfigurationSetDoesNotExist(Exception)``,           ConfigurationSetDoesNotExistError (final)
``NotFoundException`` naming a configuration set
HTTP 5xx (``InternalFailure``, ``ServiceUnavailable``)  ServiceUnavailableError (retry-safe)
could not connect                                      ServiceUnavailableError (retry-safe)
connect timeout                                        ConnectTimeoutError (retry-safe)
connection closed or reset after sending               DeliveryUnknownError (ambiguous)
read timeout                                           DeliveryTimeoutError (ambiguous)
another error code                                     DeliveryError (final)
no credentials / no region / botocore cannot sign      ConfigurationError
invalid request parameters                             ConfigurationError (``ses_defaults``)
=====================================================  =========================================

The class follows the rule of :mod:`asyncmailer.errors`; the outcome in brackets is the
class's own (``tests/test_error_outcomes.py`` checks that this table and the code agree).
"""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any

from asyncmailer.errors import (
    AccessDeniedError,
    ConfigurationError,
    ConfigurationSetDoesNotExistError,
    ConnectTimeoutError,
    DailyQuotaExceededError,
    DeliveryError,
    DeliveryTimeoutError,
    DeliveryUnknownError,
    IdentityNotVerifiedError,
    MailError,
    MailFromDomainNotVerifiedError,
    MessageRejectedError,
    SendingPausedError,
    SendingRateExceededError,
    ServiceUnavailableError,
)

__all__ = ["map_ses_error", "wrapped_bug"]

# SES ends these messages with the identity: "... in region EU-WEST-1: ada@example.com",
# moto with "... from email ada@example.com".
_IDENTITY_RE = re.compile(r"([^\s:,;<>]+@[^\s:,;<>]+|[a-z0-9-]+(?:\.[a-z0-9-]+)+)\W*$", re.I)
_CREDENTIAL_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
    }
)


def _identity_from(text: str) -> str:
    match = _IDENTITY_RE.search(text)
    return match.group(1).rstrip(".,") if match else ""


def map_ses_error(exc: BaseException, *, action: str, **context: Any) -> MailError | None:
    """Return the asyncmailer error for a botocore exception, or None if it is not ours to map.

    ``action`` is the IAM action of the call (``ses:SendRawEmail`` / ``ses:SendEmail``);
    ``context`` may name the ``configuration_set`` used. The caller raises the result
    ``from exc``.
    """
    from botocore import exceptions as bce

    if isinstance(exc, bce.ClientError):
        return _map_client_error(exc, action=action, **context)
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return ConfigurationError(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, "
            "or an instance role (the standard AWS credential chain)",
            option="credentials",
        )
    if isinstance(exc, bce.NoRegionError):
        return ConfigurationError(
            "no AWS region configured: pass region_name=, or set AWS_REGION / AWS_DEFAULT_REGION",
            option="region_name",
        )
    if isinstance(exc, bce.ParamValidationError):
        return ConfigurationError(f"invalid SES request parameters: {exc}", option="ses_defaults")
    if isinstance(exc, bce.ConnectTimeoutError):
        return ConnectTimeoutError(f"could not connect to SES in time: {exc}")
    if isinstance(exc, bce.ReadTimeoutError):
        return DeliveryTimeoutError(
            f"SES did not answer in time; the message may have been accepted: {exc}"
        )
    if isinstance(exc, bce.ConnectionError):  # Endpoint/Proxy connection, SSL
        if _never_connected(exc):
            return ServiceUnavailableError(f"could not connect to SES: {exc}")
        return DeliveryUnknownError(
            f"the connection to SES failed during the request; the message may have been "
            f"accepted: {exc}"
        )
    if isinstance(exc, bce.HTTPClientError) and wrapped_bug(exc) is not None:
        return None  # a bug below the HTTP layer, not a network outcome: raised as it is
    if isinstance(exc, bce.ConnectionClosedError | bce.HTTPClientError):
        return DeliveryUnknownError(
            f"the connection to SES closed before the answer; the message may have been "
            f"accepted: {exc}"
        )
    if isinstance(exc, bce.IncompleteReadError | bce.ChecksumError):
        return DeliveryUnknownError(
            f"SES's answer could not be read whole; the message may have been accepted: {exc}"
        )
    if isinstance(exc, bce.BotoCoreError):
        # Everything else botocore raises happens before a request is built or sent
        # (credentials, signing, endpoint resolution, an unknown operation).
        return ConfigurationError(
            f"botocore could not make the SES request, nothing was sent: {exc}",
            option="client",
        )
    return None


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (OSError, TimeoutError, asyncio.TimeoutError)
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - aiobotocore depends on aiohttp
        return errors
    return (*errors, aiohttp.ClientError)


def _never_connected(exc: BaseException) -> bool:
    """True when the HTTP layer failed to open the connection, so nothing was sent.

    aiobotocore raises ``EndpointConnectionError(error=...)`` with aiohttp's
    ``ClientConnectorError`` when the TCP connection (or its TLS handshake) could not be
    opened, and with ``socket.gaierror`` when the name did not resolve.
    """
    cause = getattr(exc, "kwargs", {}).get("error")
    if isinstance(cause, socket.gaierror):
        return True
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - aiobotocore depends on aiohttp
        return False
    return isinstance(cause, aiohttp.ClientConnectorError)


def wrapped_bug(exc: BaseException) -> BaseException | None:
    """The error inside a botocore ``HTTPClientError`` when it is not a network error.

    aiobotocore wraps *every* exception its HTTP session raises in ``HTTPClientError``,
    including an ``AttributeError`` or ``TypeError`` from a bug: that is not a delivery
    outcome and must not be reported as "the message may have been accepted".
    """
    from botocore.exceptions import HTTPClientError

    if not isinstance(exc, HTTPClientError):
        return None
    cause = getattr(exc, "kwargs", {}).get("error")
    if cause is None or isinstance(cause, _network_errors()):
        return None
    return cause if isinstance(cause, BaseException) else None


def _map_client_error(exc: Any, *, action: str, configuration_set: str | None = None) -> MailError:
    response = exc.response
    error = response.get("Error", {})
    code = str(error.get("Code", "") or "")
    text = str(error.get("Message", "") or "")
    meta = response.get("ResponseMetadata", {})
    status = int(meta.get("HTTPStatusCode") or 0)
    fields: dict[str, Any] = {
        "code": code,
        "service_message": text,
        "request_id": meta.get("RequestId"),
    }
    lowered = text.lower()

    if code in {"Throttling", "ThrottlingException", "TooManyRequestsException"}:
        if "daily" in lowered or "quota" in lowered:
            return DailyQuotaExceededError(
                f"SES daily sending quota exceeded ({text}); request a quota increase in the "
                "SES console or wait for the 24-hour window to move",
                **fields,
            )
        return SendingRateExceededError(
            f"SES maximum sending rate exceeded ({text}); lower sending_rate or use "
            "sending_rate='auto'",
            **fields,
        )
    if code == "LimitExceededException":
        return DailyQuotaExceededError(
            f"SES sending limit exceeded ({text}); request a quota increase in the SES console",
            **fields,
        )
    if code in {"MailFromDomainNotVerified", "MailFromDomainNotVerifiedException"}:
        return MailFromDomainNotVerifiedError(
            f"the custom MAIL FROM domain is not verified ({text}); publish its MX and SPF "
            "records and wait for SES to verify it, or stop using a custom MAIL FROM domain",
            **fields,
        )
    if code == "MessageRejected":
        if "not verified" in lowered or "did not have authority" in lowered:
            identity = _identity_from(text)
            return IdentityNotVerifiedError(
                f"SES refused: identity {identity or '(see message)'} is not verified ({text}). "
                "Verify it (aws ses verify-email-identity --email-address ADDRESS, or "
                "sesv2 create-email-identity); in the SES sandbox recipients must be verified too",
                identity=identity,
                **fields,
            )
        return MessageRejectedError(f"SES rejected the message: {text}", **fields)
    if code in {"AccessDenied", "AccessDeniedException"} or code in _CREDENTIAL_CODES:
        if code in _CREDENTIAL_CODES:
            hint = "the AWS credentials are invalid or expired; check the credential chain"
        else:
            hint = f"grant the IAM action {action} on the sending identity to these credentials"
        return AccessDeniedError(f"SES denied {action}: {text}. {hint}", action=action, **fields)
    if code in {
        "AccountSendingPausedException",
        "ConfigurationSetSendingPausedException",
        "SendingPausedException",
    }:
        return SendingPausedError(
            f"SES sending is paused ({text}); re-enable sending for the account or the "
            "configuration set (aws sesv2 put-account-sending-attributes --sending-enabled)",
            **fields,
        )
    if code in {"ConfigurationSetDoesNotExist", "ConfigurationSetDoesNotExistException"} or (
        code == "NotFoundException" and "configuration set" in lowered
    ):
        return ConfigurationSetDoesNotExistError(
            f"SES configuration set {configuration_set or ''} does not exist ({text}); create it "
            "or fix ConfigurationSetName",
            configuration_set=configuration_set or "",
            **fields,
        )
    if status >= 500 or code in {"InternalFailure", "ServiceUnavailable", "InternalError"}:
        return ServiceUnavailableError(f"SES failed with HTTP {status} {code}: {text}", **fields)
    return DeliveryError(f"SES error {code} (HTTP {status}): {text}", **fields)
