#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install tlbrace with its test extras; the
# install compiles the explorer's hot modules (setup.py, kernel_model/compiled.py).
# Idempotent and quick when nothing changed: it reinstalls when pyproject.toml or setup.py changed, and
# recompiles when a compiled module's source changed since its build. The installer's output goes to
# .venv/install.log, shown only if it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
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
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  pip_install --quiet --upgrade pip
  pip_install -e ".[test]"
  echo "$want" > "$STAMP"
elif build_state | grep -q "stale build"; then
  echo "setup: sources changed since the last build; recompiling"
  pip_install --no-deps -e .
fi
echo "setup: kernel_model hot modules: $(build_state) (of $(.venv/bin/python -c 'import runpy; print(len(runpy.run_path("kernel_model/compiled.py")["HOT_MODULES"]))'))"
