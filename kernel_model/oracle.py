"""The checker (kernel brief §8). It judges what happened: the machine state and the event stream.

It never sees the run's configuration (which kernel order, which machine, which deliberate bug). Its only memory
("ghost state") is what it learned from events: which delayed rmap entries a zap has queued and not yet removed,
which TLB translations a shootdown has covered ("covered": a PTE cleared, and that CPU has not invalidated the
address since) or has completed over ("stale"), which writable translations outlived an mprotect ("readonly"), and
the values the expectations remember. Every part of it is read by a check: the search's state key holds it whole
(Oracle.key), so a part nothing reads would only multiply states (the dirty bits "in transit" between a
PTE or PG_dirty and a path's local variable went with the online lost_dirty_data check, session 21).

Invariants, by the names reports use:
- ``lost_dirty_data``: data is lost when it is dropped, not while it is only at risk. Evicting a page that differs
  from the disk loses it at once; at quiescence, a page that differs from the disk must be dirty where the next
  writeback finds it (PG_dirty or a dirty PTE: the brief's §8.1). A page that is clean and differs from the disk
  for a while and is then dirtied again (a later store) or discarded (ftruncate) has lost nothing in that run:
  the brief's online variant counts "an uncovered store never followed by a re-dirty" only, and the window is a
  loss only if reclaim drops the page inside it, which a scenario shows with a reclaim or evict operation. Judged
  at every state instead, the verdict would depend on the search: partial-order reduction keeps every end state
  but not every state on the way (fuzz found both searches disagreeing on such a window, session 20).
  A page at or past i_size is not file data any more (ftruncate moved the end first and will delete it): what
  it holds is discarded, not lost.
- ``negative_mapcount``: after every rmap removal, immediate and delayed.
- ``freed_while_mapped``: when a page's last reference goes, no PTE and no TLB may still map it; no PTE may be
  installed for (set_pte_at), nor a TLB entry filled from (walk_fill), a page already freed; no store or load
  through a TLB may land in a freed frame; and no path may lock a folio already freed (folio_lock: it held no
  reference of its own, and ->page_mkwrite's recheck of folio->mapping would read a freed struct folio;
  write_cache_pages excepted, whose lookup references are not modelled).
- ``stale_tlb_access``: no store or load goes through a TLB translation after a shootdown covering it has
  completed: the translation was cached before its PTE was cleared, that CPU has not invalidated the address
  since, and the thread that cleared it has either seen every ack of a flush covering the address (its
  wait_acks returned) or returned from the system call. A thread that finds the PTE already cleared (pte_none)
  answers for that clear as well (two MADV_DONTNEEDs of one range: the second must not return before the first's
  flush). A translation refilled after the invalidation is fresh.
  Also: no store goes through a writable translation that a CPU already held when an ``mprotect(PROT_READ)``
  covering its address returned (the call's ``write_protected`` note, just before it returns), unless that CPU
  invalidated or refilled the entry since (3ea277194daa: reclaim's deferred flush let one outlive mprotect).
- ``delayed_outside_active_batch``: tlb_flush_rmaps must walk every batch that holds a pending delayed entry.
- ``delayed_rmap_after_unlock``: a zap releases its PTL only after its delayed rmap removals are done.
- ``rmap_pte_mismatch``: outside its PTL section, a page's mapcount equals the PTEs that map it.
- ``expect_failed``: an end-of-run check the scenario states (``[[expect]]``, kernel_model.program.Expect) does
  not hold once every thread has finished and no IPI is pending. ``file_holds_last_store``: what a final
  msync, a drop of clean cached pages and a read-back would give for the file page the thread's last store (to
  that page) landed in equals the value that store left there (it holds if the thread never stored there).
  The oracle learns that value from the store's event (the page's contents right after it: a counter's
  increment has no value of its own).
- ``hang``: reported by the runtime when nothing can run but threads are unfinished.
"""

from __future__ import annotations

from kernel_model.events import Event, Violation
from kernel_model.ops import MAY_END_COVERING_CALL, observed_ops
from kernel_model.state import FREE, Folio, State

