"""The op table: every atomic action a kernel path can yield as a ``Step``, declared once.

An entry says where the action runs (``kind``), whether the CPU actor may pipeline it, whether paths read its
result, whether the oracle looks at its event, whether its footprint depends on the state (the reduction's
``footprint_context``) or its completion may end a system call that covers a translation, what it touches (its
footprint for the partial-order reduction) and how a story or a race diagram writes it. The runtimes, the
reduction, the oracle's event filter and both renderers read this table, or the frozensets derived from it once
at import below (the hot paths look those up per step). Adding an op is adding one entry here.

Also declared here, for their formats and the oracle's filter: the two halves of a CPU's flush IPI handler
(``ipi_flush``: flush_tlb_func's invalidation; ``ipi_ack``: csd_unlock's ack), which the runtimes emit as events
of kind "ipi" (no path yields them).

Footprints (controlled.reduction explains objects and modes) name per-address objects (PTE, TLB entry, VMA)
by virtual page and per-folio objects (page cache slot, folio flags, data, references) by file offset (an anonymous
folio's is the address it was faulted at); ``index_of`` maps a pfn to its folio's index. Without remaps an
address maps its own file page (``Shape.linear``), so the two numbers agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Final, Protocol

from kernel_model.state import Pte

if TYPE_CHECKING:
    from kernel_model.state import State

Footprint = dict[tuple, str]


class Shape(Protocol):
    """What a step's footprint needs of the machine: its shape (controlled.reduction.Footprints has it)."""

    up: bool
    ncpus: int
    npages: int
    ppt: int
    # No operation remaps an address (kernel_model.program.remaps): address va's folio is file page va's (or
    # the anonymous page faulted at va), so per-offset objects of a step on va are named by va. Otherwise a
    # step that reaches a folio through an address (or an address through a folio) may touch any of them.
    linear: bool


# (shape, thread id, its CPU, the step's args, pfn -> file page index, state) -> footprint, or None: never
# explored alone.
FootprintFn = Callable[[Shape, int, int, tuple, list, "State"], "Footprint | None"]


# --- story formats --------------------------------------------------------------------------------------------
def _plain_args(a: tuple) -> str:
    return ", ".join(map(str, a))


def _plain_result(a: tuple, r: Any) -> str | None:
    return None if r is None else str(r)


def _bool_result(a: tuple, r: Any) -> str | None:
    return None if r is None else str(r).lower()


def _range(a: tuple) -> str:
    return f"va {a[0]}..{a[1] - 1}"


def _pte_text(p: Any) -> str:
    if p is None:
        return "pte_none"
    pte = Pte(*p)
    bits = "".join(b for b, on in (("W", pte.write), ("D", pte.dirty), ("A", pte.young)) if on)
    return f"PTE{{pfn {pte.pfn}{', ' + bits if bits else ''}}}"


@dataclass(frozen=True, slots=True)
class Format:
    """How an op's event is written, by the story (analysis/story.py: ``fn: op(args) → result``) and by the
    race diagram (analysis/diagram.py: ``==> op(args)`` and ``[result]`` under it)."""

    args: Callable[[tuple], str] = _plain_args
    result: Callable[[tuple, Any], "str | None"] = _plain_result  # None: no result shown
    story: bool = True  # worth a story row (False: it only re-reads what the next row shows)
    diagram: Callable[[tuple, Any], bool] = lambda a, r: False  # worth a line of the race diagram
    # The name the diagram writes when the op's own is too long for a column of a mail-width diagram: the kernel
    # function it stands for (ptep_get_and_clear) or the older kernel name of the same test (TestClearPageDirty).
    short: str = ""

    def name(self, op: str, short: bool = False) -> str:
        return (self.short if short else "") or op

    def call(self, op: str, a: tuple, short: bool = False) -> str:
        return f"{self.name(op, short)}({self.args(a)})"


