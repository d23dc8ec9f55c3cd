"""docs/api.md lists every public name once, where it is defined; errors in tree order."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import asyncmailer
from asyncmailer import errors

API = Path(__file__).resolve().parent.parent / "docs" / "api.md"

#: Modules whose whole ``__all__`` is public API documented on that page.
MODULES = [
    "asyncmailer.message",
    "asyncmailer.fields",
    "asyncmailer.address",
    "asyncmailer.result",
    "asyncmailer.transports.base",
    "asyncmailer.transports.ses",
    "asyncmailer.transports.smtp",
    "asyncmailer.transports.memory",
    "asyncmailer.transports.file",
    "asyncmailer.options",
    "asyncmailer.limits.base",
    "asyncmailer.limits.local",
    "asyncmailer.limits.redis",
    "asyncmailer.retry",
    "asyncmailer.dkim",
    "asyncmailer.errors",
]


def documented() -> list[tuple[str, str]]:
    """(module, member) for every ``- member`` under a ``::: module`` block."""
    entries: list[tuple[str, str]] = []
    module = ""
    for line in API.read_text(encoding="utf-8").splitlines():
        block = re.match(r"::: ([\w.]+)", line)
        if block:
            module = block.group(1)
            continue
        member = re.match(r"\s+- (\w+)$", line)
        if member and module:
            entries.append((module, member.group(1)))
    return entries


def test_every_public_name_is_documented_once_where_it_is_defined() -> None:
    entries = documented()
    names = [name for _, name in entries]
    assert len(names) == len(set(names)), "a name is documented twice"
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            assert (module_name, name) in entries, f"{module_name}.{name} is not in docs/api.md"
    for module_name, name in entries:
        assert hasattr(importlib.import_module(module_name), name), f"{module_name}.{name}"
    for name in asyncmailer.__all__:
        if name != "errors":
            assert name in names, f"asyncmailer.{name} is not in docs/api.md"


def test_errors_are_documented_in_the_order_of_the_tree() -> None:
    tree = ["MailError", *re.findall(r"[├└]── (\w+)", errors.__doc__ or "")]
    listed = [name for module, name in documented() if module == "asyncmailer.errors"]
    assert listed == ["Outcome", *tree]
    assert sorted(listed) == sorted(errors.__all__)
