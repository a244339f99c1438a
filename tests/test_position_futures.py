"""Futures per position (controlled.position_futures) and the op table's result lists they are built from.

The reduction trusts both: a result an op returns outside its declared list, or a step a thread takes outside
the future of a position it passed, would let the search skip interleavings it must try. Random runs over the
library, every arch, both orderings and the mutants check each claim on what actually happens; the search
matrices (test_sleep_sets, test_merge_chains) then compare end states and verdicts with the full search.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from controlled.coverings import covering
from controlled.machine import Machine
from controlled.position_futures import PositionFuture
from controlled.reduction import conflict
from kernel_model.config import Config
from kernel_model.mutants import REGISTRY
from kernel_model.ops import RESULTS
from scenarios.loader import load_scenario

LIBRARY = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "scenarios" / "library").glob("*.toml"))
UNSEEN = sorted(str(p) for p in (Path(__file__).resolve().parent / "scenarios").glob("unseen*.toml"))
CONFIGS = [{"ordering": "delayed"}, {"ordering": "eager"}, {"arch": "up"}, {"arch": "s390"}] + \
    [{"mutant": m.name} for m in REGISTRY]


def _runs(name: str, over: dict, runs: int, seed: int, params: dict | None = None):
    """Machines of random runs of scenario ``name`` under ``over`` (seeded), each with a callback per transition:
    yields (machine, transition) before each transition runs, then runs it."""
    sc = load_scenario(name, params)
    cfg = Config.from_dict({**sc.config, **over})
    rng = random.Random(seed)
    for _ in range(runs):
        m = Machine(sc, cfg, record=True, reduce=True)
        for _ in range(3_000):
            enabled = m.enabled_all()
            if m.run_ends(enabled):
                break
            tr = rng.choice(enabled)
            yield m, tr
            if m.execute(tr):
                break


@pytest.mark.parametrize("name", LIBRARY + UNSEEN, ids=lambda name: Path(name).stem)
def test_every_result_is_in_its_ops_declared_list(name):
    """Each step an op table entry lists results for returns one of them, in every configuration."""
    checked = 0
    for n, over in enumerate(CONFIGS):
        machines = {id(m): m for m, _ in _runs(name, over, 4, n)}  # each run's machine, its events recorded
        for m in machines.values():
            for ev in m.events:
                listed = RESULTS[ev.op](m.footprints, ev.args) if ev.kind == "step" and ev.op in RESULTS else None
                if listed is not None:
                    assert ev.result in listed, (name, over, ev.fn, ev.op, ev.args, ev.result, listed)
                    checked += 1
    assert checked > 0, f"{name}: no step with a result list ran"


def _inside(fp: dict, future: PositionFuture) -> list:
    return [(obj, mode, future.get(obj)) for obj, mode in fp.items()
            if obj != ("preempt",) and future.get(obj) not in (mode, "w")]


# The two zaps of many pages at 16 pages, not their library 64: the zap still force-flushes every MMU_GATHER_BUNDLE
# (8) pages, and each step's footprint is looked at for every future a thread passed, so the check's cost grows
# with the pages (13.1 s of CPU for the two at 64 pages, 2.3 s at 16: session 15).
FEWER_PAGES = {"scale_zap": {"pages": 16, "ptes_per_table": 16}, "zap_many_pages": {"pages": 16}}


@pytest.mark.parametrize("name", ["madv_dontneed", "munmap", "ladder", "mkclean_first", "writable_clean",
                                  "mprotect_reclaim", "parallel_dontneed", "zap_many_pages", "scale_zap",
                                  "mremap_writeback"])
def test_every_step_stays_inside_the_futures_of_the_positions_before_it(name):
    """A thread's future from a position covers every step it takes from there on, to the end of its program."""
    listed = 0
    for n, over in enumerate(CONFIGS):
        passed: dict[int, list[PositionFuture]] = {}
        m_seen = None
        for m, tr in _runs(name, over, 6, 100 + n, FEWER_PAGES.get(name)):
            if m is not m_seen:
                passed, m_seen = {}, m
            futures = m.reducer.position_futures.of_state(m.pos, m.state, m.oracle.covered, [])
            for tid, f in enumerate(futures):
                if f is not None and (not passed.get(tid) or passed[tid][-1] is not f):
                    passed.setdefault(tid, []).append(f)
                    listed += 1
            if tr[0] != "t":
                continue
            tid = tr[1]
            p = m.pos[tid]
            index_of = [f.index for f in m.state.folios]
            for step in p.steps:
                fp = m.footprints.step_footprint(tid, step, index_of, m.state, covering(m.oracle, tid, step)) or {}
                for f in passed.get(tid, []):
                    assert not _inside(fp, f), (name, over, step, _inside(fp, f))
                break  # a joined step's footprint is taken in the state after the acquire: checked when it runs
    assert listed > 0, f"{name}: no position had a listed future"


def test_a_listed_future_is_smaller_than_its_operations():
    """On the canonical race the zapper's tail (flush done, PTL dropped) no longer touches PTEs: its position
    future says so, where its operation's future does not; a write fault's PTE write conflicts only with the
    latter."""
    sc = load_scenario("madv_dontneed")
    m = Machine(sc, Config.from_dict({**sc.config, "ordering": "delayed"}), reduce=True)
    zapper = next(i for i, t in enumerate(sc.threads) if t.name.startswith("zapper"))
    tail = None
    for _ in range(500):
        enabled = m.enabled_all()
        if m.run_ends(enabled) or m.pos[zapper].step is None:
            break
        if any(step.op == "up_read" for step in m.pos[zapper].steps):  # (joined to the step before: lock_joins)
            tail = m.reducer.position_futures.of_state(m.pos, m.state, m.oracle.covered, [])[zapper]
            break
        tr = next((t for t in enabled if t[0] == "t" and t[1] == zapper),  # the zapper alone, and its IPIs
                  next((t for t in enabled if t[0] == "i"), enabled[0]))
        m.execute(tr)
    assert tail is not None, "the zapper never reached its up_read with a listed future"
    pte_write = {("pte", 0): "w"}
    assert conflict(pte_write, m.footprints.future(zapper, m.pos[zapper].op_index))
    assert not tail.conflicts(pte_write)
