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
# What a file block the filesystem freed reads back: zeros (a hole). ftruncate's block truncation (ext4_truncate,
# kernel_model.truncate) leaves every block past the new size a hole, so a page the file grows over again reads
# zeros, never what the block held before. The disk's blocks start as 0 too: the file's contents before the run,
# which no check compares with anything but a store's value (every store's is above 1000), so an unwritten block
# and a hole read alike, as two blocks of zeros would.
HOLE = 0


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


def _replace(self: tuple, **changes: object) -> tuple:
    """NamedTuple's ``_replace``, compiled with this module: collections' own is interpreted Python (``_make``
    over ``map(kwds.pop, ...)``, about 2 us), and the model replaces a folio, PTE, TLB entry or IPI request in
    most steps (PageTableOps._set)."""
    new = tuple.__new__(type(self), [changes.pop(name, value) for name, value in zip(self._fields, self)])
    if changes:
        raise ValueError(f"Got unexpected field names: {list(changes)!r}")
    return new


for _value_type in (Pte, TlbEntry, Ipi, Folio):
    _value_type._replace = _replace  # type: ignore[method-assign]


@dataclass(slots=True)
class RwSem:
    """An rw_semaphore (mmap_lock, i_mmap_rwsem, the inode's i_rwsem): one writer or many readers."""

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
    # mm->tlb_flush_pending: how many mmu_gathers of this mm (and, from 4.13 to 5.19, mprotect's
    # change_protection_range) may have changed PTEs whose flush is still pending (inc_tlb_flush_pending in
    # tlb_gather_mmu, dec_tlb_flush_pending in tlb_finish_mmu, since 4.13; kernel_model.mprotect).
    tlb_flush_pending: int = 0
    tlb_flush_batched: bool = False  # mm->tlb_flush_batched (3ea277194daa): reclaim deferred a flush of this mm
    # virtual page -> VM_WRITE of its VMA (kernel_model.mprotect: mprotect(PROT_READ) clears it; True where no VMA
    # is, so that an unmapped address has one value). The only vm_flag modelled: the others never change here.
    vm_write: list[bool] = field(default_factory=list)
    # inode->i_rwsem: inode_lock (down_write) around do_truncate (kernel_model.truncate), so two ftruncates of the
    # file never overlap. Last in the key (place 17), so that the places of the older fields stay as they were.
    i_rwsem: RwSem = field(default_factory=RwSem)

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

    def key(self, like: tuple | None = None) -> tuple:
        """The state as a hashable tuple. ``like``: an earlier key; each of its parts whose items are the very
        objects this state holds there (``is``) is given back as it is, not built again. Equal keys either way,
        but the explorer's key path then meets the same part object again, which its memos and the exact keys'
        encoder answer without hashing it (controlled/_compact_keys.pyx), and Machine.restore keeps what did not
        change (from_key's ``into``)."""
        if like is None:
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
                tuple([_tlb_key(t) for t in self.tlbs]),
                tuple(self.ipis),
                tuple(self.acks_pending),
                self.i_size,
                self.tlb_flush_pending,
                self.tlb_flush_batched,
                tuple(self.vm_write),
                self.i_rwsem.key(),
            )
        return (
            _shared(self.folios, like[0]),
            _shared(self.page_cache, like[1]),
            _shared(self.disk, like[2]),
            _shared(self.ptes, like[3]),
            _shared(self.vma, like[4]),
            _shared(self.i_mmap, like[5]),
            _shared(self.ptl, like[6]),
            self.ptes_per_table,
            _shared_sem(self.mmap_lock, like[8]),
            _shared_sem(self.i_mmap_rwsem, like[9]),
            _shared_tlbs(self.tlbs, like[10]),
            _shared(self.ipis, like[11]),
            _shared(self.acks_pending, like[12]),
            self.i_size,
            self.tlb_flush_pending,
            self.tlb_flush_batched,
            _shared(self.vm_write, like[16]),
            _shared_sem(self.i_rwsem, like[17]),
        )

    @classmethod
    def from_key(cls, key: tuple, into: "State | None" = None, current: tuple | None = None) -> "State":
        """The state of ``key``. ``into``, whose contents are exactly what from_key(``current``) would build
        (Machine.restore vouches for it: nothing ran since it restored or keyed ``current``), is made that state
        in place and given back: a part of ``key`` that is ``current``'s (``is``) keeps its list, and each TLB
        whose entries are already the part's, in the part's order, keeps its dict. Same contents, same orders."""
        if into is not None and current is not None:
            return _assign(into, key, current)
        (folios, page_cache, disk, ptes, vma, i_mmap, ptl, ptes_per_table, mmap_lock, i_mmap_rwsem, tlbs, ipis,
         acks, i_size, flush_pending, batched, vm_write, i_rwsem) = key
        # Positional, in field order: restoring a state is on the explorer's hot path.
        return cls(list(folios), list(page_cache), list(disk), list(ptes), list(vma), list(i_mmap), list(ptl),
                   ptes_per_table, RwSem(*mmap_lock), RwSem(*i_mmap_rwsem), [dict(t) for t in tlbs], list(ipis),
                   list(acks), i_size, flush_pending, batched, list(vm_write), RwSem(*i_rwsem))

    # Queries the oracle and the paths share.
    def ptes_mapping(self, pfn: int) -> list[int]:
        return [va for va, pte in enumerate(self.ptes) if pte is not None and pte.pfn == pfn]

    def tlbs_mapping(self, pfn: int) -> list[tuple[int, int, TlbEntry]]:
        return [(cpu, va, e) for cpu, tlb in enumerate(self.tlbs) for va, e in tlb.items() if e.pfn == pfn]


