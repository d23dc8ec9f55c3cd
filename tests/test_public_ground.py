"""asyncmailer uses only its dependencies' public APIs: an AST scan of the package.

Refused anywhere in ``asyncmailer/``:

- importing an ``_underscore`` name, or from an ``_underscore`` module, of anything that
  is not asyncmailer itself (``from botocore.auth import _host_from_url``,
  ``import aiobotocore._helpers``);
- reading an ``_underscore`` attribute of anything but ``self``/``cls`` (or an object of
  our own, through the short allow-list below): ``client._ruleset_resolver``,
  ``getattr(events, "_emitter")``;
- assigning ``__class__`` (swapping an object's class), and assigning attributes on an
  imported dependency module (``botocore.auth.SigV4Auth = ...``).

Dunder names (``__init__``, ``__cause__``...) are public protocol, not private.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "asyncmailer"

#: (file relative to asyncmailer/, attribute) pairs where an ``_underscore`` attribute of
#: an object *we* define is read from outside its class. Each is our own code.
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        # EncodedMessage builds a copy of itself in a classmethod (our own class).
        ("testing/_ses_api.py", "_data"),
        ("testing/_ses_api.py", "_form"),
        ("testing/_ses_api.py", "_decoded"),
        ("testing/_ses_api.py", "_head"),
        # SES templated and bulk sends run through the Transport's own send machinery
        # (slot → gate → grant, drain book-keeping, retry randomness, option checks).
        ("transports/_ses_bulk.py", "_check_open"),
        ("transports/_ses_bulk.py", "_gated"),
        ("transports/_ses_bulk.py", "_tracked"),
        ("transports/_ses_bulk.py", "_merge_options"),
        ("transports/_ses_bulk.py", "_rng"),
    }
)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_own_module(module: str | None, level: int) -> bool:
    return level > 0 or (module or "").split(".")[0] == "asyncmailer"


def violations(source: str, filename: str) -> list[str]:
    """The private accesses in one module's source, as ``file:line: what`` strings."""
    tree = ast.parse(source, filename)
    found: list[str] = []
    imported_modules: set[str] = set()

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "asyncmailer":
                    continue
                imported_modules.add((alias.asname or alias.name).split(".")[0])
                if any(_is_private(part) for part in alias.name.split(".")):
                    report(node, f"import of a private module {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            if _is_own_module(node.module, node.level):
                continue
            parts = (node.module or "").split(".")
            if any(_is_private(part) for part in parts):
                report(node, f"import from a private module {node.module}")
            for alias in node.names:
                if _is_private(alias.name):
                    report(node, f"import of private {node.module}.{alias.name}")
        elif isinstance(node, ast.Attribute):
            if node.attr == "__class__" and isinstance(node.ctx, ast.Store):
                report(node, "assignment to __class__")
            if not _is_private(node.attr):
                continue
            base = node.value
            if isinstance(base, ast.Name) and base.id in {"self", "cls"}:
                continue
            if (
                isinstance(base, ast.Call)
                and isinstance(base.func, ast.Name)
                and base.func.id == "super"
            ):
                continue  # our own base class
            if (filename, node.attr) in ALLOWED:
                continue
            report(node, f"access to private attribute .{node.attr}")
        elif isinstance(node, ast.Call):
            func = node.func
            if (
                isinstance(func, ast.Name)
                and func.id in {"getattr", "setattr", "hasattr", "delattr"}
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
            ):
                name = node.args[1].value
                if _is_private(name) or (func.id == "setattr" and name == "__class__"):
                    report(node, f"{func.id}(..., {name!r})")
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name | ast.Attribute)
                    and _root_name(target.value) in imported_modules
                ):
                    report(node, f"assignment to an attribute of module {_root_name(target)}")
    return found


def _root_name(node: ast.expr) -> str:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else ""


def _sources() -> list[tuple[str, str]]:
    return [
        (str(path.relative_to(PACKAGE)), path.read_text(encoding="utf-8"))
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


def test_the_package_uses_only_public_apis_of_its_dependencies() -> None:
    found = [v for name, source in _sources() for v in violations(source, name)]
    assert found == []


def test_the_allow_list_has_no_stale_entries() -> None:
    sources = dict(_sources())
    for filename, attr in ALLOWED:
        assert f".{attr}" in sources[filename], (filename, attr)


@pytest.mark.parametrize(
    ("snippet", "what"),
    [
        ("from botocore.auth import _host_from_url", "import of private"),
        ("import aiobotocore._helpers", "private module"),
        ("from aiobotocore._endpoint_helpers import x", "private module"),
        ("resolver = client._ruleset_resolver", "private attribute ._ruleset_resolver"),
        ("emitter = getattr(client.meta.events, '_emitter', None)", "getattr(..., '_emitter')"),
        ("emitter.__class__ = Fast", "assignment to __class__"),
        ("import botocore.auth\nbotocore.auth.SigV4Auth = Fast", "attribute of module botocore"),
        ("transport = proto._transport", "private attribute ._transport"),
    ],
)
def test_the_scan_catches_each_kind_of_private_access(snippet: str, what: str) -> None:
    found = violations(snippet, "example.py")
    assert found and what in found[0], found


@pytest.mark.parametrize(
    "snippet",
    [
        "self._client = client",
        "from asyncmailer.transports._grant import holding",
        "from ._grant import holding",
        "exc.__cause__ = other",
        "client.meta.events.register('before-send.sesv2.SendEmail', handler)",
        "import botocore.exceptions\nerror = botocore.exceptions.ClientError",
    ],
)
def test_the_scan_lets_public_and_own_names_through(snippet: str) -> None:
    assert violations(snippet, "example.py") == []


def test_adding_a_private_access_to_the_package_fails_the_rule(tmp_path: Path) -> None:
    # The scan over the real package, with one line added to a real module: it must fail.
    name, source = next((n, s) for n, s in _sources() if n == "transports/_ses_client.py")
    tampered = source + "\n\ndef _peek(client):\n    return client._endpoint\n"
    assert violations(source, name) == []
    assert violations(tampered, name) == [
        f"{name}:{tampered.count(chr(10))}: access to private attribute ._endpoint"
    ]
