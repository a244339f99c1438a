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

from typing import TYPE_CHECKING, Sequence

from controlled.coverings import covering, transition_context
from controlled.memo import MISSING, BoundedMemo, Interner
from controlled.reduction import conflict
from kernel_model.ops import CONTEXT_OPS

if TYPE_CHECKING:
    from controlled.machine import Machine, Transition
    from controlled.positions import Resolved
    from controlled.symmetry import Permutation

# Why a dfs asked to prune with sleep sets ran without them (ExploreResult.sleep_sets_off): they judge two
# transitions independent by the reduction's footprints, which a machine without the reduction does not build.
NEEDS_REDUCTION = "they need the partial-order reduction (--no-reduce was given)"
NOTHING: frozenset = frozenset()
# Answers the independence memos keep per generation (controlled.memo; ladder cells ask a few thousand
# distinct pairs in all).
FOOTPRINT_BOUND = 4096
INDEPENDENT_BOUND = 16384
# Answers of child_sleep_sets kept per generation: one per distinct (sleep set, transitions to try) in their
# signatures' numbers (ladder cells ask a few thousand).
CHILDREN_BOUND = 16384
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
        # child_sleep_sets' answers, by the numbers of the sleep set's and the todo list's signatures: the
        # numbers name the transitions (a signature names its agent), so they decide the answer.
        self._children = BoundedMemo(CHILDREN_BOUND)
        # The signature numbers of thread transitions whose context is a constant (no step of theirs reads the
        # state for its footprint, and nothing is covered: most of them), by pfn -> file page map, then by
        # (step id, thread) as one int: numbered without building and hashing the signature.
        self._plain: dict[tuple, dict[int, tuple[int, tuple]]] = {}
        # The numbered signatures of IPI transitions, by (transition, the queue of its CPU): numbered without
        # finding the request in the queue and building its signature (the queue decides it).
        self._ipi_plain: dict[tuple, tuple[int, tuple]] = {}
        # Each transition (equal as a tuple to the machine's, a ThreadStep or IpiStep) -> its fields as a plain
        # tuple: a tuple subclass's items cost about 900 instructions each in compiled code, a plain tuple's a few
        # (controlled.reducer's TRANSITION_FIELDS), and one dict lookup reads them all.
        self._fields = {tr: tuple(tr) for row in [m._thread_steps] + m._ipi_steps for tr in row}  # noqa: SLF001
        self._nthreads = m.nthreads
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
                self._plain.clear()  # their numbers are _numbers' (so one signature keeps one number while it lasts)
                self._ipi_plain.clear()
            n = numbers[sig] = self._next_number
            self._next_number += 1
        return n, sig

    def _number(self, tr: Transition, index_of: tuple, plain: dict[int, tuple[int, tuple]]) -> tuple[int, tuple]:
        """_numbered(_signature(tr, index_of)) in the current state, whose pfn -> file page map is ``index_of``
        (``plain``: that map's numbered signatures of constant-context thread transitions). Most signatures are
        built without coverings.transition_context:
        - a thread transition none of whose steps reads the state for its footprint (Resolved.contexts empty: its
          contexts are then its steps' coverings, all empty, as no step outside CONTEXT_OPS completes a call)
          has a constant context, unless it is a block that also runs the call's last release
          (Resolved.uncovered) while something is covered: its signature is a function of its step id and
          thread (one dict lookup on an int);
        - a transition whose position has no longer variant has as context each step's footprint_context with
          its own covering (_context);
        - an IPI transition's signature is a function of the transition and its CPU's queue."""
        fields = self._fields[tr]
        m = self.m
        if fields[0] == "t":
            tid = fields[1]
            p = m.pos[tid]
            step = p.step
            if step is not None:
                covered = m.oracle.covered
                if not p.contexts and (not covered or p.uncovered is None):
                    at = p.sid * self._nthreads + tid
                    hit = plain.get(at)
                    if hit is None:
                        hit = plain[at] = self._numbered(self._signature(tr, index_of))
                    return hit
                if p.uncovered is None:  # each step's footprint_context with its own covering
                    return self._numbered(("t", tid, p.sid, self._context(tid, p, covered), index_of))
            return self._numbered(self._signature(tr, index_of))
        at_ipi = (fields, m.state.ipis[fields[1]])
        hit = self._ipi_plain.get(at_ipi)
        if hit is None:
            hit = self._ipi_plain[at_ipi] = self._numbered(self._signature(tr, index_of))
        return hit

    def _context(self, tid: int, p: Resolved, covered: frozenset) -> object:
        """coverings.transition_context of thread ``tid``'s transition at ``p`` (a position without a longer
        variant), without its calls: a step outside CONTEXT_OPS has an empty covering, which is its context."""
        m = self.m
        context = m.footprints.footprint_context  # type: ignore[union-attr]
        oracle, s, pc = m.oracle, m.state, p.pc[0]
        steps = p.steps
        if len(steps) == 1:  # as Footprints.transition_context: one step's context alone, not in a tuple
            step = steps[0]
            return context(tid, pc, step, s, covering(oracle, tid, step) if covered else NOTHING)
        return tuple([context(tid, pc, step, s, covering(oracle, tid, step) if covered else NOTHING)
                      if step.op in CONTEXT_OPS else NOTHING for step in steps])

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

    def child_sleep_sets(self, asleep: frozenset, todo: list[Transition]) -> Sequence[frozenset]:
        """For each transition of ``todo``, explored in this order from the machine's current state whose sleep
        set is ``asleep``: the sleep set of the state it leads to. The transitions explored before it, and those
        asleep here, stay asleep there if independent of it. Memoised on the numbers of the transitions'
        signatures, which name the transitions and decide every independence asked: far fewer combinations than
        states."""
        if not todo or (len(todo) == 1 and not asleep):
            return [NOTHING] * len(todo)
        index_of = tuple([f.index for f in self.m.state.folios])
        plain = self._plain.get(index_of)
        if plain is None:
            plain = self._plain[index_of] = {}
        number = self._number
        trs = list(asleep)  # the sleep set, then the transitions to try
        trs += todo
        sigs = [number(tr, index_of, plain) for tr in trs]
        key = [len(asleep)]  # where the sleep set's numbers end and the todo list's begin
        key += [sig[0] for sig in sigs]
        memo_key = tuple(key)
        out = self._children[memo_key]
        if out is MISSING:
            out = self._child_sleep_sets(trs, sigs, len(asleep))
            self._children.put(memo_key, out)
        return out

    def _child_sleep_sets(self, trs: list[Transition], sigs: list[tuple[int, tuple]], first: int) \
            -> tuple[frozenset, ...]:
        """child_sleep_sets of the transitions ``trs[first:]`` tried from a state where ``trs[:first]`` sleep;
        ``sigs``: their numbered signatures."""
        out = []
        for n in range(first, len(trs)):
            mine = sigs[n]
            out.append(self._intern[frozenset([trs[k] for k in range(n) if self._pair_independent(mine, sigs[k])])])
        return tuple(out)

    # --- state caching ---------------------------------------------------------------------------------------
    def visit(self, ckey: object, fresh: bool, asleep: frozenset) -> tuple[tuple, frozenset] | None:
        """The state ``ckey`` (canonical; the machine just computed it, so Symmetry.last is its permutation) is
        reached with sleep set ``asleep``; ``fresh``: it was not visited before. None when nothing more is to be
        explored from it than what its first visit explores; else the transitions to explore from it now (those
        asleep at every earlier visit but awake now) and the sleep set to explore them with, in the names of
        the state reached."""
        if fresh:  # the common case first: a new state, most often reached with nothing asleep
            if asleep:
                self._stored[ckey] = self._intern[to_representative(asleep, self._permutation(), self._fields)]
            return None
        stored = self._stored.get(ckey)
        if not stored:
            return None  # explored (or to be) with nothing asleep: every transition is covered
        perm = self._permutation()
        mine = to_representative(asleep, perm, self._fields)
        awake = stored - mine
        if not awake:
            return None
        kept = stored & mine
        if kept:
            self._stored[ckey] = self._intern[kept]
        else:
            del self._stored[ckey]
        inverse = from_representative(awake, perm, self._fields)
        return tuple(sorted(inverse)), from_representative(kept, perm, self._fields)

    def stored(self) -> dict[object, frozenset]:
        """The non-empty sleep sets of the visited states, in the representatives' names (the parallel search
        hands the seed phase's to its shared table: controlled.shared_sleep_sets)."""
        return dict(self._stored)

    def _permutation(self) -> Permutation | None:
        sym = self.m.symmetry
        return sym.last if sym else None


def to_representative(trs: frozenset, p: Permutation | None, fields: dict | None = None) -> frozenset:
    """Transitions in the names of the representative that ``p`` maps a state to. ``fields``: each transition's
    fields as a plain tuple (SleepSets._fields: cheaper to read than a ThreadStep's or IpiStep's)."""
    if p is None or not trs:
        return trs
    return _renamed(trs, p.tid, p.cpu, fields)


def from_representative(trs: frozenset, p: Permutation | None, fields: dict | None = None) -> frozenset:
    """Transitions named in a representative, in the names of the state ``p`` mapped to it (``fields``: as
    to_representative's)."""
    if p is None or not trs:
        return trs
    return _renamed(trs, p.tid_src, p.cpu_src, fields)


def _renamed(trs: frozenset, tids: Sequence[int], cpus: Sequence[int], fields: dict | None) -> frozenset:
    out = []
    for tr in trs:
        f = tr if fields is None else fields[tr]
        out.append(("t", tids[f[1]]) if f[0] == "t" else ("i", cpus[f[1]], tids[f[2]]))
    return frozenset(out)
