"""Session 21, scen21: tests/scenarios/unseen21_*.toml, written from the kernel's code paths (each file's header
reasons out the verdict per kernel and machine before any search was run, and says where the search disagreed and
why). Three of them aim at UP's tlb_fast_mode before 29eb77825cc7 (v3.10), which no earlier unseen scenario
reached; the others at operations no earlier one combined (a counter with mremap or mprotect, mprotect of
anonymous memory).

Same rules as tests/test_unseen20.py: a clean verdict needs the whole reduced state space searched (dfs with
sleep sets, 80,000 states at most); a violation is what a bounded search finds, and must be among the invariants
listed. Cells over about 5 s were searched and are named in comments, not run here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.witness import WitnessRow, witnesses_for
from controlled.explorer import explore
from controlled.replay import run_schedule
from scenarios.loader import load_scenario
from tests.test_unseen_scenarios import _assert_verdict, _kernel_cfg as _cfg, _load

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
LOST = frozenset({"lost_dirty_data"})
STALE = frozenset({"stale_tlb_access"})
FREED = frozenset({"freed_while_mapped"})
CLEAN: frozenset[str] = frozenset()

# name -> (kernel, arch) -> the invariants the search finds (dfs, 80,000 states at most): the predictions, as
# committed before any search, except where a comment says the prediction was wrong (the headers say why).
UNSEEN21: dict[str, dict[tuple[str, str], frozenset[str]]] = {
    "unseen21_up_fast_mode_reclaim": {
        ("3.9", "up"): LOST | FREED, ("3.10", "up"): CLEAN, ("3.14", "up"): CLEAN, ("6.2", "up"): CLEAN,
        ("3.9", "smp"): CLEAN, ("6.1", "smp"): CLEAN, ("3.9", "s390"): CLEAN,
        # predicted clean: wrong, reclaim's deferred flush (4.3) against a zap that finds pte_none, closed by
        # 3ea277194daa's flush_tlb_batched_pending in zap_pte_range (4.13)
        ("4.12", "smp"): STALE, ("4.2", "smp"): CLEAN, ("4.13", "smp"): CLEAN, ("4.12", "up"): CLEAN},
    # 4.13 and 6.1 SMP clean too, the whole space (58,478 states each): searched, session 21
    "unseen21_fast_mode_truncate_reader": {
        ("3.9", "up"): FREED | STALE, ("3.10", "up"): STALE, ("4.12", "up"): STALE, ("4.13", "up"): CLEAN,
        ("6.2", "up"): CLEAN, ("3.9", "smp"): STALE, ("4.12", "smp"): STALE, ("3.9", "s390"): CLEAN},
    "unseen21_counter_vs_mremap": {
        ("4.8", "smp"): LOST, ("4.8", "up"): LOST, ("4.9", "smp"): CLEAN, ("6.1", "smp"): CLEAN,
        ("6.2", "smp"): CLEAN, ("4.9", "up"): CLEAN, ("4.8", "s390"): CLEAN},
    "unseen21_counter_vs_mprotect_msync": {
        ("3.14", "smp"): CLEAN, ("4.12", "smp"): CLEAN, ("6.1", "smp"): CLEAN, ("6.2", "smp"): CLEAN,
        ("3.14", "up"): CLEAN, ("6.2", "up"): CLEAN, ("6.2", "s390"): CLEAN},
    "unseen21_anon_mprotect_dontneed": {
        ("3.9", "up"): FREED | STALE, ("6.0", "smp"): CLEAN, ("6.2", "smp"): CLEAN, ("6.0", "up"): CLEAN,
        ("6.2", "up"): CLEAN, ("5.19", "s390"): CLEAN,
        # predicted stale_tlb_access: wrong, MADV_DONTNEED holds mmap_lock (read) across its flush and mprotect
        # takes it for write, so mprotect never runs inside the zap's window
        ("3.9", "smp"): CLEAN, ("4.13", "smp"): CLEAN, ("5.19", "smp"): CLEAN, ("3.10", "up"): CLEAN,
        ("5.19", "up"): CLEAN},
    # 4.13 and 6.1 SMP clean too, the whole space (52,627 states each): searched, session 21
    "unseen21_up_two_dontneeds_anon_store": {
        ("3.9", "up"): FREED | STALE, ("3.10", "up"): STALE, ("4.12", "up"): STALE, ("4.12", "smp"): STALE,
        ("4.13", "up"): CLEAN, ("6.2", "up"): CLEAN, ("4.12", "s390"): CLEAN},
    "unseen21_reader_mprotect_vs_kswapd": {
        ("4.2", "smp"): CLEAN, ("4.12", "smp"): CLEAN, ("4.13", "smp"): CLEAN, ("6.2", "smp"): CLEAN,
        ("4.12", "up"): CLEAN, ("6.2", "up"): CLEAN, ("4.12", "s390"): CLEAN},
    "unseen21_up_fast_mode_unused_entry": {
        ("3.9", "up"): FREED, ("3.10", "up"): CLEAN, ("6.2", "up"): CLEAN, ("3.9", "smp"): CLEAN,
        ("6.1", "smp"): CLEAN, ("3.9", "s390"): CLEAN},
    "unseen21_up_fast_mode_mremap_evict": {
        ("3.9", "up"): FREED, ("3.10", "up"): CLEAN, ("4.18", "up"): CLEAN, ("6.2", "up"): CLEAN,
        ("3.9", "smp"): CLEAN, ("4.18", "smp"): CLEAN, ("6.1", "smp"): CLEAN, ("3.9", "s390"): CLEAN},
    "unseen21_up_refault_counter_anon": {
        ("3.9", "up"): FREED, ("3.10", "up"): CLEAN, ("6.2", "up"): CLEAN, ("3.9", "smp"): CLEAN,
        ("6.1", "smp"): CLEAN, ("3.9", "s390"): CLEAN},
}


def test_every_unseen21_scenario_has_a_verdict_here() -> None:
    assert {p.stem for p in SCENARIOS.glob("unseen21_*.toml")} == set(UNSEEN21)


def _cells() -> list[tuple[str, str, str]]:
    return [(n, k, a) for n, cells in UNSEEN21.items() for k, a in cells]


@pytest.mark.parametrize("name, kernel, arch", _cells())
def test_unseen21_scenario_on_kernel(name: str, kernel: str, arch: str) -> None:
    sc = _load(name)
    _assert_verdict(explore(sc, _cfg(sc, kernel, arch), "dfs", budget=80_000), UNSEEN21[name][kernel, arch])


def _witness_rows(name: str, kernel: str, arch: str, invariant: str) -> dict[str, WitnessRow]:
    """The rows (by role) of the witness analyze builds for the first violation a bounded dfs finds."""
    sc = _load(name) if name.startswith("unseen") else load_scenario(name)
    cfg = _cfg(sc, kernel, arch)
    r = explore(sc, cfg, "dfs", budget=80_000)
    run = run_schedule(sc, cfg, r.found[0].schedule)
    w = next(w for w in witnesses_for(r.found[0].violations, sc, cfg, run.executed) if w.invariant == invariant)
    return {row.role: row for row in w.rows}


def test_fast_mode_pageout_witness_names_the_early_put_and_the_freeable_page() -> None:
    """3.9 UP: the witness used to tell race 1's story alone (the PTL dropped before the flush), which does not say
    why kswapd could write the page back at all; the zap's fast-mode put_page is why is_page_cache_freeable held."""
    rows = _witness_rows("unseen21_up_fast_mode_reclaim", "3.9", "up", "lost_dirty_data")
    assert rows["fast_mode_put"].fn == "__tlb_remove_page" and "29eb77825cc7" in rows["fast_mode_put"].why
    assert rows["freeable"].fn == "pageout"
    assert (rows["pte_clear"].seq < rows["fast_mode_put"].seq < rows["unlock"].seq < rows["freeable"].seq
            < rows["io_snapshot"].seq < rows["stale_store"].seq)


