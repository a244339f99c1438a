"""scripts/setup.sh when the sources change under it: the build record (kernel_model/compiled_sources.json)
must vouch only for sources that were compiled. Session 13 saw a record that did not match what it compiled (a
hot module edited while setup.sh ran), so a stale build could run as fresh. Each test failed before its fix.

The build itself is simulated (a `.venv/bin/python` whose `-m pip install -e` writes the record as setup.py
does, from the sources as it reads them, and edits a source in the middle of its first build, as an editor
saving during the compile would): no pip, no compiler, no network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The fake pip: record the digest of every hot module as read now (setup.py's _take_digests), then, in the
# first build only, edit one of them as if it changed while Cython compiled it.
FAKE_PIP = r'''
import hashlib, json, runpy, sys
from pathlib import Path
if "-e" not in sys.argv:
    sys.exit(0)
c = runpy.run_path("kernel_model/compiled.py")
record = {m: hashlib.sha256(c["module_file"](m, Path("kernel_model")).read_bytes()).hexdigest()
          for m in c["HOT_MODULES"]}
builds = Path("builds")
count = int(builds.read_text()) if builds.exists() else 0
builds.write_text(str(count + 1))
if count == 0 and "EDIT_DURING_BUILD" in __import__("os").environ:
    victim = c["module_file"](c["HOT_MODULES"][0], Path("kernel_model"))
    victim.write_text(victim.read_text() + "\n# edited while it compiled\n")
Path("kernel_model", c["BUILD_RECORD"]).write_text(json.dumps(record))
'''


def _tree(tmp_path: Path) -> Path:
    """A copy of what setup.sh reads, with a .venv whose python runs the fake pip."""
    tree = tmp_path / "repo"
    skip = shutil.ignore_patterns("*.so", "*.c", "__pycache__", "compiled_sources.json")
    for name in ("kernel_model", "controlled"):
        shutil.copytree(ROOT / name, tree / name, ignore=skip)
    (tree / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tree / "scripts" / "setup.sh")
    for name in ("pyproject.toml", "setup.py"):
        shutil.copy(ROOT / name, tree / name)
    (tree / "fake_pip.py").write_text(FAKE_PIP)
    venv = tree / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text(f'#!/bin/sh\nif [ "$1" = "-m" ] && [ "$2" = "pip" ]; then shift 2; '
                                 f'exec {sys.executable} fake_pip.py "$@"; fi\nexec {sys.executable} "$@"\n')
    (venv / "python").chmod(0o755)
    return tree


def _record_matches_sources(tree: Path) -> bool:
    code = ("import hashlib, json, runpy; from pathlib import Path; c = runpy.run_path('kernel_model/compiled.py');"
            "r = json.loads(Path('kernel_model', c['BUILD_RECORD']).read_text());"
            "print(all(r[m] == hashlib.sha256(c['module_file'](m, Path('kernel_model')).read_bytes()).hexdigest()"
            " for m in c['HOT_MODULES']))")
    return subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True).stdout.strip() == "True"


def _setup(tree: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "scripts/setup.sh"], cwd=tree, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_a_source_edited_during_the_build_is_compiled_again(tmp_path):
    """Before, the first build's record stood: it named the source as it was before the edit, while the tree
    held the edited one (and a build that read the edit would have been vouched for by the old digest)."""
    tree = _tree(tmp_path)
    done = _setup(tree, EDIT_DURING_BUILD="1")
    assert done.returncode == 0, done.stderr
    assert "changed while they were compiled" in done.stderr
    assert (tree / "builds").read_text() == "2"
    assert _record_matches_sources(tree)


def test_a_quiet_build_runs_once(tmp_path):
    tree = _tree(tmp_path)
    done = _setup(tree)
    assert done.returncode == 0, done.stderr
    assert (tree / "builds").read_text() == "1" and "changed while" not in done.stderr
    assert _record_matches_sources(tree)
    json.loads((tree / "kernel_model" / "compiled_sources.json").read_text())
