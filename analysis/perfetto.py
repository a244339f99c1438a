"""Chrome / Perfetto trace-event JSON of judged trials: open it at ui.perfetto.dev or chrome://tracing.

One process per trial, one track per thread (named with its CPU). Every step is a complete slice ("X"); each
user operation (begin..end notes) and each PTL or folio-lock hold is a slice around its steps; notes are
instants; a flush IPI is a flow arrow from the initiator's send to the slice on the target CPU's track. Time is
the global event order (1 event = 10 µs), since the controlled machine has no wall clock.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Iterable

from kernel_model.events import Event, Violation
from logs.output_files import replaced_whole

TICK = 10  # µs per event
STEP_DUR = 8  # a step slice, shorter than a tick so that neighbours do not touch


@dataclass(frozen=True, slots=True)
class TraceTrial:
    name: str  # "log.bin trial 3"
    threads: tuple[str, ...]
    cpu_of: tuple[int, ...]
    events: list[Event]
    violations: list[Violation]
    witness_seqs: frozenset[int] = frozenset()


def trace_events(trials: Iterable[TraceTrial]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for pid, t in enumerate(trials, start=1):
        out.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "ts": 0, "args": {"name": t.name}})
        for tid, name in enumerate(t.threads):
            out.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid + 1, "ts": 0,
                        "args": {"name": f"{name} (CPU {t.cpu_of[tid]})"}})
        out.extend(_trial_events(pid, t))
    return out


def _track(t: TraceTrial, e: Event) -> int:
    """The track (tid) an event shows on: its thread's; an IPI handler runs on the target CPU's thread."""
    if e.kind == "ipi":
        return next((tid for tid, c in enumerate(t.cpu_of) if c == e.cpu), e.tid) + 1
    return e.tid + 1


def _trial_events(pid: int, t: TraceTrial) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    open_ops: dict[int, tuple[int, str]] = {}  # tid -> (ts, name) of the user operation in progress
    holds: dict[tuple[int, str, Any], int] = {}  # (tid, lock kind, lock id) -> ts taken
    sends: dict[int, list[int]] = {}  # initiator tid -> flow ids of its IPIs not yet delivered
    flow = pid * 1_000_000
    last_ts = 0
    for e in t.events:
        ts = e.seq * TICK
        last_ts = ts
        track = _track(t, e)
        args = {"args": _jsonable(e.args), "result": _jsonable(e.result), "cpu": e.cpu, "seq": e.seq}
        cat = "witness" if e.seq in t.witness_seqs else e.kind
        if e.kind == "note":
            if e.op == "begin":
                open_ops[e.tid] = (ts, _op_name(e))
            elif e.op == "end" and e.tid in open_ops:
                start, name = open_ops.pop(e.tid)
                out.append(_slice(name, "operation", pid, track, start, ts + STEP_DUR - start, {"result": args["args"]}))
            out.append({"name": f"{e.fn}: {e.op}", "ph": "i", "s": "t", "cat": cat, "pid": pid, "tid": track,
                        "ts": ts, "args": args})
            continue
        out.append(_slice(f"{e.fn}: {e.op}", cat, pid, track, ts, STEP_DUR, args))
        lock = _lock(e)
        if lock is not None:
            key, taking = lock
            if taking:
                holds[key] = ts
            elif key in holds:
                start = holds.pop(key)
                out.append(_slice(f"{key[1]} {key[2]} held", "lock", pid, track, start, ts + STEP_DUR - start,
                                  {"lock": key[1], "id": key[2]}))
        if e.op == "flush_tlb_others":
            ids = [flow + i for i in range(int(e.result or 0))]
            flow += len(ids)
            sends.setdefault(e.tid, []).extend(ids)
            for fid in ids:
                out.append({"name": "flush IPI", "ph": "s", "cat": "ipi", "id": fid, "pid": pid, "tid": track,
                            "ts": ts + 1})
        elif e.op == "ipi_flush" and sends.get(e.tid):  # the handler's invalidation (not its ack)
            out.append({"name": "flush IPI", "ph": "f", "bp": "e", "cat": "ipi", "id": sends[e.tid].pop(0),
                        "pid": pid, "tid": track, "ts": ts + 1})
    for tid, (start, name) in open_ops.items():  # the trial stopped (violation) inside these operations
        out.append(_slice(name + " (unfinished)", "operation", pid, tid + 1, start, last_ts + TICK - start, {}))
    for key, start in holds.items():
        out.append(_slice(f"{key[1]} {key[2]} held (not released)", "lock", pid, key[0] + 1, start,
                          last_ts + TICK - start, {}))
    for v in t.violations:
        out.append({"name": f"VIOLATION {v.invariant}", "ph": "i", "s": "g", "cat": "violation", "pid": pid,
                    "tid": 0, "ts": last_ts + STEP_DUR, "args": {"detail": v.detail, "pfn": v.pfn}})
    return out


def _slice(name: str, cat: str, pid: int, tid: int, ts: int, dur: int, args: dict) -> dict[str, Any]:
    return {"name": name, "ph": "X", "cat": cat, "pid": pid, "tid": tid, "ts": ts, "dur": max(dur, 1), "args": args}


def _lock(e: Event) -> tuple[tuple[int, str, Any], bool] | None:
    """(holder, lock kind, id), taking?: for the locks whose hold intervals explain the race."""
    if e.op in ("spin_lock", "spin_unlock"):
        return (e.tid, "PTL", e.args[0]), e.op == "spin_lock"
    if e.op in ("folio_lock", "folio_unlock"):
        return (e.tid, "folio lock", e.args[0]), e.op == "folio_lock"
    return None


def _op_name(e: Event) -> str:
    pages, value = (list(e.args) + [None, None])[:2]
    text = f"{e.fn}(page{'s' if len(pages or ()) > 1 else ''} {', '.join(map(str, pages or ()))})"
    return text + (f" = {value}" if value is not None else "")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_trace(path: str | os.PathLike[str], trials: Iterable[TraceTrial]) -> int:
    """Write {"traceEvents": [...]} and return how many events it holds."""
    events = trace_events(trials)
    with replaced_whole(path, "Perfetto trace") as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump({"traceEvents": events}, f)
    return len(events)
