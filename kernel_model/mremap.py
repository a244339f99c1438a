"""mm/mremap.c: mremap(MREMAP_MAYMOVE|MREMAP_FIXED) of a shared file mapping, and eb66ae030829 (v4.19,
CVE-2018-18281), "mremap: properly flush TLB before releasing the page".

mremap moves PTEs from one page-table location to another (move_ptes): it does not free the page through an
mmu_gather, so "the lifetime of the page is controlled by the page table locking" (the commit). Before the fix,
move_ptes flushed the old range under the PTLs only when it moved a dirty PTE (5d1904204c99, v4.9, for
page_mkclean: before it a dirty PTE waited for the late flush too, and writeback could clean the page at its new
address while the old address's dirty TLB entry still wrote into it); for clean ones it set need_flush and move_page_tables flushed after every lock was dropped. In
that window ftruncate can find the page at its new address through the rmap, zap it (flushing only the new
address), drop it from the page cache and free it, while another CPU still reads it through the old address's
translation. The fix flushes before dropping the PTLs for every present PTE moved.

The model moves one VMA of whole pages to a destination range of the same size (old_len == new_len), mapped or
not: mremap_to unmaps the destination first. move_ptes holds i_mmap_rwsem for write (take_rmap_locks) — the lock
the fix did not need: it is dropped before the old flush too. The anon_vma lock of take_rmap_locks is not
modelled (file pages only).

Coarser than the kernel there (session 16, read in copy_vma's mirror copies): ``*need_rmap_locks =
(new_vma->vm_pgoff <= vma->vm_pgoff)`` only when vma_merge merged the new range into a neighbour; a new VMA
(vm_area_dup + vma_link, the model's every case) gets ``*need_rmap_locks = false``, and move_ptes then takes no
rmap lock: the kernel relies on the new VMA coming after the old one in the rmap walk (move_ptes' comment), so a
walker sees the PTE at the old address or at the new one, never neither. The model's i_mmap_lookup answers in
address order, not in link order, so it cannot rely on that and takes the rmap locks instead: a walker still sees
the old or the new PTE, with fewer interleavings inside move_ptes than the kernel has (none of them can change
what a walker finds, by the same argument).
"""

from __future__ import annotations

from kernel_model.constants import VMA_ANON, VMA_NONE
from kernel_model.context import Kctx
from kernel_model.memory import find_vmas, unmap_region, vma_link
from kernel_model.mmu_gather import flush_tlb_mm_range
from kernel_model.reclaim import flush_tlb_batched_pending
from kernel_model.state import Pte
from kernel_model.steps import Note, Path, Step


def move_ptes(k: Kctx, old_start: int, old_end: int, new_start: int) -> Path:
    """One PTE table's worth: returns need_flush (the old range's flush left to move_page_tables, after every PTL
    is dropped). Before eb66ae030829 that is every call that did not flush under the PTLs, whether or not it moved a
    PTE: 4.9-4.18's move_ptes ends ``if (force_flush) flush_tlb_range(vma, old_end - len, old_end); else
    *need_flush = true;``, and before 5d1904204c99 move_page_tables set ``need_flush = true;`` after each
    move_ptes call. So an old range whose PTEs were all none (kswapd cleared them with its flush deferred, or a
    zap's flush is still to come) is flushed before mremap returns. From eb66ae030829 there is no need_flush: the
    flush under the PTLs is for the present PTEs moved, and a call that found only none PTEs flushes nothing."""
    old_table, new_table = k.table_of(old_start), k.table_of(new_start)
    yield Step("move_ptes", "down_write", ("i_mmap_rwsem", k.tid))  # take_rmap_locks
    yield Step("move_ptes", "spin_lock", (old_table, k.tid))  # pte_offset_map_lock
    if new_table != old_table:
        yield Step("move_ptes", "spin_lock", (new_table, k.tid))  # spin_lock_nested(new_ptl)
    yield from flush_tlb_batched_pending(k, "move_ptes")
    force_flush = False
    for old_va in range(old_start, old_end):
        new_va = new_start + old_va - old_start
        pte = yield Step("move_ptes", "ptep_get_and_clear_full", (old_va, k.sync_pte_clear))
        if pte is None:
            continue
        pte = Pte(*pte)
        if k.cfg.fixed("mremap_flush_under_ptl") or (pte.dirty and k.cfg.fixed("mremap_dirty_flush")):
            # eb66ae030829 (4.19): every present PTE (pte_present); before it, only a dirty one (5d1904204c99,
            # 4.9, with its follow-up that tests the dirty bit of the value the clear returned, as here); before
            # 4.9, none: every moved PTE waited for move_page_tables' flush after the PTLs were dropped.
            force_flush = True
        yield Step("move_ptes", "set_pte_at", (new_va, tuple(pte)))  # move_pte, move_soft_dirty_pte
    if force_flush:
        yield from flush_tlb_mm_range(k, "move_ptes", old_start, old_end)  # flush_tlb_range(vma, old range)
    if new_table != old_table:
        yield Step("move_ptes", "spin_unlock", (new_table, k.tid))
    yield Step("move_ptes", "spin_unlock", (old_table, k.tid))  # pte_unmap_unlock
    yield Step("move_ptes", "up_write", ("i_mmap_rwsem", k.tid))  # drop_rmap_locks
    return not force_flush and not k.cfg.fixed("mremap_flush_under_ptl")


