"""A counterexample as a numbered, per-CPU story in the kernel's own words.

One column per thread (and its CPU); each row is one step or IPI, or a note that a kernel developer would want
to see (an operation starting or ending, folio_mkclean returning early, a forced flush, a page queued with the
delay flag). IPIs appear in the column of the CPU that took them.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from kernel_model.events import Event, Violation
from kernel_model.program import Scenario
from kernel_model.state import Pte

# Notes worth a row: (fn or "*", op).
_NOTES = {("*", "begin"), ("*", "end"), ("folio_mkclean", "not_mapped"), ("zap_pte_range", "force_flush"),
          ("__tlb_remove_page", "queue"), ("tlb_flush_rmaps", "walk"), ("do_user_addr_fault", "sigsegv"),
          ("zap_pte_range", "print_bad_pte"), ("tlb_next_batch", "next_batch")}
# Steps not worth a row of their own: they only re-read what the next row shows.
_QUIET = {"filemap_get_folio", "filemap_lookup", "folio_test_mapping", "find_vma", "i_mmap_lookup",
          "folio_test_writeback"}


def describe(ev: Event, names: list[str]) -> str | None:
    """One line for one event, or None when the event is not worth a row."""
    a, r = ev.args, ev.result
    if ev.kind == "ipi":
        if ev.op == "ipi_ack":
            return f"csd_unlock: acks {names[ev.tid]}'s flush IPI (va {a[0]}..{a[1] - 1})"
        return (f"flush_tlb_func: IPI from {names[ev.tid]}, invalidates va {a[0]}..{a[1] - 1}: "
                f"{r} entr{'y' if r == 1 else 'ies'} dropped")
    if ev.kind == "note":
        if ("*", ev.op) not in _NOTES and (ev.fn, ev.op) not in _NOTES:
            return None
        if ev.op == "begin":
            pages, value = a
            what = f"page {pages[0]}" if len(pages) == 1 else f"pages {pages[0]}..{pages[-1]}"
            return f"▶ {ev.fn}({what}{', value ' + str(value) if value is not None else ''})"
        if ev.op == "end":
            return f"◀ {ev.fn} done"
        if ev.op == "not_mapped":
            return "folio_mkclean: !folio_mapped → return 0 (no rmap walk, no PTL)"
        if ev.op == "force_flush":
            return "zap_pte_range: force_flush"
        if ev.op == "queue":
            return f"__tlb_remove_page(pfn {a[0]}{', delay_rmap' if a[1] else ''}) → batch {a[2]}"
        if ev.op == "walk":
            return f"tlb_flush_rmaps: walks batch(es) {', '.join(map(str, a[0]))}"
        if ev.op == "next_batch":
            return f"tlb_next_batch → {'new batch ' + str(a[1]) if a[0] else 'refused (full)'}"
        return f"{ev.fn}: {ev.op} {a}"
    if ev.op in _QUIET:
        return None
    return f"{ev.fn}: {ev.op}({_args(ev.op, a)}){_result(ev.op, r)}"


def _args(op: str, a: tuple) -> str:
    if op in ("spin_lock", "spin_unlock"):
        return f"PTL {a[0]}"
    if op in ("folio_lock", "folio_unlock", "folio_wait_writeback"):
        return f"pfn {a[0]}"
    if op in ("down_read", "up_read", "down_write", "up_write", "downgrade_write"):
        return a[0]
    if op == "ptep_get_and_clear_full":
        return f"va {a[0]}" + (", IPTE: every TLB invalidated" if a[1] else "")
    if op in ("store_tlb",):
        return f"va {a[0]}, " + ("lock incl (+1)" if a[1] is None else f"value {a[1]}")
    if op == "walk_fill":
        return f"va {a[0]}, {'write' if a[1] else 'read'}"
    if op == "set_pte_at":
        return f"va {a[0]}, {_pte(a[1])}"
    if op == "page_remove_rmap":
        return f"pfn {a[0]}{', delayed' if a[1] else ''}"
    if op in ("flush_tlb_others", "flush_tlb_local", "wait_acks"):
        return f"va {a[0]}..{a[1] - 1}"
    return ", ".join(map(str, a))


def _pte(p: Any) -> str:
    if p is None:
        return "pte_none"
    p = Pte(*p)
    bits = "".join(b for b, on in (("W", p.write), ("D", p.dirty), ("A", p.young)) if on)
    return f"PTE{{pfn {p.pfn}{', ' + bits if bits else ''}}}"


def _result(op: str, r: Any) -> str:
    if r is None:
        return "" if op not in ("ptep_get_and_clear_full", "pte_get") else " → pte_none"
    if op in ("ptep_get_and_clear_full", "pte_get"):
        return f" → {_pte(r)}"
    if op == "page_remove_rmap":
        return f" → mapcount {r}"
    if op == "writepage":
        return f" → IO submitted with snapshot {r}"
    if op == "end_page_writeback":
        return f" → disk holds {r}"
    if op == "flush_tlb_others":
        return f" → {r} IPI{'s' if r != 1 else ''} sent"
    if op in ("folio_mapped", "folio_test_dirty", "folio_test_clear_dirty", "set_page_dirty", "folio_mark_dirty",
              "pte_none", "pte_same", "walk_fill", "find_vma"):
        return f" → {str(r).lower()}"
    return f" → {r}"


def story_table(scenario: Scenario, cpu_of: list[int], events: list[Event],
                violations: list[Violation]) -> Table:
    names = [t.name for t in scenario.threads]
    title = "; ".join(f"{v.invariant}: {v.detail}" for v in violations) or "no violation"
    table = Table(title=title, title_justify="left", show_lines=False, expand=False)
    table.add_column("#", justify="right", style="dim")
    for tid, name in enumerate(names):
        table.add_column(f"{name} (CPU {cpu_of[tid]})", overflow="fold")
    column_of_cpu = {}
    for tid, cpu in enumerate(cpu_of):
        column_of_cpu.setdefault(cpu, tid)
    row = 0
    for ev in events:
        text = describe(ev, names)
        if text is None:
            continue
        row += 1
        col = column_of_cpu.get(ev.cpu, 0) if ev.kind == "ipi" else ev.tid
        cells: list[Any] = [""] * len(names)
        style = "bold red" if ev.kind == "ipi" else ("cyan" if ev.kind == "note" else "")
        cells[col] = Text(text, style=style)
        table.add_row(str(row), *cells)
    return table


def print_story(scenario: Scenario, cpu_of: list[int], events: list[Event], violations: list[Violation],
                console: Console | None = None) -> None:
    (console or Console()).print(story_table(scenario, cpu_of, events, violations))
