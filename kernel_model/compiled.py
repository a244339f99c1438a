"""Which kernel_model modules run compiled, and a guard that never lets a stale build run.

The controlled explorer spends its time in a few modules (HOT_MODULES). ``setup.py`` compiles them with Cython
into extension modules next to their sources when the package is installed (``bash scripts/setup.sh``): the
same Python code, about 1.4x faster (bench/bench_explore.py). They stay plain Python, and the package runs the
same without a compiler.

Python imports an extension module before a ``.py`` of the same name. An extension built from an older source
would then run in place of the code on disk, silently. So the build records each source's SHA-256
(``BUILD_RECORD``), and ``prefer_fresh_sources`` (called by ``kernel_model/__init__``, before any other module
of the package is imported) installs an import hook that loads the ``.py`` of every module whose source no
longer matches its build, with one warning that says how to rebuild. ``TLBRACE_PURE_PYTHON=1`` loads every
module from source (for profiling with cProfile, which does not see into compiled functions, and for the test
that compares both). Reading a dozen small files at import is the only I/O here, and it is about the build,
not the model.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

# The modules an exhaustive search runs through on every transition (setup.py compiles these and no others).
# A bare name is a module of this package (kernel_model); a dotted one names a module of a sibling package
# ("controlled.machine"): the search's hot path runs through both the model and the controlled runtime. This
# package imports neither: the names are build targets, and the guard below covers them all because every
# package of the project imports kernel_model before any module of its own.
HOT_MODULES = ("controlled.machine", "controlled.positions", "controlled.reducer", "controlled.canonical",
               "controlled.depth_first", "state", "controlled.symmetry", "controlled.explorer",
               "controlled.reduction", "atomic", "tlb", "oracle", "syscalls", "steps", "events", "memory",
               "mmu_gather", "rmap", "writeback", "controlled.visited", "controlled.sleep_sets",
               "controlled.position_futures", "controlled.coverings", "controlled.shared_sleep_sets")
BUILD_RECORD = "compiled_sources.json"  # module -> SHA-256 of the source it was compiled from
PURE_ENV = "TLBRACE_PURE_PYTHON"
PACKAGE_DIR = Path(__file__).resolve().parent


def qualified(module: str) -> str:
    """The importable name of a HOT_MODULES entry: "tlb" -> "kernel_model.tlb"."""
    return module if "." in module else f"{__package__ or 'kernel_model'}.{module}"


def module_file(module: str, package_dir: Path = PACKAGE_DIR, suffix: str = ".py") -> Path:
    """Where a HOT_MODULES entry's source (or, with an extension suffix, its build) lives; a dotted entry is
    under the directory next to ``package_dir`` that its package names."""
    package, _, name = module.rpartition(".")
    directory = package_dir.parent.joinpath(*package.split(".")) if package else package_dir
    return directory / f"{name}{suffix}"


def source_digest(module: str, package_dir: Path = PACKAGE_DIR) -> str:
    return hashlib.sha256(module_file(module, package_dir).read_bytes()).hexdigest()


def _extension_of(module: str, package_dir: Path) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = module_file(module, package_dir, suffix)
        if path.exists():
            return path
    return None


def status(package_dir: Path = PACKAGE_DIR) -> dict[str, str]:
    """Each hot module: "compiled", "source" (never built, or TLBRACE_PURE_PYTHON) or "stale build" (its
    source changed since it was compiled: the source runs)."""
    try:
        record = json.loads((package_dir / BUILD_RECORD).read_text())
    except (OSError, ValueError):
        record = {}
    pure = os.environ.get(PURE_ENV, "") not in ("", "0")
    out = {}
    for module in HOT_MODULES:
        if pure or _extension_of(module, package_dir) is None:
            out[module] = "source"
        elif record.get(module) != source_digest(module, package_dir):
            out[module] = "stale build"
        else:
            out[module] = "compiled"
    return out


class _SourceFirst:
    """Loads the listed kernel_model modules from their .py files, ahead of the extension modules (a meta path
    finder: find_spec is all the import system asks of one; importlib.abc would add its import time)."""

    def __init__(self, modules: Sequence[str], package_dir: Path) -> None:
        self.modules = {qualified(m): m for m in modules}
        self.package_dir = package_dir

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        module = self.modules.get(fullname)
        if module is None:
            return None
        return importlib.util.spec_from_file_location(fullname, module_file(module, self.package_dir))


def prefer_fresh_sources() -> dict[str, str]:
    """Install the import hook for every hot module that must run from source; warn about stale builds."""
    modules = status()
    from_source = [m for m, how in modules.items() if how != "compiled"]
    stale = [m for m, how in modules.items() if how == "stale build"]
    if stale:
        warnings.warn(f"kernel_model: {', '.join(stale)}: source changed since the build; running it as Python "
                      f"(slower). Rebuild with: bash scripts/setup.sh", RuntimeWarning, stacklevel=3)
    if from_source and not any(isinstance(f, _SourceFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst(from_source, PACKAGE_DIR))
    return modules


def compiled_modules() -> list[str]:
    """The hot modules that run compiled in this process (for reports: speed figures depend on it)."""
    return [name for name in HOT_MODULES
            if getattr(sys.modules.get(qualified(name)), "__file__", "").endswith(
                tuple(importlib.machinery.EXTENSION_SUFFIXES))]
