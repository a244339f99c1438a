"""mm/page-writeback.c and mm/truncate.c: writing dirty file pages back, and dropping clean ones (brief §4).

The device reads a page some time after submission; the model takes the snapshot at submit and completes the
IO in the same thread right after unlocking the folio (coarser than an asynchronous completion, and equivalent
for the data: what reaches the disk is the snapshot).
"""

from __future__ import annotations

from kernel_model.context import Kctx
from kernel_model.rmap import folio_mkclean
from kernel_model.steps import Note, Path, Step


def folio_clear_dirty_for_io(k: Kctx, pfn: int, index: int) -> Path:
    """Called with the folio locked. folio_mkclean's result becomes PG_dirty (a PTE dirty bit it cleaned must
    not be forgotten), then PG_dirty is tested and cleared."""
    if (yield from folio_mkclean(k, pfn, index)) and not k.cfg.has("mkclean_ignores_result"):
        yield Step("folio_clear_dirty_for_io", "folio_mark_dirty", (pfn,))
    return (yield Step("folio_clear_dirty_for_io", "folio_test_clear_dirty", (pfn,)))


def write_cache_pages(k: Kctx, indexes: tuple[int, ...]) -> Path:
    """msync(MS_SYNC)/fsync: WB_SYNC_ALL over the given file offsets."""
    written = 0
    for index in indexes:
        pfn = yield Step("write_cache_pages", "filemap_lookup", (index,))  # filemap_get_folios_tag
        if pfn is None:
            continue
        yield Step("write_cache_pages", "folio_lock", (pfn, k.tid))
        if not (yield Step("write_cache_pages", "folio_test_mapping", (pfn,))):  # folio->mapping != mapping
            yield Step("write_cache_pages", "folio_unlock", (pfn, k.tid))  # truncated or evicted meanwhile
            continue
        # The kernel's order: PG_dirty first ("someone wrote it for us": a clean folio is skipped even while it is
        # under writeback), then the WB_SYNC_ALL wait for writeback in flight, then folio_clear_dirty_for_io.
        if not (yield Step("write_cache_pages", "folio_test_dirty", (pfn,))):
            yield Step("write_cache_pages", "folio_unlock", (pfn, k.tid))  # someone wrote it for us
            continue
        if (yield Step("write_cache_pages", "folio_test_writeback", (pfn,))):
            yield Step("write_cache_pages", "folio_wait_writeback", (pfn, k.tid))  # WB_SYNC_ALL waits
        if not (yield from folio_clear_dirty_for_io(k, pfn, index)):
            yield Step("write_cache_pages", "folio_unlock", (pfn, k.tid))
            continue
        yield Step("writepage", "writepage", (pfn,))  # PG_writeback, snapshot, submit
        yield Step("writepage", "folio_unlock", (pfn, k.tid))
        yield Step("end_page_writeback", "end_page_writeback", (pfn,))
        written += 1
    yield Note("write_cache_pages", "done", (written,))
    return written


def invalidate_mapping_pages(k: Kctx, indexes: tuple[int, ...]) -> Path:
    """posix_fadvise(POSIX_FADV_DONTNEED) → invalidate_mapping_pages → mapping_try_invalidate: evict what is
    clean, unlocked, unmapped and unreferenced; skip the rest (see PageTableOps.evict_folio)."""
    for index in indexes:
        yield Step("invalidate_mapping_pages", "evict_folio", (index,))
