"""Issue 15's races 3 and 4: the mremap, ftruncate, mprotect and reclaim paths, their oracle rules, their
library scenarios before and after each fix, and the loader's checks of the new operations."""

from __future__ import annotations

import pytest

from controlled.explorer import explore
from kernel_model.config import Config
from kernel_model.constants import VMA_NONE
from kernel_model.program import Op, Scenario, Setup, Thread
from types import SimpleNamespace

from controlled.machine import Machine
from scenarios.loader import ScenarioError, load_scenario, load_scenario_text

BEFORE_3EA2 = {"without": ("flush_tlb_batched_pending",)}
BEFORE_EB66 = {"without": ("mremap_flush_under_ptl",)}


def cfg_for(scenario, **over) -> Config:
    return Config.from_dict({**scenario.config, **over})


def solo(ops: tuple[Op, ...], setup: Setup = Setup(pages=2), cfg: Config = Config()):
    """One thread runs the ops alone; an idle second thread puts another CPU in mm_cpumask."""
    scenario = Scenario("solo", "", setup, (Thread("t", ops), Thread("other", ())))
    m = Machine(scenario, cfg, record=True)
    violations: list = []
    while not violations:
        enabled = m.enabled_all()
        if m.run_ends(enabled):
            break
        violations = m.execute(min(enabled))
    return SimpleNamespace(machine=m, events=m.events, violations=violations)


def steps(result) -> list[tuple[str, str]]:
    return [(e.fn, e.op) for e in result.events if e.kind == "step"]


# --- the paths, alone -------------------------------------------------------------------------------------------
def test_mremap_moves_the_pte_and_the_page_is_read_at_its_new_address():
    r = solo((Op("mremap", (0,), to=1), Op("load", (1,)), Op("load", (0,))))
    assert not r.violations, r.violations
    s = r.machine.state
    assert s.ptes[0] is None and s.ptes[1] is not None and s.ptes[1].pfn == 0  # file page 0 now at va 1
    assert s.vma[1] == 0 and s.vma[0] == VMA_NONE and s.i_mmap[0] == (1,)  # va 1 maps file page 0 now
    ends = [e.args[0] for e in r.events if e.kind == "note" and e.op == "end"]
    assert ends[1] == s.folios[0].data and s.tlbs[0][1].pfn == 0  # the load at va 1 read file page 0
    assert ends[2] is None  # va 0 is no longer mapped: the load gets SIGSEGV


@pytest.mark.parametrize("fixed", [True, False])
def test_move_ptes_flushes_a_clean_pte_under_the_ptl_only_with_the_fix(fixed):
    r = solo((Op("mremap", (0,), to=1),), setup=Setup(pages=2, dirty=False),
             cfg=Config(without=() if fixed else ("mremap_flush_under_ptl",)))
    s = steps(r)
    unlock = max(i for i, x in enumerate(s) if x == ("move_ptes", "spin_unlock"))
    move_flush = [i for i, x in enumerate(s) if x == ("move_ptes", "flush_tlb_others")]
    late_flush = [i for i, x in enumerate(s) if x == ("move_page_tables", "flush_tlb_others")]
    if fixed:
        assert move_flush and move_flush[0] < unlock and not late_flush
    else:
        assert not move_flush and late_flush and late_flush[0] > unlock


def test_a_dirty_pte_was_flushed_under_the_ptl_before_the_fix_too():
    r = solo((Op("mremap", (0,), to=1),), cfg=Config(without=("mremap_flush_under_ptl",)))  # pages start dirty
    assert ("move_ptes", "flush_tlb_others") in steps(r)


def test_ftruncate_drops_dirty_pages_without_a_loss_and_later_faults_get_sigbus():
    r = solo((Op("store", (0,)), Op("ftruncate", (0, 1)), Op("load", (0,))), setup=Setup(pages=2))
    assert not r.violations, r.violations
    s = r.machine.state
    assert s.i_size == 0 and s.page_cache == [None, None]
    assert all(f.freed for f in s.folios)  # the zap's and truncation's references were the last ones
    assert any(e.op == "sigbus" for e in r.events if e.kind == "note")
    assert [e.args[0] for e in r.events if e.kind == "note" and e.op == "end"][-1] is None


def test_reclaim_defers_the_flush_and_writes_a_dirty_page_out_after_flushing():
    # 4.10: kswapd writes a dirty folio on the first pass (from 4.11 only on a later pass: test_reclaim_activate)
    r = solo((Op("reclaim", (0,)),), setup=Setup(pages=1), cfg=Config(reclaim_seen_twice=False))
    assert not r.violations, r.violations
    s = steps(r)
    clear = s.index(("try_to_unmap_one", "ptep_get_and_clear_full"))
    unlock = s.index(("page_vma_mapped_walk", "spin_unlock"))
    flush = s.index(("try_to_unmap_flush", "flush_tlb_others"))
    assert clear < unlock < flush < s.index(("writepage", "writepage"))  # try_to_unmap_flush_dirty first
    assert ("set_tlb_ubc_flush_pending", "set_tlb_flush_batched") in s
    st = r.machine.state
    assert st.disk[0] == 1 and st.ptes[0] is None and st.tlb_flush_batched


def test_reclaim_frees_a_clean_page_only_after_its_flush():
    r = solo((Op("reclaim", (0,)),), setup=Setup(pages=1, dirty=False))
    assert not r.violations, r.violations
    s = steps(r)
    assert s.index(("try_to_unmap_flush", "wait_acks")) < s.index(("shrink_folio_list", "put_page"))
    assert r.machine.state.folios[0].freed


