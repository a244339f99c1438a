"""mm/memory.c, mm/madvise.c, mm/mmap.c: zapping PTEs (both orderings) and the page-fault paths.

``zap_pte_range`` follows the brief's §1a (v6.1, ``ordering="eager"``) and §1b (v6.2, ``ordering="delayed"``)
step for step. Preemption points (need_resched / cond_resched) are not modelled: the explorer already tries
every interleaving at step granularity.
"""

from __future__ import annotations

from kernel_model.atomic import SIGBUS
from kernel_model.constants import VMA_ANON, VMA_NONE
from kernel_model.context import Kctx
from kernel_model.mmu_gather import (
    MmuGather, __tlb_remove_page, flush_tlb_mm_range, tlb_batch_pages_flush, tlb_finish_mmu, tlb_flush_mmu,
    tlb_flush_mmu_tlbonly, tlb_flush_rmaps, tlb_gather_mmu, tlb_remove_tlb_entry,
)
from kernel_model.reclaim import flush_tlb_batched_pending
from kernel_model.state import Pte
from kernel_model.steps import Note, Path, Step


SIGBUS_FAULT = "sigbus"  # what a file fault returns when filemap_fault answered VM_FAULT_SIGBUS
ENOMEM = -12  # madvise(2)'s -ENOMEM: part of the range has no VMA


# --- zap ------------------------------------------------------------------------------------------------------
def zap_pte_range(k: Kctx, tlb: MmuGather, addr: int, end: int, vmas: dict[int, int]) -> Path:
    """Zap [addr, end) of one PTE table under its PTL. Returns where it stopped (< end when a batch filled).
    ``vmas``: what each address's VMA maps (find_vmas); every address of the range has one."""
    cfg = k.cfg
    table = k.table_of(addr)
    yield Step("zap_pte_range", "spin_lock", (table, k.tid))  # pte_offset_map_lock
    if cfg.has("double_ptl"):
        yield Step("zap_pte_range", "spin_lock", (table, k.tid))  # a self-deadlock: the PTL is not recursive
    yield from flush_tlb_batched_pending(k, "zap_pte_range")  # 3ea277194daa; arch_enter_lazy_mmu_mode: a no-op
    force_flush = False
    while addr < end:
        ptent = yield Step("zap_pte_range", "ptep_get_and_clear_full", (addr, k.sync_pte_clear))
        if ptent is None:  # pte_none: skipped (clearing it again changed nothing)
            addr += 1
            continue
        ptent = Pte(*ptent)
        tlb_remove_tlb_entry(tlb, addr)
        pfn = ptent.pfn
        delay_rmap = False
        if vmas[addr] != VMA_ANON:  # !PageAnon: anon pages ignore the dirty and young bits
            if ptent.dirty:
                if not cfg.has("no_set_page_dirty"):
                    yield Step("zap_pte_range", "set_page_dirty", (pfn,))
                if k.tlb_delay_rmap_possible:
                    # tlb_delay_rmap(tlb): sets tlb->delayed_rmap and evaluates true (CONFIG_SMP only)
                    tlb.delayed_rmap = True
                    delay_rmap = True
                    force_flush = True
                else:
                    # The v6.1 order: force a flush under the PTL (1cf35d47712d). UP and s390 keep the old order
                    # (brief §3). Mainline v6.2 (5df397dec7c4) sets force_flush only inside
                    # `if (tlb_delay_rmap(tlb))`, so on UP/s390 it no longer forces this flush: s390 does not
                    # need it (its PTE clear flushes synchronously); on UP a zapper preempted between
                    # pte_unmap_unlock and its flush (zap_pmd_range's cond_resched) leaves the stale dirty entry
                    # to the next task (docs/up-v6.2.md). `--kernel 6.2` and later model that
                    # (Config.zap_dirty_forces_flush false); the default keeps the brief's v6.1 flush.
                    # Before 1cf35d47712d (3.15) a dirty PTE forced nothing: only a full batch did, and the
                    # flush came at tlb_end_vma / tlb_finish_mmu, after the whole range was zapped.
                    force_flush = force_flush or (cfg.fixed("flush_before_unlock") and cfg.zap_dirty_forces_flush)
            # pte_young && !VM_SEQ_READ: mark_page_accessed (LRU only; nothing here depends on it)
        # rss[mm_counter(page)]--
        if not delay_rmap:
            mapcount = yield Step("zap_pte_range", "page_remove_rmap", (pfn, False))
            if mapcount < 0:
                yield Note("zap_pte_range", "print_bad_pte", (addr, pfn, mapcount))
        full = yield from __tlb_remove_page(k, tlb, pfn, delay_rmap)
        addr += 1
        if full:
            force_flush = True
            break
    # arch_leave_lazy_mmu_mode
    yield from _flush_and_unlock(k, tlb, table, addr, force_flush)
    return addr


