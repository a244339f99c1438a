"""What a kernel path knows about where it runs: its thread, its CPU, the kernel configuration, the VMA kind."""

from __future__ import annotations

from dataclasses import dataclass

from kernel_model.config import Config


@dataclass(frozen=True, slots=True)
class Kctx:
    cfg: Config
    tid: int  # the thread (task) running the path; locks are owned by threads
    cpu: int  # the CPU whose TLB the thread uses (all threads share CPU 0 under arch=up)
    ptes_per_table: int
    anon: bool  # the VMA maps anonymous private memory rather than a shared file
    write_notify: bool = True  # vma_wants_writenotify(): writable PTEs only through write faults
    # Some thread of the scenario reclaims, so mm->tlb_flush_batched can be set (kernel_model.reclaim); without
    # one it is false throughout and flush_tlb_batched_pending's read of it is left out.
    batched_flushes: bool = False
    # Some operation of the scenario may change what an address maps (kernel_model.program.remaps). When none
    # can, address va maps file page va (or anonymous memory, ``anon``) for the whole run, so a path knows its
    # VMA without reading it (as today's linear model). When one can, paths read the VMA (find_vma) where the
    # kernel looks it up: the fault, madvise's and munmap's VMA walk.
    remaps: bool = False
    # Some operation of the scenario may take an address's VMA away (munmap): then madvise's and munmap's VMA walks
    # read the VMA (find_vma) even when no operation remaps, since an address may map nothing by the time they
    # run (madvise_walk_vmas returns -ENOMEM for it). Faults always read it.
    unmaps: bool = False
    # Some operation of the scenario write-protects a VMA (mprotect(PROT_READ) clears VM_WRITE): then a write fault
    # checks the VMA's VM_WRITE (do_user_addr_fault's access_error: SIGSEGV), and mremap carries it to the new
    # VMA (copy_vma). Without one every VMA is writable for the whole run and the check is left out, so that
    # scenarios without mprotect keep their state spaces.
    protects: bool = False
    # Some operation of the scenario may change i_size (ftruncate): then filemap_fault rechecks the offset against
    # i_size under the folio lock (kernel_model.memory.filemap_fault). Without one i_size never moves, the recheck
    # always passes, and it is left out, so that scenarios without ftruncate keep their state spaces.
    truncates: bool = False

    def table_of(self, va: int) -> int:
        return va // self.ptes_per_table

    @property
    def tlb_delay_rmap_possible(self) -> bool:
        """tlb_delay_rmap() exists only under CONFIG_SMP and without MMU_GATHER_NO_GATHER (s390): on UP and
        s390 it is the constant ``false`` (include/asm-generic/tlb.h)."""
        return self.cfg.ordering == "delayed" and self.cfg.arch == "smp"

    @property
    def mmu_gather_no_gather(self) -> bool:
        """CONFIG_MMU_GATHER_NO_GATHER (s390): __tlb_remove_page_size frees the page at once, batching nothing."""
        return self.cfg.arch == "s390"

    @property
    def tlb_fast_mode(self) -> bool:
        """tlb_fast_mode() of include/asm-generic/tlb.h before 29eb77825cc7 (v3.10): constant 1 without CONFIG_SMP,
        so __tlb_remove_page freed each page at once (free_page_and_swap_cache) instead of batching it until
        tlb_flush_mmu, and the TLB flush came after. On SMP it was ``tlb->fast_mode = (num_possible_cpus() ==
        1)``, set in tlb_gather_mmu; the model's SMP machine always has one possible CPU per thread, and a
        one-thread scenario has nobody to see the order, so only UP is modelled."""
        return self.cfg.arch == "up" and not self.cfg.fixed("no_tlb_fast_mode")

    @property
    def sync_pte_clear(self) -> bool:
        """s390's IPTE: clearing a PTE invalidates that translation in every CPU's TLB before it returns."""
        return self.cfg.arch == "s390"
