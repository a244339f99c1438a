"""What each user-level operation may touch, over-approximated: the future footprints of controlled.reduction.

A thread's future (what it may still touch from an operation on) is the union of its remaining operations'
footprints; the reduction trusts it to cover every step the operation's kernel path may take
(tests/test_explore.py checks that on random runs). Objects and modes are controlled.reduction's. Each
operation kind of kernel_model.program.OP_KINDS has one entry in _OP_FOOTPRINTS ("loop" is its body's).
"""

from __future__ import annotations

from typing import Iterable

from kernel_model.ops import Footprint
from kernel_model.program import Op


def add_mode(fp: Footprint, obj: tuple, mode: str) -> None:
    """Touch ``obj`` in ``mode`` too: two different modes on one object are as strong as a write."""
    old = fp.get(obj)
    if old is None or old == mode:
        fp[obj] = mode
    else:
        fp[obj] = "w"


def protected_pages(program: list[Op], npages: int) -> tuple[int, ...]:
    """The pages a thread's mprotect calls write-protect (what their write_protected notes read)."""
    return tuple(sorted({p for op in flat(program) if op.kind == "mprotect"
                         for p in range(*_span(op.pages or tuple(range(npages))))}))


class OpFootprints:
    """The per-operation footprints of one scenario and machine shape (controlled.reduction.Footprints sets the
    fields)."""

    up: bool
    anon: bool
    cpu_of: list[int]
    ncpus: int
    npages: int
    ppt: int
    sync: bool
    may_evict: bool  # an operation may take file pages out of the page cache
    linear: bool  # no operation remaps an address
    unmaps: bool  # an operation may take an address's VMA away (munmap)
    all_pages: tuple[int, ...]

    def _pages(self, op: Op) -> tuple[int, ...]:
        return op.pages or tuple(range(self.npages))

    def _reached(self, pages: Iterable[int]) -> Iterable[int]:
        """The file offsets (folios) reached through these addresses, or the addresses that map these offsets:
        the same numbers without remaps, any of them with."""
        return pages if self.linear else self.all_pages

    def _tables(self, pages: Iterable[int]) -> set[int]:
        return {p // self.ppt for p in pages}

    def op_footprint(self, tid: int, op: Op) -> Footprint:
        """Everything one user-level operation of ``tid`` may touch (over-approximated)."""
        fp: Footprint = {}
        if op.kind == "loop":
            for inner in op.body:
                for obj, mode in self.op_footprint(tid, inner).items():
                    add_mode(fp, obj, mode)
            return fp
        of_kind = _OP_FOOTPRINTS.get(op.kind)
        if of_kind is not None:
            of_kind(self, fp, tid, op, self._pages(op))
        return fp

    def _access_footprint(self, fp: Footprint, tid: int, op: Op, pages: tuple[int, ...]) -> None:
        """A store, load or counter: TLB hits, walks and the fault paths."""
        cpu = self.cpu_of[tid]
        kind = op.kind
        add_mode(fp, ("sem", "mmap_lock"), "r")
        add_mode(fp, ("isize",), "r")  # filemap_fault's i_size check (VM_FAULT_SIGBUS past a truncated end)
        if self.may_evict or self.anon or not self.linear:
            add_mode(fp, ("alloc",), "w")
        # A file fault takes a reference (filemap_get_folio) and drops it again unless the PTE keeps it; that put
        # frees the folio only when an operation took it out of the page cache meanwhile (may_evict: evict,
        # reclaim, and ftruncate, whose truncate_inode_pages deletes a folio a fault still holds: do_shared_fault's
        # and wp_page_shared's put_page after filemap_page_mkwrite's VM_FAULT_NOPAGE recheck, filemap_fault's
        # retry_find, do_read_fault's when finish_fault installs nothing). An anonymous fault may free the page it
        # lost a race with. Installing a PTE or filling a TLB entry reads whether the folio was freed (the
        # oracle's freed_while_mapped check), and a freeing put_page reads every CPU's TLB entry and the PTE of
        # each address that may map the folio (ops._fp_put_page), which _freeing_put adds.
        frees = self.anon or self.may_evict or not self.linear  # with remaps, an anonymous fault may happen
        data_mode = {"store": "s", "load": "r"}.get(kind, "w")
        for p in pages:
            add_mode(fp, ("tlb", cpu, p), "w")
            add_mode(fp, ("cov", cpu, p), "w")  # fills and faults drop what a clear covered
            add_mode(fp, ("stale", cpu, p), "w")  # hits read it; fills and faults drop it
            for obj in ("pte", "ptebits"):
                add_mode(fp, (obj, p), "w")
            add_mode(fp, ("vma", p), "r")
        for p in self._reached(pages):
            add_mode(fp, ("data", p), data_mode)
            for obj in ("lock", "map"):
                add_mode(fp, (obj, p), "w")
            add_mode(fp, ("dirty", p), "d")  # fault paths only ever set PG_dirty
            add_mode(fp, ("reclaim", p), "d")  # ... with folio_mark_dirty, which clears PG_reclaim
            add_mode(fp, ("ref", p), "w" if frees else "+")
            add_mode(fp, ("freed", p), "w" if frees else "r")
            add_mode(fp, ("pc", p), "w" if frees else "r")
            if self.may_evict:
                add_mode(fp, ("disk", p), "r")
        if frees:
            self._freeing_put(fp, pages)
        self._ptl_sections(fp, pages)  # the fault paths take the PTL (do_wp_page, finish_fault)

    def _freeing_put(self, fp: Footprint, pages: Iterable[int]) -> None:
        """The freed_while_mapped check of a put_page that drops a folio's last reference (ops._fp_put_page):
        every CPU's TLB entry and the PTE of each address that may map these pages' folios (with remaps, any)."""
        for p in self._reached(pages):
            add_mode(fp, ("pte", p), "r")
            for c in range(self.ncpus):
                add_mode(fp, ("tlb", c, p), "r")

    def _unmap_footprint(self, fp: Footprint, tid: int, op: Op, pages: tuple[int, ...]) -> None:
        """madvise(MADV_DONTNEED) zaps; munmap and mmap(MAP_FIXED) also change the VMAs and i_mmap links (mmap
        only those: its footprint is over-approximated by mmap_fixed's)."""
        add_mode(fp, ("sem", "mmap_lock"), "r")
        self._zap_footprint(fp, tid, pages)
        if op.kind != "madvise_dontneed":
            self._vma_change(fp, pages)
        elif not self.linear or self.unmaps:
            for p in pages:
                add_mode(fp, ("vma", p), "r")  # madvise_walk_vmas' find_vma

    def _vma_change(self, fp: Footprint, pages: Iterable[int]) -> None:
        """VMAs detached and linked under mmap_lock write, and their i_mmap links (under i_mmap_rwsem write)."""
        add_mode(fp, ("sem", "mmap_lock"), "w")
        add_mode(fp, ("sem", "i_mmap_rwsem"), "w")
        for p in pages:
            add_mode(fp, ("vma", p), "w")
        for p in self._reached(pages):  # the offsets unlinked, and those linked
            add_mode(fp, ("imap", p), "w")

    def _mremap_footprint(self, fp: Footprint, tid: int, op: Op, pages: tuple[int, ...]) -> None:
        """mremap (kernel_model.mremap): do_munmap of the destination, copy_vma, move_ptes (i_mmap_rwsem write,
        both ranges' PTLs, flush_tlb_batched_pending, the old PTEs cleared and the new ones set, a flush) and
        do_munmap of the old range: a zap and a VMA change of both ranges covers all of it (a remap: the folios
        are any file page's)."""
        start, end = _span(pages)
        to = start if op.to is None else op.to  # the loader gives every mremap a destination
        both = sorted(set(range(start, end)) | set(range(to, to + end - start)))
        add_mode(fp, ("sem", "mmap_lock"), "w")
        self._zap_footprint(fp, tid, tuple(both))
        self._vma_change(fp, both)

    def _truncate_footprint(self, fp: Footprint, tid: int, op: Op, pages: tuple[int, ...]) -> None:
        """ftruncate (kernel_model.truncate), all under inode_lock (i_rwsem write): i_size_write;
        unmap_mapping_range (i_mmap_rwsem read, the i_mmap tree, a zap at every address mapping an offset past the
        new end, without mmap_lock); truncate_inode_pages (page-cache lookups with a reference, the folio lock, the
        writeback wait, the folio deleted from the page cache with its PG_dirty, the reference dropped: a page
        freed); the unmap again; then ext4_truncate (the disk blocks past the new end made holes)."""
        add_mode(fp, ("sem", "i_rwsem"), "w")
        add_mode(fp, ("isize",), "w")
        add_mode(fp, ("sem", "i_mmap_rwsem"), "r")
        gone = tuple(range(_span(pages)[0], self.npages))
        self._zap_footprint(fp, tid, tuple(self._reached(gone)))  # the addresses mapping the offsets past the end
        for p in gone:
            for obj in ("pc", "ref", "lock", "dirty", "freed", "disk"):
                add_mode(fp, (obj, p), "w")
            for obj in ("imap", "wb", "map"):
                add_mode(fp, (obj, p), "r")

    def _mprotect_footprint(self, fp: Footprint, tid: int, op: Op, pages: tuple[int, ...]) -> None:
        """mprotect(PROT_READ) (kernel_model.mprotect): mmap_lock write; under each table's PTL
        flush_tlb_batched_pending and the PTEs write-protected; one flush; and, as it returns, the oracle's
        write_protected mark (_write_protected). mprotect_fixup clears VM_WRITE first (vm_flags_reset). From v6.0
        (Config.mprotect_gathers) in an mmu_gather: tlb_gather_mmu / tlb_finish_mmu count it in and out of
        mm->tlb_flush_pending and read it (mm_tlb_flush_nested), and the nested flush is one more flush of the
        range (_flush_footprint covers every page); the gather's batches stay empty (no put_page). From 4.13 to 5.19
        change_protection_range counts itself in mm->tlb_flush_pending (inc/dec_tlb_flush_pending, 16af97dc5a89)."""
        span = range(*_span(pages))
        add_mode(fp, ("sem", "mmap_lock"), "w")
        add_mode(fp, ("flushpend",), "w")  # declared on every kernel: an over-approximation before 4.13
        for p in span:
            add_mode(fp, ("vma", p), "w")
        add_mode(fp, ("batched",), "w")
        self._flush_footprint(fp, tid)
        for p in span:
            for obj in ("pte", "ptebits"):
                add_mode(fp, (obj, p), "w")
        self._ptl_sections(fp, tuple(span))
        self._write_protected(fp, span)

    def _write_protected(self, fp: Footprint, pages: Iterable[int]) -> None:
        """The oracle's write_protected note (mprotect returning): it reads which CPUs cache a writable
        translation of these pages and adds each to its ghost set of translations no store may use (named as the
        ("stale", cpu, page) objects: a store through the entry reads it, an invalidation or refill drops it)."""
        for p in pages:
            for c in range(self.ncpus):
                add_mode(fp, ("tlb", c, p), "r")
                add_mode(fp, ("stale", c, p), "a")

    def _reclaim_footprint(self, fp: Footprint, tid: int, op: Op, pages: tuple[int, ...]) -> None:
        """kswapd's shrink_folio_list (kernel_model.reclaim) over these offsets: a reference, folio_trylock and
        the folio's flags (PG_reclaim set by the activate branch, tested by the pageout branch); try_to_unmap (i_mmap_rwsem read; under the PTL of each address mapping the folio: the
        PTE cleared, mm->tlb_flush_batched set, PG_dirty, the mapcount, the PTE's reference); pageout (as msync:
        folio_mkclean's walk and flush, the IO); __remove_mapping; try_to_unmap_flush; and its references
        dropped, which may free a page (every TLB read)."""
        self._msync_footprint(fp, tid, op, pages)
        add_mode(fp, ("batched",), "w")
        for p in pages:
            for obj in ("pc", "ref", "freed", "map", "reclaim"):  # reclaim: PG_reclaim set and tested
                add_mode(fp, (obj, p), "w")
        for c in range(self.ncpus):
            for p in self._reached(pages):
                add_mode(fp, ("tlb", c, p), "r")

    def _msync_footprint(self, fp: Footprint, tid: int, op: Op, pages: tuple[int, ...]) -> None:
        add_mode(fp, ("sem", "i_mmap_rwsem"), "r")
        self._flush_footprint(fp, tid)
        for p in pages:
            for obj in ("lock", "wb", "dirty", "disk"):
                add_mode(fp, (obj, p), "w")
            add_mode(fp, ("reclaim", p), "d")  # folio_mark_dirty and folio_end_writeback clear PG_reclaim
            for obj in ("pc", "map", "imap", "data", "freed"):  # freed: folio_mkclean's set_pte_at check
                add_mode(fp, (obj, p), "r")
        mapped_at = tuple(self._reached(pages))  # folio_mkclean's rmap walk: the addresses mapping them
        for p in mapped_at:
            for obj in ("pte", "ptebits"):
                add_mode(fp, (obj, p), "w")
        self._ptl_sections(fp, mapped_at)

    def _evict_footprint(self, fp: Footprint, tid: int, op: Op, pages: tuple[int, ...]) -> None:
        add_mode(fp, ("isize",), "r")  # the oracle's check of an evicted folio: only file data below i_size
        for p in pages:
            add_mode(fp, ("pc", p), "w")
            add_mode(fp, ("ref", p), "w")
            add_mode(fp, ("freed", p), "w")
            for obj in ("lock", "dirty", "wb", "map", "data", "disk"):
                add_mode(fp, (obj, p), "r")
        for c in range(self.ncpus):
            for p in self._reached(pages):  # the freed_while_mapped check of an evicted folio
                add_mode(fp, ("tlb", c, p), "r")

    def _flush_footprint(self, fp: Footprint, tid: int) -> None:
        """Flushes of any range (over-approximated by every page) on this CPU, IPIs to the others and the acks
        they count; and the PTE clears before them, which cover translations on every CPU, and the completions
        that make them stale."""
        cpu = self.cpu_of[tid]
        add_mode(fp, ("ack", tid), "+")
        for c in range(self.ncpus):
            if c != cpu:
                add_mode(fp, ("ipiq", c, tid), "w")  # its own slot of c's queue (ops._fp_flush_tlb_others)
            if c == cpu or self.sync:
                for p in self.all_pages:
                    add_mode(fp, ("tlb", c, p), "i")
            for p in self.all_pages:
                add_mode(fp, ("cov", c, p), "w")
                add_mode(fp, ("stale", c, p), "w")

    def _zap_footprint(self, fp: Footprint, tid: int, pages: tuple[int, ...]) -> None:
        """zap_pte_range over these addresses in an mmu_gather (the caller adds the lock that keeps the VMAs)."""
        add_mode(fp, ("flushpend",), "w")  # tlb_gather_mmu / tlb_finish_mmu: mm->tlb_flush_pending
        add_mode(fp, ("batched",), "w")  # flush_tlb_batched_pending (3ea277194daa): test, flush, clear
        self._flush_footprint(fp, tid)
        for p in pages:
            for obj in ("pte", "ptebits"):
                add_mode(fp, (obj, p), "w")
        folios = tuple(self._reached(pages))  # the folios the zapped PTEs map
        for p in folios:
            for obj in ("map", "ref", "freed"):
                add_mode(fp, (obj, p), "w")
            add_mode(fp, ("dirty", p), "d")  # zap_pte_range only sets PG_dirty (from a dirty PTE)
            add_mode(fp, ("reclaim", p), "d")  # ... and so clears PG_reclaim
        self._ptl_sections(fp, pages)
        for c in range(self.ncpus):
            for p in self._reached(folios):
                add_mode(fp, ("tlb", c, p), "r")  # put_page's freed_while_mapped check reads every TLB

    def _ptl_sections(self, fp: Footprint, pages: tuple[int, ...]) -> None:
        """Taking the PTLs of these pages' tables; each release checks the rmap of every page in its table (with
        remaps, of every folio mapped there, at each of its addresses, when all their tables are unlocked:
        ops._fp_spin)."""
        if not self.linear:
            for t in range(-(-self.npages // self.ppt)):
                add_mode(fp, ("ptl", t), "r")
            for p in self.all_pages:
                add_mode(fp, ("pte", p), "r")
        for t in self._tables(pages):
            add_mode(fp, ("ptl", t), "w")
            table = range(t * self.ppt, min(self.npages, (t + 1) * self.ppt))
            for p in table:
                add_mode(fp, ("pte", p), "r")
            for p in self._reached(table):
                add_mode(fp, ("map", p), "r")


def flat(ops: "list[Op] | tuple[Op, ...]") -> list[Op]:
    """A program's operations with its loops' bodies in their place."""
    return [inner for op in ops for inner in (flat(list(op.body)) if op.kind == "loop" else [op])]


def _span(pages: tuple[int, ...]) -> tuple[int, int]:
    """[start, end) of a range operation (syscalls.Call: from the first listed page to past the last)."""
    return min(pages), max(pages) + 1


# The step after which mprotect's path notes write_protected (kernel_model.mprotect.do_mprotect: the note follows
# its up_write of mmap_lock, in the same transition): the one note besides an operation's end that the oracle acts
# on from a step that does not show it (its footprint adds _write_protected's).
WRITE_PROTECTED_AFTER = ("do_mprotect_pkey", "up_write")
# The footprint of each user-level operation kind (kernel_model.program.OP_KINDS; "loop" is its body's).
_OP_FOOTPRINTS = {
    "store": OpFootprints._access_footprint, "load": OpFootprints._access_footprint,
    "counter": OpFootprints._access_footprint, "madvise_dontneed": OpFootprints._unmap_footprint,
    "munmap": OpFootprints._unmap_footprint, "mmap_fixed": OpFootprints._unmap_footprint,
    "mmap": OpFootprints._unmap_footprint,
    "msync": OpFootprints._msync_footprint, "evict": OpFootprints._evict_footprint,
    "mremap": OpFootprints._mremap_footprint, "ftruncate": OpFootprints._truncate_footprint,
    "mprotect": OpFootprints._mprotect_footprint, "reclaim": OpFootprints._reclaim_footprint,
}


