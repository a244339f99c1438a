"""Log a controlled run: replay a schedule in the in-process machine and write what happened as an event log.

The controlled machine serialises everything, so its global sequence number is at once the per-actor sequence,
the Lamport clock and the global order of every event (one actor, "machine"). Events go through structlog
(``event_logger``), exactly as the wild runtime's actors write theirs, so both runtimes produce one format.
Several trials may share one file: the header is written once, each trial appends its events and a trial_end.
"""

from __future__ import annotations

import json
import os
from typing import Any

import msgpack

from controlled.machine import Transition
from controlled.replay import RunResult, run_schedule
from kernel_model.config import Config
from kernel_model.events import Violation
from kernel_model.program import Scenario
from logs.eventlog import EventLogWriter, LogError, event_logger, make_header, plain

ACTOR = "machine"


def trial_status(violations: list[Violation]) -> str:
    """The trial_end status: a hang is reported as such, any other invariant as a violation."""
    if any(v.invariant != "hang" for v in violations):
        return "violation"
    return "hung" if violations else "ok"


def violation_records(violations: list[Violation]) -> list[dict[str, Any]]:
    return [{"invariant": v.invariant, "detail": v.detail, "pfn": v.pfn} for v in violations]


def write_controlled_log(path: str | os.PathLike[str], scenario: Scenario, cfg: Config,
                         schedule: list[Transition], *, run_id: str, trial: int = 0,
                         fmt: str = "msgpack") -> RunResult:
    """Run ``schedule`` (completed deterministically, see run_schedule) and append it to the log at ``path``
    as trial ``trial``. Appending to an existing log requires the same scenario, parameters and config."""
    result = run_schedule(scenario, cfg, schedule)
    header = make_header(run=run_id, runtime="controlled", scenario=scenario.name,
                         scenario_source=scenario.source, params=scenario.params, config=cfg.to_dict())
    _check_compatible(path, header, fmt)
    with EventLogWriter(path, header, fmt) as writer:
        log = event_logger(writer, run=run_id, trial=trial, actor=ACTOR)
        for ev in result.events:
            log.info(ev.op, tid=ev.tid, cpu=ev.cpu, kind=ev.kind, fn=ev.fn, args=ev.args, result=ev.result,
                     seq=ev.seq, lamport=ev.seq, gseq=ev.seq)
        writer.write({"type": "trial_end", "run": run_id, "trial": trial,
                      "status": trial_status(result.violations),
                      "violations": violation_records(result.violations),
                      "events": len(result.events), "transitions": len(result.executed)})
    return result


def _check_compatible(path: str | os.PathLike[str], header: dict[str, Any], fmt: str) -> None:
    """Trials appended to a log are analysed under its header: refuse to mix scenarios or configurations."""
    existing = _first_record(path)
    if existing is None:
        return
    if (_is_jsonl(path)) != (fmt == "jsonl"):
        raise LogError(f"{os.fspath(path)}: cannot append {fmt} records to a log written in the other format")
    for key in ("schema", "version", "runtime", "scenario", "scenario_source", "params", "config"):
        if plain(existing.get(key)) != plain(header[key]):
            raise LogError(f"{os.fspath(path)}: cannot append: its header has a different {key}")


def _first_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The header of an existing log, read without decoding the rest of the file (logs can be large)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None
    with f:
        first = f.read(1)
        if not first:
            return None
        f.seek(0)
        try:
            if first == b"{":
                record = json.loads(f.readline())
            else:
                record = next(iter(msgpack.Unpacker(f, raw=False, strict_map_key=False)))
        except (ValueError, StopIteration, msgpack.UnpackException, RecursionError) as exc:
            raise LogError(f"{os.fspath(path)}: cannot append: not a tlbrace log ({exc})") from None
    if not isinstance(record, dict):
        raise LogError(f"{os.fspath(path)}: cannot append: not a tlbrace log")
    return record


def _is_jsonl(path: str | os.PathLike[str]) -> bool:
    with open(path, "rb") as f:
        return f.read(1) == b"{"
