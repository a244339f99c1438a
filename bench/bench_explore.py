"""How fast the controlled explorer is, on this machine, printed (never asserted).

1. End to end, process start included: `tlbrace explore madv_dontneed` finding the eager counterexample, and
   proving the delayed ordering exhaustively.
2. The size ladder: one parameterised scenario (`ladder`: pages 1-2 x writer CPUs 1-2 x writeback passes 1-2,
   two stores each), exhaustive DFS of the delayed ordering with hash compaction, on one process and on one
   worker per core (controlled.parallel_search), with states per second. "Two stores each": each writer
   stores twice in all, so once to each page when there are two (ladder `stores` = stores per page = 2 / pages).
   A last row runs the heavier reading (two stores per page: four per writer on two pages) under the same limit.
3. The baseline for states/s: the same machine stepping along one random schedule with no search (how fast a
   bare transition is), so the search's overhead shows as a ratio.
4. Which hot modules run compiled (setup.py compiles them with Cython), and what that buys: one ladder cell run
   compiled and as Python (TLBRACE_PURE_PYTHON=1), back to back.
5. Memory: bytes per stored state of the whole search with exact keys (issue 17's goal: at most 400), on two
   ladder cells, each in a fresh process (bench/memory_per_state.py: RSS growth, and tracemalloc's peak on the
   first), next to the visited set's own accounting (every object it keeps alive counted once), which every
   ladder row prints too; and on one cell the visited set for the three encodings: the canonical key tuples
   stored before, the exact compact keys, 64-bit hashes.
6. One process against the workers, per cell: wall and CPU time, CPU per state, the speed-up (and the load).
7. The largest cell's proof, end to end (process start included): `tlbrace explore ladder --param pages=2 --param
   writers=2 --param stores=1 --param passes=2 --ordering delayed --strategy dfs`, one process with hash
   compaction, then with exact keys with and without sleep sets, then on the workers with and without sleep sets
   (controlled.shared_sleep_sets): the wall time against
   issue 17's goal (18 s: 3x SPIN's 5.8-6.1 s on this machine); also with --merge-chains (states with a single
   transition to try run through, not stored: fewer states held).

Usage: python bench/bench_explore.py [--limit SECONDS] [--largest-limit SECONDS] [--workers N] [--quick]
   (--limit: per ladder cell, default 600; --largest-limit: per run of the largest cell's proof, default 1800,
   after which it is reported unfinished; --workers: default one per core; --quick: skip the largest cell's
   proof, the largest ladder rows, the compiled-vs-Python comparison and the tracemalloc measure). The load
   average is printed at the start and before each largest-cell run: the machine may be shared, and every
   figure here is wall time (but the memory section's CPU seconds).
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

from controlled.depth_first import ExploreResult, dfs_holding  # noqa: E402
from controlled.explorer import explore  # noqa: E402
from controlled.parallel_bench import bench_row  # noqa: E402
from controlled.machine import Machine  # noqa: E402
from controlled.visited import CompactKeys, HashKeys, Keys, TupleKeys  # noqa: E402
from kernel_model import compiled  # noqa: E402
from kernel_model.compiled import HOT_MODULES  # noqa: E402
from kernel_model.config import Config  # noqa: E402
from scenarios.loader import load_scenario  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LARGEST = {"pages": 2, "writers": 2, "stores": 1, "passes": 2}
LARGEST_GOAL = 18.0  # seconds: 3x SPIN's 5.8-6.1 s for the same proof on this machine (issue 17)
BYTES_GOAL = 400  # bytes per stored state with exact keys (issue 17: 4x SPIN's 96-byte state vector)


def end_to_end(ordering: str) -> tuple[float, dict]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "cli.main", "explore", "madv_dontneed", "--ordering", ordering,
                          "--json", "--out", "/tmp/tlbrace-bench-out"], capture_output=True, text=True,
                         cwd=ROOT)
    return time.perf_counter() - t0, json.loads(out.stdout)


def bare_transitions_per_second(seconds: float = 2.0) -> float:
    """Transitions a second along random runs, each with its state key, building the machine left out: a run
    here is about 38 transitions and building its machine (boot) about a fifth of the time, which a search pays
    once (measured: 32,293/s with building, 41,653/s without, at load 1.9)."""
    sc = load_scenario("ladder", {"writers": 2})
    rng = random.Random(0)
    n, building, t0 = 0, 0.0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        b0 = time.perf_counter()
        m = Machine(sc, Config())
        building += time.perf_counter() - b0
        while (enabled := m.enabled()):
            m.execute(rng.choice(enabled))
            m.key()
            n += 1
    return n / (time.perf_counter() - t0 - building)


COMPARE_CELL = {"pages": 1, "writers": 2, "passes": 1, "stores": 2}


def cell_in_subprocess(params: dict[str, int], pure: bool) -> tuple[int, float]:
    """States and states/s of one exhaustive ladder cell in a fresh process (the source or the compiled build)."""
    code = ("import json, sys; from kernel_model.config import Config; from controlled.explorer import explore; "
            "from scenarios.loader import load_scenario; "
            "r = explore(load_scenario('ladder', json.loads(sys.argv[1])), Config(ordering='delayed'), 'dfs', "
            "budget=200_000_000, hash_compact=True); print(json.dumps([r.states, r.states / r.seconds]))")
    env = {**os.environ, compiled.PURE_ENV: "1" if pure else "0"}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(params)], capture_output=True, text=True, env=env,
                         cwd=ROOT, check=True)
    states, rate = json.loads(out.stdout)
    return states, rate


def ladder_cell(params: dict[str, int], workers: int, limit: float, hash_compact: bool) -> ExploreResult:
    """One exhaustive DFS of a ladder cell, delayed ordering; one process reports its visited set's bytes."""
    return explore(load_scenario("ladder", params), Config(ordering="delayed"), "dfs", budget=200_000_000,
                   time_limit=limit, hash_compact=hash_compact, workers=workers, measure_memory=workers == 1)