INVARIANTS = (
    "lost_dirty_data", "negative_mapcount", "freed_while_mapped", "delayed_outside_active_batch",
    "delayed_rmap_after_unlock", "rmap_pte_mismatch", "stale_tlb_access", "expect_failed", "hang",
)

# Events after which a PTE or a TLB entry maps a frame, or a path holds its folio locked: it must not be one
# already freed (freed_while_mapped).
_MAPS_PFN = frozenset({"set_pte_at", "walk_fill", "folio_lock"})
# By event kind, the ops Oracle.observe acts on: the controlled machine does not build the other events unless
# it records them (observe returns [] and changes nothing for them; tests/test_oracle_observed.py checks the lists).
# The ops' entries in kernel_model.ops say which (``observed``); notes are not ops, so they are listed here.
OBSERVED_OPS: dict[str, frozenset[str]] = {
    "step": observed_ops("step", tlb=False),
    "note": frozenset({"queue", "walk", "emptied", "end", "write_protected"}),
    "ipi": observed_ops("ipi", tlb=False),
}
# TLB events the oracle needs only while it tracks a covered or stale translation, or (a store or load) when the
# access goes through an entry for a freed frame: Oracle.wants says when (the op table's ``observed_tlb``). The
# machine builds them only then, since a store is the commonest step of all.
TLB_OPS: dict[str, frozenset[str]] = {
    "step": observed_ops("step", tlb=True),
    "note": frozenset(),
    "ipi": observed_ops("ipi", tlb=True),
}
assert _MAPS_PFN <= OBSERVED_OPS["step"]


