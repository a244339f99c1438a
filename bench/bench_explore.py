"""How fast the controlled explorer is, on this machine, printed (never asserted).

1. End to end, process start included: `tlbrace explore madv_dontneed` finding the eager counterexample, and
   proving the delayed ordering exhaustively.
2. The size ladder: one parameterised scenario (`ladder`: pages 1-2 x writer CPUs 1-2 x writeback passes 1-2,
   two stores each), exhaustive DFS of the delayed ordering with hash compaction, on one process and on one
   worker per core (kernel_model.parallel_search), with states per second. "Two stores each": each writer
   stores twice in all, so once to each page when there are two (ladder `stores` = stores per page = 2 / pages).
   A last row runs the heavier reading (two stores per page: four per writer on two pages) under the same limit.
3. The baseline for states/s: the same machine stepping along one random schedule with no search (how fast a
   bare transition is), so the search's overhead shows as a ratio.
4. Which hot modules run compiled (setup.py compiles them with Cython), and what that buys: one ladder cell run
   compiled and as Python (TLBRACE_PURE_PYTHON=1), back to back.

Usage: python bench/bench_explore.py [--limit SECONDS] [--workers N]
   (--limit: per ladder cell, default 600; --workers: default one per core)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kernel_model import compiled  # noqa: E402
from kernel_model.compiled import HOT_MODULES  # noqa: E402
from kernel_model.config import Config  # noqa: E402
from kernel_model.explorer import explore  # noqa: E402
from kernel_model.machine import Machine  # noqa: E402
from scenarios.loader import load_scenario  # noqa: E402


def end_to_end(ordering: str) -> tuple[float, dict]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "scenarios.cli", "explore", "madv_dontneed", "--ordering", ordering,
                          "--json", "--out", "/tmp/tlbrace-bench-out"], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return time.perf_counter() - t0, json.loads(out.stdout)


def bare_transitions_per_second(seconds: float = 2.0) -> float:
    sc = load_scenario("ladder", {"writers": 2})
    rng = random.Random(0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        m = Machine(sc, Config())
        while (enabled := m.enabled()):
            m.execute(rng.choice(enabled))
            m.key()
            n += 1
    return n / (time.perf_counter() - t0)


COMPARE_CELL = {"pages": 1, "writers": 2, "passes": 1, "stores": 2}


def cell_in_subprocess(params: dict[str, int], pure: bool) -> tuple[int, float]:
    """States and states/s of one exhaustive ladder cell in a fresh process (the source or the compiled build)."""
    code = ("import json, sys; from kernel_model.config import Config; from kernel_model.explorer import explore; "
            "from scenarios.loader import load_scenario; "
            "r = explore(load_scenario('ladder', json.loads(sys.argv[1])), Config(ordering='delayed'), 'dfs', "
            "budget=200_000_000, hash_compact=True); print(json.dumps([r.states, r.states / r.seconds]))")
    env = {**os.environ, compiled.PURE_ENV: "1" if pure else "0"}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(params)], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), check=True)
    states, rate = json.loads(out.stdout)
    return states, rate


def ladder_cell(params: dict[str, int], workers: int, limit: float) -> tuple[object, float]:
    sc = load_scenario("ladder", params)
    r = explore(sc, Config(ordering="delayed"), "dfs", budget=200_000_000, time_limit=limit, hash_compact=True,
                workers=workers)
    return r, (r.states / r.seconds if r.seconds else 0.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=float, default=600.0, help="seconds per ladder cell (default 600)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel workers (default: cores)")
    args = ap.parse_args()
    print("== end to end (process start included) ==")
    for ordering, goal in (("eager", 1.0), ("delayed", 5.0)):
        secs, doc = end_to_end(ordering)
        found = ", ".join(v["invariant"] for v in doc["violations"]) or "no violation"
        print(f"madv_dontneed {ordering:8s}: {secs:6.2f} s (goal < {goal:.0f} s)  {found}; "
              f"complete={doc['complete']} states={doc['states']}")
    modules = compiled.compiled_modules()  # the imports at the top load every hot module
    print(f"\n== kernel_model hot modules compiled with Cython: {len(modules)} of {len(HOT_MODULES)} "
          f"({', '.join(modules) or 'none: run bash scripts/setup.sh'}) ==")
    print("compiled vs the same code as Python (TLBRACE_PURE_PYTHON=1), one ladder cell "
          f"{COMPARE_CELL}, one process each, back to back:")
    rates = {pure: cell_in_subprocess(COMPARE_CELL, pure) for pure in (False, True)}
    for pure, (states, rate) in rates.items():
        print(f"  {'Python  ' if pure else 'compiled'}: {states:,} states, {rate:,.0f} states/s")
    print(f"  compiled / Python: {rates[False][1] / rates[True][1]:.2f}")
    base = bare_transitions_per_second()
    print(f"\n== baseline: bare machine transitions (+ state key), no search: {base:,.0f}/s ==")
    print(f"\n== ladder: exhaustive DFS with hash compaction, delayed ordering; 1 process, then {args.workers} "
          f"workers ==")
    print(f"{'pages':>5} {'writers':>7} {'passes':>6} {'stores':>6} {'complete':>8} {'states':>11} "
          f"{'1 proc s':>8} {'states/s':>9} {'vs bare':>7} {'workers s':>9} {'states/s':>9} {'vs bare':>7} "
          f"{'collision bound':>15}")
    cells = [(pages, writers, passes, 2 // pages) for pages in (1, 2) for writers in (1, 2) for passes in (1, 2)]
    cells.append((2, 2, 2, 2))  # the heavier reading: two stores per page
    for pages, writers, passes, stores in cells:
        params = {"pages": pages, "writers": writers, "passes": passes, "stores": stores}
        largest = (pages, writers, passes) == (2, 2, 2)
        one = None if largest else ladder_cell(params, 1, args.limit)  # the largest: workers only
        r, rate = ladder_cell(params, args.workers, args.limit)
        one_s = (f"{one[0].seconds:>8.1f} {one[1]:>9,.0f} {one[1] / base:>7.2f}" if one
                 else f"{'-':>8} {'-':>9} {'-':>7}")
        print(f"{pages:>5} {writers:>7} {passes:>6} {stores * pages:>6} {str(r.complete):>8} {r.states:>11,} "
              f"{one_s} {r.seconds:>9.1f} {rate:>9,.0f} {rate / base:>7.2f} {r.collision_bound:>15.1e}",
              flush=True)
    print("\n(stores: per writer, in all.) Goal: >= 50,000 states/s, and the largest cell (2 x 2 x 2, two stores"
          " each) complete in under 10 minutes. What limits a process: every state is rebuilt from its hashable"
          " key (State.from_key), every transition builds a new key, its canonical form (store values renamed,"
          " interchangeable writers ordered) and the reduction's memo key, in CPython (the hot modules compiled"
          " by Cython, still on Python objects); the workers add cores, the reductions (persistent sets, value"
          " renaming, writer symmetry) cut states.")


if __name__ == "__main__":
    main()
