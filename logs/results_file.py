"""A stress campaign's results file: durable, append-only, resumable after the driver was killed, and each record
proving itself, so that damage anywhere is found where it is.

``--out DIR`` holds ``DIR/results.msgpack``: a sequence of frames, each one msgpack map::

    frame := MAGIC (4 bytes: 0xC1 "tlr") | length (4 bytes, big-endian) | crc32(length bytes + payload)
             (4 bytes, big-endian, zlib.crc32) | payload (``length`` bytes: one msgpack map)

0xC1 is the one byte msgpack never uses, so no msgpack reader mistakes a frame for data. The first frame is the
header::

    {"schema": "tlbrace-results", "version": 2, "run": str, "scenario": str, "scenario_source": str (TOML text),
     "params": {str: int}, "config": {...}, "seed": int (campaign seed),
     "trials": int or nil (unbounded: --duration/--until), "jitter_us": float,
     "kernel": {"version": str or nil (--kernel), "fixes": [str] (kernel_model.kernels: the fixes the config has)},
     "align": int (--align's sampling trials, 0: off), "created": ISO-8601 str}

A resume must be the same campaign: every key of IDENTITY equal (a file written before "kernel" and "align" were
recorded is judged without them).

then one frame per finished trial, in the order the trials finished::

    {"type": "trial", "trial": int, "seed": int (the trial's own seed), "status": "ok" | "violation" | "hung" |
     "crashed" | "diverged", "invariants": [str], "detail": str, "actor": str | None, "steps": int,
     "seconds": float, "nodes": [str], "log": str | None (the failing trial's event log)}

Records are flushed and fsynced in batches, so a killed driver loses at most the last batch (those trials run
again on resume). What the reader finds:

- a *torn tail*: the file ends inside a frame (a kill in the middle of a write). Resuming truncates it there;
- *damaged bytes*: a frame whose magic, length or checksum does not hold. The reader skips to the next frame that
  checks out (``skipped`` lists the byte ranges), so every intact record is kept; its trial runs again on
  resume, and the damaged bytes stay where they are (nothing is cut away but a torn tail);
- a damaged *header*, or a frame that checks out but does not hold a valid record (written by something else):
  refused with the byte offset, the file untouched.

Version 1 files (plain msgpack maps, no frames) are refused with a message saying so. Only plain msgpack types:
reading a results file never executes code.
"""

from __future__ import annotations

import datetime as _dt
import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import IO, Any, Final

import msgpack

from logs.event_fields import too_deep
from scenarios.input_files import MAX_SCENARIO_BYTES, InputFileError, read_input

SCHEMA: Final = "tlbrace-results"
VERSION: Final = 2
FILE_NAME: Final = "results.msgpack"
STATUSES: Final = ("ok", "violation", "hung", "crashed", "diverged")
# A campaign's identity: a file may only be resumed by the command that would have written the same header.
IDENTITY: Final = ("scenario", "scenario_source", "params", "kernel", "config", "seed", "trials", "jitter_us", "align")
# Identity keys a file written before they were recorded lacks: such a file is judged without them (its "config"
# still holds the kernel's fixes as configuration).
LATER_IDENTITY: Final = frozenset({"kernel", "align"})
MAGIC: Final = b"\xc1tlr"
_HEAD: Final = struct.Struct(">4sII")  # magic, length, crc32
MAX_TRIAL_SECONDS: Final = 366 * 86400  # a trial's time: a campaign's --duration is at most a year
MAX_RECORD_BYTES: Final = 1 << 20  # a trial record is a few hundred bytes; a larger length is damage
# The header carries the scenario file's text, which may be 1 MiB (MAX_SCENARIO_BYTES) by itself: held to the
# records' limit, the header of a campaign run from such a file was read as damage, and its own --resume refused it.
MAX_HEADER_BYTES: Final = 4 * MAX_SCENARIO_BYTES
MAX_FILE_BYTES: Final = 1 << 30  # 1 GiB: a million trials' records (the --trials cap) fit many times over


class ResultsError(ValueError):
    """Not a results file, a version this build does not read, damaged, or of another campaign. The message
    names the file and what is wrong, in one line."""


