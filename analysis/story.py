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
from kernel_model.ops import fmt_of
from analysis.printable import printable
from kernel_model.program import Scenario

# Notes worth a row: (fn or "*", op).
_NOTES = {("*", "begin"), ("*", "end"), ("folio_mkclean", "not_mapped"), ("zap_pte_range", "force_flush"),
          ("__tlb_remove_page", "queue"), ("tlb_flush_rmaps", "walk"), ("do_user_addr_fault", "sigsegv"),
          ("zap_pte_range", "print_bad_pte"), ("tlb_next_batch", "next_batch"),
          ("set_tlb_ubc_flush_pending", "deferred")}


def describe(ev: Event, names: list[str]) -> str | None:
    """One line for one event, or None when the event is not worth a row. A step or IPI is written as its op's
    format in the op table (kernel_model.ops) says: ``fn: op(args) → result``."""
    a, r = ev.args, ev.result
    if ev.kind == "note":
        return _note(ev, names)
    fmt = fmt_of(ev.op)
    if not fmt.story:
        return None
    shown = fmt.result(a, r)
    sender = f"{names[ev.tid]}'s flush IPI: " if ev.kind == "ipi" else ""
    return f"{ev.fn}: {sender}{fmt.call(ev.op, a)}" + (f" → {shown}" if shown is not None else "")


def _note(ev: Event, names: list[str]) -> str | None:
    a = ev.args
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
    if ev.op == "deferred":
        return "set_tlb_ubc_flush_pending: TLB flush deferred to try_to_unmap_flush"
    if ev.op == "next_batch":
        return f"tlb_next_batch → {'new batch ' + str(a[1]) if a[0] else 'refused (full)'}"
    return f"{ev.fn}: {ev.op} {a}"


def story_table(scenario: Scenario, cpu_of: list[int], events: list[Event],
                violations: list[Violation]) -> Table:
    names = [t.name for t in scenario.threads]
    title = printable("; ".join(f"{v.invariant}: {v.detail}" for v in violations) or "no violation")
    # The caption: the scenario's description, which for a race of mm's history names its commit and says the
    # race in the commit's words (docs/history.md).
    table = Table(title=title, title_justify="left", show_lines=False, expand=False,
                  caption=printable(scenario.description) or None, caption_justify="left")
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
