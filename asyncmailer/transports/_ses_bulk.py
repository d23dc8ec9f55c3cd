"""SES templated sends and ``SendBulkEmail``, through the transport's own send machinery.

:class:`~asyncmailer.SESTransport` delegates here (``send_mail(template=...)``,
``send_bulk``, the template helpers). Every request goes through the same path as
``send_mail``: daily quota (``_reserve``) → connection slot → warm gate → rate grant →
request (:meth:`Transport._gated`), with the grant checked at botocore's ``before-send``
event, the same :class:`~asyncmailer.retry.RetryPolicy` and the same rule that an unknown
outcome is never resent (unless ``retry_ambiguous``).

Bulk batches are sized to the rate limiter's window: a request of W recipients is granted
W units at once (SES counts them all when the request arrives), so W never exceeds
``rate × window`` and the window holds a whole number of similar batches.

Per-entry statuses (botocore's ``BulkEmailStatus``) map to asyncmailer errors:

====================================  ===============================================  =========
SES entry status                      error                                            outcome
====================================  ===============================================  =========
SUCCESS                               (a :class:`~asyncmailer.SendResult`)
MESSAGE_REJECTED                      MessageRejectedError                             final
MAIL_FROM_DOMAIN_NOT_VERIFIED         MailFromDomainNotVerifiedError                   final
CONFIGURATION_SET_NOT_FOUND           ConfigurationSetDoesNotExistError                final
TEMPLATE_NOT_FOUND                    ConfigurationError (option ``template``)         usage
INVALID_SENDING_POOL_NAME             ConfigurationError (option ``ses``)              usage
INVALID_PARAMETER                     ConfigurationError (option ``destinations``)     usage
ACCOUNT_SUSPENDED                     SendingPausedError                               final
ACCOUNT_SENDING_PAUSED                SendingPausedError                               final
CONFIGURATION_SET_SENDING_PAUSED      SendingPausedError                               final
ACCOUNT_THROTTLED                     SendingRateExceededError (retried)               retry-safe
ACCOUNT_DAILY_QUOTA_EXCEEDED          DailyQuotaExceededError                          final
TRANSIENT_FAILURE                     ServiceUnavailableError (retried)                retry-safe
FAILED                                DeliveryError                                    final
(a status this version does not know) DeliveryUnknownError (never resent)              ambiguous
====================================  ===============================================  =========

``FAILED`` means SES did not send the entry and gave no reason: nothing was sent, but
nothing says a retry would help, so it is final (the CLI records it as ``failed``;
``--retry-failed`` sends it again).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from asyncmailer.address import Group, ascii_addr_spec, parse_address, parse_addresses
from asyncmailer.errors import (
    ConfigurationError,
    ConfigurationSetDoesNotExistError,
    DailyQuotaExceededError,
    DeliveryError,
    DeliveryUnknownError,
    MailError,
    MailFromDomainNotVerifiedError,
    MessageError,
    MessageRejectedError,
    Outcome,
    SendingPausedError,
    SendingRateExceededError,
    ServiceUnavailableError,
    SMTPUTF8RequiredError,
    TooManyRecipientsError,
    TransportStateError,
)
from asyncmailer.message import Envelope
from asyncmailer.result import SendResult
from asyncmailer.templates import (
    MAX_BULK_ENTRIES,
    MAX_RECIPIENTS_PER_ENTRY,
    BulkDestination,
    DestinationInput,
    SESTemplate,
    TemplateContent,
    bare,
)
from asyncmailer.transports._fanout import aiter_of, ordered_fanout
from asyncmailer.transports._grant import GrantExpired, check_grant
from asyncmailer.transports._ses_errors import map_ses_error, wrapped_bug
from asyncmailer.transports.base import (
    SendOutcome,
    _note_bug,
    _Phase,
    _SendTrack,
    _Waits,
    final_error,
)

if TYPE_CHECKING:
    from asyncmailer.feedback import SuppressionList
    from asyncmailer.transports.ses import SESTransport

__all__ = [
    "BULK_STATUS_ERRORS",
    "batch_limit",
    "create_template",
    "delete_template",
    "entry_error",
    "get_template",
    "render_template",
    "send_bulk",
    "send_templated",
    "update_template",
]

logger = logging.getLogger("asyncmailer.ses")

_BULK_OPERATION = "SendBulkEmail"
# Keys derived from the call's arguments; ``ses`` options may not set them.
_BULK_RESERVED = frozenset(
    {"FromEmailAddress", "DefaultContent", "BulkEmailEntries", "ReplyToAddresses"}
)


def _client(transport: SESTransport) -> Any:
    """The open transport's SESv2 client (template and bulk operations are SESv2 only)."""
    client = transport.client
    if client is None:
        raise TransportStateError("the transport is not open", state=transport.state.value)
    return client


