"""Sleep sets for the parallel search: each visited state's sleep set kept beside its fingerprint, in shared words.

controlled.sleep_sets keeps, per visited state, the sleep set it was first reached with, and a revisit with a
sleep set that is not a superset of it explores the transitions stored asleep that are awake now, the stored set
becoming the intersection (Godefroid 1996, ch. 5, "sleep sets and state matching"). The parallel search's
workers (controlled.parallel_search) reach each other's states, so that set has to be where every worker sees it:
here, the second word of the visited table's slot (SharedVisited(pairs=True)), as a bit mask over the
transitions in the representative's names (one bit per thread step and per (CPU, initiator) IPI; scenarios with
more than MAX_BITS of them search without sleep sets, as every parallel search did before).

The first visitor claims the slot (compare-and-swap on the fingerprint) and then publishes its sleep set with
the READY bit, in the same expansion (depth_first's is_new and visit are consecutive); a revisit waits for
READY, then clears from the stored mask the bits outside its own sleep set with one compare-and-swap, and
explores exactly the transitions it cleared (AtomicWords.intersect). Each stored bit is cleared by one process
alone, so every transition the sequential algorithm would explore again from that state is explored by the
process that woke it, with the intersection as its sleep set, as in one process. Which worker reaches a state
first decides which sleep set it is stored with, so the state and transition counts may differ from run to run
(never the verdicts or the end states: tests/test_parallel_sleep_sets.py); `--no-sleep-sets` gives the exact,
order-independent counts of a one-process search with hash compaction and without sleep sets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controlled.shared_words import SharedVisited
from controlled.sleep_sets import NOTHING, SleepSets, from_representative, to_representative

if TYPE_CHECKING:
    from controlled.machine import Machine, Transition

READY = 1 << 63  # the slot's sleep set is published (its first visitor writes it right after claiming the slot)
MAX_BITS = 63  # transitions a sleep set can name: the word's other bits
MEMO_BOUND = 65536  # sleep sets each TransitionBits memo holds before it starts again


class TransitionBits:
    """Transitions as bits: thread ``t``'s step is bit ``t``, the IPI handler on ``cpu`` for initiator ``t`` is
    bit ``nthreads + cpu * nthreads + t``."""

    def __init__(self, nthreads: int, ncpus: int) -> None:
        self.nthreads = nthreads
        self.names: list[Transition] = [("t", t) for t in range(nthreads)]
        self.names += [("i", cpu, t) for cpu in range(ncpus) for t in range(nthreads)]
        # Both directions memoised: a worker converts a sleep set on every state it reaches, and the sets are
        # subsets of the few transitions enabled together, so they repeat. Uncached, the two conversions were 2%
        # of a worker's samples on the largest ladder cell (py-spy, --workers 2); each memo starts again at
        # MEMO_BOUND entries.
        self._bits: dict[frozenset, int] = {}
        self._transitions: dict[int, frozenset] = {}

    @classmethod
    def fits(cls, m: Machine) -> bool:
        return cls.count(m) <= MAX_BITS

    @staticmethod
    def count(m: Machine) -> int:
        """How many transitions a sleep set of ``m`` may name: each thread's step and each (CPU, initiator) IPI."""
        return m.nthreads * (1 + m.ncpus)

    @classmethod
    def too_many(cls, m: Machine) -> str:
        """Why the workers search ``m`` without sleep sets, when its transitions do not fit ("" when they do)."""
        n = cls.count(m)
        return "" if n <= MAX_BITS else (f"{m.nthreads} threads and {m.ncpus} CPUs make {n} transitions, more than "
                                         f"the {MAX_BITS} a sleep set shared between workers can name")

    def bits(self, trs: frozenset) -> int:
        out = self._bits.get(trs)
        if out is None:
            n = self.nthreads
            out = 0
            for tr in trs:
                out |= 1 << (tr[1] if tr[0] == "t" else n + tr[1] * n + tr[2])
            if len(self._bits) >= MEMO_BOUND:
                self._bits.clear()
            self._bits[trs] = out
        return out

    def transitions(self, bits: int) -> frozenset:
        out = self._transitions.get(bits)
        if out is None:
            out = frozenset([name for b, name in enumerate(self.names) if bits >> b & 1])
            if len(self._transitions) >= MEMO_BOUND:
                self._transitions.clear()
            self._transitions[bits] = out
        return out


class SharedSleepSets(SleepSets):
    """SleepSets whose stored sets live in the parallel search's shared table of pairs (see the module
    docstring). ``is_new`` claims a state's slot; ``visit`` (called right after it, for the same state) publishes
    or intersects its sleep set."""

    def __init__(self, m: Machine, visited: SharedVisited) -> None:
        super().__init__(m)
        assert visited.pairs and TransitionBits.fits(m)
        self.visited = visited
        self.words = visited.words
        self.code = TransitionBits(m.nthreads, m.ncpus)
        self.slot = -1  # the sleep-set word of the pair the last is_new claimed or found
        self.count = 0  # states this process claimed first (a worker's count: controlled.parallel_search)
        # is_new and visit run on every transition a worker runs: the words' compiled operations and the symmetry
        # bound once, not looked up through the table and the machine each time, and this module compiled with
        # the hot ones (kernel_model.compiled.HOT_MODULES). Ladder pages=1 writers=2 stores=1, the whole search in
        # one forked worker, cachegrind: 4,513.2M instructions interpreted and unbound, 4,475.8M bound, 4,424.9M
        # compiled; one process 4,318.7M (bench/worker_instructions.py).
        self._claim, self._mask = visited.words.claim, visited.mask
        self._store, self._intersect = visited.words.store, visited.words.intersect
        self._symmetry = m.symmetry

    def is_new(self, fingerprint: object) -> bool:
        at = self._claim(0, self._mask, fingerprint)
        if at >= 0:
            self.slot = at + 1
            self.count += 1
            return True
        self.slot = -at
        return False

    def adopt(self, fingerprint: int, asleep: frozenset) -> None:
        """Put a state another search visited (the seed phase's) into the table with the sleep set it stored."""
        at = self.visited.claim(fingerprint)
        if at >= 0:  # else fingerprints 0 and 1, which the table holds as one (a collision, as any other)
            self.words.store(at + 1, self.code.bits(asleep) | READY)

    def visit(self, ckey: object, fresh: bool, asleep: frozenset) -> tuple[tuple, frozenset] | None:
        if fresh and not asleep:  # most states: reached first, with nothing asleep
            self._store(self.slot, READY)
            return None
        perm = self._symmetry.last if self._symmetry else None  # SleepSets._permutation
        mine = self.code.bits(to_representative(asleep, perm, self._fields)) if asleep else 0
        if fresh:
            self._store(self.slot, mine | READY)
            return None
        stored = self._intersect(self.slot, mine, READY) & ~READY
        awake = stored & ~mine
        if not awake:
            return None
        return (tuple(sorted(from_representative(self.code.transitions(awake), perm))),
                from_representative(self.code.transitions(stored & mine), perm))


__all__ = ["READY", "MAX_BITS", "TransitionBits", "SharedSleepSets", "NOTHING"]
