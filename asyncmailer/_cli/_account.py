"""``asyncmailer verify`` and ``asyncmailer quota``: read-only checks of an SES account.

``verify`` makes SES calls only (no STS): the quota call proves the credentials and the
region, then sending status, sandbox, quota, the sender's identity, its domain's DKIM and,
optionally, a configuration set. Each check ends PASS, WARN, FAIL or SKIP with a fix.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any, Literal

from asyncmailer._cli._output import EXIT_FAILURE, CLIError, echo
from asyncmailer._cli._transport import add_ses_options
from asyncmailer.errors import AccessDeniedError, ConfigurationError, MailError
from asyncmailer.options import AWSClientSettings
from asyncmailer.transports import SESTransport
from asyncmailer.transports._ses_errors import map_ses_error

__all__ = [
    "Check",
    "Quota",
    "add_parsers",
    "format_checks",
    "read_quota",
    "run_quota",
    "run_verify",
    "verify_account",
]

Status = Literal["PASS", "WARN", "FAIL", "SKIP"]
Api = Literal["v1", "v2"]

#: The quota SES gives an account in the sandbox (v1 has no direct "sandbox" flag).
SANDBOX_DAILY_QUOTA = 200.0


@dataclass(frozen=True, slots=True)
class Check:
    """One line of ``verify``'s report."""

    #: Short name: ``credentials``, ``sending``, ``production``, ``quota``, ``identity``...
    name: str
    #: PASS, WARN (works, but fix it before production), FAIL, or SKIP (could not check).
    status: Status
    #: What was found.
    detail: str
    #: What to do about it (None for PASS).
    fix: str | None = None


@dataclass(frozen=True, slots=True)
class Quota:
    """The account's sending quota."""

    #: Recipients per second.
    max_send_rate: float
    #: Recipients per 24 hours (negative: unlimited).
    max_24_hour_send: float
    #: Recipients sent over the last 24 hours.
    sent_last_24_hours: float


class _CallFailed(Exception):
    def __init__(self, code: str, error: BaseException) -> None:
        super().__init__(str(error))
        self.code = code
        self.error = error


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", "") or "")
    return ""


async def _call(client: Any, method: str, action: str, **params: Any) -> dict[str, Any]:
    """Call one SES operation; failures become :class:`_CallFailed` with a mapped error."""
    try:
        answer: dict[str, Any] = await getattr(client, method)(**params)
    except Exception as exc:  # botocore's errors, and its parser's (not a BotoCoreError)
        mapped = map_ses_error(exc, action=action)
        raise _CallFailed(_error_code(exc), mapped if mapped is not None else exc) from exc
    return answer


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _could_not(name: str, failure: _CallFailed, action: str) -> Check:
    if isinstance(failure.error, AccessDeniedError):
        return Check(
            name,
            "WARN",
            f"cannot check: {action} is denied to these credentials",
            f"grant {action} to let verify check this (sending does not need it)",
        )
    return Check(name, "SKIP", f"cannot check ({action}): {_short(failure.error)}")


def _candidates(identity: str) -> tuple[str | None, list[str]]:
    """(address or None, domains most specific first) for an address or a domain."""
    address = parseaddr(identity)[1] or identity.strip()
    if "@" in address:
        domain = address.rpartition("@")[2].lower()
    else:
        domain, address = address.lower(), ""
    labels = domain.split(".")
    domains = [".".join(labels[i:]) for i in range(len(labels) - 1)] or [domain]
    return (address or None), domains


@dataclass
class _Identity:
    name: str
    exists: bool
    verified: bool = False
    status: str = ""
    dkim_enabled: bool = False
    dkim_status: str = ""


