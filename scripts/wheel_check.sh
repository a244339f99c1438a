#!/usr/bin/env bash
# CI: build tlbrace's wheel, install it (not editable) into a fresh venv, and run it from a directory outside
# the repository: `tlbrace explore madv_dontneed` and `tlbrace stress madv_dontneed --trials 20`. Also checks
# that the wheel puts none of the project's packages (`actors`, `kernel_model`, ...) at site-packages' top level (they live under
# tlbrace/_lib: see tlbrace/__init__.py), and says which hot modules run compiled.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tlbrace-wheel.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled
export RAY_worker_maximum_startup_concurrency=16
step() { echo "wheel_check: $*"; }

step "building the wheel"
# From a copy of the source files only (tracked, or new and not ignored): a build/ left in the checkout by an
# earlier build would otherwise slip its stale files into the wheel.
SRC="$REPO"
if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
  SRC="$WORK/src"
  mkdir "$SRC"
  (cd "$REPO" && git ls-files -z -co --exclude-standard | xargs -0 cp --parents -t "$SRC")
fi
"$PYTHON" -m pip wheel --disable-pip-version-check --no-deps -q -w "$WORK/dist" "$SRC" >"$WORK/build.log" 2>&1 \
  || { cat "$WORK/build.log" >&2; echo "wheel_check: the wheel did not build" >&2; exit 1; }
wheel="$(ls "$WORK"/dist/tlbrace-*.whl)"
step "$(basename "$wheel")"
"$PYTHON" - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
top = sorted({n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))})
assert top == ["tlbrace"], f"top-level entries in the wheel: {top} (expected only tlbrace)"
so = [n for n in names if n.startswith("tlbrace/_lib/") and n.endswith(".so")]
assert any(n.endswith("library/madv_dontneed.toml") for n in names), "the scenario library is missing"
print(f"wheel_check: top level {top}; {len(so)} compiled hot modules in the wheel")
PY

step "installing it into a fresh venv"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --disable-pip-version-check -q "$wheel" >"$WORK/install.log" 2>&1 \
  || { cat "$WORK/install.log" >&2; echo "wheel_check: the wheel did not install" >&2; exit 1; }
mkdir "$WORK/elsewhere"
cd "$WORK/elsewhere"  # not the repository: nothing can be imported from its folders
# The project's packages (before and after issue 13's move) must not be importable by their own names here.
for pkg in actors kernel_model scenarios controlled logs analysis fuzz cli; do
  if "$WORK/venv/bin/python" -c "import $pkg" 2>/dev/null; then
    echo "wheel_check: the wheel installed a top-level $pkg module" >&2; exit 1
  fi
done
"$WORK/venv/bin/python" - <<'PY'
import collections, tlbrace
assert tlbrace.use_private_lib(), "the installed tlbrace has no _lib"
from kernel_model import compiled
states = collections.Counter(compiled.status().values())
print(f"wheel_check: hot modules: {dict(states)}" + ("" if states.get("compiled") else
      " (no compiled module in this wheel: it runs as plain Python)"))
assert "stale build" not in states
PY

step "tlbrace explore madv_dontneed"
set +e
COLUMNS=200 "$WORK/venv/bin/tlbrace" explore madv_dontneed --out "$WORK/elsewhere/out" | tail -1
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || { echo "wheel_check: explore exited $rc (0 expected: the patch, whole state space)" >&2; exit 1; }
step "tlbrace explore madv_dontneed --ordering eager"
"$WORK/venv/bin/tlbrace" explore madv_dontneed --ordering eager --format diagram --out "$WORK/elsewhere/out" >/dev/null
rc=$?
[ "$rc" -eq 1 ] || { echo "wheel_check: eager explore exited $rc (1 expected: lost_dirty_data)" >&2; exit 1; }
step "tlbrace stress madv_dontneed --trials 20"
"$WORK/venv/bin/tlbrace" stress madv_dontneed --trials 20 --parallel 2 --json --out "$WORK/elsewhere/stress" \
  >"$WORK/stress.json" 2>"$WORK/stress.err"
rc=$?
set -e
cat "$WORK/stress.json"
[ "$rc" -eq 0 ] || { cat "$WORK/stress.err" >&2; echo "wheel_check: stress exited $rc" >&2; exit 1; }
"$PYTHON" -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["trials"] == 20 and s["violations"] == 0, s' \
  "$WORK/stress.json"
step "ok"
