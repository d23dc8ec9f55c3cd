"""An error's class tells the truth: the outcome it documents holds wherever it is raised.

The rule (``asyncmailer/errors.py``): a failure that may have been accepted is a
``DeliveryUnknownError`` (ambiguous); one where nothing was accepted and a later try can
succeed is a ``ThrottlingError`` / ``ServiceUnavailableError`` (retry-safe); anything else
is the final class naming the reason. ``outcome`` is a class attribute, not an argument.

- :func:`test_every_raise_site_is_pinned_with_the_outcome_its_situation_requires` walks
  the package's source and finds every place that builds a ``DeliveryError``. Each one is
  pinned in :data:`SITES` with the outcome *its situation* requires (decided by reading
  the code: was anything sent? can it succeed later?). A new site, or a site whose class
  changed, fails until a reviewer pins it; a class whose outcome disagrees with what its
  sites require fails.
- The documented tables (the exception tree, the SES and SMTP mapping tables) must agree
  with the classes.
- The mapping functions are driven with real backend exceptions.
"""

from __future__ import annotations

import ast
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from asyncmailer import errors
from asyncmailer.errors import DeliveryError, Outcome

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "asyncmailer"

F, R, A = Outcome.FINAL, Outcome.RETRY_SAFE, Outcome.AMBIGUOUS