class _Account:
    """The SES calls ``verify`` needs, for either API."""

    def __init__(self, client: Any, api: Api) -> None:
        self.client = client
        self.api = api

    async def quota(self) -> tuple[Quota, dict[str, Any]]:
        """The quota; with v2 also the rest of GetAccount."""
        if self.api == "v2":
            answer = await _call(self.client, "get_account", "ses:GetAccount")
            raw = answer.get("SendQuota", {})
        else:
            answer = raw = await _call(self.client, "get_send_quota", "ses:GetSendQuota")
        quota = Quota(
            float(raw.get("MaxSendRate", 0.0)),
            float(raw.get("Max24HourSend", 0.0)),
            float(raw.get("SentLast24Hours", 0.0)),
        )
        return quota, answer

    async def sending_enabled(self, account: dict[str, Any]) -> bool:
        if self.api == "v2":
            return bool(account.get("SendingEnabled", True))
        answer = await _call(
            self.client, "get_account_sending_enabled", "ses:GetAccountSendingEnabled"
        )
        return bool(answer.get("Enabled", False))

    async def identities(self, names: list[str]) -> list[_Identity]:
        if self.api == "v1":
            verification = await _call(
                self.client,
                "get_identity_verification_attributes",
                "ses:GetIdentityVerificationAttributes",
                Identities=names,
            )
            attributes = verification.get("VerificationAttributes", {})
            dkim = await _call(
                self.client,
                "get_identity_dkim_attributes",
                "ses:GetIdentityDkimAttributes",
                Identities=names,
            )
            dkim_attributes = dkim.get("DkimAttributes", {})
            found = []
            for name in names:
                entry = attributes.get(name)
                if entry is None:
                    found.append(_Identity(name, exists=False))
                    continue
                status = str(entry.get("VerificationStatus", ""))
                keys = dkim_attributes.get(name, {})
                found.append(
                    _Identity(
                        name,
                        exists=True,
                        verified=status == "Success",
                        status=status,
                        dkim_enabled=bool(keys.get("DkimEnabled", False)),
                        dkim_status=str(keys.get("DkimVerificationStatus", "")),
                    )
                )
            return found
        found = []
        for name in names:
            try:
                entry = await _call(
                    self.client, "get_email_identity", "ses:GetEmailIdentity", EmailIdentity=name
                )
            except _CallFailed as failure:
                if failure.code == "NotFoundException":
                    found.append(_Identity(name, exists=False))
                    continue
                raise
            status = str(entry.get("VerificationStatus", ""))
            keys = entry.get("DkimAttributes", {})
            found.append(
                _Identity(
                    name,
                    exists=True,
                    verified=bool(entry.get("VerifiedForSendingStatus")) or status == "SUCCESS",
                    status=status,
                    dkim_enabled=bool(keys.get("SigningEnabled", False)),
                    dkim_status=str(keys.get("Status", "")),
                )
            )
        return found

    async def configuration_set(self, name: str) -> bool:
        method, action = (
            ("get_configuration_set", "ses:GetConfigurationSet")
            if self.api == "v2"
            else ("describe_configuration_set", "ses:DescribeConfigurationSet")
        )
        try:
            await _call(self.client, method, action, ConfigurationSetName=name)
        except _CallFailed as failure:
            if failure.code in {
                "NotFoundException",
                "ConfigurationSetDoesNotExist",
                "ConfigurationSetDoesNotExistException",
            }:
                return False
            raise
        return True


def _credentials_failure(failure: _CallFailed, region: str) -> Check:
    error = failure.error
    if isinstance(error, AccessDeniedError) and failure.code in {
        "AccessDenied",
        "AccessDeniedException",
    }:
        return Check(
            "credentials",
            "WARN",
            f"the credentials are valid in {region} but may not read the quota",
            "grant ses:GetSendQuota / ses:GetAccount (needed for --sending-rate auto)",
        )
    if isinstance(error, AccessDeniedError):
        fix = "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE and the clock"
    elif isinstance(error, ConfigurationError):
        fix = "set AWS credentials: environment, ~/.aws/credentials profile, or an instance role"
    else:
        fix = "check --region and --endpoint-url, and that this machine can reach SES"
    return Check("credentials", "FAIL", _short(error), fix)


def _quota_checks(quota: Quota, account: dict[str, Any], api: Api) -> list[Check]:
    checks = []
    daily = quota.max_24_hour_send
    if api == "v2" and "ProductionAccessEnabled" in account:
        sandbox = not account["ProductionAccessEnabled"]
        how = "GetAccount.ProductionAccessEnabled"
    else:
        sandbox = daily == SANDBOX_DAILY_QUOTA
        how = f"inferred: Max24HourSend is {daily:.0f}"
    if sandbox:
        checks.append(
            Check(
                "production",
                "WARN",
                f"the account is in the SES sandbox ({how}): only verified recipients, "
                "200 messages a day",
                "request production access: SES console, Account dashboard, "
                "'Request production access'",
            )
        )
    else:
        checks.append(Check("production", "PASS", f"production access ({how})"))
    enforcement = str(account.get("EnforcementStatus", "") or "")
    if enforcement and enforcement != "HEALTHY":
        status: Status = "FAIL" if enforcement == "SHUTDOWN" else "WARN"
        checks.append(
            Check(
                "reputation",
                status,
                f"enforcement status {enforcement}",
                "read the SES reputation dashboard: lower bounces and complaints",
            )
        )
    numbers = (
        f"{quota.max_send_rate:g} recipients/s, "
        + ("unlimited" if daily < 0 else f"{daily:.0f}")
        + f" per 24 h, {quota.sent_last_24_hours:.0f} sent in the last 24 h"
    )
    if daily >= 0 and quota.sent_last_24_hours >= daily:
        checks.append(
            Check(
                "quota",
                "FAIL",
                f"the daily quota is used up: {numbers}",
                "wait for the 24-hour window to move, or request a higher quota",
            )
        )
    elif daily > 0 and quota.sent_last_24_hours >= 0.9 * daily:
        checks.append(
            Check(
                "quota",
                "WARN",
                f"over 90% of the daily quota used: {numbers}",
                "request a higher sending quota in the SES console",
            )
        )
    else:
        checks.append(Check("quota", "PASS", numbers))
    return checks


