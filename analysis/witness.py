"""The minimal witness of a violation: the few events that make the race, litmus-test style.

The rows are chosen by rules over the events around the violated page (its pfn, and the virtual page that maps
it), never by position in the log: "the PTE clear that took the dirty bit", "the first store that landed through
a TLB entry after that clear", "the first flush IPI to that store's CPU" ... Each rule names what the event means
for the race, so a reader who knows mm/ sees the bug from the table alone. A rule that finds nothing can say so
(an absent rmap removal is itself the story of the patched ordering). Events after the violation come from
running the machine on past it (deterministically) and are marked as such: they show what came too late.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from rich.table import Table

from analysis.printable import printable
from controlled.machine import Machine
from kernel_model.events import Event, Violation
from kernel_model.reclaim import TLB_FLUSH_ALL
from kernel_model.state import Pte


@dataclass(frozen=True, slots=True)
class WitnessRow:
    seq: int | None  # the event's global order; None for a row that states an absence or the final state
    tid: int | None  # the thread whose column shows it; None: the explanation column only
    cpu: int | None
    fn: str
    action: str
    why: str
    role: str
    after_violation: bool = False


@dataclass(frozen=True, slots=True)
class Witness:
    invariant: str
    pfn: int | None
    detail: str
    threads: tuple[str, ...]  # column titles, by thread id
    cpu_of: tuple[int, ...]
    rows: tuple[WitnessRow, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"invariant": self.invariant, "pfn": self.pfn, "detail": self.detail,
                "rows": [{"seq": r.seq, "thread": None if r.tid is None else self.threads[r.tid], "cpu": r.cpu,
                          "fn": r.fn, "action": r.action, "why": r.why, "role": r.role,
                          "after_violation": r.after_violation} for r in self.rows]}


# --- event predicates -------------------------------------------------------------------------------------------
def _pte(result: Any) -> Pte | None:
    return Pte(*result) if result is not None else None


def _first(events: list[Event], pred: Callable[[Event], bool], after: int = -1) -> Event | None:
    return next((e for e in events if e.seq > after and pred(e)), None)


def _last(events: list[Event], pred: Callable[[Event], bool], before: int | None = None) -> Event | None:
    return next((e for e in reversed(events) if (before is None or e.seq < before) and pred(e)), None)


def _is(e: Event, op: str, kind: str = "step") -> bool:
    return e.op == op and e.kind == kind


def _clears_dirty(e: Event, pfn: int) -> bool:
    pte = _pte(e.result) if _is(e, "ptep_get_and_clear_full") else None
    return pte is not None and pte.pfn == pfn and pte.dirty


def _on_pfn(e: Event, op: str, pfn: int, kind: str = "step") -> bool:
    return _is(e, op, kind) and bool(e.args) and e.args[0] == pfn


def _flush_range(a: tuple) -> str:
    if a[1] >= TLB_FLUSH_ALL:  # flush_tlb_mm / arch_tlbbatch_flush: the whole mm, not a range
        return "everything (TLB_FLUSH_ALL)"
    return f"va {a[0]}" if a[1] - a[0] == 1 else f"va {a[0]}..{a[1] - 1}"


def _describe_ipi_flush(e: Event, names: tuple[str, ...]) -> str:
    where = _flush_range(e.args)
    sender = names[e.tid] if e.tid < len(names) else f"thread {e.tid}"
    return f"IPI from {sender}: flush {where}, dropped {e.result} TLB entr{'y' if e.result == 1 else 'ies'}"


def _describe_pte(pte: Pte | None) -> str:
    return "none" if pte is None else (f"pfn {pte.pfn}" + (" W" if pte.write else "") + (" D" if pte.dirty else ""))


def _describe_clear(e: Event) -> str:
    return f"ptep_get_and_clear_full(va {e.args[0]}) → {_describe_pte(_pte(e.result))}"


def _describe_store(e: Event) -> str:
    what = "increment" if e.args[1] is None else f"store {e.args[1]}"
    return f"{what} to va {e.args[0]} → {e.result}"


def _describe_set_pte(e: Event) -> str:
    pte = _pte(e.args[1])
    return f"set_pte_at(va {e.args[0]}, pfn {pte.pfn}" + (" W" if pte.write else "") + (" D" if pte.dirty else "") + ")"


def _describe_deferred(e: Event) -> str:
    return "TLB flush deferred" + (" (a dirty PTE: try_to_unmap_flush_dirty owes it)" if e.args and e.args[0] else "")


_DESCRIBE: dict[str, Callable[[Event], str]] = {
    "ptep_get_and_clear_full": _describe_clear,
    "page_remove_rmap": lambda e: (f"page_remove_rmap(pfn {e.args[0]}{', delayed' if e.args[1] else ''}) → "
                                   f"mapcount {e.result}"),
    "store_tlb": _describe_store,
    "set_pte_at": _describe_set_pte,
    "deferred": _describe_deferred,  # reclaim's set_tlb_ubc_flush_pending note
    "pte_get": lambda e: f"pte_get(va {e.args[0]}) → {_describe_pte(_pte(e.result))}",
    "flush_tlb_others": lambda e: f"flush_tlb_others({_flush_range(e.args)}) → {e.result} IPIs sent",
    "flush_tlb_local": lambda e: f"flush_tlb_local({_flush_range(e.args)}) → dropped {e.result} TLB entr"
                                 + ("y" if e.result == 1 else "ies"),
    "spin_lock": lambda e: f"spin_lock(PTL {e.args[0]})",
    "spin_unlock": lambda e: f"spin_unlock(PTL {e.args[0]})",
}


def describe(e: Event, names: tuple[str, ...] = ()) -> str:
    """op(args) → result, in the words of the kernel where the raw values would be cryptic."""
    a = e.args
    if e.op == "ipi_flush":
        return _describe_ipi_flush(e, names)
    if e.op == "queue" and e.fn == "__tlb_remove_page":
        return f"queue pfn {a[0]} in batch {a[2]}" + (" with DELAY_RMAP" if a[1] else "")
    if e.op in _DESCRIBE:
        return _DESCRIBE[e.op](e)
    shown = ", ".join(str(x) for x in a)
    text = f"{e.op}({shown})"
    return text if e.kind == "note" or e.result is None else f"{text} → {e.result}"


# --- the rules, per invariant -------------------------------------------------------------------------------------
class _Picker:
    """Collects rows: each rule adds the event it found (once) with what it means for the race."""

    def __init__(self, violation_seq: int, names: tuple[str, ...], detail: str = "") -> None:
        self.violation_seq = violation_seq
        self.names = names
        self.detail = detail  # the violation's text (stale_tlb_access names the thread whose shootdown completed)
        self.rows: list[WitnessRow] = []
        self.seen: set[int] = set()

    def add(self, e: Event | None, role: str, why: str) -> Event | None:
        if e is not None and e.seq not in self.seen:
            self.seen.add(e.seq)
            fn = e.fn
            self.rows.append(WitnessRow(e.seq, _column(e), e.cpu, fn, describe(e, self.names), why, role,
                                        e.seq > self.violation_seq))
        return e

    def absent(self, role: str, fn: str, why: str) -> None:
        self.rows.append(WitnessRow(None, None, None, fn, "(never happened)", why, role))

    def state(self, text: str) -> None:
        self.rows.append(WitnessRow(None, None, None, "final state", text, text, "final_state"))


def _column(e: Event) -> int:
    return e.tid if e.kind != "ipi" else -1 - e.cpu  # an IPI runs on its target CPU: resolved at render time


def _lost_dirty_data(p: _Picker, ev: list[Event], pfn: int, m: Machine) -> None:
    end = p.violation_seq + 1
    if _lost_by_move(p, ev, pfn, m):
        return
    clear = (_clear_behind_store(ev, pfn, m.state.folios[pfn].data)
             or _last(ev, lambda e: _clears_dirty(e, pfn) and e.fn == "zap_pte_range", end)
             or _last(ev, lambda e: _clears_dirty(e, pfn), end))
    if clear is None:
        _around_page(p, ev, pfn, m)
        return
    zapper = clear.tid
    reclaim = clear.fn == "try_to_unmap_one"  # kswapd's try_to_unmap, its flush deferred (docs/reclaim.md)
    who = "the reclaimer" if reclaim else "the zapper"
    p.add(clear, "pte_clear", f"the PTE is gone and its dirty bit is in {who}'s hands; other CPUs' TLB "
                              "entries still map the page until the flush")
    p.add(_first(ev, lambda e: _on_pfn(e, "set_page_dirty", pfn) and e.tid == zapper, clear.seq),
          "set_page_dirty", "PG_dirty=1: the dirty bit moves to the page")
    tcd = _last(ev, lambda e: _on_pfn(e, "folio_test_clear_dirty", pfn) and bool(e.result), end)
    checked = (_last(ev, lambda e: _is_mkclean_gate(e, pfn) and e.tid == tcd.tid, tcd.seq) if tcd is not None
               else _first(ev, lambda e: _is_mkclean_gate(e, pfn), clear.seq))
    rmap = _first(ev, lambda e: _on_pfn(e, "page_remove_rmap", pfn) and e.tid == zapper, clear.seq)
    looked_first = checked is not None and rmap is not None and checked.seq < rmap.seq
    p.add(rmap, "rmap_removal", "mapcount drops before the TLB flush" + (
        " (folio_mkclean has already found the folio mapped: its walk waits for the PTL instead)" if looked_first
        else ": folio_mapped() is false while a stale writable TLB entry still exists (the window opens)"))
    if rmap is None:
        p.absent("rmap_removal", "page_remove_rmap",
                 f"no rmap removal of pfn {pfn} before the violation: mapcount {m.state.folios[pfn].mapcount}")
    if reclaim:
        _reclaim_unlock(p, ev, clear, pfn)
    if _up_fast_mode(m):
        _fast_mode_pageout(p, ev, clear, tcd, pfn)
    store = _lost_store(ev, clear, pfn, m.state.folios[pfn].data)
    _mkclean_rows(p, ev, checked, clear, who, store, tcd)
    p.add(tcd, "clear_dirty", "PG_dirty=0: writeback takes responsibility for the contents")
    p.add(_first(ev, lambda e: _on_pfn(e, "writepage", pfn), tcd.seq if tcd else clear.seq),
          "io_snapshot", "the IO snapshots the page now; later stores are not in it")
    p.add(store, "stale_store", "a store lands through the stale dirty TLB entry after the PTE clear: no PTE, "
                                "no PG_dirty records it")
    if store is not None:
        _flush_rows(p, ev, clear, who, store, reclaim)
    p.state(_page_story(m, pfn))


def _up_fast_mode(m: Machine) -> bool:
    """Kctx.tlb_fast_mode: __tlb_remove_page's put_page is UP's fast mode (s390's comes after its IPTE flush)."""
    return m.cfg.arch == "up" and not m.cfg.fixed("no_tlb_fast_mode")


def _fast_mode_pageout(p: _Picker, ev: list[Event], clear: Event, tcd: Event | None, pfn: int) -> None:
    """UP before 29eb77825cc7 (v3.10): the zap's own put_page under the PTL (tlb_fast_mode) left only the page
    cache's reference, so kswapd's pageout found the folio freeable and wrote it back before the zap's flush; from
    3.10 the gather's reference makes is_page_cache_freeable fail until after the flush
    (tests/scenarios/unseen21_up_fast_mode_reclaim.toml)."""
    if tcd is None:
        return
    put = _first(ev, lambda e: e.tid == clear.tid and _is(e, "put_page") and e.fn == "__tlb_remove_page"
                 and e.args[0] == pfn, clear.seq)
    freeable = _last(ev, lambda e: _on_pfn(e, "is_page_cache_freeable", pfn) and bool(e.result)
                     and e.tid == tcd.tid, tcd.seq)
    if put is None or freeable is None or not put.seq < freeable.seq:
        return
    p.add(put, "fast_mode_put", "tlb_fast_mode (UP before 29eb77825cc7, v3.10): __tlb_remove_page drops the zap's "
                                "reference at once, before the flush; only the page cache holds the folio now")
    p.add(freeable, "freeable", "pageout finds the folio freeable (no reference but the page cache's and the "
                                "isolation's) and writes it back; the gather's reference would have kept it")


def _is_mkclean_gate(e: Event, pfn: int) -> bool:
    return _on_pfn(e, "not_mapped", pfn, "note") or (_on_pfn(e, "folio_mapped", pfn) and e.fn == "folio_mkclean")


def _mkclean_rows(p: _Picker, ev: list[Event], checked: Event | None, clear: Event, who: str, store: Event | None,
                  tcd: Event | None) -> None:
    """folio_mkclean's gate in the writeback pass that cleared PG_dirty (``tcd``; it may have looked before the
    clear): unmapped (no walk, the §6 window), or mapped (a walk that finds the cleared address none)."""
    walked = checked is not None and checked.kind != "note" and bool(checked.result)
    if checked is not None and checked.kind == "note":
        why = ("folio_mkclean sees the folio unmapped and returns 0 at once: no rmap walk, so it never waits for "
               f"{who}'s PTL")
    else:
        why = "folio_mkclean finds the folio mapped, so it walks the rmap" if walked else "folio_mkclean's rmap check"
    p.add(checked, "mkclean_check", why)
    if walked:
        _walk_past_cleared(p, ev, checked, clear, who, store, tcd.seq if tcd is not None else None)


def _flush_rows(p: _Picker, ev: list[Event], clear: Event, who: str, store: Event, reclaim: bool) -> None:
    """What let the stale entry live until the store: the PTL dropped before the flush (zap), or the flush IPIs
    sent but not yet run on the store's CPU; then the flush that drops the entry, after the store."""
    va = clear.args[0]
    late = _first(ev, lambda e: e.tid == clear.tid and _flushes_on(e, store.cpu, va), store.seq)
    unlock = _first(ev, lambda e: _is(e, "spin_unlock") and e.tid == clear.tid, clear.seq)
    if not reclaim and unlock is not None and unlock.seq < store.seq and (late is None or unlock.seq < late.seq):
        p.add(unlock, "unlock", f"{who} drops the PTL before the TLB flush that covers va {va}: nothing makes "
                                f"folio_mkclean wait for that flush, and on a uniprocessor {who} may be preempted here "
                                "(zap_pmd_range's cond_resched) and another task run on its CPU")
    sent = _first(ev, lambda e: _is(e, "flush_tlb_others") and e.tid == clear.tid, clear.seq)
    if sent is not None and sent.seq < store.seq and sent.result and store.cpu != clear.cpu:
        p.add(sent, "flush_sent", f"the flush IPIs are on their way, but CPU {store.cpu} has not run its handler "
                                  f"yet: until it does, its entry still writes ({who} spins for the ack)")
    p.add(late, "late_flush", f"the flush reaches CPU {store.cpu} and drops the stale entry: too late, the store "
                              "landed")


def _clear_behind_store(ev: list[Event], pfn: int, data: int | None) -> Event | None:
    """The dirty PTE clear that left the lost store's translation stale: the last one of pfn at the address the
    store went through, before it. The last dirty clear of pfn overall may be writeback's own ptep_clear_flush of
    an alias (folio_mkclean of a folio still mapped at another address), which flushes that address only and never
    leaves an entry stale (session 20: tests/scenarios/unseen20_reclaim_alias_msync.toml)."""
    store = _moved_store(ev, pfn, data)
    if store is None:
        return None
    va = store.args[0]
    return _last(ev, lambda e: _clears_dirty(e, pfn) and e.args[0] == va, store.seq)


def _walk_past_cleared(p: _Picker, ev: list[Event], checked: Event, clear: Event, who: str,
                       store: Event | None, bound: int | None) -> None:
    """folio_mkclean did walk: the fault that mapped the folio again elsewhere (if that is why it is mapped), what
    the walk found at the cleared address (none: nothing to clean or flush there) and what it cleaned at another
    address (ptep_clear_flush flushes that address only)."""
    va, walker, pfn = clear.args[0], checked.tid, checked.args[0]
    cpu = f"CPU {store.cpu}'s" if store is not None else "a CPU's"

    def before_bound(e: Event) -> bool:
        return bound is None or e.seq < bound

    remapped = p.add(_last(ev, lambda e: _on_pfn(e, "page_add_file_rmap", pfn) and e.seq > clear.seq, checked.seq),
                     "remapped", "a fault maps the folio again at another address: folio_mapped() is true once more")
    where = ("the folio is mapped again elsewhere, so folio_mkclean walks the rmap, but" if remapped is not None else
             f"folio_mkclean's walk gets va {va}'s PTL only after {who} dropped it, and")
    p.add(_first(ev, lambda e: e.tid == walker and _is(e, "pte_get") and e.fn == "page_vma_mapped_walk"
                 and e.args[0] == va and e.result is None and before_bound(e), checked.seq), "walk_found_none",
          f"{where} va {va}'s PTE is already none ({who} cleared it): nothing to clean or flush there, though {cpu} "
          f"TLB still maps va {va}")
    p.add(_first(ev, lambda e: e.tid == walker and e.fn == "ptep_clear_flush" and _is(e, "ptep_get_and_clear_full")
                 and e.args[0] != va and _pte(e.result) is not None and _pte(e.result).pfn == pfn
                 and before_bound(e), checked.seq), "mkclean_other",
          f"folio_mkclean cleans the page at another address: ptep_clear_flush flushes that address only, not va {va}")


def _lost_by_move(p: _Picker, ev: list[Event], pfn: int, m: Machine) -> bool:
    """mremap's window (before 5d1904204c99, v4.9): move_ptes moved the dirty PTE and dropped the PTLs before the
    old address was flushed; folio_mkclean cleaned the page at its new address, flushing that address only, and a
    store through the old address's entry came after the snapshot. Chosen when the store whose value the page holds
    went through an address whose PTE move_ptes took; otherwise (False) the zap/reclaim rules apply."""
    store = _moved_store(ev, pfn, m.state.folios[pfn].data)
    if store is None:
        return False
    va = store.args[0]
    clear = _last(ev, lambda e: _clears_dirty(e, pfn) and e.args[0] == va, store.seq)
    if clear is None or clear.fn != "move_ptes":
        return False
    mover = clear.tid
    p.add(clear, "pte_clear", f"mremap's move_ptes takes the dirty PTE off va {va}; until va {va} is flushed, TLB "
                              "entries for it still write into the page")
    p.add(_first(ev, lambda e: _is(e, "set_pte_at") and e.tid == mover, clear.seq), "moved",
          "the PTE, dirty bit and all, now maps the page at the new address: it stays mapped, so folio_mkclean "
          "walks to it there")
    p.add(_first(ev, lambda e: _is(e, "spin_unlock") and e.tid == mover, clear.seq), "unlock",
          f"move_ptes drops the PTLs with va {va} not yet flushed (before 5d1904204c99, v4.9, move_page_tables "
          "flushes the old range only after every PTL is dropped)")
    p.add(_first(ev, lambda e: _clears_dirty(e, pfn) and e.tid != mover and e.fn == "ptep_clear_flush", clear.seq),
          "mkclean_check", "folio_mkclean write-protects the page at its new address: ptep_clear_flush flushes that "
                           f"address only, not va {va}")
    tcd = p.add(_last(ev, lambda e: _on_pfn(e, "folio_test_clear_dirty", pfn) and bool(e.result), store.seq),
                "clear_dirty", "PG_dirty=0: writeback takes responsibility for the contents")
    p.add(_first(ev, lambda e: _on_pfn(e, "writepage", pfn), tcd.seq if tcd else clear.seq),
          "io_snapshot", "the IO snapshots the page now; later stores are not in it")
    p.add(store, "stale_store", f"a store lands through the stale dirty TLB entry of va {va} after the snapshot: "
                                "no PTE, no PG_dirty records it")
    p.add(_first(ev, lambda e: e.tid == mover and _flushes_on(e, store.cpu, va), store.seq), "late_flush",
          "move_page_tables' flush of the old range reaches it: too late, the store landed")
    p.state(_page_story(m, pfn))
    return True


def _moved_store(ev: list[Event], pfn: int, data: int | None) -> Event | None:
    """The store the snapshot missed, at whatever address: the one whose value the page holds, or (a counter's
    increments carry none) the first increment that landed after the IO snapshot."""
    def landed(e: Event) -> bool:
        return _is(e, "store_tlb") and e.result == "stored"

    snapshot = _first(ev, lambda e: _on_pfn(e, "writepage", pfn))
    return (_first(ev, lambda e: landed(e) and e.args[1] is not None and e.args[1] == data)
            or (snapshot and _first(ev, lambda e: landed(e) and e.args[1] is None, snapshot.seq)))


def _reclaim_unlock(p: _Picker, ev: list[Event], clear: Event, pfn: int) -> None:
    """Reclaim, not zap: shrink_folio_list's activate branch gives the folio lock up before the deferred flush."""
    p.add(_first(ev, lambda e: _on_pfn(e, "folio_unlock", pfn) and e.tid == clear.tid
                 and e.fn == "shrink_folio_list", clear.seq),
          "reclaim_unlock", "activate_locked: kswapd unlocks the dirty folio while its TLB flush is still deferred "
                            "to try_to_unmap_flush, so writeback can lock it (docs/reclaim.md)")


def _lost_store(ev: list[Event], clear: Event, pfn: int, data: int | None) -> Event | None:
    """The lost store: the one whose value the page holds; a counter's increments carry no value, so the first
    one that landed after the IO snapshot (earlier ones are in the snapshot); else the first after the clear."""
    va = clear.args[0]

    def landed(e: Event) -> bool:
        return _is(e, "store_tlb") and e.result == "stored" and e.args[0] == va

    snapshot = _first(ev, lambda e: _on_pfn(e, "writepage", pfn), clear.seq)
    return (_first(ev, lambda e: landed(e) and e.args[1] is not None and e.args[1] == data, clear.seq)
            or (snapshot and _first(ev, lambda e: landed(e) and e.args[1] is None, snapshot.seq))
            or _first(ev, landed, clear.seq))


def _delayed_rmap_after_unlock(p: _Picker, ev: list[Event], pfn: int, m: Machine) -> None:
    unlock = next(e for e in ev if e.seq == p.violation_seq)
    zapper = unlock.tid
    queued = p.add(_last(ev, lambda e: e.op == "queue" and e.kind == "note" and e.tid == zapper
                         and e.args[0] == pfn and bool(e.args[1]), unlock.seq),
                   "queue_delayed", "the page is queued with DELAY_RMAP: its rmap removal is postponed past "
                                    "the TLB flush")
    p.add(_last(ev, lambda e: _is(e, "flush_tlb_others") and e.tid == zapper, unlock.seq), "flush",
          "the TLB flush is sent under the PTL")
    p.add(unlock, "unlock", "the PTL is released while the delayed removal is still pending: rmap walkers "
                            "and memcg see a mapcount no PTE backs")
    late = p.add(_first(ev, lambda e: _on_pfn(e, "page_remove_rmap", pfn) and e.tid == zapper,
                        queued.seq if queued else unlock.seq), "late_rmap",
                 "the delayed rmap removal, after the unlock")
    if late is None:
        p.absent("late_rmap", "tlb_flush_rmaps", f"pfn {pfn} is never removed from the rmap")
    p.state(_page_story(m, pfn))


def _freed_while_mapped(p: _Picker, ev: list[Event], pfn: int, m: Machine) -> None:
    freed = next(e for e in ev if e.seq == p.violation_seq)
    clear = p.add(_last(ev, lambda e: _is(e, "ptep_get_and_clear_full") and _pte(e.result) is not None
                        and _pte(e.result).pfn == pfn, freed.seq), "pte_clear", "the PTE is cleared")
    fast_put, freed = _fast_mode_put(p, ev, freed, pfn, m)
    fast_mode = fast_put is freed
    zapper = fast_put.tid if fast_put is not None else freed.tid
    holders = [(cpu, va) for cpu, va, _ in m.state.tlbs_mapping(pfn)]
    p.add(freed, "free", "tlb_fast_mode (UP before 29eb77825cc7, v3.10): __tlb_remove_page frees the page at once, "
                         "under the PTL; this CPU's TLB flush comes only after pte_unmap_unlock, and another task "
                         "of the mm that runs here before it uses the entry" if fast_mode else
                         "the last reference is dropped: the page returns to the allocator")
    for cpu, va in holders:
        if fast_put is not None and cpu == fast_put.cpu:
            continue  # the fast-mode rows say it: no IPI will come, the flush is this CPU's own
        p.add(_first(ev, lambda e: _is(e, "ipi_flush", "ipi") and e.cpu == cpu and e.tid == zapper, freed.seq),
              "late_flush", f"CPU {cpu}'s TLB still mapped va {va} when the page was freed; this flush comes after")
    if clear is None and not holders:
        _around_page(p, ev, pfn, m)
    p.state(f"pfn {pfn} freed while mapped by " + ", ".join(f"CPU {c}'s TLB (va {v})" for c, v in holders))


def _fast_mode_put(p: _Picker, ev: list[Event], freed: Event, pfn: int, m: Machine) -> tuple[Event | None, Event]:
    """__tlb_remove_page's own put_page is a gather that batches nothing: UP's tlb_fast_mode before 29eb77825cc7.
    It frees the page itself (returned as the free), or leaves only the page cache's reference for an eviction or
    a truncation to drop before the zapper's flush: then its row and the zapper's unlock are added, and the free is
    the step that dropped the last reference, not its operation's end. (None, freed) elsewhere."""
    fast_put = _last(ev, lambda e: _on_pfn(e, "put_page", pfn) and e.fn == "__tlb_remove_page",
                     freed.seq + 1) if _up_fast_mode(m) else None
    if fast_put is None or fast_put is freed:
        return fast_put, freed
    p.add(fast_put, "fast_mode_put", "tlb_fast_mode (UP before 29eb77825cc7, v3.10): __tlb_remove_page drops the "
                                     "zap's reference at once, under the PTL, before the TLB flush: only the page "
                                     "cache holds the page now")
    p.add(_first(ev, lambda e: _is(e, "spin_unlock") and e.tid == fast_put.tid, fast_put.seq), "unlock",
          "the zapper drops the PTL before its flush: on a uniprocessor it may be preempted here and another task "
          "run on its CPU")
    step = _last(ev, lambda e: e.tid == freed.tid and e.kind == "step" and bool(e.args) and e.args[0] == pfn,
                 freed.seq + 1)
    return fast_put, step or freed


def _negative_mapcount(p: _Picker, ev: list[Event], pfn: int, m: Machine) -> None:
    removals = [e for e in ev if _on_pfn(e, "page_remove_rmap", pfn) and e.seq <= p.violation_seq]
    for e in removals[-3:]:
        p.add(e, "rmap_removal", "one rmap removal too many" if e.result < 0 else "an rmap removal")
    p.state(_page_story(m, pfn))


def _delayed_outside_active_batch(p: _Picker, ev: list[Event], pfn: int, m: Machine) -> None:
    walk = next(e for e in ev if e.seq == p.violation_seq)
    mine = [e for e in ev if e.tid == walk.tid and e.kind == "note" and e.seq < walk.seq]
    p.add(_last(mine, lambda e: e.op == "queue" and e.args[0] == pfn and bool(e.args[1])), "queue_delayed",
          "a delayed entry is queued in this batch")
    p.add(_last(mine, lambda e: e.op == "next_batch"), "next_batch", "the gather moves on to another batch")
    p.add(walk, "walk", "tlb_flush_rmaps walks only the active batch: the delayed entry is not in it")


def _stale_tlb_access(p: _Picker, ev: list[Event], pfn: int | None, m: Machine) -> None:
    """A store or load through a translation whose shootdown had completed (no pfn: the oracle tracks it by
    address). The rows: who cleared the PTE (and whether its flush was deferred), who found it already none and so
    flushed nothing for it, the call return or flush ack that completed the shootdown, the access, and the flush
    that reached the CPU only afterwards."""
    access = _last(ev, _is_access, p.violation_seq + 1)
    if access is None:
        _around_page(p, ev, pfn, m)
        return
    cpu, va = access.cpu, access.args[0]
    _stale_clear(p, ev, access, va)
    match = re.search(r"after thread (\d+)'s", p.detail)
    if match is not None:
        answerer = int(match.group(1))
        p.add(_last(ev, lambda e: e.tid == answerer and _completes(e, va), access.seq), "completed",
              "the shootdown counts as complete: the call returns (or every flush ack is in), so no translation "
              f"of va {va} cached before the clear may be used from here")
    p.add(access, "stale_access", f"CPU {cpu} uses its old translation of va {va} all the same")
    p.add(_first(ev, lambda e: _flushes_on(e, cpu, va), access.seq), "late_flush",
          f"the flush that drops CPU {cpu}'s entry for va {va}: too late")


def _is_access(e: Event) -> bool:
    """A store that landed, or a load, through the TLB."""
    return (e.op == "store_tlb" and e.result == "stored") or e.op == "load_tlb"


def _completes(e: Event, va: int) -> bool:
    """The call returned (or mprotect is about to), or every ack of a flush covering va is in."""
    return (_is(e, "end", "note") or _is(e, "write_protected", "note")
            or (_is(e, "wait_acks") and e.args[0] <= va < e.args[1]))


def _flushes_on(e: Event, cpu: int, va: int) -> bool:
    return (_is(e, "ipi_flush", "ipi") or _is(e, "flush_tlb_local")) and e.cpu == cpu and e.args[0] <= va < e.args[1]


def _stale_clear(p: _Picker, ev: list[Event], access: Event, va: int) -> None:
    """The clear of va's PTE before the access, its deferred flush, and another thread finding it none."""
    clear = p.add(_last(ev, lambda e: _is(e, "ptep_get_and_clear_full") and e.args[0] == va and e.result is not None,
                        access.seq), "pte_clear",
                  f"the PTE of va {va} is cleared; CPU {access.cpu}'s TLB keeps the old translation until a flush "
                  "reaches it")
    if clear is None:
        return
    p.add(_first(ev, lambda e: _is(e, "deferred", "note") and e.tid == clear.tid, clear.seq), "deferred",
          "TTU_BATCH_FLUSH: the flush is left to try_to_unmap_flush, after the PTL is dropped")
    p.add(_first(ev, lambda e: _is(e, "ptep_get_and_clear_full") and e.args[0] == va and e.result is None
                 and e.tid != clear.tid, clear.seq), "found_none",
          f"finds va {va}'s PTE already none: nothing of it enters this call's flush range, so nothing here "
          f"flushes CPU {access.cpu}'s entry, yet the call may return before the clearer's flush")


# kernel_model.oracle's expect_failed detail for file_holds_last_store: which file page the read-back missed.
_EXPECT_PAGE = re.compile(r"after a final sync file page (\d+) holds ")


def _expect_failed(p: _Picker, ev: list[Event], pfn: int | None, m: Machine) -> None:
    """A read-back that misses the thread's last store (the oracle tracks it by file page, not pfn): the same rows
    as a lost store of the page cached there, which is why the final sync does not write it."""
    match = _EXPECT_PAGE.search(p.detail)
    index = int(match.group(1)) if match else -1
    cached = m.state.page_cache[index] if 0 <= index < len(m.state.page_cache) else None
    if cached is None:
        _around_page(p, ev, pfn, m)
        return
    _lost_dirty_data(p, ev, cached, m)


def _around_page(p: _Picker, ev: list[Event], pfn: int | None, m: Machine) -> None:
    """No specific rule: the last events that touched the page (by pfn) or the violation's thread."""
    last = next(e for e in ev if e.seq == p.violation_seq)
    near = [e for e in ev if e.seq <= p.violation_seq and e.kind != "note"
            and (pfn is not None and (e.args[:1] == (pfn,) or (_is(e, "ptep_get_and_clear_full")
                                                                 and _pte(e.result) is not None
                                                                 and _pte(e.result).pfn == pfn)))]
    for e in near[-6:]:
        p.add(e, "touches_page", "")
    p.add(last, "violation", "where the oracle flagged it")


def _hang(p: _Picker, ev: list[Event], pfn: int | None, m: Machine) -> None:
    for tid, pos in enumerate(m.pos):
        if pos.step is None:
            continue
        p.add(_last(ev, lambda e, t=tid: e.tid == t and e.kind == "step"), "last_step", "its last step")
        p.rows.append(WitnessRow(None, tid, m.cpu_of[tid], pos.step.fn, f"waits: {pos.step.op}{pos.step.args}",
                                 "blocked forever", "blocked"))


def _page_story(m: Machine, pfn: int) -> str:
    s = m.state
    f = s.folios[pfn]
    disk = s.disk[f.index] if not f.anon else None
    tlbs = [f"CPU {c}" for c, _, _ in s.tlbs_mapping(pfn)]
    ptes = s.ptes_mapping(pfn)
    parts = [f"page {f.index} (pfn {pfn}) holds {f.data}"]
    if disk is not None:
        parts.append(f"disk holds {disk}")
    if f.writeback:
        parts.append(f"IO in flight with {f.wb_data}")
    parts.append(f"PG_dirty={int(f.dirty)}")
    parts.append(f"mapcount {f.mapcount}")
    parts.append(f"PTE {'present' if ptes else 'none'}")
    parts.append("TLB: " + (", ".join(tlbs) if tlbs else "no entry"))
    return "; ".join(parts)


_RULES: dict[str, Callable[[_Picker, list[Event], int, Machine], None]] = {
    "lost_dirty_data": _lost_dirty_data,
    "delayed_rmap_after_unlock": _delayed_rmap_after_unlock,
    "freed_while_mapped": _freed_while_mapped,
    "negative_mapcount": _negative_mapcount,
    "delayed_outside_active_batch": _delayed_outside_active_batch,
}
# Rules for violations the oracle tracks by address, not by page (no pfn).
_ADDRESS_RULES: dict[str, Callable[[_Picker, list[Event], int | None, Machine], None]] = {
    "stale_tlb_access": _stale_tlb_access,
    "expect_failed": _expect_failed,
}


def build_witness(violation: Violation, events: list[Event], machine: Machine,
                  after: list[Event] = ()) -> Witness:
    """``events``: what the replay saw, up to and including the violating transition; ``machine``: its state right
    there; ``after``: events of the deterministic continuation past the violation (to show what came late)."""
    violation_seq = events[-1].seq if events else -1
    names = tuple(t.name for t in machine.scenario.threads)
    picker = _Picker(violation_seq, names, violation.detail)
    everything = list(events) + list(after)
    if violation.invariant == "hang":
        _hang(picker, everything, violation.pfn, machine)
    elif violation.pfn is not None and violation.invariant in _RULES:
        _RULES[violation.invariant](picker, everything, violation.pfn, machine)
    elif violation.invariant in _ADDRESS_RULES:
        _ADDRESS_RULES[violation.invariant](picker, everything, violation.pfn, machine)
    else:
        _around_page(picker, everything, violation.pfn, machine)
    rows = sorted(picker.rows, key=lambda r: (r.seq is None, r.role == "final_state",
                                              r.seq if r.seq is not None else 0))
    cpu_of = tuple(machine.cpu_of)
    rows = [_resolve_column(r, cpu_of) for r in rows]
    return Witness(violation.invariant, violation.pfn, violation.detail, names, cpu_of, tuple(rows))


def _resolve_column(r: WitnessRow, cpu_of: tuple[int, ...]) -> WitnessRow:
    """An IPI's column is the thread running on its target CPU (the handler interrupts that thread)."""
    if r.tid is None or r.tid >= 0:
        return r
    cpu = -1 - r.tid
    tid = next((t for t, c in enumerate(cpu_of) if c == cpu), None)
    return WitnessRow(r.seq, tid, cpu, r.fn, r.action, r.why, r.role, r.after_violation)


def witness_table(w: Witness, title: str | None = None) -> Table:
    """One column per thread that takes part in the witness (with its CPU), rows in happens-before order, and what
    each row means. A thread with no row gets no column: on an 80-column terminal each empty column squeezes the
    others (a scenario's bystanders, such as a writer on another page, would take a fifth of the width)."""
    table = Table(title=title or f"{w.invariant} (pfn {w.pfn})", caption=printable(w.detail), show_lines=True,
                  title_justify="left", caption_justify="left")
    table.add_column("#", justify="right", style="dim")
    shown = sorted({r.tid for r in w.rows if r.tid is not None}) or list(range(len(w.threads)))
    for tid in shown:
        table.add_column(f"{w.threads[tid]}\nCPU {w.cpu_of[tid]}", overflow="fold")
    table.add_column("why it matters", overflow="fold", style="italic")
    column = {tid: n for n, tid in enumerate(shown)}
    for r in w.rows:
        cells = [""] * len(shown)
        if r.tid is not None:
            late = " [red](after the violation)[/]" if r.after_violation else ""
            cells[column[r.tid]] = f"[bold]{r.fn}[/]\n{r.action}{late}"
        seq = "—" if r.seq is None else str(r.seq)
        why = r.why if r.tid is not None or r.role == "final_state" else f"{r.fn}: {r.why}"
        if r.role == "final_state":
            why = f"[bold]{r.action}[/]"
        table.add_row(seq, *cells, why)
    return table


def witnesses_for(violations: list[Violation], scenario: Any, cfg: Any, executed: list[Any],
                  horizon: int = 200) -> list[Witness]:
    """Re-run the judged transitions to the violation, then on past it (lowest enabled transition first, as
    run_schedule completes a run) for at most ``horizon`` transitions, to show what came too late."""
    from analysis.analyze import rerun

    m = rerun(scenario, cfg, executed)
    at_violation = list(m.events)
    snapshot = m.key()
    for _ in range(horizon):
        enabled = m.enabled_all()
        if m.run_ends(enabled):
            break
        m.execute(min(enabled, key=lambda tr: (m.is_counter_increment(tr), tr)))
    after = m.events[len(at_violation):]
    m.restore(snapshot)
    return [build_witness(v, at_violation, m, after) for v in violations]
