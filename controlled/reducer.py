"""Partial-order reduction for the controlled machine: which of the enabled transitions a search must try.

The theory (footprints, conflicts, why a persistent set is enough) is in controlled.reduction; this module
applies it to a machine state: it computes each enabled transition's relations to the other agents (threads,
CPUs' IPI handlers), closes a set of agents under conflict, and keeps the smallest closed set. Every answer is
memoised on what decides it, which is far less than the whole state.
"""

from __future__ import annotations

from array import array
from pathlib import Path
from typing import Any, Callable

from controlled.closure import WORD, Closure, compiled_closure
from controlled.compiled_only import fresh_extension
from controlled.coverings import NOTHING, covering, coverings as transition_coverings
from controlled.memo import MISSING, BoundedMemo, Interner, Numbering
from controlled.position_futures import PositionFuture, PositionFutures
from controlled.positions import Resolved, Transition
from controlled.reduction import Footprint, Footprints, conflict
from kernel_model.oracle import MAY_END_COVERING_CALL, Oracle
from kernel_model.state import State
from kernel_model.steps import Step

CONFLICT = 2  # a transition conflicts with what another agent may still do
CONFLICT_UNLESS = 1  # ... but only with what that agent may do after a TLB flush or an IPI it has not got yet
# (CONFLICT agents, CONFLICT_UNLESS agents) as bit sets over agent numbers: thread tid is tid, CPU c's IPI
# handler nthreads + c (controlled.closure).
Relations = tuple[int, int]
# TRANSITION_FIELDS: transitions (controlled.positions' ThreadStep and IpiStep) are read here by field (tr.kind,
# tr.tid, tr.cpu, tr.initiator), not by index: they subclass tuple, and CPython reaches a tuple subclass's items
# through a generic slot that calls tuple.__getitem__ as a method (about 900 instructions an item in compiled
# code, against about 250 for a field; cachegrind, Python 3.11).
# Answers each memo keeps per generation (controlled.memo: twice as many at most, in all), so that what they hold
# no longer grows with the search. The persistent-set memo is the one whose size matters: a miss costs about
# 14 us, and a DFS asks a key again long after it first did. On ladder pages=2 writers=2 stores=1 (809,260
# calls, 208,788 distinct keys) it hits 74% unbounded, 68% at 65,536 a generation, 58% at 32,768, 34% at 8,192
# (CPU +14%); an entry is about 150 bytes (a flat tuple of 7 and its dict slot), so 65,536 a generation hold
# at most about 20 MB. The others ask a few thousand distinct keys on ladder cells and hit 96-100%.
PERSISTENT_BOUND = 65536
RELATIONS_BOUND = 16384
PART_BOUND = 4096  # footprints, relations to one thread
SHARED_BOUND = 8192  # distinct answers shared (controlled.memo.Interner), distinct key parts numbered
NUMBERED_BOUND = 65536  # distinct parts numbered in persistent-set memo keys (then they and the memo start again)