def bytes_per_state(params: dict[str, int], keys: Keys) -> tuple[int, float]:
    """States and bytes per stored state of a complete DFS of a ladder cell whose visited set holds ``keys``'
    encoding."""
    result, stored = dfs_holding(Machine(load_scenario("ladder", params), Config(ordering="delayed"), reduce=True),
                                 keys)
    return result.states, stored / result.states


def largest_end_to_end(workers: int, extra: list[str], limit: float) -> tuple[float, dict]:
    """The largest cell's proof as a user runs it: the CLI in a fresh process, wall time; stopped after
    ``limit`` seconds."""
    # DFS: a proof has no counterexample to keep short. The budget covers the cell: 21,948,951 states with sleep
    # sets (one process, hash compaction, 992 s of CPU on this machine), 24,304,955 on the workers, which have
    # none (625 s on two workers). No --memory-limit: the pre-check prices
    # what the search stores (controlled.search_memory: about 6 GB with exact keys for this budget), and refuses,
    # saying so, when the machine's available memory cannot hold it.
    argv = [sys.executable, "-m", "cli.main", "explore", "ladder", "--ordering", "delayed", "--json",
            "--out", "/tmp/tlbrace-bench-out", "--strategy", "dfs", "--budget", "40000000"]
    for name, value in LARGEST.items():
        argv += ["--param", f"{name}={value}"]
    if workers > 1:
        argv += ["--workers", str(workers)]
    argv += extra
    t0 = time.perf_counter()
    try:
        out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=limit)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - t0, {"error": [f"unfinished: stopped after {limit:.0f} s"]}
    secs = time.perf_counter() - t0
    try:
        return secs, json.loads(out.stdout)
    except ValueError:
        return secs, {"error": (out.stderr or out.stdout).strip().splitlines()[-1:]}


def print_ladder(args: argparse.Namespace, base: float) -> None:
    print(f"\n== ladder: exhaustive DFS, delayed ordering; one process with exact keys (bytes per stored state: "
          f"the visited set's own accounting), then {args.workers} workers with hash compaction ==")
    print(f"{'pages':>5} {'writers':>7} {'passes':>6} {'stores':>6} {'complete':>8} {'states':>11} "
          f"{'transitions':>11} {'1 proc s':>8} {'states/s':>9} {'vs bare':>7} {'B/state':>7} {'workers s':>9} "
          f"{'states/s':>9} {'collision bound':>15}")
    cells = [(pages, writers, passes, 2 // pages) for pages in (1, 2) for writers in (1, 2) for passes in (1, 2)]
    cells.append((2, 2, 2, 2))  # the heavier reading: two stores per page
    for pages, writers, passes, stores in cells:
        params = {"pages": pages, "writers": writers, "passes": passes, "stores": stores}
        largest = (pages, writers, passes) == (2, 2, 2)
        if largest and args.quick:
            continue
        one = None if largest else ladder_cell(params, 1, args.limit, hash_compact=False)  # largest: see below
        many = ladder_cell(params, args.workers, args.limit, hash_compact=True)
        r = one or many
        one_s = (f"{one.seconds:>8.1f} {one.states / one.seconds:>9,.0f} {one.states / one.seconds / base:>7.2f} "
                 f"{one.bytes_per_state:>7.0f}" if one else f"{'-':>8} {'-':>9} {'-':>7} {'-':>7}")
        print(f"{pages:>5} {writers:>7} {passes:>6} {stores * pages:>6} {str(r.complete):>8} {r.states:>11,} "
              f"{r.transitions:>11,} {one_s} {many.seconds:>9.1f} {many.states / many.seconds:>9,.0f} "
              f"{many.collision_bound:>15.1e}", flush=True)
    print("(stores: per writer, in all. The 2 x 2 x 2 rows run on the workers only; the one-process proof of the "
          "first is the end-to-end run below.)")


# Ladder cells whose whole search's memory the bench measures (bench/memory_per_state.py); the first also with
# tracemalloc, unless --quick.
MEMORY_CELLS = ({"pages": 1, "writers": 2, "stores": 2, "passes": 1}, {"pages": 2, "writers": 2, "stores": 1, "passes": 1})


def whole_search_memory(params: dict[str, int], traced: bool) -> dict:
    """bench/memory_per_state.py's measure of one cell, in a fresh process."""
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "memory_per_state.py"), json.dumps(params)]
                         + (["--traced"] if traced else []), capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout)


