"""Known kernel races the model shows on kernels that should be correct, and the check that a fuzz violation
really is one of them.

A fuzz campaign on a kernel ``expects_no_bug`` calls correct shrinks every violation as a model bug, except one
``known_kernel_race`` labels: a real kernel race that no kernel of the registry fixes. The label is first read off
the scenario's operations and the configuration, so on its own it could hide a model bug that happens to meet
the same conditions. ``check_known_race`` therefore searches the scenario again on the same kernel with that
race's window closed (the one configuration switch the race needs, set the other way) and keeps the label only if
the violation goes away there. The oracle never reads the configuration: only the kernel paths change.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from controlled.explorer import explore
from kernel_model.config import Config

PATCHED_ARCHES = ("up", "s390")  # they keep the old order, safely (5df397dec7c4's commit message)


def expects_no_bug(cfg: Config) -> bool:
    """The patched kernel (``delayed``), or an arch whose old order is safe (``up``, ``s390``), with no mutant and
    no fix of kernel_model.kernels missing: a violation there is a model bug or a real kernel bug, worth a minimal
    scenario (unless it is ``known_kernel_race``)."""
    return cfg.mutant is None and not cfg.without and (cfg.ordering == "delayed" or cfg.arch in PATCHED_ARCHES)


# A real kernel race that no kernel of the registry has fixed, so the model shows it where expects_no_bug says
# the kernel is correct (docs/reclaim.md): kswapd's shrink_folio_list clears a dirty PTE with its flush deferred
# (try_to_unmap_one, set_tlb_ubc_flush_pending), removes the rmap, and sends the folio to activate_locked, which
# unlocks it before try_to_unmap_flush; write_cache_pages then locks it, folio_mkclean finds it unmapped, and a
# store through the writer's stale dirty TLB entry lands in a page writeback has just cleaned. On SMP with
# reclaim's batched flush (4.3+) and kswapd's "seen twice" rule (4.11+), whatever the zap order.
RECLAIM_WRITEBACK_RACE = "reclaim_activate_vs_writeback"
RECLAIM_WRITEBACK_INVARIANTS = frozenset({"lost_dirty_data", "expect_failed"})  # the loss, and a failed read-back


# The other (docs/up-v6.2.md): 5df397dec7c4 (6.2) made zap_pte_range force the flush of a dirty file PTE only
# where tlb_delay_rmap is true, never on UP; a zapper preempted after pte_unmap_unlock then leaves its CPU's stale
# dirty entry to the writer, and msync's folio_mkclean finds the folio unmapped. On UP from 6.2 (`--kernel`), with
# an operation that zaps.
UP_ZAP_FLUSH_RACE = "up_zap_flush_after_unlock"
# Where each is argued (the fuzz report points there).
KNOWN_RACE_DOCS = {RECLAIM_WRITEBACK_RACE: "docs/reclaim.md", UP_ZAP_FLUSH_RACE: "docs/up-v6.2.md"}
_ZAPPING_KINDS = frozenset({"madvise_dontneed", "munmap", "mmap_fixed"})

# Each race's window closed, all else kept: reclaim flushing at once in try_to_unmap_one (ptep_clear_flush), as
# before reclaim's batched flush (72b252aed506, 4.3), so no deferred flush is pending when kswapd unlocks the
# folio; zap_pte_range forcing the flush of a dirty file PTE before pte_unmap_unlock on UP, as 3.15-6.1 did.
# Closing the deferred flush rather than kswapd's seen-twice rule: the flush is the race's mechanism, the rule
# only decides which branch unlocks the folio before it.
_WINDOW_CLOSED = {RECLAIM_WRITEBACK_RACE: {"batched_unmap_flush": False},
                  UP_ZAP_FLUSH_RACE: {"zap_dirty_forces_flush": True}}

# What check_known_race found with the window closed.
CONFIRMED = "confirmed"  # the whole state space searched: no such violation
NOT_REFUTED = "not refuted"  # the budget ran out first, with no such violation
REFUTED = "refuted"  # the scenario still breaks an invariant: it is not (only) that race


def known_kernel_race(cfg: Config, kinds: frozenset[str], invariant: str) -> str | None:
    """The known kernel race a violation of ``invariant`` is, in a scenario using these operation kinds on a
    configuration expects_no_bug calls correct, or None: a model bug or an unknown kernel bug (on a kernel that
    lacks a fix, a loss may be the zap race as well: no label there)."""
    if not expects_no_bug(cfg) or invariant not in RECLAIM_WRITEBACK_INVARIANTS or "msync" not in kinds:
        return None
    if "reclaim" in kinds and cfg.arch == "smp" and cfg.batched_unmap_flush and cfg.reclaim_seen_twice:
        return RECLAIM_WRITEBACK_RACE
    if cfg.arch == "up" and not cfg.zap_dirty_forces_flush and kinds & _ZAPPING_KINDS:
        return UP_ZAP_FLUSH_RACE
    return None


def window_closed(cfg: Config, race: str) -> Config:
    """``cfg`` with ``race``'s window closed (_WINDOW_CLOSED)."""
    return replace(cfg, **_WINDOW_CLOSED[race])


@dataclass(frozen=True, slots=True)
class RaceCheck:
    """check_known_race's answer: the verdict with the window closed, and how many states it searched."""

    verdict: str  # CONFIRMED, NOT_REFUTED or REFUTED
    states: int
    invariants: tuple[str, ...] = ()  # REFUTED: what the search with the window closed found

    def describe(self) -> str:
        found = f" ({', '.join(self.invariants)})" if self.invariants else ""
        return f"window closed: {self.verdict}{found}, {self.states} states"


def check_known_race(scenario: Any, cfg: Config, race: str, budget: int) -> RaceCheck:
    """Search ``scenario`` breadth first with ``race``'s window closed. That kernel expects no bug either, so any
    violation there (``invariant`` or another) refutes the label; else CONFIRMED when the search covered every
    state, NOT_REFUTED when the budget stopped it first."""
    result = explore(scenario, window_closed(cfg, race), "bfs", budget=budget)
    if result.found:
        return RaceCheck(REFUTED, result.states, tuple(dict.fromkeys(i for f in result.found for i in f.invariants)))
    return RaceCheck(CONFIRMED if result.complete else NOT_REFUTED, result.states)
