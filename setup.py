"""Build hook: compile the controlled explorer's hot modules with Cython (kernel_model/compiled.py says why
and which). Everything else about the package is in pyproject.toml.

The compiled modules are an optimisation, never a requirement: when Cython or a C compiler is missing, or a
module fails to compile, the build says so and the package installs as plain Python. Each build records the
SHA-256 of the sources it compiled, so that a source edited later runs as source, not as its old build.

The record must never say more than the build did, or an old build runs as if fresh (a search's counts then
follow code that is no longer on disk). So each digest is taken when the sources are read for Cython, not
after the build (a source edited while it compiles keeps the digest of what was compiled, and runs as source);
a module that failed to compile is left out (its older build, if any, then counts as stale); and a generated
C file is regenerated whenever the record does not vouch for its source (Cython alone trusts file times, which
a checkout or a copy can leave older than the C file).
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
_compiled = runpy.run_path(str(HERE / "kernel_model" / "compiled.py"))  # HOT_MODULES, BUILD_RECORD; no imports
HOT_MODULES: tuple[str, ...] = _compiled["HOT_MODULES"]
# Compiled-only modules (a .pyx with a Python fallback elsewhere, which checks this build's recorded digest
# itself, controlled/compiled_only.py): the parallel search's atomic shared words (controlled/shared_words.py),
# the exact visited keys' encoder (controlled/visited.py), the reducer's conflict closure (controlled/closure.py)
# its memo keys' packer (controlled/reducer.py) and the search's memos as dict subclasses (controlled/memo.py).
EXTRA_MODULES = ("controlled._atomic_words", "controlled._compact_keys", "controlled._closure",
                 "controlled._reducer_keys", "controlled._memo")


class OptionalBuildExt(build_ext):
    """build_ext that warns instead of failing, compiles on every core, and records what it compiled."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if not self.parallel:
            self.parallel = os.cpu_count() or 1

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - no compiler at all: install as plain Python
            print(f"warning: tlbrace: not compiling kernel_model ({exc}); it runs as plain Python")
        self._record()

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001 - this module stays plain Python
            _FAILED.add(_module_of(ext.name))
            print(f"warning: tlbrace: {ext.name} not compiled ({exc}); it runs as plain Python")

    def _record(self) -> None:
        """Write, next to the extensions, the digest of each source compiled (kernel_model/compiled.py reads it):
        as read before Cython ran (SOURCE_DIGESTS), for each module built now or before and not failed now."""
        built: dict[str, str] = {}
        for ext in self.extensions:
            module = _module_of(ext.name)
            if Path(self.get_ext_fullpath(ext.name)).exists() and module not in _FAILED and module in SOURCE_DIGESTS:
                built[module] = SOURCE_DIGESTS[module]
        # The record lives next to compiled.py, in kernel_model (the hot modules may span several packages).
        target = Path(self.get_ext_fullpath(PRIVATE + "kernel_model.compiled")).parent if self.extensions else None
        if target is not None:
            target.mkdir(parents=True, exist_ok=True)
            (target / _compiled["BUILD_RECORD"]).write_text(json.dumps(built, indent=1, sort_keys=True) + "\n")


# The project's packages, and the directory each comes from.
CODE = {"actors": "actors", "analysis": "analysis", "cli": "cli", "controlled": "controlled", "fuzz": "fuzz",
        "kernel_model": "kernel_model", "logs": "logs", "scenarios": "scenarios",
        "scenarios.library": "scenarios/library"}
# A wheel (bdist_wheel; also what `pip install .` builds) ships them under tlbrace/_lib, out of site-packages'
# top level, where modules named `actors` or `scenarios` of other projects would collide with them; the
# `tlbrace` command (tlbrace/__init__.py) puts that directory on its own path. An editable install
# (scripts/setup.sh) keeps them importable by their own names from the repository, as the tests and Ray workers
# import them.
PRIVATE = "tlbrace._lib." if "bdist_wheel" in sys.argv else ""


def layout() -> dict:
    packages = ["tlbrace"] + [PRIVATE + name for name in CODE]
    package_dir = {PRIVATE + name: path for name, path in CODE.items()} if PRIVATE else {}
    return {"packages": packages, "package_dir": package_dir,
            "package_data": {PRIVATE + "scenarios": ["library/*.toml"]}}


# What the build compiled: each module's source digest as read just before Cython reads the sources, and the
# modules whose compilation failed in this build.
SOURCE_DIGESTS: dict[str, str] = {}
_FAILED: set[str] = set()


def _module_of(ext_name: str) -> str:
    """An extension's module as HOT_MODULES names it ("tlb", "controlled.machine", "controlled._atomic_words")."""
    return ext_name.removeprefix(PRIVATE).removeprefix("kernel_model.")


def _source_of(module: str) -> Path:
    source = _compiled["module_file"](module, HERE / "kernel_model")
    return source.with_suffix(".pyx") if module in EXTRA_MODULES else source  # compiled-only: a .pyx


def _take_digests(modules: tuple[str, ...]) -> None:
    """Record each source's digest now (SOURCE_DIGESTS), and delete the generated C file of each source the
    last build record does not vouch for, so that Cython regenerates it whatever the files' times say."""
    try:
        record = json.loads((HERE / "kernel_model" / _compiled["BUILD_RECORD"]).read_text())
    except (OSError, ValueError):
        record = {}
    for module in modules:
        source = _source_of(module)
        SOURCE_DIGESTS[module] = hashlib.sha256(source.read_bytes()).hexdigest()
        if record.get(module) != SOURCE_DIGESTS[module]:
            source.with_suffix(".c").unlink(missing_ok=True)


def extensions() -> list:
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("warning: tlbrace: Cython is not installed; kernel_model runs as plain Python")
        return []
    # annotation_typing=False: type hints stay hints, so the compiled code behaves exactly as the Python does
    # (Cython would otherwise turn some annotations into C types with their own overflow and conversion rules).
    _take_digests(HOT_MODULES + EXTRA_MODULES)
    sources = [str(_compiled["module_file"](m, Path("kernel_model"))) for m in HOT_MODULES]
    sources += [str(_compiled["module_file"](m, Path("kernel_model"), ".pyx")) for m in EXTRA_MODULES]
    exts = cythonize(sources, quiet=True, nthreads=os.cpu_count() or 1,
                     compiler_directives={"language_level": 3, "annotation_typing": False})
    for ext in exts:  # in a wheel, next to their sources under tlbrace/_lib; imported by their own names
        ext.name = PRIVATE + ext.name
    return exts


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt}, **layout())
