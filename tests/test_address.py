"""Address parsing: strings, lists, groups, tuples, objects, IDNA, and typed errors."""

from __future__ import annotations

import pytest

from asyncmailer.address import Address, Group, ascii_addr_spec, parse_address, parse_addresses
from asyncmailer.errors import AddressError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a@b.c", [Address("", "a@b.c")]),
        ("  a@b.c  ", [Address("", "a@b.c")]),
        ("Ada <ada@example.com>", [Address("Ada", "ada@example.com")]),
        ("Ada  Lovelace <ada@example.com>", [Address("Ada Lovelace", "ada@example.com")]),
        ('"Doe, John" <j@x.com>', [Address("Doe, John", "j@x.com")]),
        (
            '"Doe, John" <j@x.com>, b@y.com',
            [Address("Doe, John", "j@x.com"), Address("", "b@y.com")],
        ),
        ('"a \\"q\\" b" <q@x.com>', [Address('a "q" b', "q@x.com")]),
        ("j@x.com (John Doe)", [Address("John Doe", "j@x.com")]),
        ("(Outer (nested)) <n@x.com>", [Address("Outer (nested)", "n@x.com")]),
        ("Ada <ada@example.com> (the first)", [Address("Ada", "ada@example.com")]),
        ("a@x.com; b@y.com", [Address("", "a@x.com"), Address("", "b@y.com")]),
        ("a@x.com,, ,b@y.com,", [Address("", "a@x.com"), Address("", "b@y.com")]),
        ('"john doe"@x.com', [Address("", '"john doe"@x.com')]),
        ("josé@bücher.example", [Address("", "josé@bücher.example")]),
        ("<bare@x.com>", [Address("", "bare@x.com")]),
        ("J. R. <jr@x.com>", [Address("J. R.", "jr@x.com")]),
    ],
)
def test_parse_strings(text: str, expected: list[Address]) -> None:
    assert parse_addresses(text, field="to") == expected


def test_groups() -> None:
    parsed = parse_addresses("Team: a@x.com, Bob <b@y.com>;, c@z.com", field="to")
    assert parsed == [
        Group("Team", (Address("", "a@x.com"), Address("Bob", "b@y.com"))),
        Address("", "c@z.com"),
    ]
    assert parse_addresses("undisclosed-recipients:;", field="to") == [
        Group("undisclosed-recipients", ())
    ]
    # the final ';' may be missing
    assert parse_addresses("Team: a@x.com", field="to") == [
        Group("Team", (Address("", "a@x.com"),))
    ]


def test_non_string_inputs() -> None:
    group = Group("G", (Address("", "g@x.com"),))
    parsed = parse_addresses(
        ["a@x.com", ("Bob", "b@y.com"), Address("C", "c@z.com"), group, "D <d@w.com>, e@v.com"],
        field="cc",
    )
    assert parsed == [
        Address("", "a@x.com"),
        Address("Bob", "b@y.com"),
        Address("C", "c@z.com"),
        group,
        Address("D", "d@w.com"),
        Address("", "e@v.com"),
    ]
    assert parse_addresses(("Bob", "b@y.com"), field="to") == [Address("Bob", "b@y.com")]
    assert parse_addresses(None, field="to") == []
    assert parse_addresses((Address("", "a@x.com"),), field="to") == [Address("", "a@x.com")]


def test_parse_address_single() -> None:
    assert parse_address("Shop <shop@example.com>", field="from_") == Address(
        "Shop", "shop@example.com"
    )
    assert parse_address(("Shop", "shop@example.com"), field="from_") == Address(
        "Shop", "shop@example.com"
    )
    with pytest.raises(AddressError) as info:
        parse_address("a@x.com, b@y.com", field="from_")
    assert info.value.field == "from_"
    with pytest.raises(AddressError):
        parse_address("Team: a@x.com;", field="from_")
    with pytest.raises(AddressError):
        parse_address(Group("G"), field="from_")