def _flush_and_unlock(k: Kctx, tlb: MmuGather, table: int, addr: int, force_flush: bool) -> Path:
    """zap_pte_range's tail: the forced flush (under the PTL since 1cf35d47712d), tlb_flush_rmaps, pte_unmap_unlock,
    then tlb_flush_mmu, which frees the batched pages."""
    cfg = k.cfg
    if force_flush:
        tlb.forced_flushes += 1
        yield Note("zap_pte_range", "force_flush", (addr,))
        if cfg.has("free_before_flush"):
            yield from tlb_batch_pages_flush(k, tlb)  # freeing before the flush: what 1cf35d47712d forbids
        if cfg.fixed("flush_before_unlock"):
            # "Do the actual TLB flush before dropping ptl"
            yield from tlb_flush_mmu_tlbonly(k, tlb)
            if not (cfg.has("delayed_rmap_after_unlock") or cfg.has("skip_tlb_flush_rmaps")):
                yield from tlb_flush_rmaps(k, tlb)
    yield Step("zap_pte_range", "spin_unlock", (table, k.tid))  # pte_unmap_unlock
    if force_flush:
        if not cfg.fixed("flush_before_unlock"):
            yield from tlb_flush_mmu_tlbonly(k, tlb)
            yield from tlb_flush_rmaps(k, tlb)
        elif cfg.has("delayed_rmap_after_unlock"):
            yield from tlb_flush_rmaps(k, tlb)
        elif cfg.has("skip_tlb_flush_rmaps"):
            tlb.delayed_rmap = False  # the entries stay queued, never removed from the rmap
        yield from tlb_flush_mmu(k, tlb)


def unmap_page_range(k: Kctx, tlb: MmuGather, start: int, end: int, vmas: dict[int, int]) -> Path:
    """tlb_start_vma; the pgd..pmd walk calls zap_pte_range once per PTE table, restarting where a full batch
    made it stop; tlb_end_vma flushes (frees nothing)."""
    addr = start
    while addr < end:
        if vmas[addr] == VMA_NONE:
            addr += 1  # no VMA here (unmapped meanwhile): nothing to walk, as the kernel zaps VMA by VMA
            continue
        run_end = addr + 1
        table_end = min(end, (k.table_of(addr) + 1) * k.ptes_per_table)
        while run_end < table_end and vmas[run_end] != VMA_NONE:
            run_end += 1
        addr = yield from zap_pte_range(k, tlb, addr, run_end, vmas)
    if not tlb.fullmm:
        yield from tlb_flush_mmu_tlbonly(k, tlb)  # tlb_end_vma


def find_vmas(k: Kctx, fn: str, start: int, end: int) -> Path:
    """What the VMAs of [start, end) map, by address (a file offset, VMA_ANON or VMA_NONE), under mmap_lock: read
    with find_vma (the kernel's vma_find / find_vma_prev walk) when the scenario may remap or unmap an address;
    known without a read otherwise (address va maps file page va, or anonymous memory, for the whole run)."""
    if not (k.remaps or k.unmaps):
        return {va: VMA_ANON if k.anon else va for va in range(start, end)}
    vmas = {}
    for va in range(start, end):
        vmas[va] = yield Step(fn, "find_vma", (va,))
    return vmas


