"""Partial-order reduction for the controlled explorer: interleavings that need not be tried.

In a state, one enabled transition may be explored alone (a persistent set of one) when it is independent of
everything any other agent (thread, or a CPU's IPI handler) could still do from here: it touches no object that
they may write, and writes none that they may read. Every execution that lets others go first then has an
equivalent one that runs it first, reaching the same verdict.

For that to cover the oracle, the footprint of a step includes what the oracle's check on that step reads
(e.g. ``spin_unlock`` reads the mapcount and PTEs of its table, ``put_page`` reads every TLB), and the
whole-state checks are made at quiescence only (terminal states are preserved by persistent-set reduction);
exploration with reduction therefore runs the oracle without its online whole-state check. The state graph is
acyclic (every transition consumes a step or an IPI) except for a counter writer's loop, whose turns repeat a
state up to the renaming of store values; those turns are never chosen alone, which is the cycle proviso.

Footprints are sets of (object, mode). Objects are named by file page (= virtual page) index; a TLB is named by
CPU. Modes: "r" read, "w" write, "i" invalidate a TLB (invalidations commute with each other, not with reads
or fills). What another thread may still do is over-approximated from the operations left in its program.
"""

from __future__ import annotations

from typing import Iterable

from kernel_model.program import Op
from kernel_model.steps import Step

Footprint = dict[tuple, str]

_OPS_SENDING_IPIS = frozenset({"madvise_dontneed", "munmap", "mmap_fixed", "msync"})


def conflict(a: Footprint, b: Footprint) -> bool:
    for obj in a.keys() & b.keys():  # usually empty: the set intersection runs in C
        ma, mb = a[obj], b[obj]
        if ma == "w" or mb == "w" or ma != mb:  # a write, or a read against an invalidation
            return True
    return False


def _add(fp: Footprint, obj: tuple, mode: str) -> None:
    old = fp.get(obj)
    if old is None or old == mode:
        fp[obj] = mode
    else:
        fp[obj] = "w"  # two different modes on one object: as strong as a write


