"""The checker (kernel brief §8). It judges what happened: the machine state and the event stream.

It never sees the run's configuration (which kernel order, which machine, which deliberate bug). Its only memory ("ghost state") is what it learned
from events: which thread holds a dirty bit in a local variable between taking it out of a PTE or PG_dirty and
putting it somewhere the kernel can find it again ("in transit"), and which delayed rmap entries a zap has
queued and not yet removed.

Invariants, by the names reports use:
- ``lost_dirty_data``: a page-cache page whose contents differ from the disk must be dirty somewhere (PG_dirty,
  a dirty PTE, a dirty TLB entry, writeback in flight with these very contents, or a dirty bit in transit);
  evicting a page that differs from the disk loses it at once; at quiescence only PG_dirty or a dirty PTE count.
- ``negative_mapcount``: after every rmap removal, immediate and delayed.
- ``freed_while_mapped``: when a page's last reference goes, no PTE and no TLB may still map it; and no PTE may
  be installed for (set_pte_at), nor a TLB entry filled from (walk_fill), a page already freed.
- ``delayed_outside_active_batch``: tlb_flush_rmaps must walk every batch that holds a pending delayed entry.
- ``delayed_rmap_after_unlock``: a zap releases its PTL only after its delayed rmap removals are done.
- ``rmap_pte_mismatch``: outside its PTL section, a page's mapcount equals the PTEs that map it.
- ``hang``: reported by the runtime when nothing can run but threads are unfinished.
"""

from __future__ import annotations

from kernel_model.events import Event, Violation
from kernel_model.state import FREE, Pte, State

INVARIANTS = (
    "lost_dirty_data", "negative_mapcount", "freed_while_mapped", "delayed_outside_active_batch",
    "delayed_rmap_after_unlock", "rmap_pte_mismatch", "hang",
)

# Events that take a dirty bit out of shared state into a path's local variable, and those that put it back.
_TRANSIT_CLOSERS = frozenset({"set_page_dirty", "folio_mark_dirty", "writepage"})
# Events after which a PTE or a TLB entry maps a frame: it must not be one already freed (freed_while_mapped).
_MAPS_PFN = frozenset({"set_pte_at", "walk_fill"})
# By event kind, the ops Oracle.observe acts on: the controlled machine does not build the other events unless
# it records them (observe returns [] and changes nothing for them; tests/test_oracle.py checks the lists).
OBSERVED_OPS: dict[str, frozenset[str]] = {
    "step": frozenset({"ptep_get_and_clear_full", "folio_test_clear_dirty", "page_remove_rmap", "spin_unlock",
                       "put_page", "evict_folio"}) | _TRANSIT_CLOSERS | _MAPS_PFN,
    "note": frozenset({"queue", "walk", "emptied", "end"}),
    "ipi": frozenset(),
}


