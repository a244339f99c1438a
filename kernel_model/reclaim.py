"""mm/vmscan.c and mm/rmap.c: page reclaim with batched TLB flushes (TTU_BATCH_FLUSH), and
flush_tlb_batched_pending, the fix of 3ea277194daa (v4.13).

shrink_folio_list unmaps each folio through the rmap (try_to_unmap); on x86 try_to_unmap_one clears the PTE
under the PTL but defers the TLB flush (should_defer_flush → set_tlb_ubc_flush_pending), so one IPI round covers
many pages. The flush is done by try_to_unmap_flush_dirty before a dirty page is written out, and by
try_to_unmap_flush before any page is freed: reclaim never frees a page a TLB may still map. But between the
PTL release and that flush, another CPU may still hold the old translation while mprotect, munmap, mremap or
madvise find the PTE already none and so flush nothing: "there is a window where an mprotect that limits access
still allows access" (3ea277194daa). The fix records the pending flush in mm->tlb_flush_batched, and those paths
call flush_tlb_batched_pending under their PTL.

Coarser than the kernel: the folios come from the page cache (find_get_entry takes the reference that
isolate_lru_folios takes), not from the LRU lists; page_check_references (the referenced bits) is not modelled,
so every folio looks reclaimable; a folio written back by pageout stays in the page cache (the kernel frees it on
a later pass, after the IO: not modelled).

Also coarser, and not on the safe side: every dirty folio is paged out here. The kernel's shrink_folio_list writes
a dirty file folio only from kswapd, only with PG_reclaim set by an earlier pass and PGDAT_DIRTY on the node;
otherwise it sets PG_reclaim and goes to activate_locked, which unlocks the folio before the deferred
try_to_unmap_flush at the end of the list. And try_to_unmap_one's folio_mark_dirty of a dirty PTE clears
PG_reclaim, so a folio whose dirty PTE this pass cleared is always activated. In that branch folio-lock users
(write_cache_pages, truncate_inode_pages) can run between the unlock and the flush: tried in issue 17 (session
13, tests/test_unseen_scenarios.py's xfail), unseen13_truncate_vs_reclaim_dirty gives 4.12 stale_tlb_access and
unseen_reclaim_stores lost_dirty_data on every kernel from 4.3 (6.2 included: folio_mkclean sees the folio
unmapped). Left to the lead: the activate branch for a folio whose dirty PTE this pass cleared needs no new
state, the pageout branch of a later pass needs PG_reclaim (an op of its own), and both change verdicts the
project states as clean.
"""

from __future__ import annotations

from dataclasses import dataclass

from kernel_model.context import Kctx
from kernel_model.mmu_gather import flush_tlb_mm_range
from kernel_model.state import Pte
from kernel_model.steps import Note, Path, Step
from kernel_model.writeback import folio_clear_dirty_for_io

TLB_FLUSH_ALL = 1 << 30  # flush_tlb_mm / TLB_FLUSH_ALL: every address of the mm (past any page of the model)


@dataclass(slots=True)
class TlbflushUnmapBatch:
    """current->tlb_ubc: the reclaiming task's pending flush (its cpumask is every other CPU in the model)."""

    flush_required: bool = False
    writable: bool = False  # a dirty (so writable) PTE was cleared: flush before writing the page out


def flush_tlb_batched_pending(k: Kctx, fn: str) -> Path:
    """mm/rmap.c (3ea277194daa), called under the PTL by change_pte_range, zap_pte_range and move_ptes: if reclaim
    deferred a flush of this mm, flush the whole mm now, then clear the flag. A kernel before the fix has no flag
    and no call. When no thread of the scenario reclaims, the flag is false throughout and its read is left out
    (an extra scheduling point that could change nothing)."""
    if not (k.cfg.fixed("flush_tlb_batched_pending") and k.batched_flushes):
        return
    if (yield Step(fn, "test_tlb_flush_batched", ())):
        yield from flush_tlb_mm_range(k, "flush_tlb_batched_pending", 0, TLB_FLUSH_ALL)  # flush_tlb_mm
        yield Step("flush_tlb_batched_pending", "clear_tlb_flush_batched", ())


def should_defer_flush(k: Kctx) -> bool:
    """TTU_BATCH_FLUSH and arch_tlbbatch_should_defer: x86 defers when the mm may be live on another CPU. UP has
    no other CPU; s390 has no ARCH_WANT_BATCHED_UNMAP_TLB_FLUSH (its IPTE flushes as it clears). Before 4.3
    (72b252aed506) reclaim never deferred (Config.batched_unmap_flush)."""
    return k.cfg.arch == "smp" and k.cfg.batched_unmap_flush


def set_tlb_ubc_flush_pending(k: Kctx, ubc: TlbflushUnmapBatch, dirty: bool) -> Path:
    ubc.flush_required = True
    if k.cfg.fixed("flush_tlb_batched_pending"):
        # "barrier(); mm->tlb_flush_batched = true;": after the PTE clear, before the PTL is dropped.
        yield Step("set_tlb_ubc_flush_pending", "set_tlb_flush_batched", ())
    if dirty:
        ubc.writable = True
    yield Note("set_tlb_ubc_flush_pending", "deferred", (ubc.writable,))