def print_memory(quick: bool) -> None:
    print(f"\n== bytes per stored state of the whole search (goal <= {BYTES_GOAL}): exhaustive DFS, exact keys, sleep "
          "sets, delayed ordering, one fresh process per figure; RSS growth = peak RSS less RSS before the search, "
          "tracemalloc = its peak during the search; both divided by the states stored ==")
    print(f"  {'cell':34s} {'states':>9} {'transitions':>11} {'visited set':>11} {'RSS growth':>10} "
          f"{'tracemalloc':>11} {'CPU s':>6}")
    for n, cell in enumerate(MEMORY_CELLS):
        rss = whole_search_memory(cell, traced=False)
        traced = whole_search_memory(cell, traced=True) if n == 0 and not quick else None
        states = rss["states"]
        traced_s = f"{traced['traced_peak'] / states:>9.0f} B" if traced else f"{'-':>11}"
        name = " ".join(f"{k}={v}" for k, v in cell.items())
        print(f"  {name:34s} {states:>9,} {rss['transitions']:>11,} {rss['visited_bytes'] / states:>9.0f} B "
              f"{rss['rss_growth'] / states:>8.0f} B {traced_s} {rss['cpu']:>6.1f}"
              + ("" if rss["complete"] else "  (incomplete)"), flush=True)
    cell = MEMORY_CELLS[0]
    print(f"\n== bytes per stored state, ladder {cell}, by what the visited set holds (the visited set alone) ==")
    for label, keys in (("canonical key tuples (before)", TupleKeys()), ("exact compact keys", CompactKeys()),
                        ("64-bit hashes (--hash-compact)", HashKeys())):
        states, per = bytes_per_state(cell, keys)
        print(f"  {label:32s}: {per:7.0f} B/state ({states:,} states)", flush=True)


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def print_largest(workers: int, limit: float, base: float) -> None:
    print(f"\n== the largest cell's proof, end to end: tlbrace explore ladder "
          f"{' '.join(f'--param {k}={v}' for k, v in LARGEST.items())} --ordering delayed --strategy dfs ==")
    runs = [("one process, hash compaction, sleep sets", 1, ["--hash-compact"]),
            ("one process, exact keys, sleep sets, --merge-chains", 1, ["--merge-chains"]),
            ("one process, exact keys, sleep sets", 1, []), ("one process, exact keys, --no-sleep-sets", 1,
                                                              ["--no-sleep-sets"])]
    if workers > 1:
        runs.append((f"--workers {workers} (hash compaction, sleep sets shared)", workers, []))
        runs.append((f"--workers {workers} --no-sleep-sets (hash compaction)", workers, ["--no-sleep-sets"]))
    transitions: list[int] = []  # of each complete run
    for how, n, extra in runs:
        print(f"  ({load()})", flush=True)
        secs, doc = largest_end_to_end(n, extra, limit)
        if "error" in doc:
            print(f"  {how}: failed after {secs:.1f} s: {doc['error']}")
            continue
        if doc["complete"]:
            transitions.append(doc.get("transitions", 0) + doc.get("merged", 0))
        found = ", ".join(v["invariant"] for v in doc["violations"]) or "no violation"
        print(f"  {how}: {secs:6.1f} s (goal <= {LARGEST_GOAL:.0f} s)  {found}; complete={doc['complete']} "
              f"states={doc['states']:,} transitions={doc.get('transitions', 0):,}"
              + (f" (and {doc['merged']:,} run through, not stored)" if doc.get("merged") else ""), flush=True)
    if transitions:
        print_floor(min(transitions), base, workers)


