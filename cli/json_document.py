"""With ``--json``, stdout holds the command's JSON document and nothing else (`tlbrace stress --json | jq`).

Ray's driver prints the cluster's error messages ("(raylet) A worker died or was killed ...") on ``sys.stdout``,
from a thread of its own, whatever ``log_to_driver`` says (ray._private.worker.listen_error_messages prints them
with is_err=False). A crashed trial's message, or a late one about an actor of an earlier campaign in the same
process, then came ahead of the document and made it unreadable (tests/test_wild_cli.py's JSON summary failed so
when it ran after tests/test_faults.py). So while a ``--json`` command runs, ``sys.stdout`` is stderr, where the
command's other words go too, and the document is written on the real stdout by print_document.
"""

from __future__ import annotations

import json
import math
import sys
from contextlib import contextmanager
from typing import Any, Iterator, TextIO

_documents: list[TextIO] = []  # the real stdout of each --json command running (nested: main() called by a test)


@contextmanager
def stdout_kept_for_the_document(wanted: bool) -> Iterator[None]:
    """Run a command with ``sys.stdout`` sent to stderr when it prints a JSON document (``wanted``)."""
    if not wanted:
        yield
        return
    real = sys.stdout
    _documents.append(real)
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = real
        _documents.pop()


def print_document(doc: Any, **dumps: Any) -> None:
    """``doc`` as JSON and a newline on the command's stdout (``dumps``: json.dumps' options, e.g. indent). JSON
    has no NaN or Infinity: Python wrote them as the bare words NaN and Infinity, which jq and every other JSON
    reader refuse ("Invalid numeric literal"): such a number (read from a damaged input) is written as null."""
    out = _documents[-1] if _documents else sys.stdout
    try:
        text = json.dumps(doc, allow_nan=False, **dumps)
    except ValueError:  # "Out of range float values are not JSON compliant"
        text = json.dumps(_finite(doc), allow_nan=False, **dumps)
    out.write(text + "\n")
    out.flush()


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