def make_header(*, run: str, scenario: str, scenario_source: str, params: dict[str, int],
                config: dict[str, Any], seed: int, trials: int | None, jitter_us: float,
                kernel: dict[str, Any] | None = None, align: int = 0) -> dict[str, Any]:
    """``kernel``: {"version": --kernel's release or None, "fixes": the fix switches the configuration has};
    ``align``: --align's sampling trials (0: off)."""
    return {"schema": SCHEMA, "version": VERSION, "run": run, "scenario": scenario,
            "scenario_source": scenario_source, "params": dict(params), "config": dict(config), "seed": seed,
            "trials": trials, "jitter_us": float(jitter_us), "align": align,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")} | (
        {} if kernel is None else {"kernel": dict(kernel)})


def frame(obj: dict[str, Any]) -> bytes:
    """One record as it is written to the file."""
    # A failing trial's log path under an --out that is not UTF-8 (a latin-1 'café') keeps its bytes: packed
    # strictly it was an internal error at the first failing trial, the campaign lost (and read back the same way).
    payload = msgpack.packb(obj, use_bin_type=True, unicode_errors="surrogateescape")
    length = struct.pack(">I", len(payload))
    return MAGIC + length + struct.pack(">I", zlib.crc32(length + payload)) + payload


@dataclass(slots=True)
class ResultsContents:
    header: dict[str, Any]
    records: list[dict[str, Any]]  # trial records, in file order
    intact: int  # where appending goes on: the end of the last frame that checks out (header included)
    torn: int  # bytes after it: a frame cut short by a kill (0: none)
    skipped: list[tuple[int, int]] = field(default_factory=list)  # damaged byte ranges [start, end), skipped

    def skipped_text(self) -> str:
        return ", ".join(f"{a}..{b - 1}" for a, b in self.skipped)


def _frame_at(data: bytes, pos: int, limit: int = MAX_RECORD_BYTES) -> tuple[bytes, int] | str:
    """(payload, end) of the frame at ``pos`` (its payload at most ``limit`` bytes); else "torn" (the file ends
    inside a well-begun frame) or "damaged"."""
    n = len(data)
    if n - pos < _HEAD.size:
        return "torn" if MAGIC.startswith(data[pos:pos + 4]) or data[pos:pos + 4] == MAGIC else "damaged"
    magic, length, crc = _HEAD.unpack_from(data, pos)
    if magic != MAGIC or length > limit:
        return "damaged"
    end = pos + _HEAD.size + length
    if end > n:
        return "torn"
    payload = data[pos + _HEAD.size:end]
    if zlib.crc32(data[pos + 4:pos + 8] + payload) != crc:
        return "damaged"
    return payload, end


def _next_frame(data: bytes, pos: int) -> int | None:
    """The first offset after ``pos`` where a whole frame checks out."""
    at = data.find(MAGIC, pos + 1)
    while at != -1:
        if not isinstance(_frame_at(data, at), str):
            return at
        at = data.find(MAGIC, at + 1)
    return None


def read_results(path: str | os.PathLike[str]) -> ResultsContents:
    path = os.fspath(path)
    try:
        data = read_input(path, "results file", MAX_FILE_BYTES)
    except InputFileError as exc:
        raise ResultsError(str(exc)) from None
    return parse_results(path, data)


