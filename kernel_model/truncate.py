"""mm/truncate.c: ftruncate(2) shrinking a shared file: truncate_setsize → truncate_pagecache.

``truncate_pagecache``: unmap_mapping_range (zap every mapping of the pages past the new end, through the
rmap), truncate_inode_pages (take each such folio out of the page cache, dropping its dirty data with it), and
unmap_mapping_range again (for pages a racing fault mapped meanwhile; the model runs it too).

Truncation legitimately throws dirty data away. The oracle tells that from a loss by state alone:
lost_dirty_data judges only folios still in the page cache, and a truncated folio leaves it (its dirty bit
cancelled in the same step, PageTableOps.delete_from_page_cache); the file's end (State.i_size) moves first,
and an expectation about a page past it is void (the file no longer has that page). A store through a stale
translation into a truncated page is judged by stale_tlb_access / freed_while_mapped, never as a loss.

The mapping's i_rwsem (inode_lock around do_truncate) and mapping->invalidate_lock are not modelled: the
model's faults would take the latter for read, and truncation's final unmap_mapping_range catches what they
map meanwhile, as the kernel's second unmap does. Coarser than the kernel on purpose: two ftruncates of the file
overlap here, where do_sys_ftruncate → do_truncate's inode_lock serialises them. Why no verdict depends on it
(docs/reclaim.md, session 20): each does one i_size_write and then per-folio work under the folio lock, rechecked
(folio->mapping) and idempotent (a folio the other removed is skipped, a zap finds pte_none), so an overlap ends
where one of the two serial orders ends; faults and stores race either in both. What modelling it takes: a third
RwSem in State, whose holder's tid the writer-symmetry renaming (controlled/symmetry.py) must rename as it does
mmap_lock's, and ("sem", "i_rwsem") in ftruncate's footprint (controlled/op_footprints.py).
"""

from __future__ import annotations

from kernel_model.context import Kctx
from kernel_model.memory import unmap_page_range
from kernel_model.mmu_gather import tlb_finish_mmu, tlb_gather_mmu
from kernel_model.steps import Note, Path, Step


def unmap_mapping_range(k: Kctx, first: int, npages: int) -> Path:
    """unmap_mapping_pages(mapping, first, 0, even_cows): i_mmap_rwsem read; for every VMA mapping the
    offsets [first, EOF), zap_page_range_single of that address (no mmap_lock: the rmap lock keeps the VMA)."""
    yield Step("unmap_mapping_pages", "down_read", ("i_mmap_rwsem", k.tid))
    for index in range(first, npages):
        for va in (yield Step("unmap_mapping_range_tree", "i_mmap_lookup", (index,))):
            tlb = yield from tlb_gather_mmu(k, va, va + 1)
            yield from unmap_page_range(k, tlb, va, va + 1, {va: index})
            yield from tlb_finish_mmu(k, tlb)
    yield Step("unmap_mapping_pages", "up_read", ("i_mmap_rwsem", k.tid))


def truncate_inode_pages(k: Kctx, first: int, npages: int) -> Path:
    """truncate_inode_pages_range's second pass (find_get_entries, then folio_lock: it waits): each folio
    locked, rechecked (folio->mapping), waited for under writeback, unmapped if a fault mapped it again
    (truncate_cleanup_folio → unmap_mapping_folio), then deleted from the page cache; folio_put drops the
    lookup's reference, which frees the page when it was the last."""
    removed = 0
    for index in range(first, npages):
        pfn = yield Step("truncate_inode_pages_range", "find_get_entry", (index,))
        if pfn is None:
            continue
        yield Step("truncate_inode_pages_range", "folio_lock", (pfn, k.tid))
        if (yield Step("truncate_inode_pages_range", "folio_test_mapping", (pfn,))):
            if (yield Step("truncate_inode_pages_range", "folio_test_writeback", (pfn,))):
                yield Step("truncate_inode_pages_range", "folio_wait_writeback", (pfn, k.tid))
            if (yield Step("truncate_cleanup_folio", "folio_mapped", (pfn,))):
                yield from unmap_mapping_range(k, index, index + 1)  # unmap_mapping_folio
            yield Step("truncate_inode_folio", "delete_from_page_cache", (pfn,))
            removed += 1
        yield Step("truncate_inode_pages_range", "folio_unlock", (pfn, k.tid))
        yield Step("truncate_inode_pages_range", "put_page", (pfn,))  # folio_batch_release
    return removed


def do_truncate(k: Kctx, size: int, npages: int) -> Path:
    """ftruncate(fd, size pages) of a file of ``npages`` pages: truncate_setsize (i_size_write, then
    truncate_pagecache). Growing or keeping the size is not modelled (the loader allows only shrinking)."""
    yield Step("truncate_setsize", "i_size_write", (size,))
    yield from unmap_mapping_range(k, size, npages)
    removed = yield from truncate_inode_pages(k, size, npages)
    yield from unmap_mapping_range(k, size, npages)
    yield Note("truncate_pagecache", "done", (size, removed))
    return removed