class Oracle:
    __slots__ = ("delayed", "covered", "stale", "readonly", "expect", "last")

    def __init__(self, expect: tuple[tuple[str, int, int, str], ...] = ()) -> None:
        """``expect``: the scenario's end-of-run checks as (kind, thread id, page, thread name)."""
        self.delayed: tuple[tuple[int, int, int], ...] = ()  # (tid, pfn, batch id), in queue order
        # (tid, cpu, va): tid cleared va's PTE, and cpu may still hold a translation for va cached before that.
        self.covered: frozenset[tuple[int, int, int]] = frozenset()
        # (cpu, va, tid): such a translation outlived tid's completed shootdown: using it is stale_tlb_access.
        self.stale: frozenset[tuple[int, int, int]] = frozenset()
        # (cpu, va, tid): a writable translation cpu held when tid's mprotect(PROT_READ) of va returned: a store
        # through it is stale_tlb_access (loads stay allowed).
        self.readonly: frozenset[tuple[int, int, int]] = frozenset()
        self.expect = expect
        # Per expectation: (file index, value) that the thread's last store to the page left, or None. The
        # value is a store value: Machine.canonical renames it with the page contents.
        self.last: tuple[tuple[int, int] | None, ...] = (None,) * len(expect)

    def key(self) -> tuple:
        return (self.delayed, self.covered, self.stale, self.readonly, self.last)

    def restore(self, key: tuple) -> None:
        self.delayed, self.covered, self.stale, self.readonly, self.last = key

    def wants(self, s: State, cpu: int, op: str, args: tuple) -> bool:
        """Must a TLB event (TLB_OPS) be shown to observe? Only while a translation is covered or stale, or for
        a store or load through an entry (still cached after the step) whose frame is freed."""
        if self.covered or self.stale or self.readonly or (self.expect and op == "store_tlb"):
            return True
        if op == "store_tlb" or op == "load_tlb":
            entry = s.tlbs[cpu].get(args[0])
            return entry is not None and s.folios[entry.pfn].freed
        return False

    def covering(self, tid: int, start: int = 0, end: int | None = None) -> frozenset[tuple[int, int, int]]:
        """The covered translations of ``tid`` (in [start, end) when given): what its completion would mark."""
        return frozenset(c for c in self.covered if c[0] == tid and start <= c[2] and (end is None or c[2] < end))

    # --- event-driven checks --------------------------------------------------------------------------------
    def observe(self, s: State, ev: Event) -> list[Violation]:
        op = ev.op
        if ev.kind == "step":
            if op in TLB_OPS["step"]:
                return self._observe_tlb(s, ev, op)
            if op == "i_size_write":
                return self._forget_past_end(ev.args[0])
            return self._observe_step(s, ev, op)
        if ev.kind == "note":
            return self._observe_note(s, ev, op)
        if op == "ipi_flush":
            self._invalidate(ev.cpu, range(ev.args[0], ev.args[1]))
        return []

    # --- shootdowns: stale_tlb_access ------------------------------------------------------------------------
    def _observe_tlb(self, s: State, ev: Event, op: str) -> list[Violation]:
        cpu = ev.cpu
        if op == "store_tlb" or op == "load_tlb":
            return self._observe_access(s, ev, op)
        if op == "walk_fill":
            if ev.result:
                self._invalidate(cpu, (ev.args[0],))  # refilled from the PTE as it is now: fresh
        elif op == "flush_tlb_local":
            self._invalidate(cpu, range(ev.args[0], ev.args[1]))
        else:  # wait_acks: every target acked the flush of [start, end)
            self._complete(self.covering(ev.tid, ev.args[0], ev.args[1]))
        return []

    def _observe_access(self, s: State, ev: Event, op: str) -> list[Violation]:
        """A user store or load through the TLB: stale_tlb_access, freed_while_mapped, and what an expectation
        remembers."""
        cpu, va = ev.cpu, ev.args[0]
        if ev.result == "filled":  # a uniprocessor's store that walked first: a fresh translation, as walk_fill's
            self._invalidate(cpu, (va,))
        hit = ev.result in ("stored", "filled") if op == "store_tlb" else ev.result is not None
        if op == "store_tlb" and ev.result == "fault":
            self._invalidate(cpu, (va,))  # the faulting access dropped the entry
        if not hit:
            return []
        if self.expect and op == "store_tlb":
            self._remember_store(s, ev)
        out = [_stale_access(op, cpu, va, t) for c, v, t in self.stale if c == cpu and v == va][:1]
        if op == "store_tlb" and not out and self.readonly:
            out = self._stored_after_mprotect(cpu, va)
        return out + _freed_access(s, op, cpu, va)

    def _remember_store(self, s: State, ev: Event) -> None:
        entry = s.tlbs[ev.cpu][ev.args[0]]
        folio = s.folios[entry.pfn]
        landed = (-1 if folio.anon else folio.index, folio.data)
        if not folio.anon and folio.index >= s.i_size:
            landed = None  # past EOF (i_size_write came first): discarded, never read back, nothing to expect
        self.last = tuple(landed if e[1] == ev.tid and e[2] == ev.args[0] else old
                          for e, old in zip(self.expect, self.last))

    def _forget_past_end(self, size: int) -> list[Violation]:
        """ftruncate's i_size_write: a store remembered in a page the new end leaves out was discarded
        (_remember_store), and the page reads a hole if the file grows over it again."""
        if self.expect:
            self.last = tuple(None if x is not None and x[0] >= size else x for x in self.last)
        return []

    def _cover(self, s: State, tid: int, va: int, sync: bool) -> None:
        """tid cleared va's PTE: every CPU that holds a translation for va now holds one cached before. s390's
        IPTE (``sync``) invalidates it on every CPU in the same step.

        A CPU that holds none for va is not covered: its next translation for va comes from a walk of the PTE as
        it is then (walk_fill, or a uniprocessor's store that walks), which is fresh (_invalidate), so a mark of
        it would never be read by the one check that reads these marks, an access through (cpu, va)
        (_observe_access: a hit needs an entry). It would only record whether the CPU had dropped its entry
        before or after the clear, a history no check reads: it split the search's states for nothing, widened
        what the reduction takes a completion to touch (controlled.coverings) and kept a release from joining
        the call's end (Machine._settle_joins). Without such marks (session 21, bfs): mprotect_reclaim SMP 1,538
        -> 941 states, writable_clean 5,605 -> 3,394, ladder 3,273 -> 3,133, every verdict the same
        (scripts/explore_fingerprint.py). So every mark of covered, stale and readonly names a (cpu, va) the
        CPU's TLB holds, and goes with the entry (every event that drops or refills one is shown while a mark
        exists: Oracle.wants). The clear's footprint already orders it against those events (its ("cov", cpu,
        va) "a" against their "i" or "w": kernel_model.ops), so which CPUs it covers is the same whichever way
        independent steps are ordered."""
        if sync:
            self._invalidate_everywhere(va)
        else:
            self.covered = self.covered | {(tid, cpu, va) for cpu, tlb in enumerate(s.tlbs) if va in tlb}

    def _observe_clear(self, s: State, ev: Event) -> None:
        """A zap's ptep_get_and_clear_full: the PTE it took covers every CPU's cached translation; one it found
        already cleared (pte_none) is adopted from the thread that cleared it."""
        tid, va, sync = ev.tid, ev.args[0], bool(ev.args[1])
        if ev.result is not None:
            self._cover(s, tid, va, sync)
        elif sync:
            self._invalidate_everywhere(va)
        elif self.covered:
            self._adopt(tid, va)

    def _adopt(self, tid: int, va: int) -> None:
        """tid found va's PTE already cleared (pte_none) by another thread whose shootdown may still be pending.
        A call that zaps va answers for it too (MADV_DONTNEED: once it returns, the range is gone): a translation
        that clear covers is stale once tid's call returns or tid's flush of va completes (99baac21e458)."""
        self.covered = self.covered | {(tid, cpu, v) for _, cpu, v in self.covered if v == va}

    def _invalidate(self, cpu: int, vas) -> None:
        if self.covered:
            self.covered = frozenset(c for c in self.covered if c[1] != cpu or c[2] not in vas)
        if self.stale:
            self.stale = frozenset(x for x in self.stale if x[0] != cpu or x[1] not in vas)
        if self.readonly:
            self.readonly = frozenset(x for x in self.readonly if x[0] != cpu or x[1] not in vas)

    def _invalidate_everywhere(self, va: int) -> None:
        if self.covered:
            self.covered = frozenset(c for c in self.covered if c[2] != va)
        if self.stale:
            self.stale = frozenset(x for x in self.stale if x[1] != va)
        if self.readonly:
            self.readonly = frozenset(x for x in self.readonly if x[1] != va)

    def _complete(self, done: frozenset[tuple[int, int, int]]) -> None:
        """A shootdown (or the call that cleared the PTEs) completed: what it still covers is stale now."""
        if done:
            self.covered = self.covered - done
            self.stale = self.stale | {(cpu, va, tid) for tid, cpu, va in done}

    def _observe_step(self, s: State, ev: Event, op: str) -> list[Violation]:
        tid = ev.tid
        out: list[Violation] = []
        if op == "ptep_get_and_clear_full":
            self._observe_clear(s, ev)
        elif op == "page_remove_rmap":
            pfn, delayed = ev.args
            if delayed:
                self._drop_delayed(tid, pfn)
            if ev.result < 0:
                out.append(Violation("negative_mapcount",
                                     f"page_remove_rmap left pfn {pfn} with mapcount {ev.result}", pfn))
        elif op == "spin_unlock":
            pending = [d for d in self.delayed if d[0] == tid]
            if pending:
                pfns = ", ".join(str(d[1]) for d in pending)
                out.append(Violation("delayed_rmap_after_unlock",
                                     f"PTL {ev.args[0]} released with delayed rmap removal pending for pfn {pfns}",
                                     pending[0][1]))
            out.extend(_rmap_mismatches(s, range(ev.args[0] * s.ptes_per_table,
                                                 min(len(s.ptes), (ev.args[0] + 1) * s.ptes_per_table))))
        elif op in _MAPS_PFN:
            out.extend(_mapped_after_free(s, ev))
        elif op == "put_page":
            if ev.result == 0:
                out.extend(_freed_while_mapped(s, ev.args[0]))
        elif op == "evict_folio" and ev.result is not None:
            out.extend(_evicted(s, ev.result))
        return out

    def _observe_note(self, s: State, ev: Event, op: str) -> list[Violation]:
        tid = ev.tid
        if op == "write_protected":
            self._write_protected(s, tid, *ev.args)
            return []
        if op == "queue" and ev.fn == "__tlb_remove_page":
            pfn, delay, batch = ev.args
            if delay:
                self.delayed = self.delayed + ((tid, pfn, batch),)
        elif op == "walk" and ev.fn == "tlb_flush_rmaps":
            walked = ev.args[0]
            missed = [d for d in self.delayed if d[0] == tid and d[2] not in walked]
            if missed:
                where = ", ".join(f"pfn {d[1]} in batch {d[2]}" for d in missed)
                return [Violation("delayed_outside_active_batch",
                                  f"tlb_flush_rmaps walks batches {list(walked)} but delayed entries sit elsewhere: "
                                  f"{where}", missed[0][1])]
        elif op == "emptied":
            self.delayed = tuple(d for d in self.delayed if d[0] != tid)
        elif op == "end":
            # The operation's paths have returned: what it cleared and left covered is stale from now on.
            if self.covered:
                self._complete(self.covering(tid))
        return []

    def _stored_after_mprotect(self, cpu: int, va: int) -> list[Violation]:
        return [Violation("stale_tlb_access", f"CPU {cpu} stored through its writable TLB entry for va {va} after "
                                              f"thread {t}'s mprotect(PROT_READ) of va {va} had returned", None)
                for c, v, t in self.readonly if c == cpu and v == va][:1]

    def _write_protected(self, s: State, tid: int, start: int, end: int) -> None:
        """mprotect(PROT_READ) of [start, end) is about to return: a writable translation still cached now was
        cached before (a refill after the PTEs changed is read-only), so no flush reached it."""
        self.readonly = self.readonly | {(cpu, va, tid) for cpu, tlb in enumerate(s.tlbs)
                                         for va, e in tlb.items() if start <= va < end and e.writable}

    def _drop_delayed(self, tid: int, pfn: int) -> None:
        for i, d in enumerate(self.delayed):
            if d[0] == tid and d[1] == pfn:
                self.delayed = self.delayed[:i] + self.delayed[i + 1:]
                return

    # --- state checks after every transition ----------------------------------------------------------------
    def check(self, s: State) -> list[Violation]:
        """The whole-state checks a search without reduction makes after every transition (a reduced one relies on
        the event-driven ones: page_remove_rmap, spin_unlock). Not lost_dirty_data: a clean page that differs
        from the disk is a loss only once evicted (_evicted) or still so at quiescence (see the module's
        docstring)."""
        out: list[Violation] = []
        for pfn, folio in enumerate(s.folios):
            if folio.freed:
                continue
            if folio.mapcount < 0:
                out.append(Violation("negative_mapcount", f"pfn {pfn} has mapcount {folio.mapcount}", pfn))
            vas = _addresses(s, folio)
            if vas and all(s.ptl[s.table_of(va)] == FREE for va in vas):
                out.extend(_rmap_mismatch(s, pfn))
        return out

    def quiescent(self, s: State) -> list[Violation]:
        """All threads done, no IPI pending: the data must be on disk or findable by the next writeback, and
        the rmap must agree with the page tables."""
        out: list[Violation] = []
        for pfn, folio in enumerate(s.folios):
            if folio.freed:
                continue
            out.extend(_rmap_mismatch(s, pfn))
            if not _in_file(s, folio):
                continue
            if folio.data != s.disk[folio.index] and not _dirty_somewhere(s, pfn):
                out.append(_lost(s, pfn))
        out.extend(self._expectations(s))
        return out

    def _expectations(self, s: State) -> list[Violation]:
        out: list[Violation] = []
        for (kind, _, page, name), last in zip(self.expect, self.last):
            # kind is file_holds_last_store, the only one (the loader refuses others).
            what = f"expect {kind} (thread {name}, page {page})"
            if last is None:
                continue  # it never stored there: no last value to look for (as the PoC's check)
            index, value = last
            if 0 <= index and index >= s.i_size:
                continue  # ftruncate took the page out of the file since: nothing to read back (not a loss)
            if index < 0:
                out.append(Violation("expect_failed", f"{what}: the last store went to anonymous memory"))
                continue
            held = self._file_contents(s, index)
            if held != value:
                out.append(Violation("expect_failed", f"{what}: after a final sync file page {index} holds {held}, "
                                                      f"but {name}'s last store left {value}"))
        return out

    def _file_contents(self, s: State, index: int) -> int:
        """What msync, then dropping clean cached pages, then a read of file page ``index`` would return: a
        cached page's contents if something marks it dirty (PG_dirty or a dirty PTE), else the disk's."""
        pfn = s.page_cache[index]
        if pfn is not None and _dirty_somewhere(s, pfn):
            return s.folios[pfn].data
        return s.disk[index]