class Footprints:
    """Step footprints and future footprints for one scenario and machine shape."""

    def __init__(self, programs: list[list[Op]], cpu_of: list[int], ncpus: int, npages: int,
                 ptes_per_table: int, sync_pte_clear: bool, uniprocessor: bool) -> None:
        self.up = uniprocessor
        self.cpu_of = cpu_of
        self.ncpus = ncpus
        self.npages = npages
        self.ppt = ptes_per_table
        self.sync = sync_pte_clear
        # suffix[tid][pc]: what thread tid may touch from operation pc to the end of its program.
        self.suffix: list[list[Footprint]] = []
        for tid, program in enumerate(programs):
            acc: Footprint = {}
            suffix = [dict(acc)]
            for op in reversed(program):
                for obj, mode in self.op_footprint(tid, op).items():
                    _add(acc, obj, mode)
                if self.up:
                    # UP: whoever holds a spinlock is not preempted, so every lock and unlock decides who may
                    # run at all: it depends on everything another thread still has to do.
                    _add(acc, ("preempt",), "r")
                suffix.append(dict(acc))
            suffix.reverse()
            self.suffix.append(suffix)
        self.ipi_senders_from: list[list[bool]] = [
            [any(op.kind in _OPS_SENDING_IPIS for op in program[pc:]) for pc in range(len(program) + 1)]
            for program in programs
        ]

    def _pages(self, op: Op) -> tuple[int, ...]:
        return op.pages or tuple(range(self.npages))

    def _tables(self, pages: Iterable[int]) -> set[int]:
        return {p // self.ppt for p in pages}

    def op_footprint(self, tid: int, op: Op) -> Footprint:
        """Everything one user-level operation of ``tid`` may touch (over-approximated)."""
        fp: Footprint = {}
        cpu = self.cpu_of[tid]
        pages = self._pages(op)
        kind = op.kind
        if kind == "loop":
            for inner in op.body:
                for obj, mode in self.op_footprint(tid, inner).items():
                    _add(fp, obj, mode)
            return fp
        if kind in ("store", "load", "counter"):
            _add(fp, ("tlb", cpu), "w")
            _add(fp, ("sem", "mmap_lock"), "r")
            _add(fp, ("alloc",), "w")
            for p in pages:
                for obj in ("data", "pte", "ptebits", "pc", "lock", "dirty", "map", "ref"):
                    _add(fp, (obj, p), "w")
                _add(fp, ("vma", p), "r")
                _add(fp, ("disk", p), "r")
        elif kind in ("madvise_dontneed", "munmap", "mmap_fixed"):
            self._zap_footprint(fp, cpu, pages)
            if kind != "madvise_dontneed":
                _add(fp, ("sem", "mmap_lock"), "w")
                _add(fp, ("sem", "i_mmap_rwsem"), "w")
                for p in pages:
                    _add(fp, ("vma", p), "w")
                    _add(fp, ("imap", p), "w")
        elif kind == "msync":
            _add(fp, ("sem", "i_mmap_rwsem"), "r")
            self._flush_footprint(fp, cpu)
            for p in pages:
                for obj in ("lock", "wb", "dirty", "pte", "ptebits", "disk"):
                    _add(fp, (obj, p), "w")
                for obj in ("pc", "map", "imap", "data"):
                    _add(fp, (obj, p), "r")
            self._ptl_sections(fp, pages)
        elif kind == "evict":
            for p in pages:
                _add(fp, ("pc", p), "w")
                _add(fp, ("ref", p), "w")
                for obj in ("lock", "dirty", "wb", "map", "data", "disk"):
                    _add(fp, (obj, p), "r")
            for c in range(self.ncpus):
                _add(fp, ("tlb", c), "r")
        return fp

    def _flush_footprint(self, fp: Footprint, cpu: int) -> None:
        for c in range(self.ncpus):
            if c != cpu:
                _add(fp, ("ipiq", c), "w")
            if c == cpu or self.sync:
                _add(fp, ("tlb", c), "i")

    def _zap_footprint(self, fp: Footprint, cpu: int, pages: tuple[int, ...]) -> None:
        _add(fp, ("sem", "mmap_lock"), "r")
        self._flush_footprint(fp, cpu)
        for p in pages:
            for obj in ("pte", "ptebits", "dirty", "map", "ref"):
                _add(fp, (obj, p), "w")
        self._ptl_sections(fp, pages)
        for c in range(self.ncpus):
            _add(fp, ("tlb", c), "r")  # put_page's freed_while_mapped check reads every TLB

    def _ptl_sections(self, fp: Footprint, pages: tuple[int, ...]) -> None:
        """Taking the PTLs of these pages' tables; each release checks the rmap of every page in its table."""
        for t in self._tables(pages):
            _add(fp, ("ptl", t), "w")
            for p in range(t * self.ppt, min(self.npages, (t + 1) * self.ppt)):
                _add(fp, ("map", p), "r")
                _add(fp, ("pte", p), "r")

    def step_footprint(self, tid: int, step: Step, index_of: list[int]) -> Footprint | None:
        """What one step touches, including what the oracle's check of that step reads.
        ``index_of`` maps pfn to file page index in the current state."""
        op, a = step.op, step.args
        cpu = self.cpu_of[tid]
        fp: Footprint = {}
        if op == "store_tlb" and a[1] is None:
            # The counter writer's increment: its loop makes cycles in the (canonical) state graph, and a
            # persistent set chosen on a cycle could put the other agents off forever (the "ignoring problem");
            # never choosing it alone keeps every state of such a cycle fully expanded (the cycle proviso).
            return None
        if op == "store_tlb":
            va = a[0]
            fp = {("tlb", cpu): "w", ("data", va): "w", ("ptebits", va): "w", ("pte", va): "r"}
        elif op == "load_tlb":
            fp = {("tlb", cpu): "w", ("data", a[0]): "r"}
        elif op == "walk_fill":
            fp = {("tlb", cpu): "w", ("ptebits", a[0]): "w", ("pte", a[0]): "r"}
        elif op == "flush_tlb_local":
            fp = {("tlb", cpu): "i"}
        elif op == "flush_tlb_others":
            fp = {("ipiq", c): "w" for c in range(self.ncpus) if c != cpu}
        elif op == "wait_acks":
            fp = {}
        elif op == "spin_lock":
            fp = {("ptl", a[0]): "w"}
            if self.up:
                fp[("preempt",)] = "w"
        elif op == "spin_unlock":
            fp = {("ptl", a[0]): "w"}
            if self.up:
                fp[("preempt",)] = "w"
            t = a[0]
            for p in range(t * self.ppt, min(self.npages, (t + 1) * self.ppt)):
                fp[("map", p)] = "r"
                fp[("pte", p)] = "r"
        elif op in ("folio_lock", "folio_unlock"):
            fp = {("lock", index_of[a[0]]): "w"}
        elif op in ("down_read", "up_read"):
            fp = {("sem", a[0]): "r"}
        elif op in ("down_write", "up_write", "downgrade_write"):
            fp = {("sem", a[0]): "w"}
        elif op in ("folio_wait_writeback", "folio_test_writeback"):
            fp = {("wb", index_of[a[0]]): "r"}
        elif op == "ptep_get_and_clear_full":
            va = a[0]
            fp = {("pte", va): "w", ("ptebits", va): "w"}
            if a[1]:
                for c in range(self.ncpus):
                    fp[("tlb", c)] = "i"
        elif op == "pte_none":
            fp = {("pte", a[0]): "r"}
        elif op in ("pte_get", "pte_same"):
            fp = {("pte", a[0]): "r", ("ptebits", a[0]): "r"}
        elif op == "set_pte_at":
            fp = {("pte", a[0]): "w", ("ptebits", a[0]): "w"}
        elif op == "find_vma":
            fp = {("vma", a[0]): "r"}
        elif op in ("detach_vma", "link_vma"):
            fp = {("vma", a[0]): "w"}
        elif op in ("vma_link_file", "unlink_file_vma"):
            fp = {("imap", a[0]): "w"}
        elif op == "i_mmap_lookup":
            fp = {("imap", a[0]): "r"}
        elif op in ("page_add_file_rmap", "page_remove_rmap", "page_add_new_anon_rmap"):
            i = index_of[a[0]]
            fp = {("map", i): "w", ("ref", i): "w"}
        elif op == "folio_mapped":
            fp = {("map", index_of[a[0]]): "r"}
        elif op in ("set_page_dirty", "folio_mark_dirty", "folio_test_clear_dirty"):
            fp = {("dirty", index_of[a[0]]): "w"}
        elif op == "folio_test_dirty":
            fp = {("dirty", index_of[a[0]]): "r"}
        elif op == "writepage":
            i = index_of[a[0]]
            fp = {("wb", i): "w", ("data", i): "r"}
        elif op == "end_page_writeback":
            i = index_of[a[0]]
            fp = {("wb", i): "w", ("disk", i): "w"}
        elif op == "put_page":
            i = index_of[a[0]]
            fp = {("ref", i): "w", ("pte", i): "r"}
            for c in range(self.ncpus):
                fp[("tlb", c)] = "r"
        elif op == "evict_folio":
            i = a[0]
            fp = {("pc", i): "w", ("ref", i): "w", ("lock", i): "r", ("dirty", i): "r", ("wb", i): "r",
                  ("map", i): "r", ("data", i): "r", ("disk", i): "r"}
            for c in range(self.ncpus):
                fp[("tlb", c)] = "r"
        elif op == "filemap_get_folio":
            fp = {("pc", a[0]): "r"}
        elif op == "page_cache_read":
            fp = {("pc", a[0]): "w", ("disk", a[0]): "r", ("alloc",): "w"}
        elif op == "alloc_anon_page":
            fp = {("alloc",): "w"}
        elif op == "read_page":
            fp = {("data", index_of[a[0]]): "r"}
        else:
            return None  # an action this table does not know is never explored alone
        return fp

    def future(self, tid: int, pc: int) -> Footprint:
        return self.suffix[tid][min(pc, len(self.suffix[tid]) - 1)]


def ipi_footprint(cpu: int) -> Footprint:
    """A CPU's flush IPI handler: it invalidates that CPU's TLB and takes a request off its queue."""
    return {("tlb", cpu): "i", ("ipiq", cpu): "w"}