def parse_results(path: str, data: bytes) -> ResultsContents:
    """The contents of a results file's bytes (``path`` names it in messages)."""
    _refuse_unframed(path, data)
    first = _frame_at(data, 0, MAX_HEADER_BYTES) if data else "torn"
    if isinstance(first, str):
        if first == "torn" and not data.startswith(MAGIC):
            raise ResultsError(f"{path}: not a tlbrace results file (empty, or no whole first record)")
        raise ResultsError(f"{path}: not a tlbrace results file, or its header is damaged at byte 0 "
                           f"({'cut short' if first == 'torn' else 'magic, length or checksum wrong'}); refusing "
                           f"to touch it")
    header = _decode(path, first[0], 0)
    if not isinstance(header, dict) or header.get("schema") != SCHEMA:
        raise ResultsError(f"{path}: not a tlbrace results file (its first record is not a {SCHEMA} header)")
    if header.get("version") != VERSION:
        raise ResultsError(f"{path}: results schema version {header.get('version')!r}; "
                           f"this tlbrace reads version {VERSION}")
    _check_header(path, header)
    records: list[dict[str, Any]] = []
    skipped: list[tuple[int, int]] = []
    seen: set[int] = set()
    pos, intact, torn = first[1], first[1], 0
    while pos < len(data):
        got = _frame_at(data, pos)
        if isinstance(got, str):
            nxt = _next_frame(data, pos)
            if nxt is None and got == "torn":
                torn = len(data) - pos  # a kill's cut: truncated on resume
                break
            end = len(data) if nxt is None else nxt
            skipped.append((pos, end))
            pos = end
            continue
        payload, end = got
        rec = _decode(path, payload, pos)
        problem = _record_problem(rec, header["trials"], seen)
        if problem:
            raise ResultsError(f"{path}: record at byte {pos}: {problem}")
        seen.add(rec["trial"])
        records.append(rec)
        pos = intact = end
    if skipped and skipped[-1][1] == len(data):
        intact = len(data)  # a damaged tail stays where it is; appending goes on after it
    return ResultsContents(header, records, intact, torn, skipped)


def _refuse_unframed(path: str, data: bytes) -> None:
    """A file that begins with a plain msgpack map: version 1 of this format if it says so, else another
    program's (which was called "a version 1 results file (written by an older tlbrace)")."""
    if not (data[:1] and 0x80 <= data[0] <= 0x8F or data[:1] in (b"\xde", b"\xdf")):
        return
    if SCHEMA.encode() not in data[:256]:  # another program's msgpack was called a file of an older tlbrace
        raise ResultsError(f"{path}: not a tlbrace results file (a msgpack map without the {SCHEMA!r} schema: "
                           f"written by another program)")
    raise ResultsError(f"{path}: a version 1 results file (records not framed, written by an older tlbrace); "
                       f"this tlbrace reads version {VERSION}: finish it with the tlbrace that wrote it, or "
                       f"start this campaign in another --out")


def _decode(path: str, payload: bytes, at: int) -> Any:
    """A frame whose checksum holds was written whole: a payload that is not msgpack came from elsewhere."""
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=False, unicode_errors="surrogateescape")
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        raise ResultsError(f"{path}: record at byte {at}: its checksum holds but it is not msgpack (not written "
                           f"by tlbrace); refusing to touch the file") from None


