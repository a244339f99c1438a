"""Sleep sets on top of the persistent sets: transitions that need not be tried again from a state.

Persistent sets (controlled.reduction) choose which agents move from a state; they still try two independent
transitions in both orders when both are in the set. A sleep set (Godefroid, "Partial-Order Methods for the
Verification of Concurrent Systems", LNCS 1032, 1996, ch. 5) remembers, for each state, transitions already
explored from an ancestor whose every interleaving with what ran since is covered there: after exploring
``t1`` from ``s``, the next transition ``t2`` carries ``t1`` into ``s.t2``'s sleep set when the two are
independent, and ``t1`` is not tried from ``s.t2`` (``s.t2.t1`` is ``s.t1.t2``, reached already). A sleeping
transition wakes up (leaves the sleep set) once a transition dependent on it runs. Terminal states, and so the
verdicts judged there, are all still reached (Godefroid's Theorem 5.?: persistent sets with sleep sets preserve
deadlocks); tests/test_explore.py checks end states and verdicts against the full search.

State caching (the visited set) needs the classic rule (Godefroid, ch. 5, "sleep sets and state matching"):
each visited state keeps the sleep set it was first reached with; reaching it again with a sleep set that is
not a superset of the stored one explores from it the transitions stored asleep that are awake now, and the
stored set becomes the intersection. Only non-empty sleep sets are stored: most states have none.

Symmetry: the visited set holds one state per orbit of interchangeable writers (controlled.symmetry), so a
state may be reached again as a permutation of the first. Sleep sets are therefore stored in the
representative's names (Symmetry.last: the permutation the representative applied) and renamed back.

Independence of two enabled transitions in a state: their footprints (controlled.reduction) do not
conflict, and neither can disable the other. A footprint names the locks and bits a blocking step waits on
(spin_lock's PTL, folio_wait_writeback's PG_writeback, ...), so a step that disables another conflicts with
it; what footprints do not show is blocking through the scheduler, so these count as dependent: a step whose
footprint is unknown (the counter writer's increment: the cycle proviso keeps it out of every reduction) or
that writes the UP preemption token (on UP a thread holding a PTL is not preempted: taking it stops every other
thread); an IPI and any step of its initiator or of a thread of its CPU (that thread may start spinning or
waiting for acks, which stops the CPU from taking IPIs under no_ipi_while_spinning); and with
no_ipi_while_spinning, an IPI and any spin_lock (taking a PTL another CPU spins on stops that CPU from taking
IPIs). Coarser than the kernel needs, on purpose: a dependence wrongly assumed only costs reduction.

Parallel search (controlled.parallel_search) keeps each state's sleep set beside its fingerprint in the shared
table (controlled.shared_sleep_sets), where the scenario's transitions fit a word.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controlled.coverings import transition_context
from controlled.memo import MISSING, BoundedMemo, Interner
from controlled.reduction import conflict

if TYPE_CHECKING:
    from controlled.machine import Machine, Transition
    from controlled.symmetry import Permutation

# Why a dfs asked to prune with sleep sets ran without them (ExploreResult.sleep_sets_off): they judge two
# transitions independent by the reduction's footprints, which a machine without the reduction does not build.
NEEDS_REDUCTION = "they need the partial-order reduction (--no-reduce was given)"
NOTHING: frozenset = frozenset()
# Answers the independence memos keep per generation (controlled.memo; ladder cells ask a few thousand
# distinct pairs in all).
FOOTPRINT_BOUND = 4096
INDEPENDENT_BOUND = 16384
SHARED_BOUND = 4096  # distinct sleep sets, and signatures, kept as one shared copy each
_DEPENDENT = object()  # the footprint of a transition that depends on every other


class _SpinLock:
    """The footprint of a spin_lock when a CPU spinning on a PTL takes no IPIs: it depends on every IPI."""

    __slots__ = ("fp",)

    def __init__(self, fp: dict) -> None:
        self.fp = fp


def _plain(fp: object) -> object:
    return fp.fp if isinstance(fp, _SpinLock) else fp


class SleepSets:
    """The sleep sets of one exhaustive search on machine ``m``: independence in m's current state, and the
    sleep sets the visited states were reached with."""

    def __init__(self, m: Machine) -> None:
        if m.footprints is None:
            raise ValueError("sleep sets need the footprints of partial-order reduction (Machine(reduce=True))")
        self.m = m
        self._stored: dict[object, frozenset] = {}  # canonical state -> its sleep set, representative's names
        self._intern = Interner(SHARED_BOUND)  # one copy of each sleep set (most states share a few dozen)
        # Each signature's number, for the memos' keys: a pair of small ints hashes far cheaper than a pair of
        # signatures (tuples, whose hash Python does not keep). A number is never given twice, so forgetting
        # signatures (SHARED_BOUND at a time) never makes a memo's answer another signature's.
        self._numbers: dict[tuple, int] = {}
        self._next_number = 0
        self._footprints = BoundedMemo(FOOTPRINT_BOUND)  # signature's number -> footprint (bounded: controlled.memo)
        self._independent = BoundedMemo(INDEPENDENT_BOUND)  # (number, number) -> independent?
        self.slept = 0  # transitions not tried because they were asleep (for reports)
        # Whether each transition of the flush IPI handler invalidates (flush_tlb_func) or only acks.
        self._invalidates = tuple([any([step.op == "ipi_flush" for step in t]) for t in m.ipi_handler])

    # --- independence in the machine's current state --------------------------------------------------------
    def _signature(self, tr: Transition, index_of: tuple) -> tuple:
        """What decides a transition's footprint in the current state (Machine._relations' memo key, plus the
        CPU of the agent for the same-CPU rule)."""
        m = self.m
        if tr[0] == "t":
            tid = tr[1]
            p = m.pos[tid]
            steps = p.steps  # a joined acquire and the step after it count as one (controlled.lock_joins)
            if not steps:
                return ("gone", tid)
            context = transition_context(m.footprints, m.oracle, tid, p, m.state)  # type: ignore[arg-type]
            return ("t", tid, p.sid, context, index_of)  # the context, as the reducer's
        for ipi in m.state.ipis[tr[1]]:
            if ipi.initiator == tr[2]:
                return ("i", tr[1], self._invalidates[ipi.done], tr[2], ipi.start, ipi.end)
        return ("gone", tr)

    def _numbered(self, sig: tuple) -> tuple[int, tuple]:
        """The signature's number, and the signature."""
        numbers = self._numbers
        n = numbers.get(sig)
        if n is None:
            if len(numbers) >= SHARED_BOUND:
                numbers.clear()
            n = numbers[sig] = self._next_number
            self._next_number += 1
        return n, sig

    def _footprint(self, n: int, sig: tuple) -> object:
        fp = self._footprints[n]
        if fp is MISSING:
            fp = self._compute_footprint(sig)
            self._footprints.put(n, fp)
        return fp

    def _compute_footprint(self, sig: tuple) -> object:
        m = self.m
        fps = m.footprints
        assert fps is not None
        if sig[0] == "gone":
            return _DEPENDENT
        if sig[0] == "i":
            fp = fps.ipi_step(*sig[1:])
            return _DEPENDENT if fp is None else fp  # None: the reduction is off for this scenario
        tid = sig[1]
        p = m.pos[tid]
        steps = p.steps
        assert steps
        fp = fps.transition_footprint(tid, steps, list(sig[4]), m.state, m.coverings(tid, p))
        if fp is None or ("preempt",) in fp:
            return _DEPENDENT
        if steps[0].op == "spin_lock" and m._ipi_blocked_while_spinning:  # noqa: SLF001 - the arch option
            return _SpinLock(fp)
        return fp

    def _pair_independent(self, a: tuple[int, tuple], b: tuple[int, tuple]) -> bool:
        """Are the transitions of (numbered) signatures ``a`` and ``b`` (of different agents) independent?"""
        key = (a[0], b[0])
        known = self._independent[key]
        if known is MISSING:
            known = self._decide(a, b)
            self._independent.put(key, known)
        return known

    def _decide(self, na: tuple[int, tuple], nb: tuple[int, tuple]) -> bool:
        a, b = na[1], nb[1]
        fa, fb = self._footprint(*na), self._footprint(*nb)
        if fa is _DEPENDENT or fb is _DEPENDENT:
            return False
        cpu_of = self.m.cpu_of
        for (x, fx), (y, fy) in (((a, fa), (b, fb)), ((b, fb), (a, fa))):
            # An IPI depends on its initiator's steps, on those of any thread of its CPU, and (when a spinning
            # CPU takes no IPIs) on every spin_lock.
            if x[0] == "i" and y[0] == "t" and (y[1] == x[3] or cpu_of[y[1]] == x[1] or isinstance(fy, _SpinLock)):
                return False
        return not conflict(_plain(fa), _plain(fb))  # type: ignore[arg-type]

    def child_sleep_sets(self, asleep: frozenset, todo: list[Transition]) -> list[frozenset]:
        """For each transition of ``todo``, explored in this order from the machine's current state whose sleep
        set is ``asleep``: the sleep set of the state it leads to. The transitions explored before it, and those
        asleep here, stay asleep there if independent of it."""
        if not todo or (len(todo) == 1 and not asleep):
            return [NOTHING] * len(todo)
        index_of = tuple([f.index for f in self.m.state.folios])
        sigs = {tr: self._numbered(self._signature(tr, index_of)) for tr in (*asleep, *todo)}
        out = []
        done = list(asleep)
        for tr in todo:
            mine = sigs[tr]
            out.append(self._intern[frozenset(
                [other for other in done if self._pair_independent(mine, sigs[other])])])
            done.append(tr)
        return out

    # --- state caching ---------------------------------------------------------------------------------------
    def visit(self, ckey: object, fresh: bool, asleep: frozenset) -> tuple[tuple, frozenset] | None:
        """The state ``ckey`` (canonical; the machine just computed it, so Symmetry.last is its permutation) is
        reached with sleep set ``asleep``; ``fresh``: it was not visited before. None when nothing more is to be
        explored from it than what its first visit explores; else the transitions to explore from it now (those
        asleep at every earlier visit but awake now) and the sleep set to explore them with, in the names of
        the state reached."""
        perm = self._permutation()
        if fresh:
            if asleep:
                self._stored[ckey] = self._intern[to_representative(asleep, perm)]
            return None
        stored = self._stored.get(ckey)
        if not stored:
            return None  # explored (or to be) with nothing asleep: every transition is covered
        mine = to_representative(asleep, perm)
        awake = stored - mine
        if not awake:
            return None
        kept = stored & mine
        if kept:
            self._stored[ckey] = self._intern[kept]
        else:
            del self._stored[ckey]
        inverse = from_representative(awake, perm)
        return tuple(sorted(inverse)), from_representative(kept, perm)

    def stored(self) -> dict[object, frozenset]:
        """The non-empty sleep sets of the visited states, in the representatives' names (the parallel search
        hands the seed phase's to its shared table: controlled.shared_sleep_sets)."""
        return dict(self._stored)

    def _permutation(self) -> Permutation | None:
        sym = self.m.symmetry
        return sym.last if sym else None


def to_representative(trs: frozenset, p: Permutation | None) -> frozenset:
    """Transitions in the names of the representative that ``p`` maps a state to."""
    if p is None or not trs:
        return trs
    return frozenset([("t", p.tid[tr[1]]) if tr[0] == "t" else ("i", p.cpu[tr[1]], p.tid[tr[2]]) for tr in trs])


def from_representative(trs: frozenset, p: Permutation | None) -> frozenset:
    """Transitions named in a representative, in the names of the state ``p`` mapped to it."""
    if p is None or not trs:
        return trs
    return frozenset([("t", p.tid_src[tr[1]]) if tr[0] == "t" else ("i", p.cpu_src[tr[1]], p.tid_src[tr[2]])
                      for tr in trs])
