"""The mutant registry: every deliberately wrong kernel, declared once.

A mutant exists to prove that the oracle catches what it claims to catch. Each entry says what is wrong (in the
kernel's words), which invariant it is expected to break, and where it shows: the library scenario and the base
configuration in which the explorer finds it (that base configuration without the mutant is clean).
``kernel_model.config`` (MUTANTS, MUTANT_BREAKS), ``analysis.mutant_table`` (MUTANT_TABLE), ``tlbrace mutants``
and the tests all derive from this table; the oracle never reads it.

To add a mutant: append one ``Mutant(...)`` here, and make the kernel path that it breaks test
``cfg.has("<name>")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Mutant:
    name: str  # the --mutant value
    description: str  # one line: what this kernel does wrong
    breaks: str  # the invariant the oracle must report (kernel_model.oracle)
    scenario: str | None  # the library scenario that shows it; None: not observable, ``note`` says why
    config: tuple[tuple[str, object], ...] = ()  # base configuration overrides for that scenario
    note: str = ""  # why a mutant has no scenario, or what a reader should know


REGISTRY: Final[tuple[Mutant, ...]] = (
    Mutant("free_before_flush", "tlb_flush_mmu_free runs before tlb_flush_mmu_tlbonly: pages freed while "
           "TLBs still map them", "freed_while_mapped", "anon_pages",
           (("mmu_gather_bundle", 1), ("max_gather_batch_count", 0))),
    Mutant("flush_after_unlock", "pre-1cf35d47712d: the TLB flush happens after pte_unmap_unlock",
           "lost_dirty_data", "madv_dontneed", (("ordering", "eager"), ("arch", "up")),
           note="a real old kernel (< 3.15), so also the fix switch flush_before_unlock of kernel_model.kernels: "
                "this name is an alias for it (Config.fixed), kept for old logs and commands"),
    Mutant("delayed_rmap_after_unlock", "Linus's first version: delayed rmaps removed after dropping the PTL",
           "delayed_rmap_after_unlock", "madv_dontneed"),
    Mutant("no_set_page_dirty", "zap_pte_range forgets to move the PTE dirty bit into PG_dirty",
           "lost_dirty_data", "writable_clean"),
    Mutant("delayed_in_any_batch", "tlb_next_batch ignores delayed_rmap and starts new batches",
           "delayed_outside_active_batch", "zap_many_pages"),
    Mutant("skip_tlb_flush_rmaps", "the delayed rmap removal (tlb_flush_rmaps) never happens",
           "delayed_rmap_after_unlock", "madv_dontneed"),
    Mutant("mkclean_ignores_result", "folio_clear_dirty_for_io drops folio_mkclean's result",
           "lost_dirty_data", None,
           note="not observable (so no scenario shows it) for data in a faithful model: write_cache_pages calls folio_clear_dirty_for_io "
                "only for a folio it found PG_dirty, under the folio lock, so folio_test_clear_dirty returns true "
                "whatever folio_mkclean said; the result only feeds dirty accounting and the fs's ->dirty_folio, "
                "not modelled. tests/test_explore.py proves it harmless exhaustively instead"),
    Mutant("no_folio_lock_in_fault", "the shared-file fault paths dirty the page without the folio lock",
           "lost_dirty_data", "munmap", note="needs a store that faults the page back in"),
    Mutant("double_ptl", "zap_pte_range takes the PTL a second time (self-deadlock)", "hang", "madv_dontneed"),
    Mutant("no_ipi_while_spinning", "a CPU spinning on a PTL or waiting for acks does not service flush IPIs",
           "hang", "madv_dontneed"),
    # The zapper's wait_acks returns while the writer's CPU still holds its translation; the counter's next
    # increment goes through it.
    Mutant("ack_before_invalidate", "the flush IPI handler acks (csd_unlock) before flush_tlb_func invalidates",
           "stale_tlb_access", "madv_dontneed"),
    # The write fault's unlock for ->page_mkwrite leaves the folio clean, unlocked and unmapped: only the fault's
    # reference keeps eviction off it.
    Mutant("fault_without_page_ref", "the fault path drops its folio reference before the PTE is set, so "
           "eviction can free the page in the middle of the fault", "freed_while_mapped", "fault_vs_evict"),
)

BY_NAME: Final[dict[str, Mutant]] = {m.name: m for m in REGISTRY}
