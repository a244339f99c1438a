"""How many states two stronger reductions would save: upper-bound measurements, never searches to trust.

Two experiments, each run against the explorer's own search on the same ladder cells (counts only):

``--futures`` (the default): per-position futures, below.

``--lipton``: every release (spin_unlock, folio_unlock, up_read, up_write) runs in one transition with the step
before it (Lipton's reduction: a release is a left mover), on top of what the explorer joins itself
(controlled.lock_joins: the acquires, and the releases after a step whose result the path does not read).
Patched into the machine without telling the reducer, whose footprints then miss the joined releases: the count
is a rough indicator, not a bound. What is left to join soundly: spin_unlock (the oracle's check there reads the
table's PTEs and mapcounts, which a mutant changes outside the PTL) and releases after a step whose result is
read (the block would depend on the state).

Per-position futures.

The partial-order reduction (controlled.reduction) judges what another thread may still do by the footprints of
its whole remaining operations: a zapper that has already cleared its PTEs and dropped the PTL still "may" clear
PTEs and take the PTL until its madvise returns, so every step that touches those conflicts with it and both
interleavings are tried. A future per step position (what the rest of the current operation, from the step the
thread waits at, may touch, then the whole operations after it) would let far more steps go alone.

This script estimates that gain before anyone builds it soundly. It learns each position's rest-of-operation
footprint from random runs (``--learn`` of them, a seeded random.Random) and searches with those learned futures
in place of the operation's. Learned from samples, they may miss a step some run takes: the search is then
UNSOUND, so this is a measurement of what a sound per-position future could reach, not a reduction. The search
counts are printed against the explorer's own on the same cell. It patches controlled.reducer from outside and
runs the modules as Python (TLBRACE_PURE_PYTHON=1): only state counts are compared, never times.

A sound version needs each position's rest-of-operation footprint over every result its remaining steps may
return (the kernel path generator replayed on each result an op's semantics allows, capped, with the
operation's footprint as the fallback); see the issue note of the session that measured this.

Usage: python bench/reduction_potential.py [--lipton] [--learn N] [--ordering delayed|eager] CELL_JSON ...
  e.g. '{"pages": 1, "writers": 2, "stores": 1, "passes": 2}' (a ladder cell)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from collections import defaultdict

os.environ["TLBRACE_PURE_PYTHON"] = "1"  # the patch below replaces methods of plain Python classes
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from controlled import machine, reducer  # noqa: E402
from controlled.depth_first import ExploreResult  # noqa: E402
from controlled.coverings import covering  # noqa: E402
from controlled.explorer import explore  # noqa: E402
from controlled.machine import Machine  # noqa: E402
from controlled.op_footprints import add_mode  # noqa: E402
from controlled.reduction import conflict  # noqa: E402
from kernel_model.config import Config  # noqa: E402
from kernel_model.program import Scenario  # noqa: E402
from kernel_model.ops import Footprint  # noqa: E402
from scenarios.loader import load_scenario  # noqa: E402

Suffixes = dict[tuple[int, int], Footprint]  # (thread, step id) -> what the rest of its operation touched


def learn_suffixes(scenario: Scenario, cfg: Config, runs: int, seed: int) -> Suffixes:
    """Each position's rest-of-operation footprint, as seen on ``runs`` random runs: the union of the footprints
    of the steps the thread took from that position to the end of the operation (its retries included)."""
    rng = random.Random(seed)
    suffixes: Suffixes = {}
    for _ in range(runs):
        m = Machine(scenario, cfg, reduce=True)
        trails: dict[int, list[tuple[int, int, Footprint]]] = defaultdict(list)
        while (enabled := m.enabled_all()):
            tr = rng.choice(enabled)
            if tr[0] == "t":
                p = m.pos[tr[1]]
                fp = m.footprints.step_footprint(tr[1], p.step, [f.index for f in m.state.folios], m.state,
                                                 covering(m.oracle, tr[1], p.step))
                trails[tr[1]].append((p.sid, p.pc[0], dict(fp or {})))
            m.execute(tr)
        for tid, trail in trails.items():
            rest: Footprint = {}
            op_index = None
            for sid, index, fp in reversed(trail):
                if index != op_index:
                    rest, op_index = {}, index
                for obj, mode in fp.items():
                    add_mode(rest, obj, mode)
                known = suffixes.setdefault((tid, sid), {})
                for obj, mode in rest.items():
                    add_mode(known, obj, mode)
    return suffixes


class _Rest:
    """A learned rest-of-operation footprint followed by the operations after it (a FutureAt's interface)."""

    __slots__ = ("rest", "after")

    def __init__(self, rest: Footprint, after: object) -> None:
        self.rest, self.after = rest, after

    def get(self, obj: tuple, default: str | None = None) -> str | None:
        a, b = self.rest.get(obj), self.after.get(obj)  # type: ignore[attr-defined]
        if a is None or b is None or a == b:
            mode = a if b is None else b
            return default if mode is None else mode
        return "w"

    def conflicts(self, fp: Footprint) -> bool:
        for obj, ma in fp.items():
            mb = self.get(obj)
            if mb is not None and (ma == "w" or mb == "w" or ma != mb):
                return True
        return False


_LEARNED: Suffixes = {}  # what the patched reducer uses (empty: the explorer's own futures)


def patch_reducer() -> None:
    """Patch the reducer: a thread's future is its learned rest of operation (_LEARNED), then its later
    operations (the operation's whole footprint where nothing was learned). Memo keys gain each thread's step
    id."""
    plain_others = reducer.Reducer._others

    def _others(self, threads, hit_bits, queued):  # type: ignore[no-untyped-def]
        return self._parts[(plain_others(self, threads, hit_bits, queued), tuple(p.sid for p in self.pos))]

    def _thread_relations(self, sig, fp, skip, threads, hits):  # type: ignore[no-untyped-def]
        fps, definite, conditional = self.footprints, 0, 0
        for tid, pc in threads:
            if tid == skip:
                continue
            sid = self.pos[tid].sid
            f = self._futures[tid]  # the explorer's own future per position (controlled.position_futures)
            pair = (sig, tid, pc, sid, 0 if f is None else f.number, hits[tid])
            rel = self._relation_memo[pair]
            if rel is reducer.MISSING:
                rest = _LEARNED.get((tid, sid))
                own = fps.future(tid, pc) if f is None else f
                future = own if rest is None else _Rest(rest, fps.future(tid, pc + 1))
                rel = 0
                if future.conflicts(fp):
                    hit = fps.hit_future(tid, pc, self.pos[tid].step, self.state) if hits[tid] else None
                    rel = reducer.CONFLICT_UNLESS if hit is not None and not conflict(fp, hit) else reducer.CONFLICT
                self._relation_memo.put(pair, rel)
            if rel == reducer.CONFLICT:
                definite |= 1 << tid
            elif rel:
                conditional |= 1 << tid
        return definite, conditional

    reducer.Reducer._others = _others
    reducer.Reducer._thread_relations = _thread_relations


_RELEASES = frozenset({"spin_unlock", "folio_unlock", "up_read", "up_write"})


def patch_lipton() -> None:
    """Join every release to the step before it, on top of the joins the explorer makes itself
    (controlled.lock_joins: acquires, and releases after a step whose result the path does not read)."""
    run_step = machine.Machine._run_step

    def _run_step(self, tid, violations):  # type: ignore[no-untyped-def]
        run_step(self, tid, violations)
        p = self.pos[tid]
        while p.step is not None and p.step.op in _RELEASES and not violations:
            self._run_one_step(tid, violations)
            p = self.pos[tid]

    machine.Machine._run_step = _run_step


def _kinds(result: ExploreResult) -> str:
    kinds = sorted({v.invariant for f in result.found for v in f.violations})
    return ",".join(kinds) or "none"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cells", nargs="+", help="ladder cells as JSON objects of params")
    ap.add_argument("--learn", type=int, default=3000, help="random runs to learn from (default 3000)")
    ap.add_argument("--ordering", default="delayed")
    ap.add_argument("--budget", type=int, default=3_000_000)
    ap.add_argument("--lipton", action="store_true", help="the Lipton experiment instead of per-position futures")
    args = ap.parse_args()
    cfg = Config(ordering=args.ordering)
    cells = [load_scenario("ladder", json.loads(c)) for c in args.cells]
    plain = [explore(sc, cfg, "dfs", budget=args.budget, stop_at_first=False, hash_compact=True) for sc in cells]
    if args.lipton:
        patch_lipton()
        print(f"ladder, {args.ordering}, dfs, sleep sets, hash compaction; releases joined too (Lipton)")
        for text, sc, base in zip(args.cells, cells, plain):
            r = explore(sc, cfg, "dfs", budget=args.budget, stop_at_first=False, hash_compact=True)
            print(f"{text:<48} {base.states:>10,} {base.transitions:>12,} -> {r.states:>10,} {r.transitions:>12,} "
                  f"transitions x{r.transitions / base.transitions:.2f}  {_kinds(base)} / {_kinds(r)}", flush=True)
        return
    learned = [learn_suffixes(sc, cfg, args.learn, seed=1) for sc in cells]
    patch_reducer()  # with nothing learned yet it is the explorer's own search: the same counts
    same = [explore(sc, cfg, "dfs", budget=args.budget, stop_at_first=False, hash_compact=True) for sc in cells]
    print(f"ladder, {args.ordering}, dfs, sleep sets, hash compaction; learned from {args.learn} random runs")
    print(f"{'cell':<48} {'states':>10} {'transitions':>12} {'learned states':>15} {'transitions':>12} "
          f"{'ratio':>6}  verdicts")
    for text, sc, base, check, suffixes in zip(args.cells, cells, plain, same, learned):
        assert (check.states, check.transitions) == (base.states, base.transitions), "the patch changed the search"
        _LEARNED.clear()
        _LEARNED.update(suffixes)
        r = explore(sc, cfg, "dfs", budget=args.budget, stop_at_first=False, hash_compact=True)
        print(f"{text:<48} {base.states:>10,} {base.transitions:>12,} {r.states:>15,} {r.transitions:>12,} "
              f"{r.transitions / base.transitions:>6.2f}  {_kinds(base)} / {_kinds(r)}"
              f"{'' if base.complete and r.complete else ' (incomplete)'}", flush=True)


if __name__ == "__main__":
    main()