def new_vmas(k: Kctx, start: int, end: int, target: int | None) -> dict[int, int]:
    """What a new mapping of [start, end) maps: file offset ``target`` at ``start`` and on from there, anonymous
    memory, or (None) the same file range (anonymous memory in an anonymous setup)."""
    if target is None:
        target = VMA_ANON if k.anon else start
    return {va: VMA_ANON if target == VMA_ANON else target + va - start for va in range(start, end)}


def zap_page_range_single(k: Kctx, start: int, end: int) -> Path:
    """madvise(MADV_DONTNEED): under mmap_lock read; the VMAs stay (madvise_walk_vmas finds them first).

    madvise_walk_vmas zaps the VMAs it finds and skips the holes, returning -ENOMEM when there was one; with no
    VMA in the range at all it returns -ENOMEM at once, gathering nothing (no tlb_gather_mmu, so nothing counted
    in mm->tlb_flush_pending and no address it answers for). Coarser than the kernel: the VMAs of one call share
    one mmu_gather (the kernel's zap_page_range_single gathers per VMA). Returns ENOMEM when part of the range had
    no VMA, else None (as before: nothing reads a madvise's result)."""
    yield Step("madvise_dontneed", "down_read", ("mmap_lock", k.tid))
    vmas = yield from find_vmas(k, "madvise_walk_vmas", start, end)
    unmapped = VMA_NONE in vmas.values()
    if unmapped:
        yield Note("madvise_walk_vmas", "enomem", (start, end))
    if any(target != VMA_NONE for target in vmas.values()):
        tlb = yield from tlb_gather_mmu(k, start, end)
        yield from unmap_page_range(k, tlb, start, end, vmas)
        yield from tlb_finish_mmu(k, tlb)
    yield Step("madvise_dontneed", "up_read", ("mmap_lock", k.tid))
    return ENOMEM if unmapped else None


def unmap_region(k: Kctx, start: int, end: int, vmas: dict[int, int]) -> Path:
    """tlb_gather_mmu → unmap_vmas → free_pgtables (unlinks the VMA from i_mmap) → tlb_finish_mmu."""
    tlb = yield from tlb_gather_mmu(k, start, end)
    yield from unmap_page_range(k, tlb, start, end, vmas)
    yield from free_pgtables(k, vmas)
    yield from tlb_finish_mmu(k, tlb)


def free_pgtables(k: Kctx, vmas: dict[int, int]) -> Path:
    """unlink_file_vma of the file VMAs under i_mmap_rwsem (write); the PTE-table pages are not modelled."""
    files = [(va, index) for va, index in vmas.items() if index >= 0]
    if not files:
        return
    yield Step("free_pgtables", "down_write", ("i_mmap_rwsem", k.tid))
    for va, index in files:
        yield Step("unlink_file_vma", "unlink_file_vma", (va, index))
    yield Step("free_pgtables", "up_write", ("i_mmap_rwsem", k.tid))


def do_munmap(k: Kctx, start: int, end: int) -> Path:
    """munmap(2): find and detach the VMAs under mmap_lock write, downgrade to read (since dd2283f2605e, v4.20;
    before it, __do_munmap kept the write lock to the end: Config.munmap_downgrade), then unmap_region."""
    yield Step("munmap", "down_write", ("mmap_lock", k.tid))
    vmas = yield from find_vmas(k, "do_vmi_munmap", start, end)
    for va in range(start, end):
        yield Step("munmap", "detach_vma", (va,))
    if not k.cfg.munmap_downgrade:
        yield from unmap_region(k, start, end, vmas)
        yield Step("munmap", "up_write", ("mmap_lock", k.tid))
        return
    yield Step("munmap", "downgrade_write", ("mmap_lock", k.tid))
    yield from unmap_region(k, start, end, vmas)
    yield Step("munmap", "up_read", ("mmap_lock", k.tid))


