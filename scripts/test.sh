#!/usr/bin/env bash
# Set up, then run the whole test suite (the README's test command; CI runs exactly this).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit $?
# Ray started by tests stays on loopback and quiet (design.md "Ray, concretely").
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled
export RAY_worker_maximum_startup_concurrency=16
# The house rules (no import cycle, kernel_model imports nothing else of the project, the import rules of
# docs/architecture.md, no block above radon grade C, no class over 300 lines): all hold, so CI enforces them
# (--strict: exit 1 on a broken rule). Checked before pytest, so that pytest's summary stays the last line.
echo "--- scripts/check_structure.py --strict"
.venv/bin/python scripts/check_structure.py --strict
structure=$?
if [ "$structure" -ne 0 ]; then
  echo "scripts/check_structure.py --strict: a house rule is broken (exit $structure): see above" >&2
  exit 1
fi
# On the machine's cores with pytest-xdist: one worker per core (nproc: the cores this process may use), at most
# 4. The suite is CPU-bound searches, so a worker per core keeps every core busy, and more workers than cores only
# share them. Past 4 the wild tests, which all run on one worker (below), are the longest path and more workers
# only add memory. `--dist loadgroup` (pyproject.toml's addopts) with tests/conftest.py's xdist group keeps every
# test that starts Ray on one worker, so one Ray runs at a time, as in a one-process run.
# Arguments pass through after ours, so a later `-n 0` runs everything in this one process (for --pdb, -s...);
# a file or -m selection runs on the workers too (a few seconds to start them, then both cores).
workers="$(nproc 2>/dev/null || echo 1)"
[ "$workers" -gt 4 ] && workers=4
# -q unless the arguments say -q already: a second one (-qq) would drop pytest's closing "N passed" line.
quiet=-q
for arg in "$@"; do
  [ "$arg" = "-q" ] || [ "$arg" = "--quiet" ] && quiet=
done
# --max-worker-restart=0: a worker that dies (a crash, a kill) ends the run with the test it was running named,
# instead of being replaced: under --dist loadgroup a replaced worker left the run waiting for ever (CI, session 15).
.venv/bin/python -m pytest $quiet -n "$workers" --max-worker-restart=0 "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit "$rc"
