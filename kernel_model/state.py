"""The machine state: struct folio, the backing store, the page tables, locks, the rmap and the per-CPU TLBs.

One mm and one shared file (or anonymous memory). At the start virtual page ``va`` maps file page ``va`` (or
anonymous memory); mmap and mmap_fixed may map an address to another file offset or to anonymous memory. Coarser
than the kernel on purpose: VMAs are tracked per page (``vma[va]``: the file offset it maps, VMA_ANON or
VMA_NONE), and the file's i_mmap tree per file offset (``i_mmap[index]``: the addresses whose linked VMA maps that
offset), which is all the rmap walk of one folio needs (it visits every address that maps the folio's offset).

The state must be small and hashable: ``key()`` gives a tuple that identifies it for exhaustive search and
``State.from_key`` rebuilds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from kernel_model.constants import VMA_ANON

FREE = -1  # owner of a free lock


class Pte(NamedTuple):
    """A present PTE (pte_none is ``None``)."""

    pfn: int
    write: bool
    dirty: bool
    young: bool


class TlbEntry(NamedTuple):
    """What an x86 TLB caches of a final PTE (SDM §4.10): the frame, R/W and the dirty flag."""

    pfn: int
    writable: bool
    dirty: bool


class Ipi(NamedTuple):
    """A flush_tlb_func request waiting on a target CPU: who sent it, and the range [start, end)."""

    initiator: int  # thread id waiting for the ack
    start: int
    end: int
    # How many of the handler's transitions have run (kernel_model.tlb.flush_ipi_handler, grouped by
    # positions.ipi_transitions): always 0 while queued when the handler is one transition (the kernel's order).
    done: int = 0


class Folio(NamedTuple):
    """struct folio, as an immutable value: PageTableOps replaces it on every change."""

    index: int  # file offset in pages (for anon pages, the address it was faulted at)
    anon: bool
    data: int  # the page contents: the value of the last store that landed
    dirty: bool = False  # PG_dirty
    locked: int = FREE  # PG_locked: thread id of the holder
    writeback: bool = False  # PG_writeback: IO submitted, not completed
    wb_data: int = 0  # what the device will write: a snapshot taken at submit (brief §4)
    mapcount: int = 0  # _mapcount + 1: how many PTEs the rmap says map it
    refcount: int = 0
    freed: bool = False
    in_page_cache: bool = False
    # PG_reclaim: shrink_folio_list's "seen before" mark (folio_set_reclaim on its activate branch); cleared by
    # folio_mark_dirty (set_page_dirty) and folio_end_writeback (kernel_model.reclaim).
    reclaim: bool = False


@dataclass(slots=True)
class RwSem:
    """An rw_semaphore (mmap_lock, i_mmap_rwsem): one writer or many readers."""

    writer: int = FREE
    readers: tuple[int, ...] = ()

    def key(self) -> tuple:
        return (self.writer, self.readers)


def initial_vmas(npages: int, anon: bool) -> list[int]:
    """One VMA over every page: anonymous memory, or the file mapped linearly (address va maps file page va)."""
    return [VMA_ANON] * npages if anon else list(range(npages))


def initial_i_mmap(npages: int, anon: bool) -> list[tuple[int, ...]]:
    """The file's i_mmap links of that VMA: file page i is mapped at address i (none for anonymous memory)."""
    return [()] * npages if anon else [(i,) for i in range(npages)]