def _identity_checks(identity: str, found: list[_Identity], api: Api) -> list[Check]:
    verified = next((item for item in found if item.verified), None)
    create = (
        "aws sesv2 create-email-identity --email-identity DOMAIN"
        if api == "v2"
        else "aws ses verify-domain-identity --domain DOMAIN"
    )
    if verified is not None:
        via = "" if verified.name == identity else f" through the identity {verified.name}"
        check = Check("identity", "PASS", f"{identity} may send{via}")
    else:
        pending = [item for item in found if item.exists]
        if pending:
            states = ", ".join(f"{item.name}: {item.status or 'unknown'}" for item in pending)
            check = Check(
                "identity",
                "FAIL",
                f"{identity} is not verified yet ({states})",
                "publish the DNS records SES gave for the domain (or click the link sent to "
                "the address), then wait for verification",
            )
        else:
            names = ", ".join(item.name for item in found)
            check = Check(
                "identity",
                "FAIL",
                f"no SES identity covers {identity} (looked for {names})",
                f"verify the domain: {create}, then publish its DNS records",
            )
    domains = [item for item in found if "@" not in item.name and item.exists]
    if not domains:
        dkim = Check(
            "dkim",
            "WARN",
            "no domain identity: SES signs with amazonses.com only, which does not align with "
            "your From domain (DMARC)",
            f"verify the domain with Easy DKIM: {create}, then publish the three CNAME records",
        )
    else:
        domain = domains[0]
        ok = domain.dkim_enabled and domain.dkim_status.upper() == "SUCCESS"
        if ok:
            dkim = Check("dkim", "PASS", f"Easy DKIM signs for {domain.name}")
        else:
            enable = (
                "aws sesv2 put-email-identity-dkim-attributes --signing-enabled"
                if api == "v2"
                else f"aws ses verify-domain-dkim --domain {domain.name}"
            )
            dkim = Check(
                "dkim",
                "WARN",
                f"DKIM for {domain.name}: signing "
                f"{'enabled' if domain.dkim_enabled else 'disabled'}, "
                f"status {domain.dkim_status or 'unknown'}",
                f"{enable}, then publish the three CNAME records SES lists for the domain",
            )
    return [check, dkim]


async def verify_account(
    transport: SESTransport, *, identity: str, configuration_set: str | None = None
) -> list[Check]:
    """Run every check against the open ``transport``'s SES client; never raises for SES errors."""
    api: Api = transport.api
    account = _Account(transport.client, api)
    region = transport.region
    checks: list[Check] = []
    try:
        quota, details = await account.quota()
    except _CallFailed as failure:
        first = _credentials_failure(failure, region)
        checks.append(first)
        if first.status == "FAIL":
            return [*checks, Check("others", "SKIP", "skipped: SES cannot be used as configured")]
        details, quota = {}, None
    else:
        checks.append(Check("credentials", "PASS", f"SES answers in {region} (API {api})"))

    try:
        if api == "v2" and "SendingEnabled" not in details:
            raise _CallFailed("", ConfigurationError("GetAccount gave no answer"))
        enabled = await account.sending_enabled(details)
    except _CallFailed as failure:
        action = "ses:GetAccount" if api == "v2" else "ses:GetAccountSendingEnabled"
        checks.append(_could_not("sending", failure, action))
    else:
        checks.append(
            Check("sending", "PASS", "sending is enabled for the account")
            if enabled
            else Check(
                "sending",
                "FAIL",
                "sending is paused for the account",
                "aws sesv2 put-account-sending-attributes --sending-enabled (after fixing the "
                "cause SES reported)",
            )
        )
    if quota is not None:
        checks.extend(_quota_checks(quota, details, api))

    address, domains = _candidates(identity)
    names = ([address] if address else []) + domains
    try:
        found = await account.identities(names)
    except _CallFailed as failure:
        action = "ses:GetEmailIdentity" if api == "v2" else "ses:GetIdentityVerificationAttributes"
        checks.append(_could_not("identity", failure, action))
    else:
        checks.extend(_identity_checks(address or domains[0], found, api))

    if configuration_set:
        try:
            exists = await account.configuration_set(configuration_set)
        except _CallFailed as failure:
            checks.append(_could_not("config-set", failure, "ses:GetConfigurationSet"))
        else:
            checks.append(
                Check("config-set", "PASS", f"configuration set {configuration_set} exists")
                if exists
                else Check(
                    "config-set",
                    "FAIL",
                    f"configuration set {configuration_set} does not exist",
                    "create it (aws sesv2 create-configuration-set) or fix the name",
                )
            )
    return checks