class Reducer:
    """Persistent sets of a machine's states. The machine passes its positions and state with each question;
    the oracle is the machine's own (its covered translations decide what a completion's footprint holds)."""

    # The threads that writer symmetry may permute (the machine sets them; controlled.symmetry): among equally
    # small persistent sets, choose by what the agents do, not by these threads' numbers (_persistent_set).
    interchangeable: frozenset = frozenset()

    def __init__(self, footprints: Footprints, cpu_of: list[int], ncpus: int, oracle: Oracle,
                 ipi_handler: tuple[tuple[Step, ...], ...], position_futures: PositionFutures) -> None:
        self.footprints = footprints
        self.cpu_of = cpu_of
        self.ncpus = ncpus
        self.oracle = oracle
        self.ipi_handler = ipi_handler
        # By how many of the handler's transitions have run (Ipi.done): whether the next one invalidates, and
        # whether an earlier one acked (_ipi_signature asks both for every IPI transition).
        self._ipi_invalidates = tuple([any([step.op == "ipi_flush" for step in group]) for group in ipi_handler])
        self._ipi_acked = tuple([any([step.op == "ipi_ack" for group in ipi_handler[:done] for step in group])
                                 for done in range(len(ipi_handler) + 1)])
        self.position_futures = position_futures
        # persistent()'s answers: they depend only on each thread's operation, next step, future (its position's,
        # controlled.position_futures) and the state that step's footprint reads, which CPUs have IPIs queued (at
        # which of their transitions), the pfn -> file page map and what is enabled: far fewer combinations than
        # states, but still one new key in three calls.
        self._persistent = BoundedMemo(PERSISTENT_BOUND)
        # Their parts: step footprints, and how a step stands to another thread's future.
        self._footprint_memo = BoundedMemo(PART_BOUND)
        self._relation_memo = BoundedMemo(PART_BOUND)
        self._relations_memo = BoundedMemo(RELATIONS_BOUND)
        # The CPUs whose IPI handler a transition's footprint conflicts with (a bit set), by its signature.
        self._cpu_conflicts = BoundedMemo(PART_BOUND)
        # The relations memos' key parts (a thread transition's signature, what the other agents are doing) as
        # numbers: one hash each per state, not one per memo they key. Renumbered past SHARED_BOUND, forgetting
        # the memos keyed on them.
        self._parts = Numbering()
        # The memos' answers are rebuilt on every call from a few hundred distinct parts: keep one copy.
        self._answer = Interner(SHARED_BOUND)
        self._numbered = Numbering()  # footprint contexts and the rest of a persistent-set memo key -> a number
        # The closure over bit sets: compiled when built (up to WORD agents), and each invalidates / sends_to set
        # of Footprints as a bit set over CPUs.
        self._closure = compiled_closure() or Closure
        self._thread_masks = _ThreadMasks(footprints, cpu_of)
        self._no_agents: tuple[list[int], list[int]] = ([0] * len(cpu_of), [0] * (len(cpu_of) + ncpus))
        self._ties = _Ties(cpu_of)
        # The state being asked about, and each thread's future there (None: its operation's), set by persistent().
        self.pos: list[Resolved] = []
        self.state: State | None = None
        self._futures: list[PositionFuture | None] = []
        self._key: list[int] = []  # and its memo key's numbers, and its pfn -> file page map
        self._index_of: tuple[int, ...] = ()
        self._spans: list[int] = []  # where each thread's contexts' numbers are in it (set by _closure_of)
        self._no_ipis = ((),) * ncpus  # the key's IPI part while none is queued (most states)

    def persistent(self, pos: list[Resolved], s: State, enabled: list[Transition]) -> list[Transition]:
        """The transitions of ``enabled`` a search must try from this state (all of them when no smaller
        persistent set is found)."""
        self.pos, self.state = pos, s
        numbered = self._numbered
        if len(numbered) > NUMBERED_BOUND:  # the numbers of the keys the memos hold would be reused: forget them
            numbered.clear()
            self._persistent.forget()
            self._forget_parts()  # a thread transition's signature holds its contexts' numbers (_thread_footprint)
        # The key: each thread's step id and future, then the number of the footprint context of each thread
        # whose step needs one (which threads those are is a function of their step ids), then the number of the
        # rest; as bytes (_packed: a few bytes a number, a fraction of a tuple). Equal bytes are equal numbers, and,
        # while the numbering lasts (the memo is forgotten with it), equal parts. One pass over the threads.
        key, self._futures = _threads_key(pos, s, self.oracle, self.footprints, self.position_futures, numbered)
        ipis = s.ipis
        self._index_of = index_of = tuple([f.index for f in s.folios])
        key.append(numbered[(tuple([tuple([i.done for i in q]) for q in ipis]) if any(ipis) else self._no_ipis,
                             index_of, tuple(enabled))])  # where each IPI's handler is, pfn -> page, what may run
        self._key = key
        memo_key = packed(key)
        chosen = self._persistent[memo_key]
        if chosen is MISSING:
            chosen = self._persistent_set(enabled)
            if type(chosen) is not _Tied:  # shared with equal answers; a tie keeps its type (equal as a tuple)
                chosen = self._answer[chosen]
            self._persistent.put(memo_key, chosen)
        if type(chosen) is _Tied:  # interchangeable writers: settled by this state's positions (_persistent_set)
            chosen = self._ties.settle(chosen, self.pos, self.state, self.interchangeable)
        return list(chosen)

    # --- the smallest closed set --------------------------------------------------------------------------------
    def _persistent_set(self, enabled: list[Transition]) -> tuple[Transition, ...]:
        """The smallest persistent set found (see controlled.reduction): the enabled transitions of a set of
        agents (threads, CPUs' IPI handlers) closed under conflict, such that no agent outside it, enabled or
        not, may do anything that conflicts with them. Tried from each enabled agent in turn; all of
        ``enabled`` when none closes."""
        moves, closure = self._closure_of(enabled)
        best: tuple[Transition, ...] = tuple(enabled)
        best_members = sum([1 << agent for agent in moves])  # all of them
        # With interchangeable writers, the first of equally small sets in agent order would be a different
        # writer's in each member of an orbit (a state and the same state with two writers swapped), so which
        # member a search meets first would decide which successors it tries, and the count would depend on the
        # order of the search (one process's, or the workers'). Every seed is then tried, and ties are broken by
        # names that a permutation of those writers leaves alone: first what the memo key holds (_Ties);
        # sets that this does not tell apart are memoised together and settled by each state's positions.
        ties = 1 if self.interchangeable else 0
        tied = [best]
        best_name: list | None = None
        names = _Names(self._ties, moves, self.pos, self.state, self.interchangeable) if ties else None
        for seed in moves:
            members = closure.close(seed, len(best) + ties)
            if not members:
                continue
            chosen = tuple([tr for agent in moves if members >> agent & 1 for tr in moves[agent]])
            if len(chosen) < len(best):
                best, best_members, tied, best_name = chosen, members, [chosen], None
                if len(best) == 1 and not ties:
                    break
            elif ties:  # as small as the best
                name = names.of(members)  # type: ignore[union-attr]
                best_name = names.of(best_members) if best_name is None else best_name  # type: ignore[union-attr]
                if name < best_name:
                    best, best_members, tied, best_name = chosen, members, [chosen], name
                elif name == best_name and chosen not in tied:
                    tied.append(chosen)
        return best if len(tied) == 1 else _Tied(tied)

    def _closure_of(self, enabled: list[Transition]) -> tuple[dict[int, list[Transition]], Any]:
        """The closure's input (controlled.closure): agents by number, each one's enabled transitions (in
        enabled() order) and its relations as bit sets."""
        s = self.state
        assert s is not None
        parts = self._parts
        if len(parts) > SHARED_BOUND:  # the numbers the part memos hold would be reused: forget them all
            self._forget_parts()
        pfns = parts[("pfns", self._index_of)]  # pfn -> page, as one number for the transitions' signatures
        # One pass over the threads: each one's (tid, operation) while it runs, whether it stands to hit dirty TLB
        # entries only (Footprints.hit_future), which CPUs it may still flush or IPI (the closure's ``inval`` and
        # ``sends``), and where its contexts are in the memo key (persistent() wrote them after the steps and
        # futures): they name what its transition's footprint reads of the state, so _thread_footprint signs with
        # them.
        pos = self.pos
        nthreads = len(pos)
        fps, masks = self.footprints, self._thread_masks
        threads: list[tuple[int, int]] = []
        hits = [False] * nthreads  # by thread: does it stand to hit dirty TLB entries only (hit_future)?
        zeros, zero_agents = self._no_agents
        inval, sends, outside, hit_bits = zeros[:], zeros[:], 0, 0
        spans, at = [], 2 * nthreads
        for tid, p in enumerate(pos):
            spans.append(at)
            at += len(p.contexts) + (p.uncovered is not None)
            step = p.step
            if step is None:
                continue
            known = masks.get(p.sid * nthreads + tid)
            if known is None:
                known = masks[p.sid * nthreads + tid] = masks.of(tid, p.pc[0], step)
            pc, inval[tid], sends[tid], may_hit = known
            threads.append((tid, pc))
            if may_hit and fps.hit_future(tid, pc, step, s) is not None:
                hits[tid] = True
                hit_bits |= 1 << tid
            outside |= 1 << tid
        spans.append(at)
        self._spans = spans
        queued = sum([1 << cpu for cpu, q in enumerate(s.ipis) if q])  # the CPUs with IPIs queued
        key = self._key
        others = self._others(threads, hit_bits, queued)
        nagents = nthreads + self.ncpus
        moves: dict[int, list[Transition]] = {}
        defs, conds, counts = zero_agents[:], zero_agents[:], zero_agents[:]
        unknown = movable = 0
        memo = self._relations_memo
        for tr in enabled:
            # How tr stands to every other agent (_relations_of), memoised on what decides it: its footprint's
            # signature (_thread_footprint's, inline here: a hit builds none) and ``others``; None: unknown.
            if tr.kind == "t":  # by field: see TRANSITION_FIELDS
                agent = tid = tr.tid
                whole_key: tuple = (tid, pos[tid].sid, pfns, tuple(key[spans[tid]:spans[tid + 1]]), others)
                rels = memo[whole_key]
                if rels is MISSING:
                    sig, fp = self._thread_footprint(tid, pfns)
                    rels = None if fp is None else self._relations_of(tr, sig, fp, tid, threads, hits, queued)
                    memo.put(whole_key, rels)
            else:
                agent = nthreads + tr.cpu
                rels = self._ipi_relations(tr, threads, hits, queued, others)
            moves.setdefault(agent, []).append(tr)
            counts[agent] += 1
            movable |= 1 << agent
            if rels is None:
                unknown |= 1 << agent
            else:
                defs[agent] |= rels[0]
                conds[agent] |= rels[1]
        closure = (self._closure if nagents <= WORD else Closure)(nthreads, self.cpu_of, defs, conds, counts,
                                                                    unknown, movable, outside, inval, sends, queued)
        return moves, closure

    def _others(self, threads: list[tuple[int, int]], hit_bits: int, queued: int) -> int:
        """What a transition's relations depend on besides its own footprint, as a part number: the threads'
        (tid, operation), which of them stand to hit dirty TLB entries only and which CPUs have IPIs queued (bit
        sets), and each thread's future (its number in the memo key)."""
        nthreads = len(self.pos)
        return self._parts[(tuple(threads), hit_bits, queued, tuple(self._key[nthreads:2 * nthreads]))]

    def _forget_parts(self) -> None:
        """Forget the part numbers and the memos keyed on them."""
        self._parts.clear()
        for memo in (self._footprint_memo, self._relation_memo, self._relations_memo, self._cpu_conflicts):
            memo.forget()

    # --- how one transition stands to the other agents ---------------------------------------------------------
    def _ipi_relations(self, tr: Transition, threads: list[tuple[int, int]], hits: list[bool], queued: int,
                       others: int) -> Relations | None:
        """How an IPI handler's transition ``tr`` stands to every other agent (_closure_of does a thread's),
        memoised on its signature and ``others``; None when its footprint is unknown."""
        sig, moot = self._ipi_signature(tr)
        whole_key = (sig, moot, others)
        whole = self._relations_memo[whole_key]
        if whole is MISSING:
            fp = self.footprints.ipi_step(*sig[1:])
            whole = None if fp is None else self._relations_of(tr, sig, fp, moot, threads, hits, queued)
            self._relations_memo.put(whole_key, whole)
        return whole

    def _relations_of(self, tr: Transition, sig: object, fp: Footprint, skip: int | None,
                      threads: list[tuple[int, int]], hits: list[bool], queued: int) -> Relations:
        """How a transition of footprint ``fp`` (signed ``sig``) stands to every other agent, computed: the bit
        sets of the agents it has CONFLICT with and of those it has CONFLICT_UNLESS with (only with what the
        agent may do once its TLB entries are flushed, or once it is sent an IPI). ``skip``: the thread whose
        future does not count (its own, or a moot one); ``queued``: the CPUs with IPIs queued."""
        definite, conditional = self._thread_relations(sig, fp, skip, threads, hits)
        # Each CPU's IPI handler but its own: CONFLICT while that CPU has IPIs queued, CONFLICT_UNLESS while it
        # has none (it may be sent one).
        cpus = self._cpu_conflicts[sig]
        if cpus is MISSING:
            fps = self.footprints
            cpus = sum([1 << cpu for cpu in range(self.ncpus) if conflict(fp, fps.ipi(cpu))])
            self._cpu_conflicts.put(sig, cpus)
        if tr.kind == "i":
            cpus &= ~(1 << tr.cpu)
        nthreads = len(self.pos)
        return self._answer[(definite | (cpus & queued) << nthreads, conditional | (cpus & ~queued) << nthreads)]

    def _thread_footprint(self, tid: int, pfns: int) -> tuple[int, Footprint | None]:
        """(memo signature, footprint) of thread ``tid``'s next transition (its step, or a joined acquire and the
        step after it: Footprints.transition_footprint). The footprint depends on the state only through its
        steps' contexts, and on their coverings (controlled.coverings): the memo key's numbers for this thread
        name both (persistent()), so the signature is those numbers, its step and the pfn map."""
        p = self.pos[tid]
        steps = p.steps
        assert steps and self.state is not None
        spans = self._spans
        sig = self._parts[(tid, p.sid, pfns, tuple(self._key[spans[tid]:spans[tid + 1]]))]
        fp = self._footprint_memo[sig]
        if fp is MISSING:
            fp = self.footprints.transition_footprint(tid, steps, list(self._index_of), self.state,
                                                      transition_coverings(self.oracle, tid, p))
            self._footprint_memo.put(sig, fp)
        return sig, fp

    def _ipi_signature(self, tr: Transition) -> tuple[tuple, int | None]:
        """(what decides its footprint: Footprints.ipi_step's arguments after an "i", moot agent) of an IPI
        handler's next transition. The moot agent is the IPI's initiator while it waits for the ack: it cannot
        move before the transition that acks has run, so its future does not count. Not so once the ack is in (a
        handler that acked in an earlier transition, as under ack_before_invalidate: the initiator may already be
        past its wait)."""
        cpu, initiator = tr.cpu, tr.initiator
        for ipi in self.state.ipis[cpu]:  # type: ignore[union-attr]
            if ipi.initiator == initiator:
                break
        else:
            raise ValueError(f"CPU {cpu} has no IPI of thread {initiator} queued")
        done = ipi.done
        waiting = self.pos[initiator].step
        moot = (initiator if not self._ipi_acked[done] and waiting is not None and waiting.op == "wait_acks"
                else None)
        return ("i", cpu, self._ipi_invalidates[done], initiator, ipi.start, ipi.end), moot

    def _thread_relations(self, sig: object, fp: Footprint, skip: Any, threads: list[tuple[int, int]],
                          hits: list[bool]) -> tuple[int, int]:
        """How a transition of footprint ``fp`` stands to each thread but ``skip`` (its own, or a moot one): the
        bit sets of those it has CONFLICT and CONFLICT_UNLESS with."""
        fps = self.footprints
        definite = conditional = 0
        for tid, pc in threads:
            if tid == skip:
                continue
            pair = (sig, tid, pc if (f := self._futures[tid]) is None else -f.number, hits[tid])
            rel = self._relation_memo[pair]
            if rel is MISSING:
                rel = 0
                if (fps.future(tid, pc) if f is None else f).conflicts(fp):
                    hit = fps.hit_future(tid, pc, self.pos[tid].step, self.state) if hits[tid] else None  # type: ignore
                    rel = CONFLICT_UNLESS if hit is not None and not conflict(fp, hit) else CONFLICT
                self._relation_memo.put(pair, rel)
            if rel == CONFLICT:
                definite |= 1 << tid
            elif rel:
                conditional |= 1 << tid
        return definite, conditional


