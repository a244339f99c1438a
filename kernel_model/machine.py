"""The controlled runtime: one in-process machine whose every transition a scheduler chooses.

A transition is either ``("t", tid)``: thread ``tid`` performs its next step; or ``("i", cpu, initiator)``:
``cpu`` takes the flush IPI that thread ``initiator`` sent it (flush_tlb_func, then the ack). IPIs from
different senders may be taken in any order, as on real hardware. Everything is deterministic given the sequence of
transitions, which is what schedule files record.

A thread's position is the pair (attempt counter, results the current attempt has received), where the attempt
counter is 2 * operation index + (1 if this is a retry of that operation). A generator cannot be copied, but
it can be rebuilt by re-feeding those results, and the next step is a pure function of the position, so
positions are memoised: exhaustive search pays for a rebuild only the first time it meets a position. A retried
access starts from empty results, so the history of earlier attempts does not multiply states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kernel_model import boot, symmetry
from kernel_model import tlb as tlbops
from kernel_model.atomic import PageTableOps
from kernel_model.config import Config
from kernel_model.events import Event, Violation
from kernel_model.oracle import MAY_END_COVERING_CALL, OBSERVED_OPS, TLB_OPS, Oracle
from kernel_model.program import Op, Scenario, flatten
from kernel_model.ops import CONTEXT_OPS, UNREAD_RESULTS
from kernel_model.reduction import Footprint, Footprints, conflict
from kernel_model.state import FREE, Folio, Ipi, State
from kernel_model.steps import BLOCKING_OPS, Note, Step, kind_of
from kernel_model.syscalls import op_attempt
from kernel_model.tlb import RETRY

Transition = tuple  # ("t", tid) | ("i", cpu, initiator)


@dataclass(slots=True)
class Resolved:
    """Where a thread stands after feeding it: the notes it emitted on the way and the step it now waits to do."""

    notes: tuple[Note, ...]
    step: Step | None  # None: the thread has finished its program
    pc: int
    results: tuple
    # (operation index, next step) as a small int: what the reduction's memo needs of a position, cheap to hash.
    sid: int = 0
    at: tuple = ()  # (pc, results): the position as the machine's key holds it, built once

    def __post_init__(self) -> None:
        self.sid = _STEP_IDS.setdefault((self.pc >> 1, self.step), len(_STEP_IDS))
        self.at = (self.pc, self.results)


class Machine:
    def __init__(self, scenario: Scenario, cfg: Config, *, record: bool = False, reduce: bool = False,
                 symmetric: bool = True) -> None:
        """``reduce``: explore with partial-order reduction; the oracle then checks whole-state invariants
        at quiescence only (see kernel_model.reduction). ``symmetric``: canonical() keeps one state per orbit of
        interchangeable writers (kernel_model.symmetry)."""
        self.scenario = scenario
        self.cfg = cfg
        self.record = record
        threads = scenario.threads
        self.nthreads = len(threads)
        self.ncpus = boot.ncpus(scenario, cfg)
        self.cpu_of = boot.cpu_of(scenario, cfg)
        self.programs: list[list[Op]] = [flatten(t.ops) for t in threads]
        setup = scenario.setup
        self.ctx = [boot.thread_context(scenario, cfg, t) for t in range(self.nthreads)]
        self.state = boot.initial_state(scenario, cfg)
        self.pt = PageTableOps(self.state)
        self.oracle = Oracle(tuple((e.kind, scenario.thread_index(e.thread), e.page, e.thread)
                                   for e in scenario.expect))
        self.footprints = (Footprints(self.programs, self.cpu_of, self.ncpus, setup.pages, setup.ptes_per_table,
                                      cfg.arch == "s390", cfg.arch == "up", setup.anon) if reduce else None)
        self.online_checks = not reduce
        self._ipi_blocked_while_spinning = cfg.has("no_ipi_while_spinning")
        self._ack_first = cfg.has("ack_before_invalidate")
        # An expectation names a thread: its writers are no longer interchangeable.
        self.symmetry = (symmetry.symmetry_of(scenario, self.cpu_of, self.ncpus, set(boot.warm_cpus(scenario, cfg)))
                         if symmetric and not scenario.expect else symmetry.Symmetry([], [], self.cpu_of))
        # _persistent_set's answers: they depend only on each thread's operation, next step and the state
        # that step's footprint reads, which CPUs have IPIs queued (at which of their two steps), the pfn -> file
        # page map and what is enabled (far fewer combinations than states).
        self._persistent: dict[tuple, tuple[Transition, ...]] = {}
        # Their parts: step footprints, and how a step stands to another thread at an operation.
        self._footprint_memo: dict[tuple, Footprint | None] = {}
        self._relation_memo: dict[tuple, int] = {}
        self._relations_memo: dict[tuple, dict[tuple, int]] = {}
        # canonical()'s renaming of store values, by (folios, disk): far fewer combinations than states.
        self._renamed: dict[tuple, tuple] = {}
        # Bounded in page slots, not entries: each entry holds tuples of one slot per page, so 200,000 entries of
        # a 10,000-page scenario would alone hold gigabytes.
        self._renamed_max = max(1_000, _RENAMED_SLOTS // max(1, setup.pages))
        self.seq = 0
        self.events: list[Event] = []
        # Positions resolve the same way in every machine of this scenario and configuration: share the memo
        # (replaying many trials of one campaign then rebuilds each generator position only once).
        memo_key = (scenario.setup, scenario.threads, cfg)
        self._memo: dict[tuple, Resolved] = _SHARED_MEMOS.setdefault(memo_key, {})
        if len(_SHARED_MEMOS) > 64:
            _SHARED_MEMOS.pop(next(iter(_SHARED_MEMOS)))
        self._live: list[tuple[Any, int, tuple] | None] = [None] * self.nthreads
        self.pos: list[Resolved] = []
        for tid in range(self.nthreads):
            r = self._resolve(tid, 0, ())
            self.pos.append(r)
            self._emit_notes(tid, r.notes, [])
        self._running = sum(1 for p in self.pos if p.step is not None)  # threads not yet finished

    # --- thread positions ----------------------------------------------------------------------------------
    def _resolve(self, tid: int, pc: int, results: tuple) -> Resolved:
        key = (tid, pc, results)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        notes: list[Note] = []
        gen, item = self._generator_at(tid, pc, results)
        while True:
            if isinstance(item, _Done):
                # The attempt returned: retry the same operation, or go on with the next one.
                pc = pc | 1 if item.value is RETRY else (pc // 2 + 1) * 2
                results = ()
                gen, item = self._generator_at(tid, pc, results)
                if gen is None:
                    resolved = Resolved(tuple(notes), None, pc, ())
                    break
            elif isinstance(item, Note):
                notes.append(item)
                results = results + (None,)
                item = _send(gen, None)
            else:
                resolved = Resolved(tuple(notes), item, pc, results)
                self._live[tid] = (gen, pc, results)
                break
        self._memo[key] = resolved
        return resolved

    def _generator_at(self, tid: int, pc: int, results: tuple) -> tuple[Any, Any]:
        """A generator for attempt ``pc`` positioned after ``results``, and what it yields next (a ``_Done``
        once the attempt has returned); (None, None) past the end of the program."""
        program = self.programs[tid]
        index, retry = divmod(pc, 2)
        if index >= len(program):
            return None, None
        live = self._live[tid]
        if live is not None and results and live[1] == pc and live[2] == results[:-1]:
            # The common case in a single run: the live generator is exactly one result behind.
            self._live[tid] = None
            return live[0], _send(live[0], results[-1])
        gen = op_attempt(self.ctx[tid], program[index], index, self.scenario.setup.pages, not retry)
        item = _send(gen, None)
        for r in results:
            item = _send(gen, r)
        return gen, item

    # --- transitions ----------------------------------------------------------------------------------------
    def finished(self) -> bool:
        return self._running == 0

    def quiescent(self) -> bool:
        return self.finished() and not any(self.state.ipis)

    def enabled(self) -> list[Transition]:
        s = self.state
        out: list[Transition] = []
        holders = None
        if self.cfg.arch == "up":
            # UP: a thread holding a spinlock is not preempted, so nothing else runs until it unlocks.
            holders = {owner for owner in s.ptl if owner != FREE}
        for tid, p in enumerate(self.pos):
            if p.step is None or (holders and tid not in holders):
                continue
            if self._can_run(tid, p.step):
                out.append(("t", tid))
        for cpu, pending in enumerate(s.ipis):
            if pending and self._takes_ipis(cpu):
                out.extend(("i", cpu, ipi.initiator) for ipi in pending)
        if self.footprints is not None and len(out) > 1:
            context = self.footprints.footprint_context
            memo_key = (tuple([p.sid for p in self.pos]),
                        tuple([context(tid, p.pc // 2, p.step, s, self._covering(tid, p.step))
                               for tid, p in enumerate(self.pos) if p.step is not None and p.step.op in CONTEXT_OPS]),
                        tuple([tuple([i.half for i in q]) for q in s.ipis]),  # which step each IPI is at
                        tuple([f.index for f in s.folios]), tuple(out))
            chosen = self._persistent.get(memo_key)
            if chosen is None:
                chosen = self._persistent[memo_key] = self._persistent_set(out)
            return list(chosen)
        return out

    def _persistent_set(self, enabled: list[Transition]) -> tuple[Transition, ...]:
        """The smallest persistent set found (see kernel_model.reduction): the enabled transitions of a set of
        agents (threads, CPUs' IPI handlers) closed under conflict, such that no agent outside it, enabled or
        not, may do anything that conflicts with them. Tried from each enabled agent in turn; all of
        ``enabled`` when none closes."""
        fps = self.footprints
        assert fps is not None
        s = self.state
        index_of = tuple([f.index for f in s.folios])
        threads = [(tid, p.pc // 2) for tid, p in enumerate(self.pos) if p.step is not None]
        hits = {tid: fps.hit_future(tid, pc, self.pos[tid].step, s) is not None  # type: ignore[arg-type]
                for tid, pc in threads}
        moves: dict[tuple, list[Transition]] = {}  # agent ("t", tid) | ("i", cpu) -> its enabled transitions
        relations: dict[Transition, dict[tuple, int] | None] = {}
        for tr in enabled:
            moves.setdefault(tr[:2], []).append(tr)
            relations[tr] = self._relations(tr, threads, hits, index_of)
        best: tuple[Transition, ...] = tuple(enabled)
        for seed in moves:
            chosen = self._close(seed, moves, relations, threads, len(best))
            if chosen is not None and len(chosen) < len(best):
                best = chosen
                if len(best) == 1:
                    break
        return best

    def _relations(self, tr: Transition, threads: list[tuple[int, int]], hits: dict[int, bool],
                   index_of: tuple[int, ...]) -> dict[tuple, int] | None:
        """How transition ``tr`` stands to every other agent: CONFLICT, CONFLICT_UNLESS (only with what the agent
        may do once its TLB entries are flushed, or once it is sent an IPI) or absent; None when ``tr``'s
        footprint is unknown. Memoised on what decides it."""
        fps = self.footprints
        assert fps is not None
        s = self.state
        if tr[0] == "t":
            tid = tr[1]
            step = self.pos[tid].step
            assert step is not None
            covering = self._covering(tid, step)
            sig: tuple = (tid, self.pos[tid].sid, fps.footprint_context(tid, self.pos[tid].pc // 2, step, s, covering),
                          index_of)
            fp = self._footprint_memo.get(sig, _UNKNOWN)
            if fp is _UNKNOWN:
                fp = self._footprint_memo[sig] = fps.step_footprint(tid, step, list(index_of), s, covering)
            acked = False
        else:
            ipi = next(i for i in s.ipis[tr[1]] if i.initiator == tr[2])
            invalidates = self.ipi_invalidates(ipi)
            sig = ("i", tr[1], invalidates, tr[2])
            fp = fps.ipi_step(tr[1], invalidates, tr[2])
            acked = ipi.half and invalidates  # ack_before_invalidate: the initiator may already be past its wait
        if fp is None:
            return None
        # An IPI's initiator waiting for the ack cannot move before the IPI's handler has run (both its steps, in
        # the kernel's order): its future is moot. Not so once the ack is in.
        moot = (tr[2] if tr[0] == "i" and not acked and self.pos[tr[2]].step is not None
                and self.pos[tr[2]].step.op == "wait_acks" else None)  # type: ignore[union-attr]
        # The whole answer depends on the footprint, the other threads' (operation, hit) and which CPUs have
        # IPIs queued: far fewer combinations than the states that ask.
        whole_key = (sig, moot, tuple([hits[tid] for tid, _ in threads]), tuple(threads), tuple(map(bool, s.ipis)))
        whole = self._relations_memo.get(whole_key)
        if whole is not None:
            return whole
        out: dict[tuple, int] = {}
        for tid, pc in threads:
            if (tr[0] == "t" and tid == tr[1]) or tid == moot:
                continue
            pair = (sig, tid, pc, hits[tid])
            rel = self._relation_memo.get(pair)
            if rel is None:
                rel = 0
                if conflict(fp, fps.future(tid, pc)):  # type: ignore[arg-type]
                    hit = fps.hit_future(tid, pc, self.pos[tid].step, s) if hits[tid] else None  # type: ignore
                    rel = CONFLICT_UNLESS if hit is not None and not conflict(fp, hit) else CONFLICT  # type: ignore
                self._relation_memo[pair] = rel
            if rel:
                out[("t", tid)] = rel
        for cpu in range(self.ncpus):
            if (tr[0] != "i" or tr[1] != cpu) and conflict(fp, fps.ipi(cpu)):  # type: ignore[arg-type]
                out[("i", cpu)] = CONFLICT if s.ipis[cpu] else CONFLICT_UNLESS
        self._relations_memo[whole_key] = out
        return out

    def _close(self, seed: tuple, moves: dict[tuple, list[Transition]],
               relations: dict[Transition, dict[tuple, int] | None], threads: list[tuple[int, int]],
               bound: int) -> tuple[Transition, ...] | None:
        """A conflict closure of agent ``seed``'s transitions, or None when it needs a transition whose
        footprint is unknown, an agent that cannot move now (it could move later, outside the set), or as many
        transitions as ``bound``.

        What an agent outside the set may still do shrinks as the set grows, since agents in it cannot move
        before the set's transitions have run: a store-only thread whose TLB entries are dirty only stores
        through them unless an agent outside the set may drop or flush them; a CPU with no IPI queued takes none
        unless an agent outside the set may send one. So agents that conflict whatever the set holds join
        first, and those whose conflict may vanish as it grows join only when nothing else is left. The set
        is returned once no agent outside it conflicts, judged against that final set: it is persistent."""
        fps = self.footprints
        assert fps is not None
        members = {seed}
        while True:
            chosen = [tr for agent in moves if agent in members for tr in moves[agent]]  # in enabled() order
            if len(chosen) >= bound:
                return None
            definite: set[tuple] = set()
            conditional: set[tuple] = set()
            outside = [(tid, pc) for tid, pc in threads if ("t", tid) not in members]
            for tr in chosen:
                rels = relations[tr]
                if rels is None:
                    return None
                for agent, rel in rels.items():
                    if agent in members:
                        continue
                    if rel == CONFLICT:
                        definite.add(agent)
                    elif agent[0] == "t":
                        if self._may_flush(self.cpu_of[agent[1]], agent[1], members, outside):
                            conditional.add(agent)
                    elif any(agent[1] in fps.sends_to[t][pc] for t, pc in outside if self.cpu_of[t] != agent[1]):
                        conditional.add(agent)  # a CPU with nothing queued that someone outside may still IPI
            if not definite and not conditional:
                return tuple(chosen)
            if any(agent not in moves for agent in definite):
                return None
            joining = definite or {agent for agent in conditional if agent in moves}
            if not joining:
                return None
            members |= joining

    def _covering(self, tid: int, step: Step) -> frozenset:
        """What a completion by this step would turn stale (see Footprints.step_footprint): the oracle's covered
        translations of ``tid`` (in the flushed range, for wait_acks); empty for other steps."""
        if not self.oracle.covered:
            return _NOTHING
        if step.op == "wait_acks":
            return self.oracle.covering(tid, *step.args)
        return self.oracle.covering(tid) if step.op in MAY_END_COVERING_CALL else _NOTHING

    def _may_flush(self, cpu: int, tid: int, members: set[tuple], outside: list[tuple[int, int]]) -> bool:
        """May an agent outside ``members`` (other than thread ``tid``) drop or flush ``cpu``'s TLB entries?"""
        if self.state.ipis[cpu] and ("i", cpu) not in members:
            return True
        invalidates = self.footprints.invalidates  # type: ignore[union-attr]
        return any(cpu in invalidates[t][pc] for t, pc in outside if t != tid)

    def _can_run(self, tid: int, step: Step) -> bool:
        op = step.op
        if op not in BLOCKING_OPS:
            return True
        if op == "wait_acks":
            return self.state.acks_pending[tid] == 0
        return getattr(self.pt, _CAN[op])(*step.args)

    def _takes_ipis(self, cpu: int) -> bool:
        if not self._ipi_blocked_while_spinning:
            return True  # a CPU spinning on a PTL or waiting for acks still services flush IPIs
        for tid, p in enumerate(self.pos):
            if self.cpu_of[tid] == cpu and p.step is not None and p.step.op in ("spin_lock", "wait_acks") \
                    and not self._can_run(tid, p.step):
                return False
        return True

    def execute(self, tr: Transition) -> list[Violation]:
        violations: list[Violation] = []
        if tr[0] == "i":
            self._deliver_ipi(tr[1], tr[2], violations)
        else:
            self._run_step(tr[1], violations)
        if self.online_checks:
            violations.extend(self.oracle.check(self.state))
        if not violations and self.quiescent():
            violations.extend(self.oracle.quiescent(self.state))
        return violations

    def _run_step(self, tid: int, violations: list[Violation]) -> None:
        p = self.pos[tid]
        step = p.step
        assert step is not None
        result = self._apply(tid, step)
        self._emit(tid, self.cpu_of[tid], "step", step.fn, step.op, step.args, result, violations)
        # The paths never look at the data a write-back carries: feed them None, so that positions (and the
        # memo) do not depend on store values (see canonical()), nor at the reference counts that get_page and
        # put_page leave, nor at what setting PG_dirty found (so those steps commute, see kernel_model.reduction).
        # The event above keeps the value.
        fed = None if step.op in _UNREAD_RESULTS else result
        r = self._resolve(tid, p.pc, p.results + (fed,))
        self.pos[tid] = r
        if r.step is None:
            self._running -= 1
        # A call that still covers a translation when it returns marks it stale (its "end" note, emitted next):
        # the reduction expects that only after the steps it lists (see Footprints.step_footprint).
        if self.footprints is not None and self.oracle.covered and step.op not in MAY_END_COVERING_CALL \
                and any(n.op == "end" for n in r.notes) and self.oracle.covering(tid):
            raise AssertionError(f"{step.fn}: {step.op} ended a call that covers a translation; add it to "
                                 "oracle.MAY_END_COVERING_CALL so that the reduction stays sound")
        self._emit_notes(tid, r.notes, violations)

    def _emit_notes(self, tid: int, notes: tuple[Note, ...], violations: list[Violation]) -> None:
        for note in notes:
            self._emit(tid, self.cpu_of[tid], "note", note.fn, note.op, note.args, None, violations)

    def _emit(self, tid: int, cpu: int, kind: str, fn: str, op: str, args: tuple, result: Any,
              violations: list[Violation]) -> None:
        """Number an event, record it if asked, and show it to the oracle. An event the oracle does not look
        at and nobody records is not built: most steps are such, and building one is a third of a step's cost."""
        seq = self.seq
        self.seq = seq + 1
        if self.record or op in OBSERVED_OPS[kind] or (op in TLB_OPS[kind] and self.oracle.wants(self.state, cpu, op,
                                                                                                 args)):
            ev = Event(seq, tid, cpu, kind, fn, op, args, result)
            if self.record:
                self.events.append(ev)
            violations.extend(self.oracle.observe(self.state, ev))

    def _apply(self, tid: int, step: Step) -> Any:
        op, args = step.op, step.args
        s = self.state
        cpu = self.cpu_of[tid]
        kind = kind_of(op)
        if kind == "cpu":
            tlb = s.tlbs[cpu]
            if op == "store_tlb":
                return tlbops.store_tlb(tlb, self.pt, *args)
            if op == "load_tlb":
                return tlbops.load_tlb(tlb, self.pt, *args)
            if op == "walk_fill":
                return tlbops.walk_fill(tlb, self.pt, *args)
            return tlbops.flush_tlb_range(tlb, *args)  # flush_tlb_local
        if kind == "ipi":
            start, end = args
            targets = [c for c in range(self.ncpus) if c != cpu]  # mm_cpumask: every CPU, none lazy
            for c in targets:
                s.ipis[c] = s.ipis[c] + (Ipi(tid, start, end),)
            s.acks_pending[tid] += len(targets)
            return len(targets)
        if op == "wait_acks":
            return None
        result = getattr(self.pt, op)(*args)
        if op == "ptep_get_and_clear_full" and args[1]:
            # s390 IPTE: the clear invalidates that translation on every CPU within the same step.
            for tlb in s.tlbs:
                tlb.pop(args[0], None)
        return result

    def can_execute(self, tr: Transition) -> bool:
        """Is ``tr`` enabled now (without partial-order reduction)? Cheaper than scanning enabled_all()."""
        if tr[0] == "t":
            tid = tr[1]
            if not 0 <= tid < self.nthreads:
                return False
            step = self.pos[tid].step
            if step is None:
                return False
            if self.cfg.arch == "up":
                holders = {owner for owner in self.state.ptl if owner != FREE}
                if holders and tid not in holders:
                    return False
            return self._can_run(tid, step)
        if tr[0] == "i" and len(tr) == 3 and 0 <= tr[1] < self.ncpus:
            return any(i.initiator == tr[2] for i in self.state.ipis[tr[1]]) and self._takes_ipis(tr[1])
        return False

    def is_counter_increment(self, tr: Transition) -> bool:
        """Is ``tr`` a turn of a counter writer's loop that lands and so goes round again (a store_tlb of
        tlb.INCREMENT through a usable TLB entry)? Completion policies run these last, so that a loop that only
        ends when another agent acts cannot starve that agent. The last turn, which finds the entry gone and
        ends the loop, is an ordinary transition."""
        if tr[0] != "t":
            return False
        p = self.pos[tr[1]]
        step = p.step
        if step is None or step.op != "store_tlb" or step.args[1] is not None:
            return False
        if self.programs[tr[1]][p.pc >> 1].counts:
            return False  # a counter with a bound (max) ends by itself: its turns are ordinary transitions
        va = step.args[0]
        entry = self.state.tlbs[self.cpu_of[tr[1]]].get(va)
        if entry is None or not entry.writable:
            return False
        if entry.dirty:
            return True
        pte = self.state.ptes[va]  # writable-clean: the locked D-bit set lands only on the same, present PTE
        return pte is not None and pte.write and pte.pfn == entry.pfn

    def stuck(self) -> bool:
        """A hang: threads are unfinished and nothing can run but counter loops. Those cannot unblock anyone (an
        increment takes no lock, sends no IPI, and no path waits on a page's contents), so they would go round
        for ever while the rest of the machine stays where it is."""
        return not self.finished() and all(self.is_counter_increment(tr) for tr in self.enabled_all())

    def run_ends(self, enabled: list[Transition]) -> bool:
        """Must a run stop here, given what ``enabled()`` or ``enabled_all()`` returned? Nothing can run, or only
        counter turns can (stuck() then tells a finished machine from a hang). Counter turns are never chosen
        alone by the reduction, so a reduced set of them is the full set."""
        return not enabled or (self.is_counter_increment(enabled[0]) and self.stuck())

    def enabled_all(self) -> list[Transition]:
        """Every enabled transition, without partial-order reduction (for replaying recorded schedules)."""
        footprints, self.footprints = self.footprints, None
        try:
            return self.enabled()
        finally:
            self.footprints = footprints

    def _deliver_ipi(self, cpu: int, initiator: int, violations: list[Violation]) -> None:
        """One of the two steps of the flush IPI handler on ``cpu`` (see ipi_invalidates): flush_tlb_func's
        invalidation, or the ack (csd_unlock, which the initiator's csd_lock_wait sees). The request leaves the
        queue with its second step."""
        s = self.state
        queue = s.ipis[cpu]
        at = next(n for n, i in enumerate(queue) if i.initiator == initiator)
        ipi = queue[at]
        rest = () if ipi.half else (ipi._replace(half=True),)
        s.ipis[cpu] = queue[:at] + rest + queue[at + 1:]
        if self.ipi_invalidates(ipi):
            dropped = tlbops.flush_tlb_range(s.tlbs[cpu], ipi.start, ipi.end)
            self._emit(ipi.initiator, cpu, "ipi", "flush_tlb_func", "ipi_flush", (ipi.start, ipi.end), dropped,
                       violations)
        else:
            s.acks_pending[ipi.initiator] -= 1
            self._emit(ipi.initiator, cpu, "ipi", "csd_unlock", "ipi_ack", (ipi.start, ipi.end), None, violations)

    def ipi_invalidates(self, ipi: Ipi) -> bool:
        """Is the next step of this queued flush IPI the invalidation (else: the ack)? The kernel runs a
        synchronous csd's func before csd_unlock (__flush_smp_call_function_queue), so flush_tlb_func has
        invalidated before the initiator sees the ack. The ack_before_invalidate mutant unlocks first (as for an
        asynchronous csd) and lets the CPU run on before it invalidates: coarser than a handler that runs with
        interrupts off, on purpose; it stands for any kernel that lets the initiator go on while a target can
        still use the old translation (e.g. a deferred flush), which is what stale_tlb_access is about."""
        return ipi.half == self._ack_first

    # --- whole states, for search ---------------------------------------------------------------------------
    def key(self) -> tuple:
        return (self.state.key(), tuple([p.at for p in self.pos]), self.oracle.key())

    def canonical(self, key: tuple) -> tuple:
        """``key`` with the page contents renamed in order of first appearance (data, snapshot, disk), and
        interchangeable writers put in the order that represents their orbit (kernel_model.symmetry).

        Store values are opaque to the model: no path branches on them and the oracle only compares them for
        equality, and every later store writes a value no page holds yet. Two states that differ only by a
        renaming of values therefore have the same futures and the same verdicts, and exhaustive search may
        visit one of them. A snapshot outside writeback is stale (only writeback reads it) and is dropped."""
        state_key, positions, oracle_key = key
        folios, page_cache, disk, *rest = state_key
        last = oracle_key[-1]
        memo = (folios, disk, last) if last else (folios, disk)
        renamed = self._renamed.get(memo)
        if renamed is None:
            if len(self._renamed) >= self._renamed_max:
                self._renamed.clear()
            renamed = self._renamed[memo] = _rename_values(folios, disk, last)
        if last:  # the values the oracle remembers for expectations are renamed with the pages'
            *renamed, last = renamed
            oracle_key = oracle_key[:-1] + (last,)
        key = ((*renamed, page_cache, *rest), positions, oracle_key)
        return self.symmetry.representative(key) if self.symmetry else key

    def restore(self, key: tuple) -> None:
        state_key, positions, oracle_key = key
        self.state = State.from_key(state_key)
        self.pt = PageTableOps(self.state)
        self.oracle.restore(oracle_key)
        # Most positions are those the machine is at already (a restore goes back one transition): keep them.
        self.pos = [p if p.at is at else self._resolve(tid, *at) for tid, (p, at) in enumerate(zip(self.pos, positions))]
        self._running = sum(1 for p in self.pos if p.step is not None)

    def hang_report(self) -> Violation:
        """Nothing can run and some thread is unfinished: say who waits for what, who holds it, and the cycle."""
        names = [t.name for t in self.scenario.threads]
        waits: list[str] = []
        edges: dict[int, list[int]] = {}
        for tid, p in enumerate(self.pos):
            if p.step is None:
                continue
            if self.is_counter_increment(("t", tid)):
                waits.append(f"{names[tid]} keeps incrementing through its TLB entry, which nobody flushes")
                continue
            what, holders = self.wait_target(tid, p.step)
            edges[tid] = holders
            waits.append(f"{names[tid]} waits in {p.step.fn} for {what}")
        cycle = find_cycle(edges)
        detail = "; ".join(waits)
        if cycle:
            detail += "; cycle: " + " -> ".join(names[t] for t in cycle + [cycle[0]])
        return Violation("hang", detail)

    def wait_target(self, tid: int, step: Step) -> tuple[str, list[int]]:
        s = self.state
        names = [t.name for t in self.scenario.threads]
        op, args = step.op, step.args

        def who(ids: list[int]) -> str:
            return ", ".join(names[i] for i in ids if 0 <= i < len(names)) or "nobody"

        if op == "spin_lock":
            owner = s.ptl[args[0]]
            self_deadlock = " (itself: the PTL is not recursive)" if owner == tid else ""
            return f"PTL {args[0]} held by {who([owner])}{self_deadlock}", [owner]
        if op == "folio_lock":
            owner = s.folios[args[0]].locked
            return f"the folio lock of pfn {args[0]} held by {who([owner])}", [owner]
        if op in ("down_read", "down_write"):
            sem = s.mmap_lock if args[0] == "mmap_lock" else s.i_mmap_rwsem
            holders = [sem.writer] if sem.writer != FREE else list(sem.readers)
            return f"{args[0]} held by {who(holders)}", holders
        if op == "wait_acks":
            cpus = [c for c, q in enumerate(s.ipis) if any(i.initiator == tid for i in q)]
            on = [t for t in range(self.nthreads) if self.cpu_of[t] in cpus and self.pos[t].step is not None]
            return (f"flush IPI acks from CPU {', '.join(map(str, cpus))}, which does not take IPIs while "
                    f"{who(on)} spins", on)
        if op == "folio_wait_writeback":
            return f"writeback of pfn {args[0]} to end", []
        return op, []


def _rename_values(folios: tuple, disk: tuple, last: tuple = ()) -> tuple:
    """Folios and disk with store values renamed in order of first appearance (data, snapshot, disk), and a
    snapshot outside writeback dropped (see Machine.canonical); with ``last`` (the oracle's remembered
    (file index, value) per expectation), that too, renamed after them."""
    names: dict[int, int] = {}
    name = names.setdefault
    # Plain tuples spliced by field position (Folio: ..., data = 2, ..., writeback = 5, wb_data = 6, ...):
    # a canonical key only has to compare and hash, and _replace is the slow part of this hot path.
    folios = tuple(f[:2] + (name(f[2], len(names)),) + f[3:6]
                   + ((name(f[6], len(names)) if f[5] else -1),) + f[7:] for f in folios)
    disk = tuple(name(v, len(names)) for v in disk)
    if not last:
        return folios, disk
    return folios, disk, tuple(None if x is None else (x[0], name(x[1], len(names))) for x in last)


def find_cycle(edges: dict[int, list[int]]) -> list[int]:
    for start in edges:
        path, node = [start], start
        while True:
            nxt = [n for n in edges.get(node, []) if n in edges]
            if not nxt:
                break
            node = nxt[0]
            if node in path:
                return path[path.index(node):]
            path.append(node)
    return []


_SHARED_MEMOS: dict[tuple, dict[tuple, Resolved]] = {}
_STEP_IDS: dict[tuple, int] = {}
_UNKNOWN = object()
# Page slots Machine._renamed holds before it starts again (it is a cache, not a record): 200,000 entries up
# to 16 pages, fewer for more.
_RENAMED_SLOTS = 200_000 * 16
_NOTHING: frozenset = frozenset()
_CAN = {op: "can_" + op for op in BLOCKING_OPS}  # PageTableOps' test of whether a blocking action may proceed
CONFLICT = 2  # a transition conflicts with what another agent may still do
CONFLICT_UNLESS = 1  # ... but only with what that agent may do after a TLB flush or an IPI it has not got yet
assert Folio._fields[2:7] == ("data", "dirty", "locked", "writeback", "wb_data")  # Machine.canonical splices these
_UNREAD_RESULTS = UNREAD_RESULTS  # the op table's ops whose results paths do not read


@dataclass(frozen=True, slots=True)
class _Done:
    """What _send gives back once an attempt has returned, with its return value."""

    value: Any


def _send(gen: Any, value: Any) -> Any:
    try:
        return gen.send(value)
    except StopIteration as stop:
        return _Done(stop.value)
