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

A dirty file folio is paged out only where the kernel's shrink_folio_list would take that branch: kswapd (the
reclaim operation is kswapd's), PGDAT_DIRTY (modelled as set: without it kswapd never writes a file folio and
the branch would be unreachable), and since 4eda48235011 (v4.11, Config.reclaim_seen_twice) only a folio that
already has PG_reclaim from an earlier pass. Otherwise folio_set_reclaim and activate_locked, which unlocks the
folio before the deferred try_to_unmap_flush at the end of the list. try_to_unmap_one's set_page_dirty of a
dirty PTE clears PG_reclaim (folio_mark_dirty), so on 4.11+ a folio whose dirty PTE this pass cleared is always
activated: between its unlock and the flush, folio-lock users (write_cache_pages, truncate_inode_pages) run
while the old writable translation lives, and folio_mkclean finds the folio unmapped. That is a real kernel
window (docs/reclaim.md), which the tool shows (msync: lost_dirty_data on SMP from 4.11, patched 6.2 included).
A later pass (a second reclaim operation: the folios come from the page cache, so no LRU aging is needed in
between) finds the folio unmapped, dirty, PG_reclaim set, and pages it out under the folio lock. Not modelled:
direct reclaim (never writes a dirty file folio, ee72886d8ed5: always the activate branch, as 4.11+ kswapd's
first pass) and kswapd with PGDAT_DIRTY clear (the same); a folio under writeback is kept without the kernel's
folio_set_reclaim (its case 2: the model's pageout completes its IO at once, so only msync's is ever seen).
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
    # try_to_unmap walks without PVMW_SYNC, so page_vma_mapped_walk's map_pte reads the PTE before taking the PTL
    # and returns false for one that is not present ("Make a quick check before getting the lock" in 4.x's
    # page_check_address with sync = 0): a PTE a zapper has cleared is skipped at once, without waiting for the
    # zapper's PTL (folio_mkclean passes PVMW_SYNC and does wait: kernel_model.rmap). check_pte, under the PTL,
    # reads it again.
    if (yield Step("page_vma_mapped_walk", "pte_get", (va,))) is None:
        return
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
    completes in the same thread (as in kernel_model.writeback). Coarser: the kernel's pageout sets PG_reclaim
    before ->writepage and folio_end_writeback clears it again; here the folio already has it (may_pageout) and
    end_page_writeback clears it, the same state once the IO is done.

    is_page_cache_freeable comes first: a folio referenced by anyone but the page cache and reclaim's isolation
    (``folio_ref_count - folio_test_private == 1 + folio_nr_pages``; 4.x: ``page_count - page_has_private == 2``)
    is not written: PAGE_KEEP, keep_locked. A zapper's mmu_gather holds such a reference from the PTE clear until
    tlb_batch_pages_flush, after its TLB flush, so kswapd never writes a folio back in the window between an
    early page_remove_rmap and that flush. A fault between filemap_get_folio and set_pte_at, a write-protect fault
    (wp_page_shared's folio_get, kernel_model.memory do_wp_page), and ftruncate's lookup, hold one too.
    (write_cache_pages' folio batch would as well; the model does not count it, for no verdict depends on it:
    kernel_model.atomic filemap_lookup.)"""
    if not (yield Step("pageout", "is_page_cache_freeable", (pfn,))):
        yield Step("shrink_folio_list", "folio_unlock", (pfn, k.tid))  # PAGE_KEEP: keep_locked
        return
    if not (yield from folio_clear_dirty_for_io(k, pfn, index)):
        yield Step("pageout", "folio_unlock", (pfn, k.tid))
        return
    yield Step("writepage", "writepage", (pfn,))
    yield Step("writepage", "folio_unlock", (pfn, k.tid))
    yield Step("end_page_writeback", "end_page_writeback", (pfn,))


def may_pageout(k: Kctx, pfn: int) -> Path:
    """shrink_folio_list's "Only kswapd can writeback filesystem folios" test, for kswapd with PGDAT_DIRTY set:
    since 4eda48235011 (v4.11) only a folio seen before (folio_test_reclaim), earlier on the first pass."""
    if not k.cfg.reclaim_seen_twice:
        return True
    return (yield Step("shrink_folio_list", "folio_test_reclaim", (pfn,)))


def shrink_dirty_folio(k: Kctx, ubc: TlbflushUnmapBatch, pfn: int, index: int) -> Path:
    """A dirty folio, locked and unmapped: pageout, or activate_locked. Both end with the folio unlocked and
    kept (under writeback, or on the active list)."""
    if not (yield from may_pageout(k, pfn)):
        # "Immediately reclaim when written back": folio_set_reclaim, then activate_locked (folio_set_active,
        # folio_unlock). The deferred flush is left for try_to_unmap_flush at the end of the list.
        yield Step("shrink_folio_list", "folio_set_reclaim", (pfn,))
        yield Step("shrink_folio_list", "folio_unlock", (pfn, k.tid))  # activate_locked
        return
    yield from try_to_unmap_flush_dirty(k, ubc)
    yield from pageout(k, pfn, index)  # PAGE_SUCCESS, under writeback: keep


def shrink_folio(k: Kctx, ubc: TlbflushUnmapBatch, pfn: int, index: int) -> Path:
    """One folio of the list, isolated (reclaim holds a reference). Returns whether it was freed."""
    if not (yield Step("shrink_folio_list", "folio_trylock", (pfn, k.tid))):
        return False  # keep: somebody holds the folio lock
    if (yield Step("shrink_folio_list", "folio_test_writeback", (pfn,))):
        yield Step("shrink_folio_list", "folio_unlock", (pfn, k.tid))
        return False
    if (yield Step("shrink_folio_list", "folio_mapped", (pfn,))):
        yield from try_to_unmap(k, ubc, pfn, index)
        if (yield Step("shrink_folio_list", "folio_mapped", (pfn,))):
            yield Step("shrink_folio_list", "folio_unlock", (pfn, k.tid))  # activate_locked
            return False
    if (yield Step("shrink_folio_list", "folio_test_dirty", (pfn,))):
        yield from shrink_dirty_folio(k, ubc, pfn, index)
        return False
    freed = yield Step("shrink_folio_list", "remove_mapping", (pfn,))  # free_it: waits for the flush below
    yield Step("shrink_folio_list", "folio_unlock", (pfn, k.tid))
    return bool(freed)


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
        if (yield from shrink_folio(k, ubc, pfn, index)):
            freed += 1
    yield from try_to_unmap_flush(k, ubc)
    # free_unref_page_list (freed folios) and putback_lru_folio (kept ones) drop reclaim's references: after the
    # flush, so no page is freed while a TLB may map it.
    for pfn in isolated:
        yield Step("shrink_folio_list", "put_page", (pfn,))
    yield Note("shrink_folio_list", "done", (freed,))
    return freed
