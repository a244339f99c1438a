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

from controlled.op_footprints import (WRITE_PROTECTED_AFTER, OpFootprints, add_mode as _add, flat as _flat,
                                      protected_pages)
from kernel_model.ops import FOOTPRINTS, Footprint
from kernel_model.program import Op
from kernel_model.state import State
from kernel_model.steps import Step

_OPS_SENDING_IPIS = frozenset({"madvise_dontneed", "munmap", "mmap_fixed", "mmap", "msync", "mremap", "ftruncate",
                               "mprotect", "reclaim"})
# Operations that take file pages out of the page cache: with one of them a fault may have to read a page in
# (allocating a folio, reading the disk) and a page may be freed.
_OPS_DROPPING_PAGES = frozenset({"evict", "ftruncate", "reclaim"})
# Operations without footprints (none today): a scenario using one is explored without reduction (every step's
# and IPI's footprint unknown: every enabled transition is tried), which is sound. An operation kind without an
# entry in controlled.op_footprints' table must be listed here.
OPAQUE_OPS: frozenset[str] = frozenset()


def conflict(a: Footprint, b: "Footprint | FutureAt") -> bool:
    if b.__class__ is FutureAt:
        return b.conflicts(a)  # type: ignore[union-attr]
    for obj in a.keys() & b.keys():  # usually empty: the set intersection runs in C
        ma, mb = a[obj], b[obj]
        if ma == "w" or mb == "w" or ma != mb:  # a write, or two different modes ("s" and "s" commute)
            return True
    return False


class Footprints(OpFootprints):
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
        kinds = {op.kind for program in programs for op in _flat(program)}
        # Without an evict operation (or another that drops pages) every file page stays in the page cache (the
        # setup puts them there), so a fault never reads the disk or allocates: the fault path's footprint leaves
        # those out.
        self.may_evict = bool(kinds & _OPS_DROPPING_PAGES)
        self.opaque = bool(kinds & OPAQUE_OPS)
        # Per thread, the pages its mprotect calls write-protect (what the write_protected note reads).
        self._protects = [protected_pages(program, npages) for program in programs]
        # No operation remaps an address: per-offset objects reached through address p are p's (ops.Shape).
        self.linear = not any(_remaps(program) for program in programs)
        # An operation may take an address's VMA away (munmap): madvise's VMA walk then reads it (kernel_model.memory
        # find_vmas).
        self.unmaps = "munmap" in kinds
        self.all_pages = tuple(range(npages))
        self._ipis: list[Footprint] = []
        for c in range(ncpus):
            fp: Footprint = {("tlb", c, p): "i" for p in self.all_pages}
            for p in self.all_pages:
                fp[("cov", c, p)] = fp[("stale", c, p)] = "i"
            for t in range(len(programs)):
                fp[("ipiq", c, t)] = "w"
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
        if fp is not None and (step.fn, op) == WRITE_PROTECTED_AFTER:
            self._write_protected(fp, self._protects[tid])  # its transition emits the write_protected note
        if covering and fp is not None:
            for _, c, va in covering:
                fp[("cov", c, va)] = "w"
                fp[("stale", c, va)] = "w" if fp.get(("stale", c, va), "a") != "a" else "a"
        return fp

    def transition_footprint(self, tid: int, steps: tuple[Step, ...], index_of: list[int], s: State,
                             coverings: tuple[frozenset, ...]) -> Footprint | None:
        """What a thread's transition touches: its step's footprint, or the union of its steps' when it runs an
        acquire and the step after it (controlled.lock_joins; the acquire changes nothing the second step's
        footprint reads, so both are taken in ``s``). ``coverings``: each step's ``covering``."""
        if len(steps) == 1:
            return self.step_footprint(tid, steps[0], index_of, s, coverings[0])
        out: Footprint = {}
        for step, covering in zip(steps, coverings):
            fp = self.step_footprint(tid, step, index_of, s, covering)
            if fp is None:
                return None
            for obj, mode in fp.items():
                _add(out, obj, mode)
        return out

    def transition_context(self, tid: int, pc: int, steps: tuple[Step, ...], s: State,
                           coverings: tuple[frozenset, ...]) -> object:
        """footprint_context of a thread's transition: its step's, or each of its steps' (see
        transition_footprint)."""
        if len(steps) == 1:
            return self.footprint_context(tid, pc, steps[0], s, coverings[0])
        return tuple([self.footprint_context(tid, pc, step, s, covering) for step, covering in zip(steps, coverings)])

    def _step_footprint(self, tid: int, cpu: int, op: str, a: tuple, index_of: list[int],
                        s: State) -> Footprint | None:
        fn = FOOTPRINTS.get(op)
        if fn is None:
            return None  # an action the op table gives no footprint is never explored alone
        return fn(self, tid, cpu, a, index_of, s)

    def future(self, tid: int, pc: int) -> "FutureAt":
        return self._futures[tid].at(pc)

    def may_hit_future(self, tid: int, pc: int, step: Step) -> bool:
        """Whether hit_future may be other than None for thread ``tid`` at operation ``pc`` about to do ``step``
        (a plain-store thread about to store), whatever the state."""
        return pc >= self._store_tail[tid] and step.op == "store_tlb"

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

    def ipi_step(self, cpu: int, invalidates: bool, initiator: int, start: int, end: int) -> Footprint | None:
        """One transition of the handler of ``initiator``'s request to flush [start, end) on ``cpu``.
        - The invalidation (flush_tlb_func; with the ack after it, on a kernel that acks last): it invalidates
          that range of the CPU's TLB only, and the oracle's covered and stale translations there (its
          ipi_flush check is on that range), and takes the request out of the initiator's slot of the queue.
        - The ack alone (csd_unlock first: the ack_before_invalidate mutant): it decrements the initiator's
          count of acks pending (which commutes with the other acks and with a send adding to it) and advances
          its own request (which commutes with the other slots' sends and handlers).
        The only agent either can enable is the initiator waiting in wait_acks, which cannot move before the
        ack: Reducer._ipi_signature counts that agent's future as moot."""
        if self.opaque:
            return None
        if not invalidates:
            return {("ack", initiator): "+"}
        fp: Footprint = {("ipiq", cpu, initiator): "w", ("ack", initiator): "+"}
        for p in range(max(0, start), min(end, self.npages)):
            fp[("tlb", cpu, p)] = fp[("cov", cpu, p)] = fp[("stale", cpu, p)] = "i"
        return fp

    def footprint_context(self, tid: int, pc: int, step: Step, s: State, covering: frozenset = frozenset()) -> object:
        """The part of ``s`` that step_footprint reads for this step of thread ``tid`` at operation ``pc``, and
        for a store whether hit_future holds; for a completion, ``covering`` (see step_footprint); None for steps
        outside CONTEXT_OPS."""
        op = step.op
        if op == "store_tlb":
            ctx: object = (s.tlbs[self.cpu_of[tid]].get(step.args[0]), self.hit_future(tid, pc, step, s) is not None)
        elif op == "put_page":
            ctx = s.folios[step.args[0]].refcount <= 1
        else:
            return covering
        return (ctx, covering) if covering else ctx  # (a block's last step may carry one: Reducer.coverings)


def _remaps(ops: "list[Op] | tuple[Op, ...]") -> bool:
    return any(op.kind in ("mmap", "mremap") or op.target is not None or (op.kind == "loop" and _remaps(op.body))
               for op in ops)


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
