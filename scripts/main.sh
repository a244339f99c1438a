#!/usr/bin/env bash
# Set up, then run the main job on the embedded local Ray cluster: a stress campaign of the patch's race with
# the old (eager) ordering, which loses dirty data in some trials, and with the patch (delayed), which never
# does. The writer is the counter thread of Nadav Amit's proof of concept (it keeps incrementing the page through
# its TLB entry until the zap's flush takes the entry away), so real scheduling has a window to hit; nothing
# forces the interleaving. Failing trials' logs go to tlbrace-out/. It ends by writing the campaign page
# (tlbrace-out/report.html) and printing the first failing trial as a race diagram.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit $?
TRIALS="${TRIALS:-500}"
.venv/bin/tlbrace stress madv_dontneed --ordering eager --trials "$TRIALS" --parallel 2 --out tlbrace-out/eager
eager=$?
.venv/bin/tlbrace stress madv_dontneed --ordering delayed --trials "$TRIALS" --parallel 2 --out tlbrace-out/delayed
delayed=$?
echo
report="$(.venv/bin/tlbrace report tlbrace-out)"
echo "$report"
first="$(printf '%s\n' "$report" | sed -n 's/^first failing trial: //p')"
if [ -n "$first" ]; then
  echo
  .venv/bin/tlbrace replay "$first" --format diagram
fi
echo
echo "eager (v6.1 order): exit $eager (1 = lost dirty data found); delayed (the patch): exit $delayed (0 = none)"
# Success means the emulator reproduced the kernel's history: the old order loses data, the fix does not.
[ "$eager" -eq 1 ] && [ "$delayed" -eq 0 ]
