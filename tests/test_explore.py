"""The controlled explorer's verdicts: the race with the old ordering, none with the patch, none on UP/s390,
every mutant caught by the invariant it breaks, determinism, replay and shrinking."""

from __future__ import annotations

import random

import pytest

from analysis.mutant_table import MUTANT_TABLE
from controlled.explorer import explore
from controlled.machine import Machine
from controlled.reduction import conflict
from controlled.replay import run_schedule
from kernel_model.config import MUTANT_BREAKS, MUTANTS, Config
from kernel_model.kernels import kernel_config
from scenarios.loader import load_scenario


def cfg_for(scenario, **over) -> Config:
    return Config.from_dict({**scenario.config, **over})


RACE_SCENARIOS = ["madv_dontneed", "munmap", "mmap_fixed_remap", "writable_clean", "mkclean_first", "ladder"]


@pytest.mark.parametrize("name", RACE_SCENARIOS)
def test_eager_loses_dirty_data(name):
    sc = load_scenario(name)
    r = explore(sc, cfg_for(sc, ordering="eager"))
    assert r.found and "lost_dirty_data" in r.found[0].invariants


@pytest.mark.parametrize("name", RACE_SCENARIOS + ["anon_pages", "zap_many_pages"])
# Not delayed on UP and s390: there it is the eager kernel (tests/kernel_orderings.py)
@pytest.mark.parametrize("ordering, arch", [("delayed", "smp"), ("eager", "up"), ("eager", "s390")])
def test_no_violation_with_the_patch_or_without_remote_tlbs(name, ordering, arch):
    sc = load_scenario(name)
    r = explore(sc, cfg_for(sc, ordering=ordering, arch=arch))
    assert r.complete and not r.found, [f.violations for f in r.found]


@pytest.mark.slow  # 6,000 sampled runs
def test_nadav_poc_loses_data_only_with_eager():
    sc = load_scenario("nadav_poc")
    eager = explore(sc, cfg_for(sc, ordering="eager"), "pct", budget=3000, seed=1)
    assert eager.found and "lost_dirty_data" in eager.found[0].invariants
    # The exhaustive delayed proof takes minutes (bench/bench_explore.py runs it); here: many sampled runs.
    for strategy in ("pct", "random"):
        delayed = explore(sc, cfg_for(sc, ordering="delayed"), strategy, budget=1500, seed=2)
        assert not delayed.found, [f.violations for f in delayed.found]


def test_the_table_covers_every_mutant():
    assert set(MUTANT_TABLE) == set(MUTANTS)


@pytest.mark.parametrize("mutant", [m for m in MUTANTS if MUTANT_TABLE[m] is not None])
def test_every_mutant_is_caught_by_the_invariant_it_breaks(mutant):
    name, base = MUTANT_TABLE[mutant]
    sc = load_scenario(name)
    clean = explore(sc, cfg_for(sc, **base))
    assert clean.complete and not clean.found, "the base configuration must be clean"
    caught = explore(sc, cfg_for(sc, **base, mutant=mutant))
    assert caught.found, f"{mutant} not caught in {name}"
    assert MUTANT_BREAKS[mutant] in caught.found[0].invariants, caught.found[0].violations


def test_mkclean_ignores_result_is_harmless_for_data_in_this_model():
    """write_cache_pages reaches folio_clear_dirty_for_io only for PG_dirty folios, under the folio lock, so
    folio_test_clear_dirty returns true anyway and the IO snapshot, taken after folio_mkclean's flush, holds every
    store. The result only feeds fs-internal dirtying and dirty accounting, which the model does not have. The
    explorer proves it exhaustively; if this ever fails, the model changed and the mutant became observable."""
    for name in ("madv_dontneed", "mkclean_first", "writable_clean"):
        sc = load_scenario(name)
        r = explore(sc, cfg_for(sc, mutant="mkclean_ignores_result"))
        assert r.complete and not r.found


def test_hang_reports_name_the_cycle():
    sc = load_scenario("madv_dontneed")
    r = explore(sc, cfg_for(sc, mutant="no_ipi_while_spinning"))
    detail = r.found[0].violations[0].detail
    assert "flush IPI acks" in detail and "cycle: zapper -> writeback -> zapper" in detail
    r = explore(sc, cfg_for(sc, mutant="double_ptl"))
    assert "PTL 0 held by zapper (itself" in r.found[0].violations[0].detail


@pytest.mark.parametrize("strategy", ["bfs", "dfs", "random", "pct"])
def test_same_seed_same_event_stream(strategy):
    sc = load_scenario("madv_dontneed")
    cfg = cfg_for(sc, ordering="eager")
    runs = []
    for _ in range(2):
        r = explore(sc, cfg, strategy, seed=7, budget=None if strategy in ("bfs", "dfs") else 5000)
        assert r.found
        events = run_schedule(sc, cfg, r.found[0].schedule).events
        runs.append([e.as_tuple() for e in events])
    assert runs[0] == runs[1]


