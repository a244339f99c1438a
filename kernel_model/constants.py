"""Kernel constants the model uses, with the values of x86-64 v6.2 (kernel brief §2, §5)."""

from typing import Final

PAGE_SIZE: Final = 4096

# include/asm-generic/tlb.h: the batch embedded in struct mmu_gather.
MMU_GATHER_BUNDLE: Final = 8
# (PAGE_SIZE - sizeof(struct mmu_gather_batch header)) / sizeof(void *) = (4096 - 16) / 8.
MAX_GATHER_BATCH: Final = 510
# 10000 / MAX_GATHER_BATCH: at most 8 + 19 * 510 pages are queued in one gather.
MAX_GATHER_BATCH_COUNT: Final = 19

# The encoded page pointer (70fb4fdff582): low bits of the page pointer carry flags.
ENCODE_PAGE_BITS: Final = 3
ENCODED_PAGE_BIT_DELAY_RMAP: Final = 1

# arch/x86/mm/tlb.c: ranges above this many pages become a full flush.
TLB_SINGLE_PAGE_FLUSH_CEILING: Final = 33

# x86-64: one PTE table maps 512 pages (2 MiB); scenarios may use fewer to get several PTLs.
PTRS_PER_PTE: Final = 512

# What an address's VMA maps (kernel_model.state.State.vma): a file offset (>= 0), or one of these. The model's
# stand-ins for vma == NULL (find_vma found nothing) and vma_is_anonymous(vma).
VMA_NONE: Final = -1
VMA_ANON: Final = -2
