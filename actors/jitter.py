"""Delay injection at named race points (KCSAN-style): random pauses that widen windows.

A pause happens *before* a step, between two instructions, where an IPI may land; it never holds a lock or
forces an order: every interleaving it makes likelier was possible without it. The random choices come from a
``random.Random`` seeded from (campaign seed, trial id, CPU, thread), so a trial's pauses are reproducible.
"""

from __future__ import annotations

import random
import time
from typing import Final

# The steps around which the race's windows open and close (kernel brief §6):
RACE_POINTS: Final = frozenset({
    "store_tlb",                 # A's store through a possibly stale TLB entry
    "ptep_get_and_clear_full",   # zap_pte_range's xchg (and ptep_clear_flush's in folio_mkclean)
    "page_remove_rmap",          # the eager order's early mapcount drop
    "flush_tlb_others",          # the shootdown that closes the window
    "folio_mapped",              # folio_mkclean's gate
    "folio_test_clear_dirty",    # between folio_mkclean and writepage
    "writepage",                 # the snapshot of the page's contents
    "ipi_flush",                 # a flush IPI taken late (the target had interrupts off): stale entries live on
})
PAUSE_PROBABILITY: Final = 1.0


class Jitter:
    def __init__(self, max_us: float, seed: int, trial: int, cpu: int, tid: int) -> None:
        self.max_us = max_us
        # A string seed is hashed with SHA-512 by random.Random: stable across processes and PYTHONHASHSEED.
        self.rng = random.Random(f"tlbrace:{seed}:{trial}:{cpu}:{tid}")
        # Swarm testing: each trial arms a random half of the race points on each thread, so that some trials
        # pause one side of a window and not the other (uniform pauses everywhere tend to cancel out).
        self.armed = frozenset(p for p in sorted(RACE_POINTS) if self.rng.random() < 0.5)

    def pause_before(self, op: str) -> int:
        """Sleep before ``op`` if it is a race point and the dice say so; returns the pause in µs (0: none)."""
        if self.max_us <= 0 or op not in self.armed or self.rng.random() >= PAUSE_PROBABILITY:
            return 0
        us = int(self.rng.uniform(0, self.max_us))
        if us:
            time.sleep(us / 1e6)
        return us


class IpiLatency:
    """The race-window aligner's IPI delivery latency (actors.fuzzy_sync): before its handler runs, each flush IPI
    a CPU receives waits a uniform time in [0, max_us], as a hardware IPI takes microseconds to arrive (the
    target's thread runs on meanwhile). The draws come from a ``random.Random`` seeded from (campaign seed, trial
    id, CPU)."""

    def __init__(self, max_us: float, seed: int, trial: int, cpu: int) -> None:
        self.max_us = max_us
        self.rng = random.Random(f"tlbrace-ipi-latency:{seed}:{trial}:{cpu}")

    def pause(self) -> int:
        """Sleep before one IPI's handler; returns the pause in µs (0: none)."""
        if self.max_us <= 0:
            return 0
        us = int(self.rng.uniform(0, self.max_us))
        if us:
            time.sleep(us / 1e6)
        return us
