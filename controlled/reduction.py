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

Footprints are sets of (object, mode). Objects are named by file page (= virtual page) index; a TLB entry by
(CPU, page): the VMA maps linearly (kernel_model.state), so an entry at virtual page ``va`` can only translate to
a folio of index ``va``. Modes: "r" read, "w" write, "i" invalidate a TLB entry (invalidations commute with each
other, not with reads or fills), "s" a plain store of a fresh value into a page: two of them commute up to the
renaming of store values that exhaustive search applies (Machine.canonical), so they do not conflict with each
other, only with reads and writes; "a" adding to a set of the oracle's ghost state (adds commute); "+" an update
of a reference count that cannot drop it to zero (get_page, or a put_page that does not free): additions commute;
"d" setting PG_dirty (set_page_dirty, folio_mark_dirty): setting a bit twice is setting it once. For "+" and "d" the paths ignore the results (Machine feeds None), so
the two orders end in the same state. What another thread may still do is over-approximated from the operations
left in its program.

A step's footprint may depend on the state it runs in (a store through a dirty TLB entry touches no PTE;
put_page that does not drop the last reference runs no freed_while_mapped check); Machine keys its memo of
persistent sets on exactly those facts (``footprint_context``).

The oracle's stale_tlb_access ghost state (kernel_model.oracle) is named per CPU and page: ("cov", cpu, page), a
translation a PTE clear covers (added by the clear, dropped by any invalidation or refill of that entry), and
("stale", cpu, page), one that outlived a completed shootdown (added when the clearing thread's wait_acks returns
or its call ends while it still covers something; read by every access through the TLB). A completion's
footprint depends on what the clearing thread still covers, which only that thread can add to: when it covers
nothing, the completion changes nothing and touches nothing.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Iterable

from kernel_model.ops import FOOTPRINTS, Footprint
from kernel_model.program import Op
from kernel_model.state import State
from kernel_model.steps import Step

_OPS_SENDING_IPIS = frozenset({"madvise_dontneed", "munmap", "mmap_fixed", "mmap", "msync", "mremap", "ftruncate",
                               "mprotect", "reclaim"})
# Operations of issue 15's races 3 and 4 whose footprints are not written yet (kernel_model.mremap, truncate,
# mprotect, reclaim). A scenario using any of them is explored without reduction (every step's and IPI's
# footprint unknown: every enabled transition is tried), which is sound; _OP_FOOTPRINTS has no entry for them.
OPAQUE_OPS = frozenset({"mremap", "ftruncate", "mprotect", "reclaim"})