def _threads_key(pos: list[Resolved], s: State, oracle: Oracle, footprints: Footprints,
                 futures_of: PositionFutures, numbered: Numbering) -> tuple[list[int], list[PositionFuture | None]]:
    """The threads' part of Reducer.persistent's memo key in state ``s`` (each thread's step id, then which future
    it has, then the numbers of its contexts: Reducer._closure_of finds them there), and each thread's future
    (None: its operation's). One pass over the threads, with PositionFutures.of_state inlined: most futures are
    cached on the positions, and taken without a call or a hash."""
    covered = oracle.covered
    context = footprints.footprint_context
    token = futures_of.token
    covering_tids = {c[0] for c in covered} if covered else ()
    key: list[int] = []
    numbers: list[int] = []  # which future each thread has, as PositionFutures.of_state gives it
    contexts: list[int] = []
    futures: list[PositionFuture | None] = []
    for tid, p in enumerate(pos):
        key.append(p.sid)
        cached = p.future
        if cached is not None and cached[0] == token and tid not in covering_tids:
            futures.append(cached[1])
            numbers.append(cached[2])
        else:
            future = futures_of.future(tid, p, tid not in covering_tids, s)
            futures.append(future)
            numbers.append(0 if future is None else future.number)
        steps = p.contexts  # of a joined acquire (controlled.lock_joins) and the step after it, if any
        if steps:
            pc = p.pc[0]
            for step in steps:  # covering() only of a step that may end a call (it is NOTHING for the others)
                contexts.append(numbered[context(tid, pc, step, s, covering(oracle, tid, step)
                                                 if covered and step.op in MAY_END_COVERING_CALL else NOTHING)])
        if p.uncovered is not None:  # what its block reads besides (coverings)
            contexts.append(numbered[("uncovered", tid, oracle.covering(tid) if covered else NOTHING)])
    key += numbers
    key += contexts
    return key, futures


