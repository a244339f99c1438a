"""The controlled runtime: one in-process machine whose every transition a scheduler chooses.

A transition (controlled.positions) is ``ThreadStep(tid)``: thread ``tid`` performs its next step; or
``IpiStep(cpu, initiator)``: ``cpu`` runs the next transition of the handler of the flush IPI that thread
``initiator`` sent it. IPIs from different senders may be taken in any order, as on real hardware. Everything is
deterministic given the sequence of transitions, which is what schedule files record.

The machine is a facade over three parts: thread positions and applying steps (controlled.positions), the
partial-order reducer (controlled.reducer) and the canonicaliser (controlled.canonical); who waits for whom
when nothing can run is kernel_model.wait_for's.
"""

from __future__ import annotations

from typing import Any

from controlled.canonical import Canonicaliser
from controlled.coverings import NOTHING, coverings
from controlled.lock_joins import joinable_acquires, joinable_releases
from controlled.position_futures import PositionFutures
from controlled.positions import (IpiStep, Positions, Resolved, ThreadStep, Transition, apply_ipi_step, apply_step,
                                    ipi_transitions, take_ipi)
from controlled.reducer import Reducer
from controlled.reduction import Footprints
from kernel_model import boot, wait_for
from kernel_model import tlb as tlbops
from kernel_model.atomic import PageTableOps
from kernel_model.config import Config
from kernel_model.events import Event, Violation
from kernel_model.ops import UNREAD_RESULTS
from kernel_model.oracle import MAY_END_COVERING_CALL, OBSERVED_OPS, TLB_OPS, Oracle
from kernel_model.program import Op, Scenario, flatten
from kernel_model.state import FREE, State
from kernel_model.steps import BLOCKING_OPS, Note, Step

__all__ = ["Machine", "Transition", "ThreadStep", "IpiStep", "Resolved"]


