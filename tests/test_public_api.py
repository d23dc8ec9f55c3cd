"""The public API is declared, documented and pinned: changing it must be deliberate."""

from __future__ import annotations

import importlib
import inspect

import pytest

import asyncmailer

EXPECTED = {
    "asyncmailer": [
        "AWSClientSettings",
        "Address",
        "Attachment",
        "ComposedMessage",
        "Credentials",
        "DKIMSigner",
        "Envelope",
        "FileTransport",
        "Group",
        "IcalEvent",
        "Limits",
        "ListHeaders",
        "ListLink",
        "LocalRateLimiter",
        "MemoryTransport",
        "Message",
        "MessageFields",
        "PreparedHeader",
        "QuotaPolicy",
        "RateLimiter",
        "RedisRateLimiter",
        "RetryPolicy",
        "SESTransport",
        "SMTPPool",
        "SMTPTransport",
        "SendResult",
        "Suppression",
        "TLSSettings",
        "Transport",
        "TransportOptions",
        "TransportState",
        "compose",
        "compose_sync",
        "errors",
    ],
}

MODULES = [
    "asyncmailer",
    "asyncmailer.errors",
    "asyncmailer.fields",
    "asyncmailer.options",
    "asyncmailer.limits",
    "asyncmailer.transports",
    "asyncmailer.testing",
    "asyncmailer.retry",
    "asyncmailer.message",
    "asyncmailer.result",
    "asyncmailer.address",
    "asyncmailer.mime",
    "asyncmailer.dkim",
    "asyncmailer.transports.smtp",
    "asyncmailer.transports.memory",
    "asyncmailer.transports.file",
    "asyncmailer.transports.ses",
    "asyncmailer.limits.redis",
    "asyncmailer.cli",
    "asyncmailer.templates",
]


def test_root_exports_are_pinned() -> None:
    assert asyncmailer.__all__ == EXPECTED["asyncmailer"]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_resolvable(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)

    # ruff's RUF022 order: SCREAMING_CASE constants, then CamelCase, then the rest.
    def key(attr: str) -> tuple[int, str]:
        rank = 0 if attr.isupper() else 1 if attr[:1].isupper() else 2
        return (rank, attr)

    assert exported == sorted(exported, key=key), f"{name}.__all__ is not sorted"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr} is listed but missing"


@pytest.mark.parametrize("name", MODULES)
def test_every_public_name_is_documented(name: str) -> None:
    module = importlib.import_module(name)
    assert inspect.getdoc(module), f"{name} has no module docstring"
    for attr in module.__all__:
        obj = getattr(module, attr)
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj):
            assert inspect.getdoc(obj), f"{name}.{attr} has no docstring"
            if inspect.isclass(obj):
                for member_name, member in vars(obj).items():
                    if member_name.startswith("_") or not callable(member):
                        continue
                    assert inspect.getdoc(member), f"{name}.{attr}.{member_name} has no docstring"


def test_error_tree_has_one_root() -> None:
    from asyncmailer import errors

    for attr in errors.__all__:
        obj = getattr(errors, attr)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            assert issubclass(obj, errors.MailError), attr
