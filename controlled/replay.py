"""Run a machine along a given schedule: the basis of replay, shrinking and log analysis.

A schedule is a list of transitions. Running it is forgiving on purpose (shrinking removes transitions, so the
next one may not be enabled): a transition that is not enabled is skipped, and when the schedule is used up the
run completes with the lowest enabled transition first (a counter writer's increment last: it would otherwise
go round its loop for ever), so that its result is a whole execution. It stops at
the first transition that violates an invariant, or when nothing can run (a hang if threads are unfinished).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controlled.machine import Machine
from controlled.positions import Transition, as_transition
from kernel_model.config import Config
from kernel_model.events import Event, Violation
from kernel_model.program import Scenario


@dataclass(slots=True)
class RunResult:
    violations: list[Violation]
    executed: list[Transition]  # what actually ran, in order: the exact schedule of this run
    events: list[Event] = field(default_factory=list)
    skipped: int = 0  # transitions of the given schedule that were not enabled when their turn came
    divergence: str | None = None  # first step whose result differs from ``expected``

    @property
    def invariants(self) -> list[str]:
        return sorted({v.invariant for v in self.violations})


def run_schedule(scenario: Scenario, cfg: Config, schedule: list[Transition], *, complete: bool = True,
                 record: bool = True, expected: list[Any] | None = None, max_steps: int = 1_000_000) -> RunResult:
    """Run ``schedule``; with ``expected`` (the recorded result of each step transition, in order), report the
    first step whose result differs (a replay that does not reproduce what was logged)."""
    m = Machine(scenario, cfg, record=record)
    executed: list[Transition] = []
    skipped = 0
    divergence = None
    step_no = 0

    def take(tr: Transition) -> list[Violation]:
        nonlocal step_no, divergence
        n_before = len(m.events)
        violations = m.execute(tr)
        executed.append(tr)
        if expected is not None and tr[0] == "t" and record:
            got = next((e.result for e in m.events[n_before:] if e.kind == "step"), None)
            if divergence is None and step_no < len(expected) \
                    and plain_result(got) != plain_result(expected[step_no]):
                divergence = (f"step {step_no} ({tr}) returned {got!r}; the log recorded {expected[step_no]!r}")
            step_no += 1
        return violations

    for tr in schedule:
        tr = as_transition(tr)
        if not m.can_execute(tr):
            skipped += 1
            continue
        violations = take(tr)
        if violations:
            return RunResult(violations, executed, m.events, skipped, divergence)
    if complete:
        while len(executed) < max_steps:
            enabled = m.enabled_all()
            if m.run_ends(enabled):
                break
            violations = take(min(enabled, key=lambda tr: (m.is_counter_increment(tr), tr)))
            if violations:
                return RunResult(violations, executed, m.events, skipped, divergence)
    violations = [m.hang_report()] if m.stuck() else []
    return RunResult(violations, executed, m.events, skipped, divergence)


def plain_result(value: Any) -> Any:
    """A step result as a log holds it (tuples become lists), for comparing the two."""
    if isinstance(value, (list, tuple)):
        return [plain_result(v) for v in value]
    return value
