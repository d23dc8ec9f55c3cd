"""A griffe extension for the API reference: Sphinx-style docstrings read as Markdown.

The docstrings use reST roles (``:class:`~asyncmailer.Message```) and ``Example::``
blocks. mkdocstrings renders Markdown, so the roles become inline code (``Message``) and
``::`` a plain colon; the indented block after it is already a Markdown code block.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|mod|exc|obj|const):`(~?)([^`]+)`")
_DOUBLE_BACKTICKS = re.compile(r"``([^`]+)``")
_LITERAL_BLOCK = re.compile(r"(?<=\S)::$", re.MULTILINE)


def _role(match: re.Match[str]) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def markdown(text: str) -> str:
    """Turn the reST bits our docstrings use into Markdown."""
    text = _ROLE.sub(_role, text)
    text = _DOUBLE_BACKTICKS.sub(r"`\1`", text)
    return _LITERAL_BLOCK.sub(":", text)


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring once the object tree is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
