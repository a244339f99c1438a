"""The atomic actions on shared page state: PTEs, PTLs, rmap, struct folio, page cache and backing store.

Each method is one indivisible step, as the page-table actor applies it. Blocking actions come in pairs:
``can_<op>`` says whether the action can proceed now (the controlled machine only schedules enabled steps; the
page-table actor queues the waiter FIFO until it can) and ``<op>`` performs it.

Nothing here touches a TLB: TLBs belong to CPUs (``kernel_model.tlb``).
"""

from __future__ import annotations

from kernel_model.constants import VMA_NONE
from kernel_model.state import FREE, HOLE, Folio, Pte, RwSem, State, sem_of

SIGBUS = -1  # filemap_get_folio's answer for an offset at or past i_size (filemap_fault: VM_FAULT_SIGBUS)


class LockMisuse(RuntimeError):
    """A path released a lock it did not hold: a bug in a path or a mutant, reported as a crash."""


class MoveTruncateReclaimOps:
    """The atomic actions of mremap, ftruncate, reclaim and mprotect (issue 15's races 3 and 4); PageTableOps
    inherits them. Each is one indivisible step, as in PageTableOps."""

    s: State

    def _set(self, pfn: int, **changes: object) -> None:
        """struct folio is an immutable value here (cheap to hash and copy); a change replaces it."""
        self.s.folios[pfn] = self.s.folios[pfn]._replace(**changes)

    # --- ftruncate (kernel_model.truncate) --------------------------------------------------------------------
    def i_size_write(self, size: int) -> int:
        """truncate_setsize (ext4_setattr): the new size first, so that faults past it fail before the page cache
        shrinks. Returns the old size (``oldsize = inode->i_size``; the caller holds i_rwsem, so no other
        ftruncate changes it in between)."""
        old = self.s.i_size
        self.s.i_size = size
        return old

    def i_size_read(self, index: int) -> bool:
        """filemap_fault's recheck under the folio lock: is ``index`` below the file's end (max_idx)?"""
        return index < self.s.i_size

    def ext4_truncate(self, size: int) -> None:
        """ext4_setattr's ext4_truncate after truncate_pagecache (ext4_ext_truncate → ext4_ext_remove_space):
        the file's blocks from ``size`` on are freed, so each reads back as a hole. Under i_rwsem, and after
        truncate_inode_pages waited for every folio's writeback there: no IO to those blocks is in flight."""
        disk = self.s.disk
        for index in range(size, len(disk)):
            disk[index] = HOLE

    def find_get_entry(self, index: int) -> int | None:
        """find_lock_entries / find_get_entries: look the offset up and take a reference (the caller's, dropped
        with folio_put). The folio lock is the caller's next step."""
        pfn = self.s.page_cache[index]
        if pfn is not None:
            self._set(pfn, refcount=self.s.folios[pfn].refcount + 1)
        return pfn

    def delete_from_page_cache(self, pfn: int) -> int:
        """truncate_inode_folio under the folio lock: truncate_cleanup_folio's folio_cancel_dirty, then
        filemap_remove_folio (out of the xarray, folio->mapping = NULL, the page cache's reference dropped). One
        step, coarser than the kernel's two: between them the oracle would see a cached, clean page that differs
        from the disk, a page on its way out of the file rather than a loss. The caller still holds its own
        reference, so this never frees the page. Returns the refcount left."""
        folio = self.s.folios[pfn]
        self.s.page_cache[folio.index] = None
        refcount = folio.refcount - 1
        self._set(pfn, dirty=False, in_page_cache=False, refcount=refcount)
        return refcount

    # --- reclaim (kernel_model.reclaim) -----------------------------------------------------------------------
    def folio_trylock(self, pfn: int, tid: int) -> bool:
        """folio_trylock: shrink_folio_list skips a locked folio rather than waiting."""
        if self.s.folios[pfn].locked != FREE:
            return False
        self._set(pfn, locked=tid)
        return True

    def folio_set_reclaim(self, pfn: int) -> None:
        """PG_reclaim: shrink_folio_list's activate branch marks a dirty folio it did not write (4eda48235011)."""
        self._set(pfn, reclaim=True)

    def folio_test_reclaim(self, pfn: int) -> bool:
        return self.s.folios[pfn].reclaim

    def is_page_cache_freeable(self, pfn: int) -> bool:
        """pageout's first test (mm/vmscan.c): ``folio_ref_count(folio) - folio_test_private(folio) == 1 +
        folio_nr_pages(folio)``, the page cache's reference and reclaim's isolation one (find_get_entry's here)
        and nobody else's; the model's folios are single pages without private data. Else PAGE_KEEP.

        The same step answers pageout's next test, ``if (!mapping) return PAGE_KEEP``: a folio that truncation
        took out of the page cache after reclaim's lookup found it (truncate_inode_folio clears folio->mapping
        under the folio lock, before reclaim's folio_trylock) is never written, so its data cannot land in a
        block ext4_truncate has freed. One step for both is exact, not coarser: reclaim holds the folio lock
        here, and only a holder of that lock changes the folio's mapping."""
        folio = self.s.folios[pfn]
        return folio.refcount == 2 and folio.in_page_cache

    def set_tlb_flush_batched(self) -> None:
        """set_tlb_ubc_flush_pending's ``mm->tlb_flush_batched = true`` (3ea277194daa): a flush of this mm is
        deferred; the per-task tlb_ubc (cpumask, flush_required, writable) lives on the reclaimer's stack."""
        self.s.tlb_flush_batched = True

    def test_tlb_flush_batched(self) -> bool:
        """flush_tlb_batched_pending's ``if (mm->tlb_flush_batched)``."""
        return self.s.tlb_flush_batched

    def clear_tlb_flush_batched(self) -> None:
        """flush_tlb_batched_pending's ``mm->tlb_flush_batched = false``, after its flush_tlb_mm."""
        self.s.tlb_flush_batched = False

    def remove_mapping(self, pfn: int) -> bool:
        """__remove_mapping: page_ref_freeze(folio, 2) (the page cache's reference and reclaim's isolation
        reference, nobody else's), the folio clean and unmapped; then out of the page cache, its reference
        dropped. Reclaim's own reference goes later, in free_unref_page_list, after try_to_unmap_flush."""
        folio = self.s.folios[pfn]
        if folio.refcount != 2 or folio.dirty or folio.mapcount > 0 or not folio.in_page_cache:
            return False
        self.s.page_cache[folio.index] = None
        self._set(pfn, in_page_cache=False, refcount=1)
        return True

    # --- mprotect (kernel_model.mprotect) ---------------------------------------------------------------------
    def ptep_modify_prot(self, va: int) -> Pte | None:
        """change_pte_range on one present PTE: ptep_modify_prot_start/commit with pte_wrprotect (the new
        protection is PROT_READ). The start clears the PTE and the commit writes it back in one step here: a
        hardware D-bit set cannot slip between them (x86's ptep_modify_prot_start is an xchg). Returns the old
        PTE (None: pte_none, nothing changed)."""
        pte = self.s.ptes[va]
        if pte is not None:
            self.s.ptes[va] = pte._replace(write=False)
        return pte


