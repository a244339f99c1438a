"""What the parallel search's workers pay per state more than one process, in instructions (cachegrind), per process.

Runs one ladder cell's exhaustive dfs (delayed ordering, hash compaction) three ways, each in a fresh process under
``valgrind --tool=cachegrind --cache-sim=no`` (PYTHONHASHSEED=0):

- ``one``: one process (controlled.explorer's dfs);
- ``worker``: controlled.parallel_search with one worker, forked at once: the same states, transitions and order
  as one process, run by the workers' code (against ``one``: what that code costs);
- ``two``: two workers, forked at once (against ``worker``: what splitting the search costs, chiefly the memos
  each worker fills again: docs/compiled-core.md, "What a worker pays more than one process").

A forked process inherits its parent's counters, so a worker's file counts what the parent ran before the fork
too. The coordinator waits with a long timeout (its own instructions stay near zero), so a parallel run's work is
``sum(workers) - parent``, start-up included once, as in ``one``. Instruction counts do not depend on the load;
they take a few minutes a run under valgrind on the default cell (18k states).

Usage: python bench/worker_instructions.py [--cell pages,writers,stores,passes] [--no-sleep-sets] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The search, in the process valgrind runs: argv = mode, workers, sleep sets (0/1), the cell's four numbers.
_CHILD = """
import json, os, sys
from controlled import parallel_search as ps
from controlled.explorer import explore
from kernel_model.config import Config
from scenarios.loader import load_scenario
mode, workers, sleep = sys.argv[1], int(sys.argv[2]), bool(int(sys.argv[3]))
sc = load_scenario("ladder", dict(zip(("pages", "writers", "stores", "passes"), map(int, sys.argv[4:8]))))
ps.FORK_AFTER_SECONDS, ps._IDLE_POLL = 0.0, 10.0  # fork at once; the coordinator sleeps
cfg = Config(ordering="delayed")
if mode == "one":
    r = explore(sc, cfg, "dfs", budget=20_000_000, hash_compact=True, sleep_sets=sleep, stop_at_first=False)
else:
    r = ps.parallel_dfs(sc, cfg, workers, 20_000_000, True, False, None, None, sleep_sets=sleep)
print(json.dumps({"states": r.states, "transitions": r.transitions, "complete": r.complete, "pid": os.getpid()}))
"""


def run(mode: str, workers: int, sleep: bool, cell: list[int], out: Path) -> dict:
    """One search under cachegrind: its counts, the parent's instructions and each forked worker's."""
    prefix = out / f"{mode}{workers}"
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)}
    argv = ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={prefix}.%p",
            sys.executable, "-c", _CHILD, mode, str(workers), str(int(sleep)), *map(str, cell)]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    doc = json.loads(done.stdout.strip().splitlines()[-1])
    totals = {int(p.name.rsplit(".", 1)[1]): _total(p) for p in out.glob(f"{prefix.name}.*")}
    doc["parent"] = totals.pop(doc["pid"])
    doc["workers"] = sorted(totals.values())
    doc["work"] = doc["parent"] + sum(w - doc["parent"] for w in doc["workers"])
    return doc


def _total(path: Path) -> int:
    match = re.search(r"^summary: (\d+)", path.read_text(), re.M)
    if match is None:
        raise RuntimeError(f"no summary in {path}")
    return int(match.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cell", default="1,2,1,1", help="ladder pages,writers,stores,passes (default 1,2,1,1)")
    ap.add_argument("--no-sleep-sets", action="store_true")
    ap.add_argument("--out", default=None, help="directory for cachegrind's files (default: a temporary one)")
    args = ap.parse_args()
    cell = [int(x) for x in args.cell.split(",")]
    out = Path(args.out or tempfile.mkdtemp(prefix="worker-instructions-"))
    out.mkdir(parents=True, exist_ok=True)
    sleep = not args.no_sleep_sets
    print(f"ladder pages,writers,stores,passes={args.cell} delayed, dfs, hash compaction, "
          f"{'sleep sets' if sleep else 'no sleep sets'}; cachegrind files in {out}")
    one = run("one", 1, sleep, cell, out)
    rows = [("one process", one), ("one forked worker", run("par", 1, sleep, cell, out)),
            ("two workers", run("par", 2, sleep, cell, out))]
    for name, r in rows:
        parts = "" if not r["workers"] else \
            f" (workers {' + '.join(f'{w / 1e6:,.1f}M' for w in r['workers'])} - parent {r['parent'] / 1e6:,.1f}M)"
        print(f"  {name}: {r['states']:,} states, {r['transitions']:,} transitions, {r['work'] / 1e6:,.1f}M "
              f"instructions{parts}, x{r['work'] / one['work']:.3f} one process's in all")


if __name__ == "__main__":
    main()
