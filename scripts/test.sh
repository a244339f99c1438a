#!/usr/bin/env bash
# Set up, then run the whole test suite (the README's test command; CI runs exactly this).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit $?
# Ray started by tests stays on loopback and quiet (design.md "Ray, concretely").
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled
export RAY_worker_maximum_startup_concurrency=16
# The house rules (import cycles, kernel_model's imports, complexity, class sizes): printed for CI to show, never
# changing the exit status (scripts/check_structure.py --strict would fail on them). Printed before pytest, so
# that pytest's summary stays the last line of the run.
echo "--- scripts/check_structure.py"
.venv/bin/python scripts/check_structure.py || echo "check_structure could not run (exit $?)" >&2
.venv/bin/python -m pytest -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit "$rc"
