"""Event log files: structlog builds each event, msgpack writes it (one map per record, streamed, append-only).

A log file is self-describing. Its first record is a header::

    {"schema": "tlbrace-log", "version": 1, "run": str, "runtime": "controlled" | "wild",
     "scenario": str, "scenario_source": str (the TOML text), "params": {str: int}, "config": {...},
     "created": ISO-8601 str}

then event records, one per step, note or IPI, each::

    {"type": "event", "run": str, "trial": int, "actor": str ("cpu2", "pt0", "machine"), "tid": int,
     "cpu": int, "kind": "step" | "note" | "ipi", "fn": str, "op": str, "args": list, "result": any,
     "seq": int (per actor), "lamport": int, "gseq": int | None (global order where one actor serialised it)}

and, after each trial, ``{"type": "trial_end", "run", "trial", "status": "ok" | "violation" | "crashed" |
"hung", "violations": [{"invariant", "detail"}], ...}``. Only plain msgpack types are written, so loading a log
never executes code. ``fmt="jsonl"`` writes the same records as JSON Lines, for people.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass
from typing import IO, Any, Final, Iterator

import msgpack
import structlog

from logs.output_files import check_output_file

SCHEMA = "tlbrace-log"
SCHEMA_VERSION = 1


class LogError(ValueError):
    """The file is not a tlbrace log, or of a schema version this build does not read."""


def plain(value: Any) -> Any:
    """Turn results (NamedTuples, tuples, frozensets) into plain msgpack/JSON types."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def make_header(*, run: str, runtime: str, scenario: str, scenario_source: str, params: dict[str, int],
                config: dict[str, Any]) -> dict[str, Any]:
    return {"schema": SCHEMA, "version": SCHEMA_VERSION, "run": run, "runtime": runtime, "scenario": scenario,
            "scenario_source": scenario_source, "params": dict(params), "config": dict(config),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


class EventLogWriter:
    """Append records to a log file; ``flush()`` makes everything written so far readable after a crash."""

    def __init__(self, path: str | os.PathLike[str], header: dict[str, Any], fmt: str = "msgpack") -> None:
        if fmt not in ("msgpack", "jsonl"):
            raise ValueError(f"log format: expected msgpack or jsonl, got {fmt!r}")
        self.path = os.fspath(path)
        self.fmt = fmt
        check_output_file(self.path, "event log")  # a FIFO there would block the open for ever
        self._stream: IO[bytes] = open(self.path, "ab")
        self._packer = msgpack.Packer(use_bin_type=True)
        if self._stream.tell() == 0:
            self.write(header)
            self.flush()

    def write(self, record: dict[str, Any]) -> None:
        if self.fmt == "msgpack":
            self._stream.write(self._packer.pack(record))
        else:
            self._stream.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")

    # structlog calls the wrapped logger's method with the final processor's (args, kwargs).
    def msg(self, record: dict[str, Any]) -> None:
        self.write(record)

    info = debug = warning = error = msg

    def flush(self) -> None:
        self._stream.flush()
        os.fsync(self._stream.fileno())

    def close(self) -> None:
        if not self._stream.closed:
            self.flush()
            self._stream.close()

    def __enter__(self) -> "EventLogWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _to_record(_logger: Any, method: str, event_dict: dict[str, Any]) -> tuple[tuple[dict[str, Any]], dict]:
    """structlog's last processor: the bound context plus the event, as one plain map."""
    record = {"type": "event"}
    op = event_dict.pop("event")
    record.update({k: plain(v) for k, v in event_dict.items()})
    record["op"] = op
    return (record,), {}


def event_logger(writer: EventLogWriter, **context: Any) -> Any:
    """A structlog logger bound to ``context`` (run, trial, actor, ...) that writes through ``writer``.
    Usage: ``log.info(op, tid=.., cpu=.., kind=.., fn=.., args=.., result=.., seq=.., lamport=.., gseq=..)``."""
    return structlog.wrap_logger(writer, processors=[_to_record], context_class=dict,
                                 cache_logger_on_first_use=False).bind(**context)


@dataclass(slots=True)
class LogContents:
    header: dict[str, Any]
    records: list[dict[str, Any]]
    damage: str | None = None  # "truncated record at byte N" / "garbage at byte N": read up to there


def read_log(path: str | os.PathLike[str], *, pipes: bool = False) -> LogContents:
    """Read a log written by EventLogWriter (msgpack or JSON Lines), up to the first damaged byte; from a pipe
    too with ``pipes`` (a log the user named: scenarios.input_files)."""
    from scenarios.input_files import MAX_LOG_BYTES, InputFileError, read_input

    path = os.fspath(path)
    try:
        data = read_input(path, "log", MAX_LOG_BYTES, pipes=pipes)
    except InputFileError as exc:
        raise LogError(str(exc)) from None
    if is_json_lines(data):
        return _read_jsonl(path, data)
    refuse_compressed(path, data)
    records: list[dict[str, Any]] = []
    damage = None
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    offset = previous = 0
    try:
        for obj in unpacker:
            if not isinstance(obj, dict):
                damage = f"garbage at byte {offset}"
                break
            if records and is_header(obj):
                damage = another_log(offset)
                break
            records.append(obj)
            previous, offset = offset, unpacker.tell()
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError):
        damage = f"garbage at byte {offset}"
    if damage is not None and len(records) > 1 and not whole_record(records[-1], records[0].get("run")):
        records.pop()  # the damage began inside it (see whole_record)
        damage = f"garbage at byte {previous}"
    if damage is None and offset < len(data):
        damage = f"truncated record at byte {offset}"
    return _checked(path, records, damage)