class VmaOps:
    """The VMAs (State.vma, State.vm_write) and the file's i_mmap tree: PageTableOps' actions on them, under the
    locks their paths hold (mmap_lock, i_mmap_rwsem)."""

    s: State

    def find_vma(self, va: int) -> int:
        """What the VMA at ``va`` maps: a file offset, VMA_ANON, or VMA_NONE (no VMA: the access SIGSEGVs)."""
        return self.s.vma[va]

    def detach_vma(self, va: int) -> None:
        self.s.vma[va] = VMA_NONE
        self.s.vm_write[va] = True  # no VMA, no flags: one value for an unmapped address

    def link_vma(self, va: int, target: int) -> None:
        """vma_link's insertion into the mm (the VMA tree): ``va`` maps file offset ``target`` or VMA_ANON, with
        VM_WRITE (the model's mmap is PROT_READ|PROT_WRITE; copy_vma then copies the old VMA's: vm_flags_init)."""
        self.s.vma[va] = target
        self.s.vm_write[va] = True

    def vm_flags_reset(self, va: int) -> None:
        """mprotect_fixup's vm_flags_reset(vma, newflags) for PROT_READ: the VMA at ``va`` loses VM_WRITE (an
        address without a VMA has no flags to change)."""
        if self.s.vma[va] != VMA_NONE:
            self.s.vm_write[va] = False

    def vm_flags_init(self, va: int, src: int) -> None:
        """copy_vma (vm_area_dup): the new VMA at ``va`` keeps the flags of the one at ``src``."""
        self.s.vm_write[va] = self.s.vm_write[src]

    def access_error(self, va: int) -> bool:
        """arch/x86/mm/fault.c access_error() for a write: True when the VMA at ``va`` lacks VM_WRITE."""
        return not self.s.vm_write[va]

    def vma_link_file(self, va: int, index: int) -> None:
        """__vma_link_file: the VMA mapping file offset ``index`` at ``va`` joins the file's i_mmap tree."""
        self.s.i_mmap[index] = tuple(sorted(self.s.i_mmap[index] + (va,)))

    def unlink_file_vma(self, va: int, index: int) -> None:
        """Out of the i_mmap tree (a no-op when it is not there: a second munmap of a range unmaps nothing)."""
        self.s.i_mmap[index] = tuple(v for v in self.s.i_mmap[index] if v != va)

    def i_mmap_lookup(self, index: int) -> tuple[int, ...]:
        """vma_interval_tree_foreach over file offset ``index``: every address at which a linked shared VMA maps
        it."""
        return self.s.i_mmap[index] if index < len(self.s.i_mmap) else ()


