"""The compiled hot modules (kernel_model/compiled.py): they search exactly as the Python does, and a build
older than its source never runs."""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kernel_model import compiled

ROOT = Path(__file__).resolve().parent.parent
# The ladder with two writers of one store each: 31,365 states without symmetry, searched to the end (with two
# stores each it stopped at the 60,000-state budget, incomplete, in twice the time: session 15).
SEARCH = """
import json
import pytest

from kernel_model import compiled
from kernel_model.config import Config
from controlled.explorer import explore
from scenarios.loader import load_scenario
out = []
for name, params, ordering in [("ladder", {"writers": 2, "stores": 1}, "delayed"), ("madv_dontneed", {}, "eager"),
                               ("zap_many_pages", {}, "delayed")]:
    r = explore(load_scenario(name, params), Config(ordering=ordering), "dfs", stop_at_first=False,
                budget=60_000, symmetric=False)
    out.append([name, r.complete, r.states, r.transitions, r.schedules,
                sorted({i for f in r.found for i in f.invariants})])
# The workers' hot module (controlled.shared_sleep_sets): the whole search in one forked worker, with sleep sets
# shared in the table (its counts are one process's; two workers' may vary with who reaches a state first).
from controlled import parallel_search
parallel_search.FORK_AFTER_SECONDS = 0.0
r = parallel_search.parallel_dfs(load_scenario("ladder", {"writers": 2, "stores": 1}), Config(ordering="delayed"), 1,
                                 60_000, True, False, None, None, symmetric=False)
out.append(["ladder on a worker", r.complete, r.states, r.transitions, r.schedules, r.sleep_sets])
print(json.dumps({"compiled": compiled.compiled_modules(), "results": out}))
"""


def _search(pure: bool) -> dict:
    env = {**os.environ, compiled.PURE_ENV: "1" if pure else "0"}
    out = subprocess.run([sys.executable, "-c", SEARCH], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


@pytest.mark.slow  # the same searches twice, each in a child process
def test_compiled_modules_search_exactly_as_the_python_does(monkeypatch):
    monkeypatch.delenv(compiled.PURE_ENV, raising=False)
    fast, pure = _search(pure=False), _search(pure=True)
    assert pure["compiled"] == []
    # What ran compiled is exactly what the build check says is fresh: no stale build ran, no fresh one was
    # ignored. (On an install without a compiler both are empty, and the comparison below is of Python with
    # itself; CI builds every hot module.)
    assert set(fast["compiled"]) == {m for m, how in compiled.status().items() if how == "compiled"}
    assert fast["results"] == pure["results"]


def _fake_build(tmp_path: Path, module: str, source: str) -> Path:
    """A package directory holding ``module``'s source, an extension file for it and a build record."""
    (tmp_path / f"{module}.py").write_text(source)
    (tmp_path / f"{module}{importlib.machinery.EXTENSION_SUFFIXES[0]}").write_bytes(b"")
    digest = hashlib.sha256(source.encode()).hexdigest()
    (tmp_path / compiled.BUILD_RECORD).write_text(json.dumps({module: digest}))
    return tmp_path


def test_a_build_whose_source_changed_is_stale_and_the_source_runs(tmp_path, monkeypatch):
    monkeypatch.delenv(compiled.PURE_ENV, raising=False)
    package = _fake_build(tmp_path, "tlb", "X = 1\n")
    assert compiled.status(package)["tlb"] == "compiled"
    (package / "tlb.py").write_text("X = 2\n")
    assert compiled.status(package)["tlb"] == "stale build"
    # Modules with no extension at all run from source; so does everything under TLBRACE_PURE_PYTHON.
    assert compiled.status(package)["state"] == "source"
    (package / "tlb.py").write_text("X = 1\n")
    monkeypatch.setenv(compiled.PURE_ENV, "1")
    assert compiled.status(package)["tlb"] == "source"


def test_the_import_hook_loads_the_source_of_modules_it_is_given(tmp_path):
    package = _fake_build(tmp_path, "tlb", "X = 'from source'\n")
    spec = compiled._SourceFirst(["tlb"], package).find_spec("kernel_model.tlb")
    assert spec is not None and spec.origin == str(package / "tlb.py")
    assert compiled._SourceFirst(["tlb"], package).find_spec("kernel_model.state") is None
    assert compiled._SourceFirst(["tlb"], package).find_spec("actors.tlb") is None


def test_a_dotted_hot_module_lives_in_the_sibling_package_it_names(tmp_path):
    """A hot module of another package ("controlled.machine") is found next to kernel_model, and only it."""
    (tmp_path / "kernel_model").mkdir()
    (tmp_path / "controlled").mkdir()
    (tmp_path / "controlled" / "machine.py").write_text("X = 1\n")
    hook = compiled._SourceFirst(["controlled.machine"], tmp_path / "kernel_model")
    spec = hook.find_spec("controlled.machine")
    assert spec is not None and spec.origin == str(tmp_path / "controlled" / "machine.py")
    assert hook.find_spec("actors.machine") is None