@dataclass(slots=True)
class State:
    folios: list[Folio]  # indexed by pfn
    page_cache: list[int | None]  # file offset -> pfn of the cached folio
    disk: list[int]  # file offset -> contents on the backing store
    ptes: list[Pte | None]  # virtual page -> PTE
    vma: list[int]  # virtual page -> the file offset its VMA maps there, VMA_ANON, or VMA_NONE (no VMA)
    i_mmap: list[tuple[int, ...]]  # file offset -> the addresses whose VMA (linked in i_mmap) maps it, ascending
    ptl: list[int]  # PTE table -> thread id holding its split PTL
    ptes_per_table: int
    mmap_lock: RwSem
    i_mmap_rwsem: RwSem
    tlbs: list[dict[int, TlbEntry]]  # CPU -> virtual page -> entry
    ipis: list[tuple[Ipi, ...]]  # CPU -> flush requests not yet serviced
    acks_pending: list[int]  # thread -> flush acks it still waits for
    i_size: int  # the file's size in pages (i_size_read): ftruncate lowers it; a fault at or past it is SIGBUS
    # mm->tlb_flush_pending: how many mmu_gathers of this mm have changed PTEs whose flush may still be pending
    # (inc_tlb_flush_pending in tlb_gather_mmu, dec_tlb_flush_pending in tlb_finish_mmu, since 4.13).
    tlb_flush_pending: int = 0
    tlb_flush_batched: bool = False  # mm->tlb_flush_batched (3ea277194daa): reclaim deferred a flush of this mm
    # virtual page -> VM_WRITE of its VMA (kernel_model.mprotect: mprotect(PROT_READ) clears it; True where no VMA
    # is, so that an unmapped address has one value). The only vm_flag modelled: the others never change here.
    vm_write: list[bool] = field(default_factory=list)

    @classmethod
    def initial(cls, npages: int, ptes_per_table: int, ncpus: int, nthreads: int, *, anon: bool,
                mapped: bool, warm_cpus: tuple[int, ...], dirty: bool = True,
                write_notify: bool = True) -> "State":
        folios = []
        dirty = dirty and mapped
        for i in range(npages):
            # A dirty mapped page was faulted in by a store: data 1 (not on disk), PG_dirty, PTE writable+dirty.
            folio = Folio(index=i, anon=anon, data=1 if dirty else 0, dirty=dirty and not anon,
                          mapcount=1 if mapped else 0,
                          refcount=(0 if anon else 1) + (1 if mapped else 0), in_page_cache=not anon)
            folios.append(folio)
        # A clean page was mapped by a read fault: read-only with write-notify, writable without it.
        writable = dirty or not write_notify or anon
        ptes: list[Pte | None] = [Pte(i, writable, dirty, True) if mapped else None for i in range(npages)]
        tlbs: list[dict[int, TlbEntry]] = [{} for _ in range(ncpus)]
        if mapped:
            for cpu in warm_cpus:
                tlbs[cpu] = {i: TlbEntry(i, writable, dirty) for i in range(npages)}
        ntables = (npages + ptes_per_table - 1) // ptes_per_table
        return cls(
            folios=folios,
            page_cache=[None if anon else i for i in range(npages)],
            disk=[0] * npages,
            ptes=ptes,
            vma=initial_vmas(npages, anon),
            i_mmap=initial_i_mmap(npages, anon),
            ptl=[FREE] * ntables,
            ptes_per_table=ptes_per_table,
            mmap_lock=RwSem(),
            i_mmap_rwsem=RwSem(),
            tlbs=tlbs,
            ipis=[() for _ in range(ncpus)],
            acks_pending=[0] * nthreads,
            i_size=npages,
            vm_write=[True] * npages,
        )

    def table_of(self, va: int) -> int:
        return va // self.ptes_per_table

    def key(self) -> tuple:
        return (
            tuple(self.folios),
            tuple(self.page_cache),
            tuple(self.disk),
            tuple(self.ptes),
            tuple(self.vma),
            tuple(self.i_mmap),
            tuple(self.ptl),
            self.ptes_per_table,
            self.mmap_lock.key(),
            self.i_mmap_rwsem.key(),
            tuple([tuple(t.items()) if len(t) < 2 else tuple(sorted(t.items())) for t in self.tlbs]),
            tuple(self.ipis),
            tuple(self.acks_pending),
            self.i_size,
            self.tlb_flush_pending,
            self.tlb_flush_batched,
            tuple(self.vm_write),
        )

    @classmethod
    def from_key(cls, key: tuple) -> "State":
        (folios, page_cache, disk, ptes, vma, i_mmap, ptl, ptes_per_table, mmap_lock, i_mmap_rwsem, tlbs, ipis,
         acks, i_size, flush_pending, batched, vm_write) = key
        # Positional, in field order: restoring a state is on the explorer's hot path.
        return cls(list(folios), list(page_cache), list(disk), list(ptes), list(vma), list(i_mmap), list(ptl),
                   ptes_per_table, RwSem(*mmap_lock), RwSem(*i_mmap_rwsem), [dict(t) for t in tlbs], list(ipis),
                   list(acks), i_size, flush_pending, batched, list(vm_write))

    # Queries the oracle and the paths share.
    def ptes_mapping(self, pfn: int) -> list[int]:
        return [va for va, pte in enumerate(self.ptes) if pte is not None and pte.pfn == pfn]

    def tlbs_mapping(self, pfn: int) -> list[tuple[int, int, TlbEntry]]:
        return [(cpu, va, e) for cpu, tlb in enumerate(self.tlbs) for va, e in tlb.items() if e.pfn == pfn]