def test_different_seeds_explore_differently():
    sc = load_scenario("madv_dontneed")
    cfg = cfg_for(sc, ordering="eager")
    a = explore(sc, cfg, "random", seed=1, budget=3000)
    b = explore(sc, cfg, "random", seed=2, budget=3000)
    assert a.found and b.found and a.found[0].schedule != b.found[0].schedule


@pytest.mark.parametrize("name, over", [("madv_dontneed", {"ordering": "eager"}), ("munmap", {"ordering": "eager"}),
                                        ("madv_dontneed", {"mutant": "skip_tlb_flush_rmaps"}),
                                        ("anon_pages", {"mutant": "free_before_flush", "mmu_gather_bundle": 1,
                                                        "max_gather_batch_count": 0})])
def test_replay_reproduces_and_shrink_never_grows(name, over, tmp_path):
    from cli.cmd_shrink import shrink
    from logs.schedule_file import ScheduleFile, read_schedule, write_schedule

    sc = load_scenario(name)
    cfg = cfg_for(sc, **over)
    # A budget, not a rate: random walks of munmap (with mm->tlb_flush_pending steps since 4.13) need more than 5,000.
    # Seed 5 finds munmap's loss in 0.5 s of CPU (seed 3 took 10 s; seed 1 found none within the budget: session 15).
    found = explore(sc, cfg, "random", seed=5, budget=20000).found[0]
    path = tmp_path / "x.schedule"
    first = run_schedule(sc, cfg, found.schedule)
    write_schedule(path, ScheduleFile(sc, cfg, first.executed, found.invariants))
    sf = read_schedule(path)
    again = run_schedule(sf.scenario, sf.config, sf.schedule, complete=False)
    assert again.invariants == first.invariants and again.executed == first.executed
    shrunk, result = shrink(sf)
    assert len(shrunk) <= len(first.executed)
    assert set(found.invariants) & set(result.invariants)


CROSS_CHECK = [
    ("madv_dontneed", {"ordering": "eager"}), ("madv_dontneed", {}), ("munmap", {}), ("mmap_fixed_remap", {}),
    ("writable_clean", {"mutant": "no_set_page_dirty"}), ("madv_dontneed", {"mutant": "no_folio_lock_in_fault"}),
    ("madv_dontneed", {"ordering": "eager", "arch": "up", "mutant": "flush_after_unlock"}),
    ("madv_dontneed", {"arch": "up"}), ("madv_dontneed", {"arch": "s390", "ordering": "eager"}),
    ("mkclean_first", {"ordering": "eager"}), ("ladder", {"ordering": "delayed"}),
    # issue 15's new ops (controlled.op_footprints): race 4 on the kernels before and after its fix
    ("mprotect_reclaim", kernel_config("4.12")), ("mprotect_reclaim", kernel_config("4.13")),
]


@pytest.mark.parametrize("name, over", CROSS_CHECK)
def test_partial_order_reduction_keeps_every_verdict(name, over):
    """The reduced search must find a violation exactly when the full one does (and the same invariant), and
    reach every end state the full one reaches (persistent sets preserve them; it reaches a subset, so equal
    counts mean equal sets). The end-state count caught a fault path's PTL missing from a store's footprint."""
    sc = load_scenario(name)
    cfg = cfg_for(sc, **over)
    full = explore(sc, cfg, "bfs", reduce=False, stop_at_first=False)
    reduced = explore(sc, cfg, "bfs", reduce=True, stop_at_first=False)
    assert full.complete and reduced.complete
    assert {i for f in full.found for i in f.invariants} == {i for f in reduced.found for i in f.invariants}
    assert reduced.schedules == full.schedules
    assert reduced.states <= full.states


@pytest.mark.slow  # 150,000 states each way
@pytest.mark.parametrize("kernel", ["4.18", "4.19"])
def test_partial_order_reduction_keeps_race_3s_verdict_and_end_states(kernel):
    """mremap_truncate (eb66ae030829) before and after its fix: mremap and ftruncate have footprints of their own
    (controlled.op_footprints), so the reduced search is smaller, with the same verdict and end states."""
    sc = load_scenario("mremap_truncate")
    cfg = cfg_for(sc, **kernel_config(kernel))
    full = explore(sc, cfg, "bfs", reduce=False, stop_at_first=False)
    reduced = explore(sc, cfg, "bfs", reduce=True, stop_at_first=False)
    assert full.complete and reduced.complete
    assert {i for f in full.found for i in f.invariants} == {i for f in reduced.found for i in f.invariants}
    # 4.18: the race (freed_while_mapped) and nothing else; 4.19: nothing at all (test_newops' race 3 relies on it)
    assert {i for f in full.found for i in f.invariants} == ({"freed_while_mapped"} if kernel == "4.18" else set())
    assert reduced.schedules == full.schedules and reduced.states < full.states