def _compiled_packed() -> Callable[[list[int]], bytes] | None:
    """controlled/_reducer_keys.pyx's packed (the same bytes as _packed, in typed code), if its build is fresh
    and not turned off."""
    module = fresh_extension("controlled._reducer_keys", Path(__file__).with_name("_reducer_keys.pyx"),
                             "the reducer packs its memo keys in Python (slower)")
    return None if module is None else module.packed


def _packed(numbers: list[int]) -> bytes:
    """A memo key's numbers (below 2**32) as bytes, all of one width, the narrowest that holds the largest, marked
    by a last number (1, 2 or 4) written in that width: equal bytes are equal lists. Cheaper than visited's prefix
    code, whose numbers past 254 (most keys', once the numbering passes 254 parts) are written one at a time."""
    top = max(numbers)
    if top < 0x100:
        numbers.append(1)
        return bytes(numbers)
    if top < 0x10000:
        numbers.append(2)
        return array("H", numbers).tobytes()
    numbers.append(4)
    return array("I", numbers).tobytes()


packed = _compiled_packed() or _packed  # what persistent() packs its memo keys with


class _ThreadMasks(dict):
    """What Reducer._closure_of needs of a running thread about to do a step, by step id x threads + thread (a
    few hundred): its operation index, the CPUs it may still flush and those but its own it may still send IPIs
    to (bit sets: the closure's ``inval`` and ``sends``), and whether it may stand to hit dirty TLB entries only
    (Footprints.may_hit_future: hit_future is asked only then)."""

    __slots__ = ("footprints", "cpu_of", "_cpu_mask")

    def __init__(self, footprints: Footprints, cpu_of: list[int]) -> None:
        super().__init__()
        self.footprints = footprints
        self.cpu_of = cpu_of
        self._cpu_mask = _CpuMasks()

    def of(self, tid: int, pc: int, step: Step) -> tuple[int, int, int, bool]:
        """The masks of thread ``tid`` in operation ``pc`` about to do ``step``."""
        fps, cpu_mask = self.footprints, self._cpu_mask
        return (pc, cpu_mask[fps.invalidates[tid][pc]], cpu_mask[fps.sends_to[tid][pc]] & ~(1 << self.cpu_of[tid]),
                fps.may_hit_future(tid, pc, step))