def test_fast_mode_free_witness_says_the_flush_is_the_cpus_own() -> None:
    """The library's up_fast_mode on 3.9: the free under the PTL is the violation; its row names tlb_fast_mode and
    the flush after pte_unmap_unlock, and no IPI row is looked for (on UP the flush is CPU 0's own)."""
    rows = _witness_rows("up_fast_mode", "3.9", "up", "freed_while_mapped")
    assert "tlb_fast_mode" in rows["free"].why and "pte_unmap_unlock" in rows["free"].why
    assert "late_flush" not in rows


def test_fast_mode_free_by_evict_witness_shows_the_early_put_and_the_evicting_step() -> None:
    """3.9 UP: mremap's MREMAP_FIXED unmapping left file page 1 to the page cache alone, and evict freed it. The
    witness used to show the evict's op end as the free, blame no put and no unlock; now it shows the zap's
    fast-mode put_page, the unlock before the flush and the evict_folio that freed the page."""
    rows = _witness_rows("unseen21_up_fast_mode_mremap_evict", "3.9", "up", "freed_while_mapped")
    assert rows["fast_mode_put"].fn == "__tlb_remove_page" and rows["free"].fn == "invalidate_mapping_pages"
    assert rows["pte_clear"].seq < rows["fast_mode_put"].seq < rows["unlock"].seq < rows["free"].seq
    assert "late_flush" not in rows