# The floors of compared cells per kernel below: together more than the 20 this test asked for in one piece, and
# above the 10, 9 and 9 it compared per kernel before the size cap below (with it: 12 or more each, session 14).
GENERATED_COMPARED_AT_LEAST = {"4.12": 10, "4.18": 10, "6.18": 10}


# The generated scenarios compared: those of at most GENERATED_MAX_OPS operations (fuzz.generate.Spec.ops) among
# the first GENERATED_INDICES. Measured (session 14, seed 15, 4.12): of the first 60 with the new ops, 4 of the 11
# with up to 5 operations overran the full search's budget, and 8 of the first 9 with 6 or more did, each overrun
# 2-3.5 s of CPU spent on a case then left out. With the cap and 40 more indices, each kernel compares 12 or
# more scenarios of 2-4 threads, 1-3 pages and up to 5 operations (mremap, ftruncate, mprotect or reclaim among
# them: what a race needs, fuzz.generate's "three short threads"), in about 10-20 s of CPU per kernel.
GENERATED_MAX_OPS, GENERATED_INDICES = 5, 100
# Of those, the ones whose full search overruns its 20,000-state budget on each kernel (measured, session 15), left
# out up front: each overrun was 1-1.8 s of CPU that compared nothing, about two thirds of the test's time (43 s of
# CPU for the three kernels, 15 s without them). One that stops overrunning is merely not compared; one of the
# others that starts overrunning is skipped as before, and the floors above still count what was compared.
GENERATED_OVER_BUDGET = {"4.12": frozenset({14, 39, 50, 53, 92}),
                         "4.18": frozenset({14, 33, 39, 50, 53, 71, 91, 92}),
                         "6.18": frozenset({14, 33, 39, 50, 53, 70, 71, 91, 92})}


@pytest.mark.slow  # about a dozen searches to the end per kernel, twice each
@pytest.mark.parametrize("kernel", list(GENERATED_COMPARED_AT_LEAST))
def test_partial_order_reduction_keeps_every_verdict_on_generated_scenarios_with_the_new_ops(kernel):
    """Fuzz-generated scenarios (fuzz.generate: seeded) that use mremap, ftruncate, mprotect or reclaim, on the
    kernels before races 2-4's fixes and the newest: wherever the full search ends within its budget, the reduced
    one finds the same invariants and reaches as many end states (a subset of the full search's: the same set).
    One case per kernel, so that pytest-xdist runs the three on both workers (the same cells as one loop did)."""
    from controlled.op_footprints import flat
    from fuzz.generate import generate, load_spec

    new_ops = {"mremap", "ftruncate", "mprotect", "reclaim"}
    compared = smaller = 0
    for index in range(GENERATED_INDICES):
        spec = generate(15, index)
        if spec.ops > GENERATED_MAX_OPS or index in GENERATED_OVER_BUDGET[kernel]:
            continue
        try:
            sc, _ = load_spec(spec, f"g{index}")
        except ValueError:
            continue
        if not new_ops & {op.kind for t in sc.threads for op in flat(list(t.ops))}:
            continue
        cfg = cfg_for(sc, **kernel_config(kernel))
        full = explore(sc, cfg, "bfs", reduce=False, stop_at_first=False, budget=20_000)
        if not full.complete:
            continue
        reduced = explore(sc, cfg, "bfs", reduce=True, stop_at_first=False, budget=20_000)
        assert reduced.complete, (index, kernel)
        assert {i for f in full.found for i in f.invariants} == \
            {i for f in reduced.found for i in f.invariants}, (index, kernel)
        assert reduced.schedules == full.schedules, (index, kernel)
        compared += 1
        smaller += reduced.states < full.states
    # The whole loop's "smaller >= compared // 2" per kernel, at least as strict: summed, it implies the old check.
    assert compared >= GENERATED_COMPARED_AT_LEAST[kernel] and 2 * smaller >= compared, (compared, smaller)


def test_machine_keys_round_trip():
    sc = load_scenario("madv_dontneed")
    m = Machine(sc, Config(ordering="eager"))
    rng = random.Random(0)
    while m.enabled():
        key = m.key()
        m.restore(key)
        assert m.key() == key
        m.execute(rng.choice(m.enabled()))


