"""Text that came from a user or a file (a scenario's description, a log's path or header fields), made safe to
print through rich: a '[' in it is never read as markup (``[/]`` was a MarkupError, an internal error, and
``[link=...]`` became a hyperlink), and a control character (an ESC would drive the terminal) is shown as its
escape. For plain (not rich) output, logs.one_line keeps an error line one line."""

from __future__ import annotations

from typing import Any

from rich.markup import escape


def printable(value: Any) -> str:
    text = str(value)
    return escape("".join(c if c.isprintable() else repr(c)[1:-1] for c in text))