def _check_header(path: str, h: dict[str, Any]) -> None:
    deep = next((f"{key!r}: {d}" for key in ("params", "config") for d in [too_deep(h.get(key))] if d is not None),
                None) or too_deep(h)
    if deep is not None:
        raise ResultsError(f"{path}: header key {deep}")
    expect = {"run": str, "scenario": str, "scenario_source": str, "params": dict, "config": dict, "seed": int,
              "trials": (int, type(None)), "jitter_us": (int, float)}
    for key, kind in expect.items():
        if key not in h:  # "trials" may be nil (an unbounded campaign), but never missing
            raise ResultsError(f"{path}: header key {key!r} is missing: expected {_kind_name(kind)}")
        value = h[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ResultsError(f"{path}: header key {key!r}: expected {_kind_name(kind)}, got {value!r:.60}")
    if h["trials"] is not None and h["trials"] < 1:
        raise ResultsError(f"{path}: header key 'trials': expected a positive integer, got {h['trials']}")


def _kind_name(kind: Any) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({str: "a string", int: "an integer", float: "a number", dict: "a map", list: "a list",
                        type(None): "nil"}[k] for k in kinds)


def _record_problem(rec: Any, trials: int | None, seen: set[int]) -> str | None:
    if not isinstance(rec, dict) or rec.get("type") != "trial":
        return "expected a trial record (a map with type 'trial')"
    deep = too_deep(rec)
    if deep is not None:  # before any message shows a value: the repr of a 990-deep one was RecursionError
        return deep
    trial = rec.get("trial")
    if not isinstance(trial, int) or isinstance(trial, bool) or not 0 <= trial < (trials or float("inf")):
        return f"'trial': expected an integer in 0..{'' if trials is None else trials - 1}, got {trial!r:.60}"
    if trial in seen:
        return f"trial {trial} is recorded twice"
    if rec.get("status") not in STATUSES:
        return f"trial {trial}: 'status': expected one of {', '.join(STATUSES)}, got {rec.get('status')!r:.60}"
    for key, kind in (("seed", int), ("steps", int), ("invariants", list)):
        if not isinstance(rec.get(key), kind) or isinstance(rec.get(key), bool):
            return f"trial {trial}: {key!r}: expected {'a list' if kind is list else 'an integer'}, " \
                   f"got {rec.get(key)!r:.60}"
    # The optional keys, each nil or of its kind: a "seconds" of "abc" was an internal error of `report` (exit 4),
    # a "nodes" of 5 one of `stress --resume` once Ray had started.
    for key, kind in (("seconds", (int, float)), ("nodes", list), ("log", str), ("detail", str), ("actor", str)):
        value = rec.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            return f"trial {trial}: {key!r}: expected {_kind_name(kind[1] if key == 'seconds' else kind)} or nil, " \
                   f"got {value!r:.60}"
    return _number_problem(rec, trial)


def _number_problem(rec: dict[str, Any], trial: int) -> str | None:
    """Numbers a trial cannot have, in a record whose kinds hold: the report summed them ("trial seconds (sum)":
    nan, inf, -5.0, or 300 digits from a 1e308) and showed them as the campaign's time."""
    if rec["steps"] < 0:
        return f"trial {trial}: 'steps': expected an integer >= 0, got {rec['steps']}"
    seconds = rec.get("seconds")
    if seconds is not None and not 0 <= seconds <= MAX_TRIAL_SECONDS:  # nan fails both comparisons
        return f"trial {trial}: 'seconds': expected a number of seconds in 0..{MAX_TRIAL_SECONDS:,}, got {seconds!r}"
    return None



def mismatch(header: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """Why a file with ``header`` is not the campaign this command would run (None: it is)."""
    for key in IDENTITY:
        if key in LATER_IDENTITY and key not in header:
            continue  # written before the key was recorded
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


class ResultsDeleted(RuntimeError):
    """The results file was deleted while a campaign appended to it (ResultsWriter.unlinked)."""


class ResultsWriter:
    """Appends trial records, each framed; fsyncs every ``batch`` records or ``interval`` seconds, and on close.

    ``resume``: the file's contents as read (its torn tail, if any, is cut off before appending). Otherwise the
    file must not exist: the caller moves an old one aside first (holding the directory's lock)."""

    def __init__(self, path: str, header: dict[str, Any], resume: ResultsContents | None = None, *,
                 batch: int = 16, interval: float = 1.0) -> None:
        self.path = path
        self.batch = batch
        self.interval = interval
        self._unsynced = 0
        self._synced_at = time.monotonic()
        if resume is None:
            # The header appears whole or not at all: written aside, then renamed into place.
            fresh = f"{path}.new"
            # Never through whatever stands at the temporary name (the caller holds the directory's lock, so it is a
            # creation's leftover or planted): "wb" followed a symbolic link there and wrote the header, then every
            # record, into the file it pointed at. Removed first, then created exclusively (O_EXCL follows no link).
            _remove_quietly(fresh)
            try:
                with open(fresh, "xb") as f:
                    f.write(frame(header))
                    f.flush()
                    os.fsync(f.fileno())
                if os.path.exists(path):
                    raise FileExistsError(path)
                os.rename(fresh, path)
            except BaseException:
                _remove_quietly(fresh)
                raise
            _fsync_dir(path)
        self._stream: IO[bytes] = open(path, "r+b")
        # What the path named when the campaign began: a results file renamed away (its --out moved) is no longer
        # where --resume looks, though its descriptor keeps taking records (``displaced``).
        self._identity = _identity(os.fstat(self._stream.fileno()))
        end = resume.intact if resume is not None else self._stream.seek(0, os.SEEK_END)
        self._stream.truncate(end)  # a torn last record is dropped: its trial runs again
        self._stream.seek(end)
        self._good_end = end
        self.sync()

    def append(self, record: dict[str, Any]) -> None:
        """Raises ResultsDeleted, the record written, when the file has been deleted (``unlinked``)."""
        try:
            self._stream.write(frame(record))
            self._unsynced += 1
            if self._unsynced >= self.batch or time.monotonic() - self._synced_at >= self.interval:
                self.sync()
        except OSError as exc:
            self._cut_back()
            if exc.filename is None:  # a write's error names no file: the line must say which one failed
                exc.filename = self.path
            raise
        if self.displaced() is not None:
            raise ResultsDeleted(f"{self.path}: deleted or moved while the campaign ran")

    def unlinked(self) -> bool:
        """Whether the file was deleted under the writer (``rm -rf`` of --out, or of the file). Its records then
        live only in this open descriptor: once it is closed they are gone, so ``copy_to`` must save them first.
        (One fstat a record: a microsecond, against milliseconds a trial.)"""
        try:
            return os.fstat(self._stream.fileno()).st_nlink == 0
        except (OSError, ValueError):
            return False

    def displaced(self) -> str | None:
        """None while the path still names the file this writer appends to; else "deleted", or where the file now
        is ("moved to PATH", or "moved" when this system cannot say where): ``mv`` of --out (or of the file) left
        the descriptor appending into the moved directory, --out made again for the next failing log, and the
        summary naming a results path that did not exist. (One stat a record, as ``unlinked``'s fstat.)"""
        if self.unlinked():
            return "deleted"
        try:
            if _identity(os.stat(self.path)) == self._identity:
                return None
        except FileNotFoundError:
            pass
        except (OSError, ValueError):
            return None  # the path cannot be looked at now (EACCES, EIO): nothing says the file moved
        try:
            return f"moved to {os.readlink(f'/proc/self/fd/{self._stream.fileno()}')}"
        except (OSError, ValueError):
            return "moved"

    def copy_to(self, path: str) -> None:
        """Everything the file holds, as a new file at ``path`` that appears whole (written beside it, then linked
        to its name, which must be free: FileExistsError otherwise, nothing replaced)."""
        self._stream.flush()
        fd, fresh = self._stream.fileno(), f"{path}.new"
        size = os.fstat(fd).st_size
        _remove_quietly(fresh)  # a creation's leftover (the caller holds the directory's lock)
        try:
            with open(fresh, "xb") as f:
                at = 0
                while at < size:
                    chunk = os.pread(fd, min(1 << 20, size - at), at)
                    if not chunk:
                        break
                    f.write(chunk)
                    at += len(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.link(fresh, path)  # never over a file that appeared at the name meanwhile
        finally:
            _remove_quietly(fresh)
        _fsync_dir(path)

    def sync(self) -> None:
        self._stream.flush()
        os.fsync(self._stream.fileno())
        self._unsynced = 0
        self._synced_at = time.monotonic()
        self._good_end = self._stream.tell()

    def _cut_back(self) -> None:
        """A write that failed (disk full) may leave part of a frame: cut the file back to what was synced, so
        that the file ends on a whole frame and the next --resume runs only the trials not recorded."""
        try:
            self._stream.close()
        except OSError:
            pass  # the unwritten buffer is lost: those trials run again on resume
        try:
            os.truncate(self.path, self._good_end)
        except OSError:
            pass  # a torn tail, then: the reader cuts it on resume

    def close(self) -> None:
        if not self._stream.closed:
            try:
                self.sync()
            except OSError:
                self._cut_back()
                raise
            self._stream.close()


def unshare(path: str) -> int:
    """How many other names the results file at ``path`` had (hard links: `cp -al`, `ln`, a snapshot tool); when
    any, the file is first replaced by a copy of its own, so that appending to it (a resumed campaign) changes no
    other name's file. A resume appended its records (and cut its torn tail) through every name: the results of
    another --out, or a backup, changed under them. The caller holds the directory's lock."""
    links = os.stat(path).st_nlink
    if links <= 1:
        return 0
    fresh = f"{path}.new"
    _remove_quietly(fresh)
    try:
        with open(path, "rb") as src, open(fresh, "xb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(fresh, path)
    except BaseException:
        _remove_quietly(fresh)
        raise
    _fsync_dir(path)
    return links - 1


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


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
