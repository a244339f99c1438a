"""Replay many schedules of one scenario without re-running what an earlier replay already ran.

Replay is deterministic: what a transition does depends only on the machine state it starts from. Trials of one
campaign keep meeting the same states (a bursty random search of madv_dontneed reaches ~7,000 distinct states in
~700,000 transitions), so a graph of the states met so far, each with the outcome of every transition tried from
it, turns almost every replayed step into a dict lookup. Only a (state, transition) pair never seen before runs on
a real Machine, which is restored to that state first.

The graph is keyed by ``Machine.key()`` (what exhaustive search already trusts to identify a state) plus the
insertion order of each TLB dict, which ``key()`` sorts away but which decides the order of the entries a
violation's detail lists: two states merged here behave identically down to the text of a report.

What the graph answers is deliberately narrow: for a schedule, which transitions ran, which were skipped, each
step's result, and how many events the run produced. Anything out of the ordinary (a violation, a crash of the
model, a hang at the end, a step result that differs from the log) is not answered here (``replay_known`` returns
None) and the caller replays that trial in full with ``run_schedule``, which produces the reports, events and
messages. The oracle's checks still run on every transition the first time it is taken from a state; the graph
only remembers that they passed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from controlled.machine import Machine, Transition
from controlled.replay import plain_result
from kernel_model.config import Config
from kernel_model.program import Scenario

# Bounds the memory of one memo (a node holds a state key, about a kilobyte): past it, start a fresh graph. A
# scenario whose trials keep reaching new states gains nothing from the graph anyway.
MAX_NODES = 100_000


class _Node:
    """A machine state met during replay, and what each transition tried from it did."""

    __slots__ = ("key", "edges", "hangs")

    def __init__(self, key: tuple) -> None:
        self.key = key
        # transition -> _SKIP (not enabled here) | _STOP (violates or crashes)
        #   | (next node, step result as a log holds it, events produced, the transition)
        self.edges: dict[Transition, Any] = {}
        self.hangs: bool | None = None  # Machine.stuck() there (None: not asked yet)


_SKIP = object()  # the transition is not enabled in this state
_STOP = object()  # the transition violates an invariant or the model raises: only a full replay may report it
_NO_STEP = object()  # the result slot of an IPI edge (IPIs are not compared with the log)
_PLAIN_TYPES = frozenset({str, int})  # of a transition's fields: its kind ("t", "i"), then thread ids and CPUs


@dataclass(slots=True)
class KnownRun:
    """The outcome of a replay that stayed ordinary: no violation, no crash, no hang, every step as logged."""

    executed: list[Transition]
    skipped: int
    events: int  # events the replay produced (the Machine's record, counted, not kept)


class ReplayMemo:
    """The state graph of one (scenario, configuration); not shared between processes."""

    def __init__(self, scenario: Scenario, cfg: Config) -> None:
        self.scenario = scenario
        self.cfg = cfg
        self._reset()

    def serves(self, scenario: Scenario, cfg: Config) -> bool:
        """Is this the memo of that scenario and configuration?"""
        return scenario is self.scenario and cfg == self.cfg

    def _reset(self) -> None:
        self._machine = Machine(self.scenario, self.cfg, record=True)
        self.initial_events = len(self._machine.events)  # notes emitted before the first transition
        self._nodes: dict[tuple, _Node] = {}
        self.root = self._intern(self._machine)
        self._at: _Node | None = self.root  # the node the live machine is in (None: unknown, restore first)

    # --- the state key -----------------------------------------------------------------------------------
    @staticmethod
    def _key(m: Machine) -> tuple:
        return (m.key(), tuple(tuple(tlb) for tlb in m.state.tlbs))

    def _intern(self, m: Machine) -> _Node:
        key = self._key(m)
        node = self._nodes.get(key)
        if node is None:
            node = self._nodes[key] = _Node(key)
        return node

    def _machine_at(self, node: _Node) -> Machine:
        m = self._machine
        if self._at is not node:
            machine_key, tlb_orders = node.key
            m.restore(machine_key)
            # restore() rebuilds each TLB from sorted entries: put them back in the order they were filled.
            m.state.tlbs = [{va: tlb[va] for va in order} for tlb, order in zip(m.state.tlbs, tlb_orders)]
            self._at = node
        return m

    # --- learning an edge --------------------------------------------------------------------------------------
    def explore(self, node: _Node, tr: Transition) -> Any:
        """Run ``tr`` from ``node`` on the real machine (and its oracle) and remember what it did."""
        m = self._machine_at(node)
        self._at = None  # until the step has completed: an exception leaves the machine in no known state
        if not m.can_execute(tr):
            self._at = node
            node.edges[tr] = _SKIP
            return _SKIP
        m.events = []
        if m.execute(tr):
            node.edges[tr] = _STOP
            return _STOP
        events = m.events
        result = _NO_STEP
        if tr[0] == "t":
            result = next((e.result for e in events if e.kind == "step"), None)
        child = self._intern(m)
        self._at = child
        # The edge keeps its own copy of ``tr``: the executed lists of all trials then share one tuple per
        # transition (less memory, and a parallel worker pickles each only once).
        edge = (child, plain_result(result) if result is not _NO_STEP else _NO_STEP, len(events), tr)
        node.edges[tr] = edge
        return edge

    def hangs(self, node: _Node) -> bool:
        """Does a run that ends in ``node`` end in a hang (run_schedule then reports one)?"""
        if node.hangs is None:
            m = self._machine_at(node)
            node.hangs = m.stuck()  # exactly run_schedule's hang condition
        return node.hangs

    def replay_known(self, schedule: list[Transition], expected: list[Any]) -> KnownRun | None:
        """``run_schedule(..., complete=False, expected=expected)`` for a run that stays ordinary; None when it
        does not (the caller then replays in full). Every step's result is still compared with ``expected``."""
        if len(self._nodes) > MAX_NODES:
            self._reset()
        # Edges are found by equality, and 1 == 1.0 == True, but the Machine indexes lists with thread ids and
        # CPUs (a float raises, a bool does not): only plain ints may share an edge learnt from another trial.
        if not set(map(type, itertools.chain.from_iterable(schedule))) <= _PLAIN_TYPES:
            return None
        try:
            return self._walk(schedule, expected)
        except Exception:  # noqa: BLE001 - whatever the model raised, the full replay raises and reports it
            self._at = None
            return None

    def _walk(self, schedule: list[Transition], expected: list[Any]) -> KnownRun | None:
        node = self.root
        executed: list[Transition] = []
        skipped = 0
        events = self.initial_events
        step_no = 0
        n_expected = len(expected)
        for tr in schedule:
            edge = node.edges.get(tr)
            if edge is None:
                edge = self.explore(node, tr)
            if edge is _SKIP:
                skipped += 1
                continue
            if edge is _STOP:
                return None
            node, got, n, shared_tr = edge
            executed.append(shared_tr)
            events += n
            if got is not _NO_STEP:
                if step_no < n_expected:
                    want = expected[step_no]
                    # plain_result(want) only when the plain comparison fails: logs decode to lists already.
                    if got != want and got != plain_result(want):
                        return None  # a divergence: the full replay words it
                step_no += 1
        if self.hangs(node):
            return None
        return KnownRun(executed, skipped, events)