class _CpuMasks(dict):
    """A set of CPU numbers -> its bit set (Footprints' invalidates and sends_to sets: a few distinct ones)."""

    __slots__ = ()

    def __missing__(self, cpus: frozenset) -> int:
        mask = self[cpus] = sum(1 << c for c in cpus)
        return mask


class _Ties:
    """Names that break ties between equally small persistent sets of interchangeable writers
    (Reducer._persistent_set), left alone by a permutation of those writers."""

    __slots__ = ("cpu_of", "_threads")

    def __init__(self, cpu_of: list[int]) -> None:
        self.cpu_of = cpu_of
        self._threads = BoundedMemo(PART_BOUND)  # a thread's step as name() names it (a repr: costly)

    def name(self, tr: Transition, pos: list[Resolved], s: State | None, hidden: frozenset, cpus: set[int]) -> tuple:
        """``tr`` named by what the memo key of Reducer.persistent holds, without the numbers of the
        interchangeable threads (``hidden``) and their CPUs (``cpus``): a thread step by the thread's operation
        index and step (less an interchangeable thread's arguments: they hold its own store values), an IPI
        transition by its handler's progress and its initiator. No hash: the same choice in every process and
        every run (a set of them is named by their names, sorted: _Names)."""
        assert s is not None
        if tr.kind == "t":
            return ("t", self._thread(tr.tid, pos, hidden))
        return ("i", -1 if tr.cpu in cpus else tr.cpu,
                next(i.done for i in s.ipis[tr.cpu] if i.initiator == tr.initiator), self._thread(tr.initiator, pos, hidden))

    def _thread(self, tid: int, pos: list[Resolved], hidden: frozenset) -> tuple:
        p = pos[tid]
        key = (tid, p.sid, tid in hidden)  # the step id names the operation index and the step
        name = self._threads[key]
        if name is MISSING:
            step = p.step
            what = ("", "", "") if step is None else (step.fn, step.op, "" if tid in hidden else repr(step.args))
            name = (-1 if tid in hidden else tid, p.pc[0], *what)
            self._threads.put(key, name)
        return name

    def settle(self, tied: "_Tied", pos: list[Resolved], s: State | None,
               hidden: frozenset) -> tuple[Transition, ...]:
        """Of persistent sets that the memo key cannot tell apart, the one whose interchangeable threads come
        first by position and TLB (as controlled.symmetry's signature, without its hash); the first of them
        when those are alike too (such states are alike up to writers' names, so either choice reaches the same
        orbits)."""
        tlbs = s.tlbs  # type: ignore[union-attr]

        def signature(chosen: tuple[Transition, ...]) -> list[str]:
            return sorted([repr((pos[t].at, sorted(tlbs[self.cpu_of[t]].items())))
                           for t in {tr.tid if tr.kind == "t" else tr.initiator for tr in chosen} if t in hidden])

        return min(tied, key=signature)


