"""Email addresses: value objects and parsing.

An :class:`Address` is a display name plus an ``addr-spec``; a :class:`Group` is a named
list of addresses (RFC 5322 ``group``). :func:`parse_addresses` turns everything users pass
as ``to=``, ``cc=``... into these objects::

    >>> parse_addresses('"Doe, John" <j@x.com>, ada@example.com', field="to")
    [Address(name='Doe, John', address='j@x.com'), Address(name='', address='ada@example.com')]

Parsing is strict where a mistake would send mail to the wrong place (a display name
without ``<...>``, a stray ``<``, CR/LF/NUL anywhere) and lenient where intent is clear
(``;`` as a list separator outside a group, empty list items, a group missing its final
``;``). Every failure is an :class:`~asyncmailer.errors.AddressError` naming the field and
the offending text. Parsing runs in linear time, whatever the input.

Control characters (C0 but TAB, DEL, C1 such as NEL, U+2028, U+2029) are refused in
addresses, quoted local parts included. Domains are encoded with IDNA2008 and UTS #46
(non-transitional) by the ``idna`` package: ``b@faß.de`` is ``b@xn--fa-hia.de``; a domain
that the mapping would change beyond case (full-width letters, soft hyphens, an
ideographic full stop) is refused, never silently rewritten.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import idna

from asyncmailer._controls import control_char_error
from asyncmailer.errors import AddressError

__all__ = [
    "Address",
    "AddressLike",
    "AddressesLike",
    "Group",
    "ascii_addr_spec",
    "parse_address",
    "parse_addresses",
]


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox: ``Address("Ada", "ada@example.com")`` is ``Ada <ada@example.com>``.

    ``address`` is stored as given (Unicode domains and local parts allowed); the
    composer IDNA-encodes domains and decides whether SMTPUTF8 is needed.
    """

    #: Display name (may be empty).
    name: str
    #: The ``local@domain`` part.
    address: str

    def __str__(self) -> str:
        return f"{self.name} <{self.address}>" if self.name else self.address


@dataclass(frozen=True, slots=True)
class Group:
    """A named group of mailboxes: ``Group("Team", (Address(...), ...))`` → ``Team: a, b;``."""

    #: The group's display name.
    name: str
    #: The group's members (may be empty, as in ``undisclosed-recipients:;``).
    members: tuple[Address, ...] = ()


#: Anything accepted where one address is expected.
AddressLike = str | tuple[str, str] | Address
#: Anything accepted where a list of addresses is expected.
AddressesLike = AddressLike | Group | Sequence[AddressLike | Group]

# ----------------------------------------------------------------------- addr-spec

# RFC 5322 atext, plus non-ASCII characters (RFC 6532 UTF8-non-ascii) other than controls.
_NON_ASCII = "\u00a0-\u2027\u202a-\ud7ff\ue000-\U0010ffff"
_ATEXT = rf"A-Za-z0-9!#$%&'*+\-/=?^_`{{|}}~{_NON_ASCII}"
_DOT_ATOM = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
# A quoted local part (RFC 5321 Quoted-string, RFC 6531 non-ASCII): printable ASCII and
# spaces, and quoted-pairs of printable ASCII; never TAB (no SMTP command may carry it).
_QUOTED_LOCAL = re.compile(rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_NON_ASCII}]|\\[\x20-\x7e])*"')
_LDH_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_DOMAIN_LITERAL = re.compile(r"\[[\x21-\x5a\x5e-\x7e]*\]")
# The common case, checked in one regex: plain ASCII dot-atom@hostname.
_SIMPLE_ADDR = re.compile(
    r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?"
)


def _bad(field: str, text: str, why: str) -> AddressError:
    return AddressError(f"{field}: invalid address {text!r}: {why}", field=field, text=text)


def _idna_domain(domain: str) -> str:
    """The A-label form of a Unicode ``domain`` (IDNA2008, UTS #46 non-transitional).

    Raises ``ValueError`` with the reason when ``idna`` refuses the domain, or when the
    UTS #46 mapping would change it beyond case folding (full-width letters, a soft hyphen,
    an ideographic full stop...): sending elsewhere than what the caller wrote (and
    checked against an allow list) must never happen silently.
    """
    try:
        mapped = idna.uts46_remap(domain, std3_rules=False, transitional=False)
        encoded = idna.encode(domain, uts46=True, transitional=False).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"not a valid IDNA2008 domain ({exc})") from None
    if mapped != domain.lower():
        raise ValueError(
            f"the domain is written differently from its normalised form {mapped!r} "
            "(UTS #46 mapping); write it in that form"
        )
    return encoded


