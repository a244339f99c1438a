"""From recorded events back to a schedule the controlled machine can replay.

Every event carries a Lamport clock (advanced on every message send and receive, IPIs and acks included), so
sorting by (lamport, actor, per-actor seq) gives an order consistent with causality: each page-table step in
the order the page-table actor applied it, each CPU's own steps and the IPIs it took in its program order.
Steps and IPIs are the transitions; notes are not.
"""

from __future__ import annotations

from typing import Any, Iterable

from kernel_model.machine import Transition


def order_key(rec: dict[str, Any]) -> tuple:
    return (rec.get("lamport", 0), str(rec.get("actor", "")), rec.get("seq", 0))


def schedule_from_records(records: Iterable[dict[str, Any]]) -> list[Transition]:
    schedule: list[Transition] = []
    for rec in sorted((r for r in records if r.get("type", "event") == "event"), key=order_key):
        if rec["kind"] == "step":
            schedule.append(("t", rec["tid"]))
        elif rec["kind"] == "ipi":
            schedule.append(("i", rec["cpu"], rec["tid"]))
    return schedule