def _config_error(option: str) -> Callable[[str, str], MailError]:
    def make(status: str, text: str) -> MailError:
        return ConfigurationError(
            f"SES refused the bulk entry with {status} ({text or 'no detail'}); nothing was "
            f"sent: fix {option} and send again",
            option=option,
        )

    return make


def _delivery(cls: type[DeliveryError], hint: str) -> Callable[[str, str], MailError]:
    def make(status: str, text: str) -> MailError:
        return cls(
            f"SES: {status} ({text or 'no detail'}); {hint}", code=status, service_message=text
        )

    return make


#: Entry status of ``SendBulkEmail`` → how to build its error (SUCCESS is not an error).
BULK_STATUS_ERRORS: Mapping[str, Callable[[str, str], MailError]] = {
    "MESSAGE_REJECTED": _delivery(MessageRejectedError, "SES refused this message"),
    "MAIL_FROM_DOMAIN_NOT_VERIFIED": _delivery(
        MailFromDomainNotVerifiedError, "verify the custom MAIL FROM domain"
    ),
    "CONFIGURATION_SET_NOT_FOUND": _delivery(
        ConfigurationSetDoesNotExistError, "create the configuration set or fix its name"
    ),
    "TEMPLATE_NOT_FOUND": _config_error("template"),
    "INVALID_SENDING_POOL_NAME": _config_error("ses"),
    "INVALID_PARAMETER": _config_error("destinations"),
    "ACCOUNT_SUSPENDED": _delivery(SendingPausedError, "the SES account is suspended"),
    "ACCOUNT_SENDING_PAUSED": _delivery(SendingPausedError, "re-enable sending for the account"),
    "CONFIGURATION_SET_SENDING_PAUSED": _delivery(
        SendingPausedError, "re-enable sending for the configuration set"
    ),
    "ACCOUNT_THROTTLED": _delivery(SendingRateExceededError, "SES maximum sending rate exceeded"),
    "ACCOUNT_DAILY_QUOTA_EXCEEDED": _delivery(
        DailyQuotaExceededError, "the SES daily quota is used up"
    ),
    "TRANSIENT_FAILURE": _delivery(ServiceUnavailableError, "a transient SES failure"),
    "FAILED": _delivery(DeliveryError, "SES did not send it and gave no reason"),
}


def entry_error(status: str, text: str = "") -> MailError:
    """The error for one ``SendBulkEmail`` entry status other than ``SUCCESS``.

    A status this version does not know becomes a
    :class:`~asyncmailer.errors.DeliveryUnknownError`: it is never resent.
    """
    make = BULK_STATUS_ERRORS.get(status)
    if make is not None:
        return make(status, text)
    return DeliveryUnknownError(
        f"SES answered the unknown bulk entry status {status!r} ({text}); the message may "
        "have been sent",
        code=status,
        service_message=text,
    )


# ---------------------------------------------------------------------------- model checks


def _members(client: Any, shape: str) -> frozenset[str]:
    try:
        return frozenset(client.meta.service_model.shape_for(shape).members)
    except Exception:  # botocore raises NoShapeFoundError for a shape the model lacks
        return frozenset()