def try_to_unmap_one(k: Kctx, ubc: TlbflushUnmapBatch, pfn: int, va: int) -> Path:
    """One mapping of the folio, under the PTL (page_vma_mapped_walk): clear the PTE, deferring the flush where
    it can; move a dirty bit to the folio; remove the rmap and the PTE's reference (the page cache and reclaim
    still hold theirs, so the page is not freed here)."""
    table = k.table_of(va)
    yield Step("page_vma_mapped_walk", "spin_lock", (table, k.tid))
    pte = yield Step("page_vma_mapped_walk", "pte_get", (va,))
    if pte is not None and Pte(*pte).pfn == pfn:
        if should_defer_flush(k):
            old = Pte(*(yield Step("try_to_unmap_one", "ptep_get_and_clear_full", (va, False))))
            yield from set_tlb_ubc_flush_pending(k, ubc, old.dirty)
        else:  # ptep_clear_flush
            old = Pte(*(yield Step("ptep_clear_flush", "ptep_get_and_clear_full", (va, k.sync_pte_clear))))
            yield from flush_tlb_mm_range(k, "ptep_clear_flush", va, va + 1)
        if old.dirty:
            yield Step("try_to_unmap_one", "set_page_dirty", (pfn,))
        mapcount = yield Step("try_to_unmap_one", "page_remove_rmap", (pfn, False))
        if mapcount < 0:
            yield Note("try_to_unmap_one", "print_bad_pte", (va, pfn, mapcount))
        yield Step("try_to_unmap_one", "put_page", (pfn,))
    yield Step("page_vma_mapped_walk", "spin_unlock", (table, k.tid))


def try_to_unmap(k: Kctx, ubc: TlbflushUnmapBatch, pfn: int, index: int) -> Path:
    """rmap_walk_file with TTU_BATCH_FLUSH: i_mmap_rwsem read, try_to_unmap_one at every address mapping it."""
    yield Step("rmap_walk_file", "down_read", ("i_mmap_rwsem", k.tid))
    for va in (yield Step("rmap_walk_file", "i_mmap_lookup", (index,))):
        yield from try_to_unmap_one(k, ubc, pfn, va)
    yield Step("rmap_walk_file", "up_read", ("i_mmap_rwsem", k.tid))


def try_to_unmap_flush(k: Kctx, ubc: TlbflushUnmapBatch) -> Path:
    """arch_tlbbatch_flush: one flush of everything the batch deferred, on every CPU of its cpumask."""
    if not ubc.flush_required:
        return
    yield from flush_tlb_mm_range(k, "try_to_unmap_flush", 0, TLB_FLUSH_ALL)
    ubc.flush_required = False
    ubc.writable = False


def try_to_unmap_flush_dirty(k: Kctx, ubc: TlbflushUnmapBatch) -> Path:
    """Before pageout: a writable translation could still dirty the page during the IO (d950c9477d51)."""
    if ubc.writable:
        yield from try_to_unmap_flush(k, ubc)


def pageout(k: Kctx, pfn: int, index: int) -> Path:
    """folio_clear_dirty_for_io, then ->writepage (PG_writeback, snapshot, submit; it unlocks the folio). The IO
    completes in the same thread (as in kernel_model.writeback)."""
    if not (yield from folio_clear_dirty_for_io(k, pfn, index)):
        yield Step("pageout", "folio_unlock", (pfn, k.tid))
        return
    yield Step("writepage", "writepage", (pfn,))
    yield Step("writepage", "folio_unlock", (pfn, k.tid))
    yield Step("end_page_writeback", "end_page_writeback", (pfn,))


def shrink_folio_list(k: Kctx, indexes: tuple[int, ...]) -> Path:
    """kswapd's shrink_folio_list over the folios of these file offsets. Returns how many it freed."""
    ubc = TlbflushUnmapBatch()
    isolated: list[int] = []
    freed = 0
    for index in indexes:
        pfn = yield Step("isolate_lru_folios", "find_get_entry", (index,))
        if pfn is None:
            continue
        isolated.append(pfn)
        if not (yield Step("shrink_folio_list", "folio_trylock", (pfn, k.tid))):
            continue  # keep: somebody holds the folio lock
        if (yield Step("shrink_folio_list", "folio_test_writeback", (pfn,))):
            yield Step("shrink_folio_list", "folio_unlock", (pfn, k.tid))
            continue
        if (yield Step("shrink_folio_list", "folio_mapped", (pfn,))):
            yield from try_to_unmap(k, ubc, pfn, index)
            if (yield Step("shrink_folio_list", "folio_mapped", (pfn,))):
                yield Step("shrink_folio_list", "folio_unlock", (pfn, k.tid))  # activate_locked
                continue
        if (yield Step("shrink_folio_list", "folio_test_dirty", (pfn,))):
            yield from try_to_unmap_flush_dirty(k, ubc)
            yield from pageout(k, pfn, index)  # PAGE_SUCCESS, under writeback: keep
            continue
        if (yield Step("shrink_folio_list", "remove_mapping", (pfn,))):
            freed += 1  # free_it: the page waits on the free list for the flush below
        yield Step("shrink_folio_list", "folio_unlock", (pfn, k.tid))
    yield from try_to_unmap_flush(k, ubc)
    # free_unref_page_list (freed folios) and putback_lru_folio (kept ones) drop reclaim's references: after the
    # flush, so no page is freed while a TLB may map it.
    for pfn in isolated:
        yield Step("shrink_folio_list", "put_page", (pfn,))
    yield Note("shrink_folio_list", "done", (freed,))
    return freed
