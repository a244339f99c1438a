"""Lipton's reduction in the searches (controlled.lock_joins): which steps a transition joins, and that a joined
transition is exactly the steps a step-by-step machine runs.

The search matrices (test_sleep_sets, test_merge_chains) compare end states and verdicts with the full search,
which never joins; these tests check the rules themselves on what actually happens.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from controlled.explorer import _step_by_step
from controlled.machine import Machine
from kernel_model.config import Config
from kernel_model.mutants import REGISTRY
from scenarios.loader import load_scenario

LIBRARY = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "scenarios" / "library").glob("*.toml"))
UNSEEN = sorted(str(p) for p in (Path(__file__).resolve().parent / "scenarios").glob("unseen*.toml"))
CONFIGS = [{"ordering": "delayed"}, {"ordering": "eager"}, {"arch": "up"}, {"arch": "s390"}] + \
    [{"mutant": m.name} for m in REGISTRY]
RELEASES = frozenset({"folio_unlock", "up_read", "up_write", "spin_unlock"})


def _random_schedule(m: Machine, rng: random.Random, limit: int = 3_000) -> list:
    """Run ``m`` on random transitions to its end (or a violation); the schedule it ran."""
    schedule = []
    for _ in range(limit):
        enabled = m.enabled_all()
        if m.run_ends(enabled):
            break
        tr = rng.choice(enabled)
        schedule.append(tr)
        if m.execute(tr):
            break
    return schedule


@pytest.mark.parametrize("name", LIBRARY + UNSEEN, ids=lambda name: Path(name).stem)
def test_a_joined_transition_is_the_steps_a_replay_runs(name):
    """A joining machine's run, expanded step by step (the explorer's _step_by_step, what schedules hold), gives
    a machine that never joins the same events, one by one, in every configuration."""
    sc = load_scenario(name)
    joined = 0
    for n, over in enumerate(CONFIGS):
        cfg = Config.from_dict({**sc.config, **over})
        rng = random.Random(n)
        for _ in range(2):
            m = Machine(sc, cfg, record=True, reduce=True)
            schedule = _random_schedule(m, rng)
            steps = _step_by_step(sc, cfg, schedule)
            joined += len(steps) - len(schedule)
            replay = Machine(sc, cfg, record=True)
            for tr in steps:
                replay.execute(tr)
            assert [(e.tid, e.kind, e.fn, e.op, e.args, e.result) for e in replay.events] == \
                [(e.tid, e.kind, e.fn, e.op, e.args, e.result) for e in m.events], (name, over)
    assert joined > 0, f"{name}: no transition joined two steps"


def _blocks(name: str, over: dict, runs: int = 20) -> list[tuple]:
    """(the thread's covered translations, its position) of every joined transition taken on random runs."""
    sc = load_scenario(name)
    cfg = Config.from_dict({**sc.config, **over})
    rng = random.Random(7)
    out = []
    for _ in range(runs):
        m = Machine(sc, cfg, reduce=True)
        while not m.run_ends(enabled := m.enabled_all()):
            tr = rng.choice(enabled)
            if tr[0] == "t" and m.pos[tr[1]].block:
                out.append((m.oracle.covering(tr[1]), m.pos[tr[1]]))
            if m.execute(tr):
                break
    return out


def test_releases_join_the_step_before_them():
    """On the ladder: writeback's folio_unlock after writepage, rmap_walk_file's up_read, and madvise's up_read
    that ends the call (its zapper covers nothing by then) each run with the step before them; spin_unlock never
    does (its rmap check reads PTEs another agent could change outside the PTL under a mutant)."""
    blocks = [p.block for _, p in _blocks("ladder", {"ordering": "delayed"})]
    ends = {(b[-1].fn, b[-1].op) for b in blocks if b[-1].op in RELEASES}
    assert {("writepage", "folio_unlock"), ("rmap_walk_file", "up_read"), ("madvise_dontneed", "up_read")} <= ends
    assert not any(step.op == "spin_unlock" for b in blocks for step in b[1:])


@pytest.mark.parametrize("name", ["ladder", "madv_dontneed", "munmap"])
def test_a_release_that_may_end_the_call_is_not_joined_while_the_thread_covers(name):
    """The ending variant (Resolved.uncovered) is taken only while the oracle holds no covered translation of
    the thread: with one, that release would turn it stale, which a store on another CPU could see."""
    taken = _blocks(name, {"ordering": "delayed"}) + _blocks(name, {"ordering": "eager"})
    assert any(p.base is not None for _, p in taken), f"{name}: no ending release was joined"
    for covering, p in taken:
        if covering:
            assert p.base is None, (name, p.block)  # the ending variant, taken while the thread covers


def test_settle_joins_follows_the_covered_translations():
    """Machine._settle_joins picks the ending block exactly when the thread covers nothing, both ways."""
    sc = load_scenario("ladder")
    m = Machine(sc, Config(ordering="delayed"), reduce=True)
    rng = random.Random(3)
    seen = 0
    for _ in range(40):
        m = Machine(sc, Config(ordering="delayed"), reduce=True)
        while not m.run_ends(enabled := m.enabled_all()):
            for tid, p in enumerate(m.pos):
                base = p.base or p
                if base.uncovered is None:
                    continue
                seen += 1
                saved = m.oracle.covered
                m.oracle.covered = saved | {(tid, 0, 0)}
                m._settle_joins()
                assert m.pos[tid] is base
                m.oracle.covered = frozenset(c for c in saved if c[0] != tid)
                m._settle_joins()
                assert m.pos[tid] is base.uncovered
                m.oracle.covered = saved
                m._settle_joins()
            if m.execute(rng.choice(enabled)):
                break
    assert seen > 0