#: (file, function, class, start of the message) → the outcome the situation requires.
#: The message start tells sites of one class in one function apart.
SITES: dict[tuple[str, str, str, str], Outcome] = {
    # --- SES (botocore) -------------------------------------------------------------
    # no TCP connection in time: nothing was written
    (
        "transports/_ses_errors.py",
        "map_ses_error",
        "ConnectTimeoutError",
        "could not connect to SES in time",
    ): R,
    # the request was written; no answer in time
    (
        "transports/_ses_errors.py",
        "map_ses_error",
        "DeliveryTimeoutError",
        "SES did not answer in time;",
    ): A,
    # EndpointConnectionError with a connector/DNS error: never connected
    (
        "transports/_ses_errors.py",
        "map_ses_error",
        "ServiceUnavailableError",
        "could not connect to SES: {}",
    ): R,
    # connection errors once connected, closed connections, unreadable answers
    (
        "transports/_ses_errors.py",
        "map_ses_error",
        "DeliveryUnknownError",
        "the connection to SES failed",
    ): A,
    (
        "transports/_ses_errors.py",
        "map_ses_error",
        "DeliveryUnknownError",
        "the connection to SES closed",
    ): A,
    (
        "transports/_ses_errors.py",
        "map_ses_error",
        "DeliveryUnknownError",
        "SES's answer could not be rea",
    ): A,
    # SES answered with an error: it did not take the message
    (
        "transports/_ses_errors.py",
        "_map_client_error",
        "DailyQuotaExceededError",
        "SES daily sending quota excee",
    ): F,
    (
        "transports/_ses_errors.py",
        "_map_client_error",
        "SendingRateExceededError",
        "SES maximum sending rate exce",
    ): R,
    (
        "transports/_ses_errors.py",
        "_map_client_error",
        "DailyQuotaExceededError",
        "SES sending limit exceeded ({",
    ): F,
    (
        "transports/_ses_errors.py",
        "_map_client_error",
        "MailFromDomainNotVerifiedError",
        "the custom MAIL FROM domain is",
    ): F,
    (
        "transports/_ses_errors.py",
        "_map_client_error",
        "IdentityNotVerifiedError",
        "SES refused: identity {} is no",
    ): F,
    (
        "transports/_ses_errors.py",
        "_map_client_error",
        "MessageRejectedError",
        "SES rejected the message: {}",
    ): F,
    (
        "transports/_ses_errors.py",
        "_map_client_error",
        "AccessDeniedError",
        "SES denied {}: {}. {}",
    ): F,
    (
        "transports/_ses_errors.py",
        "_map_client_error",
        "SendingPausedError",
        "SES sending is paused ({}); re",
    ): F,
    (
        "transports/_ses_errors.py",
        "_map_client_error",
        "ConfigurationSetDoesNotExistError",
        "SES configuration set {} does ",
    ): F,
    (
        "transports/_ses_errors.py",
        "_map_client_error",
        "ServiceUnavailableError",
        "SES failed with HTTP {} {}: {}",
    ): R,
    (
        "transports/_ses_errors.py",
        "_map_client_error",
        "DeliveryError",
        "SES error {} (HTTP {}): {}",
    ): F,
    # the local quota guard refuses before any request
    (
        "transports/_ses_quota.py",
        "reserve",
        "DailyQuotaExceededError",
        "sending {} more recipient(s) w",
    ): F,
    # --- every transport (base) -----------------------------------------------------
    ("transports/base.py", "_aborted", "DeliveryUnknownError", "the transport closed while the"): A,
    ("transports/base.py", "_aborted", "SendAbortedError", "the transport closed before th"): R,
    (
        "transports/base.py",
        "_send_prepared",
        "DeliveryUnknownError",
        "{}'s connection failed during ",
    ): A,
    (
        "transports/base.py",
        "final_error",
        "DeliveryUnknownError",
        "an earlier attempt may have be",
    ): A,
    # --- file: the temporary file is removed on failure, nothing is left behind ------
    ("transports/file.py", "_deliver", "AccessDeniedError", "cannot write to {}: {}"): F,
    ("transports/file.py", "_deliver", "ServiceUnavailableError", "cannot write to {}: {}"): R,
    # --- SMTP -------------------------------------------------------------------------
    # delivered to the others: a retry would duplicate it for them
    (
        "transports/smtp.py",
        "_refused_error",
        "RecipientsRefusedError",
        "{} of {} recipient(s) refused ",
    ): F,
    # RSET before DATA, 4xx only: nothing sent, may succeed later
    (
        "transports/smtp.py",
        "_refused_error",
        "RecipientsDeferredError",
        "{} of {} recipient(s) refused ",
    ): R,
    (
        "transports/smtp.py",
        "_map_smtp_error",
        "ServiceUnavailableError",
        "SMTP AUTH failed for now: {}",
    ): R,
    (
        "transports/smtp.py",
        "_map_smtp_error",
        "AccessDeniedError",
        "SMTP authentication refused: {",
    ): F,
    ("transports/smtp.py", "_map_smtp_error", "SendingRateExceededError", "throttled {}: {}"): R,
    (
        "transports/smtp.py",
        "_map_smtp_error",
        "DailyQuotaExceededError",
        "daily quota exceeded: {}",
    ): F,
    (
        "transports/smtp.py",
        "_map_smtp_error",
        "ServiceUnavailableError",
        "temporary failure {}: {}",
    ): R,
    # 5xx greeting: the server will refuse the session again
    (
        "transports/smtp.py",
        "_map_smtp_error",
        "ServiceRefusedError",
        "the server refused the session",
    ): F,
    (
        "transports/smtp.py",
        "_map_smtp_error",
        "MessageRejectedError",
        "the server refused the messag",
    ): F,
    # timeout during DATA: the server may have queued it
    (
        "transports/smtp.py",
        "_map_smtp_error",
        "DeliveryTimeoutError",
        "no answer in time {}; the serv",
    ): A,
    # timeout while connecting, or at MAIL/RCPT: no message data was sent
    (
        "transports/smtp.py",
        "_map_smtp_error",
        "ConnectTimeoutError",
        "no answer in time {}; nothing ",
    ): R,
    (
        "transports/smtp.py",
        "_map_smtp_error",
        "ServiceUnavailableError",
        "no answer in time {}; nothing ",
    ): R,
    # a certificate the client refuses will be refused again
    ("transports/smtp.py", "_map_smtp_error", "ServiceRefusedError", "TLS failed {}: {}"): F,
    (
        "transports/smtp.py",
        "_map_smtp_error",
        "DeliveryUnknownError",
        "connection lost {}: {}; the s",
    ): A,
    (
        "transports/smtp.py",
        "_map_smtp_error",
        "ServiceUnavailableError",
        "connection failed {}: {}; noth",
    ): R,
    # --- SES bulk (SendBulkEmail) -------------------------------------------------------
    # an entry status this version does not know: SES may have sent it
    (
        "transports/_ses_bulk.py",
        "entry_error",
        "DeliveryUnknownError",
        "SES answered the unknown",
    ): A,
    # a network error once the request may have been written
    (
        "transports/_ses_bulk.py",
        "_request",
        "DeliveryUnknownError",
        "the connection to SES failed",
    ): A,
    # no outcome recorded for a destination (a bug): never "not sent"
    ("transports/_ses_bulk.py", "_lost", "DeliveryUnknownError", "asyncmailer lost track"): A,
    # SES answered without a result for this entry
    (
        "transports/_ses_bulk.py",
        "_entries_answered",
        "DeliveryUnknownError",
        "SES answered without",
    ): A,
}


