"""A stress campaign's results file: durable, append-only, resumable after the driver was killed.

``--out DIR`` holds ``DIR/results.msgpack``: msgpack maps, one after another. The first is the header::

    {"schema": "tlbrace-results", "version": 1, "run": str, "scenario": str, "scenario_source": str (TOML text),
     "params": {str: int}, "config": {...}, "seed": int (campaign seed), "trials": int or nil (unbounded: --duration/--until), "jitter_us": float,
     "created": ISO-8601 str}

then one record per finished trial, in the order the trials finished::

    {"type": "trial", "trial": int, "seed": int (the trial's own seed), "status": "ok" | "violation" | "hung" |
     "crashed" | "diverged", "invariants": [str], "detail": str, "actor": str | None, "steps": int,
     "seconds": float, "nodes": [str], "log": str | None (the failing trial's event log)}

Records are flushed and fsynced in batches, so a killed driver loses at most the last batch (those trials run
again on resume). A kill in the middle of a write leaves a torn last record: the reader reports where the intact
records end, and resuming truncates the file there and writes on. Anything else that does not parse is not a
torn write, and is refused rather than cut away (nothing already written is ever lost). Only plain msgpack
types: reading a results file never executes code.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from dataclasses import dataclass
from typing import IO, Any, Final

import msgpack

SCHEMA: Final = "tlbrace-results"
VERSION: Final = 1
FILE_NAME: Final = "results.msgpack"
STATUSES: Final = ("ok", "violation", "hung", "crashed", "diverged")
# A campaign's identity: a file may only be resumed by the command that would have written the same header.
IDENTITY: Final = ("scenario", "scenario_source", "params", "config", "seed", "trials", "jitter_us")


class ResultsError(ValueError):
    """Not a results file, a version this build does not read, damaged, or of another campaign. The message
    names the file and what is wrong, in one line."""


def make_header(*, run: str, scenario: str, scenario_source: str, params: dict[str, int],
                config: dict[str, Any], seed: int, trials: int | None, jitter_us: float) -> dict[str, Any]:
    return {"schema": SCHEMA, "version": VERSION, "run": run, "scenario": scenario,
            "scenario_source": scenario_source, "params": dict(params), "config": dict(config), "seed": seed,
            "trials": trials, "jitter_us": float(jitter_us),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


@dataclass(slots=True)
class ResultsContents:
    header: dict[str, Any]
    records: list[dict[str, Any]]  # trial records, in file order
    intact: int  # bytes of the file that hold whole records (header included)
    torn: int  # bytes after them: a record cut short by a kill (0: none)


def read_results(path: str | os.PathLike[str]) -> ResultsContents:
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read the results file: {exc.strerror or exc}") from None
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    objs: list[tuple[Any, int]] = []  # (object, offset of its first byte)
    offset = 0
    try:
        for obj in unpacker:
            objs.append((obj, offset))
            offset = unpacker.tell()
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError):
        if not objs:
            raise ResultsError(f"{path}: not a tlbrace results file (it does not start with a msgpack map)") \
                from None
        raise ResultsError(f"{path}: damaged at byte {offset} (not a record cut short by a kill; "
                           f"refusing to cut it away)") from None
    if not objs:
        raise ResultsError(f"{path}: not a tlbrace results file (empty, or no whole first record)")
    header = objs[0][0]
    if not isinstance(header, dict) or header.get("schema") != SCHEMA:
        raise ResultsError(f"{path}: not a tlbrace results file (its first record is not a {SCHEMA} header)")
    if header.get("version") != VERSION:
        raise ResultsError(f"{path}: results schema version {header.get('version')!r}; "
                           f"this tlbrace reads version {VERSION}")
    _check_header(path, header)
    records = []
    seen: set[int] = set()
    for obj, at in objs[1:]:
        problem = _record_problem(obj, header["trials"], seen)
        if problem:
            raise ResultsError(f"{path}: record at byte {at}: {problem}")
        seen.add(obj["trial"])
        records.append(obj)
    return ResultsContents(header, records, offset, len(data) - offset)


def _check_header(path: str, h: dict[str, Any]) -> None:
    expect = {"run": str, "scenario": str, "scenario_source": str, "params": dict, "config": dict, "seed": int,
              "trials": (int, type(None)), "jitter_us": (int, float)}
    for key, kind in expect.items():
        value = h.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ResultsError(f"{path}: header key {key!r}: expected {_kind_name(kind)}, got {value!r}")
    if h["trials"] is not None and h["trials"] < 1:
        raise ResultsError(f"{path}: header key 'trials': expected a positive integer, got {h['trials']}")


def _kind_name(kind: Any) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({str: "a string", int: "an integer", float: "a number", dict: "a map",
                        type(None): "nil"}[k] for k in kinds)


def _record_problem(rec: Any, trials: int | None, seen: set[int]) -> str | None:
    if not isinstance(rec, dict) or rec.get("type") != "trial":
        return "expected a trial record (a map with type 'trial')"
    trial = rec.get("trial")
    if not isinstance(trial, int) or isinstance(trial, bool) or not 0 <= trial < (trials or float("inf")):
        return f"'trial': expected an integer in 0..{'' if trials is None else trials - 1}, got {trial!r}"
    if trial in seen:
        return f"trial {trial} is recorded twice"
    if rec.get("status") not in STATUSES:
        return f"trial {trial}: 'status': expected one of {', '.join(STATUSES)}, got {rec.get('status')!r}"
    for key, kind in (("seed", int), ("steps", int), ("invariants", list)):
        if not isinstance(rec.get(key), kind) or isinstance(rec.get(key), bool):
            return f"trial {trial}: {key!r}: expected {'a list' if kind is list else 'an integer'}, " \
                   f"got {rec.get(key)!r}"
    return None


def mismatch(header: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """Why a file with ``header`` is not the campaign this command would run (None: it is)."""
    for key in IDENTITY:
        if header.get(key) != wanted.get(key):
            if key == "scenario_source":
                return "the scenario file's text differs"
            there, here = header.get(key), wanted.get(key)
            if isinstance(there, dict) and isinstance(here, dict):  # name the differing entries only
                diff = sorted(k for k in set(there) | set(here) if there.get(k) != here.get(k))
                return ", ".join(f"{key} {k} is {there.get(k)!r} there, {here.get(k)!r} here" for k in diff)
            return f"{key} is {there!r} there, {here!r} here"
    return None


def trial_record(*, trial: int, seed: int, status: str, invariants: list[str], detail: str, actor: str | None,
                 steps: int, seconds: float, nodes: list[str], log: str | None) -> dict[str, Any]:
    return {"type": "trial", "trial": trial, "seed": seed, "status": status, "invariants": list(invariants),
            "detail": detail, "actor": actor, "steps": steps, "seconds": round(seconds, 4), "nodes": list(nodes),
            "log": log}


class ResultsWriter:
    """Appends trial records; fsyncs every ``batch`` records or ``interval`` seconds, and on close.

    ``resume``: the file's contents as read (its torn tail, if any, is cut off before appending). Otherwise the
    file must not exist: the caller moves an old one aside first."""

    def __init__(self, path: str, header: dict[str, Any], resume: ResultsContents | None = None, *,
                 batch: int = 16, interval: float = 1.0) -> None:
        self.path = path
        self.batch = batch
        self.interval = interval
        self._packer = msgpack.Packer(use_bin_type=True)
        self._unsynced = 0
        self._synced_at = time.monotonic()
        if resume is None:
            # The header appears whole or not at all: written aside, then renamed into place.
            fresh = f"{path}.new"
            with open(fresh, "wb") as f:
                f.write(self._packer.pack(header))
                f.flush()
                os.fsync(f.fileno())
            if os.path.exists(path):
                os.remove(fresh)
                raise FileExistsError(path)
            os.rename(fresh, path)
            _fsync_dir(path)
        self._stream: IO[bytes] = open(path, "r+b")
        end = resume.intact if resume is not None else self._stream.seek(0, os.SEEK_END)
        self._stream.truncate(end)  # a torn last record is dropped: its trial runs again
        self._stream.seek(end)
        self.sync()

    def append(self, record: dict[str, Any]) -> None:
        self._stream.write(self._packer.pack(record))
        self._unsynced += 1
        if self._unsynced >= self.batch or time.monotonic() - self._synced_at >= self.interval:
            self.sync()

    def sync(self) -> None:
        self._stream.flush()
        os.fsync(self._stream.fileno())
        self._unsynced = 0
        self._synced_at = time.monotonic()

    def close(self) -> None:
        if not self._stream.closed:
            self.sync()
            self._stream.close()


def _fsync_dir(path: str) -> None:
    """The file's directory entry must survive too (a fresh file after a crash)."""
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