def vma_link(k: Kctx, vmas: dict[int, int]) -> Path:
    """vma_link: a file VMA joins the file's i_mmap tree (__vma_link_file, under i_mmap_rwsem write), and every
    new VMA the mm (vma_iter_store)."""
    files = [(va, index) for va, index in vmas.items() if index >= 0]
    if files:
        yield Step("mmap_region", "down_write", ("i_mmap_rwsem", k.tid))
        for va, index in files:
            yield Step("vma_link_file", "vma_link_file", (va, index))
        yield Step("mmap_region", "up_write", ("i_mmap_rwsem", k.tid))
    for va, target in vmas.items():
        yield Step("mmap_region", "link_vma", (va, target))


def mmap_fixed(k: Kctx, start: int, end: int, target: int | None = None) -> Path:
    """mmap(MAP_FIXED) over an existing mapping: mmap_region's do_vmi_munmap of the old range first, then new
    VMAs (``target``: see new_vmas) are linked. mmap_lock is held for write throughout."""
    yield Step("mmap_region", "down_write", ("mmap_lock", k.tid))
    old = yield from find_vmas(k, "do_vmi_munmap", start, end)
    for va in range(start, end):
        yield Step("mmap_region", "detach_vma", (va,))
    yield from unmap_region(k, start, end, old)
    yield from vma_link(k, new_vmas(k, start, end, target))
    yield Step("mmap_region", "up_write", ("mmap_lock", k.tid))


def do_mmap(k: Kctx, start: int, end: int, target: int) -> Path:
    """mmap(addr, MAP_FIXED_NOREPLACE) of a file range or anonymous memory: do_mmap under mmap_lock write fails
    with -EEXIST when a VMA still covers part of [start, end) (nothing changes), else mmap_region links the new
    VMAs (vma_link). Returns whether it mapped."""
    yield Step("do_mmap", "down_write", ("mmap_lock", k.tid))
    for va in range(start, end):
        if (yield Step("do_mmap", "find_vma", (va,))) != VMA_NONE:
            yield Note("do_mmap", "eexist", (va,))
            yield Step("do_mmap", "up_write", ("mmap_lock", k.tid))
            return False
    yield from vma_link(k, new_vmas(k, start, end, target))
    yield Step("do_mmap", "up_write", ("mmap_lock", k.tid))
    return True


# --- faults ---------------------------------------------------------------------------------------------------
def do_user_addr_fault(k: Kctx, va: int, write: bool) -> Path:
    """arch/x86/mm/fault.c: lock_mm_and_find_vma (mmap_lock read), handle_mm_fault. False means SIGSEGV."""
    yield Step("do_user_addr_fault", "down_read", ("mmap_lock", k.tid))
    target = yield Step("do_user_addr_fault", "find_vma", (va,))
    if target == VMA_NONE:
        yield Step("do_user_addr_fault", "up_read", ("mmap_lock", k.tid))
        yield Note("do_user_addr_fault", "sigsegv", (va,))
        return False
    # access_error: a write to a VMA without VM_WRITE (mprotect(PROT_READ)) is bad_area_access_error, SIGSEGV.
    # Only a scenario that mprotects can clear VM_WRITE (Kctx.protects); the others never take the step.
    if write and k.protects and (yield Step("do_user_addr_fault", "access_error", (va,))):
        yield Step("do_user_addr_fault", "up_read", ("mmap_lock", k.tid))
        yield Note("do_user_addr_fault", "sigsegv", (va,))
        return False
    if (yield from handle_pte_fault(k, va, write, target)) is SIGBUS_FAULT:
        yield Step("do_user_addr_fault", "up_read", ("mmap_lock", k.tid))
        yield Note("do_user_addr_fault", "sigbus", (va,))  # past EOF: ftruncate took the page out of the file
        return False
    yield Step("do_user_addr_fault", "up_read", ("mmap_lock", k.tid))
    return True