def move_page_tables(k: Kctx, old_start: int, old_end: int, new_start: int) -> Path:
    """Per PTE table (of the old range; the model's destination tables follow along page by page). Before the
    fix: ``if (need_flush) flush_tlb_range(vma, old_end-len, old_addr);`` after every PTL was dropped."""
    need_flush = False
    addr = old_start
    while addr < old_end:
        # The old and the new extent must each stay within one table per call, as move_page_tables' extent.
        extent = min(old_end, (k.table_of(addr) + 1) * k.ptes_per_table) - addr
        new_addr = new_start + addr - old_start
        extent = min(extent, (k.table_of(new_addr) + 1) * k.ptes_per_table - new_addr)
        need_flush |= yield from move_ptes(k, addr, addr + extent, new_addr)
        addr += extent
    if need_flush:
        yield from flush_tlb_mm_range(k, "move_page_tables", old_start, old_end)


def do_mremap(k: Kctx, old_start: int, old_end: int, new_start: int) -> Path:
    """mremap(old, len, len, MREMAP_MAYMOVE|MREMAP_FIXED, new) under mmap_lock write: mremap_to's do_munmap of
    the destination, then move_vma: copy_vma (VMAs at the new addresses with the old vm_pgoff, linked in i_mmap
    and the mm: vma_link), move_page_tables, and do_munmap of the old range (whose PTEs are none by now).
    Returns the new address, or False: -EFAULT when part of the old range has no VMA (vma_to_resize), and
    -EINVAL for an anonymous VMA, which the model does not move (its rmap would have to follow it)."""
    new_end = new_start + old_end - old_start
    yield Step("mremap", "down_write", ("mmap_lock", k.tid))
    old = yield from find_vmas(k, "vma_to_resize", old_start, old_end)
    if any(target == VMA_NONE or target == VMA_ANON for target in old.values()):
        yield Note("mremap", "efault" if VMA_NONE in old.values() else "einval", (old_start, old_end))
        yield Step("mremap", "up_write", ("mmap_lock", k.tid))
        return False
    dest = yield from find_vmas(k, "do_munmap", new_start, new_end)  # mremap_to: do_munmap(mm, new_addr, len)
    for va in range(new_start, new_end):
        yield Step("do_munmap", "detach_vma", (va,))
    yield from unmap_region(k, new_start, new_end, dest)
    yield from vma_link(k, {new_start + va - old_start: old[va] for va in range(old_start, old_end)})  # copy_vma
    if k.protects:  # copy_vma's vm_area_dup: the new VMA keeps the old one's vm_flags (VM_WRITE, mprotect.py)
        for va in range(old_start, old_end):
            yield Step("copy_vma", "vm_flags_init", (new_start + va - old_start, va))
    yield from move_page_tables(k, old_start, old_end, new_start)
    for va in range(old_start, old_end):  # move_vma: do_munmap(mm, old_addr, old_len)
        yield Step("do_munmap", "detach_vma", (va,))
    yield from unmap_region(k, old_start, old_end, old)
    yield Step("mremap", "up_write", ("mmap_lock", k.tid))
    yield Note("mremap", "moved", (old_start, old_end, new_start))
    return new_start


__all__ = ["move_ptes", "move_page_tables", "do_mremap"]