class Oracle:
    __slots__ = ("transits", "delayed")

    def __init__(self) -> None:
        self.transits: frozenset[tuple[int, int]] = frozenset()  # (tid, pfn)
        self.delayed: tuple[tuple[int, int, int], ...] = ()  # (tid, pfn, batch id), in queue order

    def key(self) -> tuple:
        return (self.transits, self.delayed)

    def restore(self, key: tuple) -> None:
        self.transits, self.delayed = key

    # --- event-driven checks --------------------------------------------------------------------------------
    def observe(self, s: State, ev: Event) -> list[Violation]:
        op = ev.op
        if ev.kind == "step":
            return self._observe_step(s, ev, op)
        if ev.kind == "note":
            return self._observe_note(ev, op)
        return []

    def _observe_step(self, s: State, ev: Event, op: str) -> list[Violation]:
        tid = ev.tid
        out: list[Violation] = []
        if op == "ptep_get_and_clear_full":
            if ev.result is not None and Pte(*ev.result).dirty:
                self.transits = self.transits | {(tid, Pte(*ev.result).pfn)}
        elif op == "folio_test_clear_dirty":
            if ev.result:
                self.transits = self.transits | {(tid, ev.args[0])}
        elif op in _TRANSIT_CLOSERS:
            self.transits = self.transits - {(tid, ev.args[0])}
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
        elif op == "evict_folio":
            pfn = ev.result
            if pfn is not None:
                out.extend(_freed_while_mapped(s, pfn))
                folio = s.folios[pfn]
                if folio.data != s.disk[folio.index]:
                    out.append(Violation(
                        "lost_dirty_data",
                        f"file page {folio.index} evicted holding {folio.data} while the disk holds "
                        f"{s.disk[folio.index]}", pfn))
        return out

    def _observe_note(self, ev: Event, op: str) -> list[Violation]:
        tid = ev.tid
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
            # The operation's paths have returned: whatever dirty bit they still held is gone with them.
            self.transits = frozenset(t for t in self.transits if t[0] != tid)
        return []

    def _drop_delayed(self, tid: int, pfn: int) -> None:
        for i, d in enumerate(self.delayed):
            if d[0] == tid and d[1] == pfn:
                self.delayed = self.delayed[:i] + self.delayed[i + 1:]
                return

    # --- state checks after every transition ----------------------------------------------------------------
    def check(self, s: State) -> list[Violation]:
        out: list[Violation] = []
        for pfn, folio in enumerate(s.folios):
            if folio.freed:
                continue
            if folio.mapcount < 0:
                out.append(Violation("negative_mapcount", f"pfn {pfn} has mapcount {folio.mapcount}", pfn))
            va = folio.index
            if va < len(s.ptes) and s.ptl[s.table_of(va)] == FREE:
                out.extend(_rmap_mismatch(s, pfn))
            if folio.in_page_cache and not folio.anon and folio.data != s.disk[folio.index]:
                if not self._dirty_somewhere(s, pfn, folio.index, online=True):
                    out.append(_lost(s, pfn))
        return out

    def quiescent(self, s: State) -> list[Violation]:
        """All threads done, no IPI pending: the data must be on disk or findable by the next writeback, and
        the rmap must agree with the page tables."""
        out: list[Violation] = []
        for pfn, folio in enumerate(s.folios):
            if folio.freed:
                continue
            out.extend(_rmap_mismatch(s, pfn))
            if folio.anon or not folio.in_page_cache:
                continue
            if folio.data != s.disk[folio.index] and not self._dirty_somewhere(s, pfn, folio.index, online=False):
                out.append(_lost(s, pfn))
        return out

    def _dirty_somewhere(self, s: State, pfn: int, index: int, *, online: bool) -> bool:
        folio = s.folios[pfn]
        if folio.dirty:
            return True
        pte = s.ptes[index] if index < len(s.ptes) else None
        if pte is not None and pte.pfn == pfn and pte.dirty:
            return True
        if not online:
            return False
        if folio.writeback and folio.wb_data == folio.data:
            return True
        if any(t[1] == pfn for t in self.transits):
            return True
        return any(e.pfn == pfn and e.dirty for tlb in s.tlbs for e in tlb.values())


def _lost(s: State, pfn: int) -> Violation:
    folio = s.folios[pfn]
    return Violation(
        "lost_dirty_data",
        f"file page {folio.index} holds {folio.data} but the disk holds {s.disk[folio.index]}"
        + (f" (IO in flight with {folio.wb_data})" if folio.writeback else "")
        + ", and no PG_dirty, dirty PTE or dirty TLB entry remembers it", pfn)


def _rmap_mismatch(s: State, pfn: int) -> list[Violation]:
    folio = s.folios[pfn]
    va = folio.index
    pte = s.ptes[va] if va < len(s.ptes) else None
    mapped = 1 if pte is not None and pte.pfn == pfn else 0
    if folio.mapcount < 0 or folio.mapcount == mapped:
        return []
    return [Violation("rmap_pte_mismatch",
                      f"pfn {pfn} has mapcount {folio.mapcount} but {mapped} PTE(s) map it outside the PTL", pfn)]


def _rmap_mismatches(s: State, vas: range) -> list[Violation]:
    """At a PTL release: every live folio whose PTE lives in that table."""
    out: list[Violation] = []
    for pfn, folio in enumerate(s.folios):
        if not folio.freed and folio.index in vas:
            out.extend(_rmap_mismatch(s, pfn))
    return out


def _freed_while_mapped(s: State, pfn: int) -> list[Violation]:
    ptes = s.ptes_mapping(pfn)
    tlbs = s.tlbs_mapping(pfn)
    if not ptes and not tlbs:
        return []
    where = [f"PTE {va}" for va in ptes] + [f"CPU {cpu}'s TLB (va {va})" for cpu, va, _ in tlbs]
    return [Violation("freed_while_mapped", f"pfn {pfn} freed while still mapped by {', '.join(where)}", pfn)]


def _mapped_after_free(s: State, ev: Event) -> list[Violation]:
    """set_pte_at installed, or walk_fill cached, a translation to a frame whose last reference is gone: the
    page may already hold someone else's data (a fault that let go of its folio reference too early)."""
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