def handle_pte_fault(k: Kctx, va: int, write: bool, target: int) -> Path:
    """``target``: what the VMA maps at ``va`` (find_vma): a file offset, or VMA_ANON. Returns SIGBUS_FAULT when
    the file fault found its offset past EOF (VM_FAULT_SIGBUS)."""
    pte = yield Step("handle_pte_fault", "pte_get", (va,))
    if pte is None:
        if target == VMA_ANON:
            yield from do_anonymous_page(k, va)
        elif write:
            return (yield from do_shared_fault(k, va, target))
        else:
            return (yield from do_read_fault(k, va, target))
    elif write and not Pte(*pte).write:
        yield from do_wp_page(k, va, Pte(*pte))
    # Otherwise the fault was spurious (the PTE already allows the access): the access retries and walks.


def _fault_folio_lock(k: Kctx, fn: str, pfn: int) -> Path:
    if not k.cfg.has("no_folio_lock_in_fault"):
        yield Step(fn, "folio_lock", (pfn, k.tid))


def _fault_folio_unlock(k: Kctx, fn: str, pfn: int) -> Path:
    if not k.cfg.has("no_folio_lock_in_fault"):
        yield Step(fn, "folio_unlock", (pfn, k.tid))


def filemap_fault(k: Kctx, index: int) -> Path:
    """__do_fault → filemap_fault: find or read the page-cache folio and return it locked, holding a reference
    (filemap_get_folio / __filemap_get_folio take it) that the caller hands to the PTE or drops."""
    while True:
        pfn = yield Step("filemap_fault", "filemap_get_folio", (index,))
        if pfn == SIGBUS:
            return None  # index >= max_idx: VM_FAULT_SIGBUS (no reference was taken)
        if pfn is None:
            pfn = yield Step("filemap_fault", "page_cache_read", (index,))
            if pfn is None:
                continue  # filemap_add_folio: -EEXIST, another fault cached it first; look it up again
        yield from _fault_folio_lock(k, "filemap_fault", pfn)
        # "Did it get truncated?": folio->mapping != mapping once locked (eviction took it out meanwhile).
        if (yield Step("filemap_fault", "folio_test_mapping", (pfn,))):
            break
        yield from _fault_folio_unlock(k, "filemap_fault", pfn)
        yield Step("filemap_fault", "put_page", (pfn,))  # folio_put, then retry_find
    if k.truncates and not (yield Step("filemap_fault", "i_size_read", (index,))):
        # "Found the page and have a reference on it. We must recheck i_size under page lock": max_idx =
        # DIV_ROUND_UP(i_size_read(inode), PAGE_SIZE); index >= max_idx: folio_unlock, folio_put, VM_FAULT_SIGBUS
        # (mm/filemap.c, 2.6 to 6.x). An ftruncate that shrank the file after the lookup and has not yet reached
        # this folio (truncate_inode_pages waits for its lock) would otherwise see the fault map it past the end.
        yield from _fault_folio_unlock(k, "filemap_fault", pfn)
        yield Step("filemap_fault", "put_page", (pfn,))
        return None
    if k.cfg.has("fault_without_page_ref"):
        # The wrong kernel: the fault lets go of its reference before the PTE exists, so only the folio lock
        # (where the path holds it) keeps eviction off the folio.
        yield Step("filemap_fault", "put_page", (pfn,))
    return pfn


def _finish_fault(k: Kctx, va: int, pfn: int, pte: tuple) -> Path:
    """finish_fault → set_pte_range under the PTL: map the folio unless another fault mapped the address first.
    The fault's reference becomes the PTE's (page_add_file_rmap takes none); returns False when nothing was
    installed (VM_FAULT_NOPAGE), when the caller must folio_put it."""
    table = k.table_of(va)
    yield Step("finish_fault", "spin_lock", (table, k.tid))
    installed = yield Step("finish_fault", "pte_none", (va,))
    if installed:
        if k.cfg.has("fault_without_page_ref"):
            yield Step("finish_fault", "folio_get", (pfn,))  # the mutant's PTE takes a reference of its own
        yield Step("finish_fault", "page_add_file_rmap", (pfn,))
        yield Step("finish_fault", "set_pte_at", (va, pte))
    yield Step("finish_fault", "spin_unlock", (table, k.tid))
    return installed