def _dirty_somewhere(s: State, pfn: int) -> bool:
    """Will the next writeback find the folio dirty: PG_dirty, or a dirty PTE that maps it (folio_mkclean's walk
    moves that bit into PG_dirty)?"""
    folio = s.folios[pfn]
    if folio.dirty:
        return True
    for va in _addresses(s, folio):
        pte = s.ptes[va]
        if pte is not None and pte.pfn == pfn and pte.dirty:
            return True
    return False


def _in_file(s: State, folio: Folio) -> bool:
    """Is the folio file data that lost_dirty_data answers for: a page-cache folio of the file at an offset below
    i_size. ftruncate writes i_size first (truncate_setsize) and only then unmaps and deletes the folios past it:
    what a store puts in one of those meanwhile is data past EOF, which ftruncate discards by definition (and
    ->writepage would not write: block_write_full_page drops a folio wholly past i_size), never a loss."""
    return folio.in_page_cache and not folio.anon and folio.index < s.i_size


def _lost(s: State, pfn: int) -> Violation:
    folio = s.folios[pfn]
    return Violation(
        "lost_dirty_data",
        f"file page {folio.index} holds {folio.data} but the disk holds {s.disk[folio.index]}"
        + (f" (IO in flight with {folio.wb_data})" if folio.writeback else "")
        + ", and no PG_dirty, dirty PTE or dirty TLB entry remembers it", pfn)