_ALWAYS: Callable[[tuple, Any], bool] = lambda a, r: True
_PTL = Format(args=lambda a: f"PTL {a[0]}", diagram=_ALWAYS)
_PFN_LOCK = Format(args=lambda a: f"pfn {a[0]}", diagram=_ALWAYS)
_PFN = Format(args=lambda a: f"pfn {a[0]}")
_SEM = Format(args=lambda a: str(a[0]))
_BOOL = Format(result=_bool_result)
_QUIET = Format(story=False)


# --- footprints (see controlled.reduction) --------------------------------------------------------------------
def _folios_at(sh: Shape, va: int) -> range:
    """The file offsets (folio indexes) a translation of ``va`` may reach."""
    return range(va, va + 1) if sh.linear else range(sh.npages)


def _tlb_invalidated(cpu: int, pages: range) -> Footprint:
    fp: Footprint = {}
    for p in pages:
        fp[("tlb", cpu, p)] = fp[("cov", cpu, p)] = fp[("stale", cpu, p)] = "i"
    return fp


def _fp_store_tlb(sh: Shape, tid: int, cpu: int, a: tuple, index_of: list, s: "State") -> Footprint | None:
    fp = _fp_store_access(sh, tid, cpu, a, index_of, s)
    if fp is not None:
        # The oracle remembers a store for an expectation only below i_size (Oracle._remember_store): a store and
        # ftruncate's i_size_write do not commute once the file can grow again (only i_size_write writes it).
        fp[("isize",)] = "r"
    return fp


def _fp_store_access(sh: Shape, tid: int, cpu: int, a: tuple, index_of: list, s: "State") -> Footprint | None:
    if a[1] is None:
        # The counter writer's increment: its loop makes cycles in the (canonical) state graph, and a
        # persistent set chosen on a cycle could put the other agents off forever (the "ignoring problem");
        # never choosing it alone keeps every state of such a cycle fully expanded (the cycle proviso).
        return None
    va = a[0]
    entry = s.tlbs[cpu].get(va)
    if entry is None:
        if len(a) < 3:
            return {("tlb", cpu, va): "r"}  # a miss: the walk is the next step
        # A uniprocessor's miss: the walk and the store in one step (kernel_model.tlb._store_args).
        fp = _fp_walk_fill(sh, tid, cpu, a, index_of, s)
        for i in _folios_at(sh, va):
            fp[("data", i)] = "s"
        return fp
    if not entry.writable:
        return {("tlb", cpu, va): "w", ("cov", cpu, va): "i", ("stale", cpu, va): "i"}  # the fault drops it
    if entry.dirty:
        # No page-table access at all (x86); the oracle checks the entry is not stale.
        fp: Footprint = {("tlb", cpu, va): "r", ("stale", cpu, va): "r"}
    else:
        fp = {("tlb", cpu, va): "w", ("ptebits", va): "w", ("pte", va): "r", ("cov", cpu, va): "w",
              ("stale", cpu, va): "w"}
    for i in _folios_at(sh, va):
        fp[("data", i)] = "s"
    return fp


def _fp_load_tlb(sh: Shape, tid: int, cpu: int, a: tuple, index_of: list, s: "State") -> Footprint:
    fp: Footprint = {("tlb", cpu, a[0]): "w", ("stale", cpu, a[0]): "r"}
    for i in _folios_at(sh, a[0]):
        fp[("data", i)] = "r"
    return fp


def _fp_walk_fill(sh: Shape, tid: int, cpu: int, a: tuple, index_of: list, s: "State") -> Footprint:
    # The oracle checks that the PTE's folio was not freed (the VMA maps linearly).
    va = a[0]
    fp: Footprint = {("tlb", cpu, va): "w", ("ptebits", va): "w", ("pte", va): "r", ("cov", cpu, va): "i",
                     ("stale", cpu, va): "i"}
    for i in _folios_at(sh, va):
        fp[("freed", i)] = "r"
    return fp


def _fp_flush_tlb_others(sh: Shape, tid: int, cpu: int, a: tuple, index_of: list, s: "State") -> Footprint:
    # Each CPU's queue holds one slot per initiator (kept in initiator order: positions.send_flush_ipis), so
    # sends from different threads commute with each other and with handlers of other initiators' requests.
    fp: Footprint = {("ipiq", c, tid): "w" for c in range(sh.ncpus) if c != cpu}
    fp[("ack", tid)] = "+"  # acks_pending += targets: commutes with the acks' decrements
    return fp


