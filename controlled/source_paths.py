"""The kernel paths loaded a second time from their sources, as plain Python: generators whose frames can be read.

setup.py compiles the path modules with Cython (kernel_model.compiled.HOT_MODULES), and a compiled generator
shows no frame: controlled.generator_state cannot read its state. So the state of a position is read from a
twin: the same source files executed again into module objects of their own (the dataclasses, enums and Kctx
the paths share with the model stay the package's: only modules that define paths are loaded again), replayed on
the same results. The twin and the compiled module are the same code (tests/test_compiled.py compares them), so
the twin's state is the compiled generator's, and the twin's next step is checked equal to the machine's.

While a twin runs, its modules stand in sys.modules under the package's names, so that an import inside a
function (tlb.py imports memory's fault path at call time) finds the twin too; the package's modules are put
back before anything else runs. A position is resolved by one process at a time, and nothing else imports
meanwhile.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator
from contextlib import contextmanager

import kernel_model

# The modules that define kernel paths (generators), each after those it imports from.
PATH_MODULES = ("mmu_gather", "rmap", "writeback", "reclaim", "memory", "mprotect", "truncate", "mremap", "tlb",
                "syscalls")
_TWINS: dict[str, ModuleType] | None = None


def op_attempt() -> Any:
    """The twin's kernel_model.syscalls.op_attempt, to be called and run inside ``installed()``."""
    return twins()["syscalls"].op_attempt


def twins() -> dict[str, ModuleType]:
    global _TWINS
    if _TWINS is None:
        _TWINS = _load()
    return _TWINS


@contextmanager
def installed() -> Iterator[None]:
    """The twins in sys.modules under the package's names for the duration (imports at call time find them)."""
    mods = twins()
    saved = {name: sys.modules.get(_qualified(name)) for name in PATH_MODULES}
    try:
        for name, mod in mods.items():
            sys.modules[_qualified(name)] = mod
        yield
    finally:
        _put_back(saved)


def _load() -> dict[str, ModuleType]:
    here = Path(kernel_model.__file__).resolve().parent
    saved = {name: sys.modules.get(_qualified(name)) for name in PATH_MODULES}
    out: dict[str, ModuleType] = {}
    try:
        for name in PATH_MODULES:
            qualified = _qualified(name)
            path = here / f"{name}.py"
            loader = importlib.machinery.SourceFileLoader(qualified, str(path))
            spec = importlib.util.spec_from_file_location(qualified, path, loader=loader)
            assert spec is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[qualified] = module  # the twins after it import this one
            loader.exec_module(module)
            out[name] = module
    finally:
        _put_back(saved)
    return out


def _put_back(saved: dict[str, ModuleType | None]) -> None:
    for name, mod in saved.items():
        if mod is None:
            sys.modules.pop(_qualified(name), None)
        else:
            sys.modules[_qualified(name)] = mod


def _qualified(name: str) -> str:
    return f"kernel_model.{name}"
