"""Jinja2 templates of ``asyncmailer bulk``, rendered in a sandbox for each CSV row.

Templates run in :class:`jinja2.sandbox.SandboxedEnvironment` (a template cannot reach
Python internals through the row's values), HTML templates autoescape every value, and an
undefined variable is an error for that row rather than a silently empty greeting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncmailer._cli._output import CLIError, require

__all__ = ["Rendered", "Templates", "is_html_template"]

_HTML_SUFFIXES = (".html", ".htm", ".xhtml")


def is_html_template(path: Path) -> bool:
    """True for ``body.html``, ``body.html.j2``, ``body.htm.jinja``..."""
    return any(suffix.lower() in _HTML_SUFFIXES for suffix in path.suffixes)


@dataclass(frozen=True, slots=True)
class Rendered:
    """One row's subject and bodies."""

    subject: str | None
    text: str | None
    html: str | None


class RenderError(Exception):
    """A template failed for one row (undefined variable, sandbox violation...)."""


class Templates:
    """The subject, text and HTML templates of a bulk run. Build with :meth:`load`."""

    def __init__(self, subject: Any, text: Any, html: Any) -> None:
        self._subject = subject
        self._text = text
        self._html = html

    @classmethod
    def load(
        cls,
        *,
        subject: str | None,
        text_path: Path | None,
        html_path: Path | None,
    ) -> Templates:
        """Compile the templates (reads files: blocking); syntax errors raise :class:`CLIError`."""
        jinja2 = require("jinja2")
        sandbox = require("jinja2.sandbox")
        if text_path is None and html_path is None:
            raise CLIError(
                "bulk needs a body template: --template, --text-template or --html-template"
            )

        def environment(directory: Path | None, autoescape: bool) -> Any:
            loader = jinja2.FileSystemLoader(str(directory)) if directory is not None else None
            return sandbox.SandboxedEnvironment(
                loader=loader,
                autoescape=autoescape,
                undefined=jinja2.StrictUndefined,
                keep_trailing_newline=True,
            )

        def compile_file(path: Path | None, autoescape: bool) -> Any:
            if path is None:
                return None
            if not path.is_file():
                raise CLIError(f"template {path} does not exist")
            env = environment(path.parent, autoescape)
            try:
                return env.get_template(path.name)
            except jinja2.TemplateSyntaxError as exc:
                raise CLIError(f"template {path}, line {exc.lineno}: {exc.message}") from exc
            except UnicodeDecodeError as exc:
                raise CLIError(f"template {path} is not UTF-8 text") from exc

        subject_template = None
        if subject is not None:
            try:
                subject_template = environment(None, False).from_string(subject)
            except jinja2.TemplateSyntaxError as exc:
                raise CLIError(f"--subject-template: {exc.message}") from exc
        return cls(subject_template, compile_file(text_path, False), compile_file(html_path, True))

    def render(self, row: Mapping[str, str]) -> Rendered:
        """Render every template with the row's columns (and ``row`` for odd column names)."""
        jinja2 = require("jinja2")
        context = {**row, "row": dict(row)}
        try:
            subject = self._subject.render(context) if self._subject is not None else None
            text = self._text.render(context) if self._text is not None else None
            html = self._html.render(context) if self._html is not None else None
        except jinja2.TemplateError as exc:
            raise RenderError(f"template: {exc}") from exc
        if subject is not None:
            subject = " ".join(subject.split())  # a header is one line
        return Rendered(subject, text, html)
