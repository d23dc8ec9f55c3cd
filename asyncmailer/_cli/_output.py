"""Human output for the command line: plain lines, errors with a hint, optional extras."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import TextIO

from asyncmailer import errors

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "HINTS",
    "CLIError",
    "echo",
    "hint_for",
    "parse_headers",
    "require",
]

#: Exit code of a failure (delivery refused, a check failed, rows not sent).
EXIT_FAILURE = 1
#: Exit code of a usage error (bad arguments or input; nothing was sent).
EXIT_USAGE = 2
#: Exit code after Ctrl-C / SIGTERM (128 + SIGINT).
EXIT_INTERRUPTED = 130

#: One-line fixes shown under an error, most specific class first (looked up along the MRO).
#: ``docs/ses-guide.md`` has the same table with more detail.
HINTS: dict[type[BaseException], str] = {
    errors.TransportStateError: "open the transport with 'async with' before sending",
    errors.ConfigurationError: "check the option named above (asyncmailer COMMAND --help)",
    errors.AddressError: "fix the address: 'Name <user@example.com>' or 'user@example.com'",
    errors.HeaderError: "header values may not contain CR, LF or NUL",
    errors.ContentError: "check that the file exists and is readable",
    errors.MessageTooLargeError: "SES v1 takes 10 MB, SESv2 (--api v2) 40 MB: link big files",
    errors.TooManyRecipientsError: "SES takes 50 recipients per message: send one per recipient",
    errors.SMTPUTF8RequiredError: "SES cannot send to non-ASCII local parts; use an ASCII alias",
    errors.IdentityNotVerifiedError: "verify the sender (asyncmailer verify --from ADDRESS)",
    errors.MailFromDomainNotVerifiedError: "publish the MAIL FROM domain's MX and SPF records",
    errors.RecipientsRefusedError: "the SMTP server refused some recipients; check the addresses",
    errors.RecipientsDeferredError: "the SMTP server refused recipients for now; try again later",
    errors.MessageRejectedError: "SES refused the message itself; see its text above",
    errors.AccessDeniedError: "grant the IAM action named above (docs: SES guide, IAM policy)",
    errors.SendingRateExceededError: "lower --sending-rate or use --sending-rate auto",
    errors.DailyQuotaExceededError: "wait for the 24-hour window or request a higher quota",
    errors.SendingPausedError: "re-enable sending for the account or configuration set",
    errors.ConfigurationSetDoesNotExistError: "create the configuration set or fix its name",
    errors.ServiceRefusedError: "the server refused the session (5xx or TLS): check the server",
    errors.ConnectTimeoutError: "could not connect in time; nothing was sent, try again",
    errors.ServiceUnavailableError: "SES or the network failed; nothing was sent, try again",
    errors.DeliveryTimeoutError: "no answer in time: check before resending (may be delivered)",
    errors.DeliveryUnknownError: "the outcome is unknown: check before resending",
    errors.SendAbortedError: "nothing was sent: it is safe to send again",
    errors.RateLimiterError: "the shared rate limiter (Redis) is unreachable",
    errors.UndeliveredError: "some messages were not delivered before the transport closed",
}


class CLIError(Exception):
    """A command-line failure reported as one line plus a hint, without a traceback."""

    def __init__(self, message: str, *, hint: str | None = None, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        #: A one-line fix, printed under the message.
        self.hint = hint
        #: The process exit code.
        self.code = code


def echo(text: str = "", *, err: bool = False, file: TextIO | None = None) -> None:
    """Write one line to stdout (or stderr with ``err``)."""
    stream = file if file is not None else (sys.stderr if err else sys.stdout)
    stream.write(text + "\n")
    stream.flush()


def hint_for(exc: BaseException) -> str | None:
    """The hint of the most specific class of ``exc`` listed in :data:`HINTS`."""
    if isinstance(exc, errors.ConfigurationError) and exc.option is not None:
        if exc.option == "credentials":
            return None  # the message already says where credentials come from
        flag = "--" + exc.option.replace("_", "-")
        return f"check {exc.option!r} (for the command line: {flag}, see --help)"
    for cls in type(exc).__mro__:
        hint = HINTS.get(cls)
        if hint is not None:
            return hint
    return None


def require(module: str, extra: str = "cli") -> ModuleType:
    """Import an optional dependency, or fail with the ``pip install`` line that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]
        raise CLIError(
            f"this command needs {package}, which is not installed",
            hint=f"pip install 'asyncmailer[{extra}]'",
        ) from exc


def parse_headers(values: list[str]) -> list[tuple[str, str]]:
    """``--header 'Name: value'`` options as ``(name, value)`` pairs."""
    headers = []
    for value in values:
        name, sep, text = value.partition(":")
        if not sep or not name.strip():
            raise CLIError(f"--header {value!r}: expected 'Name: value'")
        headers.append((name.strip(), text.strip()))
    return headers
