"""From recorded events back to a schedule the controlled machine can replay.

Every event carries a Lamport clock (advanced on every message send and receive, IPIs and acks included), so
sorting by (lamport, actor, per-actor seq) gives an order consistent with causality: each page-table step in
the order the page-table actor applied it, each CPU's own steps and the IPIs it took in its program order.
Steps and IPI handler steps are the transitions; notes are not, and neither is an ack that follows its handler's
invalidation: the machine runs that ack in the invalidation's transition (positions.ipi_transitions).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, NamedTuple

from controlled.positions import IpiStep, ThreadStep, Transition


def order_key(rec: dict[str, Any]) -> tuple:
    return (rec.get("lamport", 0), str(rec.get("actor", "")), rec.get("seq", 0))


class IpiChains:
    """Which IPI handler events start a transition of the machine (positions.ipi_transitions): every one but an
    ack (ipi_ack) that follows its handler's invalidation (ipi_flush). A handler's events carry the target CPU and
    the initiator; requests from one initiator to one CPU are handled in order, so counting, per (CPU, initiator),
    the invalidations still waiting for their ack and the acks still waiting for their invalidation tells which
    handler an event belongs to: a kernel's handler either always invalidates first or always acks first."""

    __slots__ = ("flushed", "acked")

    def __init__(self) -> None:
        self.flushed: Counter = Counter()  # (cpu, initiator) -> invalidations whose ack is still to come
        self.acked: Counter = Counter()  # (cpu, initiator) -> acks whose invalidation is still to come

    def starts_transition(self, rec: dict[str, Any]) -> bool:
        handler = (rec["cpu"], rec["tid"])
        if rec.get("op") == "ipi_ack":
            if self.flushed[handler]:
                self.flushed[handler] -= 1
                return False  # joined to the invalidation before it
            self.acked[handler] += 1
        elif self.acked[handler]:
            self.acked[handler] -= 1  # the late invalidation of a handler that acked first
        else:
            self.flushed[handler] += 1
        return True


def schedule_from_records(records: Iterable[dict[str, Any]]) -> list[Transition]:
    schedule: list[Transition] = []
    chains = IpiChains()
    for rec in sorted((r for r in records if r.get("type", "event") == "event"), key=order_key):
        if rec["kind"] == "step":
            schedule.append(ThreadStep(rec["tid"]))
        elif rec["kind"] == "ipi" and chains.starts_transition(rec):
            schedule.append(IpiStep(rec["cpu"], rec["tid"]))
    return schedule


class TrialRecords(NamedTuple):
    """What replaying one trial's event records needs, computed in one pass where possible."""

    schedule: list[Transition]  # schedule_from_records of the records in order_key order
    results: list[Any]  # the logged result of every step record, in that order: what the replay must reproduce
    jitter: int  # delay-injection notes (op "jitter"): the wild runtime's own, not kernel events


def linearize_trial(records: list[dict[str, Any]]) -> TrialRecords:
    """``schedule_from_records`` of the records sorted by order_key, the logged step results in that order, and
    the jitter notes; raising what sorting and schedule_from_records raise on malformed records (KeyError,
    TypeError). Log analysis does this for every trial: when the records already are in strictly increasing
    Lamport order (the controlled machine's logs always are), sorting would keep that order whatever the other
    fields of the key hold, so one pass over them does it all."""
    fast = _in_order(records)
    if fast is not None:
        return fast
    ordered = sorted(records, key=order_key)
    return TrialRecords(schedule_from_records(ordered), [r.get("result") for r in ordered if r["kind"] == "step"],
                        sum(1 for r in records if r.get("op") == "jitter"))


_FIRST = object()


def _in_order(records: list[dict[str, Any]]) -> TrialRecords | None:
    """None when the records are not in strictly increasing Lamport order, or are malformed (the general path
    then raises the very error sorting raises)."""
    schedule: list[Transition] = []
    results: list[Any] = []
    jitter = 0
    chains = IpiChains()
    previous: Any = _FIRST
    try:
        for rec in records:
            lamport = rec.get("lamport", 0)
            if previous is not _FIRST and not previous < lamport:
                return None
            previous = lamport
            kind = rec["kind"]
            if kind == "step":
                results.append(rec.get("result"))
                if rec.get("type", "event") == "event":
                    schedule.append(ThreadStep(rec["tid"]))
            elif kind == "ipi" and rec.get("type", "event") == "event" and chains.starts_transition(rec):
                schedule.append(IpiStep(rec["cpu"], rec["tid"]))
            if rec.get("op") == "jitter":
                jitter += 1
    except Exception:  # noqa: BLE001 - malformed: see above
        return None
    return TrialRecords(schedule, results, jitter)