def _fp_spin(sh: Shape, tid: int, cpu: int, a: tuple, index_of: list, s: "State", unlock: bool) -> Footprint:
    fp: Footprint = {("ptl", a[0]): "w"}
    if sh.up:
        fp[("preempt",)] = "w"  # UP: whoever holds a spinlock is not preempted
    if unlock:  # the oracle's rmap_pte_mismatch check reads the table's PTEs and their folios' mapcounts
        t = a[0]
        for p in range(t * sh.ppt, min(sh.npages, (t + 1) * sh.ppt)):
            fp[("pte", p)] = "r"
            for i in _folios_at(sh, p):
                fp[("map", i)] = "r"
        if not sh.linear:
            # Which folios it checks depends on where i_mmap says they are mapped; it checks a folio at every
            # address that may map it, in any table, and only when all those tables' PTLs are free.
            for i in range(sh.npages):
                fp[("imap", i)] = "r"
                fp[("pte", i)] = "r"
            for other in range(-(-sh.npages // sh.ppt)):
                if other != t:
                    fp[("ptl", other)] = "r"
    return fp


def _fp_ptep_get_and_clear_full(sh: Shape, tid: int, cpu: int, a: tuple, index_of: list,
                                s: "State") -> Footprint:
    va = a[0]
    fp: Footprint = {("pte", va): "w", ("ptebits", va): "w"}
    for c in range(sh.ncpus):
        if a[1]:  # s390 IPTE: invalidated everywhere in this step
            fp[("tlb", c, va)] = fp[("cov", c, va)] = fp[("stale", c, va)] = "i"
        else:  # the oracle marks the translation covered on every CPU
            fp[("cov", c, va)] = "a"
    return fp


def _fp_put_page(sh: Shape, tid: int, cpu: int, a: tuple, index_of: list, s: "State") -> Footprint:
    i = index_of[a[0]]
    if s.folios[a[0]].refcount > 1:
        return {("ref", i): "+"}
    # The last reference: the page is freed and the freed_while_mapped check runs (every PTE and TLB entry
    # that may map it: without remaps, only those of its own address).
    fp: Footprint = {("ref", i): "w", ("freed", i): "w"}
    for va in _folios_at(sh, i):
        fp[("pte", va)] = "r"
        for c in range(sh.ncpus):
            fp[("tlb", c, va)] = "r"
    return fp


def _fp_evict_folio(sh: Shape, tid: int, cpu: int, a: tuple, index_of: list, s: "State") -> Footprint:
    i = a[0]
    fp: Footprint = {("pc", i): "w", ("ref", i): "w", ("freed", i): "w", ("lock", i): "r", ("dirty", i): "r",
                     ("wb", i): "r", ("map", i): "r", ("data", i): "r", ("disk", i): "r",
                     ("isize",): "r"}  # the oracle judges a loss only below i_size (oracle._in_file)
    for va in _folios_at(sh, i):  # the freed_while_mapped check: every TLB entry that may map it
        for c in range(sh.ncpus):
            fp[("tlb", c, va)] = "r"
    return fp


def _on_va(**modes: str) -> FootprintFn:
    """A footprint on objects named by the step's first argument, an address or a file index."""
    items = tuple(modes.items())
    return lambda sh, tid, cpu, a, index_of, s: {(obj, a[0]): mode for obj, mode in items}


def _on_pfn(**modes: str) -> FootprintFn:
    """A footprint on objects of the folio the step's first argument (a pfn) names."""
    items = tuple(modes.items())
    return lambda sh, tid, cpu, a, index_of, s: {(obj, index_of[a[0]]): mode for obj, mode in items}


def _on_mm(**modes: str) -> FootprintFn:
    """A per-mm or per-inode field (i_size, mm->tlb_flush_batched): one object each."""
    return lambda sh, tid, cpu, a, index_of, s: {(obj,): mode for obj, mode in modes.items()}


def _on_sem(mode: str) -> FootprintFn:
    return lambda sh, tid, cpu, a, index_of, s: {("sem", a[0]): mode}


# --- the table ------------------------------------------------------------------------------------------------
KINDS: Final = ("cpu", "pt", "block", "ipi")


@dataclass(frozen=True, slots=True)
class OpSpec:
    name: str
    # Where it runs: "cpu" on the thread's CPU and its TLB; "pt" on the shared page state (PageTableOps, the
    # page-table actor); "block" a PageTableOps action that waits until it can proceed (can_<op>), or wait_acks;
    # "ipi" the shootdown: its initiator (flush_tlb_others) or a target's handler halves.
    kind: str
    footprint: FootprintFn | None  # None: an action never explored alone
    fmt: Format = Format()
    pipelined: bool = False  # "pt" only: returns None and never blocks, so the CPU actor need not wait for it
    result_read: bool = True  # False: paths ignore the result, and the controlled machine feeds them None
    observed: bool = False  # the oracle acts on every event of it
    observed_tlb: bool = False  # ... or only while Oracle.wants it (a covered or stale translation, a freed frame)
    context: bool = False  # its footprint depends on the state (Footprints.footprint_context)
    may_end_covering_call: bool = False  # a system call may return right after it, still covering a translation
    event: str = "step"  # the event kind its runtimes emit: "step", or "ipi" for the handler halves
    # Every result it may return, given the machine's shape and its args, for a path that reads it: what
    # controlled.position_futures feeds a path to learn where it may still go. None: too many to list (a PTE, a
    # pfn, a count, an address list; or None returned for this shape); a position before such a step keeps its
    # operation's whole footprint.
    # Steps whose results paths do not read (result_read False) and blocking steps are fed None and need none.
    results: "Callable[[Shape, tuple], tuple] | None" = None

    @property
    def blocks(self) -> bool:
        return self.kind == "block"


_BOOLS: Final = lambda sh, a: (False, True)  # noqa: E731 - a test's two answers
_NONE: Final = lambda sh, a: (None,)  # noqa: E731 - a step that returns nothing a path could read


def _op(name: str, kind: str, footprint: FootprintFn | None, fmt: Format = Format(), **props: Any) -> OpSpec:
    return OpSpec(name, kind, footprint, fmt, **props)


_TABLE: tuple[OpSpec, ...] = (
    # --- on the CPU (kernel_model.tlb) ---
    _op("store_tlb", "cpu", _fp_store_tlb, Format(
        args=lambda a: f"va {a[0]}, " + ("lock incl (+1)" if a[1] is None else f"value {a[1]}"), diagram=_ALWAYS),
        observed_tlb=True, context=True),
    _op("load_tlb", "cpu", _fp_load_tlb, observed_tlb=True),
    _op("walk_fill", "cpu", _fp_walk_fill, Format(args=lambda a: f"va {a[0]}, {'write' if a[1] else 'read'}",
                                                  result=_bool_result), observed=True, observed_tlb=True,
        results=_BOOLS),
    _op("flush_tlb_local", "cpu", lambda sh, tid, cpu, a, index_of, s: _tlb_invalidated(
        cpu, range(a[0], min(a[1], sh.npages))), Format(args=_range, diagram=_ALWAYS), observed_tlb=True,
        results=lambda sh, a: tuple(range(max(0, min(a[1], sh.npages) - a[0]) + 1))),  # the entries it dropped
    # --- the shootdown ---
    _op("flush_tlb_others", "ipi", _fp_flush_tlb_others, Format(
        args=_range, result=lambda a, r: f"{r} IPI{'s' if r != 1 else ''} sent", diagram=_ALWAYS),
        results=lambda sh, a: (sh.ncpus - 1,)),  # positions.send_flush_ipis: one to every other CPU
    _op("wait_acks", "block", lambda sh, tid, cpu, a, index_of, s: {}, Format(args=_range),
        observed_tlb=True, may_end_covering_call=True),
    _op("ipi_flush", "ipi", None, Format(
        args=_range, result=lambda a, r: f"{r} flushed" if r else "nothing cached",
        diagram=_ALWAYS),
        observed_tlb=True, event="ipi"),
    _op("ipi_ack", "ipi", None, Format(args=_range, result=lambda a, r: None), event="ipi"),
    # --- locks ---
    _op("spin_lock", "block", lambda sh, tid, cpu, a, index_of, s: _fp_spin(sh, tid, cpu, a, index_of, s, False),
        _PTL),
    _op("spin_unlock", "pt", lambda sh, tid, cpu, a, index_of, s: _fp_spin(sh, tid, cpu, a, index_of, s, True),
        _PTL, pipelined=True, result_read=False, observed=True),
    # Locking a folio already freed is a use after free (the oracle's freed_while_mapped: a path that held no
    # reference of its own, as under the fault_without_page_ref mutant); it reads "freed" for that check.
    _op("folio_lock", "block", _on_pfn(lock="w", freed="r"), _PFN_LOCK, observed=True),
    _op("folio_unlock", "pt", _on_pfn(lock="w"), _PFN_LOCK, pipelined=True, result_read=False,
        may_end_covering_call=True),
    _op("down_read", "block", _on_sem("r"), _SEM),
    _op("up_read", "pt", _on_sem("r"), _SEM, pipelined=True, result_read=False, may_end_covering_call=True),
    _op("down_write", "block", _on_sem("w"), _SEM),
    _op("up_write", "pt", _on_sem("w"), _SEM, pipelined=True, result_read=False, may_end_covering_call=True),
    _op("downgrade_write", "pt", _on_sem("w"), _SEM, pipelined=True, result_read=False),
    _op("folio_wait_writeback", "block", _on_pfn(wb="r"), _PFN),
    # --- mm->tlb_flush_pending (99baac21e458): atomic_inc/dec commute with each other ---
    _op("inc_tlb_flush_pending", "pt", lambda sh, tid, cpu, a, index_of, s: {("flushpend",): "+"}, _QUIET,
        results=_NONE),
    _op("dec_tlb_flush_pending", "pt", lambda sh, tid, cpu, a, index_of, s: {("flushpend",): "+"}, _QUIET,
        results=_NONE),
    _op("mm_tlb_flush_nested", "pt", lambda sh, tid, cpu, a, index_of, s: {("flushpend",): "r"}, _BOOL, results=_BOOLS),
    # --- page tables ---
    _op("ptep_get_and_clear_full", "pt", _fp_ptep_get_and_clear_full, Format(
        args=lambda a: f"va {a[0]}" + (", IPTE: every TLB invalidated" if a[1] else ""),
        result=lambda a, r: _pte_text(r), diagram=lambda a, r: r is not None, short="ptep_get_and_clear"),
        observed=True),
    _op("pte_none", "pt", _on_va(pte="r"), _BOOL, results=_BOOLS),
    _op("pte_get", "pt", _on_va(pte="r", ptebits="r"), Format(result=lambda a, r: _pte_text(r))),
    _op("pte_same", "pt", _on_va(pte="r", ptebits="r"), _BOOL, results=_BOOLS),
    # The oracle checks that the folio it maps was not freed.
    _op("set_pte_at", "pt", lambda sh, tid, cpu, a, index_of, s: {
        ("pte", a[0]): "w", ("ptebits", a[0]): "w", ("freed", index_of[a[1][0]]): "r"},
        Format(args=lambda a: f"va {a[0]}, {_pte_text(a[1])}", diagram=_ALWAYS),
        pipelined=True, result_read=False, observed=True),
    # --- VMAs and the file's i_mmap tree ---
    _op("find_vma", "pt", _on_va(vma="r"), _QUIET),
    _op("detach_vma", "pt", _on_va(vma="w"), pipelined=True, result_read=False),
    _op("link_vma", "pt", _on_va(vma="w"), pipelined=True, result_read=False),
    # VM_WRITE (State.vm_write), kept with the VMA's other fields under the same object: mprotect_fixup clears it,
    # copy_vma copies it (from the old address, args[1]), a write fault tests it (True: no VM_WRITE, SIGSEGV).
    _op("vm_flags_reset", "pt", _on_va(vma="w"), pipelined=True, result_read=False),
    _op("vm_flags_init", "pt", lambda sh, tid, cpu, a, index_of, s: {("vma", a[0]): "w", ("vma", a[1]): "r"},
        pipelined=True, result_read=False),
    _op("access_error", "pt", _on_va(vma="r"), _BOOL, results=_BOOLS),
    # i_mmap is kept per file offset: (va, offset) links or unlinks the VMA at va under offset.
    _op("vma_link_file", "pt", lambda sh, tid, cpu, a, index_of, s: {("imap", a[1]): "w"}, pipelined=True,
        result_read=False),
    _op("unlink_file_vma", "pt", lambda sh, tid, cpu, a, index_of, s: {("imap", a[1]): "w"}, pipelined=True,
        result_read=False),
    # Without remaps only the VMA at address ``index`` ever maps file page ``index`` (it may have been unlinked).
    _op("i_mmap_lookup", "pt", _on_va(imap="r"), _QUIET,
        results=lambda sh, a: ((), (a[0],)) if sh.linear else None),
    # --- rmap ---
    # The mapcount only: the fault's reference becomes the PTE's.
    _op("page_add_file_rmap", "pt", _on_pfn(map="w"), _PFN, result_read=False),
    _op("folio_get", "pt", _on_pfn(ref="+"), _PFN, results=_NONE),  # wp_page_shared's reference
    # The reference goes with put_page, after the flush.
    _op("page_remove_rmap", "pt", _on_pfn(map="w"), Format(
        args=lambda a: f"pfn {a[0]}{', delayed' if a[1] else ''}", result=lambda a, r: f"mapcount {r}",
        diagram=_ALWAYS), observed=True),
    _op("page_add_new_anon_rmap", "pt", _on_pfn(map="w", ref="w"), _PFN),
    _op("folio_mapped", "pt", _on_pfn(map="r"), Format(args=lambda a: f"pfn {a[0]}", result=_bool_result),
        results=_BOOLS),
    # --- struct folio flags ---
    # Both are the kernel's folio_mark_dirty, which clears PG_reclaim too ("d" on it: clearing twice is clearing
    # once, so these still commute with each other and with end_page_writeback's clear).
    _op("set_page_dirty", "pt", _on_pfn(dirty="d", reclaim="d"), Format(
        args=lambda a: f"pfn {a[0]}", result=_bool_result, diagram=_ALWAYS), result_read=False),
    _op("folio_mark_dirty", "pt", _on_pfn(dirty="d", reclaim="d"), Format(args=lambda a: f"pfn {a[0]}", result=_bool_result),
        result_read=False),
    _op("folio_test_dirty", "pt", _on_pfn(dirty="r"), Format(args=lambda a: f"pfn {a[0]}", result=_bool_result),
        results=_BOOLS),
    _op("folio_test_clear_dirty", "pt", _on_pfn(dirty="w"), Format(
        args=lambda a: f"pfn {a[0]}", result=lambda a, r: "PG_dirty 1 -> 0" if r else "PG_dirty was 0",
        diagram=_ALWAYS, short="TestClearPageDirty"), results=_BOOLS),
    _op("folio_test_writeback", "pt", _on_pfn(wb="r"), Format(args=lambda a: f"pfn {a[0]}", story=False),
        results=_BOOLS),
    # PG_reclaim (kernel_model.reclaim): set by shrink_folio_list's activate branch, tested by its pageout branch.
    _op("is_page_cache_freeable", "pt", _on_pfn(ref="r", pc="r"),
        Format(args=lambda a: f"pfn {a[0]}", result=_bool_result, diagram=_ALWAYS), results=_BOOLS),
    _op("folio_set_reclaim", "pt", _on_pfn(reclaim="w"), Format(args=lambda a: f"pfn {a[0]}", diagram=_ALWAYS),
        result_read=False),
    _op("folio_test_reclaim", "pt", _on_pfn(reclaim="r"), Format(args=lambda a: f"pfn {a[0]}", result=_bool_result),
        results=_BOOLS),
    # --- page cache, IO and page lifetime ---
    # i_size: an offset at or past it answers SIGBUS (filemap_fault's max_idx check; ftruncate moves it).
    _op("filemap_get_folio", "pt", lambda sh, tid, cpu, a, index_of, s: {
        ("pc", a[0]): "r", ("ref", a[0]): "+", ("isize",): "r"}, _QUIET, may_end_covering_call=True),
    _op("filemap_lookup", "pt", _on_va(pc="r"), _QUIET),
    _op("folio_test_mapping", "pt", _on_pfn(pc="r"), Format(args=lambda a: f"pfn {a[0]}", story=False), results=_BOOLS),
    _op("page_cache_read", "pt", lambda sh, tid, cpu, a, index_of, s: {
        ("pc", a[0]): "w", ("disk", a[0]): "r", ("alloc",): "w", ("isize",): "r"}),
    _op("alloc_anon_page", "pt", lambda sh, tid, cpu, a, index_of, s: {("alloc",): "w"}),
    _op("writepage", "pt", _on_pfn(wb="w", data="r"), Format(
        args=lambda a: f"pfn {a[0]}", result=lambda a, r: f"IO submitted, snapshot {r}", diagram=_ALWAYS),
        result_read=False),
    # folio_end_writeback also clears PG_reclaim ("d", as folio_mark_dirty's clear).
    _op("end_page_writeback", "pt", _on_pfn(wb="w", disk="w", reclaim="d"), Format(
        args=lambda a: f"pfn {a[0]}", result=lambda a, r: f"IO done, disk holds {r}", diagram=_ALWAYS),
        result_read=False, may_end_covering_call=True),
    _op("put_page", "pt", _fp_put_page, Format(
        args=lambda a: f"pfn {a[0]}", result=lambda a, r: "the last reference: freed" if r == 0 else f"refcount {r}",
        diagram=lambda a, r: r == 0, short="folio_put"), result_read=False, observed=True, context=True),
    _op("evict_folio", "pt", _fp_evict_folio, observed=True),
    # --- issue 15's races 3 and 4: ftruncate, reclaim, mprotect (kernel_model.truncate, reclaim, mprotect) ---
    # (the operations' own footprints, which cover these steps', are controlled.reduction's)
    # Under inode_lock (i_rwsem): returns the old size (truncate_setsize's oldsize; ext4_setattr's shrink test).
    # Observed: the oracle forgets an expectation's store remembered in a page the new size leaves out.
    _op("i_size_write", "pt", _on_mm(isize="w"),
        Format(args=lambda a: f"i_size {a[0]} pages", result=lambda a, r: None if r is None else f"was {r}",
               diagram=_ALWAYS), observed=True),
    # filemap_fault's recheck of i_size under the folio lock ("We must recheck i_size under page lock"): True while
    # the offset is below the file's end (max_idx), False for VM_FAULT_SIGBUS. Only where a thread may ftruncate.
    _op("i_size_read", "pt", _on_mm(isize="r"),
        Format(args=lambda a: f"index {a[0]}", result=lambda a, r: "below i_size" if r else "past i_size: SIGBUS"),
        results=_BOOLS),
    # ext4_truncate (ext4_ext_remove_space): every block from the new size to the end is freed, a hole.
    _op("ext4_truncate", "pt", lambda sh, tid, cpu, a, index_of, s: {("disk", i): "w" for i in range(a[0], sh.npages)},
        Format(args=lambda a: f"blocks from page {a[0]} freed", diagram=_ALWAYS), result_read=False),
    _op("find_get_entry", "pt", lambda sh, tid, cpu, a, index_of, s: {("pc", a[0]): "r", ("ref", a[0]): "+"},
        Format(args=lambda a: f"index {a[0]}", result=lambda a, r: "none" if r is None else f"pfn {r}")),
    _op("delete_from_page_cache", "pt", _on_pfn(pc="w", dirty="w", ref="w"),
        Format(args=lambda a: f"pfn {a[0]}", result=lambda a, r: f"refcount {r}", diagram=_ALWAYS,
               short="filemap_remove_folio")),
    _op("folio_trylock", "pt", _on_pfn(lock="w"), Format(args=lambda a: f"pfn {a[0]}", result=_bool_result),
        results=_BOOLS),
    _op("set_tlb_flush_batched", "pt", _on_mm(batched="w"),
        Format(args=lambda a: "mm->tlb_flush_batched = true", diagram=_ALWAYS), result_read=False),
    _op("test_tlb_flush_batched", "pt", _on_mm(batched="r"),
        Format(args=lambda a: "mm->tlb_flush_batched", result=_bool_result, diagram=_ALWAYS), results=_BOOLS),
    _op("clear_tlb_flush_batched", "pt", _on_mm(batched="w"),
        Format(args=lambda a: "mm->tlb_flush_batched = false"), result_read=False),
    _op("remove_mapping", "pt", _on_pfn(pc="w", ref="w", dirty="r", map="r"),
        Format(args=lambda a: f"pfn {a[0]}", result=_bool_result, short="__remove_mapping"), results=_BOOLS),
    _op("ptep_modify_prot", "pt", _on_va(pte="w", ptebits="w"),
        Format(args=lambda a: f"va {a[0]}, PROT_READ",
               result=lambda a, r: "pte_none: not present, nothing to flush" if r is None else _pte_text(r),
               diagram=_ALWAYS,
               short="ptep_modify_prot_commit")),
)

OPS: Final[dict[str, OpSpec]] = {spec.name: spec for spec in _TABLE}
assert len(OPS) == len(_TABLE), "an op declared twice"
assert all(spec.kind in KINDS for spec in _TABLE)

# Views derived once, for the lookups the runtimes make per step.
STEP_OPS: Final = frozenset(n for n, s in OPS.items() if s.event == "step")  # what paths may yield
KIND: Final[dict[str, str]] = {n: s.kind for n, s in OPS.items()}
CPU_OPS: Final = frozenset(n for n in STEP_OPS if OPS[n].kind == "cpu")
BLOCKING_OPS: Final = frozenset(n for n in STEP_OPS if OPS[n].blocks)
IPI_OPS: Final = frozenset(n for n in STEP_OPS if OPS[n].kind == "ipi")
PIPELINED_OPS: Final = frozenset(n for n, s in OPS.items() if s.pipelined)
UNREAD_RESULTS: Final = frozenset(n for n in STEP_OPS if not OPS[n].result_read)
MAY_END_COVERING_CALL: Final = frozenset(n for n, s in OPS.items() if s.may_end_covering_call)
CONTEXT_OPS: Final = frozenset(n for n, s in OPS.items() if s.context) | MAY_END_COVERING_CALL
FOOTPRINTS: Final[dict[str, FootprintFn]] = {n: s.footprint for n, s in OPS.items() if s.footprint is not None}
RESULTS: Final[dict[str, Callable[[Shape, tuple], "tuple | None"]]] = {
    n: s.results for n, s in OPS.items() if s.results is not None}
# Steps a path is fed None after whatever they return: their result is unread, or always None (an acquire,
# wait_acks, a _NONE op). What comes after them is known before they run (controlled.lock_joins).
FED_NONE: Final = UNREAD_RESULTS | BLOCKING_OPS | frozenset(n for n, s in OPS.items() if s.results is _NONE)


def observed_ops(event: str, tlb: bool) -> frozenset[str]:
    """The ops of events of this kind the oracle always acts on (``tlb`` False), or acts on only while
    Oracle.wants them (``tlb`` True)."""
    return frozenset(n for n, s in OPS.items() if s.event == event and (s.observed_tlb if tlb else s.observed))


def fmt_of(op: str) -> Format:
    spec = OPS.get(op)
    return spec.fmt if spec is not None else Format()