class _Names:
    """Names of the persistent sets of one state (_Ties.name of each transition, sorted), asked by their agents (a
    bit set): each agent's transitions are named once."""

    __slots__ = ("ties", "moves", "pos", "state", "hidden", "cpus", "agents")

    def __init__(self, ties: _Ties, moves: dict[int, list[Transition]], pos: list[Resolved], s: State | None,
                 hidden: frozenset) -> None:
        self.ties, self.moves, self.pos, self.state, self.hidden = ties, moves, pos, s, hidden
        self.cpus = {ties.cpu_of[t] for t in hidden}
        self.agents: dict[int, list[tuple]] = {}

    def of(self, members: int) -> list:
        """The name of the set of the transitions of the agents in ``members``."""
        out: list[tuple] = []
        for agent, trs in self.moves.items():
            if members >> agent & 1:
                names = self.agents.get(agent)
                if names is None:
                    names = self.agents[agent] = [self.ties.name(tr, self.pos, self.state, self.hidden, self.cpus)
                                                  for tr in trs]
                out += names
        out.sort()
        return out


class _Tied(tuple):
    """Equally small persistent sets that the memo key of Reducer.persistent cannot tell apart (interchangeable
    writers at the same step): memoised together, settled per state by _Ties.settle."""

    __slots__ = ()
