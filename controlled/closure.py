"""The conflict closure of controlled.reducer over bit sets: which agents a persistent set grown from one must hold.

The reducer names each agent by a small number (thread ``tid``: ``tid``; CPU ``c``'s IPI handler: ``nthreads +
c``) and hands over, per agent, what its enabled transitions conflict with as two bit sets over those numbers:
``defs`` (CONFLICT: whatever the set holds) and ``conds`` (CONFLICT_UNLESS: only while an agent outside the set
may flush that thread's TLB, or IPI that CPU). The closure (Reducer._persistent_set tries one per seed) is then
a few ANDs and ORs per round instead of sets of tuples.

The closure of agent ``seed``'s transitions is none when it needs a transition whose footprint is unknown
(``unknown``), an agent that cannot move now (not in ``moves``: it could move later, outside the set), or as many
transitions as ``bound``. What an agent outside the set may still do shrinks as the set grows, since agents in it
cannot move before the set's transitions have run: a store-only thread whose TLB entries are dirty only stores
through them unless an agent outside the set (other than itself) may drop or flush them (``inval``: the CPUs
each thread may drop or flush entries of; or an IPI queued on that CPU, whose handler is outside); a CPU with no
IPI queued takes none unless an agent outside the set may send one (``sends``: the CPUs each thread may IPI, its
own left out). So agents that conflict whatever the set holds join first, and those whose conflict may vanish as
it grows join only when nothing else is left. The set is returned once no agent outside it conflicts, judged
against that final set: it is persistent.

``Closure`` here is the Python one; controlled/_closure.pyx is the same over C words (setup.py builds it
optionally), used for up to 64 agents. tests/test_closure_compiled.py checks that both give the same members.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from controlled.compiled_only import fresh_extension

WORD = 64  # agents the compiled closure holds in one machine word


class Closure:
    """The agents' relations in one state; ``close(seed, bound)`` is the members' bit set, 0 when none closes."""

    __slots__ = ("nthreads", "cpu_of", "defs", "conds", "counts", "unknown", "moves", "threads", "inval", "sends",
                 "queued")

    def __init__(self, nthreads: int, cpu_of: list[int], defs: list[int], conds: list[int], counts: list[int],
                 unknown: int, moves: int, threads: int, inval: list[int], sends: list[int], queued: int) -> None:
        self.nthreads = nthreads
        self.cpu_of = cpu_of
        self.defs = defs
        self.conds = conds
        self.counts = counts
        self.unknown = unknown
        self.moves = moves
        self.threads = threads
        self.inval = inval
        self.sends = sends
        self.queued = queued

    def close(self, seed: int, bound: int) -> int:
        n = self.nthreads
        members = 1 << seed
        while True:
            if members & self.unknown:
                return 0
            count = definite = conditional = 0
            rest = members
            while rest:
                low = rest & -rest
                a = low.bit_length() - 1
                rest ^= low
                count += self.counts[a]
                definite |= self.defs[a]
                conditional |= self.conds[a]
            if count >= bound:
                return 0
            definite &= ~members
            outside = self.threads & ~members
            kept = 0
            rest = conditional & ~members
            while rest:
                low = rest & -rest
                a = low.bit_length() - 1
                rest ^= low
                if a < n:  # a thread: may someone outside flush its CPU's TLB?
                    cpu = self.cpu_of[a]
                    if (self.queued >> cpu & 1 and not members >> (n + cpu) & 1
                            or _any_holds(outside & ~low, self.inval, cpu)):
                        kept |= low
                else:  # a CPU with nothing queued: may someone outside still IPI it?
                    cpu = a - n
                    if _any_holds(outside, self.sends, cpu):
                        kept |= low
            if not definite and not kept:
                return members
            if definite & ~self.moves:
                return 0
            joining = definite or (kept & self.moves)
            if not joining:
                return 0
            members |= joining


def _any_holds(threads: int, cpus: list[int], cpu: int) -> bool:
    """Does one of ``threads`` (a bit set) have ``cpu`` in its bit set of CPUs?"""
    while threads:
        low = threads & -threads
        threads ^= low
        if cpus[low.bit_length() - 1] >> cpu & 1:
            return True
    return False


def compiled_closure() -> Callable[..., object] | None:
    """controlled/_closure.pyx's Closure, if its build is fresh and not turned off."""
    module = fresh_extension("controlled._closure", Path(__file__).with_name("_closure.pyx"),
                             "the reducer's closure runs in Python (slower)")
    return None if module is None else module.Closure