def _delivery_classes() -> dict[str, type[DeliveryError]]:
    found: dict[str, type[DeliveryError]] = {}
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, DeliveryError):
            found[name] = obj
    return found


def _message_start(call: ast.Call) -> str:
    if not call.args:
        return ""
    first = call.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        text = first.value
    elif isinstance(first, ast.JoinedStr):
        text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in first.values)
    else:
        text = "<expression>"
    return str(text)


class _Site:
    def __init__(self, key: tuple[str, str, str, str], line: int, call: ast.Call) -> None:
        self.key = key
        self.line = line
        self.call = call


def scan_sites(root: Path = PACKAGE) -> list[_Site]:
    """Every call that builds a DeliveryError (subclass) in the package, errors.py aside."""
    classes = _delivery_classes()
    sites: list[_Site] = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "errors.py" and path.parent == root:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        relative = path.relative_to(root).as_posix()

        def visit(node: ast.AST, function: str, relative: str = relative) -> None:
            for child in ast.iter_child_nodes(node):
                inner = function
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                    inner = child.name
                if isinstance(child, ast.Call):
                    func = child.func
                    name = (
                        func.id
                        if isinstance(func, ast.Name)
                        else func.attr
                        if isinstance(func, ast.Attribute)
                        else ""
                    )
                    if name in classes:
                        key = (relative, function, name, _message_start(child))
                        sites.append(_Site(key, child.lineno, child))
                visit(child, inner)

        visit(tree, "")
    return sites


def _pinned(key: tuple[str, str, str, str]) -> tuple[str, str, str, str] | None:
    """The entry of :data:`SITES` for a site: same place and class, message starting alike."""
    for pinned in SITES:
        if pinned[:3] == key[:3] and key[3].startswith(pinned[3]):
            return pinned
    return None


def check_sites(sites: list[_Site]) -> list[str]:
    """The disagreements between the sites found, :data:`SITES` and the classes."""
    classes = _delivery_classes()
    problems: list[str] = []
    for site in sites:
        file, function, name, start = site.key
        where = f"asyncmailer/{file}:{site.line} ({function})"
        if any(k.arg == "outcome" for k in site.call.keywords):
            problems.append(f"{where}: {name}(..., outcome=...): the class decides the outcome")
        pinned = _pinned(site.key)
        required = SITES[pinned] if pinned is not None else None
        if required is None:
            problems.append(
                f"{where}: {name}({start[:30]!r}...) is not pinned: add it to SITES with the "
                "outcome its situation requires"
            )
        elif classes[name].outcome is not required:
            problems.append(
                f"{where}: {name} is {classes[name].outcome.name}, but this situation is "
                f"{required.name}: raise a class whose outcome is {required.name}"
            )
    return problems


def test_every_raise_site_is_pinned_with_the_outcome_its_situation_requires() -> None:
    sites = scan_sites()
    assert len(sites) >= len(SITES)
    assert check_sites(sites) == []
    stale = set(SITES) - {_pinned(site.key) for site in sites}
    assert not stale, f"pinned sites no longer in the code: {sorted(stale)}"


def test_the_check_catches_a_class_that_contradicts_its_situation(tmp_path: Path) -> None:
    """Introduce a mismatch in a copy of the SMTP mapping: the check names it."""
    source = (PACKAGE / "transports" / "smtp.py").read_text(encoding="utf-8")
    broken = source.replace(
        'return ServiceRefusedError(f"the server refused the session: {detail}", **kwargs)',
        'return ServiceUnavailableError(f"the server refused the session: {detail}", **kwargs)',
    )
    assert broken != source
    (tmp_path / "transports").mkdir()
    (tmp_path / "transports" / "smtp.py").write_text(broken, encoding="utf-8")
    problems = check_sites(scan_sites(tmp_path))
    assert any("ServiceUnavailableError('the server refused the session'" in p for p in problems)

    # The same site pinned but with the wrong class's outcome: named as a contradiction.
    site = (
        "transports/smtp.py",
        "_map_smtp_error",
        "ServiceUnavailableError",
        "the server refused the session",
    )
    SITES[site] = Outcome.FINAL
    try:
        problems = check_sites(scan_sites(tmp_path))
    finally:
        del SITES[site]
    assert any(
        "ServiceUnavailableError is RETRY_SAFE, but this situation is FINAL" in p for p in problems
    )


