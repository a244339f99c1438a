"""An error or a note that names a file, as one line that shows what it names.

A path may hold a newline, an escape sequence or a right-to-left override (a user's --out, a log's recorded path);
printed raw, the error split over two lines, or turned the terminal red. Shared by the CLI, analysis and actors
(a lost cluster's exit line names the results file), which is why it lives in logs: every package that prints such
a line may import it (docs/architecture.md's import rules).
"""

from __future__ import annotations

import unicodedata


def one_line(text: str) -> str:
    """``text`` with its control and format characters (Unicode categories Cc and Cf) as their Python escapes."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) in ("Cc", "Cf") else c for c in text)
