"""Schedule files: a controlled run's exact sequence of transitions, self-describing, in msgpack.

    {"schema": "tlbrace-schedule", "version": 2, "scenario": str, "scenario_source": str (TOML text),
     "params": {str: int}, "config": {...}, "strategy": str, "seed": int, "invariants": [str],
     "schedule": [["t", tid] | ["i", cpu, initiator], ...]}

Only plain msgpack types: loading one never executes code.

Version 2: a flush IPI handler that invalidates and then acks is one ``["i", cpu, initiator]`` transition
(positions.ipi_transitions); version 1 had two. A version-1 file would replay other interleavings than it recorded,
so it is refused with a message saying how to make a new one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import msgpack

from controlled.positions import Transition, as_transition
from kernel_model.config import Config, ConfigError
from kernel_model.program import Scenario
from logs.output_files import replaced_whole

SCHEMA = "tlbrace-schedule"
VERSION = 2


class ScheduleError(ValueError):
    """Not a schedule file, a version this build does not read, or malformed content (names file and key)."""


@dataclass(slots=True)
class ScheduleFile:
    scenario: Scenario
    config: Config
    schedule: list[Transition]
    invariants: list[str]
    strategy: str = ""
    seed: int = 0


def write_schedule(path: str | os.PathLike[str], sf: ScheduleFile) -> None:
    doc = {"schema": SCHEMA, "version": VERSION, "scenario": sf.scenario.name,
           "scenario_source": sf.scenario.source, "params": dict(sf.scenario.params),
           "config": sf.config.to_dict(), "strategy": sf.strategy, "seed": sf.seed,
           "invariants": list(sf.invariants), "schedule": [list(tr) for tr in sf.schedule]}
    with replaced_whole(path, "schedule") as tmp:  # never a half-written schedule, nor one of two writers'
        with open(tmp, "wb") as f:
            f.write(msgpack.packb(doc, use_bin_type=True))
            f.flush()
            os.fsync(f.fileno())


def read_schedule(path: str | os.PathLike[str]) -> ScheduleFile:
    path = os.fspath(path)
    doc = _decode(path)
    schedule = doc.get("schedule")
    if not isinstance(schedule, list):
        raise ScheduleError(f"{path}: schedule: expected a list of [\"t\", tid] or [\"i\", cpu, initiator], got "
                            f"{schedule!r:.40}")
    bad = next((i for i, t in enumerate(schedule) if not _is_transition(t)), None)
    if bad is not None:  # which one: a schedule of thousands said only what a transition should be
        raise ScheduleError(f"{path}: schedule[{bad}]: expected [\"t\", tid] or [\"i\", cpu, initiator] with integer "
                            f"numbers, got {schedule[bad]!r:.40}")
    _check_fields(path, doc)
    try:
        config = Config.from_dict(doc["config"])
    except (ConfigError, TypeError) as exc:
        raise ScheduleError(f"{path}: config: {exc}") from None
    try:
        scenario = scenario_from_source(str(doc.get("scenario", "scenario")), doc["scenario_source"],
                                        doc["params"])
    except (ValueError, TypeError) as exc:  # ScenarioError and AnalysisError are ValueErrors
        raise ScheduleError(f"{path}: scenario_source: {exc}") from None
    _check_agents(path, scenario, config, schedule)
    return ScheduleFile(scenario, config, [as_transition(t) for t in schedule], [str(i) for i in doc["invariants"]],
                        str(doc.get("strategy", "")), int(doc.get("seed", 0) or 0))


def _check_agents(path: str, scenario: Scenario, config: Config, schedule: list[list[Any]]) -> None:
    """Every transition names a thread (and an IPI a CPU) the scenario has. The replay skips a transition it
    cannot take at that point (a shrunk schedule's), so ``["t", 99]`` in a three-thread scenario was skipped
    without a word: "reproduced": false, no divergence, exit 0, as if the kernel had changed."""
    from kernel_model.boot import ncpus

    threads, cpus = len(scenario.threads), ncpus(scenario, config)
    for n, t in enumerate(schedule):
        if t[0] == "t":
            bad = None if 0 <= t[1] < threads else f"thread {t[1]}, but the scenario has threads 0..{threads - 1}"
        elif not 0 <= t[1] < cpus:
            bad = f"CPU {t[1]}, but the scenario has CPUs 0..{cpus - 1}"
        else:
            bad = None if 0 <= t[2] < threads else f"an IPI from thread {t[2]}, but the scenario has threads " \
                                                   f"0..{threads - 1}"
        if bad:
            raise ScheduleError(f"{path}: schedule[{n}] {t!r:.60}: names {bad}")


def _decode(path: str) -> dict[str, Any]:
    """The file's one msgpack document, if it is a schedule file of this version."""
    from scenarios.input_files import MAX_SCHEDULE_BYTES, InputFileError, compressed, read_input

    try:
        data = read_input(path, "schedule file", MAX_SCHEDULE_BYTES, pipes=True)
    except InputFileError as exc:
        raise ScheduleError(str(exc)) from None
    why = compressed(path, data)
    if why is not None:
        raise ScheduleError(why)
    try:
        doc = msgpack.unpackb(data, raw=False, strict_map_key=False)
    # TypeError: a map whose key is itself a map or list (msgpack cannot hash it), e.g. b'\x81\x80\x00'.
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        raise ScheduleError(f"{path}: not a tlbrace schedule file (not one msgpack document)") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ScheduleError(f"{path}: not a tlbrace schedule file (schema is not {SCHEMA!r})")
    if doc.get("version") == 1 and not isinstance(doc.get("version"), bool):  # true is no version
        raise ScheduleError(f"{path}: schedule version 1 (each flush IPI as two transitions); this tlbrace reads "
                            f"version {VERSION} (an IPI that invalidates then acks is one): record it again with "
                            "`tlbrace explore` or `tlbrace replay LOG`")
    if doc.get("version") != VERSION:
        raise ScheduleError(f"{path}: schedule version {doc.get('version')!r}; this tlbrace reads {VERSION}")
    from logs.event_fields import too_deep

    deep = too_deep(doc)  # before any message shows a value: a 1,000-deep seed or strategy was an internal error
    if deep is not None:
        raise ScheduleError(f"{path}: {deep}")
    return doc


def _check_fields(path: str, doc: dict[str, Any]) -> None:
    """Each field of the document has its type (strategy and seed may be missing), and none is nested past
    MAX_DEPTH (the repr of a config value 990 deep, in the message meant to show it, was RecursionError)."""
    from logs.event_fields import too_deep

    for key in ("params", "config"):
        deep = too_deep(doc.get(key))
        if deep is not None:
            raise ScheduleError(f"{path}: {key}: {deep}")
    for key, kind in (("scenario", str), ("scenario_source", str), ("params", dict), ("config", dict),
                      ("invariants", list), ("strategy", str), ("seed", int)):
        if key in ("strategy", "seed") and key not in doc:
            continue  # optional
        if not isinstance(doc.get(key), kind) or isinstance(doc.get(key), bool):
            what = {str: "a string", dict: "a map", list: "a list", int: "an integer"}[kind]
            raise ScheduleError(f"{path}: {key}: expected {what}, got {doc.get(key)!r:.60}")
    if not all(isinstance(i, str) for i in doc["invariants"]):
        raise ScheduleError(f"{path}: invariants: expected a list of strings")
    if not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
               for k, v in doc["params"].items()):
        raise ScheduleError(f"{path}: params: expected names mapped to integers")


def scenario_from_source(name: str, source: str, params: dict[str, Any]) -> Scenario:
    """Rebuild a Scenario from the TOML text a schedule or log recorded (via the same loader and checks)."""
    from logs.header import scenario_from_header

    return scenario_from_header({"scenario": name, "scenario_source": source, "params": params})


def _is_transition(t: Any) -> bool:
    if not isinstance(t, list) or not t:
        return False
    if t[0] == "t":
        return len(t) == 2 and _is_number(t[1])
    if t[0] == "i":
        return len(t) == 3 and all(_is_number(x) for x in t[1:])
    return False


def _is_number(x: Any) -> bool:
    """A thread or CPU number: an int, not a bool (Python's True is 1: ["t", true] replayed thread 1's step)."""
    return isinstance(x, int) and not isinstance(x, bool)