def sem_of(s: State, name: str) -> RwSem:
    """The rw_semaphore a lock step names ("mmap_lock", "i_mmap_rwsem" or "i_rwsem")."""
    if name == "mmap_lock":
        return s.mmap_lock
    return s.i_mmap_rwsem if name == "i_mmap_rwsem" else s.i_rwsem


def _tlb_key(tlb: dict[int, TlbEntry]) -> tuple:
    """A TLB's entries in address order (a dict remembers the order it was filled in, which states do not)."""
    return tuple(tlb.items()) if len(tlb) < 2 else tuple(sorted(tlb.items()))


def _shared(items: list, part: tuple) -> tuple:
    """``items`` as a key part: ``part`` itself when it holds the very same objects (State.key's ``like``)."""
    n = len(items)
    if n != len(part):
        return tuple(items)
    for i in range(n):
        if items[i] is not part[i]:
            return tuple(items)
    return part


def _shared_sem(sem: RwSem, part: tuple) -> tuple:
    return part if sem.writer is part[0] and sem.readers is part[1] else (sem.writer, sem.readers)


def _tlb_is(tlb: dict[int, TlbEntry], part: tuple) -> bool:
    """Does ``tlb`` hold exactly ``part``'s entries (the very objects), in its order?"""
    if len(tlb) != len(part):
        return False
    i = 0
    for va, entry in tlb.items():
        item = part[i]
        if va is not item[0] or entry is not item[1]:
            return False
        i += 1
    return True


def _shared_tlbs(tlbs: list[dict[int, TlbEntry]], part: tuple) -> tuple:
    """The TLBs as a key part, ``part`` or each CPU's part of it kept where it is that TLB's entries in order
    (a key part is in address order: a TLB filled in another order gets a new part, as without ``like``)."""
    n = len(tlbs)
    if n != len(part):
        return tuple([_tlb_key(t) for t in tlbs])
    out = []
    same = True
    for cpu in range(n):
        mine = part[cpu]
        if not _tlb_is(tlbs[cpu], mine):
            mine = _tlb_key(tlbs[cpu])
            same = False
        out.append(mine)
    return part if same else tuple(out)


# The State fields a key holds as a tuple of the list's items: (place in the key, field).
_LISTS = ((0, "folios"), (1, "page_cache"), (2, "disk"), (3, "ptes"), (4, "vma"), (5, "i_mmap"), (6, "ptl"),
          (11, "ipis"), (12, "acks_pending"), (16, "vm_write"))


def _assign(s: State, key: tuple, current: tuple) -> State:
    """State.from_key(key) made in ``s``, whose contents are from_key(current)'s (see from_key's ``into``)."""
    for at, name in _LISTS:
        part = key[at]
        if part is not current[at]:
            setattr(s, name, list(part))
    (_, _, _, _, _, _, _, s.ptes_per_table, mmap_lock, i_mmap_rwsem, tlbs, _, _, s.i_size, s.tlb_flush_pending,
     s.tlb_flush_batched, _, i_rwsem) = key
    if mmap_lock is not current[8]:
        s.mmap_lock = RwSem(*mmap_lock)
    if i_mmap_rwsem is not current[9]:
        s.i_mmap_rwsem = RwSem(*i_mmap_rwsem)
    if i_rwsem is not current[17]:
        s.i_rwsem = RwSem(*i_rwsem)
    live = s.tlbs
    if len(live) != len(tlbs):
        s.tlbs = [dict(t) for t in tlbs]
    else:  # checked whatever ``current`` says: a caller may have put the entries back in another order
        for cpu in range(len(tlbs)):
            if not _tlb_is(live[cpu], tlbs[cpu]):
                live[cpu] = dict(tlbs[cpu])
    return s
