"""Issue 12's model bugs, each shown by a scenario of its own (tests/scenarios/, or a library scenario made for
it): the verdict the kernel gives, on every ordering and machine."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from controlled.explorer import explore
from controlled.machine import Machine
from kernel_model.config import Config
from kernel_model.program import Op, Thread
from scenarios.loader import load_scenario

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
KERNELS = [(o, a) for o in ("eager", "delayed") for a in ("smp", "up", "s390")]


@pytest.mark.parametrize("ordering, arch", KERNELS)
def test_two_faults_on_an_evicted_page_share_one_page_cache_folio(ordering, arch):
    """Point 1: filemap_add_folio's -EEXIST. Before, each fault cached a folio of its own for page 0 and the
    orphan, compared with the disk, was reported as lost_dirty_data on every kernel."""
    sc = load_scenario(str(SCENARIOS / "refault_race.toml"))
    r = explore(sc, Config(ordering=ordering, arch=arch))
    assert r.complete and not r.found, [f.violations for f in r.found]
    assert r.states > 1000  # both faults really raced (the search is not trivially small)


def _reachable_states(sc, cfg: Config):
    """Every state of the full (unreduced) search, as the machine restored to it."""
    m = Machine(sc, cfg)
    start = m.key()
    seen, todo = {start}, [start]
    while todo:
        key = todo.pop()
        m.restore(key)
        yield m
        for tr in m.enabled():
            m.restore(key)
            m.execute(tr)
            nxt = m.key()
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)


@pytest.mark.parametrize("ordering, arch", KERNELS)
def test_eviction_never_frees_a_page_a_fault_is_mapping(ordering, arch):
    """Point 2: the fault holds a folio reference from filemap_fault until the PTE has it. Before, eviction could
    free the folio between do_shared_fault's unlock and ->page_mkwrite, and the PTE then mapped a freed page with
    no invariant firing (fault_vs_evict was clean)."""
    sc = load_scenario("fault_vs_evict")
    cfg = Config(ordering=ordering, arch=arch)
    mapped_freed = states = 0
    for m in _reachable_states(sc, cfg):
        states += 1
        s = m.state
        mapped_freed += any(pte is not None and s.folios[pte.pfn].freed for pte in s.ptes)
    assert states > 20 and mapped_freed == 0
    assert not explore(sc, cfg).found


def test_a_fault_that_drops_its_reference_early_is_caught():
    sc = load_scenario("fault_vs_evict")
    r = explore(sc, Config(mutant="fault_without_page_ref"))
    assert r.found and "freed_while_mapped" in r.found[0].invariants
    assert "already freed" in r.found[0].violations[0].detail
    # The same search without the mutant does reach states where a PTE maps a freed page: the check is live.
    freed = any(pte is not None and m.state.folios[pte.pfn].freed for m in
                _reachable_states(sc, Config(mutant="fault_without_page_ref")) for pte in m.state.ptes)
    assert freed


def _random_runs(sc, cfg: Config, runs: int, seed: int):
    """Machines run to their end along seeded random schedules, with their events recorded."""
    rng = random.Random(seed)
    for _ in range(runs):
        m = Machine(sc, cfg, record=True)
        while True:
            enabled = m.enabled()
            if m.run_ends(enabled):
                break
            m.execute(rng.choice(enabled))
        yield m


def _op_results(m: Machine, thread: str) -> list:
    tid = m.scenario.thread_index(thread)
    return [e.args[0] for e in m.events if e.tid == tid and e.kind == "note" and e.op == "end"]


@pytest.mark.parametrize("ordering, arch", KERNELS)
def test_a_counter_kept_warm_by_another_thread_ends_at_its_bound(ordering, arch):
    """Point 3: under --arch up the refiller's store refills the TLB the counter shares after the zap's flush.
    Before (no max), the explorer reported a hang on up; with max = 3 the counter stops at its bound."""
    sc = load_scenario(str(SCENARIOS / "counter_kept_warm.toml"))
    r = explore(sc, Config(ordering=ordering, arch=arch))
    assert r.complete and not r.found, [f.violations for f in r.found]
    counts = [_op_results(m, "counter")[0] for m in _random_runs(sc, Config(ordering=ordering, arch=arch), 30, 3)]
    assert max(counts) == 3 and min(counts) >= 0  # it stops at its bound, or earlier when the zap ends it


def test_without_a_bound_the_kept_warm_counter_still_reports_the_livelock():
    """What max is for: the same scenario without it runs for ever on up (reported as the hang it is)."""
    sc = load_scenario(str(SCENARIOS / "counter_kept_warm.toml"))
    unbounded = dataclasses.replace(sc, threads=(
        Thread("counter", (Op("counter", (0,)),)), *sc.threads[1:]))
    r = explore(unbounded, Config(ordering="delayed", arch="up"))
    assert r.found and r.found[0].invariants == ["hang"]


@pytest.mark.parametrize("ordering, arch", KERNELS)
def test_a_refaulting_counter_counts_on_every_pass_of_its_loop(ordering, arch):
    """Point 3: before, the second pass of a counter loop found the translation gone and did nothing. Now each
    pass faults the page back in when it must and makes its two increments, and no data is lost."""
    sc = load_scenario(str(SCENARIOS / "counter_loop.toml"))
    cfg = Config(ordering=ordering, arch=arch)
    for m in _random_runs(sc, cfg, 30, 5):
        assert _op_results(m, "counter") == [2, 2]
        page = m.state.folios[m.state.page_cache[0]]
        assert page.data == 1 + 4  # the setup's store, then the four increments: none went to another page
    r = explore(sc, cfg)
    if (ordering, arch) == ("eager", "smp"):
        # The patch's race itself: an increment through the stale entry after writeback cleaned the page.
        assert r.found and r.found[0].invariants == ["lost_dirty_data"]
    else:
        assert r.complete and not r.found, [f.violations for f in r.found]