class PageTableOps(MoveTruncateReclaimOps, VmaOps):
    def __init__(self, state: State) -> None:
        self.s = state

    def _sem(self, name: str) -> RwSem:
        return sem_of(self.s, name)

    # --- locks -------------------------------------------------------------------------------------------
    def can_spin_lock(self, table: int, tid: int) -> bool:
        return self.s.ptl[table] == FREE

    def spin_lock(self, table: int, tid: int) -> None:
        self.s.ptl[table] = tid

    def spin_unlock(self, table: int, tid: int) -> None:
        if self.s.ptl[table] != tid:
            raise LockMisuse(f"thread {tid} unlocks PTL {table} held by {self.s.ptl[table]}")
        self.s.ptl[table] = FREE

    def can_folio_lock(self, pfn: int, tid: int) -> bool:
        return self.s.folios[pfn].locked == FREE

    def folio_lock(self, pfn: int, tid: int) -> None:
        self._set(pfn, locked=tid)

    def folio_unlock(self, pfn: int, tid: int) -> None:
        folio = self.s.folios[pfn]
        if folio.locked != tid:
            raise LockMisuse(f"thread {tid} unlocks folio {pfn} held by {folio.locked}")
        self._set(pfn, locked=FREE)

    def can_down_read(self, sem: str, tid: int) -> bool:
        return self._sem(sem).writer == FREE

    def down_read(self, sem: str, tid: int) -> None:
        s = self._sem(sem)
        s.readers = tuple(sorted(s.readers + (tid,)))

    def up_read(self, sem: str, tid: int) -> None:
        s = self._sem(sem)
        if tid not in s.readers:
            raise LockMisuse(f"thread {tid} up_read({sem}) without holding it")
        readers = list(s.readers)
        readers.remove(tid)
        s.readers = tuple(readers)

    def can_down_write(self, sem: str, tid: int) -> bool:
        s = self._sem(sem)
        return s.writer == FREE and not s.readers

    def down_write(self, sem: str, tid: int) -> None:
        self._sem(sem).writer = tid

    def up_write(self, sem: str, tid: int) -> None:
        s = self._sem(sem)
        if s.writer != tid:
            raise LockMisuse(f"thread {tid} up_write({sem}) held by {s.writer}")
        s.writer = FREE

    def downgrade_write(self, sem: str, tid: int) -> None:
        self.up_write(sem, tid)
        self.down_read(sem, tid)

    def can_folio_wait_writeback(self, pfn: int, tid: int) -> bool:
        return not self.s.folios[pfn].writeback

    def folio_wait_writeback(self, pfn: int, tid: int) -> None:
        return None

    # --- the hardware page walk (lock-free, atomic per PTE) ---------------------------------------------------
    def walk(self, va: int, write: bool) -> Pte | None:
        """A TLB miss: read the PTE; if it allows the access, set A (and D for a store) and return it."""
        pte = self.s.ptes[va]
        if pte is None or (write and not pte.write):
            return None
        pte = pte._replace(young=True, dirty=pte.dirty or write)
        self.s.ptes[va] = pte
        return pte

    def pte_mkdirty_write(self, va: int, pfn: int, value: int | None) -> bool:
        """A store through a writable-clean TLB entry: the locked D-bit set is atomic with the Present check
        (brief §5); if the PTE is gone or changed, the store faults instead of landing."""
        pte = self.s.ptes[va]
        if pte is None or not pte.write or pte.pfn != pfn:
            return False
        self.s.ptes[va] = pte._replace(dirty=True, young=True)
        self.write_page(pfn, value)
        return True

    def write_page(self, pfn: int, value: int | None) -> None:
        """A store through a dirty TLB entry: touches no page-table entry, only the page. ``value`` None
        (tlb.INCREMENT) is a locked increment of the word: a page's counter only counts up, so its new value is
        never one its disk block or IO snapshot holds (what Machine.canonical relies on)."""
        self._set(pfn, data=self.s.folios[pfn].data + 1 if value is None else value)

    def read_page(self, pfn: int) -> int:
        return self.s.folios[pfn].data

    # --- mm->tlb_flush_pending (include/linux/mm_types.h) ---------------------------------------------------------
    def inc_tlb_flush_pending(self) -> None:
        self.s.tlb_flush_pending += 1

    def dec_tlb_flush_pending(self) -> None:
        assert self.s.tlb_flush_pending > 0, "dec_tlb_flush_pending without a matching inc"
        self.s.tlb_flush_pending -= 1

    def mm_tlb_flush_nested(self) -> bool:
        """More than one gather of this mm is between its inc and its dec: another thread may have cleared PTEs
        this one found none, with that thread's flush still to come."""
        return self.s.tlb_flush_pending > 1

    # --- page tables ------------------------------------------------------------------------------------------
    def ptep_get_and_clear_full(self, va: int, sync_flush: bool) -> Pte | None:
        """x86: an atomic xchg, so a hardware D-bit set cannot slip between the read and the clear.
        ``sync_flush`` (s390 IPTE) is carried out by the runtime, which owns the TLBs."""
        pte = self.s.ptes[va]
        self.s.ptes[va] = None
        return pte

    def pte_none(self, va: int) -> bool:
        return self.s.ptes[va] is None

    def pte_get(self, va: int) -> Pte | None:
        return self.s.ptes[va]

    def set_pte_at(self, va: int, pte: tuple) -> None:
        self.s.ptes[va] = Pte(*pte)

    def pte_same(self, va: int, pte: tuple) -> bool:
        cur = self.s.ptes[va]
        return cur is not None and tuple(cur) == tuple(pte)

    # --- rmap ------------------------------------------------------------------------------------------------
    def page_add_file_rmap(self, pfn: int) -> int:
        """The mapcount only: the PTE's reference is the one the fault took in filemap_get_folio (do_read_fault
        and do_shared_fault hand it to the PTE; they folio_put it only when finish_fault installs nothing)."""
        mapcount = self.s.folios[pfn].mapcount + 1
        self._set(pfn, mapcount=mapcount)
        return mapcount

    def page_remove_rmap(self, pfn: int, delayed: bool) -> int:
        mapcount = self.s.folios[pfn].mapcount - 1
        self._set(pfn, mapcount=mapcount)
        return mapcount

    def folio_mapped(self, pfn: int) -> bool:
        return self.s.folios[pfn].mapcount > 0

    # --- struct folio flags --------------------------------------------------------------------------------
    def set_page_dirty(self, pfn: int) -> bool:
        """folio_mark_dirty: "if (folio_test_reclaim(folio)) folio_clear_reclaim(folio);" then PG_dirty."""
        was_clean = not self.s.folios[pfn].dirty
        self._set(pfn, dirty=True, reclaim=False)
        return was_clean

    folio_mark_dirty = set_page_dirty

    def folio_test_dirty(self, pfn: int) -> bool:
        return self.s.folios[pfn].dirty

    def folio_test_clear_dirty(self, pfn: int) -> bool:
        was = self.s.folios[pfn].dirty
        self._set(pfn, dirty=False)
        return was

    def folio_test_writeback(self, pfn: int) -> bool:
        return self.s.folios[pfn].writeback

    # --- page cache, IO and page lifetime ------------------------------------------------------------------
    def filemap_get_folio(self, index: int) -> int | None:
        """filemap_get_folio → filemap_get_entry: look the offset up and take a reference (folio_try_get, which
        the kernel rechecks against the xarray under RCU: one atomic step here). The caller owns the reference
        and drops it with folio_put (put_page). An offset at or past i_size is filemap_fault's VM_FAULT_SIGBUS
        (SIGBUS): ftruncate took it out of the file."""
        if index >= self.s.i_size:
            return SIGBUS
        pfn = self.s.page_cache[index]
        if pfn is not None:
            self._set(pfn, refcount=self.s.folios[pfn].refcount + 1)
        return pfn

    def filemap_lookup(self, index: int) -> int | None:
        """The page-cache lookup of write_cache_pages (filemap_get_folios_tag). Coarser than the kernel: its
        references (dropped by folio_batch_release) are not modelled. They keep eviction, __remove_mapping and
        pageout's is_page_cache_freeable off a folio msync holds. No verdict depends on them (session 17,
        docs/reclaim.md §8): an eviction before the folio lock is caught by write_cache_pages' recheck
        (folio_test_mapping) and ends as if it had come before the lookup, and evicts only clean folios, which
        msync skips anyway. A kswapd pageout that the reference would have refused writes the folio a little
        earlier than msync would: any stale store that lands after pageout's snapshot can land after msync's
        snapshot in the kernel too, since msync can take the folio lock at that point. Modelling them (a
        reference at the lookup, a put_page per folio after the batch) was measured: ladder pages=1 writers=2
        stores=1 passes=1 from 16,393 to 35,574 states, mkclean_first from 7,982 to 12,045, with the same
        verdicts.

        Nor are the page cache's tags: the kernel's WB_SYNC_ALL pass first tags DIRTY-tagged folios TOWRITE
        (tag_pages_for_writeback) and visits only those; here every cached folio is visited, and the PG_dirty
        test under the folio lock skips the clean ones. Same data outcome, except that a sync here also writes
        a folio dirtied after it started (the kernel leaves that to the next sync). Modelling both tags (a
        faithful version measured in issue 17) added one step per sync and conflicts between that step and every
        set_page_dirty: ladder pages=1 writers=2 stores=1 passes=2 grew from 408,008 to 526,092 states, with
        the same verdicts there and on the two other ladder cells tried, eager and delayed)."""
        return self.s.page_cache[index]

    def folio_test_mapping(self, pfn: int) -> bool:
        """``folio->mapping == mapping``, the check filemap_fault and write_cache_pages make once the folio is
        locked: was it taken out of the page cache (evicted) meanwhile? A folio never comes back once out."""
        return self.s.folios[pfn].in_page_cache

    def folio_get(self, pfn: int) -> None:
        """folio_get: one more reference (wp_page_shared's, under the PTL; and the fault_without_page_ref mutant's
        finish_fault)."""
        self._set(pfn, refcount=self.s.folios[pfn].refcount + 1)

    def page_cache_read(self, index: int) -> int | None:
        """__filemap_get_folio(FGP_CREAT) after a miss: filemap_alloc_folio, filemap_add_folio, read_folio.
        Returns the new folio with two references (the page cache's and the caller's), or None when
        filemap_add_folio finds a folio already at ``index`` (-EEXIST: another fault added it since the lookup);
        the kernel then frees its new folio, which nobody saw, and repeats the lookup (``goto repeat``). So at most
        one folio is ever cached per file offset. The read completes within the step (coarser than the kernel,
        which adds the folio locked and unlocks it when the read IO ends; nobody can use it before then)."""
        if self.s.page_cache[index] is not None or index >= self.s.i_size:
            # (past i_size: ftruncate ran since the lookup; the retried lookup answers SIGBUS, as filemap_fault's
            # recheck of max_idx under the folio lock does)
            return None
        pfn = len(self.s.folios)
        self.s.folios.append(Folio(index=index, anon=False, data=self.s.disk[index], refcount=2,
                                   in_page_cache=True))
        self.s.page_cache[index] = pfn
        return pfn

    def alloc_anon_page(self, va: int) -> int:
        """do_anonymous_page: a new zeroed folio; its reference becomes the PTE's once mapped."""
        pfn = len(self.s.folios)
        self.s.folios.append(Folio(index=va, anon=True, data=0, refcount=1))
        return pfn

    def page_add_new_anon_rmap(self, pfn: int) -> int:
        mapcount = self.s.folios[pfn].mapcount + 1
        self._set(pfn, mapcount=mapcount)
        return mapcount

    def writepage(self, pfn: int) -> int:
        """->writepage: set PG_writeback and submit; the device reads the page now (snapshot at submit)."""
        data = self.s.folios[pfn].data
        self._set(pfn, writeback=True, wb_data=data)
        return data

    def end_page_writeback(self, pfn: int) -> int:
        """folio_end_writeback: the IO is done; PG_reclaim cleared ("if (folio_test_reclaim(folio)) {
        folio_clear_reclaim(folio); folio_rotate_reclaimable(folio); }"), PG_writeback cleared."""
        folio = self.s.folios[pfn]
        self.s.disk[folio.index] = folio.wb_data
        self._set(pfn, writeback=False, reclaim=False)
        return folio.wb_data

    def put_page(self, pfn: int) -> int:
        refcount = self.s.folios[pfn].refcount - 1
        self._set(pfn, refcount=refcount, freed=refcount == 0)
        return refcount

    def evict_folio(self, index: int) -> int | None:
        """invalidate_mapping_pages for one offset (mapping_try_invalidate → mapping_evict_folio): a folio is
        skipped, not waited for, when folio_trylock fails (locked), when it is dirty or under writeback, when
        folio_mapped, or when it holds references beyond the page cache's and the caller's (mapping_evict_folio's
        ``folio_ref_count(folio) > folio_nr_pages(folio) + 1``: a fault between filemap_get_folio and set_pte_at
        holds one). The caller's reference (find_lock_entries) is not modelled, the step being atomic, so
        "only the page cache's" is refcount == 1. Returns the pfn of the evicted folio, or None when it was kept."""
        pfn = self.s.page_cache[index]
        if pfn is None:
            return None
        folio = self.s.folios[pfn]
        if (folio.locked != FREE or folio.dirty or folio.writeback or folio.mapcount > 0
                or folio.refcount != 1):
            return None
        self._set(pfn, in_page_cache=False)
        self.s.page_cache[index] = None
        self.put_page(pfn)
        return pfn
