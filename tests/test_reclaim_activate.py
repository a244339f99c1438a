"""kswapd's activate branch and PG_reclaim (kernel_model/reclaim.py, docs/reclaim.md): shrink_folio_list writes a
dirty file folio only when it has seen it before (PG_reclaim, 4.11+), else sets PG_reclaim and unlocks it before
its deferred try_to_unmap_flush; folio_mark_dirty and folio_end_writeback clear PG_reclaim. Each test fails on
the model before session 14, which paged every dirty folio out on the first pass."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from analysis.witness import witnesses_for
from controlled.explorer import explore
from controlled.replay import run_schedule
from fuzz.known_races import RECLAIM_WRITEBACK_RACE, known_kernel_race
from kernel_model.atomic import PageTableOps
from kernel_model.config import Config
from kernel_model.kernels import history_kernels, kernel_config
from kernel_model.program import Op, Setup
from kernel_model.state import State
from scenarios.loader import load_scenario
from tests.test_newops import solo as newops_solo, steps as newops_steps

SCENARIOS = Path(__file__).resolve().parent / "scenarios"


def solo(ops: tuple[Op, ...], cfg: Config = Config(), setup: Setup = Setup(pages=1)) -> SimpleNamespace:
    """tests/test_newops.solo (one thread alone, an idle one keeping another CPU in mm_cpumask, so reclaim defers
    its flush), with its steps."""
    r = newops_solo(ops, setup=setup, cfg=cfg)
    return SimpleNamespace(machine=r.machine, violations=r.violations, steps=newops_steps(r))


def _ops() -> PageTableOps:
    return PageTableOps(State.initial(1, 512, 2, 2, anon=False, mapped=True, warm_cpus=()))


def test_pg_reclaim_is_set_tested_and_cleared_where_the_kernel_does() -> None:
    """folio_set_reclaim / folio_test_reclaim; folio_mark_dirty and set_page_dirty (the same kernel function)
    clear it; so does folio_end_writeback."""
    ops = _ops()
    for clear in (ops.set_page_dirty, ops.folio_mark_dirty, ops.end_page_writeback):
        ops.folio_set_reclaim(0)
        assert ops.folio_test_reclaim(0)
        clear(0)
        assert not ops.folio_test_reclaim(0), clear.__name__


def test_kswapd_activates_a_folio_whose_dirty_pte_it_cleared_and_unlocks_it_before_the_flush() -> None:
    r = solo((Op("reclaim", (0,)),))
    assert not r.violations, r.violations
    s = r.steps
    dirtied = s.index(("try_to_unmap_one", "set_page_dirty"))  # folio_mark_dirty: PG_reclaim cleared
    tested = s.index(("shrink_folio_list", "folio_test_reclaim"))
    marked = s.index(("shrink_folio_list", "folio_set_reclaim"))
    unlock = max(i for i, x in enumerate(s) if x == ("shrink_folio_list", "folio_unlock"))
    flush = s.index(("try_to_unmap_flush", "flush_tlb_others"))
    assert dirtied < tested < marked < unlock < flush  # activate_locked: unlocked with the flush still deferred
    assert ("writepage", "writepage") not in s
    folio = r.machine.state.folios[0]
    assert folio.dirty and folio.reclaim and folio.mapcount == 0 and r.machine.state.disk[0] == 0


def test_a_later_pass_pages_out_the_folio_it_marked() -> None:
    r = solo((Op("reclaim", (0,)), Op("reclaim", (0,))))
    assert not r.violations, r.violations
    s = r.steps
    assert s.index(("try_to_unmap_flush", "flush_tlb_others")) < s.index(("writepage", "writepage"))
    st = r.machine.state
    assert st.disk[0] == 1 and not st.folios[0].dirty
    assert not st.folios[0].reclaim  # folio_end_writeback cleared it


def test_before_4_11_kswapd_pages_out_on_the_first_pass() -> None:
    """4.3-4.10 (no 4eda48235011; PGDAT_DIRTY modelled as set): no PG_reclaim test, try_to_unmap_flush_dirty,
    then pageout under the folio lock."""
    r = solo((Op("reclaim", (0,)),), cfg=Config(**kernel_config("4.10")))
    assert not r.violations, r.violations
    s = r.steps
    assert ("shrink_folio_list", "folio_test_reclaim") not in s
    assert s.index(("try_to_unmap_flush", "flush_tlb_others")) < s.index(("writepage", "writepage"))
    assert r.machine.state.disk[0] == 1


def test_a_write_fault_clears_pg_reclaim_so_the_next_pass_activates_again() -> None:
    r = solo((Op("reclaim", (0,)), Op("store", (0,)), Op("reclaim", (0,))))
    assert not r.violations, r.violations
    s = r.steps
    assert s.count(("shrink_folio_list", "folio_set_reclaim")) == 2
    assert ("writepage", "writepage") not in s
    assert r.machine.state.folios[0].reclaim and r.machine.state.folios[0].dirty


@pytest.mark.parametrize("kernel, arch, lost", [("6.2", "smp", True), ("4.11", "smp", True),
                                                ("4.10", "smp", False), ("6.2", "up", False),
                                                ("6.2", "s390", False)])
def test_msync_loses_a_store_through_the_activate_window(kernel: str, arch: str, lost: bool) -> None:
    sc = load_scenario(str(SCENARIOS / "unseen_reclaim_stores.toml"))
    r = explore(sc, Config(**{**kernel_config(kernel), "arch": arch}), "dfs", budget=80_000)
    found = {v.invariant for f in r.found for v in f.violations}
    assert found == ({"lost_dirty_data"} if lost else set())
    assert lost or r.complete


def test_analyze_explains_the_loss_as_reclaim_not_zap() -> None:
    sc = load_scenario(str(SCENARIOS / "unseen_reclaim_stores.toml"))
    cfg = Config(**kernel_config("6.2"))
    r = explore(sc, cfg, "bfs", budget=80_000)
    run = run_schedule(sc, cfg, r.found[0].schedule)
    (w,) = witnesses_for(r.found[0].violations, sc, cfg, run.executed)
    by_role = {row.role: row for row in w.rows}
    assert by_role["pte_clear"].fn == "try_to_unmap_one" and "reclaimer" in by_role["pte_clear"].why
    assert by_role["rmap_removal"].seq < by_role["reclaim_unlock"].seq < by_role["mkclean_check"].seq \
        < by_role["stale_store"].seq < by_role["late_flush"].seq
    assert "zapper" not in " ".join(row.why for row in w.rows)


@pytest.mark.parametrize("over, kinds, invariant, known", [
    ({}, {"reclaim", "msync", "store"}, "lost_dirty_data", True),
    ({}, {"reclaim", "msync"}, "expect_failed", True),
    ({"ordering": "eager"}, {"reclaim", "msync"}, "lost_dirty_data", False),  # the zap race may explain it
    (kernel_config("4.12"), {"reclaim", "msync"}, "lost_dirty_data", False),  # a fix missing: no expectation
    ({"mutant": "flush_after_unlock"}, {"reclaim", "msync"}, "lost_dirty_data", False),
    ({}, {"reclaim", "msync"}, "stale_tlb_access", False),  # not this race: a model bug until shown otherwise
    ({}, {"reclaim", "store"}, "lost_dirty_data", False),  # no writeback
    ({"arch": "up"}, {"reclaim", "msync"}, "lost_dirty_data", False),
    ({"arch": "s390"}, {"reclaim", "msync"}, "lost_dirty_data", False),
    (kernel_config("4.10"), {"reclaim", "msync"}, "lost_dirty_data", False),
    (kernel_config("4.2"), {"reclaim", "msync"}, "lost_dirty_data", False),
])
def test_the_fuzzer_knows_the_reclaim_race_precisely(over: dict, kinds: set, invariant: str, known: bool) -> None:
    got = known_kernel_race(Config(**over), frozenset(kinds), invariant)
    assert got == (RECLAIM_WRITEBACK_RACE if known else None)


def test_history_brackets_the_seen_twice_rule() -> None:
    """4eda48235011 (4.11) moves the window: tlbrace history shows 4.10 and 4.11 by default."""
    assert {"4.10", "4.11"} <= set(history_kernels())
    assert kernel_config("4.10")["reclaim_seen_twice"] is False and kernel_config("4.11")["reclaim_seen_twice"]


def test_pageout_keeps_a_folio_truncation_took_out_of_the_page_cache() -> None:
    """pageout's ``if (!mapping) return PAGE_KEEP``: reclaim looked the folio up (its reference), truncation then
    removed it from the page cache under the folio lock, and someone else still holds a reference (so the
    refcount test alone passes). The model used to write such a folio back, into a block ext4_truncate frees."""
    ops = PageTableOps(State.initial(1, 512, 2, 2, anon=False, mapped=False, warm_cpus=()))
    pfn = ops.find_get_entry(0)  # reclaim's lookup: page cache + reclaim
    assert pfn is not None and ops.is_page_cache_freeable(pfn)
    ops.s.folios[pfn] = ops.s.folios[pfn]._replace(refcount=ops.s.folios[pfn].refcount + 1)  # a third holder
    ops.delete_from_page_cache(pfn)  # truncate_inode_folio: the page cache's reference goes, mapping = NULL
    assert ops.s.folios[pfn].refcount == 2
    assert not ops.is_page_cache_freeable(pfn)
