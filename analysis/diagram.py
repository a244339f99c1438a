"""A counterexample as a race diagram in plain ASCII, the way kernel commit messages draw one (3ea277194daa,
5df397dec7c4): one column per CPU, the kernel function on a line of its own, then ``==>`` one short line per
step that matters (lock and unlock, PTE clear, rmap removal, folio_mkclean's check, a store through a stale TLB
entry, the flush and its IPI, the writeback snapshot, the IO completion). At most ``width`` columns (80 by
default), so it can be pasted into a mail.

It reads the same events as the story (analysis/story.py): what the replay did, in the order it took effect.
Which steps matter is decided by the step (its op), never by the scenario; a store is marked stale when the
PTE it went through was cleared and the flush had not reached its CPU yet, read from the events alone.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from kernel_model.events import Event, Violation
from kernel_model.ops import fmt_of
from kernel_model.program import Scenario

GAP = 1  # at least one space between a column's text and the next column
MIN_TEXT = 26  # the room a CPU's text gets at least ("folio_clear_dirty_for_io()")
DEFAULT_WIDTH = 80  # a mail's line


@dataclass(frozen=True, slots=True)
class Line:
    """One row of the diagram: what one CPU column shows at one point of the global order."""

    column: int
    header: str | None  # the kernel function, when it differs from the column's previous row
    text: str  # "==> ..." lines, each maybe followed by a bracketed result line
    stores: tuple[tuple[int, bool], ...] = ()  # a row of user stores: (va, through a stale TLB entry) each


# How a thread's operation (the "begin" note) is written: the system call or the user access.
_SYSCALL = {"madvise_dontneed": "madvise(MADV_DONTNEED)", "munmap": "munmap()", "mmap_fixed": "mmap(MAP_FIXED)",
            "msync": "msync()", "evict": "shrink_folio_list()", "mprotect": "mprotect(PROT_READ)",
            "mremap": "mremap(MREMAP_FIXED)", "reclaim": "kswapd: shrink_folio_list()"}


class _Tracker:
    """What the diagram needs to know about the past: which virtual pages had their PTE cleared, and which CPUs
    have flushed since (a store in between goes through a stale TLB entry)."""

    def __init__(self) -> None:
        self.cleared: dict[int, set[int]] = {}  # va -> CPUs whose TLB may still hold it
        self.stored_stale: set[int] = set()  # CPUs that stored through a stale entry (their flush comes late)

    def see(self, e: Event, ncpus: int) -> None:
        if e.kind == "step" and e.op == "ptep_get_and_clear_full" and e.result is not None:
            self.cleared[e.args[0]] = set(range(ncpus))
        elif e.kind == "step" and e.op == "set_pte_at":
            self.cleared.pop(e.args[0], None)
        elif e.kind == "ipi" or (e.kind == "step" and e.op == "flush_tlb_local"):
            lo, hi = e.args[0], e.args[1]
            # The cleared addresses, not range(lo, hi): reclaim's full flushes (try_to_unmap_flush,
            # flush_tlb_batched_pending) end at TLB_FLUSH_ALL, 2**30, and a loop over it took minutes an event.
            for va, cpus in self.cleared.items():
                if lo <= va < hi:
                    cpus.discard(e.cpu)

    def stale(self, e: Event) -> bool:
        hit = e.cpu in self.cleared.get(e.args[0], ()) and e.result == "stored"
        if hit:
            self.stored_stale.add(e.cpu)
        return hit


def _step_text(e: Event, names: list[str], late: bool = False) -> str | None:
    """The one short line for a step or IPI that matters (its op's format in kernel_model.ops), or None."""
    a, r = e.args, e.result
    if e.kind == "note":
        return _note_text(e)
    fmt = fmt_of(e.op)
    if not fmt.diagram(a, r):
        return None
    shown = fmt.result(a, r)
    if e.kind == "ipi":
        return f"==> IPI from {names[e.tid]}\n[{shown}" + (": too late]" if late and r else "]")
    call = fmt.call(e.op, a, short=True)
    if len("==> " + call) > MIN_TEXT:  # too long for a narrow column: the name alone (the story has the rest)
        call = fmt.name(e.op, short=True) + "()"
    return f"==> {call}" + (f"\n[{shown}]" if shown is not None else "")


def _note_text(e: Event) -> str | None:
    a = e.args
    if e.op == "not_mapped":
        return "==> !folio_mapped()\n[return 0: no rmap walk, no PTL]"
    if e.op == "force_flush":
        return "==> force_flush"
    if e.op == "queue" and a[1]:
        return f"==> pfn {a[0]} queued, delay_rmap"
    if e.op == "walk":
        return "==> delayed page_remove_rmap()s"
    if e.op == "deferred":  # reclaim's TTU_BATCH_FLUSH: the flush is left to try_to_unmap_flush
        return "==> TLB flush deferred"
    return None


def diagram_lines(scenario: Scenario, cpu_of: list[int] | tuple[int, ...], events: list[Event]) -> list[Line]:
    names = [t.name for t in scenario.threads]
    ncpus = max(list(cpu_of) + [e.cpu for e in events], default=0) + 1
    column_of_cpu: dict[int, int] = {}
    for tid, cpu in enumerate(cpu_of):
        column_of_cpu.setdefault(cpu, tid)
    tracker = _Tracker()
    lines: list[Line] = []
    current_fn: dict[int, str] = {}
    for e in events:
        stale = e.kind == "step" and e.op == "store_tlb" and tracker.stale(e)
        tracker.see(e, ncpus)
        col = column_of_cpu.get(e.cpu, 0) if e.kind == "ipi" else e.tid
        if e.kind == "note" and e.op == "begin":
            _begin_line(lines, current_fn, col, e.fn)
        elif e.kind == "step" and e.op == "store_tlb" and e.result == "stored":
            _store_line(lines, current_fn, col, e.args[0], stale)
        else:
            text = _step_text(e, names, late=e.kind == "ipi" and e.cpu in tracker.stored_stale)
            if text is not None:
                fn = "flush_tlb_func() [IPI]" if e.kind == "ipi" else f"{e.fn}()"
                header = fn if current_fn.get(col) != fn else None
                current_fn[col] = "" if e.kind == "ipi" else fn  # after an IPI, the interrupted code's name again
                lines.append(Line(col, header, text))
    return lines


def _begin_line(lines: list[Line], current_fn: dict[int, str], col: int, fn: str) -> None:
    """A syscall's first step: its name heads the column (a user access shows as its stores instead)."""
    if fn not in _USER:
        current_fn[col] = fn
        lines.append(Line(col, _SYSCALL.get(fn, f"{fn}()"), ""))


def _store_line(lines: list[Line], current_fn: dict[int, str], col: int, va: int, stale: bool) -> None:
    """A user store that landed; a loop of stores (each like the last) stays one row."""
    prev = lines[-1] if lines else None
    store = ((va, stale),)
    if prev is not None and prev.column == col and prev.stores and stale == prev.stores[-1][1]:
        lines[-1] = _stores_line(col, prev.stores + store, prev.header)
    else:
        lines.append(_stores_line(col, store, "user store" if current_fn.get(col) != "user" else None))
    current_fn[col] = "user"


_USER = ("store", "load", "counter")


def _stores_line(col: int, stores: tuple[tuple[int, bool], ...], header: str | None) -> Line:
    vas = sorted({va for va, _ in stores})
    where = f"va {vas[0]}" if len(vas) == 1 else f"va {vas[0]}..{vas[-1]}"
    what = "a store" if len(stores) == 1 else f"{len(stores)} stores"
    return Line(col, header, f"==> {what} to {where}" + ("\n[via STALE TLB entry]" if stores[0][1] else ""),
                stores)


def _column_heads(cpu_of: list[int] | tuple[int, ...], names: list[str], shown: list[int], step: int,
                  avail: dict[int, int], width: int) -> list[str]:
    """One head per shown column ("CPU 1 (zapper)"), underlined; when they do not fit, a legend line first and
    short heads ("CPU 1")."""
    out: list[str] = []
    ncol = len(shown)
    heads = [f"CPU {cpu_of[c]} ({names[c]})" for c in shown]
    if any(len(h) > step - GAP for h in heads[:-1]) or len(heads[-1]) > avail[shown[-1]]:
        out.extend(textwrap.wrap("; ".join(heads), width))  # the legend, then short column heads
        heads = [f"CPU {cpu_of[c]}" for c in shown]
    out.append("".join(h.ljust(step)[:step] if i < ncol - 1 else h for i, h in enumerate(heads)).rstrip())
    out.append("".join(("-" * len(h)).ljust(step)[:step] if i < ncol - 1 else "-" * len(h)
                       for i, h in enumerate(heads)).rstrip())
    return out


def _cell_rows(ln: Line, avail: int) -> list[str]:
    """A line's header and text, wrapped to ``avail`` characters (not yet indented to its column)."""
    header = ln.header
    if header is not None and len(header) > avail:
        header = header.removesuffix("()")
    rows: list[str] = []
    for cell in ([header] if header else []) + (ln.text.split("\n") if ln.text else []):
        first = "    " if cell.startswith("[") else ""  # a result: under its call, as commit messages do
        rows.extend(textwrap.wrap(cell, avail, initial_indent=first,
                                  subsequent_indent=" " * (len(first) + (1 if first else 4)),
                                  break_on_hyphens=False) or [""])
    return rows


def render_diagram(scenario: Scenario, cpu_of: list[int] | tuple[int, ...], events: list[Event],
                   violations: list[Violation], width: int = DEFAULT_WIDTH, title: str | None = None) -> str:
    """The diagram as text, every line at most ``width`` characters (and at least 40 wide).

    As in commit messages, each line holds one CPU's text, starting at that CPU's column; with many CPUs the
    columns start closer together and a line may run on over the (empty) columns to its right, up to
    ``MIN_TEXT`` characters, so that every CPU's text stays readable."""
    width = max(40, width)
    names = [t.name for t in scenario.threads]
    lines = diagram_lines(scenario, cpu_of, events)
    shown = sorted({ln.column for ln in lines}) or list(range(len(names)))
    ncol = len(shown)
    step = width // ncol if ncol == 1 or width // ncol >= MIN_TEXT else max(6, (width - MIN_TEXT) // (ncol - 1))
    start = {col: i * step for i, col in enumerate(shown)}
    avail = {col: min(width - start[col], max(step - GAP, MIN_TEXT)) for col in shown}
    out: list[str] = []
    if title:
        out.extend(textwrap.wrap(title, width))
        out.append("")
    out.extend(_column_heads(cpu_of, names, shown, step, avail, width))
    for ln in lines:
        out.extend((" " * start[ln.column] + piece)[:width] for piece in _cell_rows(ln, avail[ln.column]))
    if violations:
        out.append("")
        for v in violations:
            out.extend(textwrap.wrap(f"{v.invariant}: {v.detail}", width))
    return "\n".join(line.rstrip() for line in out) + "\n"