def refuse_compressed(path: str, data: bytes) -> None:
    """LogError naming the decompressor, for a log kept compressed (scenarios.input_files.compressed)."""
    from scenarios.input_files import compressed

    why = compressed(path, data)
    if why is not None:
        raise LogError(why)


def is_header(rec: dict[str, Any]) -> bool:
    """Whether a record is a log's header (a first record), by its schema."""
    return rec.get("schema") == SCHEMA


def another_log(offset: int) -> str:
    """The damage of a log that another one follows (`cat a.msgpack b.msgpack > c.msgpack`): its trials have the
    same ids, and were judged as one, each a divergence (trial 0 of both runs replayed as one trial)."""
    return (f"another log's header at byte {offset} (logs joined end to end: the next one is `tail -c "
            f"+{offset + 1} FILE`, to analyse on its own)")


# The fields every record of each type is written with (EventLogWriter, the module's docstring).
_FIELDS: Final = {"event": ("trial", "actor", "kind", "op", "seq", "lamport"), "trial_end": ("trial", "status")}


def whole_record(rec: dict[str, Any], run: Any) -> bool:
    """Whether the record decoded just before a log's garbage is the record that was written. Bytes injected or
    lost inside a record (zero bytes, a torn block) shift what follows them: the map is still decoded, with the
    shifted bytes as its keys and values, and the garbage is found only at the next record, a string or a number.
    analyze then judged that half-record (a divergence, "field 'kind' is missing", exit 1) where replay refused it
    (exit 2), and both put the damage after it. A record is whole when every key is a string, its run is the
    header's and it has the fields its type is always written with."""
    if not all(isinstance(k, str) for k in rec) or rec.get("run") != run:
        return False
    return all(k in rec for k in _FIELDS.get(rec.get("type"), ("trial",)))


_BOM: Final = b"\xef\xbb\xbf"


def is_json_lines(data: bytes) -> bool:
    """Whether a log's bytes are JSON Lines (else msgpack, whose header map never starts with a BOM or
    whitespace). A JSON Lines log saved by an editor with a UTF-8 byte-order mark, or with a blank first line,
    was "not a tlbrace log (its first record is not a tlbrace-log header)"."""
    return data.removeprefix(_BOM).lstrip()[:1] == b"{"


def _read_jsonl(path: str, data: bytes) -> LogContents:
    """The records of a JSON Lines log; blank lines (an editor's, or `cat a.jsonl - b.jsonl`) and a leading BOM
    are no damage (a blank line ended the reading there: "garbage", every later trial left out)."""
    records: list[dict[str, Any]] = []
    damage = None
    offset = len(data) - len(data.removeprefix(_BOM))
    for line in data[offset:].splitlines(keepends=True):
        if not line.strip():
            offset += len(line)
            continue
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: a value nested 100,000 deep
            what = "garbage" if line.endswith(b"\n") else "truncated record"
            damage = f"{what} at byte {offset}"
            break
        if not isinstance(obj, dict):
            damage = f"garbage at byte {offset}"
            break
        if records and is_header(obj):
            damage = another_log(offset)
            break
        records.append(obj)
        offset += len(line)
    return _checked(path, records, damage)


