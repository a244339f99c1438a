"""Where each deliberately wrong kernel shows: the library scenario and base configuration in which the explorer
catches the mutant, by the invariant it breaks (kernel_model.config.MUTANT_BREAKS). The base configuration without
the mutant is clean. Shared by the explorer's tests and scripts/wild_mutants.py (the same table under real
scheduling)."""

from __future__ import annotations

from typing import Final

MUTANT_TABLE: Final[dict[str, tuple[str, dict[str, object]] | None]] = {
    "free_before_flush": ("anon_pages", {"mmu_gather_bundle": 1, "max_gather_batch_count": 0}),
    "flush_after_unlock": ("madv_dontneed", {"ordering": "eager", "arch": "up"}),
    "delayed_rmap_after_unlock": ("madv_dontneed", {}),
    "no_set_page_dirty": ("writable_clean", {}),
    "delayed_in_any_batch": ("zap_many_pages", {}),
    "skip_tlb_flush_rmaps": ("madv_dontneed", {}),
    # Not observable for data in a faithful model: write_cache_pages calls folio_clear_dirty_for_io only for a
    # folio it found PG_dirty, under the folio lock, so folio_test_clear_dirty returns true whatever
    # folio_mkclean said; the result only feeds dirty accounting and the fs's ->dirty_folio, not modelled.
    # tests/test_explore.py proves it harmless exhaustively instead.
    "mkclean_ignores_result": None,
    "no_folio_lock_in_fault": ("munmap", {}),  # needs a store that faults the page back in
    "double_ptl": ("madv_dontneed", {}),
    "no_ipi_while_spinning": ("madv_dontneed", {}),
    # The write fault's unlock for ->page_mkwrite leaves the folio clean, unlocked and unmapped: only the fault's
    # reference keeps eviction off it.
    "fault_without_page_ref": ("fault_vs_evict", {}),
}
