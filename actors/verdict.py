"""The verdict on a wild trial: its events replayed in the controlled machine, judged by the same oracle.

The wild runtime never judges anything itself. Its events are linearised (``schedule_from_records``) and the
schedule replayed by ``controlled.replay.run_schedule`` in a fresh ``Machine``, which checks every invariant
after every transition (stopping at the first violation, as the log analyzer does, so that a log's trial_end and
a later analysis agree). A replay whose steps do not return what the wild run logged is a runtime bug, reported
as a divergence, never as a verdict. The configuration only rebuilds the machine the steps replay on; the
oracle never sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controlled.linearize import IpiChains, order_key, schedule_from_records
from controlled.machine import Machine
from controlled.positions import IpiStep, ThreadStep
from controlled.replay import run_schedule
from kernel_model.config import Config
from kernel_model.events import Violation
from kernel_model.program import Scenario
from logs.eventlog import plain


@dataclass(slots=True)
class Verdict:
    violations: list[Violation] = field(default_factory=list)
    divergence: str | None = None
    transitions: int = 0


def ordered(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A trial's event records in replay order (the order ``schedule_from_records`` uses)."""
    return sorted((r for r in records if r.get("type", "event") == "event"), key=order_key)


def judge(scenario: Scenario, cfg: Config, records: list[dict[str, Any]], *, finished: bool) -> Verdict:
    """``finished``: every thread of the wild trial ran to its end (else it hung, and the replay says whether
    that is a deadlock of the model, with Machine.hang_report's who-waits-for-whom)."""
    events = ordered(records)
    schedule = schedule_from_records(events)
    expected = [r.get("result") for r in events if r["kind"] == "step"]
    try:
        result = run_schedule(scenario, cfg, schedule, complete=False, expected=expected)
    except Exception as exc:  # noqa: BLE001 - a logged step the model cannot perform: a runtime bug
        return Verdict([], f"replay crashed: {type(exc).__name__}: {exc}", 0)
    divergence = result.divergence
    if divergence is None and result.skipped:
        divergence = f"{result.skipped} of {len(schedule)} transitions were not enabled in the replay"
    if divergence is None and finished and not result.violations and len(result.executed) != len(schedule):
        divergence = f"the replay ran {len(result.executed)} of {len(schedule)} transitions"
    return Verdict(_unique(result.violations), divergence, len(result.executed))


def exact_replay(scenario: Scenario, cfg: Config, records: list[dict[str, Any]]) -> list[str]:
    """Strict check used by tests: every transition enabled at its turn and every step and IPI returning what
    the wild run logged (run_schedule compares steps only). A transition may log more than one event (a flush
    IPI's invalidation and the ack that follows it, linearize.IpiChains): each is compared with the record it
    stands for. Returns the mismatches, at most a few."""
    events = [r for r in ordered(records) if r["kind"] in ("step", "ipi")]
    m = Machine(scenario, cfg, record=True)
    chains = IpiChains()
    # The acks a flush transition logged, per (CPU, initiator), until their records come: in the wild an ack may
    # be logged after other agents' steps (none of which can be the initiator's wait_acks returning).
    acks: dict[tuple[int, int], list[Any]] = {}
    problems: list[str] = []
    for rec in events:
        if rec["kind"] == "step" or chains.starts_transition(rec):
            tr = ThreadStep(rec["tid"]) if rec["kind"] == "step" else IpiStep(rec["cpu"], rec["tid"])
            if tr not in m.enabled_all():
                problems.append(f"{tr} not enabled for {rec['op']} (lamport {rec['lamport']})")
                break
            before = len(m.events)
            m.execute(tr)
            got, *joined = [e for e in m.events[before:] if e.kind in ("step", "ipi")]
            acks.setdefault((rec.get("cpu"), rec["tid"]), []).extend(joined)
        else:
            pending = acks.get((rec["cpu"], rec["tid"]))
            if not pending:
                problems.append(f"{rec['op']} (lamport {rec['lamport']}): the replay logged nothing for it")
                break
            got = pending.pop(0)
        if got.op != rec["op"] or plain(got.result) != plain(rec["result"]):
            problems.append(f"{rec['kind']} {rec['op']}: replay {got.op} -> {got.result!r}, wild {rec['op']} -> "
                            f"{rec['result']!r}")
            if len(problems) >= 3:
                break
    return problems


def _unique(violations: list[Violation]) -> list[Violation]:
    seen: set[str] = set()
    out = []
    for v in violations:
        if v.invariant not in seen:
            seen.add(v.invariant)
            out.append(v)
    return out
