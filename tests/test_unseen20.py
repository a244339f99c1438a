"""Session 20, scen20: tests/scenarios/unseen20_*.toml, written from the kernel's code paths (each file's header
reasons out the verdict per kernel and machine before any search was run, and says where the search disagreed and
why).

Same rules as tests/test_unseen19.py: a clean verdict needs the whole reduced state space searched (dfs with sleep
sets, 80,000 states at most); a violation is what a bounded search finds first, and must be among the invariants
listed. Only the cheap cells of each header are here (the others were searched in session 20 and are named in
comments), so the file stays at a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.witness import Witness, WitnessRow, witnesses_for
from controlled.explorer import explore
from controlled.positions import as_transition
from controlled.replay import run_schedule
from fuzz.reduction_check import AGREE, reduction_mismatch
from scenarios.loader import load_scenario
from tests.test_unseen_scenarios import _assert_verdict, _kernel_cfg as _cfg, _load

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
LOST = frozenset({"lost_dirty_data"})
LOST_READ_BACK = frozenset({"lost_dirty_data", "expect_failed"})
CLEAN: frozenset[str] = frozenset()

# name -> (kernel, arch) -> the invariants the search finds (dfs, 80,000 states at most).
UNSEEN20: dict[str, dict[tuple[str, str], frozenset[str]]] = {
    # the §6 window on one PTE of a one-PTE table, with five stores and two msyncs (3.14 and 6.2 s390 clean, 6.2 SMP
    # clean at 18,899 states: searched, session 20)
    "unseen20_one_pte_many_stores": {("3.14", "smp"): LOST, ("6.1", "smp"): LOST, ("3.14", "up"): LOST,
                                     ("6.1", "up"): CLEAN, ("6.2", "up"): LOST},
    # predicted lost on 4.8: wrong, msync never reaches folio_mkclean for a folio whose PG_dirty is clear (the
    # header says why); clean on every kernel (4.9, 4.18, 6.1 SMP, 4.9, 6.2 UP, 4.8 s390 searched too)
    "unseen20_writable_clean_mremap": {("4.8", "smp"): CLEAN, ("4.8", "up"): CLEAN, ("6.2", "smp"): CLEAN,
                                       ("6.2", "s390"): CLEAN},
    # clean everywhere (4.8 SMP at 58,812 states; 4.9, 4.18, 6.1, 6.2 SMP, 6.1 UP and 6.2 s390 too): the predicted
    # loss on 4.8 is a window that the writer's later store closes (6.2 UP's, one that ftruncate closes), no loss
    # since the oracle judges one when data is dropped or at quiescence (session 20; the full search used to judge
    # the window, and disagreed with the reduced one: test_a_window_closed_by_a_later_store_... below)
    "unseen20_mremap_then_ftruncate": {("6.1", "up"): CLEAN, ("4.8", "up"): CLEAN, ("6.2", "up"): CLEAN},
    # no store: nothing to lose, evict cannot free what the gather holds (3.14, 4.12, 6.1, 6.2 SMP and 3.14 s390
    # clean at 60,000-81,000 states; 6.1 UP clean: searched, session 20)
    "unseen20_reader_beside_zap_evict": {("3.14", "up"): CLEAN, ("6.2", "up"): CLEAN},
    # mprotect's range flush covers the page kswapd cleared because page 0 stays present (4.2, 4.10, 4.12, 4.13,
    # 5.19, 6.2 SMP clean at 29,399-69,274 states: searched, session 20)
    "unseen20_msync_mprotect_wp_vs_kswapd": {("6.2", "up"): CLEAN, ("6.2", "s390"): CLEAN},
    # munmap's window whichever mmap fills the hole (3.14, 4.19, 6.1 SMP lost within 80,000; 6.2 SMP and s390 clean
    # past 80,000 states: searched, session 20)
    "unseen20_two_mappers_one_hole": {("6.1", "up"): CLEAN, ("6.2", "up"): LOST},
    # the §6 race with a second writer CPU in the shootdown (6.2 SMP and s390 clean past 80,000: session 20)
    "unseen20_two_writers_dontneed_half": {("3.14", "smp"): LOST_READ_BACK, ("6.1", "smp"): LOST_READ_BACK,
                                           ("6.1", "up"): CLEAN, ("6.2", "up"): LOST_READ_BACK},
    # reclaim's activate window (docs/reclaim.md) through an alias: no dfs cell fits 80,000 states (4.11 SMP
    # lost at 722,331 states); the sampled cells and the witness test below stand for it
    "unseen20_reclaim_alias_msync": {},
}
# pct, 300 runs from seed 0: the activate window on 4.11 and 6.2 SMP, none found on 4.10 (first-pass pageout).
UNSEEN20_SAMPLED: dict[tuple[str, str, str], frozenset[str]] = {
    ("unseen20_reclaim_alias_msync", "4.11", "smp"): LOST,
    ("unseen20_reclaim_alias_msync", "6.2", "smp"): LOST,
    ("unseen20_reclaim_alias_msync", "4.10", "smp"): CLEAN,
}


def test_every_unseen20_scenario_has_a_verdict_here() -> None:
    assert {p.stem for p in SCENARIOS.glob("unseen20_*.toml")} == set(UNSEEN20)


def _cells() -> list:
    return [(n, k, a) for n, cells in UNSEEN20.items() for k, a in cells]


@pytest.mark.parametrize("name, kernel, arch", _cells())
def test_unseen20_scenario_on_kernel(name: str, kernel: str, arch: str) -> None:
    sc = _load(name)
    _assert_verdict(explore(sc, _cfg(sc, kernel, arch), "dfs", budget=80_000), UNSEEN20[name][kernel, arch])


@pytest.mark.parametrize("name, kernel, arch", sorted(UNSEEN20_SAMPLED))
def test_unseen20_sampled_verdict(name: str, kernel: str, arch: str) -> None:
    sc = _load(name)
    # 2,000 runs: pct (seed 0) meets the loss in run 1,497 on 4.11 and 242 on 6.2. It met it within 300 while the
    # oracle also judged windows that a later store closes (session 20): a run must now end with the data lost.
    r = explore(sc, _cfg(sc, kernel, arch), "pct", budget=2_000, seed=0)
    assert {v.invariant for f in r.found for v in f.violations} == UNSEEN20_SAMPLED[name, kernel, arch]


# The first loss a dfs of unseen20_reclaim_alias_msync on 4.11 SMP finds (722,331 states in), run-length encoded:
# kswapd unmaps address 0 (flush deferred), activates and unlocks the folio and sends its flush IPIs; the mapper
# maps file page 0 at address 1 and faults it in there; msync's folio_mkclean finds the folio mapped, walks, finds
# address 0 none and write-protects address 1 (flushing address 1 only), snapshots; the writer stores through
# address 0's entry before kswapd's IPI reaches its CPU.
_ALIAS_LOSS_411 = ((("t", 2), 22), (("i", 0, 2), 1), (("t", 0), 4), (("i", 3, 2), 1), (("t", 0), 4),
                   (("i", 3, 0), 1), (("t", 0), 1), (("t", 3), 1), (("i", 1, 0), 1), (("i", 2, 0), 1),
                   (("t", 0), 32), (("t", 3), 12), (("t", 0), 2), (("t", 3), 2), (("i", 2, 3), 1), (("t", 3), 1),
                   (("i", 0, 3), 1), (("i", 1, 3), 1), (("t", 3), 7), (("t", 1), 2), (("i", 1, 2), 1))


def _alias_witness() -> tuple[Witness, dict[str, WitnessRow]]:
    sc = _load("unseen20_reclaim_alias_msync")
    cfg = _cfg(sc, "4.11", "smp")
    schedule = [as_transition(t) for t, n in _ALIAS_LOSS_411 for _ in range(n)]
    run = run_schedule(sc, cfg, schedule)
    (w,) = witnesses_for(run.violations, sc, cfg, run.executed)
    return w, {row.role: row for row in w.rows}


def test_alias_loss_witness_blames_reclaims_clear_not_writebacks_own() -> None:
    """Before session 20 analyze took the last dirty clear of the page, writeback's own ptep_clear_flush of address
    1, for "the zapper's" clear, reported no rmap removal and showed neither kswapd nor the stale store. The clear
    behind the lost store is kswapd's try_to_unmap_one of address 0, and folio_mkclean did walk (the folio was
    mapped again at address 1) but found address 0 none."""
    w, by_role = _alias_witness()
    assert w.invariant == "lost_dirty_data"
    assert by_role["pte_clear"].fn == "try_to_unmap_one" and w.threads[by_role["pte_clear"].tid] == "kswapd"
    assert "reclaimer" in by_role["pte_clear"].why
    assert w.threads[by_role["remapped"].tid] == "mapper"
    assert by_role["walk_found_none"].action == "pte_get(va 0) → none"
    assert by_role["mkclean_other"].fn == "ptep_clear_flush" and "va 1" in by_role["mkclean_other"].action
    assert (by_role["pte_clear"].seq < by_role["rmap_removal"].seq < by_role["reclaim_unlock"].seq
            < by_role["flush_sent"].seq < by_role["remapped"].seq < by_role["mkclean_check"].seq
            < by_role["walk_found_none"].seq < by_role["mkclean_other"].seq < by_role["io_snapshot"].seq
            < by_role["stale_store"].seq < by_role["late_flush"].seq)
    assert w.threads[by_role["stale_store"].tid] == "writer" and "va 0" in by_role["stale_store"].action
    assert "TLB_FLUSH_ALL" in by_role["late_flush"].action


def _first_witness(name: str, kernel: str, arch: str) -> tuple[Witness, dict[str, WitnessRow]]:
    """The witness analyze builds for the first violation a bounded dfs finds, and its rows by role."""
    sc = _load(name)
    cfg = _cfg(sc, kernel, arch)
    r = explore(sc, cfg, "dfs", budget=80_000)
    run = run_schedule(sc, cfg, r.found[0].schedule)
    w = next(w for w in witnesses_for(r.found[0].violations, sc, cfg, run.executed) if w.invariant == "lost_dirty_data")
    return w, {row.role: row for row in w.rows}


def test_up_loss_witness_is_the_unlock_before_the_local_flush() -> None:
    """6.2 UP (docs/up-v6.2.md): folio_mkclean looked first and walked; the zapper dropped the PTL before its flush,
    the walk found the PTE none, and the flush that came too late is the zapper's own flush_tlb_local. Before session
    20 the witness had no mkclean row (it looked only after the clear), no unlock and no late flush (it looked only
    for flush IPIs); a flush_tlb_others that sent no IPI is no "flush sent" row."""
    w, by_role = _first_witness("unseen20_one_pte_many_stores", "6.2", "up")
    assert (by_role["mkclean_check"].seq < by_role["pte_clear"].seq < by_role["rmap_removal"].seq
            < by_role["unlock"].seq < by_role["walk_found_none"].seq < by_role["io_snapshot"].seq
            < by_role["stale_store"].seq < by_role["late_flush"].seq)
    assert "already found the folio mapped" in by_role["rmap_removal"].why
    assert by_role["late_flush"].fn == "tlb_flush_mmu_tlbonly" and "flush_tlb_local" in by_role["late_flush"].action
    assert "flush_sent" not in by_role and "remapped" not in by_role


def test_smp_314_loss_witness_shows_the_flush_after_unlock() -> None:
    """3.14 SMP (before 1cf35d47712d): the zapper unlocks, then sends its IPIs; the walk finds the PTE none while
    the writer's CPU has not run the handler yet. Before session 20 the witness showed neither the unlock nor the
    walk."""
    w, by_role = _first_witness("unseen20_two_writers_dontneed_half", "3.14", "smp")
    assert (by_role["pte_clear"].seq < by_role["unlock"].seq < by_role["flush_sent"].seq
            < by_role["walk_found_none"].seq < by_role["io_snapshot"].seq < by_role["stale_store"].seq
            < by_role["late_flush"].seq)
    assert w.threads[by_role["stale_store"].tid] == "wb" and by_role["late_flush"].fn == "flush_tlb_func"


def test_read_back_witness_explains_the_lost_store() -> None:
    """expect_failed has no pfn (the oracle checks a file page after a final sync): before session 20 its witness
    was the one transition where the run ended. Now it is the lost store's story of the page cached there."""
    sc = _load("unseen20_two_writers_dontneed_half")
    cfg = _cfg(sc, "6.1", "smp")
    r = explore(sc, cfg, "dfs", budget=80_000)
    run = run_schedule(sc, cfg, r.found[0].schedule)
    w = next(w for w in witnesses_for(r.found[0].violations, sc, cfg, run.executed) if w.invariant == "expect_failed")
    by_role = {row.role: row for row in w.rows}
    assert by_role["pte_clear"].fn == "zap_pte_range" and by_role["mkclean_check"].action == "not_mapped(1)"
    assert w.threads[by_role["stale_store"].tid] == "wb" and by_role["stale_store"].action.startswith("store ")
    assert by_role["io_snapshot"].seq < by_role["stale_store"].seq < by_role["late_flush"].seq