class Machine:
    def __init__(self, scenario: Scenario, cfg: Config, *, record: bool = False, reduce: bool = False,
                 symmetric: bool = True, merge: bool = True) -> None:
        """``reduce``: explore with partial-order reduction; the oracle then checks whole-state invariants at
        quiescence only (controlled.reduction). ``symmetric``: canonical() keeps one state per orbit of writers
        (controlled.symmetry). ``merge``: a reducing machine merges positions (Positions._representative)."""
        self.scenario = scenario
        self.cfg = cfg
        self.record = record
        self.nthreads = len(scenario.threads)
        self.ncpus = boot.ncpus(scenario, cfg)
        self.cpu_of = boot.cpu_of(scenario, cfg)
        self.programs: list[list[Op]] = [flatten(t.ops) for t in scenario.threads]
        setup = scenario.setup
        self.ctx = boot.thread_contexts(scenario, cfg)
        self.state = boot.initial_state(scenario, cfg)
        self.pt = PageTableOps(self.state)
        # The model state's parts last keyed or restored, and the State holding exactly them (None once it changed).
        self._parts, self._parts_state = None, None  # type: tuple | None, State | None
        self.oracle = Oracle(tuple((e.kind, scenario.thread_index(e.thread), e.page, e.thread)
                                   for e in scenario.expect))
        # The flush IPI handler's steps, as this kernel orders them, grouped into scheduled transitions.
        self.ipi_handler = ipi_transitions(tlbops.flush_ipi_handler(cfg))
        self.footprints = (Footprints(self.programs, self.cpu_of, self.ncpus, setup.pages, setup.ptes_per_table,
                                      cfg.arch == "s390", cfg.arch == "up", setup.anon) if reduce else None)
        # A search joins each lock acquire to the step after it, and a release to the step before it, where that is
        # sound (controlled.lock_joins); a machine that replays a schedule step by step, or samples runs, never does.
        searching = self.footprints is not None
        joins = joinable_acquires(self.programs, self.footprints.linear) if searching else frozenset()
        releases = joinable_releases(self.programs) if searching else frozenset()
        self.positions = Positions(scenario, cfg, self.ctx, self.programs, joins, releases, searching and merge)
        self.reducer = (Reducer(self.footprints, self.cpu_of, self.ncpus, self.oracle, self.ipi_handler,
                                PositionFutures(self.footprints, self.positions))
                        if self.footprints is not None else None)
        self.online_checks = not reduce
        self._ipi_blocked_while_spinning = cfg.has("no_ipi_while_spinning")
        self._up = cfg.arch == "up"  # asked by enabled_all() in every state
        self.canonicaliser = Canonicaliser(scenario, self.cpu_of, self.ncpus, set(boot.warm_cpus(scenario, cfg)),
                                           symmetric)
        self.symmetry = self.canonicaliser.symmetry
        if self.reducer is not None:  # its tie-break must not depend on which writer is which (Reducer)
            self.reducer.interchangeable = frozenset(self.symmetry.members)
        # Transitions are built once: enabled() is on the search's hot path.
        self._thread_steps = [ThreadStep(t) for t in range(self.nthreads)]
        self._ipi_steps = [[IpiStep(c, t) for t in range(self.nthreads)] for c in range(self.ncpus)]
        self.seq = 0
        self.events: list[Event] = []
        self.pos: list[Resolved] = []
        for tid in range(self.nthreads):
            r = self.positions.resolve(tid, (0, 0), ())
            self.pos.append(r)
            self._emit_notes(tid, r.notes, [])
        self._running = sum(1 for p in self.pos if p.step is not None)  # threads not yet finished
        self._settle_joins()

    # --- what may run ---------------------------------------------------------------------------------------
    def finished(self) -> bool:
        return self._running == 0

    def quiescent(self) -> bool:
        return self.finished() and not any(self.state.ipis)

    def enabled(self) -> list[Transition]:
        """The enabled transitions a search must try (a persistent set of them when reducing)."""
        out = self.enabled_all()
        if self.reducer is not None and len(out) > 1:
            return self.reducer.persistent(self.pos, self.state, out)
        return out

    def enabled_all(self) -> list[Transition]:
        """Every enabled transition, without partial-order reduction (for replaying recorded schedules)."""
        s = self.state
        out: list[Transition] = []
        holders = None
        if self._up:
            # UP: a thread holding a spinlock is not preempted, so nothing else runs until it unlocks.
            holders = {owner for owner in s.ptl if owner != FREE}
        for tid, p in enumerate(self.pos):
            if p.step is None or (holders and tid not in holders):
                continue
            if self._can_run(tid, p.step):
                out.append(self._thread_steps[tid])
        for cpu, pending in enumerate(s.ipis):
            if pending and self._takes_ipis(cpu):
                steps = self._ipi_steps[cpu]
                out.extend([steps[ipi.initiator] for ipi in pending])
        return out

    def can_execute(self, tr: Transition) -> bool:
        """Is ``tr`` enabled now (without partial-order reduction)? Cheaper than scanning enabled_all()."""
        if tr[0] == "t" and len(tr) == 2:
            return self._thread_can_execute(tr[1])
        if tr[0] == "i" and len(tr) == 3 and 0 <= tr[1] < self.ncpus:
            return any(i.initiator == tr[2] for i in self.state.ipis[tr[1]]) and self._takes_ipis(tr[1])
        return False

    def _thread_can_execute(self, tid: int) -> bool:
        if not 0 <= tid < self.nthreads:
            return False
        step = self.pos[tid].step
        if step is None:
            return False
        if self._up:
            holders = {owner for owner in self.state.ptl if owner != FREE}
            if holders and tid not in holders:
                return False
        return self._can_run(tid, step)

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

    # --- counter loops and the end of a run -----------------------------------------------------------------
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
        if self.programs[tr[1]][p.pc[0]].counts:
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

    # --- running transitions --------------------------------------------------------------------------------
    def execute(self, tr: Transition) -> list[Violation]:
        self._parts_state = None  # the state changes: it no longer holds exactly _parts (restore rebuilds all)
        violations: list[Violation] = []
        if tr[0] == "i":
            self._deliver_ipi(tr[1], tr[2], violations)
        else:
            self._run_step(tr[1], violations)
        if self.online_checks:
            violations.extend(self.oracle.check(self.state))
        if not violations and self._running == 0 and not any(self.state.ipis):  # quiescent(), inlined: every step
            violations.extend(self.oracle.quiescent(self.state))
        self._settle_joins()
        return violations

    def _settle_joins(self) -> None:
        """Each thread at a position with a second block (Resolved.uncovered: it also runs the release that ends
        the call, controlled.lock_joins) takes it exactly when the oracle holds no covered translation of the
        thread: a function of the state, as the search needs. Called after every transition and restore."""
        if not self.positions.releases:
            return
        covered = self.oracle.covered
        for tid, p in enumerate(self.pos):
            base = p.settles
            if base is not None:
                want = base if covered and self.oracle.covering(tid) else base.uncovered
                if want is not p:
                    self.pos[tid] = want

    def _run_step(self, tid: int, violations: list[Violation]) -> None:
        """Thread ``tid``'s next transition: its step, and the steps joined to it (controlled.lock_joins)."""
        block = self.pos[tid].block
        self._run_one_step(tid, violations)
        for joined in block[1:]:
            # Identity first: the memoised position holds the very Step object (a dataclass's == compares fields).
            step = self.pos[tid].step
            assert step is joined or step == joined, f"{block[0].fn}: the step joined after {block[0].op} changed"
            self._run_one_step(tid, violations)

    def _run_one_step(self, tid: int, violations: list[Violation]) -> None:
        p = self.pos[tid]
        step = p.step
        assert step is not None
        cpu = self.cpu_of[tid]
        result = apply_step(self.state, self.pt, self.ncpus, tid, cpu, step)
        self._emit(tid, cpu, "step", step.fn, step.op, step.args, result, violations)
        # The paths never look at the data a write-back carries: feed them None, so that positions (and the
        # memo) do not depend on store values (see canonical()), nor at the reference counts that get_page and
        # put_page leave, nor at what setting PG_dirty found (so those steps commute, see controlled.reduction).
        # The event above keeps the value.
        fed = None if step.op in _UNREAD_RESULTS else result
        r = self.positions.resolve(tid, p.pc, p.results + (fed,))
        self.pos[tid] = r
        if r.step is None:
            self._running -= 1
        # A call that still covers a translation when it returns marks it stale (its "end" note, emitted next):
        # the reduction expects that only after the steps it lists (see Footprints.step_footprint).
        if r.ends_call and self.footprints is not None and self.oracle.covered \
                and step.op not in MAY_END_COVERING_CALL and self.oracle.covering(tid):
            raise AssertionError(f"{step.fn}: {step.op} ended a call that covers a translation; add it to "
                                 "oracle.MAY_END_COVERING_CALL so that the reduction stays sound")
        self._emit_notes(tid, r.notes, violations)

    def _deliver_ipi(self, cpu: int, initiator: int, violations: list[Violation]) -> None:
        """The next transition of the flush IPI handler on ``cpu`` for ``initiator`` (positions.ipi_transitions):
        its steps in order, each shown to the oracle as an event of its own."""
        ipi = take_ipi(self.state, cpu, initiator, len(self.ipi_handler))
        for step in self.ipi_handler[ipi.done]:
            result = apply_ipi_step(self.state, cpu, ipi, step)
            self._emit(initiator, cpu, "ipi", step.fn, step.op, (ipi.start, ipi.end), result, violations)

    def _emit_notes(self, tid: int, notes: tuple[Note, ...], violations: list[Violation]) -> None:
        for note in notes:
            self._emit(tid, self.cpu_of[tid], "note", note.fn, note.op, note.args, None, violations)

    def _emit(self, tid: int, cpu: int, kind: str, fn: str, op: str, args: tuple, result: Any,
              violations: list[Violation]) -> None:
        """Number an event, record it if asked, and show it to the oracle. An event the oracle does not look
        at and nobody records is not built: most steps are such, and building one is a third of a step's cost."""
        seq = self.seq
        self.seq = seq + 1
        watch = _WATCH[kind].get(op, _UNSEEN)
        if self.record or watch is _SEEN or (watch is _ASK and self.oracle.wants(self.state, cpu, op, args)):
            ev = Event(seq, tid, cpu, kind, fn, op, args, result)
            if self.record:
                self.events.append(ev)
            violations.extend(self.oracle.observe(self.state, ev))

    # --- whole states, for search ---------------------------------------------------------------------------
    def key(self) -> tuple:
        """The model's state (parts unchanged since the last key or restore kept: State.key's like), positions, oracle."""
        self._parts, self._parts_state = self.state.key(self._parts), self.state  # held exactly until execute()
        return (self._parts, tuple([p.at for p in self.pos]), self.oracle.key())

    def canonical(self, key: tuple) -> tuple:
        """``key`` as controlled.canonical puts it: store values renamed, interchangeable writers ordered."""
        return self.canonicaliser.canonical(key)

    # --- what sleep sets ask (controlled.sleep_sets): the reducer's answers in the current state ----------
    def coverings(self, tid: int, p: Resolved) -> tuple[frozenset, ...]:
        """What a completion by each step of thread ``tid``'s transition at ``p`` would turn stale (the footprint's
        context: controlled.coverings)."""
        return coverings(self.oracle, tid, p) if self.reducer is not None else tuple(NOTHING for _ in p.steps)

    def restore(self, key: tuple) -> None:
        state_key, positions, oracle_key = key
        if self._parts_state is self.state:  # it holds _parts exactly: from_key keeps what is alike
            State.from_key(state_key, self.state, self._parts)
        else:
            self.state = State.from_key(state_key)
            self.pt = PageTableOps(self.state)
        self._parts, self._parts_state = state_key, self.state
        self.oracle.restore(oracle_key)
        self._running += _restore_positions(self.pos, positions, self.positions)
        self._settle_joins()

    # --- hangs ----------------------------------------------------------------------------------------------
    def hang_report(self) -> Violation:
        """Nothing can run and some thread is unfinished: say who waits for what, who holds it, and the cycle
        (kernel_model.wait_for)."""
        names = [t.name for t in self.scenario.threads]
        waits: list[str] = []
        edges: dict[int, list[int]] = {}
        for tid, p in enumerate(self.pos):
            if p.step is None:
                continue
            if self.is_counter_increment(self._thread_steps[tid]):
                waits.append(f"{names[tid]} keeps incrementing through its TLB entry, which nobody flushes")
                continue
            what, holders = self.wait_target(tid, p.step)
            edges[tid] = holders
            waits.append(f"{names[tid]} waits in {p.step.fn} for {what}")
        return Violation("hang", "; ".join(waits) + wait_for.cycle_text(edges, names))

    def wait_target(self, tid: int, step: Step) -> tuple[str, list[int]]:
        """What thread ``tid``'s blocked ``step`` waits for, in words, and the threads it waits for."""
        wait = wait_for.wait_of(self.state, tid, step, [t.name for t in self.scenario.threads], self.cpu_of,
                                [p.step is not None for p in self.pos])
        return wait.what, wait.holders