def _addresses(s: State, folio: Folio) -> tuple[int, ...]:
    """The addresses whose PTE may map ``folio``: an anonymous folio's own (the address it was faulted at:
    nothing moves it), and for a file folio every address the file's i_mmap links to its offset (a PTE of a file
    folio exists only under a linked VMA: munmap and mmap_fixed zap before they unlink, faults map only under a
    VMA they found) and, as the setup maps it, the address equal to its offset."""
    if folio.anon:
        return (folio.index,) if folio.index < len(s.ptes) else ()
    linked = s.i_mmap[folio.index]
    if folio.index in linked or folio.index >= len(s.ptes):
        return linked
    return linked + (folio.index,)


def _rmap_mismatch(s: State, pfn: int) -> list[Violation]:
    """The folio's mapcount against the PTEs that map it (counted by pfn, at every address that may)."""
    folio = s.folios[pfn]
    mapped = 0
    for va in _addresses(s, folio):
        pte = s.ptes[va]
        if pte is not None and pte.pfn == pfn:
            mapped += 1
    if folio.mapcount < 0 or folio.mapcount == mapped:
        return []
    return [Violation("rmap_pte_mismatch",
                      f"pfn {pfn} has mapcount {folio.mapcount} but {mapped} PTE(s) map it outside the PTL", pfn)]


