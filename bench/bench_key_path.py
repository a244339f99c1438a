"""The exhaustive DFS's visited-key path (issue 17), in this tree and in another, back to back.

Each child state a DFS reaches is turned into what the visited set stores: Machine.canonical (store values
renamed, interchangeable writers put in their orbit's order: controlled.canonical, controlled.symmetry), then the
exact keys' encoding (controlled.visited.CompactKeys) or a 64-bit hash (--hash-compact). On ladder pages=2
writers=2 that path was a quarter of the search's time. This prints, for one ladder cell (delayed ordering):
- the key path per child state: the first KEYS child keys of the cell's DFS are recorded, then canonicalised and
  encoded again with fresh tables, as the search would (canonical, exact encode, hash);
- the whole search (what `tlbrace explore ladder ... --ordering delayed --strategy dfs` runs): states,
  transitions, CPU seconds, states per CPU second.
With ``--against PYTHON:TREE`` (e.g. main's worktree and its venv) the same is measured there too, in a child
process run right after this one, and the ratios printed: the machine may be shared, so the load average before
and after each is printed with it, and the figures compare only runs made back to back.

Session 16, ladder pages=2 writers=2 stores=1 passes=1 against main 025db45 (2 cores shared, load average 1.9
to 8.8 across the runs): the key path 32.9 -> 14.6 us per child key (canonical 14.7 -> 6.3, exact encode 18.2 ->
3.2; the Python encode in the same process 12.5); the whole search in this script 11,641 -> 11,494 states per
CPU second (no gain measured there, at a load that rose from 5 to 9 during main's run), while `tlbrace explore`
itself, run alternately, took 22.0 and 20.0 s of CPU against main's 27.4 and 23.0 s (load 8 to 12). Both find
333,491 states and 483,331 transitions.

Usage: python bench/bench_key_path.py ['{"pages": 2, "writers": 2, "stores": 1, "passes": 1}'] [--keys N]
       [--against /work/main/.venv/bin/python:/work/main] [--no-search]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controlled.machine import Machine

CELL = {"pages": 2, "writers": 2, "stores": 1, "passes": 1}
KEYS = 100_000


def measure(params: dict[str, int], nkeys: int, search: bool) -> dict:
    """The key path's cost per key, and the whole search's rate, in the tree this process imports."""
    from controlled.explorer import explore
    from controlled.machine import Machine
    from controlled.visited import CompactKeys, encoder
    from kernel_model.compiled import compiled_modules
    from kernel_model.config import Config
    from scenarios.loader import load_scenario

    scenario, cfg = load_scenario("ladder", params), Config(ordering="delayed")
    out: dict = {"compiled_modules": len(compiled_modules())}

    def machine() -> Machine:
        return Machine(scenario, cfg, reduce=True)

    result = explore(scenario, cfg, "dfs", budget=10)  # imports and first allocations, as memory_per_state does
    del result
    keys = child_keys(machine(), nkeys)
    out["keys"] = len(keys)
    gc.disable()
    try:
        m = machine()
        canonical = _timed(m.canonical, keys)
        out["canonical_us"] = canonical[0]
        forms = canonical[1]
        out["encode_us"] = _timed(CompactKeys().encode, forms)[0]
        if "compiled" in CompactKeys.__init__.__code__.co_varnames:  # a tree with the compiled encode
            out["encode_python_us"] = _timed(CompactKeys(compiled=False).encode, forms)[0]
        out["hash_us"] = _timed(hash, forms)[0]
        m = machine()
        out["key_path_us"] = _timed(encoder(m.canonical, CompactKeys()), keys)[0]
    finally:
        gc.enable()
    del keys, forms
    gc.collect()
    if search:
        t0 = time.process_time()
        r = explore(scenario, cfg, "dfs", budget=10 ** 9)
        cpu = time.process_time() - t0
        out.update(states=r.states, transitions=r.transitions, complete=r.complete, search_cpu=round(cpu, 2),
                   states_per_s=round(r.states / cpu))
    return out


def child_keys(m: Machine, nkeys: int) -> list[tuple]:
    """The first ``nkeys`` child keys (Machine.key) of the DFS the search runs from the state ``m`` is in (sleep
    sets on, as explore's dfs), in the order it reaches them."""
    from controlled.depth_first import depth_first, root_entry
    from controlled.sleep_sets import SleepSets
    from controlled.visited import CompactKeys, adder, encoder

    canon = encoder(m.canonical, CompactKeys())
    seen = {canon(m.key())}
    recorded: list[tuple] = []

    def recording(key: tuple) -> object:
        recorded.append(key)
        return canon(key)

    depth_first(m, recording, adder(seen), [root_entry(m)], [], _Counts(), False, lambda: len(recorded) < nkeys,
                16, SleepSets(m))
    return recorded[:nkeys]


class _Counts:
    """What depth_first counts into (an ExploreResult's counters), for the recording run."""

    transitions = schedules = merged = 0
    found: list = []


def _timed(f, xs: list) -> tuple[float, list]:
    """Microseconds per call of ``f`` over ``xs``, and the results."""
    t0 = time.perf_counter()
    out = [f(x) for x in xs]
    return round((time.perf_counter() - t0) / len(xs) * 1e6, 3), out


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cell", nargs="?", default=json.dumps(CELL), help="ladder parameters, as JSON")
    ap.add_argument("--keys", type=int, default=KEYS, help="child keys to record and time")
    ap.add_argument("--against", help="PYTHON:TREE: measure that tree too, with that interpreter, right after")
    ap.add_argument("--no-search", action="store_true", help="time the key path only, not the whole search")
    ap.add_argument("--tree", help=argparse.SUPPRESS)  # the child: import from this tree, print JSON
    args = ap.parse_args()
    params = json.loads(args.cell)
    tree = args.tree or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, tree)
    if args.tree:
        print(json.dumps(measure(params, args.keys, not args.no_search)))
        return
    runs = [("this tree", sys.executable, tree)]
    if args.against:
        python, _, other = args.against.partition(":")
        runs.append((other, python, other))
    results = []
    for label, python, where in runs:
        before = load()
        cmd = [python, os.path.abspath(__file__), args.cell, "--keys", str(args.keys), "--tree", where]
        if args.no_search:
            cmd.append("--no-search")
        done = subprocess.run(cmd, cwd=where, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{label}: load average {before} -> {load()}: {results[-1]}")
    if len(results) == 2:
        new, old = results
        for field in ("canonical_us", "encode_us", "hash_us", "key_path_us"):
            print(f"{field:14s} {old[field]:8.2f} -> {new[field]:8.2f}   {old[field] / new[field]:.2f}x")
        if "states_per_s" in new and "states_per_s" in old:
            same = (new["states"], new["transitions"]) == (old["states"], old["transitions"])
            print(f"whole search: {old['states_per_s']:,} -> {new['states_per_s']:,} states/s "
                  f"({new['states_per_s'] / old['states_per_s']:.2f}x; same states and transitions: {same})")


if __name__ == "__main__":
    main()
