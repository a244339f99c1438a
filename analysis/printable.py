"""Text that came from a user or a file (a scenario's description, a log's path or header fields), made safe to
print through rich: a '[' in it is never read as markup (``[/]`` was a MarkupError, an internal error, and
``[link=...]`` became a hyperlink), and a control character (an ESC would drive the terminal) is shown as its
escape. ``one_line`` is the same for plain (not rich) output: an error line stays one line."""

from __future__ import annotations

import unicodedata
from typing import Any

from rich.markup import escape


def printable(value: Any) -> str:
    text = str(value)
    return escape("".join(c if c.isprintable() else repr(c)[1:-1] for c in text))


def one_line(text: str) -> str:
    """An error as one line that shows what it names: control and format characters (a newline or an escape
    sequence in a file name, a right-to-left override) as their Python escapes. A path with a newline split the
    error over two lines, and one with ESC [31m turned the terminal red."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) in ("Cc", "Cf") else c for c in text)
