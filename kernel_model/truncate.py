"""ftruncate(2) of a shared file: do_sys_ftruncate → do_truncate → notify_change → ->setattr, on ext4.

The filesystem is ext4 (with its journal): ext4_setattr for ATTR_SIZE does, in this order, i_size_write (with
i_disksize, in one journal handle; ``if (!shrink) pagecache_isize_extended``), truncate_pagecache(inode,
inode->i_size), and, when the size did not grow (``attr->ia_size <= oldsize``), ext4_truncate, which frees the
file's blocks past the new size (ext4_ext_truncate → ext4_ext_remove_space; read: truncate_setsize and
ext4_ext_truncate; ext4_setattr's order and its ``<= oldsize`` test are from the 6.x source as remembered, the
search did not return its text). The generic path is the same order
(truncate_setsize: i_size_write, truncate_pagecache; then the filesystem's block truncation, e.g. ext2's
__ext2_truncate_blocks), so the step names below are truncate_setsize's.

``do_truncate`` holds ``inode_lock`` (i_rwsem for write, State.i_rwsem) around notify_change, so two ftruncates of
one file never overlap; nothing else the model runs takes it (docs/reclaim.md: msync is ext4_sync_file, which
takes no inode lock; faults, zaps, mprotect, mremap, reclaim and fadvise take none).

``truncate_pagecache``: unmap_mapping_range (zap every mapping of the pages past the new end, through the
rmap), truncate_inode_pages (take each such folio out of the page cache, dropping its dirty data with it), and
unmap_mapping_range again (for pages a racing fault mapped meanwhile; the model runs it too).

Truncation legitimately throws dirty data away. The oracle tells that from a loss by state alone:
lost_dirty_data judges only folios still in the page cache, and a truncated folio leaves it (its dirty bit
cancelled in the same step, PageTableOps.delete_from_page_cache); the file's end (State.i_size) moves first,
and an expectation about a page past it is void (the file no longer has that page; the oracle forgets a store
remembered there at i_size_write). A store through a stale translation into a truncated page is judged by
stale_tlb_access / freed_while_mapped, never as a loss.

Growing the file (a size above the current one, after an earlier shrink) is i_size_write alone, then
truncate_pagecache's walk over the pages past the new size, which finds none (the shrink removed them, and a
fault past i_size adds none). pagecache_isize_extended is not modelled: it write-protects the folio that
straddles the old size so that a store to its tail past the old EOF faults and allocates blocks; the model's
sizes are whole pages, so no folio straddles. A page the file grows over again reads back the hole ext4_truncate
left (State.HOLE, zeros), never its old contents.

mapping->invalidate_lock (ext4_setattr takes it around truncate_pagecache since 5.15, and ext4's i_mmap_sem
before, from 4.5) is not modelled: the model's faults would take it for read, and truncation's final
unmap_mapping_range catches what they map meanwhile, as the kernel's second unmap does. What it keeps out in the
kernel, a fault reading a page back into the cache past the new end, the model never does (page_cache_read
refuses an offset past i_size, where the kernel's fault would SIGBUS after adding it).

A fault racing the shrink: filemap_fault checks i_size at the lookup and again under the folio lock (session 22:
kernel_model.memory.filemap_fault, i_size_read), so a fault that found the folio before i_size_write and locks it
after (truncate_inode_pages has not reached it yet) answers SIGBUS instead of mapping a page past the end.
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
    """ftruncate(fd, size pages) of a file mapped over ``npages`` pages: under inode_lock, i_size_write (which
    gives the old size: truncate_setsize's ``oldsize = inode->i_size``, stable under the lock), truncate_pagecache,
    and ext4_truncate's block freeing unless the file grew."""
    yield Step("do_truncate", "down_write", ("i_rwsem", k.tid))  # inode_lock(dentry->d_inode)
    oldsize = yield Step("truncate_setsize", "i_size_write", (size,))
    yield from unmap_mapping_range(k, size, npages)
    removed = yield from truncate_inode_pages(k, size, npages)
    yield from unmap_mapping_range(k, size, npages)
    yield Note("truncate_pagecache", "done", (size, removed))
    if size <= oldsize:
        yield Step("ext4_setattr", "ext4_truncate", (size,))  # the blocks past the new size become holes
    yield Step("do_truncate", "up_write", ("i_rwsem", k.tid))  # inode_unlock
    return removed