# Before 6.0 change_protection_range flushes; from 6.0 (4a18419f71cd, Config.mprotect_gathers) tlb_end_vma's
# tlb_flush_mmu_tlbonly flushes what change_pte_range recorded in the gather, inside tlb_gather_mmu .. tlb_finish_mmu.
@pytest.mark.parametrize("gathers, flusher", [(False, "change_protection_range"), (True, "tlb_flush_mmu_tlbonly")])
def test_mprotect_write_protects_and_flushes_and_the_next_store_faults(gathers: bool, flusher: str):
    r = solo((Op("mprotect", (0,)), Op("store", (0,))), setup=Setup(pages=1, warm_tlb=("t",)),
             cfg=Config(mprotect_gathers=gathers))
    assert not r.violations, r.violations
    s = steps(r)
    assert (flusher, "flush_tlb_others") in s
    assert s.index((flusher, "wait_acks")) < s.index(("do_mprotect_pkey", "up_write"))
    gather = [("tlb_gather_mmu", "inc_tlb_flush_pending"), ("tlb_finish_mmu", "mm_tlb_flush_nested"),
              ("tlb_finish_mmu", "dec_tlb_flush_pending")]
    assert [x for x in s if x in gather] == (gather if gathers else [])
    # The store found a read-only PTE and a VMA without VM_WRITE: SIGSEGV (access_error), never do_wp_page.
    assert ("do_user_addr_fault", "access_error") in s and ("do_wp_page", "spin_lock") not in s


# --- the races --------------------------------------------------------------------------------------------------
def test_race_4_mprotect_vs_reclaim_before_and_after_3ea277194daa():
    sc = load_scenario("mprotect_reclaim")
    assert "3ea277194daa" in sc.description
    before = explore(sc, cfg_for(sc, **BEFORE_3EA2))
    assert before.found and "stale_tlb_access" in before.found[0].invariants
    assert "mprotect(PROT_READ)" in before.found[0].violations[0].detail
    after = explore(sc, cfg_for(sc))
    assert after.complete and not after.found, [f.violations for f in after.found]


@pytest.mark.slow  # 23,549 states before the first violation: about 3 s of CPU
def test_race_3_mremap_vs_ftruncate_before_eb66ae030829():
    """Before the fix, on the library scenario's own configuration. After it: test_explore's
    test_partial_order_reduction_keeps_race_3s_verdict_and_end_states[4.19] searches the same reduced graph (the
    library's configuration and 4.19's are one for this scenario: 107,793 states and 221,013 transitions both,
    session 18) to the end, and the full one too, and asserts that neither finds any violation."""
    sc = load_scenario("mremap_truncate")
    assert "eb66ae030829" in sc.description
    before = explore(sc, cfg_for(sc, **BEFORE_EB66))
    assert before.found and "freed_while_mapped" in before.found[0].invariants


# --- the loader -------------------------------------------------------------------------------------------------
def _load(program: str, setup: str = "pages = 2") -> Scenario:
    return load_scenario_text(f"[setup]\n{setup}\n[[threads]]\nname = \"t\"\nprogram = [ {program} ]\n",
                              name="bad", label="bad.toml")


@pytest.mark.parametrize("program, key, words", [
    ('{ op = "mremap", pages = [0] }', "to", "missing"),
    ('{ op = "mremap", pages = [0], to = 0 }', "to", "overlaps"),
    ('{ op = "mremap", pages = [0], to = 2 }', "to", "<= 1"),
    ('{ op = "ftruncate", pages = [0] }', "pages", "to the end of the file"),
    ('{ op = "store", pages = [0], to = 1 }', "to", "only mremap takes to"),
    ('{ op = "mprotect", pages = [1, 0] }', "pages", "contiguous"),
])
def test_loader_names_file_key_and_expectation(program, key, words):
    with pytest.raises(ScenarioError) as e:
        _load(program)
    msg = str(e.value)
    assert msg.startswith("bad.toml") and key in msg and words in msg, msg


@pytest.mark.parametrize("op", ['{ op = "mremap", pages = [0], to = 1 }', '{ op = "ftruncate" }',
                                '{ op = "reclaim" }'])
def test_file_only_ops_are_refused_in_anonymous_memory(op):
    with pytest.raises(ScenarioError, match="needs a backing file"):
        _load(op, "pages = 2\nanon = true")


def test_a_file_page_mapped_at_two_addresses_is_judged_only_with_both_tables_unlocked():
    """Fuzz found it (seed 1, scenario 255): mremap moved file page 1 to va 0 and mmap_fixed mapped it again at
    va 1, in another PTE table; a fault at va 1 had raised the mapcount under PTL 1 and not yet set the PTE when
    another thread's release of PTL 0 compared the mapcount with the PTEs: a false rmap_pte_mismatch."""
    from kernel_model.oracle import _rmap_mismatches
    from kernel_model.state import FREE, Pte, State

    s = State.initial(2, 1, 2, 2, anon=False, mapped=False, warm_cpus=())
    s.folios[1] = s.folios[1]._replace(mapcount=2, refcount=3)  # PTEs at va 0 and (about to be) va 1
    s.ptes[0] = Pte(1, True, True, True)
    s.i_mmap[1] = (0, 1)
    s.ptl[1] = 1  # the fault at va 1 holds PTL 1 between page_add_file_rmap and set_pte_at
    assert _rmap_mismatches(s, range(0, 1)) == []
    s.ptl[1] = FREE  # had it unlocked with the PTE still missing, the mismatch would be real
    assert [v.invariant for v in _rmap_mismatches(s, range(0, 1))] == ["rmap_pte_mismatch"]
