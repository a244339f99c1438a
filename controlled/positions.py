"""Where each agent of the controlled machine stands, what a transition is, and applying a step to the state.

A transition is ``ThreadStep(tid)``: thread ``tid`` performs its next step; or ``IpiStep(cpu, initiator)``:
``cpu`` runs the next transition of the handler of the flush IPI that thread ``initiator`` sent it (the whole
handler, flush_tlb_func then the ack, on a kernel that acks last; see ipi_transitions). Both are named tuples that
equal the plain tuples ``("t", tid)`` and ``("i", cpu, initiator)``, which schedule files and memo keys hold: they
compare and hash as cheaply.

A thread's position is its program counter ``pc = (operation index, retry)`` (retry: 1 when this attempt
retries that operation) and the results the current attempt has received. A generator cannot be copied, but
it can be rebuilt by re-feeding those results, and the next step is a pure function of the position, so
positions are memoised: exhaustive search pays for a rebuild only the first time it meets a position. A retried
access starts from empty results, so the history of earlier attempts does not multiply states. A search goes
further: a retried attempt is keyed as the first attempt it repeats, and (generator_state.DEAD_RESULTS) a
position whose generator stands at the same step in the same state as one met before takes that one's pc and
results (Positions._representative): histories that differ only in what the path never reads again.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass, field
from typing import Any, Union

from controlled import generator_state
from controlled.memo import MISSING, BoundedMemo
from kernel_model import tlb as tlbops
from kernel_model.atomic import PageTableOps
from kernel_model.config import Config
from kernel_model.context import Kctx
from kernel_model.ops import CONTEXT_OPS, FED_NONE
from kernel_model.program import Op, Scenario
from kernel_model.state import Ipi, State
from kernel_model.steps import BLOCKING_OPS, Note, Step, kind_of
from kernel_model.syscalls import op_attempt
from kernel_model.tlb import RETRY


# --- transitions --------------------------------------------------------------------------------------------
class ThreadStep(namedtuple("ThreadStep", "kind tid")):
    """Thread ``tid`` performs its next step: the tuple ``("t", tid)``."""

    __slots__ = ()
    __repr__ = tuple.__repr__  # printed as schedules print it

    def __new__(cls, tid: int) -> "ThreadStep":
        return tuple.__new__(cls, ("t", tid))

    def __getnewargs__(self) -> tuple[int]:
        return (self.tid,)


class IpiStep(namedtuple("IpiStep", "kind cpu initiator")):
    """``cpu`` runs the next transition of its handler of ``initiator``'s flush IPI: ``("i", cpu, initiator)``."""

    __slots__ = ()
    __repr__ = tuple.__repr__

    def __new__(cls, cpu: int, initiator: int) -> "IpiStep":
        return tuple.__new__(cls, ("i", cpu, initiator))

    def __getnewargs__(self) -> tuple[int, int]:
        return (self.cpu, self.initiator)


Transition = Union[ThreadStep, IpiStep]


def as_transition(raw: Any) -> Transition:
    """A transition from its plain form (a schedule file's list, a tuple); ValueError when it is none."""
    if len(raw) == 2 and raw[0] == "t":
        return ThreadStep(raw[1])
    if len(raw) == 3 and raw[0] == "i":
        return IpiStep(raw[1], raw[2])
    raise ValueError(f"not a transition: {raw!r}")