# unseen20_mremap_then_ftruncate cut down to the window that made the reduced and the full search disagree (session
# 20): on 4.8 the writer's store to address 0 lands through the stale entry after msync's snapshot; move_page_tables'
# late flush then drops that entry, and until the writer's next store (to address 1, which now maps the same file
# page: a write fault that re-dirties it) the page differs from the disk with nothing dirty anywhere. The full
# search judged that window lost_dirty_data, the reduced one (which keeps end states, not every state on the way)
# did not. The oracle now judges a loss when data is dropped or at quiescence (kernel_model/oracle.py): the window
# closed by the later store lost nothing in this run, and both searches say so.
_TRANSIENT_LOSS = """
name = "transient_loss"
[setup]
pages = 2
mapped = true
warm_tlb = ["writer"]
[[threads]]
name = "writer"
program = [{ op = "store", pages = [0] }, { op = "store", pages = [1] }]
[[threads]]
name = "mover"
program = [{ op = "mremap", pages = [0], to = 1 }]
[[threads]]
name = "writeback"
program = [{ op = "msync", pages = [0] }]
"""


def _transient_loss(tmp_path: Path):
    path = tmp_path / "transient_loss.toml"
    path.write_text(_TRANSIENT_LOSS)
    sc = load_scenario(str(path))
    return sc, _cfg(sc, "4.8", "up")


def test_a_window_closed_by_a_later_store_is_no_loss_in_either_search(tmp_path: Path) -> None:
    sc, cfg = _transient_loss(tmp_path)
    full = explore(sc, cfg, "dfs", budget=80_000, reduce=False, stop_at_first=False)
    reduced = explore(sc, cfg, "dfs", budget=80_000, stop_at_first=False)
    assert full.complete and reduced.complete
    assert not full.found and not reduced.found
    assert reduction_mismatch(sc, cfg, 20_000) == AGREE
