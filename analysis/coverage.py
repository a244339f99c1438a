"""Race-window coverage: which relative orders of the race-critical events a campaign actually exercised.

The lost-write window (kernel brief §6) is bounded by a handful of events on different CPUs: the zap's PTE clear
of a dirty PTE, its rmap removal, the flush IPI reaching each other CPU, writeback's ``folio_mapped`` check in
folio_mkclean, its IO snapshot (writepage), and a store that lands through a TLB entry after the PTE clear. For
each pair of them on different CPUs a trial shows one order or the other (or lacks one of them). A campaign that
never produced "mkclean check after rmap removal, before the flush" never tested the bug, whatever its verdicts:
this table says which orders occurred and which never did.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from typing import Iterable

from rich.table import Table

from kernel_model.events import Event
from kernel_model.state import Pte

# The order in which the events appear in the table, and the window's "natural" order for the lost write.
KINDS = ("PTE clear", "rmap removal", "mkclean check", "IO snapshot", "stale store", "flush")

Fact = tuple  # ("seen", label) | ("order", first_label, second_label) | ("window",)
# Kinds defined as "after the PTE clear": their order against it is fixed by definition, not worth a row.
_AFTER_CLEAR = frozenset({"rmap removal", "stale store", "flush"})


def _label(kind: str, cpu: int) -> str:
    return f"{kind} @CPU{cpu}"


def race_events(events: list[Event]) -> dict[str, int]:
    """label → seq of the first race-critical event of that kind (per CPU) in one trial, by rules: the window
    opens at the first zap_pte_range clear of a dirty PTE; the rest are the events on that page that follow."""
    clear = next((e for e in events if _clears_dirty_pte(e)), None)
    if clear is None:
        return {}
    window = _Window(clear, Pte(*clear.result).pfn, clear.args[0])
    found: dict[str, int] = {_label("PTE clear", clear.cpu): clear.seq}
    for e in events:
        kind = window.kind_of(e)
        if kind is not None:
            found.setdefault(_label(kind, e.cpu), e.seq)
    return found


def _clears_dirty_pte(e: Event) -> bool:
    return (e.kind == "step" and e.op == "ptep_get_and_clear_full" and e.fn == "zap_pte_range"
            and e.result is not None and Pte(*e.result).dirty)


@dataclass(frozen=True, slots=True)
class _Window:
    """The race window one zap opens on one page: which later events belong to it, and as what."""

    clear: Event  # the zapper's clear of the dirty PTE
    pfn: int
    va: int

    def kind_of(self, e: Event) -> str | None:
        if e.kind == "ipi":  # the invalidating half of flush_tlb_func (its ack is "ipi_ack")
            flush = e.op == "ipi_flush" and e.seq > self.clear.seq and e.tid == self.clear.tid
            return "flush" if flush else None
        if e.kind != "step":
            return None
        if e.op in ("folio_mapped", "writepage"):  # before the clear too: that order counts as well
            return None if e.args[0] != self.pfn else "mkclean check" if e.op == "folio_mapped" else "IO snapshot"
        if e.seq <= self.clear.seq:
            return None
        if e.op == "page_remove_rmap":
            return "rmap removal" if e.tid == self.clear.tid and e.args[0] == self.pfn else None
        stale = e.op == "store_tlb" and e.result == "stored" and e.args[0] == self.va and e.cpu != self.clear.cpu
        return "stale store" if stale else None


def observe(events: list[Event]) -> frozenset:
    """The facts one trial contributes: which events it had, and their pairwise order across CPUs."""
    found = race_events(events)
    facts: set[Fact] = {("seen", label) for label in found}
    for a, b in combinations(sorted(found, key=_sort_key), 2):
        if _cpu(a) != _cpu(b):
            facts.add(("order", a, b) if found[a] < found[b] else ("order", b, a))
    if _whole_window(found):
        facts.add(("window",))
    return frozenset(facts)


def _whole_window(found: dict[str, int]) -> bool:
    """The lost write's order (brief §6): rmap removal < mkclean check < IO snapshot < stale store < the flush
    reaching the storing CPU."""
    def at(kind: str) -> list[tuple[int, str]]:
        return [(seq, _cpu(label)) for label, seq in found.items() if label.startswith(kind + " @")]

    chain = [min(at(k), default=None) for k in ("rmap removal", "mkclean check", "IO snapshot")]
    if None in chain or not (chain[0][0] < chain[1][0] < chain[2][0]):
        return False
    return any(chain[2][0] < seq and any(f_cpu == cpu and f_seq > seq for f_seq, f_cpu in at("flush"))
               for seq, cpu in at("stale store"))


def _cpu(label: str) -> str:
    return label.rsplit("@", 1)[1]


def _sort_key(label: str) -> tuple[int, str]:
    kind = label.rsplit(" @", 1)[0]
    return (KINDS.index(kind), label)


@dataclass(frozen=True, slots=True)
class PairCoverage:
    a: str
    b: str
    a_first: int
    b_first: int
    missing: int  # trials lacking one of the two events


@dataclass(frozen=True, slots=True)
class Coverage:
    trials: int
    pairs: tuple[PairCoverage, ...]
    whole_window: int = 0  # trials that ran the lost write's whole order (see _whole_window)

    @property
    def observed_orders(self) -> int:
        return sum((p.a_first > 0) + (p.b_first > 0) for p in self.pairs)

    @property
    def possible_orders(self) -> int:
        return 2 * len(self.pairs)

    @property
    def never(self) -> list[str]:
        out = []
        for p in self.pairs:
            if not p.a_first:
                out.append(f"{p.a} before {p.b}")
            if not p.b_first:
                out.append(f"{p.b} before {p.a}")
        return out

    def as_dict(self) -> dict:
        return {"trials": self.trials, "whole_window": self.whole_window, "observed_orders": self.observed_orders,
                "possible_orders": self.possible_orders, "never": self.never,
                "pairs": [{"a": p.a, "b": p.b, "a_first": p.a_first, "b_first": p.b_first, "missing": p.missing}
                          for p in self.pairs]}


def aggregate(per_trial: Iterable[frozenset]) -> Coverage:
    counts: Counter = Counter()
    trials = 0
    for facts in per_trial:
        trials += 1
        counts.update(facts)
    labels = sorted({f[1] for f in counts if f[0] == "seen"}, key=_sort_key)
    pairs = []
    for a, b in combinations(labels, 2):
        if _cpu(a) == _cpu(b):
            continue  # same CPU: program order, nothing to cover
        if a.startswith("PTE clear @") and b.rsplit(" @", 1)[0] in _AFTER_CLEAR:
            continue
        ab, ba = counts[("order", a, b)], counts[("order", b, a)]
        pairs.append(PairCoverage(a, b, ab, ba, trials - ab - ba))
    return Coverage(trials, tuple(pairs), counts[("window",)])


def coverage_table(cov: Coverage) -> Table:
    pct = 100.0 * cov.observed_orders / cov.possible_orders if cov.possible_orders else 0.0
    table = Table(title=f"Race-window coverage over {cov.trials} trials: {cov.observed_orders} of "
                        f"{cov.possible_orders} cross-CPU orders observed ({pct:.0f}%)", title_justify="left",
                  caption=f"{cov.whole_window} trial(s) ran the whole lost-write order: rmap removal < mkclean "
                          "check < IO snapshot < stale store < flush to that CPU", caption_justify="left")
    table.add_column("event A")
    table.add_column("event B")
    table.add_column("A before B", justify="right")
    table.add_column("B before A", justify="right")
    table.add_column("one missing", justify="right", style="dim")
    for p in cov.pairs:
        table.add_row(p.a, p.b, _count(p.a_first), _count(p.b_first), str(p.missing))
    return table


def _count(n: int) -> str:
    return str(n) if n else "[bold red]never[/]"