def _require(client: Any, shape: str, member: str, what: str) -> None:
    if member not in _members(client, shape):
        import botocore

        raise ConfigurationError(
            f"{what} needs SESv2 {shape}.{member}, which the installed botocore "
            f"{botocore.__version__} does not have: upgrade botocore/aiobotocore",
            option=what,
        )


def _check_template(transport: SESTransport, template: SESTemplate) -> None:
    if not isinstance(template, SESTemplate):
        raise ConfigurationError(
            f"template must be an SESTemplate, not {type(template).__name__}", option="template"
        )
    if transport.api != "v2":
        raise ConfigurationError(
            "templated and bulk sends use SESv2 (SendEmail with Content.Template, "
            "SendBulkEmail): open the transport with api='v2' or an sesv2 client",
            option="api",
        )
    client = _client(transport)
    if template.name is None and template.arn is None:
        # Inline templates arrived in later SESv2 models (botocore 1.34.106 lacks them).
        _require(client, "Template", "TemplateContent", "template")
    if template.headers:
        _require(client, "Template", "Headers", "headers")
    if template.attachments:
        _require(client, "Template", "Attachments", "attachments")


def _sender(from_: Any) -> str:
    if from_ is None:
        raise MessageError("SES needs a sender: set from_", field="from_")
    address = parse_address(from_, field="from_")
    spec = ascii_addr_spec(address.address, field="from_")
    if not spec.partition("@")[0].isascii():
        raise SMTPUTF8RequiredError(
            f"SES cannot send from {spec!r}: it has no SMTPUTF8 support",
            field="from_",
            address=spec,
        )
    if address.name:
        from email.utils import formataddr

        return formataddr((address.name, spec), "utf-8")
    return spec


def _reply_to(reply_to: Any) -> list[str]:
    if reply_to is None:
        return []
    out: list[str] = []
    for item in parse_addresses(reply_to, field="reply_to"):
        members = item.members if isinstance(item, Group) else (item,)
        out.extend(ascii_addr_spec(m.address, field="reply_to") for m in members)
    return out


def _check_recipients(recipients: Sequence[str]) -> None:
    if len(recipients) > MAX_RECIPIENTS_PER_ENTRY:
        raise TooManyRecipientsError(
            f"SES accepts at most {MAX_RECIPIENTS_PER_ENTRY} recipients per message, this "
            f"destination has {len(recipients)}",
            count=len(recipients),
            limit=MAX_RECIPIENTS_PER_ENTRY,
        )
    for address in recipients:
        spec = bare(address)
        if not spec.partition("@")[0].isascii():
            raise SMTPUTF8RequiredError(
                f"SES cannot send to {spec!r}: it has no SMTPUTF8 support",
                field="to",
                address=spec,
            )


