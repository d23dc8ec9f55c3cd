"""Properties of ``asyncmailer bulk``'s input handling: recipient cells and template escaping.

A recipient cell is built from known parts (mailboxes, groups, separators, display names
with commas and semicolons inside quotes), so the test knows how many mailboxes it names
without parsing it: exactly one mailbox is sent to that one address, anything else is a
failed row and sends nothing. Row values with HTML metacharacters are escaped in the HTML
body and left alone in the text body and the subject.
"""

from __future__ import annotations

import asyncio
import csv
import html
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncmailer._cli._bulk import CSVRows, run_bulk
from asyncmailer._cli._render import Templates
from asyncmailer._cli._results import load_results
from asyncmailer.transports.memory import MemoryTransport

pytest.importorskip("jinja2")

SENDER = "Shop <shop@example.com>"


@dataclass(frozen=True)
class Cell:
    """A recipient cell and what it names."""

    text: str
    #: The addr-specs it names, in order (group members included).
    addresses: tuple[str, ...]
    #: True when it holds a group (even an empty one): never a single mailbox.
    has_group: bool

    @property
    def single(self) -> str | None:
        """The one mailbox's addr-spec, or None when the cell does not name exactly one."""
        if self.has_group or len(self.addresses) != 1:
            return None
        return self.addresses[0]


atoms = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)
addr_specs = st.builds(
    "{}@{}.{}".format, atoms, st.sampled_from(["x", "y", "z", "example"]), st.just("org")
)
# Display names whose separators are protected by quotes or a comment: one mailbox each.
quoted_names = st.text('abc ,;:<>@()"\\', min_size=1, max_size=8).map(
    lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
)


@st.composite
def mailboxes(draw: st.DrawFn) -> tuple[str, str]:
    spec = draw(addr_specs)
    form = draw(st.sampled_from(["bare", "angle", "word", "quoted", "comment"]))
    if form == "bare":
        return spec, spec
    if form == "angle":
        return f"<{spec}>", spec
    if form == "word":
        return f"{draw(atoms)} {draw(atoms)} <{spec}>", spec
    if form == "quoted":
        return f"{draw(quoted_names)} <{spec}>", spec
    return f"{spec} ({draw(atoms)}, {draw(atoms)}; x)", spec


separators = st.sampled_from([",", ", ", " ,", ";", "; ", " ; ", ",\t"])


@st.composite
def cells(draw: st.DrawFn) -> Cell:
    parts: list[str] = []
    addresses: list[str] = []
    has_group = False
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 3)) == 0:
            members = draw(st.lists(mailboxes(), max_size=2))
            inner = draw(separators).join(text for text, _ in members)
            parts.append(f"{draw(atoms)}: {inner};")
            addresses.extend(spec for _, spec in members)
            has_group = True
        else:
            text, spec = draw(mailboxes())
            parts.append(text)
            addresses.append(spec)
    text = draw(separators).join(parts)
    if draw(st.booleans()):
        text += draw(separators)  # a trailing separator adds no mailbox
    return Cell(text, tuple(addresses), has_group)


def write_rows(path: Path, cells: list[Cell]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "email", "name"])
        for index, cell in enumerate(cells):
            writer.writerow([f"r{index}", cell.text, "N"])


async def bulk(directory: Path, cells: list[Cell]) -> MemoryTransport:
    write_rows(directory / "r.csv", cells)
    (directory / "t.txt").write_text("Hi {{ name }}")
    templates = Templates.load(subject="S", text_path=directory / "t.txt", html_path=None)
    async with MemoryTransport() as outbox:
        await run_bulk(
            outbox, CSVRows(directory / "r.csv"), templates, directory / "res.csv", sender=SENDER
        )
    return outbox


@given(st.lists(cells(), min_size=1, max_size=4))
def test_a_row_is_sent_to_its_one_mailbox_or_not_at_all(row_cells: list[Cell]) -> None:
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        outbox = asyncio.run(bulk(directory, row_cells))
        records = load_results(directory / "res.csv")
    expected = [(f"r{i}", c.single) for i, c in enumerate(row_cells) if c.single is not None]
    assert [m.envelope.to for m in outbox] == [(spec,) for _, spec in expected]
    assert [m.to for m in outbox] == [(spec,) for _, spec in expected]
    for index, cell in enumerate(row_cells):
        record = records[f"r{index}"]
        if cell.single is None:
            assert record.status == "failed", cell
            assert record.error.startswith("AddressError: "), record
        else:
            assert record.status == "sent", (cell, record)


# A name as a web form would deliver it: HTML metacharacters, entities, quotes, Unicode.
names = st.text(
    st.sampled_from(list("<>&\"'/=; ")) | st.characters(codec="utf-8", exclude_categories=["Cs"]),
    max_size=30,
) | st.sampled_from(["<script>alert(1)</script>", "&lt;b&gt;", '"><img src=x onerror=y>'])


def templates(directory: Path) -> Templates:
    (directory / "body.html").write_text("<p>{{ name }}</p>", encoding="utf-8")
    (directory / "body.txt").write_text("{{ name }}", encoding="utf-8")
    return Templates.load(
        subject="{{ name }}",
        text_path=directory / "body.txt",
        html_path=directory / "body.html",
    )


def test_script_in_a_value_is_escaped_in_html_but_not_in_text_or_subject(tmp_path: Path) -> None:
    rendered = templates(tmp_path).render({"name": "<script>alert('x')</script>"})
    assert rendered.html == "<p>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</p>"
    assert rendered.text == "<script>alert('x')</script>"
    assert rendered.subject == "<script>alert('x')</script>"


@given(names)
def test_values_are_escaped_in_html_only(name: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        rendered = templates(Path(directory)).render({"name": name})
    assert rendered.html is not None
    assert rendered.html.startswith("<p>") and rendered.html.endswith("</p>")
    inner = rendered.html[3:-4]
    assert not set(inner) & set("<>\"'")  # no markup and no way out of an attribute
    assert html.unescape(inner) == name  # every & is escaped too, so this is exact
    assert rendered.text == name
    assert rendered.subject == " ".join(name.split())