def format_checks(checks: list[Check]) -> str:
    """The report: one line per check, its fix indented under it, then a summary."""
    lines = []
    for check in checks:
        lines.append(f"{check.status:<4}  {check.name:<12} {check.detail}")
        if check.fix and check.status != "PASS":
            lines.append(f"{'':<19}fix: {check.fix}")
    failed = sum(check.status == "FAIL" for check in checks)
    warned = sum(check.status == "WARN" for check in checks)
    lines.append("")
    if failed:
        lines.append(f"{failed} check(s) failed, {warned} warning(s).")
    elif warned:
        lines.append(f"Ready to send, with {warned} warning(s).")
    else:
        lines.append("Ready to send.")
    return "\n".join(lines)


async def read_quota(transport: SESTransport) -> Quota:
    """The account's quota, through the open transport's client."""
    try:
        quota, _ = await _Account(transport.client, transport.api).quota()
    except _CallFailed as failure:
        if isinstance(failure.error, MailError):
            raise failure.error from failure.__cause__
        raise CLIError(f"SES call failed: {_short(failure.error)}", code=EXIT_FAILURE) from None
    return quota


def _open(args: argparse.Namespace) -> SESTransport:
    return SESTransport(
        api=args.api,
        region_name=args.region,
        endpoint_url=args.endpoint_url,
        max_connections=1,
        aws=AWSClientSettings(connect_timeout=5.0, read_timeout=15.0),
        warm_up=False,  # these commands make their own requests
    )


async def run_verify(args: argparse.Namespace) -> int:
    """``verify``: print the checks; exit 1 if one failed (or warned, with ``--strict``)."""
    async with _open(args) as transport:
        echo(
            f"Checking SES for {args.from_} (region {transport.region}, API {transport.api}"
            + (f", endpoint {args.endpoint_url}" if args.endpoint_url else "")
            + ")"
        )
        checks = await verify_account(
            transport, identity=args.from_, configuration_set=args.configuration_set
        )
    echo(format_checks(checks))
    bad = {"FAIL", "WARN"} if args.strict else {"FAIL"}
    return EXIT_FAILURE if any(check.status in bad for check in checks) else 0


async def run_quota(args: argparse.Namespace) -> int:
    """``quota``: print MaxSendRate, Max24HourSend and SentLast24Hours."""
    async with _open(args) as transport:
        quota = await read_quota(transport)
    if args.json:
        echo(
            json.dumps(
                {
                    "MaxSendRate": quota.max_send_rate,
                    "Max24HourSend": quota.max_24_hour_send,
                    "SentLast24Hours": quota.sent_last_24_hours,
                }
            )
        )
    else:
        echo(f"MaxSendRate      {quota.max_send_rate:g} recipients/s")
        echo(f"Max24HourSend    {quota.max_24_hour_send:.0f}")
        echo(f"SentLast24Hours  {quota.sent_last_24_hours:.0f}")
    return 0


def add_parsers(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register ``verify`` and ``quota``."""
    verify = add(
        "verify",
        help="check an SES setup: credentials, sending, sandbox, quota, identity, DKIM",
        description=(
            "Check that SES is ready to send from an address or domain. Each line is PASS, "
            "WARN, FAIL or SKIP, with the fix. Exits 1 if a check failed."
        ),
    )
    verify.add_argument(
        "--from", dest="from_", required=True, metavar="ADDRESS|DOMAIN", help="the sender"
    )
    verify.add_argument("--configuration-set", metavar="NAME", help="also check this set exists")
    verify.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    add_ses_options(verify)
    verify.set_defaults(handler=run_verify)

    quota = add("quota", help="print the SES sending quota", description="Print the SES quota.")
    quota.add_argument("--json", action="store_true", help="print JSON")
    add_ses_options(quota)
    quota.set_defaults(handler=run_quota)