@pytest.mark.parametrize(
    "text",
    [
        "John Doe john@x.com",  # display name without <>
        "no-at-sign",
        "a@",
        "@x.com",
        "a@b@",
        "a..b@x.com",
        ".a@x.com",
        "a@-x.com",
        "a@x..com",
        "a b@x.com",
        "<a@x.com",
        "Ada <a@x.com> junk",
        "<a@x.com> <b@x.com>",
        '"unterminated <a@x.com>',
        "(unterminated a@x.com",
        "a@x.com\x00",
        "a@x.com\r\nBcc: evil@x.com",
        "Team: a@x.com; Other: b@y.com: c@z.com;",
        "a" * 65 + "@x.com",
        "a@" + "x" * 64 + ".com",
        "a@xn--.com",
        "<>",
    ],
)
def test_invalid_strings(text: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_addresses(text, field="to")
    assert info.value.field == "to"
    assert info.value.text


@pytest.mark.parametrize(
    "value",
    [
        ("Bob", "Bob <b@x.com>"),
        ("Bob", "b@x.com\r\nBcc: x@y.com"),
        (1, "b@x.com"),
        Address("Bob", "not an address"),
        42,
        [42],
        Group("G", ("a@x.com",)),  # type: ignore[arg-type]
    ],
)
def test_invalid_objects(value: object) -> None:
    with pytest.raises(AddressError) as info:
        parse_addresses(value, field="bcc")
    assert info.value.field == "bcc"


@pytest.mark.parametrize("name", ["a\r\nBcc: x@y.com", "a\nb", "a\rb", "nul\x00"])
def test_crlf_nul_in_display_name_refused(name: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_addresses((name, "a@x.com"), field="to")
    assert info.value.field == "to"
    with pytest.raises(AddressError):
        parse_addresses(Address(name, "a@x.com"), field="to")
    # in a string, CRLF between tokens is folding whitespace, not part of the name
    assert parse_addresses("Ada\r\n <a@x.com>", field="to") == [Address("Ada", "a@x.com")]


def test_idna() -> None:
    assert ascii_addr_spec("josé@bücher.example", field="to") == "josé@xn--bcher-kva.example"
    assert ascii_addr_spec("a@EXAMPLE.com", field="to") == "a@EXAMPLE.com"
    assert ascii_addr_spec("a@[127.0.0.1]", field="to") == "a@[127.0.0.1]"
    with pytest.raises(AddressError) as info:
        ascii_addr_spec("a@" + "ü" * 70 + ".com", field="to")
    assert info.value.text.startswith("a@")


def test_error_names_the_offending_text() -> None:
    with pytest.raises(AddressError) as info:
        parse_addresses(["ok@x.com", "bad address"], field="reply_to")
    assert info.value.field == "reply_to"
    assert "bad address" in info.value.text
    assert "reply_to" in str(info.value)


# -- the parse and addr-spec caches: equal results, errors raised every time ---------------


def test_parsed_strings_are_cached_as_equal_fresh_lists() -> None:
    text = '"Doe, John" <j@x.com>, Team: a@y.org, b@z.net;'
    first = parse_addresses(text, field="to")
    first.append(Address("", "mutated@x.com"))  # the caller's list, not the cache's
    second = parse_addresses(text, field="to")
    assert second == [
        Address("Doe, John", "j@x.com"),
        Group("Team", (Address("", "a@y.org"), Address("", "b@z.net"))),
    ]
    assert second is not first
    assert parse_address("Shop <shop@example.com>", field="from_") == Address(
        "Shop", "shop@example.com"
    )
    assert parse_address("Shop <shop@example.com>", field="from_") == Address(
        "Shop", "shop@example.com"
    )


def test_the_caches_never_hide_an_error() -> None:
    from asyncmailer.errors import AddressError

    for field in ("to", "cc", "to"):
        with pytest.raises(AddressError) as info:
            parse_addresses("Name without angle a@b.com", field=field)
        assert info.value.field == field
        with pytest.raises(AddressError) as info:
            ascii_addr_spec("a..b@x.com", field=field)
        assert info.value.field == field
    # a group where one address is expected: the cached parse of the string is still checked
    parse_addresses("Team: a@y.org;", field="to")
    with pytest.raises(AddressError):
        parse_address("Team: a@y.org;", field="from_")
    # valid, then a near miss
    assert ascii_addr_spec("a@x.com", field="to") == "a@x.com"
    with pytest.raises(AddressError):
        ascii_addr_spec("a@x.com\n", field="to")
    assert ascii_addr_spec("josé@bücher.example", field="to") == "josé@xn--bcher-kva.example"
    assert ascii_addr_spec("josé@bücher.example", field="to") == "josé@xn--bcher-kva.example"


def test_the_caches_stay_bounded() -> None:
    from asyncmailer import address

    for i in range(address._PARSE_CACHE_MAX + 10):
        parse_addresses(f"user{i}@example.com", field="to")
    assert len(address._PARSE_CACHE) <= address._PARSE_CACHE_MAX
    assert len(address._SPEC_CACHE) <= address._SPEC_CACHE_MAX
    long_text = ", ".join(f"u{i}@example.com" for i in range(50))
    assert len(long_text) > address._PARSE_CACHE_TEXT
    assert len(parse_addresses(long_text, field="to")) == 50
    assert long_text not in address._PARSE_CACHE
