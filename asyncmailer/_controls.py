"""Control characters the composer refuses wherever a value reaches a header or the envelope.

Some readers end a line at characters other than CRLF: NEL (U+0085), LINE SEPARATOR
(U+2028) and PARAGRAPH SEPARATOR (U+2029) for Unicode-aware parsers and terminals, lone
CR or LF for lenient MIME parsers. None of them, nor any other C0 control but TAB, DEL or
a C1 control, may appear in a header or an SMTP command. Lone surrogates are refused too
(they cannot be written as UTF-8).

Checks are one precompiled ``.search`` per value: cheap enough for the composer's hot path.
"""

from __future__ import annotations

import re

__all__ = ["CONTROL_CLASS", "CONTROL_RE", "control_char_error"]

#: The forbidden characters, as the body of a regex character class (``[...]``).
CONTROL_CLASS = "\\x00-\\x08\\x0a-\\x1f\\x7f-\\x9f\\u2028\\u2029\\ud800-\\udfff"
#: Finds one forbidden character.
CONTROL_RE = re.compile(f"[{CONTROL_CLASS}]")


def control_char_error(value: str) -> str | None:
    """Describe the first forbidden control character of ``value``; None when there is none.

    ``control_char_error("a\\u2028b")`` is ``"control character U+2028 at index 1"``.
    """
    match = CONTROL_RE.search(value)
    if match is None:
        return None
    return f"control character U+{ord(match.group()):04X} at index {match.start()}"