def conflict(a: Footprint, b: "Footprint | FutureAt") -> bool:
    if b.__class__ is FutureAt:
        return b.conflicts(a)  # type: ignore[union-attr]
    for obj in a.keys() & b.keys():  # usually empty: the set intersection runs in C
        ma, mb = a[obj], b[obj]
        if ma == "w" or mb == "w" or ma != mb:  # a write, or two different modes ("s" and "s" commute)
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
                 ptes_per_table: int, sync_pte_clear: bool, uniprocessor: bool, anon: bool) -> None:
        self.up = uniprocessor
        self.anon = anon
        self.cpu_of = cpu_of
        self.ncpus = ncpus
        self.npages = npages
        self.ppt = ptes_per_table
        self.sync = sync_pte_clear
        # Without an evict operation every file page stays in the page cache (the setup puts them there), so a
        # fault never reads the disk or allocates: the fault path's footprint leaves those out.
        self.may_evict = any(_has_evict(program) for program in programs)
        self.opaque = any(op.kind in OPAQUE_OPS for program in programs for op in _flat(program))
        # No operation remaps an address: per-offset objects reached through address p are p's (ops.Shape).
        self.linear = not any(_remaps(program) for program in programs)
        self.all_pages = tuple(range(npages))
        self._ipis: list[Footprint] = []
        for c in range(ncpus):
            fp: Footprint = {("tlb", c, p): "i" for p in self.all_pages}
            for p in self.all_pages:
                fp[("cov", c, p)] = fp[("stale", c, p)] = "i"
            fp[("ipiq", c)] = "w"
            for t in range(len(programs)):
                fp[("ack", t)] = "+"
            self._ipis.append(fp)
        # What thread tid may touch from operation pc to the end of its program (future(tid, pc)), as one index per
        # thread rather than one footprint per operation: those would hold every page a hundred-thousand-store
        # program has still to touch, once per store (memory quadratic in pages; issue 12 point 6).
        self._futures: list[Future] = []
        # The CPUs whose TLB entries thread tid may drop or flush from operation pc on, or send a flush IPI to
        # (sends_to: the latter only); ipi_senders_from: whether it may still send flush IPIs. Consecutive
        # operations share one set while it does not change.
        self.invalidates: list[list[frozenset[int]]] = []
        self.sends_to: list[list[frozenset[int]]] = []
        self.ipi_senders_from: list[list[bool]] = []
        # For a thread whose program from operation pc on is plain stores: what those stores touch while each one
        # lands on a dirty TLB entry (x86: no page-table access at all, brief §2), the pages they go to, and
        # (hit_future) whether the thread's CPU holds such entries now. _store_tail[tid]: the first operation of
        # that all-stores tail (len(program): none).
        self._hit_futures: list[Future] = []
        self._store_tail: list[int] = []
        for tid, program in enumerate(programs):
            # Built backwards, one operation's footprint at a time (none is kept: a program of a million
            # stores would otherwise hold a million of them).
            future, hit = Future(), Future()
            invalidates, sends_to, senders = _Suffixes(len(program)), _Suffixes(len(program)), [False]
            tail = len(program)
            while self.linear and tail > 0 and program[tail - 1].kind == "store":
                tail -= 1
            for pc in range(len(program) - 1, -1, -1):
                op = program[pc]
                fp = self.op_footprint(tid, op)
                if self.up:
                    # UP: whoever holds a spinlock is not preempted, so every lock and unlock decides who may
                    # run at all: it depends on everything another thread still has to do.
                    _add(fp, ("preempt",), "r")
                future.add(pc, fp)
                invalidates.add(pc, fp, "invalidates")
                sends_to.add(pc, fp, "sends_to")
                senders.append(senders[-1] or op.kind in _OPS_SENDING_IPIS)
                if pc >= tail:
                    hit_fp: Footprint = {}
                    for p in self._pages(op):
                        hit_fp[("tlb", cpu_of[tid], p)] = "r"
                        hit_fp[("stale", cpu_of[tid], p)] = "r"  # the oracle's ghost: covered, then stale
                        hit_fp[("data", p)] = "s"
                    if self.up:
                        hit_fp[("preempt",)] = "r"
                    hit.add(pc, hit_fp)
            self._futures.append(future.done())
            self._hit_futures.append(hit.done())
            self._store_tail.append(tail)
            self.invalidates.append(invalidates.done())
            self.sends_to.append(sends_to.done())
            senders.reverse()
            self.ipi_senders_from.append(senders)

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
                    _add(fp, obj, mode)
            return fp
        of_kind = _OP_FOOTPRINTS.get(op.kind)
        if of_kind is not None:
            of_kind(self, fp, tid, op.kind, self._pages(op))
        return fp

    def _access_footprint(self, fp: Footprint, tid: int, kind: str, pages: tuple[int, ...]) -> None:
        """A store, load or counter: TLB hits, walks and the fault paths."""
        cpu = self.cpu_of[tid]
        _add(fp, ("sem", "mmap_lock"), "r")
        if self.may_evict or self.anon or not self.linear:
            _add(fp, ("alloc",), "w")
        # A file fault takes a reference (filemap_get_folio) and drops it again unless the PTE keeps it; that put
        # frees the folio only when eviction took it out of the page cache meanwhile. An anonymous fault may free
        # the page it lost a race with. Installing a PTE or filling a TLB entry reads whether the folio was freed
        # (the oracle's freed_while_mapped check).
        frees = self.anon or self.may_evict or not self.linear  # with remaps, an anonymous fault may happen
        data_mode = {"store": "s", "load": "r"}.get(kind, "w")
        for p in pages:
            _add(fp, ("tlb", cpu, p), "w")
            _add(fp, ("cov", cpu, p), "w")  # fills and faults drop what a clear covered
            _add(fp, ("stale", cpu, p), "w")  # hits read it; fills and faults drop it
            for obj in ("pte", "ptebits"):
                _add(fp, (obj, p), "w")
            _add(fp, ("vma", p), "r")
        for p in self._reached(pages):
            _add(fp, ("data", p), data_mode)
            for obj in ("lock", "map"):
                _add(fp, (obj, p), "w")
            _add(fp, ("dirty", p), "d")  # fault paths only ever set PG_dirty
            _add(fp, ("ref", p), "w" if frees else "+")
            _add(fp, ("freed", p), "w" if frees else "r")
            _add(fp, ("pc", p), "w" if frees else "r")
            if self.may_evict:
                _add(fp, ("disk", p), "r")
        self._ptl_sections(fp, pages)  # the fault paths take the PTL (do_wp_page, finish_fault)

    def _unmap_footprint(self, fp: Footprint, tid: int, kind: str, pages: tuple[int, ...]) -> None:
        """madvise(MADV_DONTNEED) zaps; munmap and mmap(MAP_FIXED) also change the VMAs and i_mmap links (mmap
        only those: its footprint is over-approximated by mmap_fixed's)."""
        self._zap_footprint(fp, tid, pages)
        if kind != "madvise_dontneed":
            _add(fp, ("sem", "mmap_lock"), "w")
            _add(fp, ("sem", "i_mmap_rwsem"), "w")
            for p in pages:
                _add(fp, ("vma", p), "w")
            for p in self._reached(pages):  # the offsets unlinked, and those linked
                _add(fp, ("imap", p), "w")
        elif not self.linear:
            for p in pages:
                _add(fp, ("vma", p), "r")  # madvise_walk_vmas' find_vma

    def _msync_footprint(self, fp: Footprint, tid: int, kind: str, pages: tuple[int, ...]) -> None:
        _add(fp, ("sem", "i_mmap_rwsem"), "r")
        self._flush_footprint(fp, tid)
        for p in pages:
            for obj in ("lock", "wb", "dirty", "disk"):
                _add(fp, (obj, p), "w")
            for obj in ("pc", "map", "imap", "data", "freed"):  # freed: folio_mkclean's set_pte_at check
                _add(fp, (obj, p), "r")
        mapped_at = tuple(self._reached(pages))  # folio_mkclean's rmap walk: the addresses mapping them
        for p in mapped_at:
            for obj in ("pte", "ptebits"):
                _add(fp, (obj, p), "w")
        self._ptl_sections(fp, mapped_at)

    def _evict_footprint(self, fp: Footprint, tid: int, kind: str, pages: tuple[int, ...]) -> None:
        for p in pages:
            _add(fp, ("pc", p), "w")
            _add(fp, ("ref", p), "w")
            _add(fp, ("freed", p), "w")
            for obj in ("lock", "dirty", "wb", "map", "data", "disk"):
                _add(fp, (obj, p), "r")
        for c in range(self.ncpus):
            for p in self._reached(pages):  # the freed_while_mapped check of an evicted folio
                _add(fp, ("tlb", c, p), "r")

    def _flush_footprint(self, fp: Footprint, tid: int) -> None:
        """Flushes of any range (over-approximated by every page) on this CPU, IPIs to the others and the acks
        they count; and the PTE clears before them, which cover translations on every CPU, and the completions
        that make them stale."""
        cpu = self.cpu_of[tid]
        _add(fp, ("ack", tid), "+")
        for c in range(self.ncpus):
            if c != cpu:
                _add(fp, ("ipiq", c), "w")
            if c == cpu or self.sync:
                for p in self.all_pages:
                    _add(fp, ("tlb", c, p), "i")
            for p in self.all_pages:
                _add(fp, ("cov", c, p), "w")
                _add(fp, ("stale", c, p), "w")

    def _zap_footprint(self, fp: Footprint, tid: int, pages: tuple[int, ...]) -> None:
        _add(fp, ("sem", "mmap_lock"), "r")
        _add(fp, ("flushpend",), "w")  # tlb_gather_mmu / tlb_finish_mmu: mm->tlb_flush_pending
        self._flush_footprint(fp, tid)
        for p in pages:
            for obj in ("pte", "ptebits"):
                _add(fp, (obj, p), "w")
        folios = tuple(self._reached(pages))  # the folios the zapped PTEs map
        for p in folios:
            for obj in ("map", "ref", "freed"):
                _add(fp, (obj, p), "w")
            _add(fp, ("dirty", p), "d")  # zap_pte_range only sets PG_dirty (from a dirty PTE)
        self._ptl_sections(fp, pages)
        for c in range(self.ncpus):
            for p in self._reached(folios):
                _add(fp, ("tlb", c, p), "r")  # put_page's freed_while_mapped check reads every TLB

    def _ptl_sections(self, fp: Footprint, pages: tuple[int, ...]) -> None:
        """Taking the PTLs of these pages' tables; each release checks the rmap of every page in its table."""
        for t in self._tables(pages):
            _add(fp, ("ptl", t), "w")
            table = range(t * self.ppt, min(self.npages, (t + 1) * self.ppt))
            for p in table:
                _add(fp, ("pte", p), "r")
            for p in self._reached(table):
                _add(fp, ("map", p), "r")

    def step_footprint(self, tid: int, step: Step, index_of: list[int], s: State,
                       covering: frozenset = frozenset()) -> Footprint | None:
        """What one step touches in state ``s``, including what the oracle's check of that step reads.
        ``index_of`` maps pfn to file page index in ``s``; ``covering``: for a completion (wait_acks, or a step
        after which the call may return), the oracle's covered translations it would turn stale. Depends on
        ``s`` only through footprint_context."""
        if self.opaque:
            return None
        op, a = step.op, step.args
        cpu = self.cpu_of[tid]
        fp = self._step_footprint(tid, cpu, op, a, index_of, s)
        if covering and fp is not None:
            for _, c, va in covering:
                fp[("cov", c, va)] = "w"
                fp[("stale", c, va)] = "w" if fp.get(("stale", c, va), "a") != "a" else "a"
        return fp

    def _step_footprint(self, tid: int, cpu: int, op: str, a: tuple, index_of: list[int],
                        s: State) -> Footprint | None:
        fn = FOOTPRINTS.get(op)
        if fn is None:
            return None  # an action the op table gives no footprint is never explored alone
        return fn(self, tid, cpu, a, index_of, s)

    def future(self, tid: int, pc: int) -> "FutureAt":
        return self._futures[tid].at(pc)

    def hit_future(self, tid: int, pc: int, step: Step, s: State) -> "FutureAt | None":
        """What thread ``tid`` (at operation ``pc``, about to do ``step``) may touch for as long as nobody drops
        or flushes its CPU's TLB entries: when it is a plain-store thread about to store and every page it will
        still store to has a dirty entry, only those entries and the pages' data. None otherwise."""
        if pc < self._store_tail[tid] or step.op != "store_tlb":
            return None
        tlb = s.tlbs[self.cpu_of[tid]]
        hit = self._hit_futures[tid]
        for p in hit.pages_from(pc):
            e = tlb.get(p)
            if e is None or not (e.writable and e.dirty):
                return None
        return hit.at(pc)

    def ipi(self, cpu: int) -> Footprint:
        """A CPU's flush IPI handler, both its steps: it invalidates that CPU's TLB (any range) and takes a
        request off its queue. (Built once per CPU: callers only read it.)"""
        return self._ipis[cpu]

    def ipi_step(self, cpu: int, invalidates: bool, initiator: int) -> Footprint | None:
        """One step of it: the invalidation (as ipi()), or the ack: it decrements the initiator's count of
        acks pending (which commutes with the other acks and with a send adding to it) and takes its own request
        off the queue (which commutes with sends appending to it and with the other requests' steps). The only
        agent it can enable is the initiator waiting in wait_acks, which cannot move before it:
        Reducer._ipi_footprint counts that agent's future as moot."""
        if self.opaque:
            return None
        return self._ipis[cpu] if invalidates else {("ack", initiator): "+"}

    def footprint_context(self, tid: int, pc: int, step: Step, s: State, covering: frozenset = frozenset()) -> object:
        """The part of ``s`` that step_footprint reads for this step of thread ``tid`` at operation ``pc``, and
        for a store whether hit_future holds; for a completion, ``covering`` (see step_footprint); None for steps
        outside CONTEXT_OPS."""
        op = step.op
        if op == "store_tlb":
            return s.tlbs[self.cpu_of[tid]].get(step.args[0]), self.hit_future(tid, pc, step, s) is not None
        if op == "put_page":
            return s.folios[step.args[0]].refcount <= 1
        return covering