def _fault_folio_put(k: Kctx, fn: str, pfn: int) -> Path:
    """folio_put of the fault's own reference (none left to drop under the fault_without_page_ref mutant)."""
    if not k.cfg.has("fault_without_page_ref"):
        yield Step(fn, "put_page", (pfn,))


def do_page_mkwrite(k: Kctx, pfn: int) -> Path:
    """do_page_mkwrite → ->page_mkwrite, as filemap_page_mkwrite (block_page_mkwrite does the same): lock the
    folio and recheck ``folio->mapping != inode->i_mapping``. A folio ftruncate took out of the page cache while
    the caller had it unlocked (do_shared_fault) or unmapped (wp_page_shared) is unlocked again and the answer is
    VM_FAULT_NOPAGE (False): the caller drops its reference and the store retries. Otherwise the folio is marked
    dirty and stays locked (VM_FAULT_LOCKED: True). folio_wait_stable and sb_start_pagefault are not modelled.
    The steps keep do_page_mkwrite's name in reports, for the whole ->page_mkwrite call."""
    yield from _fault_folio_lock(k, "do_page_mkwrite", pfn)
    if not (yield Step("do_page_mkwrite", "folio_test_mapping", (pfn,))):  # truncated meanwhile
        yield from _fault_folio_unlock(k, "do_page_mkwrite", pfn)
        return False
    yield Step("do_page_mkwrite", "folio_mark_dirty", (pfn,))
    return True


def fault_dirty_shared_page(k: Kctx, pfn: int) -> Path:
    """folio_mark_dirty under the folio lock, then unlock (balance_dirty_pages is not modelled)."""
    yield Step("fault_dirty_shared_page", "folio_mark_dirty", (pfn,))
    yield from _fault_folio_unlock(k, "fault_dirty_shared_page", pfn)


def do_shared_fault(k: Kctx, va: int, index: int) -> Path:
    """Write fault on a none PTE of a shared file mapping (with write-notify: an fs with ->page_mkwrite).
    Between the unlock for ->page_mkwrite and its relock only the fault's reference keeps eviction away."""
    pfn = yield from filemap_fault(k, index)
    if pfn is None:
        return SIGBUS_FAULT
    if k.write_notify:
        yield from _fault_folio_unlock(k, "do_shared_fault", pfn)  # unlock before calling ->page_mkwrite
        if not (yield from do_page_mkwrite(k, pfn)):
            # VM_FAULT_NOPAGE (truncated meanwhile): folio_put and return; the store retries the fault
            yield from _fault_folio_put(k, "do_shared_fault", pfn)
            return
    if not (yield from _finish_fault(k, va, pfn, (pfn, True, True, True))):  # present+writable+dirty
        # VM_FAULT_NOPAGE: folio_unlock, folio_put, return (no fault_dirty_shared_page)
        yield from _fault_folio_unlock(k, "do_shared_fault", pfn)
        yield from _fault_folio_put(k, "do_shared_fault", pfn)
        return
    yield from fault_dirty_shared_page(k, pfn)


def do_read_fault(k: Kctx, va: int, index: int) -> Path:
    """Read fault on a shared file mapping: read-only and clean with write-notify (the first store must
    fault), writable and clean without it (the first store sets the dirty bit in hardware)."""
    pfn = yield from filemap_fault(k, index)
    if pfn is None:
        return SIGBUS_FAULT
    installed = yield from _finish_fault(k, va, pfn, (pfn, not k.write_notify, False, True))
    yield from _fault_folio_unlock(k, "do_read_fault", pfn)
    if not installed:
        yield from _fault_folio_put(k, "do_read_fault", pfn)  # VM_FAULT_NOPAGE: folio_put