# --- thread positions ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class Resolved:
    """Where a thread stands after feeding it: the notes it emitted on the way and the step it now waits to do."""

    notes: tuple[Note, ...]
    step: Step | None  # None: the thread has finished its program
    pc: tuple[int, int]  # (operation index, retry)
    results: tuple
    # The steps the thread's next transition runs when it is more than ``step`` alone: an acquire joined to the
    # step after it, a release joined to the step before it, or both (controlled.lock_joins); () otherwise.
    block: tuple[Step, ...] = ()
    # (operation index, next step(s)) as a small int: what the reduction's memo needs of a position, cheap to hash.
    sid: int = 0
    at: tuple = ()  # (pc, results): the position as the machine's key holds it, built once
    # The same position with a longer block, for a thread that covers no translation: its block also runs the
    # release that ends the call (controlled.lock_joins; Machine._settle_joins picks it). ``base`` leads back.
    uncovered: "Resolved | None" = field(default=None, compare=False, repr=False)
    base: "Resolved | None" = field(default=None, compare=False, repr=False)
    # Of such a position and of its longer variant: the former (Machine._settle_joins picks between the two after
    # every transition and restore, so it is kept here rather than found through ``base`` each time); else None.
    settles: "Resolved | None" = field(default=None, compare=False, repr=False)
    # (the PositionFutures' token, this position's future there): controlled.position_futures caches it here so
    # that the reducer, which asks for every thread's future in every state, skips hashing ``at`` each time.
    future: tuple | None = field(default=None, compare=False, repr=False)
    # The steps of the next transition whose footprint reads the state (CONTEXT_OPS), built once: the reducer's
    # memo key names their contexts in every state it is asked about.
    contexts: tuple[Step, ...] = field(default=(), compare=False, repr=False)
    # The steps of the thread's next transition: its step, and the one joined to it if any. A field built once,
    # not a property: the reducer and the sleep sets ask for it several times in every state.
    steps: tuple[Step, ...] = field(default=(), init=False, compare=False, repr=False)
    # Does the thread's call end on the way here (an "end" note)? Machine._run_one_step asks after every step.
    ends_call: bool = field(default=False, init=False, compare=False, repr=False)
    # Did an attempt return on the way here (this position starts a retry or the next operation)? Asked by the
    # joins and the futures rather than comparing pcs: a merged position may carry the other attempt's retry flag
    # (Positions._representative).
    crossed: bool = field(default=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.sid = _STEP_IDS.setdefault((self.pc[0], self.block or self.step), len(_STEP_IDS))
        self.at = (self.pc, self.results)
        self.steps = self.block or (() if self.step is None else (self.step,))
        self.contexts = tuple([step for step in self.steps if step.op in CONTEXT_OPS])
        self.ends_call = any(n.op == "end" for n in self.notes)

    @property
    def op_index(self) -> int:
        return self.pc[0]


class Positions:
    """Resolves thread positions to the step each thread waits to do, rebuilding generators only on a miss."""

    def __init__(self, scenario: Scenario, cfg: Config, ctx: list[Kctx], programs: list[list[Op]],
                 joins: frozenset[str] = frozenset(), releases: frozenset[str] = frozenset(),
                 merge_histories: bool = False) -> None:
        """``joins``: the acquires whose position joins the step after them into one transition; ``releases``:
        the releases joined to the step before them (controlled.lock_joins; only searches join).
        ``merge_histories``: a position whose generator is in the same state as one met before takes that one's
        results (see _representative; only searches merge)."""
        self.programs = programs
        self.ctx = ctx
        self.pages = scenario.setup.pages
        self.joins = joins
        self.releases = releases
        # Positions resolve the same way in every machine of this scenario, configuration and joins: share the
        # memo (replaying many trials of one campaign then rebuilds each generator position only once).
        merging = merge_histories and generator_state.SUPPORTED
        memo_key = (scenario.setup, scenario.threads, cfg, joins, releases, merging, generator_state.DEAD_RESULTS)
        self.memo: BoundedMemo = _SHARED_MEMOS.setdefault(memo_key, BoundedMemo(POSITIONS_BOUND))
        # (thread, operation index, step, generator state) -> (pc, results) of the first position met there;
        # shared as the memo is, so that every machine of the scenario names a class by the same history. Bounded
        # as the memo is: a class forgotten and met again may take another representative, which only keeps two
        # keys for one state.
        self.merging = merging
        self.classes: BoundedMemo | None = (_SHARED_CLASSES.setdefault(memo_key, BoundedMemo(POSITIONS_BOUND))
                                            if merging and generator_state.DEAD_RESULTS else None)
        if len(_SHARED_CLASSES) > 64:
            _SHARED_CLASSES.pop(next(iter(_SHARED_CLASSES)))
        if len(_SHARED_MEMOS) > 64:
            _SHARED_MEMOS.pop(next(iter(_SHARED_MEMOS)))
        self._live: list[tuple[Any, tuple[int, int], tuple] | None] = [None] * len(programs)

    def resolve(self, tid: int, pc: tuple[int, int], results: tuple) -> Resolved:
        key = (tid, pc, results)
        hit = self.memo[key]
        if hit is not MISSING:
            return hit
        notes: list[Note] = []
        crossed = False
        gen, item = self._generator_at(tid, pc, results)
        while True:
            if isinstance(item, _Done):
                # The attempt returned: retry the same operation, or go on with the next one.
                pc = (pc[0], 1) if item.value is RETRY else (pc[0] + 1, 0)
                results = ()
                crossed = True
                gen, item = self._generator_at(tid, pc, results)
                if gen is None:
                    resolved = Resolved(tuple(notes), None, pc, (), crossed=True)
                    break
            elif isinstance(item, Note):
                notes.append(item)
                results = results + (None,)
                item = _send(gen, None)
            else:
                if self.merging and item is not None:  # None: past the program's end
                    pc, results = self._representative(tid, pc, results, item)
                self._live[tid] = (gen, pc, results)
                block, ending = self._joined(tid, pc, results, item)
                resolved = Resolved(tuple(notes), item, pc, results, block, crossed=crossed)
                if ending:
                    resolved.uncovered = Resolved(resolved.notes, item, pc, results, ending, base=resolved,
                                                  crossed=crossed)
                    resolved.settles = resolved.uncovered.settles = resolved
                break
        self.memo.put(key, resolved)
        return resolved

    def _representative(self, tid: int, pc: tuple[int, int], results: tuple,
                        step: Step) -> tuple[tuple[int, int], tuple]:
        """The (pc, results) a search keys this position by: a retry's as the first attempt it repeats; then, with
        generator_state.DEAD_RESULTS, those of the first position of thread ``tid`` in operation ``pc[0]`` met
        with its generator at the same step in the same state (controlled.generator_state); this position's own
        where its state cannot be read.

        Sound as a key (SPIN's dead-variable reduction, on the generator's frames): the state is everything the
        generator's future steps and notes depend on, for every result it is sent from here, so a machine may go
        on from the representative's history (rebuilt from its results on a restore) and do exactly what it would
        from its own. What else reads a position reads its operation (pc[0]) or is handed the representative
        whole: the joins (_joined) and the futures (controlled.position_futures, which keeps the operation's
        footprint where a tree meets the other retry flag). The notes emitted on the way here are this position's
        own (Resolved.notes), and schedules name transitions, never positions."""
        index, retry = pc
        state = generator_state.state_at(self.ctx[tid], self.programs[tid][index], index, self.pages, not retry,
                                         results, step)
        if state is None:
            return pc, results
        if retry:
            # The retry as the first attempt it repeats: that attempt's begin note took one result more, and its
            # generator stands at the same step in the same state (checked). A function of the position alone, so
            # every process and search order keys it the same (parallel workers' counts stay one process's).
            first = (None,) + results
            if generator_state.state_at(self.ctx[tid], self.programs[tid][index], index, self.pages, True, first,
                                        step) == state:
                pc, results = (index, 0), first
        classes = self.classes
        if classes is None:  # merging by dead results is off (generator_state.DEAD_RESULTS): retries only
            return pc, results
        key = (tid, index, step, state)  # the step it waits at, then what it does once resumed
        rep = classes[key]
        if rep is MISSING:
            classes.put(key, (pc, results))
            return pc, results
        known = self.memo[(tid, *rep)]
        assert known is MISSING or known.step == step, f"{step.fn}: a merged position's step differs"
        return rep

    def _joined(self, tid: int, pc: tuple[int, int], results: tuple,
                step: Step | None) -> tuple[tuple[Step, ...], tuple[Step, ...]]:
        """(block, ending): the steps thread ``tid``'s next transition runs when it is more than ``step`` alone, ()
        otherwise (controlled.lock_joins): a joinable acquire and the step after it, when that does not block;
        then each joinable release after a step whose result the path does not read, when no note follows it.
        ``ending``: that block and the release that ends the call after it,
        for a thread that covers no translation; () when there is none. Only steps whose results are fed None
        are followed, so the chain is known before it runs."""
        if step is None:
            return (), ()
        chain = [step]
        ending: list[Step] = []
        # The position of chain[-1] (a note between steps takes a result too: resolve). Its pc, not ``pc``: a
        # merged position may carry the other attempt's retry flag with its results (_representative).
        at_pc, at = pc, results
        while chain[-1].op in FED_NONE:  # the path is fed None after it (Machine._run_one_step)
            last = chain[-1]
            after = self.resolve(tid, at_pc, at + (None,))
            nxt = after.step
            if nxt is None or after.crossed or nxt.op in BLOCKING_OPS:
                break
            at_pc, at = after.pc, after.results
            if nxt.op in self.releases:
                notes = self.resolve(tid, at_pc, at + (None,)).notes  # what the release's transition emits after it
                if notes:
                    # Only the call's "end" note may follow, and it turns nothing stale only in a thread that
                    # covers nothing (see controlled.lock_joins).
                    if all(n.op == "end" for n in notes):
                        ending = chain + [nxt]
                    break
            elif last.op not in self.joins or len(chain) > 1:
                break
            chain.append(nxt)  # a release after the step before it, or an acquire's next step
        return (tuple(chain) if len(chain) > 1 else ()), tuple(ending)

    def _generator_at(self, tid: int, pc: tuple[int, int], results: tuple) -> tuple[Any, Any]:
        """A generator for attempt ``pc`` positioned after ``results``, and what it yields next (a ``_Done``
        once the attempt has returned); (None, None) past the end of the program."""
        program = self.programs[tid]
        index, retry = pc
        if index >= len(program):
            return None, None
        live = self._live[tid]
        if live is not None and results and live[1] == pc and live[2] == results[:-1]:
            # The common case in a single run: the live generator is exactly one result behind.
            self._live[tid] = None
            return live[0], _send(live[0], results[-1])
        gen = op_attempt(self.ctx[tid], program[index], index, self.pages, not retry)
        item = _send(gen, None)
        for r in results:
            item = _send(gen, r)
        return gen, item


# --- applying steps -----------------------------------------------------------------------------------------
def apply_step(s: State, pt: PageTableOps, ncpus: int, tid: int, cpu: int, step: Step) -> Any:
    """Perform thread ``tid``'s ``step`` (on ``cpu``) on ``s``, and return its result."""
    op, args = step.op, step.args
    kind = kind_of(op)
    if kind == "cpu":
        tlb = s.tlbs[cpu]
        if op == "store_tlb":
            return tlbops.store_tlb(tlb, pt, *args)
        if op == "load_tlb":
            return tlbops.load_tlb(tlb, pt, *args)
        if op == "walk_fill":
            return tlbops.walk_fill(tlb, pt, *args)
        return tlbops.flush_tlb_range(tlb, *args)  # flush_tlb_local
    if kind == "ipi":
        return send_flush_ipis(s, ncpus, tid, cpu, *args)
    if op == "wait_acks":
        return None
    result = getattr(pt, op)(*args)
    if op == "ptep_get_and_clear_full" and args[1]:
        # s390 IPTE: the clear invalidates that translation on every CPU within the same step.
        for tlb in s.tlbs:
            tlb.pop(args[0], None)
    return result


def send_flush_ipis(s: State, ncpus: int, tid: int, cpu: int, start: int, end: int) -> int:
    """flush_tlb_others: queue a flush of [start, end) on every other CPU; the sender then waits for their acks."""
    targets = [c for c in range(ncpus) if c != cpu]  # mm_cpumask: every CPU, none lazy
    ipi = Ipi(tid, start, end)
    for c in targets:
        # Queued after the requests of initiators up to ``tid``: the queue in initiator order, each initiator's
        # requests in the order it sent them. Which initiator's IPI a CPU takes first is the scheduler's choice
        # (Machine.enabled_all offers every one), so arrival order between initiators means nothing; kept in
        # one order, two senders' requests make one state whichever sent first (so their sends commute:
        # ops._fp_flush_tlb_others).
        queue = s.ipis[c]
        at = len(queue)
        while at and queue[at - 1].initiator > tid:
            at -= 1
        s.ipis[c] = queue[:at] + (ipi,) + queue[at:]
    s.acks_pending[tid] += len(targets)
    return len(targets)


def take_ipi(s: State, cpu: int, initiator: int, transitions: int) -> Ipi:
    """The first request ``initiator`` queued on ``cpu``, as it stands before its handler's next transition;
    advanced in the queue, or taken off it when that transition is the last of ``transitions``."""
    queue = s.ipis[cpu]
    at = next(n for n, i in enumerate(queue) if i.initiator == initiator)
    ipi = queue[at]
    rest = (ipi._replace(done=ipi.done + 1),) if ipi.done + 1 < transitions else ()
    s.ipis[cpu] = queue[:at] + rest + queue[at + 1:]
    return ipi


def apply_ipi_step(s: State, cpu: int, ipi: Ipi, step: Step) -> Any:
    """One step of the flush IPI handler: flush_tlb_func's invalidation (its result: entries dropped), or the ack."""
    if step.op == "ipi_flush":
        return tlbops.flush_tlb_range(s.tlbs[cpu], ipi.start, ipi.end)
    s.acks_pending[ipi.initiator] -= 1  # csd_unlock: the initiator's csd_lock_wait sees it
    return None


def ipi_transitions(handler: tuple[Step, ...]) -> tuple[tuple[Step, ...], ...]:
    """The flush IPI handler's steps (kernel_model.tlb.flush_ipi_handler) grouped into the transitions a
    scheduler chooses: an ack (csd_unlock) joins the step before it in the same atomic transition; any other step
    starts a transition of its own. So the kernel's handler (invalidate, then ack) is one transition, and a handler
    that acks first is two, with anything else free to run between them.

    Why joining is sound (Lipton's reduction: the ack is a left mover). Take any run in which steps of other agents
    run between a handler's invalidation and its ack. Moving the ack back to just after the invalidation gives a
    run with the same end state, the same events and the same verdicts:
    - the ack writes only acks_pending[initiator] and the request's queue slot, and reads nothing another agent
      writes (only this handler takes its request off the queue);
    - the one step whose enabling or result reads them is the initiator's wait_acks, which cannot run before the
      ack, so it is never among the steps moved past; an earlier ack only enables more (under
      no_ipi_while_spinning, the initiator's CPU taking IPIs again);
    - the oracle never looks at acks (oracle.OBSERVED_OPS, TLB_OPS): it learns that a shootdown completed from
      wait_acks, which still comes after both steps; and its whole-state checks read neither acks_pending nor
      the queues, so the states skipped (invalidated, ack not yet sent) hide no violation.
    The oracle still sees both events, in the kernel's order. It is also closer to the kernel: the handler runs
    with interrupts off, so its own CPU's thread never ran between the two steps (the split let it spin on a
    lock there and, under no_ipi_while_spinning, never ack). An ack that comes first is not joined to what
    follows: after it the initiator may run on while the target still holds the old translation, which is what
    the ack_before_invalidate mutant is about. Wild logs have both events; controlled.linearize folds them by
    the same rule."""
    groups: list[list[Step]] = []
    for step in handler:
        if step.op == "ipi_ack" and groups:
            groups[-1].append(step)
        else:
            groups.append([step])
    return tuple(tuple(g) for g in groups)


_SHARED_MEMOS: dict[tuple, BoundedMemo] = {}
_SHARED_CLASSES: dict[tuple, BoundedMemo] = {}  # Positions.classes, by the memo's key
# Positions each scenario's memo keeps per generation (controlled.memo). The positions of a scenario are a
# function of its programs, not of the search, but a program of many thousand operations has many thousand: a
# position rebuilt costs replaying its attempt's results, once per generation it is asked in.
POSITIONS_BOUND = 65536
_STEP_IDS: dict[tuple, int] = {}


@dataclass(frozen=True, slots=True)
class _Done:
    """What _send gives back once an attempt has returned, with its return value."""

    value: Any


def _send(gen: Any, value: Any) -> Any:
    try:
        return gen.send(value)
    except StopIteration as stop:
        return _Done(stop.value)