def _flat(ops: list[Op]) -> list[Op]:
    return [inner for op in ops for inner in (_flat(list(op.body)) if op.kind == "loop" else [op])]
# The footprint of each user-level operation kind (kernel_model.program.OP_KINDS; "loop" is its body's).
_OP_FOOTPRINTS = {
    "store": Footprints._access_footprint, "load": Footprints._access_footprint,
    "counter": Footprints._access_footprint, "madvise_dontneed": Footprints._unmap_footprint,
    "munmap": Footprints._unmap_footprint, "mmap_fixed": Footprints._unmap_footprint,
    "mmap": Footprints._unmap_footprint,
    "msync": Footprints._msync_footprint, "evict": Footprints._evict_footprint,
}


def _remaps(ops: "list[Op] | tuple[Op, ...]") -> bool:
    return any(op.kind in ("mmap", "mremap") or op.target is not None or (op.kind == "loop" and _remaps(op.body))
               for op in ops)


def _has_evict(ops: list[Op]) -> bool:
    return any(op.kind == "evict" or (op.kind == "loop" and _has_evict(list(op.body))) for op in ops)


class Future:
    """A thread's footprints from each of its operations to the end of its program, in memory linear in the
    objects it touches (not in operations times objects). Seen from the end, the combined mode of an object is
    that of its last touch until an earlier touch of another mode makes it "w" for good (``_add``), so three
    numbers per object answer every ``pc``: its last touch, that touch's mode, and the last operation from
    which on the combined mode is "w". Built by ``add`` from the last operation back to the first."""

    __slots__ = ("_modes", "_last")

    def __init__(self) -> None:
        self._modes: dict[tuple, list] = {}  # object -> [last touch, its mode, last pc where combined is "w"]
        self._last: tuple[list[int], list[tuple]] = ([], [])

    def add(self, pc: int, fp: Footprint) -> None:
        """Operation ``pc``'s footprint; operations are added in decreasing ``pc``."""
        modes = self._modes
        for obj, mode in fp.items():
            entry = modes.get(obj)
            if entry is None:
                modes[obj] = [pc, mode, pc if mode == "w" else -1]
            elif entry[2] < 0 and mode != entry[1]:
                entry[2] = pc  # from here back the combined mode is "w"

    def done(self) -> "Future":
        # Objects by their last touch, latest first: those touched at or after pc are a prefix of this list.
        by_last = sorted(((e[0], obj) for obj, e in self._modes.items()), key=lambda t: -t[0])
        self._last = ([-t[0] for t in by_last], [t[1] for t in by_last])
        return self

    def mode(self, obj: tuple, pc: int) -> str | None:
        entry = self._modes.get(obj)
        if entry is None or pc > entry[0]:
            return None
        return "w" if pc <= entry[2] else entry[1]

    def at(self, pc: int) -> "FutureAt":
        return FutureAt(self, pc)

    def pages_from(self, pc: int) -> list[int]:
        """The pages of the ("data", page) objects touched at or after operation ``pc``."""
        neg, objs = self._last
        return [obj[1] for obj in objs[:bisect_right(neg, -pc)] if obj[0] == "data"]