def _rmap_mismatches(s: State, vas: range) -> list[Violation]:
    """At a PTL release: every live folio whose PTE lives in that table."""
    out: list[Violation] = []
    for pfn, folio in enumerate(s.folios):
        if folio.freed:
            continue
        mapped_at = _addresses(s, folio)
        # Judged only when every table that may map it is unlocked: mremap or mmap can leave a file page mapped
        # at two addresses in different tables, and a fault may be mid-way under the other table's PTL.
        if any(va in vas for va in mapped_at) and all(s.ptl[s.table_of(va)] == FREE for va in mapped_at):
            out.extend(_rmap_mismatch(s, pfn))
    return out


def _evicted(s: State, pfn: int) -> list[Violation]:
    """invalidate_mapping_pages dropped folio ``pfn``: nothing may still map it, and what it held must be on disk.
    Only file data below i_size can be lost (_in_file; the folio has just left the page cache): past it, ftruncate
    discards what the page holds."""
    out = _freed_while_mapped(s, pfn)
    folio = s.folios[pfn]
    if not folio.anon and folio.index < s.i_size and folio.data != s.disk[folio.index]:
        out.append(Violation("lost_dirty_data", f"file page {folio.index} evicted holding {folio.data} while the disk "
                             f"holds {s.disk[folio.index]}", pfn))
    return out


