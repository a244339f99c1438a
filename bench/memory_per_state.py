"""The whole search's memory per stored state, measured in a fresh process (bench/bench_explore.py runs it).

Issue 17's memory goal counts everything an exhaustive search holds, not only its visited set: the visited keys
and their table of parts, the sleep sets, the reduction's and the canonicaliser's memos, the DFS stack. So this
runs one exhaustive DFS of a ladder cell (delayed ordering, exact keys, sleep sets: what `tlbrace explore
--strategy dfs` runs) and divides what the process grew by the states the visited set stores:
- RSS growth: the peak resident set (ru_maxrss) less the resident set before the search, after a tiny warm-up
  search has imported and built everything (what the machine really pays, allocator slack included);
- or, with --traced, tracemalloc's peak of the search (Python's allocations only; slower: about ten times with
  the compiled hot modules, whose every allocation it traces).
It prints one JSON object: states, transitions, complete, cpu seconds, the figure, and the visited set's own
bytes (controlled.visited's accounting).

Usage: python bench/memory_per_state.py '{"pages": 1, "writers": 2, "stores": 2, "passes": 1}' [--traced]
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from controlled.explorer import explore  # noqa: E402
from kernel_model.config import Config  # noqa: E402
from scenarios.loader import load_scenario  # noqa: E402

BUDGET = 200_000_000  # states: every ladder cell the bench measures completes far below it


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(params: dict[str, int], traced: bool) -> dict:
    sc = load_scenario("ladder", params)
    cfg = Config(ordering="delayed")
    explore(sc, cfg, "dfs", budget=10)  # imports, the compiled modules and the first allocations: not the search's
    gc.collect()
    before = resident_bytes()
    if traced:
        tracemalloc.start()
    t0 = time.process_time()
    r = explore(sc, cfg, "dfs", budget=BUDGET, measure_memory=True)
    cpu = time.process_time() - t0
    out = {"states": r.states, "transitions": r.transitions, "complete": r.complete, "cpu": round(cpu, 2),
           "visited_bytes": r.stored_bytes}
    if traced:
        out["traced_peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    else:
        out["rss_growth"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return out


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]), "--traced" in sys.argv[2:])))