def _restore_positions(pos: list[Resolved], positions: tuple, resolver: Positions) -> int:
    """Put each thread of ``pos`` at its position of ``positions`` (a machine key's), in place, as a step replaces
    its thread's; how many more threads run. Most are where the machine is already (a restore goes back one
    transition): only the others are resolved."""
    more = 0
    for tid in range(len(pos)):
        if pos[tid].at is not positions[tid]:
            r, was = resolver.resolve(tid, *positions[tid]), pos[tid]
            more += (r.step is not None) - (was.step is not None)
            pos[tid] = r
    return more


# Does the oracle look at an event (by its kind, then op)? _SEEN: always (OBSERVED_OPS); _ASK: a TLB event, when
# Oracle.wants it (TLB_OPS); _UNSEEN: never. One dict lookup in _emit instead of two frozenset tests, every step.
_SEEN, _ASK, _UNSEEN = "seen", "ask", "unseen"
_WATCH: dict[str, dict[str, str]] = {kind: {**{op: _ASK for op in TLB_OPS.get(kind, ())},
                                            **{op: _SEEN for op in observed}}
                                     for kind, observed in OBSERVED_OPS.items()}
_CAN = {op: "can_" + op for op in BLOCKING_OPS}  # PageTableOps' test of whether a blocking action may proceed
_UNREAD_RESULTS = UNREAD_RESULTS  # the op table's ops whose results paths do not read
