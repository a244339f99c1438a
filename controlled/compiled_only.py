"""Compiled-only extension modules (a .pyx with a Python fallback elsewhere): load one only when its build is fresh.

setup.py builds them the optional way it builds the hot modules (kernel_model/compiled.py) and records each
source's digest in the same BUILD_RECORD. Python would import an extension built from an older source as if it
were current, so its user asks here: the extension when its recorded digest is its source's, None (and one
warning) when the source changed since, None when it was never built or ``TLBRACE_PURE_PYTHON=1``. The caller
then runs its Python fallback, which computes the same results.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Callable

_RECORD = Path(__file__).resolve().parent.parent / "kernel_model" / "compiled_sources.json"


def built_digest(module: str) -> str | None:
    """The digest setup.py recorded for ``module``'s source (kernel_model/compiled.py's record)."""
    try:
        return json.loads(_RECORD.read_text()).get(module)
    except (OSError, ValueError):
        return None


def fresh_extension(module: str, source: Path, fallback: str,
                    digest: Callable[[], str | None] | None = None) -> ModuleType | None:
    """The compiled ``module`` if it is built from ``source`` as it is on disk and not turned off; else None.
    ``fallback`` says, in the stale build's warning, what runs instead; ``digest``: the recorded digest (default
    built_digest(module))."""
    if os.environ.get("TLBRACE_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        compiled = importlib.import_module(module)
    except ImportError:
        return None
    if not source.exists():
        return compiled  # an installed wheel: built from the source it shipped without
    recorded = digest() if digest is not None else built_digest(module)
    if recorded != hashlib.sha256(source.read_bytes()).hexdigest():
        warnings.warn(f"{module}: source changed since the build; {fallback}. Rebuild with: bash scripts/setup.sh",
                      RuntimeWarning, stacklevel=3)
        return None
    return compiled