def _freed_while_mapped(s: State, pfn: int) -> list[Violation]:
    ptes = s.ptes_mapping(pfn)
    tlbs = s.tlbs_mapping(pfn)
    if not ptes and not tlbs:
        return []
    where = [f"PTE {va}" for va in ptes] + [f"CPU {cpu}'s TLB (va {va})" for cpu, va, _ in tlbs]
    return [Violation("freed_while_mapped", f"pfn {pfn} freed while still mapped by {', '.join(where)}", pfn)]


def _mapped_after_free(s: State, ev: Event) -> list[Violation]:
    """set_pte_at installed, or walk_fill cached, a translation to a frame whose last reference is gone (the
    page may already hold someone else's data: a fault that let go of its folio reference too early), or a path
    locked such a folio."""
    if ev.op == "folio_lock":
        # write_cache_pages is exempt: its lookup's references (filemap_get_folios_tag's, dropped by
        # folio_batch_release) are not modelled (PageTableOps.filemap_lookup), so the folio it locks may be one
        # ftruncate freed in the model while the kernel's batch still holds it; its recheck of folio->mapping
        # then skips it, as the kernel's does.
        pfn = ev.args[0]
        if not s.folios[pfn].freed or ev.fn == "write_cache_pages":
            return []
        return [Violation("freed_while_mapped", f"folio_lock of pfn {pfn}, which was already freed (the path held "
                          "no reference to it)", pfn)]
    if ev.op == "set_pte_at":
        va, pfn, where = ev.args[0], ev.args[1][0], "set_pte_at installed PTE"
    else:
        va = ev.args[0]
        entry = s.tlbs[ev.cpu].get(va) if ev.result else None
        if entry is None:
            return []
        pfn, where = entry.pfn, f"walk_fill cached in CPU {ev.cpu}'s TLB"
    if not s.folios[pfn].freed:
        return []
    return [Violation("freed_while_mapped", f"{where} {va} -> pfn {pfn}, which was already freed", pfn)]


def _stale_access(op: str, cpu: int, va: int, zapper: int) -> Violation:
    return Violation("stale_tlb_access", f"CPU {cpu} {'stored' if op == 'store_tlb' else 'loaded'} through its TLB "
                     f"entry for va {va} after thread {zapper}'s shootdown of va {va} had completed", None)


def _freed_access(s: State, op: str, cpu: int, va: int) -> list[Violation]:
    """freed_while_mapped: an access through a TLB entry whose frame was freed."""
    entry = s.tlbs[cpu].get(va)
    if entry is None or not s.folios[entry.pfn].freed:
        return []
    return [Violation("freed_while_mapped", f"a {'store' if op == 'store_tlb' else 'load'} through CPU {cpu}'s TLB "
                      f"(va {va}) landed in freed pfn {entry.pfn}", entry.pfn)]
