"""mm/rmap.c and mm/page_vma_mapped.c: folio_mkclean, the rmap walk writeback relies on (brief §4).

The early return when the folio is not mapped is the gate the old zap order defeated: with the rmap entry gone
before the TLB flush, writeback never waited on the zapper's PTL.
"""

from __future__ import annotations

from kernel_model.context import Kctx
from kernel_model.mmu_gather import flush_tlb_mm_range
from kernel_model.state import Pte
from kernel_model.steps import Note, Path, Step


def folio_mkclean(k: Kctx, pfn: int, index: int) -> Path:
    """Write-protect and clean every PTE mapping the folio; return how many were cleaned. Folio locked."""
    if not (yield Step("folio_mkclean", "folio_mapped", (pfn,))):
        yield Note("folio_mkclean", "not_mapped", (pfn,))  # return 0 at once: no walk, no PTL
        return 0
    cleaned = 0
    # rmap_walk_file: i_mmap_rwsem read, then each shared VMA overlapping the folio's offset.
    yield Step("rmap_walk_file", "down_read", ("i_mmap_rwsem", k.tid))
    for va in (yield Step("rmap_walk_file", "i_mmap_lookup", (index,))):
        cleaned += yield from page_mkclean_one(k, pfn, va)
    yield Step("rmap_walk_file", "up_read", ("i_mmap_rwsem", k.tid))
    return cleaned


def page_mkclean_one(k: Kctx, pfn: int, va: int) -> Path:
    """page_vma_mapped_walk with PVMW_SYNC always takes the PTL, even when the PTE looks none: so it waits for a
    zapper that holds it. On a match: ptep_clear_flush, then write the PTE back write-protected and clean."""
    table = k.table_of(va)
    yield Step("page_vma_mapped_walk", "spin_lock", (table, k.tid))
    pte = yield Step("page_vma_mapped_walk", "pte_get", (va,))  # check_pte
    cleaned = 0
    if pte is not None and Pte(*pte).pfn == pfn:
        pte = Pte(*pte)
        if pte.dirty or pte.write:
            # ptep_clear_flush: clear, then flush that address on every CPU in mm_cpumask, synchronously.
            old = yield Step("ptep_clear_flush", "ptep_get_and_clear_full", (va, k.sync_pte_clear))
            yield from flush_tlb_mm_range(k, "ptep_clear_flush", va, va + 1)
            old = Pte(*old)
            yield Step("page_mkclean_one", "set_pte_at", (va, (old.pfn, False, False, old.young)))
            cleaned = 1 if (old.dirty or old.write) else 0
    yield Step("page_vma_mapped_walk", "spin_unlock", (table, k.tid))
    return cleaned
