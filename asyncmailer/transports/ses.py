"""Amazon SES over aiobotocore: ``SendRawEmail`` (SES v1) or ``SendEmail`` with raw content (SESv2).

Example::

    async with SESTransport(region_name="eu-west-1", sending_rate=14, max_connections=10) as ses:
        result = await ses.send_mail(
            from_="shop@example.com", to="ada@example.com", subject="Hi", text="Hello"
        )
        print(result.message_id)   # <0102018c...@eu-west-1.amazonses.com>

The SES requests of the library are made in this module, through aiobotocore clients
used as they come (stock HTTP session, signer and event emitter): the transport only
registers one handler on botocore's documented ``before-send`` event. Errors are mapped
in :mod:`asyncmailer.transports._ses_errors`; creating the client lives in
:mod:`asyncmailer.transports._ses_client`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import warnings
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

from asyncmailer.errors import (
    ConfigurationError,
    DeliveryError,
    MessageError,
    MessageTooLargeError,
    Outcome,
    SMTPUTF8RequiredError,
    TooManyRecipientsError,
)
from asyncmailer.fields import MessageFields
from asyncmailer.message import Message
from asyncmailer.options import AWSClientSettings, Credentials, QuotaPolicy, TransportOptions
from asyncmailer.result import ComposedMessage, SendResult
from asyncmailer.templates import DestinationInput, SESTemplate, TemplateContent
from asyncmailer.transports._grant import GrantExpired, check_grant
from asyncmailer.transports._ses_client import idle_timeout, preload_data, warm_up
from asyncmailer.transports._ses_errors import map_ses_error, wrapped_bug
from asyncmailer.transports._ses_quota import QuotaTracker
from asyncmailer.transports.base import Delivery, MessageInput, SendOutcome, Transport

if TYPE_CHECKING:
    from types_aiobotocore_ses import SESClient
    from types_aiobotocore_sesv2 import SESV2Client
    from typing_extensions import Unpack

    from asyncmailer.feedback import SuppressionList

__all__ = ["BLOCKED_ATTACHMENT_EXTENSIONS", "SES_LIMITS", "SESTransport"]

logger = logging.getLogger("asyncmailer.ses")

#: Message size limits in octets of the raw MIME message, per API (SES measures the
#: message itself, attachments already base64-encoded).
SES_LIMITS = {"v1": 10 * 1024 * 1024, "v2": 40 * 1024 * 1024}
#: SES refuses messages with more recipients (To + Cc + Bcc).
MAX_RECIPIENTS = 50

#: Attachment file extensions SES refuses (from the SES developer guide).
BLOCKED_ATTACHMENT_EXTENSIONS = frozenset(
    """ade adp app asp bas bat cer chm cmd com cpl crt csh der exe fxp gadget hlp hta inf ins isp
    its js jse ksh lib lnk mad maf mag mam maq mar mas mat mau mav maw mda mdb mde mdt mdw mdz msc
    msh msh1 msh2 mshxml msh1xml msh2xml msi msp mst ops pcd pif plg prf prg reg scf scr sct shb
    shs sys ps1 ps1xml ps2 ps2xml psc1 psc2 tmp url vb vbe vbs vps vsmacros vss vst vsw vws
    xnk""".split()
)

# Keys the transport sets itself; ``ses`` options may not override them.
_RESERVED = {
    "v1": frozenset({"RawMessage", "Source", "Destinations"}),
    "v2": frozenset({"Content", "FromEmailAddress", "Destination"}),
}
_ACTIONS = {"v1": "ses:SendRawEmail", "v2": "ses:SendEmail"}
_OPERATIONS = {"v1": "SendRawEmail", "v2": "SendEmail"}

Api = Literal["auto", "v1", "v2"]


def _aws_settings(
    aws: AWSClientSettings | None,
    *,
    region_name: str | None,
    endpoint_url: str | None,
    key: tuple[str | None, str | None, str | None],
) -> AWSClientSettings:
    """``aws`` with the flat shortcuts filled in; a setting given both ways is refused."""
    if aws is None:
        aws = AWSClientSettings()
    elif not isinstance(aws, AWSClientSettings):
        raise ConfigurationError(
            f"aws must be an AWSClientSettings, not {type(aws).__name__}", option="aws"
        )
    changes: dict[str, Any] = {}
    for option, value in (("region_name", region_name), ("endpoint_url", endpoint_url)):
        if value is not None:
            if getattr(aws, option) is not None:
                raise ConfigurationError(
                    f"{option} is given twice: as {option}= and in aws=", option=option
                )
            changes[option] = value
    key_id, secret, token = key
    if key_id is not None or secret is not None or token is not None:
        if aws.credentials is not None:
            raise ConfigurationError(
                "credentials are given twice: as aws_access_key_id= and in aws=",
                option="aws_access_key_id",
            )
        if key_id is None or secret is None:
            raise ConfigurationError(
                "aws_access_key_id and aws_secret_access_key go together",
                option="aws_access_key_id",
            )
        changes["credentials"] = Credentials(key_id, secret, token)
    return dataclasses.replace(aws, **changes) if changes else aws


class SESTransport(Transport):
    """Send through Amazon SES with an aiobotocore client, rate limited and bounded.

    Example::

        SESTransport(region_name="eu-west-1", sending_rate=14)

    - ``client``: an aiobotocore ``ses`` or ``sesv2`` client you created and keep open
      (its settings are never changed; set ``retries={"mode": "standard",
      "total_max_attempts": 1}`` on it so that botocore does not resend ambiguous requests
      behind our back, and a connection pool of at least ``max_connections``). Without a
      client the transport creates one in ``__aenter__`` from ``aws``
      (:class:`~asyncmailer.options.AWSClientSettings`: region, endpoint, credentials,
      session, timeouts; by default the standard AWS credential and region chain) and
      closes it on exit. ``region_name``, ``endpoint_url`` and ``aws_access_key_id`` /
      ``aws_secret_access_key`` / ``aws_session_token`` (botocore's ``create_client``
      keywords) are shortcuts for the same settings.
    - ``sending_rate``: recipients per second (SES counts each recipient), or ``"auto"`` to
      use the account's ``MaxSendRate`` × ``quota.safety_factor``, refreshed every
      ``quota.refresh`` seconds. ``max_connections`` defaults to 10.
    - ``api``: ``"v2"`` (SESv2 ``SendEmail`` with raw content: AWS's current API, 40 MB
      messages, less CPU), ``"v1"`` (``SendRawEmail``, 10 MB), or ``"auto"``: from the
      client you pass, else v2.
    - ``ses_defaults`` and each message's ``ses`` are merged shallowly into the API call,
      the message winning: v1 ``Tags``, ``ConfigurationSetName``, ``SourceArn``, ``FromArn``,
      ``ReturnPathArn``; v2 ``EmailTags``, ``ConfigurationSetName``,
      ``FromEmailAddressIdentityArn``, ``FeedbackForwardingEmailAddress``... ``Tags`` and
      ``EmailTags`` are translated to the API in use. A mistake in ``ses_defaults`` is a
      :class:`~asyncmailer.errors.ConfigurationError`; one in a message's ``ses`` a
      :class:`~asyncmailer.errors.MessageError` (``field="ses"``).
    - ``quota``: a :class:`~asyncmailer.options.QuotaPolicy`: the safety factor of
      ``"auto"``, how often the quota is read, and what a send that would exceed
      ``Max24HourSend`` does when the quota is known (``"fail"``, ``"wait"``, ``"ignore"``).
    - Rate precision: a rate grant is valid for the limiter's ``margin``. A handler on
      botocore's ``before-send`` event for the send operation (after signing, just before
      the HTTP layer; removed again on close from a client you passed in) checks it; a
      stale grant is given up before anything is written, and the request is built and
      signed again on a fresh grant. ``warm_up`` (default on) makes one cheap request
      (``GetAccount`` / ``GetSendQuota``) when the transport opens, on your client too, so
      that no cold HTTP session sits behind the first grant; after an idle spell longer
      than half the client's keep-alive timeout, the first send goes alone and the others
      wait for its answer (``docs/rate-limiting.md``).
    - ``limits``, ``max_connections``, ``retry``, ``dkim``: shared by every transport
      (:class:`Transport`).
    """

    name = "ses"
    default_max_connections = 10
    supports_auto_rate = True

    def __init__(
        self,
        client: SESClient | SESV2Client | None = None,
        *,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        aws: AWSClientSettings | None = None,
        api: Api = "auto",
        ses_defaults: Mapping[str, Any] | None = None,
        quota: QuotaPolicy | None = None,
        warm_up: bool = True,
        **options: Unpack[TransportOptions],
    ) -> None:
        super().__init__(**options)
        if api not in ("auto", "v1", "v2"):
            raise ConfigurationError(f"api must be 'auto', 'v1' or 'v2', not {api!r}", option="api")
        if quota is None:
            quota = QuotaPolicy()
        elif not isinstance(quota, QuotaPolicy):
            raise ConfigurationError(
                f"quota must be a QuotaPolicy, not {type(quota).__name__}", option="quota"
            )
        auto = self.sending_rate == "auto"
        #: True when the rate comes from the account's quota.
        self.auto_rate = auto
        #: How the client is created (unused with a client passed in).
        self.aws = _aws_settings(
            aws,
            region_name=region_name,
            endpoint_url=endpoint_url,
            key=(aws_access_key_id, aws_secret_access_key, aws_session_token),
        )
        #: How the account's quota is followed.
        self.quota_policy = quota
        #: Make one cheap request when opening (on a client passed in too), so that the
        #: first rate-limited send does not wait for a cold HTTP session.
        self.warm_up = warm_up
        self._client_given = client
        self._client: Any = client
        self._api_asked: Api = api
        #: The API in use once open (``"v1"`` or ``"v2"``).
        self.api: Literal["v1", "v2"] = "v2" if api == "auto" else api
        #: Options merged into every API call (read when the transport opens).
        self.ses_defaults: dict[str, Any] = dict(ses_defaults or {})
        self._stack: contextlib.AsyncExitStack | None = None
        self._option_names_cache: dict[str, frozenset[str]] = {}
        self._defaults_merged: dict[str, Any] | None = None
        self._hook_event: str | None = None
        self._hook_id = f"asyncmailer-before-send-{id(self):x}"
        self._region = "us-east-1"
        self._quota = QuotaTracker(
            safety_factor=quota.safety_factor,
            refresh_interval=quota.refresh,
            policy=quota.daily,
            enabled=auto if quota.track_daily is None else quota.track_daily,
        )

    @property
    def region_name(self) -> str | None:
        """The region asked for (``aws.region_name``); see :attr:`region` for the one in use."""
        return self.aws.region_name

    @property
    def endpoint_url(self) -> str | None:
        """The endpoint asked for (``aws.endpoint_url``), or None for AWS's own."""
        return self.aws.endpoint_url

    def __repr__(self) -> str:
        rate = "auto" if self.auto_rate else self.sending_rate
        return (
            f"SESTransport(api={self.api!r}, region={self.region_name or self._region!r}, "
            f"sending_rate={rate!r}, max_connections={self.max_connections!r}, "
            f"state={self.state.value!r})"
        )

    @property
    def client(self) -> SESClient | SESV2Client | None:
        """The aiobotocore client in use (yours, or the one created in ``__aenter__``)."""
        return cast("SESClient | SESV2Client | None", self._client)

    @property
    def region(self) -> str:
        """The AWS region of the client (known once open)."""
        return self._region

    @property
    def quota(self) -> QuotaTracker:
        """The account quota as last read (``sending_rate="auto"`` / ``track_daily_quota``)."""
        return self._quota

    # ------------------------------------------------------------------ lifecycle

    async def _open(self) -> None:
        if self._client_given is None:
            self._client = await self._create_client()
        else:
            self._check_client(self._client_given)
        self._region = str(getattr(self._client.meta, "region_name", None) or "us-east-1")
        service = self._client.meta.service_model.service_name
        client_api: Literal["v1", "v2"] = "v2" if service == "sesv2" else "v1"
        if service not in ("ses", "sesv2"):
            raise ConfigurationError(
                f"client must be an aiobotocore 'ses' or 'sesv2' client, not {service!r}",
                option="client",
            )
        if self._api_asked != "auto" and self._api_asked != client_api:
            raise ConfigurationError(
                f"api={self._api_asked!r} does not match the {service!r} client", option="api"
            )
        self.api = client_api
        self._defaults_merged = None
        service_id = self._client.meta.service_model.service_id.hyphenize()
        self._hook_event = f"before-send.{service_id}.{_OPERATIONS[client_api]}"
        # The last public moment before the request leaves: check the rate grant there.
        # Removed again on close (a client passed in outlives the transport).
        self._client.meta.events.register(
            self._hook_event, self._before_send, unique_id=self._hook_id
        )
        if self._quota.enabled:
            await self._quota.start(self._read_quota)

    def _initial_rate(self) -> float | None:
        if self.auto_rate:
            return self._quota.rate
        return super()._initial_rate()

    async def __aenter__(self) -> SESTransport:
        await super().__aenter__()
        if self.auto_rate and self.rate_limiter is not None:
            self._quota.on_rate_change(self.rate_limiter.set_rate)
            if self._rate_limiter_given is not None and self._quota.rate is not None:
                self.rate_limiter.set_rate(self._quota.rate)
        return self

    def _before_send(self, **_: Any) -> None:
        # A stale grant is renewed, or GrantExpired raised (nothing written yet).
        if check_grant():
            self.stale_grants += 1

    def _idle_timeout(self) -> float | None:
        return idle_timeout(self._client)

    async def _warm_up(self) -> bool:
        if self._quota.enabled:
            return True  # reading the quota in _open was the warm-up
        if not self.warm_up:
            return False
        return await warm_up(self._client, self.api)

    async def _close(self) -> None:
        if self._hook_event is not None and self._client is not None:
            self._client.meta.events.unregister(self._hook_event, unique_id=self._hook_id)
            self._hook_event = None
        await self._quota.stop()
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
        if self._client_given is None:
            self._client = None

    async def _create_client(self) -> Any:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        settings = self.aws
        session = settings.session or get_session()
        service = "ses" if self._api_asked == "v1" else "sesv2"
        # Parse botocore's data files in a thread, not on the event loop.
        await preload_data(session, service)
        pool = max(10, self.max_connections or 10)
        config = AioConfig(
            max_pool_connections=pool,
            # We retry ourselves, through the rate limiter, and never resend ambiguous requests.
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            # We build the parameters; `ses` option names are checked against the model.
            parameter_validation=False,
        )
        credentials = settings.credentials
        region = settings.region_name or os.environ.get("AWS_REGION") or None
        stack = contextlib.AsyncExitStack()
        try:
            client = await stack.enter_async_context(
                session.create_client(
                    service,
                    region_name=region,
                    endpoint_url=settings.endpoint_url,
                    aws_access_key_id=credentials and credentials.access_key_id,
                    aws_secret_access_key=credentials and credentials.secret_access_key,
                    aws_session_token=credentials and credentials.session_token,
                    verify=settings.verify,
                    config=config,
                )
            )
        except BaseException as exc:
            await stack.aclose()
            mapped = map_ses_error(exc, action="ses:CreateClient")
            if isinstance(mapped, ConfigurationError):
                raise mapped from exc
            raise
        self._stack = stack
        return client

    def _check_client(self, client: Any) -> None:
        config = getattr(client.meta, "config", None)
        pool = getattr(config, "max_pool_connections", None)
        if self.max_connections is not None and pool is not None and pool < self.max_connections:
            warnings.warn(
                f"the SES client's connection pool ({pool}) is smaller than max_connections "
                f"({self.max_connections}): requests will queue inside aiobotocore; create the "
                f"client with AioConfig(max_pool_connections={self.max_connections})",
                RuntimeWarning,
                stacklevel=4,
            )
        retries = getattr(config, "retries", None) or {}
        if "total_max_attempts" in retries:
            total = retries["total_max_attempts"]
        elif "max_attempts" in retries:
            total = retries["max_attempts"] + 1
        else:
            total = None  # botocore's default: several attempts
        if total is None or total > 1:
            warnings.warn(
                "the SES client retries on its own: botocore may resend a request whose "
                "outcome is unknown (duplicate email). Create it with "
                "AioConfig(retries={'mode': 'standard', 'total_max_attempts': 1}); "
                "asyncmailer retries safe failures itself",
                RuntimeWarning,
                stacklevel=4,
            )

    async def _read_quota(self) -> tuple[float, float, float]:
        """Return (MaxSendRate, Max24HourSend, SentLast24Hours) from the account."""
        try:
            if self.api == "v2":
                answer = await self._client.get_account()
                quota = answer.get("SendQuota", {})
            else:
                quota = await self._client.get_send_quota()
        except Exception as exc:
            mapped = map_ses_error(
                exc, action="ses:GetSendQuota" if self.api == "v1" else "ses:GetAccount"
            )
            if mapped is None:
                raise
            raise mapped from exc
        return (
            float(quota.get("MaxSendRate", 0.0)),
            float(quota.get("Max24HourSend", 0.0)),
            float(quota.get("SentLast24Hours", 0.0)),
        )

    # ------------------------------------------------------------------ sending

    def _weight(self, composed: ComposedMessage) -> int:
        return max(1, len(composed.envelope.to))

    def _preflight(self, composed: ComposedMessage, message: Message | None) -> None:
        envelope = composed.envelope
        if not envelope.from_:
            raise MessageError("SES needs a sender: set from_ or envelope", field="from_")
        if not envelope.to:
            raise MessageError("SES needs at least one recipient", field="to")
        if len(envelope.to) > MAX_RECIPIENTS:
            raise TooManyRecipientsError(
                f"SES accepts at most {MAX_RECIPIENTS} recipients per message, this one has "
                f"{len(envelope.to)}: split it (send_many) or use a list service",
                count=len(envelope.to),
                limit=MAX_RECIPIENTS,
            )
        if composed.smtputf8:
            for address in (envelope.from_, *envelope.to):
                if not address.partition("@")[0].isascii():
                    raise SMTPUTF8RequiredError(
                        f"SES cannot send to or from {address!r}: it has no SMTPUTF8 support, so "
                        "local parts must be ASCII",
                        field="envelope",
                        address=address,
                    )
        limit = SES_LIMITS[self._api_for_limits()]
        if len(composed.raw) > limit:
            raise MessageTooLargeError(
                f"the message is {len(composed.raw)} octets, over the SES {self.api} limit of "
                f"{limit} octets" + (" (SESv2 allows 40 MB: api='v2')" if self.api == "v1" else ""),
                size=len(composed.raw),
                limit=limit,
            )
        if message is not None:
            self._check_attachments(message)
            options = message.ses
            if options:
                self._merge_options(options)

    def _api_for_limits(self) -> Literal["v1", "v2"]:
        return self.api

    @staticmethod
    def _check_attachments(message: Message) -> None:
        for index, attachment in enumerate(message.attachments):
            name = attachment.filename or os.path.basename(attachment.path or attachment.href or "")
            ext = name.rpartition(".")[2].lower() if "." in name else ""
            if ext in BLOCKED_ATTACHMENT_EXTENSIONS:
                raise MessageError(
                    f"SES refuses attachments of type .{ext} ({name!r}); zip it or link to it",
                    field=f"attachments[{index}]",
                )

    def _merge_options(self, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """``ses_defaults`` merged with a message's ``ses`` options, checked.

        A mistake in the defaults raises :class:`ConfigurationError` (``ses_defaults``),
        one in the message's options :class:`MessageError` (``field="ses"``).
        """
        # The transport's defaults alone, merged and checked once per open transport (the
        # result is only ever unpacked, not changed): the common case, on every send.
        defaults = self._defaults_merged
        if defaults is None:
            problem = self._check_options(self._translated(self.ses_defaults))
            if problem:
                raise ConfigurationError(f"ses_defaults: {problem}", option="ses_defaults")
            defaults = self._defaults_merged = self._translated(self.ses_defaults)
        if not options:
            return defaults
        if not isinstance(options, Mapping):
            raise MessageError(
                f"ses must be a mapping of API options, not {type(options).__name__}",
                field="ses",
            )
        merged = self._translated({**self.ses_defaults, **options})
        problem = self._check_options(merged)
        if problem:
            raise MessageError(f"the message's ses options: {problem}", field="ses")
        return merged

    def _translated(self, options: Mapping[str, Any]) -> dict[str, Any]:
        merged = dict(options)
        if self.api == "v2":
            if "Tags" in merged:
                merged.setdefault("EmailTags", merged.pop("Tags"))
        elif "EmailTags" in merged:
            merged.setdefault("Tags", merged.pop("EmailTags"))
        return merged

    def _check_options(self, merged: Mapping[str, Any]) -> str | None:
        """What is wrong with these API options, or None."""
        allowed = self._option_names()
        unknown = set(merged).difference(allowed) if allowed else set()
        if unknown:
            return (
                f"unknown option(s) for {_OPERATIONS[self.api]}: {', '.join(sorted(unknown))}"
                f" (known: {', '.join(sorted(allowed - _RESERVED[self.api]))})"
            )
        clash = _RESERVED[self.api].intersection(merged)
        if clash:
            return (
                f"may not set {', '.join(sorted(clash))}: the transport derives them from the "
                "message and its envelope"
            )
        return None

    def _option_names(self) -> frozenset[str]:
        """Parameter names of the send operation, from the client's service model."""
        names = self._option_names_cache.get(self.api)
        if names is None and self._client is not None:
            shape = self._client.meta.service_model.operation_model(
                _OPERATIONS[self.api]
            ).input_shape
            names = frozenset(shape.members)
            self._option_names_cache[self.api] = names
        return names or frozenset()

    def format_message_id(self, ses_id: str) -> str:
        """The Message-ID SES gives the message: ``<id@REGION.amazonses.com>``.

        us-east-1 uses ``email.amazonses.com``; an id that already has ``@`` is kept.
        """
        if "@" in ses_id:
            return ses_id if ses_id.startswith("<") else f"<{ses_id}>"
        host = "email" if self._region == "us-east-1" else self._region
        return f"<{ses_id}@{host}.amazonses.com>"

    def _uses_reserve(self) -> bool:
        # Without daily-quota tracking, reserve() and release() do nothing: skip both.
        return self._quota.enabled

    async def _reserve(self, composed: ComposedMessage, message: Message | None) -> None:
        # Before the connection slot and the rate limiter: a send waiting for the daily
        # quota must not hold a granted rate unit (they would all fire at once later).
        await self._quota.reserve(self._weight(composed))

    def _unreserve(self, composed: ComposedMessage, message: Message | None) -> None:
        self._quota.release(self._weight(composed))

    async def _deliver(self, composed: ComposedMessage, message: Message | None) -> Delivery:
        weight = self._weight(composed)
        options = self._merge_options(message.ses if message is not None else None)
        envelope = composed.envelope
        client = self._client
        try:
            if self.api == "v2":
                answer = await client.send_email(
                    FromEmailAddress=envelope.from_,
                    Destination={"ToAddresses": list(envelope.to)},
                    Content={"Raw": {"Data": composed.raw}},
                    **options,
                )
            else:
                answer = await client.send_raw_email(
                    Source=envelope.from_,
                    Destinations=list(envelope.to),
                    RawMessage={"Data": composed.raw},
                    **options,
                )
        except GrantExpired:
            raise  # from our before-send handler: nothing was written, the base asks again
        except Exception as exc:
            mapped = map_ses_error(
                exc,
                action=_ACTIONS[self.api],
                configuration_set=options.get("ConfigurationSetName"),
            )
            if mapped is None:
                # Not a network or service outcome: a bug here or in a dependency, raised
                # with its own type (the base class adds a hint to report it).
                inner = wrapped_bug(exc)
                if inner is not None:
                    raise inner from exc
                raise
            if (
                isinstance(mapped, ConfigurationError)
                and mapped.option == "ses_defaults"
                and message is not None
                and message.ses
            ):
                # botocore refused a parameter value; the message's options are in the call.
                mapped = MessageError(f"the message's ses options: {mapped}", field="ses")
            if not (isinstance(mapped, DeliveryError) and mapped.outcome is Outcome.AMBIGUOUS):
                self._quota.release(weight)  # SES sent nothing
            raise mapped from exc
        ses_id = str(answer["MessageId"])
        return Delivery(response=ses_id, message_id=self.format_message_id(ses_id))

    # ------------------------------------------------------------ templates and bulk sending
    # The logic lives in ._ses_bulk; these methods only delegate (docs/templates.md).

    async def send_mail(
        self,
        message: MessageInput | None = None,
        /,
        *,
        template: SESTemplate | None = None,
        **fields: Unpack[MessageFields],
    ) -> SendResult:
        """Send one message; see :meth:`Transport.send_mail`.

        With ``template`` (an :class:`~asyncmailer.templates.SESTemplate`), SES renders the
        message: one SESv2 ``SendEmail`` with ``Content.Template``, rate limited, retried
        and reported exactly like any other send. Only ``from_``, ``to``, ``cc``, ``bcc``,
        ``reply_to`` and ``ses`` may go with it: the subject, body, headers and
        attachments come from the template. Example::

            await ses.send_mail(from_="shop@example.com", to="ada@example.com",
                                template=SESTemplate(name="welcome", data={"name": "Ada"}))
        """
        if template is None:
            return await super().send_mail(message, **fields)
        from asyncmailer.transports import _ses_bulk

        allowed = {"from_", "to", "cc", "bcc", "reply_to", "ses"}
        extra = sorted(set(fields) - allowed)
        if message is not None or extra:
            raise MessageError(
                "a templated send takes its content from the template: only from_, to, cc, "
                f"bcc, reply_to and ses may go with it (got {', '.join(extra) or 'a message'})",
                field=extra[0] if extra else "message",
            )
        return await _ses_bulk.send_templated(self, template, **cast("dict[str, Any]", fields))

    def send_bulk(
        self,
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
        """One template to many destinations with SESv2 ``SendBulkEmail``; one outcome each.

        Example::

            async with contextlib.aclosing(
                ses.send_bulk(SESTemplate(name="news"), destinations, from_="shop@example.com")
            ) as outcomes:
                async for outcome in outcomes:   # SendResult or MailError, in input order
                    ...

        ``destinations`` (an iterable or async iterable of
        :class:`~asyncmailer.templates.BulkDestination` or address strings) is read lazily:
        at most ``3 × concurrency`` requests' worth of destinations are held at once,
        whatever its length. Each request carries up to 50 destinations, and no more
        recipients than the rate limiter's window holds (14 at 14/s); the limiter is
        charged one unit per recipient when the request leaves, as SES counts them.
        ``default_data`` replaces the template's data as the request's default;
        ``reply_to`` and ``ses`` (``ConfigurationSetName``, ``DefaultEmailTags``...; the
        transport's ``ses_defaults`` that ``SendBulkEmail`` accepts apply too) go with
        every request.

        Each destination's outcome is a :class:`~asyncmailer.SendResult` or the
        :class:`~asyncmailer.errors.MailError` it ended with (entry statuses are mapped as
        :mod:`asyncmailer.transports._ses_bulk` lists). Retry-safe entries (throttled,
        transient failure) are sent again in a smaller request after the retry policy's
        backoff; a request that fails as a whole gives every entry its outcome, and an
        unknown outcome is never resent (unless ``retry_ambiguous``). With
        ``suppression``, suppressed recipients are dropped (``suppression_policy="drop"``;
        a destination left with none fails) or fail their destination (``"fail"``) with
        :class:`~asyncmailer.feedback.SuppressedRecipientError`, before any request.
        Leaving the loop early cancels the requests in progress, as ``send_many`` does.
        Without ``suppression`` here, the transport's own (``suppression=``) applies, with
        its policy.
        """
        from asyncmailer.transports import _ses_bulk

        if suppression is None and self.suppression is not None:
            suppression = self.suppression.list
            suppression_policy = self.suppression.policy
        return _ses_bulk.send_bulk(
            self,
            template,
            destinations,
            from_=from_,
            default_data=default_data,
            reply_to=reply_to,
            ses=ses,
            concurrency=concurrency,
            progress=progress,
            suppression=suppression,
            suppression_policy=suppression_policy,
        )

    async def create_template(self, name: str, content: TemplateContent) -> None:
        """Store a template in SES (``CreateEmailTemplate``); an existing name is an error.

        Example: ``await ses.create_template("welcome", TemplateContent(subject="Hi {{name}}",
        text="Hello {{name}}"))``. Raises :class:`~asyncmailer.errors.ConfigurationError`
        when the name exists.
        """
        from asyncmailer.transports import _ses_bulk

        await _ses_bulk.create_template(self, name, content)

    async def update_template(self, name: str, content: TemplateContent) -> None:
        """Replace a stored template's content (``UpdateEmailTemplate``)."""
        from asyncmailer.transports import _ses_bulk

        await _ses_bulk.update_template(self, name, content)

    async def get_template(self, name: str) -> TemplateContent:
        """Read a stored template (``GetEmailTemplate``); a missing one is a ConfigurationError."""
        from asyncmailer.transports import _ses_bulk

        return await _ses_bulk.get_template(self, name)

    async def delete_template(self, name: str) -> None:
        """Delete a stored template (``DeleteEmailTemplate``)."""
        from asyncmailer.transports import _ses_bulk

        await _ses_bulk.delete_template(self, name)

    async def render_template(self, name: str, data: Any = None) -> str:
        """Render a stored template with ``data`` (``TestRenderEmailTemplate``): the MIME text.

        Check a template before a campaign: a variable missing from ``data`` or a malformed
        template raises :class:`~asyncmailer.errors.MessageError` (SES's rendering failure).
        """
        from asyncmailer.transports import _ses_bulk

        return await _ses_bulk.render_template(self, name, data)