def test_an_outcome_argument_is_refused() -> None:
    with pytest.raises(TypeError):
        errors.ServiceUnavailableError("x", outcome=Outcome.FINAL)  # type: ignore[call-arg]
    source = "def f():\n    raise ServiceUnavailableError('x', outcome=Outcome.FINAL)\n"
    tree = ast.parse(source)
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call))
    site = _Site(("x.py", "f", "ServiceUnavailableError", "x"), 2, call)
    assert any("the class decides the outcome" in p for p in check_sites([site]))


def test_no_code_assigns_an_outcome() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr == "outcome":
                    offenders.append(f"{path}:{node.lineno}")
    assert offenders == []


# ------------------------------------------------------------------ documented tables


_WORDS = {"final": F, "retry-safe": R, "ambiguous": A}


def test_the_exception_tree_shows_each_class_outcome() -> None:
    doc = errors.__doc__ or ""
    seen = set()
    for line in doc.splitlines():
        match = re.search(r"[├└]── (\w+).*?\s(final|retry-safe|ambiguous)\s*$", line)
        if match:
            name, word = match.groups()
            cls = getattr(errors, name)
            assert cls.outcome is _WORDS[word], f"{name}: tree says {word}"
            seen.add(name)
    assert seen == set(_delivery_classes()), "every delivery error is in the tree with its outcome"


@pytest.mark.parametrize("module", ["transports/smtp.py", "transports/_ses_errors.py"])
def test_the_mapping_tables_agree_with_the_classes(module: str) -> None:
    text = (PACKAGE / module).read_text(encoding="utf-8")
    table = text[: text.index('"""', 3)]
    rows = re.findall(r"(?::class:`)?(\w+Error)`?(?:,| \()\s*(final|retry-safe|ambiguous)", table)
    assert len(rows) >= 8
    for name, word in rows:
        assert getattr(errors, name).outcome is _WORDS[word], f"{module}: {name} documented {word}"


# ------------------------------------------------------------------ behaviour: SES mapping


def _client_error(code: str, message: str = "", status: int = 400) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "r-1"},
        },
        "SendEmail",
    )


def _ses_cases() -> list[Any]:
    from botocore import exceptions as bce

    return [
        (
            _client_error("Throttling", "Maximum sending rate exceeded."),
            "SendingRateExceededError",
            R,
        ),
        (
            _client_error("TooManyRequestsException", "slow down", 429),
            "SendingRateExceededError",
            R,
        ),
        (
            _client_error("Throttling", "Daily message quota exceeded."),
            "DailyQuotaExceededError",
            F,
        ),
        (_client_error("LimitExceededException", "limit"), "DailyQuotaExceededError", F),
        (
            _client_error("MessageRejected", "Email address is not verified: a@x.org"),
            "IdentityNotVerifiedError",
            F,
        ),
        (_client_error("MessageRejected", "content"), "MessageRejectedError", F),
        (_client_error("AccessDeniedException", "no"), "AccessDeniedError", F),
        (_client_error("AccountSendingPausedException", "paused"), "SendingPausedError", F),
        (_client_error("InternalFailure", "oops", 500), "ServiceUnavailableError", R),
        (_client_error("SomethingNew", "?", 400), "DeliveryError", F),
        (bce.ConnectTimeoutError(endpoint_url="https://x"), "ConnectTimeoutError", R),
        (bce.ReadTimeoutError(endpoint_url="https://x"), "DeliveryTimeoutError", A),
        (
            bce.EndpointConnectionError(endpoint_url="https://x", error=socket.gaierror("dns")),
            "ServiceUnavailableError",
            R,
        ),
        (
            bce.EndpointConnectionError(endpoint_url="https://x", error=OSError("x")),
            "DeliveryUnknownError",
            A,
        ),
        (bce.ConnectionClosedError(endpoint_url="https://x"), "DeliveryUnknownError", A),
    ]


@pytest.mark.parametrize(("exc", "expected", "outcome"), _ses_cases())
def test_ses_mapping(exc: Exception, expected: str, outcome: Outcome) -> None:
    from asyncmailer.transports._ses_errors import map_ses_error

    mapped = map_ses_error(exc, action="ses:SendEmail")
    assert type(mapped).__name__ == expected
    assert isinstance(mapped, DeliveryError)
    assert mapped.outcome is outcome


def test_every_ambiguous_error_is_a_delivery_unknown_error() -> None:
    for cls in _delivery_classes().values():
        assert (cls.outcome is A) == issubclass(cls, errors.DeliveryUnknownError), cls
        if cls.outcome is R and cls is not errors.SendAbortedError:
            assert issubclass(cls, errors.ThrottlingError | errors.ServiceUnavailableError), cls
