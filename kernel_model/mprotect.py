"""mm/mprotect.c: mprotect(PROT_READ), the victim of 3ea277194daa's race (kernel_model.reclaim).

change_pte_range write-protects each present PTE under the PTL; change_protection_range flushes the range once
at the end, only if it changed any PTE ("Only flush the TLB if we actually modified any entries"). A PTE that
reclaim cleared is none here, so nothing is flushed, while reclaim's own flush is still deferred: a CPU may keep
writing through its old writable translation after mprotect has returned. The fix calls
flush_tlb_batched_pending under the PTL first.

mprotect_fixup clears VM_WRITE in the VMA before change_protection write-protects its PTEs (State.vm_write), so
a later write fault finds no VM_WRITE (do_user_addr_fault's access_error) and gets SIGSEGV; only a translation
cached before the PTEs changed may still write, which is 3ea277194daa's stale access.

Since 4a18419f71cd ("mm/mprotect: use mmu_gather", v6.0; Config.mprotect_gathers) do_mprotect_pkey runs the walk
inside tlb_gather_mmu .. tlb_finish_mmu (kernel_model.mmu_gather): tlb_gather_mmu counts it in
mm->tlb_flush_pending (State.tlb_flush_pending), change_pte_range records each changed PTE in the gather
(tlb_flush_pte_range), change_protection_range's tlb_end_vma flushes what was recorded, and tlb_finish_mmu, seeing
another gather of the mm pending (mm_tlb_flush_nested: a zap, such as ftruncate's unmap_mapping_range, which does
not hold mmap_lock), flushes the whole range before mprotect returns even if it changed no PTE. So a zap that
cleared the PTE first and flushes after its unlock (UP from 6.2, docs/up-v6.2.md) is covered before mprotect
returns (tests/scenarios/unseen18_truncate_vs_mprotect_warm.toml).

Before 6.0 (from 4.13 to 5.19) change_protection_range counts itself in mm->tlb_flush_pending around the walk and
its flush: inc_tlb_flush_pending before the first PTE, dec_tlb_flush_pending after flush_tlb_range (16af97dc5a89
"mm: migrate: prevent racy access to tlb_flush_pending", v4.13, turned 20841405940e's set/clear_tlb_flush_pending of
December 2013 into a counter). mprotect itself never reads the counter there; a concurrent zap's tlb_finish_mmu does
(mm_tlb_flush_nested, 99baac21e458, v4.13) and then flushes its whole range. Only a zap that does not hold mmap_lock
can overlap mprotect (which holds it for write): ftruncate's unmap_mapping_range. The model counts mprotect in where
that reader exists (Config.fixed("tlb_flush_nested")): before 4.13 the flag's only readers were NUMA-balancing
migration (and, from 4.13, KSM's write_protect_page), which the model does not have.

Coarser than the kernel: the new protection is always PROT_READ; VM_WRITE is the only vm_flag modelled; a
range with a hole changes what it covers and does not fail with -ENOMEM. From 6.0, tlb_finish_mmu's nested
flush covers the call's [start, end) (as mmu_gather.tlb_finish_mmu models it), not the whole mm (7a30df49f63a);
and tlb_end_vma flushes the recorded range on every arch (CONFIG_MMU_GATHER_MERGE_VMAS, which defers it to
tlb_finish_mmu, is not modelled: with one VMA the flush is the same one, earlier).
"""

from __future__ import annotations

from kernel_model.context import Kctx
from kernel_model.mmu_gather import (MmuGather, flush_tlb_mm_range, tlb_finish_mmu, tlb_flush_mmu_tlbonly,
                                     tlb_gather_mmu, tlb_remove_tlb_entry)
from kernel_model.reclaim import flush_tlb_batched_pending
from kernel_model.steps import Note, Path, Step


def change_pte_range(k: Kctx, addr: int, end: int, tlb: MmuGather | None) -> Path:
    """One PTE table's part of [addr, end): returns how many PTEs it changed. With a gather (v6.0), each changed
    PTE is recorded in its flush range."""
    table = k.table_of(addr)
    yield Step("change_pte_range", "spin_lock", (table, k.tid))  # pte_offset_map_lock
    yield from flush_tlb_batched_pending(k, "change_pte_range")
    pages = 0
    for va in range(addr, end):
        if (yield Step("change_pte_range", "ptep_modify_prot", (va,))) is not None:  # pte_present
            pages += 1
            if tlb is not None:
                tlb_remove_tlb_entry(tlb, va)  # tlb_flush_pte_range(tlb, addr, PAGE_SIZE): range and cleared_ptes
    yield Step("change_pte_range", "spin_unlock", (table, k.tid))
    return pages


def change_protection(k: Kctx, start: int, end: int, tlb: MmuGather | None) -> Path:
    """change_protection_range: the page-table walk, then one flush if anything changed (from v6.0 tlb_end_vma's
    tlb_flush_mmu_tlbonly, which flushes only what change_pte_range recorded). From 4.13 to 5.19 the walk and its
    flush are counted in mm->tlb_flush_pending (the gather does it from 6.0)."""
    counted = tlb is None and k.cfg.fixed("tlb_flush_nested")
    if counted:
        yield Step("change_protection_range", "inc_tlb_flush_pending", ())
    pages = 0
    addr = start
    while addr < end:
        table_end = min(end, (k.table_of(addr) + 1) * k.ptes_per_table)
        pages += yield from change_pte_range(k, addr, table_end, tlb)
        addr = table_end
    if tlb is not None:
        yield from tlb_flush_mmu_tlbonly(k, tlb)  # tlb_end_vma (not fullmm)
    elif pages:
        yield from flush_tlb_mm_range(k, "change_protection_range", start, end)  # flush_tlb_range
    if counted:
        yield Step("change_protection_range", "dec_tlb_flush_pending", ())
    return pages


def do_mprotect(k: Kctx, start: int, end: int) -> Path:
    """mprotect(start, len, PROT_READ): mmap_lock for write, (v6.0: tlb_gather_mmu,) mprotect_fixup →
    change_protection, (v6.0: tlb_finish_mmu,) mmap_lock released."""
    yield Step("do_mprotect_pkey", "down_write", ("mmap_lock", k.tid))
    tlb = (yield from tlb_gather_mmu(k, start, end)) if k.cfg.mprotect_gathers else None
    for va in range(start, end):  # mprotect_fixup: vm_flags_reset(vma, newflags) (6.3; before, vma->vm_flags = ...)
        yield Step("mprotect_fixup", "vm_flags_reset", (va,))
    pages = yield from change_protection(k, start, end, tlb)
    if tlb is not None:
        yield from tlb_finish_mmu(k, tlb)  # out_tlb: before mmap_write_unlock
    yield Step("do_mprotect_pkey", "up_write", ("mmap_lock", k.tid))
    # The call returns: from here on no CPU may write [start, end) through a translation cached before.
    yield Note("mprotect", "write_protected", (start, end))
    return pages