def do_wp_page(k: Kctx, va: int, orig: Pte) -> Path:
    """Write fault on a present read-only PTE (after folio_mkclean): wp_page_shared with ->page_mkwrite.

    The PTL is dropped for do_page_mkwrite (folio locked, marked dirty), retaken by finish_mkwrite_fault, which
    requires pte_same; wp_page_reuse then makes the PTE young+dirty+writable.

    wp_page_shared (mm/memory.c, 4.x to 6.x) takes a folio reference under the PTL first (``get_page(vmf->page)``,
    later ``folio_get(folio)``) and drops it last (``put_page`` after fault_dirty_shared_page, or on the way out
    when finish_mkwrite_fault finds the PTE changed: ``unlock_page; put_page; return VM_FAULT_NOPAGE``, without
    fault_dirty_shared_page). While the PTL is dropped for ->page_mkwrite that reference is the only thing that
    keeps the folio: a zapper may clear the PTE and drop the PTE's reference meanwhile, and then
    mapping_evict_folio (folio_ref_count > nr + 1), __remove_mapping (page_ref_freeze(2)) and pageout's
    is_page_cache_freeable all leave it alone, as they leave a folio do_shared_fault holds. Only ftruncate takes
    a referenced folio out of the page cache; when it did, do_page_mkwrite's recheck of folio->mapping answers
    VM_FAULT_NOPAGE and wp_page_shared returns after put_page, before finish_mkwrite_fault (whose pte_same would
    fail too: truncation zaps the PTE before it deletes the folio)."""
    table = k.table_of(va)
    pfn = orig.pfn
    yield Step("do_wp_page", "spin_lock", (table, k.tid))
    same = yield Step("do_wp_page", "pte_same", (va, tuple(orig)))
    if same:
        yield Step("wp_page_shared", "folio_get", (pfn,))
    if not k.write_notify:
        # No ->page_mkwrite: wp_page_reuse under the PTL, then lock the folio to mark it dirty.
        if same:
            yield Step("wp_page_reuse", "set_pte_at", (va, (pfn, True, True, True)))
        yield Step("do_wp_page", "spin_unlock", (table, k.tid))
        if same:
            yield from _fault_folio_lock(k, "fault_dirty_shared_page", pfn)
            yield from fault_dirty_shared_page(k, pfn)
            yield Step("wp_page_shared", "put_page", (pfn,))
        return
    yield Step("do_wp_page", "spin_unlock", (table, k.tid))
    if not same:
        return
    if not (yield from do_page_mkwrite(k, pfn)):  # VM_FAULT_NOPAGE: put_page, return; the store retries
        yield Step("wp_page_shared", "put_page", (pfn,))
        return
    yield Step("finish_mkwrite_fault", "spin_lock", (table, k.tid))
    reused = yield Step("finish_mkwrite_fault", "pte_same", (va, tuple(orig)))
    if reused:
        yield Step("wp_page_reuse", "set_pte_at", (va, (pfn, True, True, True)))
    yield Step("finish_mkwrite_fault", "spin_unlock", (table, k.tid))
    if reused:
        yield from fault_dirty_shared_page(k, pfn)
    else:  # VM_FAULT_NOPAGE: the folio stays dirty from ->page_mkwrite; the store retries
        yield from _fault_folio_unlock(k, "wp_page_shared", pfn)
    yield Step("wp_page_shared", "put_page", (pfn,))


def do_anonymous_page(k: Kctx, va: int) -> Path:
    pfn = yield Step("do_anonymous_page", "alloc_anon_page", (va,))
    table = k.table_of(va)
    yield Step("do_anonymous_page", "spin_lock", (table, k.tid))
    if (yield Step("do_anonymous_page", "pte_none", (va,))):
        yield Step("do_anonymous_page", "page_add_new_anon_rmap", (pfn,))
        yield Step("do_anonymous_page", "set_pte_at", (va, (pfn, True, True, True)))
    else:
        yield Step("do_anonymous_page", "put_page", (pfn,))  # lost the race: free the new page again
    yield Step("do_anonymous_page", "spin_unlock", (table, k.tid))


__all__ = [
    "zap_pte_range", "unmap_page_range", "zap_page_range_single", "unmap_region", "free_pgtables", "do_munmap",
    "mmap_fixed", "do_mmap", "find_vmas", "do_user_addr_fault", "handle_pte_fault", "do_shared_fault",
    "do_read_fault", "do_wp_page",
    "do_anonymous_page", "flush_tlb_mm_range",
]