def _map_request_error(exc: BaseException, *, action: str, configuration_set: Any) -> MailError:
    """The error of a request that failed as a whole (raised as is when it is a bug)."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        text = str(error.get("Message", ""))
        if code in {"NotFoundException", "TemplateDoesNotExist"} and "template" in text.lower():
            return ConfigurationError(f"SES: {text}; create the template first", option="template")
    mapped = map_ses_error(exc, action=action, configuration_set=configuration_set)
    if mapped is None:
        inner = wrapped_bug(exc)
        if inner is not None:
            raise inner from exc
        raise exc
    return mapped


def _options(transport: SESTransport, ses: Mapping[str, Any] | None) -> dict[str, Any]:
    """``ses_defaults`` and ``ses`` for ``SendBulkEmail``: tags become ``DefaultEmailTags``."""
    allowed = frozenset(
        _client(transport).meta.service_model.operation_model(_BULK_OPERATION).input_shape.members
    )
    merged: dict[str, Any] = {}
    for source, strict in ((transport.ses_defaults, False), (ses or {}, True)):
        for key, value in source.items():
            name = "DefaultEmailTags" if key in ("Tags", "EmailTags") else key
            if name in _BULK_RESERVED or name not in allowed:
                if strict:
                    raise ConfigurationError(
                        f"ses option {key!r} cannot be used with SendBulkEmail (known: "
                        f"{', '.join(sorted(allowed - _BULK_RESERVED))})",
                        option="ses",
                    )
                continue  # a SendEmail-only default, such as a v2 option bulk lacks
            merged[name] = value
    return merged


# ----------------------------------------------------------------------- before-send hook


class _BulkHook:
    """The grant check on ``before-send.sesv2.SendBulkEmail``, registered while one
    ``send_bulk`` call runs (and removed after it: a client passed in outlives it)."""

    def __init__(self, transport: SESTransport) -> None:
        self.transport = transport
        self.client = client = _client(transport)
        self.event = (
            f"before-send.{client.meta.service_model.service_id.hyphenize()}.{_BULK_OPERATION}"
        )
        self.unique_id = f"asyncmailer-bulk-before-send-{id(self):x}"

    def _check(self, **_: Any) -> None:
        # A stale grant is renewed (counted), or GrantExpired raised: nothing written.
        if check_grant():
            self.transport.stale_grants += 1

    def __enter__(self) -> None:
        self.client.meta.events.register(self.event, self._check, unique_id=self.unique_id)

    def __exit__(self, *exc: object) -> None:
        self.client.meta.events.unregister(self.event, unique_id=self.unique_id)


# -------------------------------------------------------------------------- one request


async def _request(
    transport: SESTransport,
    weight: int,
    track: _SendTrack,
    waits: _Waits,
    call: Callable[[], Any],
    *,
    action: str,
    configuration_set: Any,
) -> Any:
    """Reserve quota, then slot → gate → grant → ``call()``; map a failed request."""
    quota = transport.quota
    await quota.reserve(weight)
    try:
        return await transport._gated(weight, track, waits, call)
    except GrantExpired:  # pragma: no cover - _gated handles it
        raise
    except asyncio.CancelledError:
        if track.phase is not _Phase.IN_FLIGHT:
            quota.release(weight)
        raise
    except MailError:
        quota.release(weight)
        raise
    except Exception as exc:
        if track.phase is not _Phase.IN_FLIGHT:
            quota.release(weight)
            raise
        try:
            mapped = _map_request_error(exc, action=action, configuration_set=configuration_set)
        except (OSError, TimeoutError) as network:
            mapped = DeliveryUnknownError(
                f"the connection to SES failed during the request ({type(network).__name__}: "
                f"{network}); the message may have been accepted"
            )
        except Exception as bug:
            _note_bug(bug, type(transport).__name__)
            raise
        if not (isinstance(mapped, DeliveryError) and mapped.outcome is Outcome.AMBIGUOUS):
            quota.release(weight)  # SES sent nothing
        raise mapped from exc


def _final(error: MailError, maybe_sent: bool) -> MailError:
    """Never report "retry-safe" for something an earlier ambiguous attempt may have sent."""
    return final_error(error, maybe_sent=maybe_sent) if isinstance(error, DeliveryError) else error


# -------------------------------------------------------------------- templated send_mail


async def send_templated(
    transport: SESTransport,
    template: SESTemplate,
    *,
    from_: Any,
    to: Any = None,
    cc: Any = None,
    bcc: Any = None,
    reply_to: Any = None,
    ses: Mapping[str, Any] | None = None,
) -> SendResult:
    """One templated message through SESv2 ``SendEmail`` with ``Content.Template``."""
    loop = transport._check_open()
    started = loop.time()
    _check_template(transport, template)
    destination = BulkDestination(to=to, cc=cc, bcc=bcc)
    recipients = destination.recipients
    _check_recipients(recipients)
    sender = _sender(from_)
    options = transport._merge_options(ses)
    params: dict[str, Any] = {
        **options,
        "FromEmailAddress": sender,
        "Destination": destination.to_sesv2()["Destination"],
        "Content": {"Template": template.to_sesv2()},
    }
    replies = _reply_to(reply_to)
    if replies:
        params["ReplyToAddresses"] = replies
    weight = len(recipients)
    envelope = Envelope(from_=bare(sender), to=tuple(bare(r) for r in recipients))
    client = _client(transport)
    track = _SendTrack()
    waits = _Waits()
    attempt = 0
    with transport._tracked(track):
        while True:
            attempt += 1
            track.attempts = attempt
            track.phase = _Phase.WAITING
            try:
                answer = await _request(
                    transport,
                    weight,
                    track,
                    waits,
                    lambda: client.send_email(**params),
                    action="ses:SendEmail",
                    configuration_set=params.get("ConfigurationSetName"),
                )
            except DeliveryError as exc:
                error = exc
            else:
                ses_id = str(answer["MessageId"])
                return SendResult(
                    envelope=envelope,
                    message_id=transport.format_message_id(ses_id),
                    response=ses_id,
                    rate_wait=waits.rate,
                    connection_wait=waits.connection,
                    attempts=attempt,
                    elapsed=loop.time() - started,
                    transport=transport.name,
                )
            track.phase = _Phase.WAITING
            error.attempts = attempt
            delay = _after_failure(transport, error, attempt, loop.time() - started)
            if delay is None:
                raise _final(error, track.maybe_sent)
            if error.outcome is Outcome.AMBIGUOUS:
                track.maybe_sent = True
            track.phase = _Phase.BACKOFF
            await asyncio.sleep(delay)


def _after_failure(
    transport: SESTransport, error: DeliveryError, attempt: int, elapsed: float
) -> float | None:
    if isinstance(error, SendingRateExceededError) and transport.rate_limiter is not None:
        transport.rate_limiter.throttled()
    return transport.retry.next_delay(error, attempt, elapsed, transport._rng)


# -------------------------------------------------------------------------------- bulk


def batch_limit(limiter: Any) -> float:
    """Recipients one bulk request may hold so that whole requests fill the window evenly.

    A request of W recipients is granted W units at once. With a window of ``rate ×
    window`` units, ``k = ceil(capacity / 50)`` requests of at most ``capacity / k``
    recipients fit each window exactly: 14 at R=14, 50 at R=200, 40 at R=120. No limiter:
    no limit (50 destinations per request).
    """
    if limiter is None:
        return math.inf
    capacity = max(1.0, float(limiter.rate) * float(getattr(limiter, "window", 1.0)))
    per_window = math.ceil(capacity / MAX_BULK_ENTRIES)
    return max(1.0, math.floor(capacity / per_window))


class _Slot:
    """One destination of a batch: its entry (while it is to be sent) and its outcome."""

    __slots__ = ("destination", "entry", "result", "weight")

    def __init__(self, destination: BulkDestination | None, outcome: SendOutcome | None) -> None:
        self.destination = destination
        self.entry: dict[str, Any] | None = None
        self.weight = len(destination.recipients) if destination is not None else 0
        self.result = outcome


@dataclass(slots=True)
class _Plan:
    """What every request of one ``send_bulk`` call shares."""

    transport: SESTransport
    params: dict[str, Any]
    sender: str
    started: float
    suppression: SuppressionList | None
    suppression_policy: Literal["fail", "drop"]


async def _apply_suppression(plan: _Plan, slots: list[_Slot]) -> None:
    from asyncmailer.feedback import SuppressedRecipientError

    suppression = plan.suppression
    assert suppression is not None
    addresses = list(
        dict.fromkeys(bare(r) for s in slots if s.destination for r in s.destination.recipients)
    )
    if not addresses:
        return
    found = await suppression.suppressed(addresses)
    if not found:
        return
    for slot in slots:
        destination = slot.destination
        if destination is None:
            continue
        hit = {bare(r): found[bare(r)] for r in destination.recipients if bare(r) in found}
        if not hit:
            continue
        keep = [r for r in destination.recipients if bare(r) not in hit]
        if plan.suppression_policy == "fail" or not keep:
            slot.result = SuppressedRecipientError(
                f"{len(hit)} recipient(s) on the suppression list: {', '.join(sorted(hit))}",
                suppressed=hit,
            )
            slot.destination = None
            slot.weight = 0
            continue
        kept = destination.without(hit)
        slot.destination = kept
        slot.weight = len(kept.recipients)


async def _send_batch(plan: _Plan, slots: list[_Slot]) -> list[SendOutcome]:
    """Send the entries of one batch; retry the retry-safe ones in smaller requests."""
    transport = plan.transport
    loop = asyncio.get_running_loop()
    if plan.suppression is not None:
        await _apply_suppression(plan, slots)
    todo = [slot for slot in slots if slot.destination is not None and slot.result is None]
    for slot in todo:
        assert slot.destination is not None
        slot.entry = slot.destination.to_sesv2()
    client = _client(transport)
    track = _SendTrack()
    waits = _Waits()
    attempt = 0
    started = loop.time()
    try:
        with transport._tracked(track):
            while todo:
                attempt += 1
                track.attempts = attempt
                track.phase = _Phase.WAITING
                weight = sum(slot.weight for slot in todo)
                params = {**plan.params, "BulkEmailEntries": [slot.entry for slot in todo]}
                try:
                    answer = await _request(
                        transport,
                        weight,
                        track,
                        waits,
                        lambda params=params: client.send_bulk_email(**params),  # type: ignore[misc]
                        action="ses:SendBulkEmail",
                        configuration_set=params.get("ConfigurationSetName"),
                    )
                except MailError as exc:
                    # The request failed as a whole: the same outcome for every entry in it.
                    todo, delay = _whole_request_failed(
                        plan, todo, exc, attempt, loop.time() - started, track
                    )
                else:
                    todo, delay = _entries_answered(
                        plan, todo, answer, attempt, waits, loop.time() - started, track
                    )
                if todo:
                    track.phase = _Phase.BACKOFF
                    await asyncio.sleep(delay)
    except MailError as aborted:  # aclose() aborted the batch (drain timeout), or was closed
        for slot in slots:
            if slot.result is None:
                slot.result = aborted
    return [slot.result if slot.result is not None else _lost() for slot in slots]


def _lost() -> MailError:  # pragma: no cover - every slot gets an outcome
    return DeliveryUnknownError("asyncmailer lost track of this destination")


def _whole_request_failed(
    plan: _Plan,
    todo: list[_Slot],
    exc: MailError,
    attempt: int,
    elapsed: float,
    track: _SendTrack,
) -> tuple[list[_Slot], float]:
    transport = plan.transport
    if not isinstance(exc, DeliveryError):
        for slot in todo:
            slot.result = exc
        return [], 0.0
    exc.attempts = attempt
    delay = _after_failure(transport, exc, attempt, elapsed)
    if delay is None:
        final = _final(exc, track.maybe_sent)
        for slot in todo:
            slot.result = _copy_error(final, attempt) if len(todo) > 1 else final
        return [], 0.0
    if exc.outcome is Outcome.AMBIGUOUS:
        track.maybe_sent = True
    logger.info(
        "asyncmailer: bulk request of %d entries failed with %s (attempt %d), retrying in %.3fs",
        len(todo),
        type(exc).__name__,
        attempt,
        delay,
    )
    return todo, delay


def _copy_error(error: MailError, attempt: int) -> MailError:
    """A separate error object per destination (callers may annotate them)."""
    if not isinstance(error, DeliveryError):
        return error
    clone = type(error).__new__(type(error))
    clone.__dict__.update(error.__dict__)
    clone.args = error.args
    clone.__cause__ = error.__cause__
    clone.attempts = attempt
    return clone


def _entries_answered(
    plan: _Plan,
    todo: list[_Slot],
    answer: Mapping[str, Any],
    attempt: int,
    waits: _Waits,
    elapsed: float,
    track: _SendTrack,
) -> tuple[list[_Slot], float]:
    transport = plan.transport
    results = answer.get("BulkEmailEntryResults") or []
    retry: list[_Slot] = []
    longest = 0.0
    released = 0
    now = asyncio.get_running_loop().time()
    for index, slot in enumerate(todo):
        item = results[index] if index < len(results) else None
        if item is None:
            slot.result = DeliveryUnknownError(
                "SES answered without a result for this entry; it may have been sent",
                attempts=attempt,
            )
            continue
        status = str(item.get("Status", ""))
        if status == "SUCCESS":
            destination = slot.destination
            assert destination is not None
            ses_id = str(item.get("MessageId", ""))
            if track.maybe_sent:
                logger.warning(
                    "asyncmailer: bulk entry sent on attempt %d after an ambiguous failure; "
                    "it may have been delivered twice",
                    attempt,
                )
            slot.result = SendResult(
                envelope=Envelope(
                    from_=bare(plan.sender), to=tuple(bare(r) for r in destination.recipients)
                ),
                message_id=transport.format_message_id(ses_id),
                response=ses_id,
                rate_wait=waits.rate,
                connection_wait=waits.connection,
                attempts=attempt,
                elapsed=now - plan.started,
                transport=transport.name,
            )
            continue
        released += slot.weight
        error = entry_error(status, str(item.get("Error", "") or ""))
        if isinstance(error, DeliveryError):
            error.attempts = attempt
            delay = _after_failure(transport, error, attempt, elapsed)
            if delay is not None:
                longest = max(longest, delay)
                retry.append(slot)
                continue
            error = _final(error, track.maybe_sent)
        slot.result = error
    if released:
        transport.quota.release(released)  # SES sent nothing for these entries
    if retry:
        logger.info(
            "asyncmailer: %d bulk entries retry-safe (attempt %d), retrying in a smaller request",
            len(retry),
            attempt,
        )
    return retry, longest


def _slot_for(item: DestinationInput) -> _Slot:
    try:
        destination = BulkDestination.coerce(item)
        _check_recipients(destination.recipients)
    except MailError as exc:
        return _Slot(None, exc)
    return _Slot(destination, None)


async def send_bulk(
    transport: SESTransport,
    template: SESTemplate,
    destinations: Iterable[DestinationInput] | AsyncIterable[DestinationInput],
    *,
    from_: Any,
    default_data: Any = None,
    reply_to: Any = None,
    ses: Mapping[str, Any] | None = None,
    concurrency: int | None = None,
    progress: Callable[[int, SendOutcome], object] | None = None,
    suppression: SuppressionList | None = None,
    suppression_policy: Literal["fail", "drop"] = "drop",
) -> AsyncGenerator[SendOutcome, None]:
    """The body of :meth:`SESTransport.send_bulk` (see there)."""
    loop = transport._check_open()
    _check_template(transport, template)
    workers_n = (transport.max_connections or 10) if concurrency is None else concurrency
    if isinstance(workers_n, bool) or not isinstance(workers_n, int) or workers_n < 1:
        raise ConfigurationError(
            f"concurrency must be a positive integer, got {concurrency!r}", option="concurrency"
        )
    if suppression_policy not in ("fail", "drop"):
        raise ConfigurationError(
            f"suppression_policy must be 'fail' or 'drop', not {suppression_policy!r}",
            option="suppression_policy",
        )
    sender = _sender(from_)
    data_json = (
        None
        if default_data is None
        else json.dumps(default_data, separators=(",", ":"), ensure_ascii=False)
    )
    params: dict[str, Any] = {
        **_options(transport, ses),
        "FromEmailAddress": sender,
        "DefaultContent": {"Template": template.to_sesv2(data_json=data_json)},
    }
    replies = _reply_to(reply_to)
    if replies:
        params["ReplyToAddresses"] = replies
    has_headers = "ReplacementHeaders" in _members(_client(transport), "BulkEmailEntry")
    plan = _Plan(transport, params, sender, loop.time(), suppression, suppression_policy)
    source = aiter_of(destinations)
    exhausted = False  # the source has no more destinations
    carry: list[_Slot] = []

    async def next_batch() -> list[_Slot]:
        """Up to 50 destinations whose recipients fit one request (pulled one at a time)."""
        nonlocal exhausted
        limit = batch_limit(transport.rate_limiter)
        slots: list[_Slot] = []
        entries = 0
        weight = 0
        while entries < MAX_BULK_ENTRIES:
            if carry:
                slot = carry.pop()
            elif exhausted:
                break
            else:
                try:
                    item = await source.__anext__()
                except StopAsyncIteration:
                    exhausted = True
                    break
                slot = _slot_for(item)
                if not has_headers and slot.destination is not None and slot.destination.headers:
                    slot = _Slot(None, _no_replacement_headers())
            if slot.destination is not None:
                if entries and weight + slot.weight > limit:
                    carry.append(slot)
                    break
                entries += 1
                weight += slot.weight
            slots.append(slot)
        if not slots:
            raise StopAsyncIteration
        return slots

    hook = _BulkHook(transport)
    done = 0
    with hook:
        try:
            send = functools.partial(_send_batch, plan)
            async with contextlib.aclosing(ordered_fanout(next_batch, send, workers_n)) as batches:
                async for outcomes in batches:
                    for outcome in outcomes:
                        done += 1
                        if progress is not None:
                            progress(done, outcome)
                        yield outcome
        finally:
            await source.aclose()


def _no_replacement_headers() -> MailError:
    import botocore

    return ConfigurationError(
        f"destination headers need SESv2 BulkEmailEntry.ReplacementHeaders, which the "
        f"installed botocore {botocore.__version__} does not have: upgrade botocore/aiobotocore",
        option="headers",
    )


# ------------------------------------------------------------------- template management


async def _manage(transport: SESTransport, action: str, call: Callable[[], Any]) -> Any:
    transport._check_open()
    if transport.api != "v2":
        raise ConfigurationError(
            "template helpers use SESv2: open the transport with api='v2'", option="api"
        )
    try:
        return await call()
    except Exception as exc:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            text = str(error.get("Message", ""))
            if code in {"NotFoundException", "AlreadyExistsException"}:
                raise ConfigurationError(f"SES {action}: {text}", option="template") from exc
            if code == "BadRequestException" and action == "TestRenderEmailTemplate":
                raise MessageError(
                    f"SES could not render the template: {text}", field="template"
                ) from exc
        mapped = map_ses_error(exc, action=f"ses:{action}")
        if mapped is None:
            raise
        raise mapped from exc


async def create_template(transport: SESTransport, name: str, content: TemplateContent) -> None:
    """``CreateEmailTemplate``."""
    client = _client(transport)
    await _manage(
        transport,
        "CreateEmailTemplate",
        lambda: client.create_email_template(TemplateName=name, TemplateContent=content.to_sesv2()),
    )


async def update_template(transport: SESTransport, name: str, content: TemplateContent) -> None:
    """``UpdateEmailTemplate``."""
    client = _client(transport)
    await _manage(
        transport,
        "UpdateEmailTemplate",
        lambda: client.update_email_template(TemplateName=name, TemplateContent=content.to_sesv2()),
    )


async def get_template(transport: SESTransport, name: str) -> TemplateContent:
    """``GetEmailTemplate``."""
    client = _client(transport)
    answer = await _manage(
        transport, "GetEmailTemplate", lambda: client.get_email_template(TemplateName=name)
    )
    content = answer.get("TemplateContent", {})
    return TemplateContent(
        subject=str(content.get("Subject", "")), text=content.get("Text"), html=content.get("Html")
    )


async def delete_template(transport: SESTransport, name: str) -> None:
    """``DeleteEmailTemplate``."""
    client = _client(transport)
    await _manage(
        transport, "DeleteEmailTemplate", lambda: client.delete_email_template(TemplateName=name)
    )


async def render_template(transport: SESTransport, name: str, data: Any) -> str:
    """``TestRenderEmailTemplate``: the rendered MIME message, as text."""
    client = _client(transport)
    data_json = json.dumps({} if data is None else data, separators=(",", ":"), ensure_ascii=False)
    answer = await _manage(
        transport,
        "TestRenderEmailTemplate",
        lambda: client.test_render_email_template(TemplateName=name, TemplateData=data_json),
    )
    return str(answer.get("RenderedTemplate", ""))