def test_cli_explore_replay_analyze_round_trip(tmp_path, capsys):
    import json

    from cli.main import main

    out = tmp_path / "out"
    assert main(["explore", "madv_dontneed", "--ordering", "eager", "--json", "--out", str(out)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["violations"][0]["invariant"] == "lost_dirty_data" and not doc["complete"]
    v = doc["violations"][0]
    assert main(["replay", v["schedule_file"], "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["reproduced"] is True
    assert main(["analyze", v["log_file"], "--json"]) == 1
    capsys.readouterr()
    assert main(["explore", "madv_dontneed", "--ordering", "delayed", "--json", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["complete"] and doc["violations"] == [] and doc["states"] > 100


@pytest.mark.parametrize("name", ["madv_dontneed", "munmap", "mmap_fixed_remap", "anon_pages", "nadav_poc",
                                  "ladder", "scale_writers", "mremap_truncate", "mprotect_reclaim",
                                  "parallel_dontneed"])
def test_every_step_stays_inside_its_threads_future_footprint(name):
    """The reduction trusts a thread's future footprint to cover every step it may still take; random runs
    check that each step's own footprint is inside it (the UP preemption token is written by lock steps and only
    read in futures, on purpose: see controlled.reduction)."""
    sc = load_scenario(name)
    rng = random.Random(7)
    checked = 0
    for arch in ("smp", "up", "s390"):
        for _ in range(30):
            m = Machine(sc, cfg_for(sc, arch=arch), reduce=True)
            fps = m.footprints
            for _ in range(2_000):
                enabled = m.enabled_all()
                if m.run_ends(enabled):
                    break
                tr = rng.choice(enabled)
                if tr[0] == "t":
                    p = m.pos[tr[1]]
                    fp = fps.step_footprint(tr[1], p.step, [f.index for f in m.state.folios], m.state) or {}
                    future = fps.future(tr[1], p.op_index)
                    for obj, mode in fp.items():
                        if obj != ("preempt",):
                            assert future.get(obj) in (mode, "w"), (name, arch, p.step, obj, mode, future.get(obj))
                    checked += 1
                if m.execute(tr):
                    break
    assert checked > 1_000


@pytest.mark.parametrize("strategy", ["bfs", "dfs"])
@pytest.mark.parametrize("name, over", [("madv_dontneed", {"ordering": "eager"}), ("ladder", {"ordering": "delayed"})])
def test_hash_compaction_visits_the_same_states_and_finds_the_same_story(name, over, strategy):
    sc = load_scenario(name)
    cfg = cfg_for(sc, **over)
    exact = explore(sc, cfg, strategy)
    compact = explore(sc, cfg, strategy, hash_compact=True)
    assert (compact.complete, compact.states, compact.transitions) == (exact.complete, exact.states,
                                                                        exact.transitions)
    assert [f.schedule for f in compact.found] == [f.schedule for f in exact.found]
    assert exact.collision_bound == 0.0 and 0.0 < compact.collision_bound < 1e-9


def test_persistent_sets_larger_than_one_leave_out_writers_that_only_hit_dirty_tlb_entries():
    """A closure of conflicting agents: the zapper about to take the PTL conflicts with writeback, and both with
    what the writers would do after a fault; but while the writers' TLB entries are dirty and only those two may
    flush them, the writers only store through their entries, so the set of the zapper and writeback is
    persistent and the writers wait. Once a flush IPI is queued for a writer's CPU, that no longer holds."""
    sc = load_scenario("ladder", {"writers": 2, "stores": 1})
    names = [t.name for t in sc.threads]
    rng = random.Random(3)
    without_writers = with_ipi_queued = 0
    for _ in range(200):
        m = Machine(sc, Config(ordering="delayed"), reduce=True)
        while (enabled := m.enabled()):
            everything = m.enabled_all()
            agents = {names[tr[1]] for tr in everything if tr[0] == "t"}
            chosen = {names[tr[1]] for tr in enabled if tr[0] == "t"}
            hits = all(m.footprints.hit_future(t, m.pos[t].op_index, m.pos[t].step, m.state) is not None
                       for t in range(2) if m.pos[t].step is not None)
            if {"writer0", "writer1", "zapper", "writeback"} <= agents and hits and not any(m.state.ipis):
                if len(enabled) >= 2 and chosen <= {"zapper", "writeback"}:
                    without_writers += 1
            for w in (0, 1):
                # A writer left out while its CPU has a flush queued (and not taken in the set) may fault: the
                # set must not conflict with anything it may do.
                if m.state.ipis[m.cpu_of[w]] and ("t", w) in everything and ("t", w) not in enabled \
                        and not any(tr[:2] == ("i", m.cpu_of[w]) for tr in enabled):
                    with_ipi_queued += 1
                    future = m.footprints.future(w, m.pos[w].op_index)
                    index_of = [f.index for f in m.state.folios]
                    for tr in enabled:
                        fp = (m.footprints.ipi(tr[1]) if tr[0] == "i" else
                              m.footprints.step_footprint(tr[1], m.pos[tr[1]].step, index_of, m.state))
                        assert not conflict(fp, future), (tr, names[w])
            m.execute(rng.choice(enabled))
    assert without_writers > 50
    assert with_ipi_queued > 0