def print_floor(transitions: int, base: float, workers: int) -> None:
    """What running the proof's transitions alone costs, at the bare rate (a transition and its state key,
    nothing of the search): the least any search through these Python kernel paths can take."""
    one = transitions / base
    cores = max(1, workers)
    print(f"  floor: the fewest transitions of a complete run above ({transitions:,}) at the bare rate "
          f"({base:,.0f}/s, baseline above) take {one:.0f} s on one core, {one / cores:.0f} s on {cores}: "
          f"{one / cores / LARGEST_GOAL:.1f}x the goal before any search cost (state restore, canonical form, "
          "visited set, reduction)", flush=True)


# One process against the workers (controlled.parallel_bench), on the search the workers run (hash compaction,
# no sleep sets), each in a fresh process. Under a second of search the workers never fork (0.3 s seed phase);
# these cells take 5-60 s on one process.
WORKER_CELLS = [{"pages": 1, "writers": 2, "stores": 2, "passes": 1},
                {"pages": 2, "writers": 2, "stores": 1, "passes": 1}]


def print_workers(args: argparse.Namespace) -> None:
    print(f"\n== one process against {args.workers} workers: exhaustive DFS, delayed ordering, hash compaction, no "
          f"sleep sets (the workers' search), writer symmetry; CPU per state is what a state costs whatever else "
          f"shares the cores; wall time and the speed-up depend on the load ({load()}) ==")
    if args.workers < 2:
        print("  (one core: nothing to compare)")
        return
    for cell in WORKER_CELLS[:1] if args.quick else WORKER_CELLS:
        row = bench_row(load_scenario("ladder", cell), "delayed", args.workers, time_limit=args.limit)
        print("  " + row.line(), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=float, default=600.0, help="seconds per ladder cell (default 600)")
    ap.add_argument("--largest-limit", type=float, default=1800.0,
                    help="seconds per run of the largest cell's proof (default 1800)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel workers (default: cores)")
    ap.add_argument("--quick", action="store_true",
                    help="skip the largest cell's proof, the largest ladder rows and the compiled comparison")
    args = ap.parse_args()
    print(f"({load()} on {os.cpu_count()} cores)")
    print("== end to end (process start included) ==")
    for ordering, goal in (("eager", 1.0), ("delayed", 5.0)):
        secs, doc = end_to_end(ordering)
        found = ", ".join(v["invariant"] for v in doc["violations"]) or "no violation"
        print(f"madv_dontneed {ordering:8s}: {secs:6.2f} s (goal < {goal:.0f} s)  {found}; "
              f"complete={doc['complete']} states={doc['states']}")
    modules = compiled.compiled_modules()  # the imports at the top load every hot module
    print(f"\n== kernel_model hot modules compiled with Cython: {len(modules)} of {len(HOT_MODULES)} "
          f"({', '.join(modules) or 'none: run bash scripts/setup.sh'}) ==")
    if not args.quick:
        print("compiled vs the same code as Python (TLBRACE_PURE_PYTHON=1), one ladder cell "
              f"{COMPARE_CELL}, one process each, back to back:")
        rates = {pure: cell_in_subprocess(COMPARE_CELL, pure) for pure in (False, True)}
        for pure, (states, rate) in rates.items():
            print(f"  {'Python  ' if pure else 'compiled'}: {states:,} states, {rate:,.0f} states/s")
        print(f"  compiled / Python: {rates[False][1] / rates[True][1]:.2f}")
    base = bare_transitions_per_second()
    print(f"\n== baseline: bare machine transitions (+ state key), no search, machine building left out: "
          f"{base:,.0f}/s ==")
    print_ladder(args, base)
    print_memory(args.quick)
    print_workers(args)
    if not args.quick:
        print_largest(args.workers, args.largest_limit, base)
    print("\nWhat limits a process: every state is rebuilt from its hashable key (State.from_key), every "
          "transition builds a new key, its canonical form (store values renamed, interchangeable writers "
          "ordered), its compact encoding (controlled.visited) and the reduction's memo key, in CPython (the hot "
          "modules compiled by Cython, still on Python objects); the workers add cores, the reductions "
          "(persistent sets, value renaming, writer symmetry) cut states.")


if __name__ == "__main__":
    main()
