"""The DFS's per-state work outside the transitions and keys, in this tree and in another, back to back (issue 17).

Each state a DFS expands asks Machine.enabled() (the persistent set: controlled.reducer, its memo key built in every
state, the closure on a miss) and SleepSets.child_sleep_sets (the signatures of the transitions to try). This
records the first STATES child states of a ladder cell's DFS (delayed ordering, as `tlbrace explore ladder ...
--ordering delayed --strategy dfs` runs it), then, on a fresh machine, restores each in turn and times:
- Machine.restore, Machine.enabled() and SleepSets.child_sleep_sets (nothing asleep, what enabled() gave), each
  apart (``restore_us``, ``enabled_us``, ``sleep_us``), in a first pass over the states (``_cold``: the memos
  meet each state for the first time, as in the search) and a second (the memos warm).
The memos start empty and see the states in the DFS's order, as in the search. With ``--search`` the whole search
is run too (CPU seconds, states and transitions). With ``--against PYTHON:TREE`` the same is measured in that tree,
and the two run alternately ``--rounds`` times in child processes (the machine may be shared: the load average is
printed with each run, and the ratios compare medians of runs made back to back).

Session 17 (commit a03ce30 against main 6aeaf5a, ladder pages=2 writers=2 stores=1 passes=1, 2 cores shared at a
load average of 5 to 22): the ratios of three runs of 2 rounds ranged from 0.71x to 1.49x on every field, restore
included, which the change does not touch: at that load the machine's noise is larger than the change. What does
not depend on the load, valgrind's instruction count (cachegrind, `tlbrace explore ladder --param pages=1 --param
writers=2 --param stores=1 --param passes=1 --ordering delayed --strategy dfs`, start-up included): 6,372.0M on
main, 6,271.2M with it (1.6% fewer), the same 16,393 states and 23,725 transitions.

Usage: python bench/bench_per_state.py ['{"pages": 2, "writers": 2, "stores": 1, "passes": 1}'] [--states N]
       [--against /work/main/.venv/bin/python:/work/main] [--rounds R] [--search]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

from bench_key_path import child_keys, load  # this script's directory is on the path: bench/

CELL = {"pages": 2, "writers": 2, "stores": 1, "passes": 1}
STATES = 60_000
FIELDS = ("restore_us", "enabled_cold_us", "enabled_us", "sleep_cold_us", "sleep_us")


def measure(params: dict[str, int], nstates: int, search: bool) -> dict:
    """Per-state microseconds of enabled() and child_sleep_sets, and optionally the whole search, in this tree."""
    from controlled.explorer import explore
    from controlled.machine import Machine
    from controlled.sleep_sets import SleepSets
    from kernel_model.compiled import compiled_modules
    from kernel_model.config import Config
    from scenarios.loader import load_scenario

    scenario, cfg = load_scenario("ladder", params), Config(ordering="delayed")
    out: dict = {"compiled_modules": len(compiled_modules())}
    keys = child_keys(Machine(scenario, cfg, reduce=True), nstates)
    out["states"] = len(keys)
    m = Machine(scenario, cfg, reduce=True)
    sleep = SleepSets(m)
    gc.disable()
    try:
        # Two passes over the same states: the first meets each for the first time, as the search does (the
        # memos cold for it), the second finds the memos warm.
        cold, warm = _pass(m, sleep, keys), _pass(m, sleep, keys)
    finally:
        gc.enable()
    out.update(restore_us=warm[0], enabled_cold_us=cold[1], enabled_us=warm[1], sleep_cold_us=cold[2],
               sleep_us=warm[2])
    del keys
    gc.collect()
    if search:
        t0 = time.process_time()
        r = explore(scenario, cfg, "dfs", budget=10 ** 9)
        cpu = time.process_time() - t0
        out.update(search_states=r.states, search_transitions=r.transitions, search_cpu=round(cpu, 2))
    return out


def _pass(m: object, sleep: object, keys: list[tuple]) -> tuple[float, float, float]:
    """Microseconds per state of restoring it, enabled() there and child_sleep_sets (nothing asleep, what
    enabled() gave): process CPU time, since the machine may be shared."""
    from controlled.sleep_sets import NOTHING

    clock = time.process_time_ns
    spent = [0, 0, 0]
    for key in keys:
        t0 = clock()
        m.restore(key)  # type: ignore[attr-defined]
        t1 = clock()
        todo = m.enabled()  # type: ignore[attr-defined]
        t2 = clock()
        sleep.child_sleep_sets(NOTHING, todo)  # type: ignore[attr-defined]
        t3 = clock()
        spent[0] += t1 - t0
        spent[1] += t2 - t1
        spent[2] += t3 - t2
    return tuple(round(ns / len(keys) / 1000, 3) for ns in spent)  # type: ignore[return-value]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cell", nargs="?", default=json.dumps(CELL), help="ladder parameters, as JSON")
    ap.add_argument("--states", type=int, default=STATES, help="child states to record and time")
    ap.add_argument("--against", help="PYTHON:TREE: measure that tree too, alternately, with that interpreter")
    ap.add_argument("--rounds", type=int, default=1, help="runs of each tree, alternately")
    ap.add_argument("--search", action="store_true", help="also run the whole search (CPU seconds)")
    ap.add_argument("--tree", help=argparse.SUPPRESS)  # the child: import from this tree, print JSON
    args = ap.parse_args()
    if args.tree:  # a child run: measure the tree it names
        sys.path.insert(0, args.tree)
        print(json.dumps(measure(json.loads(args.cell), args.states, args.search)))
        return
    tree = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runs = [("this tree", sys.executable, tree)]
    if args.against:
        python, _, other = args.against.partition(":")
        runs.append((other, python, other))
    script = os.path.abspath(__file__)
    results: dict[str, list[dict]] = {label: [] for label, _, _ in runs}
    for _ in range(args.rounds):
        for label, python, where in runs:
            before = load()
            cmd = [python, script, args.cell, "--states", str(args.states), "--tree", where]
            if args.search:
                cmd.append("--search")
            done = subprocess.run(cmd, cwd=where, capture_output=True, text=True, check=True)
            results[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{label}: load average {before} -> {load()}: {results[label][-1]}", flush=True)
    if len(runs) == 2:
        new, old = (results[label] for label, _, _ in runs)
        fields = FIELDS + (("search_cpu",) if args.search else ())
        for name in fields:
            a, b = statistics.median(r[name] for r in old), statistics.median(r[name] for r in new)
            print(f"{name:12s} median {a:8.2f} -> {b:8.2f}   {a / b:.2f}x")
        if args.search:
            same = {(r["search_states"], r["search_transitions"]) for r in old + new}
            print(f"states and transitions of every search: {sorted(same)}")


if __name__ == "__main__":
    main()
