#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install tlbrace with its test extras; the
# install compiles the explorer's hot modules (setup.py, kernel_model/compiled.py).
# Idempotent and quick when nothing changed: it reinstalls when pyproject.toml or setup.py changed, and
# recompiles when a compiled module's source changed since its build. The installer's output goes to
# .venv/install.log, shown only if it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
# Not the distribution's /usr/bin/python3 although it is built with PGO and LTO: session 21 measured the search
# at 0.84x the instructions a state on it, but 4-15% more CPU on the compiled search than on pyenv's python3 here
# (pure Python is 0.83x on it; bench/bench_interpreters.py). PYTHON= chooses.
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "tlbrace needs Python >= 3.11 (tomllib); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
LOG=.venv/install.log
STAMP=.venv/tlbrace-installed
want="$(cat pyproject.toml setup.py | sha256sum | cut -d' ' -f1)"
pip_install() {
  if ! .venv/bin/python -m pip install --disable-pip-version-check "$@" >"$LOG" 2>&1; then
    cat "$LOG" >&2
    echo "setup: pip install $* failed (log above, and in $LOG)" >&2
    exit 1
  fi
}
# The hot modules' build state, without importing the package (that would warn about a stale build).
build_state() {
  .venv/bin/python -c 'import runpy, collections; s = runpy.run_path("kernel_model/compiled.py")["status"]()
print(", ".join(f"{n} {k}" for k, n in sorted(collections.Counter(s.values()).items())))'
}
# The SHA-256 of every compiled module's source (HOT_MODULES and the compiled-only .pyx), one "module digest" a
# line. A build must record what it compiled: sources edited while it ran (an editor saving, a git checkout)
# could leave a record that vouches for code the build never saw, and a stale build would then run as fresh.
sources_digest() {
  .venv/bin/python -c 'import hashlib, runpy; c = runpy.run_path("kernel_model/compiled.py")
from pathlib import Path
for m in c["HOT_MODULES"]:
    print(m, hashlib.sha256(c["module_file"](m, Path("kernel_model")).read_bytes()).hexdigest())
for p in sorted(Path("controlled").glob("*.pyx")):
    print(p, hashlib.sha256(p.read_bytes()).hexdigest())'
}
# Whether the build record (kernel_model/compiled_sources.json) names, for each module it lists, the digest the
# sources had before the build ($1): a record of anything else was taken from sources that changed meanwhile.
record_matches() {
  .venv/bin/python -c 'import json, sys, runpy; c = runpy.run_path("kernel_model/compiled.py")
before = dict(line.split(" ", 1) for line in sys.argv[1].splitlines())
try:
    record = json.loads(open("kernel_model/" + c["BUILD_RECORD"]).read())
except (OSError, ValueError):
    record = {}
bad = [m for m, d in record.items() if m in before and before[m] != d]
sys.exit(1 if bad else 0)' "$1"
}
# Build (the function given, with its arguments); again if any compiled source changed while it ran, at most 3
# times; then refuse rather than keep a record that may not match what was compiled.
build_steady() {
  for attempt in 1 2 3; do
    before="$(sources_digest)"
    "$@"
    if [ "$(sources_digest)" = "$before" ] && record_matches "$before"; then
      return 0
    fi
    echo "setup: sources changed while they were compiled; compiling them again (attempt $attempt of 3)" >&2
    rm -f "kernel_model/$(.venv/bin/python -c 'import runpy; print(runpy.run_path("kernel_model/compiled.py")["BUILD_RECORD"])')"
  done
  echo "setup: the compiled sources kept changing during the build; stop editing them and run setup.sh again" \
    "(the build record is removed: every module runs as Python until then)" >&2
  exit 1
}
full_install() {
  pip_install --quiet --upgrade pip
  pip_install -e ".[test]"
}
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  build_steady full_install
  echo "$want" > "$STAMP"
elif build_state | grep -q "stale build"; then
  echo "setup: sources changed since the last build; recompiling"
  build_steady pip_install --no-deps -e .
fi
echo "setup: kernel_model hot modules: $(build_state) (of $(.venv/bin/python -c 'import runpy; print(len(runpy.run_path("kernel_model/compiled.py")["HOT_MODULES"]))'))"