@functools.lru_cache(maxsize=1024)
def _ascii_domain(domain: str) -> tuple[str | None, str]:
    """IDNA-encode ``domain``: (A-label domain, "") or (None, why it is invalid)."""
    if domain.startswith("["):
        if _DOMAIN_LITERAL.fullmatch(domain):
            return domain, ""
        return None, "invalid domain literal"
    if len(domain) > 253:  # an A-label is never shorter than its U-label
        return None, "domain longer than 253 characters"
    try:
        if not domain.isascii():
            domain = _idna_domain(domain)
        elif "xn--" in domain.lower():
            # A-labels written by the caller must decode to a valid IDNA2008 name
            _idna_domain(idna.decode(domain))
    except ValueError as exc:
        return None, str(exc)
    except idna.IDNAError as exc:
        return None, f"not a valid IDNA2008 domain ({exc})"
    labels = domain.split(".")
    if len(domain) > 253 or not all(_LDH_LABEL.fullmatch(label) for label in labels):
        return None, "invalid domain"
    return domain, ""


def _split_addr_spec(address: str, field: str) -> tuple[str, str]:
    """Validate ``local@domain`` and return (local, IDNA domain)."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise _bad(field, address, "expected local@domain")
    if not (_DOT_ATOM.fullmatch(local) or _QUOTED_LOCAL.fullmatch(local)):
        why = control_char_error(local)
        raise _bad(field, address, f"{why} in the local part" if why else "invalid local part")
    if len(local.encode("utf-8")) > 64:
        raise _bad(field, address, "local part longer than 64 octets")
    ascii_domain, why = _ascii_domain(domain)
    if ascii_domain is None:
        raise _bad(field, address, why)
    return local, ascii_domain


# Checked addresses (and parsed strings below) are remembered: transactional mail repeats
# its sender, and a message's envelope and headers check the same addresses. Only
# successes are stored (an invalid input is parsed, and raises, every time), only for
# plain ``str`` keys, and the caches are emptied when full.
_SPEC_CACHE: dict[str, str] = {}
_SPEC_CACHE_MAX = 4096


def ascii_addr_spec(address: str, *, field: str) -> str:
    """Return ``address`` with its domain IDNA-encoded, after validating its syntax.

    ``ascii_addr_spec("josé@bücher.example", field="to")`` is ``"josé@xn--bcher-kva.example"``:
    the local part is kept (a non-ASCII local part needs SMTPUTF8, which the caller
    decides). Raises :class:`~asyncmailer.errors.AddressError` for anything that is not an
    ``addr-spec``.
    """
    if type(address) is str:
        cached = _SPEC_CACHE.get(address)
        if cached is not None:
            return cached
        result = _ascii_addr_spec(address, field)
        if len(_SPEC_CACHE) >= _SPEC_CACHE_MAX:
            _SPEC_CACHE.clear()
        _SPEC_CACHE[address] = result
        return result
    return _ascii_addr_spec(address, field)


def _ascii_addr_spec(address: str, field: str) -> str:
    if _SIMPLE_ADDR.fullmatch(address) and ".." not in address:
        at = address.index("@")
        domain = address[at + 1 :]
        if (
            at <= 64
            and len(domain) <= 253
            and "--" not in domain  # A-labels ("xn--") are checked on the slow path
            and all(_LDH_LABEL.fullmatch(label) for label in domain.split("."))
        ):
            return address
    local, domain = _split_addr_spec(address, field)
    return f"{local}@{domain}"


def _check_address(address: str, field: str) -> str:
    if not isinstance(address, str):
        raise _bad(field, repr(address), "an address must be a string")
    ascii_addr_spec(address, field=field)
    return address


_NAME_BAD = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def _check_name(name: str, field: str) -> str:
    if not isinstance(name, str):
        raise _bad(field, repr(name), "a display name must be a string")
    if _NAME_BAD.search(name):
        raise _bad(
            field, name, "a display name cannot contain control characters (CR, LF, NUL, TAB...)"
        )
    return name


# ------------------------------------------------------------------------- parsing

# Fast paths for the common shapes. Only ASCII whitespace counts as whitespace (``\s``
# would also swallow NEL, U+2028... silently). Every quantifier here is followed by
# something it cannot match, so a failed match backtracks in linear time: no
# ``[ ...]*? *`` pair whose ambiguous split makes "a" + " " * n + "x" quadratic.
_FAST_BARE = re.compile(r"[ \t\r\n]*([^\s\"(),:;<>@\\\[\]]+@[^\s\"(),:;<>@\\\[\]]+)[ \t\r\n]*")
_FAST_NAMED = re.compile(
    r"[ \t\r\n]*((?:[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]+(?: +[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]+)*)?)"
    r"[ \t\r\n]*<([^\s\"(),:;<>@\\]+@[^\s\"(),:;<>@\\]+)>[ \t\r\n]*"
)

_WS = re.compile(r"[ \t\r\n]+")
_ATOM = re.compile(r"[^\s\"(),:;<>\\]+")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_ANGLE = re.compile(r'<((?:[^<>"]|"(?:[^"\\]|\\.)*")*)>', re.DOTALL)
_UNQUOTE = re.compile(r"\\(.)", re.DOTALL)


def _comment_end(text: str, start: int, field: str) -> int:
    """Index just past the (possibly nested) comment starting at ``text[start] == "("``."""
    depth = 0
    i = start
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise _bad(field, text, "unterminated comment")


# Token kinds: "a" atom, "q" quoted string, "c" comment, "<" angle address, "w" whitespace.
_Token = tuple[str, str, str]  # (kind, value, raw)


def _mailbox(tokens: list[_Token], text: str, field: str) -> Address | None:
    """Build one mailbox from its tokens; None for an empty list item."""
    while tokens and tokens[-1][0] == "w":
        tokens.pop()
    while tokens and tokens[0][0] == "w":
        tokens.pop(0)
    if not tokens:
        return None
    comments = [value.strip() for kind, value, _ in tokens if kind == "c"]
    angles = [i for i, token in enumerate(tokens) if token[0] == "<"]
    if len(angles) > 1:
        raise _bad(field, text, "more than one <address> in one mailbox")
    if angles:
        at = angles[0]
        if any(kind not in "cw" for kind, _, _ in tokens[at + 1 :]):
            raise _bad(field, text, "text after <address>")
        words = [value for kind, value, _ in tokens[:at] if kind in "aq"]
        name = " ".join(words)
        if not name and comments:
            name = " ".join(c for c in comments if c)
        address = tokens[at][1].strip()
        if not address:
            raise _bad(field, text, "empty <>")
        return Address(_check_name(name, field), _check_address(address, field))
    parts = [token for token in tokens if token[0] != "c"]
    # Without <...> the mailbox is a bare addr-spec: adjacent atoms/quoted strings only.
    while parts and parts[-1][0] == "w":
        parts.pop()
    while parts and parts[0][0] == "w":
        parts.pop(0)
    if any(kind == "w" for kind, _, _ in parts):
        raise _bad(field, text, "a display name needs the address in <...>")
    address = "".join(raw for _, _, raw in parts)
    if not address:
        raise _bad(field, text, "no address")
    return Address(" ".join(c for c in comments if c), _check_address(address, field))


def _parse_string(text: str, field: str) -> list[Address | Group]:
    fast = _FAST_BARE.fullmatch(text)
    if fast:
        return [Address("", _check_address(fast.group(1), field))]
    fast = _FAST_NAMED.fullmatch(text)
    if fast:
        return [Address(_WS.sub(" ", fast.group(1)), _check_address(fast.group(2), field))]
    if "\x00" in text:
        raise _bad(field, text, "NUL character")
    result: list[Address | Group] = []
    group_name: str | None = None
    members: list[Address] = []
    tokens: list[_Token] = []
    item_start = 0

    def finish(end: int) -> None:
        item = text[item_start:end]
        mailbox = _mailbox(tokens, item, field)
        tokens.clear()
        if mailbox is None:
            return
        if group_name is not None:
            members.append(mailbox)
        else:
            result.append(mailbox)

    pos = 0
    n = len(text)
    while pos < n:
        ch = text[pos]
        match = None
        if ch in " \t\r\n":
            match = _WS.match(text, pos)
            assert match is not None
            tokens.append(("w", " ", match.group()))
        elif ch == '"':
            match = _QUOTED.match(text, pos)
            if match is None:
                raise _bad(field, text, "unterminated quoted string")
            value = _UNQUOTE.sub(r"\1", match.group(1))
            tokens.append(("q", value, match.group()))
        elif ch == "(":
            end = _comment_end(text, pos, field)
            tokens.append(("c", _UNQUOTE.sub(r"\1", text[pos + 1 : end - 1]), text[pos:end]))
            pos = end
            continue
        elif ch == "<":
            match = _ANGLE.match(text, pos)
            if match is None:
                raise _bad(field, text[item_start:], "unbalanced '<'")
            tokens.append(("<", match.group(1), match.group()))
        elif ch == ",":
            finish(pos)
            item_start = pos + 1
        elif ch == ":":
            if group_name is not None or any(kind == "<" for kind, _, _ in tokens):
                raise _bad(field, text, "unexpected ':'")
            words = [value for kind, value, _ in tokens if kind in "aq"]
            if any("@" in value for kind, value, _ in tokens if kind == "a"):
                raise _bad(field, text, "a group name cannot contain '@'")
            group_name = " ".join(words)
            tokens.clear()
            item_start = pos + 1
        elif ch == ";":
            finish(pos)
            item_start = pos + 1
            if group_name is not None:
                result.append(Group(group_name, tuple(members)))
                group_name = None
                members = []
        else:
            match = _ATOM.match(text, pos)
            if match is None:
                raise _bad(field, text, f"unexpected {ch!r}")
            tokens.append(("a", match.group(), match.group()))
        pos = match.end() if match is not None else pos + 1
    finish(n)
    if group_name is not None:
        result.append(Group(group_name, tuple(members)))
    return result


# Strings longer than this are parsed every time (the cache would keep them alive).
_PARSE_CACHE_TEXT = 512
_PARSE_CACHE: dict[str, tuple[Address | Group, ...]] = {}
_PARSE_CACHE_MAX = 2048


def _parse_cached(text: str, field: str) -> list[Address | Group]:
    """:func:`_parse_string`, remembering what short plain strings parse to."""
    if type(text) is not str or len(text) > _PARSE_CACHE_TEXT:
        return _parse_string(text, field)
    cached = _PARSE_CACHE.get(text)
    if cached is None:
        cached = tuple(_parse_string(text, field))  # raises for invalid input: not stored
        if len(_PARSE_CACHE) >= _PARSE_CACHE_MAX:
            _PARSE_CACHE.clear()
        _PARSE_CACHE[text] = cached
    return list(cached)


def _parse_one(value: object, field: str, allow_group: bool) -> list[Address | Group]:
    if isinstance(value, str):
        return _parse_cached(value, field)
    if isinstance(value, Address):
        return [Address(_check_name(value.name, field), _check_address(value.address, field))]
    if isinstance(value, tuple) and len(value) == 2:
        name, address = value
        return [Address(_check_name(name, field), _check_address(address, field))]
    if isinstance(value, Group) and allow_group:
        members = tuple(
            Address(_check_name(m.name, field), _check_address(m.address, field))
            if isinstance(m, Address)
            else _not_an_address(m, field)
            for m in value.members
        )
        return [Group(_check_name(value.name, field), members)]
    raise _bad(field, repr(value), f"cannot use a {type(value).__name__} as an address")


def _not_an_address(value: object, field: str) -> Address:
    raise _bad(field, repr(value), "group members must be Address objects")


def parse_addresses(value: object, *, field: str) -> list[Address | Group]:
    """Parse what ``to=``, ``cc=``... accept into :class:`Address`/:class:`Group` objects.

    Accepts ``"Name <a@b.c>"``, comma-separated strings (quotes and comments respected:
    ``'"Doe, John" <j@x.com>'``), groups (``"Team: a@x.com, b@y.com;"``), ``(name, address)``
    tuples, :class:`Address` and :class:`Group` objects, and lists of all these. ``None``
    gives an empty list. Raises :class:`~asyncmailer.errors.AddressError` naming ``field``.

    Example::

        parse_addresses(["ada@example.com", ("Bob", "bob@example.com")], field="to")
    """
    if value is None:
        return []
    if isinstance(value, (str, Address, Group, tuple)) and not (
        isinstance(value, tuple) and value and not isinstance(value[0], str)
    ):
        return _parse_one(value, field, True)
    if isinstance(value, Sequence):
        result: list[Address | Group] = []
        for item in value:
            result.extend(_parse_one(item, field, True))
        return result
    raise _bad(field, repr(value), f"cannot use a {type(value).__name__} as addresses")


def parse_address(value: object, *, field: str) -> Address:
    """Parse exactly one mailbox (``from_``, ``sender``): a string, tuple or :class:`Address`.

    ``parse_address("Shop <shop@example.com>", field="from_")`` is
    ``Address("Shop", "shop@example.com")``. A group, a list, or a string holding
    several addresses raises :class:`~asyncmailer.errors.AddressError`.
    """
    parsed = _parse_one(value, field, False) if value is not None else []
    if len(parsed) != 1 or not isinstance(parsed[0], Address):
        raise _bad(field, value if isinstance(value, str) else repr(value), "expected one address")
    return parsed[0]