def _checked(path: str, records: list[dict[str, Any]], damage: str | None) -> LogContents:
    if not records or records[0].get("schema") != SCHEMA:
        raise LogError(f"{path}: not a tlbrace log (its first record is not a {SCHEMA} header)")
    version = records[0].get("version")
    if version != SCHEMA_VERSION:
        raise LogError(f"{path}: log schema version {version!r}; this tlbrace reads version {SCHEMA_VERSION}")
    check_header(path, records[0])
    return LogContents(records[0], records[1:], damage)


_INFORMATIVE: Final = ("runtime", "created")  # strings, when present; nothing is decided by them
# The header fields a reader relies on, and their types (``created`` and ``runtime`` are informative only).
_HEADER_TYPES: dict[str, tuple[type, ...]] = {"run": (str,), "scenario": (str,), "scenario_source": (str,),
                                              "params": (dict,), "config": (dict,)}


def check_header(path: str, header: dict[str, Any]) -> None:
    """Every header field a reader uses has its type; params map names to integers (LogError otherwise)."""
    from logs.event_fields import too_deep

    for key in ("params", "config"):  # before any message shows a value: repr of a 990-deep one was RecursionError
        deep = too_deep(header.get(key))
        if deep is not None:
            raise LogError(f"{path}: header key {key!r}: {deep}")
    deep = too_deep(header)  # any other key: a 1,000-deep "runtime" was an internal error (exit 4) in analyze
    if deep is not None:
        raise LogError(f"{path}: header key {deep}")
    for key in _INFORMATIVE:  # shown by analyze (and in its JSON) as they are: NaN there was no JSON
        value = header.get(key)
        if value is not None and not isinstance(value, str):
            raise LogError(f"{path}: header key {key!r}: expected a string, got {value!r:.60}")
    for key, kinds in _HEADER_TYPES.items():
        value = header.get(key)
        if not isinstance(value, kinds):
            raise LogError(f"{path}: header key {key!r}: expected a {'map' if dict in kinds else 'string'}, "
                           f"got {value!r:.60}")
    for name, value in header["params"].items():
        if not isinstance(name, str) or not isinstance(value, int) or isinstance(value, bool):
            raise LogError(f"{path}: header key 'params': expected names mapped to integers, got "
                           f"{name!r}: {value!r:.40}")


def trial_of(rec: dict[str, Any]) -> int | None:
    """The trial an event or trial_end record belongs to; None for any other record (a second header is found
    by read_log) or one whose trial is not an integer (True would join trial 1's records)."""
    trial = rec.get("trial")
    if not isinstance(trial, int) or isinstance(trial, bool) or rec.get("type") not in ("event", "trial_end"):
        return None
    return trial


class Strays:
    """The records no trial takes: counted, and the first one described, for a warning. Every record of a log
    whose trial ids were written as 0.0 or "0" (a converted log) was skipped without a word: "0 trial(s)", exit 0,
    a clean verdict on a log full of violations."""

    def __init__(self) -> None:
        self.count = 0
        self.first: str | None = None

    def add(self, rec: dict[str, Any]) -> None:
        self.count += 1
        if self.first is None:
            self.first = f"type {_short(rec.get('type'))}, trial {_short(rec.get('trial'))}"

    def merge(self, other: "Strays") -> None:
        self.count += other.count
        self.first = self.first or other.first

    def message(self) -> str | None:
        if not self.count:
            return None
        return (f"{self.count:,} record(s) that are neither an event nor a trial_end of an integer trial (the first: "
                f"{self.first}): not judged")


def _short(value: Any) -> str:
    try:
        return f"{value!r:.40}"
    except RecursionError:
        return "a value nested too deeply to show"


def stray_records(contents: LogContents) -> Strays:
    strays = Strays()
    for rec in contents.records:
        if trial_of(rec) is None:
            strays.add(rec)
    return strays


def iter_trials(contents: LogContents) -> Iterator[tuple[int, list[dict[str, Any]], dict[str, Any] | None]]:
    """(trial id, its event records, its trial_end record or None) in the order the trials first appear."""
    events: dict[int, list[dict[str, Any]]] = {}
    ends: dict[int, dict[str, Any]] = {}
    for rec in contents.records:
        trial = trial_of(rec)
        if trial is None:
            continue
        if rec.get("type") == "trial_end":
            ends[trial] = rec
        else:
            events.setdefault(trial, []).append(rec)
    for trial in sorted(set(events) | set(ends)):
        yield trial, events.get(trial, []), ends.get(trial)
