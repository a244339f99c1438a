"""mm/mprotect.c: mprotect(PROT_READ), the victim of 3ea277194daa's race (kernel_model.reclaim).

change_pte_range write-protects each present PTE under the PTL; change_protection_range flushes the range once
at the end, only if it changed any PTE ("Only flush the TLB if we actually modified any entries"). A PTE that
reclaim cleared is none here, so nothing is flushed, while reclaim's own flush is still deferred: a CPU may keep
writing through its old writable translation after mprotect has returned. The fix calls
flush_tlb_batched_pending under the PTL first.

mprotect_fixup clears VM_WRITE in the VMA before change_protection write-protects its PTEs (State.vm_write), so
a later write fault finds no VM_WRITE (do_user_addr_fault's access_error) and gets SIGSEGV; only a translation
cached before the PTEs changed may still write, which is 3ea277194daa's stale access.

Coarser than the kernel: the new protection is always PROT_READ; VM_WRITE is the only vm_flag modelled; a
range with a hole changes what it covers and does not fail with -ENOMEM. mprotect's inc/dec_tlb_flush_pending
(mm->tlb_flush_pending) is not modelled. Its one reader is a zap's tlb_finish_mmu (mm_tlb_flush_nested, which
then flushes the whole range). The zaps that hold mmap_lock cannot overlap mprotect, which holds it for
write; ftruncate's unmap_mapping_range can, and there the kernel would flush more than the model does, so the
model could report a stale translation the kernel flushes. Fuzzing forced mprotect + ftruncate pairs (issue 17,
tenth session) found none. Also not modelled: since 4a18419f71cd ("mm/mprotect: use mmu_gather", v6.0)
do_mprotect_pkey gathers (tlb_gather_mmu .. tlb_finish_mmu), so mprotect itself flushes the range when another
gather of the mm is in flight (mm_tlb_flush_nested), even having changed no PTE. The model's mprotect does not,
and reports a stale store the kernel flushes where a zap's flush comes after its unlock and mprotect finds the
PTE none: 6.2 UP in tests/scenarios/unseen18_truncate_vs_mprotect_warm.toml (a strict xfail in
tests/test_unseen18.py). Modelling it needs the reduction's mprotect footprint (controlled/op_footprints.py) to
name mm->tlb_flush_pending ("flushpend") too.
"""

from __future__ import annotations

from kernel_model.context import Kctx
from kernel_model.mmu_gather import flush_tlb_mm_range
from kernel_model.reclaim import flush_tlb_batched_pending
from kernel_model.steps import Note, Path, Step


def change_pte_range(k: Kctx, addr: int, end: int) -> Path:
    """One PTE table's part of [addr, end): returns how many PTEs it changed."""
    table = k.table_of(addr)
    yield Step("change_pte_range", "spin_lock", (table, k.tid))  # pte_offset_map_lock
    yield from flush_tlb_batched_pending(k, "change_pte_range")
    pages = 0
    for va in range(addr, end):
        if (yield Step("change_pte_range", "ptep_modify_prot", (va,))) is not None:  # pte_present
            pages += 1
    yield Step("change_pte_range", "spin_unlock", (table, k.tid))
    return pages


def change_protection(k: Kctx, start: int, end: int) -> Path:
    """change_protection_range: the page-table walk, then one flush if anything changed."""
    pages = 0
    addr = start
    while addr < end:
        table_end = min(end, (k.table_of(addr) + 1) * k.ptes_per_table)
        pages += yield from change_pte_range(k, addr, table_end)
        addr = table_end
    if pages:
        yield from flush_tlb_mm_range(k, "change_protection_range", start, end)  # flush_tlb_range
    return pages


def do_mprotect(k: Kctx, start: int, end: int) -> Path:
    """mprotect(start, len, PROT_READ): mmap_lock for write, mprotect_fixup → change_protection."""
    yield Step("do_mprotect_pkey", "down_write", ("mmap_lock", k.tid))
    for va in range(start, end):  # mprotect_fixup: vm_flags_reset(vma, newflags) (6.3; before, vma->vm_flags = ...)
        yield Step("mprotect_fixup", "vm_flags_reset", (va,))
    pages = yield from change_protection(k, start, end)
    yield Step("do_mprotect_pkey", "up_write", ("mmap_lock", k.tid))
    # The call returns: from here on no CPU may write [start, end) through a translation cached before.
    yield Note("mprotect", "write_protected", (start, end))
    return pages