class FutureAt:
    """What a thread may touch from operation ``pc`` on: answers ``get`` like a Footprint, without building one."""

    __slots__ = ("future", "pc")

    def __init__(self, future: Future, pc: int) -> None:
        self.future = future
        self.pc = pc

    def get(self, obj: tuple, default: str | None = None) -> str | None:
        mode = self.future.mode(obj, self.pc)
        return default if mode is None else mode

    def conflicts(self, fp: Footprint) -> bool:
        """conflict(fp, this future), asking only about fp's objects (a step's footprint is small)."""
        mode_of = self.future.mode
        pc = self.pc
        for obj, ma in fp.items():
            mb = mode_of(obj, pc)
            if mb is not None and (ma == "w" or mb == "w" or ma != mb):
                return True
        return False


class _Suffixes:
    """invalidates or sends_to of one thread for each operation and one past the end, judged on the modes combined
    from that operation on (as ``_add`` combines them); consecutive operations share one set while it does not
    grow."""

    def __init__(self, n: int) -> None:
        self.sets: list[frozenset[int]] = [frozenset()] * (n + 1)
        self.acc: Footprint = {}  # combined modes of TLB entries only
        self.cpus: set[int] = set()

    def add(self, pc: int, fp: Footprint, what: str) -> None:
        for obj, mode in fp.items():
            if obj[0] == "ipiq":
                self.cpus.add(obj[1])
            elif obj[0] == "tlb" and what == "invalidates":
                _add(self.acc, obj, mode)
                if self.acc[obj] in "iw":
                    self.cpus.add(obj[1])
        later = self.sets[pc + 1]
        self.sets[pc] = later if len(self.cpus) == len(later) else frozenset(self.cpus)

    def done(self) -> list[frozenset[int]]:
        return self.sets
