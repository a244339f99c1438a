"""Judge logged trials: replay each trial's steps through the controlled machine and let its oracle decide.

The verdict is the oracle's, on what the log recorded: a trial's events are linearised by Lamport clock
(``schedule_from_records``) and replayed with the logged step results as expectations, so a replay that does not
reproduce the log is reported as a divergence instead of being trusted. The header's configuration only rebuilds
the machine the logged steps run on; nothing here reads ordering, arch or mutant to decide anything. The log's
own trial_end verdict is compared with the replay's, never used in its place.

Speed (bench/bench_analyze.py): trials are judged as their records are decoded, and the replay of an ordinary
trial is answered by a graph of the machine states earlier trials reached (controlled.replay_memo), still
comparing every step with the log; a trial that violates, crashes, hangs or diverges is replayed in full.
"""

from __future__ import annotations

import math
import os
import signal
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from controlled.gc_pause import gc_paused
from controlled.linearize import linearize_trial
from controlled.machine import Machine, Transition
from controlled.replay import run_schedule
from controlled.replay_memo import ReplayMemo
from kernel_model import boot
from kernel_model.atomic import LockMisuse
from kernel_model.config import Config
from kernel_model.events import Event, Violation
from kernel_model.program import Scenario
from logs.event_fields import first_field_problem
from logs.eventlog import (LogContents, LogError, Strays, is_json_lines, iter_trials, read_log, refuse_compressed,
                           stray_records, trial_of)
from logs.header import AnalysisError, config_from_header, scenario_from_header


@dataclass(slots=True)
class TrialReport:
    log: str
    trial: int
    events: int  # event records the log holds for this trial
    violations: list[Violation]  # the replay's verdict: what the oracle found
    divergence: str | None = None  # the replay did not reproduce the log (or could not run it)
    logged_status: str | None = None  # the trial_end record's status; None when the log has none
    logged_invariants: tuple[str, ...] = ()
    disagreement: str | None = None  # the log's own verdict differs from the replay's
    executed: list[Transition] = field(default_factory=list)
    replay_events: list[Event] = field(default_factory=list)  # kept only where someone will read them
    coverage: frozenset = frozenset()  # race-window order facts (analysis.coverage), when asked for

    @property
    def invariants(self) -> list[str]:
        return sorted({v.invariant for v in self.violations})

    @property
    def violating(self) -> bool:
        return bool(self.violations)


@dataclass(slots=True)
class LogAnalysis:
    path: str
    header: dict[str, Any]
    damage: str | None
    scenario: Scenario
    cfg: Config
    trials: list[TrialReport]
    strays: str | None = None  # the records no trial takes (logs.eventlog.Strays), for a warning


# --- the scenario a log was recorded with ----------------------------------------------------------------------
# --- one trial --------------------------------------------------------------------------------------------------
def judge_trial(scenario: Scenario, cfg: Config, log: str, trial: int, records: list[dict[str, Any]],
                end: dict[str, Any] | None, *, keep_events: bool = False,
                observe: Callable[[list[Event]], frozenset] | None = None,
                memo: ReplayMemo | None = None) -> TrialReport:
    """Replay one trial's events and report what the oracle found. ``keep_events``: keep the replay's events for
    every trial (otherwise only for violating ones, which need a witness); ``observe``: a summary of the replay's
    events to keep (the coverage facts); ``memo``: the state graph of earlier replays of this scenario and
    configuration, which answers an ordinary trial without re-running the steps it has already seen (the report
    is the same; a trial that violates, crashes, hangs or diverges, or whose events are wanted, is replayed in
    full). A trial whose replay failed or diverged because one of its records is unusable is reported as that
    record's malformed field (logs.event_fields), with no verdict of its own."""
    try:
        report = _judge(scenario, cfg, log, trial, records, end, keep_events, observe, memo)
    except RecursionError:  # a logged value nested past Python's recursion limit, compared with the replay's
        report = TrialReport(log, trial, len(records), [], divergence="replay crashed: RecursionError")
    if report.divergence is None:
        return report
    problem = first_field_problem(records, len(scenario.threads), boot.ncpus(scenario, cfg))
    if problem is not None:
        report.divergence = f"malformed event record: {problem}"
        report.violations, report.executed, report.replay_events, report.disagreement = [], [], [], None
    return report


def _judge(scenario: Scenario, cfg: Config, log: str, trial: int, records: list[dict[str, Any]],
           end: dict[str, Any] | None, keep_events: bool, observe: Callable[[list[Event]], frozenset] | None,
           memo: ReplayMemo | None) -> TrialReport:
    report = TrialReport(log, trial, len(records), [])
    if end is not None:
        status = end.get("status")
        report.logged_status = status if isinstance(status, str) else None
        logged = end.get("violations")  # a damaged record may hold anything here: only a list is read
        report.logged_invariants = tuple(sorted({str(v.get("invariant")) for v in logged
                                                 if isinstance(v, dict)})) if isinstance(logged, list) else ()
    try:
        schedule, expected, jitter = linearize_trial(records)
    except (KeyError, TypeError) as exc:
        report.divergence = f"malformed event record ({type(exc).__name__}: {exc})"  # unless the fields say more
        return report
    # Delay-injection notes (op "jitter") are the wild runtime's own, not kernel events: the replay has none.
    kernel_records = len(records) - jitter
    if memo is not None and memo.serves(scenario, cfg) and not keep_events and observe is None:
        known = memo.replay_known(schedule, expected)
        if known is not None:
            report.executed = known.executed
            report.divergence = _divergence(None, known.skipped, len(schedule), len(known.executed), known.events,
                                            kernel_records, False)
            report.disagreement = _disagreement(end, report)
            return report
    try:
        result = run_schedule(scenario, cfg, schedule, complete=False, expected=expected)
    except (LockMisuse, AssertionError, IndexError, KeyError, TypeError, ValueError) as exc:
        # A logged step the model cannot perform at that point: the log and the model disagree.
        report.divergence = f"replay crashed: {type(exc).__name__}: {exc}"
        return report
    report.violations = result.violations
    report.executed = result.executed
    report.divergence = _divergence(result.divergence, result.skipped, len(schedule), len(result.executed),
                                    len(result.events), kernel_records, bool(result.violations))
    report.disagreement = _disagreement(end, report)
    if keep_events or result.violations:
        report.replay_events = result.events
    if observe is not None:
        report.coverage = observe(result.events)
    return report


def _divergence(step_divergence: str | None, skipped: int, scheduled: int, executed: int, replay_events: int,
                logged_events: int, violated: bool) -> str | None:
    if step_divergence is not None:
        return step_divergence
    if skipped:
        return f"{skipped} of {scheduled} logged transitions were not enabled when the replay reached them"
    if not violated and replay_events != logged_events:
        # The replay stops at the first violation; a run that went to the end must reproduce every event.
        return f"the replay produced {replay_events} events; the log holds {logged_events}"
    return None


def _disagreement(end: dict[str, Any] | None, report: TrialReport) -> str | None:
    if end is None:
        return None
    logged = set(report.logged_invariants)
    found = set(report.invariants)
    if report.logged_status == "crashed" or logged == found:
        return None
    said = ", ".join(sorted(logged)) or report.logged_status or "nothing"
    return f"the log's trial_end says {said}; the replay finds {', '.join(sorted(found)) or 'no violation'}"


# --- whole logs -------------------------------------------------------------------------------------------------
def rebuilt_from_header(path: str, header: dict[str, Any],
                        scenario: Scenario | None = None) -> tuple[Scenario, Config]:
    """The log's scenario (unless given) and config; an error names the log (one of several analysed at once)."""
    try:
        return (scenario if scenario is not None else scenario_from_header(header)), config_from_header(header)
    except AnalysisError as exc:
        raise AnalysisError(f"{path}: {exc}") from None


def analyze_contents(path: str, contents: LogContents, *, scenario: Scenario | None = None,
                     only_trials: set[int] | None = None, keep_events: bool = False,
                     observe: Callable[[list[Event]], frozenset] | None = None) -> LogAnalysis:
    header = contents.header
    scenario, cfg = rebuilt_from_header(path, header, scenario)
    memo = ReplayMemo(scenario, cfg)
    reports = [judge_trial(scenario, cfg, path, trial, events, end, keep_events=keep_events, observe=observe,
                           memo=memo)
               for trial, events, end in iter_trials(contents)
               if only_trials is None or trial in only_trials]
    return LogAnalysis(path, header, contents.damage, scenario, cfg, reports, stray_records(contents).message())


def analyze_log(path: str | os.PathLike[str], *, jobs: int | None = None, pipes: bool = False,
                **kwargs: Any) -> LogAnalysis:
    """Read and judge one log (LogError: not a log; AnalysisError: its scenario cannot be rebuilt). A msgpack
    log is judged as it is decoded, and a large one in ``jobs`` processes (default: one per CPU); the verdicts
    are the same. ``pipes``: a log the user named may be a pipe (scenarios.input_files)."""
    path = os.fspath(path)
    jobs = (os.cpu_count() or 1) if jobs is None else max(1, jobs)
    with gc_paused():  # millions of records: see controlled.gc_pause
        try:
            analysis = analyze_streamed(path, jobs, pipes=pipes, **kwargs)
            if analysis is not None:
                return analysis
            contents = read_log(path, pipes=pipes)
        except OSError as exc:
            raise LogError(f"{path}: {exc.strerror or exc}") from None
        return analyze_contents(path, contents, **kwargs)


PARALLEL_MIN_BYTES = 4 << 20  # below this, starting processes costs more than it saves


# --- the same, as the records are decoded, in one or more processes ---------------------------------------------
# Each trial is judged as soon as its run of records ends, so only one trial's records are alive at a time: they
# are freed (and their memory reused) as decoding goes on, instead of a million records filling the heap first.
# With several processes the file is cut at record boundaries (found by msgpack's skip(), several times faster
# than decoding) into one chunk per process; a trial cut by a chunk boundary comes back as raw records and is
# judged here. Trials must be contiguous in the file (as every writer of this project makes them); if they are
# not, this path declines and the caller reads the whole log first (read_log groups them).
_SHARED: dict[str, Any] = {}  # handed to forked workers by inheritance, never pickled: the file can be large


@dataclass(slots=True)
class _ChunkResult:
    runs: list[int]  # trial ids in file order, one entry per run of consecutive records
    reports: list[TrialReport]
    loose: dict[int, tuple[list[dict[str, Any]], dict[str, Any] | None]]  # trials cut by a boundary
    damage: str | None
    # The chunk's last record, when it ended cleanly at the next chunk's start: where it begins, whether it is
    # whole (eventlog.whole_record), and where it went (its loose trial's events or trial_end, or nowhere). Damage
    # found at the very start of the next chunk may have begun inside it, as read_log judges it.
    last: tuple[int, bool, str] | None = None
    at_start: bool = False  # the damage is at the chunk's first byte
    strays: Strays = field(default_factory=Strays)  # records no trial takes


def _pool_worker_signals() -> None:
    """A forked judge process: SIGTERM kills it and Ctrl-C is its parent's. It inherits whatever handlers the
    parent had at the fork. tlbrace's own are the default again in a forked child (actors.sigint.parent_only):
    calm_shutdown's and sigint_deferred's, which only note a SIGTERM, kept an idle or busy worker alive through
    Pool.terminate and the parent's join waited for ever (a CI run hung 16 minutes in test_analyze_cache;
    tests/test_signal_handlers.py). Ray's (ray.init in the same process) still dumps a native stack trace on
    the way out, and a test's may do anything: so the judge processes set their own."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def analyze_streamed(path: str, jobs: int, *, pipes: bool = False, scenario: Scenario | None = None,
                     only_trials: set[int] | None = None, keep_events: bool = False,
                     observe: Callable[[list[Event]], frozenset] | None = None) -> LogAnalysis | None:
    """None: this log cannot be judged as it is decoded (JSON Lines, interleaved trials, no records)."""
    import multiprocessing

    from scenarios.input_files import MAX_LOG_BYTES, InputFileError, read_input

    try:
        data = read_input(path, "log", MAX_LOG_BYTES, pipes=pipes)
    except InputFileError as exc:
        raise LogError(str(exc)) from None
    if is_json_lines(data):
        return None  # JSON Lines: for people, small
    refuse_compressed(path, data)
    if len(data) < PARALLEL_MIN_BYTES:  # by what was read: a pipe's or standard input's size is not known before
        jobs = 1
    header, starts = _chunk_starts(path, data, jobs)
    scenario, cfg = rebuilt_from_header(path, header, scenario)
    if starts is None:
        return None
    cuts = starts + [len(data)]
    tasks = [(cuts[k], cuts[k + 1], k > 0, k < jobs - 1) for k in range(jobs)]
    # One memo, which each forked process inherits empty and grows on its own.
    memo = ReplayMemo(scenario, cfg)
    _SHARED.update(data=data, run=header.get("run"), scenario=scenario, cfg=cfg, path=path, only=only_trials,
                   keep=keep_events, observe=observe, memo=memo)
    try:
        if jobs == 1:
            chunks = [_judge_range(tasks[0])]
        else:
            with multiprocessing.get_context("fork").Pool(jobs, initializer=_pool_worker_signals) as pool:
                chunks = pool.map(_judge_range, tasks)
    finally:
        _SHARED.clear()
    merged = _merge_chunks(chunks)
    if merged is None:
        return None  # interleaved trials: only the serial reader groups them correctly
    damage, reports, loose, strays = merged
    for trial, (events, end) in loose.items():
        reports.append(judge_trial(scenario, cfg, path, trial, events, end, keep_events=keep_events,
                                   observe=observe, memo=memo))
    reports.sort(key=lambda r: r.trial)
    return LogAnalysis(path, header, damage, scenario, cfg, reports, strays.message())


def _merge_chunks(chunks: list[Any]) -> tuple[str | None, list[TrialReport],
                                              dict[int, tuple[list[dict[str, Any]], dict[str, Any] | None]],
                                              Strays] | None:
    """The chunks' reports put together, up to the first damage; and the records of each trial that crossed a
    chunk boundary (still to judge), joined. None when a trial's records are not contiguous (interleaved)."""
    damage = None
    for i, c in enumerate(chunks):
        if c.damage is not None:
            damage, chunks = c.damage, chunks[:i + 1]  # nothing after the damage counts
            if c.at_start and i > 0:
                damage = _drop_torn_last(chunks[i - 1]) or damage
            break
    runs = [t for c in chunks for t in c.runs]
    merged_runs = [t for i, t in enumerate(runs) if i == 0 or runs[i - 1] != t]
    if len(set(merged_runs)) != len(merged_runs):
        return None
    reports = [r for c in chunks for r in c.reports]
    loose: dict[int, tuple[list[dict[str, Any]], dict[str, Any] | None]] = {}
    strays = Strays()
    for c in chunks:
        strays.merge(c.strays)
        for trial, (events, end) in c.loose.items():
            have, have_end = loose.get(trial, ([], None))
            loose[trial] = (have + events, end or have_end)
    return damage, reports, loose, strays


def _drop_torn_last(c: _ChunkResult) -> str | None:
    """When the chunk after ``c`` is garbage from its first byte and ``c``'s last record is not whole, that record
    is where the damage began (bytes injected inside it shift what follows, and the next chunk starts in them):
    it is dropped from its trial and the damage put at its start, as read_log does with one reader. Without this
    the record was judged (a divergence, "field 'kind' is missing") and the damage put at the chunk boundary,
    with --jobs 2 and not with --jobs 1. Returns the damage, or None when the last record is whole."""
    if c.last is None or c.last[1]:
        return None
    offset, _whole, where = c.last
    if c.runs and c.runs[-1] in c.loose:
        events, end = c.loose[c.runs[-1]]
        if where == "event" and events:
            events.pop()
        elif where == "trial_end":
            c.loose[c.runs[-1]] = (events, None)
    return f"garbage at byte {offset}"


def _chunk_starts(path: str, data: bytes, jobs: int) -> tuple[dict[str, Any], list[int] | None]:
    """The header, and where each of ``jobs`` chunks starts: the first record boundary at or past an equal share
    of the bytes. Only the records before the last cut are skipped over (the workers decode the rest). None when
    the log is too small for that many chunks or damaged before the last cut (the serial reader reports it)."""
    import msgpack

    from logs.eventlog import SCHEMA, SCHEMA_VERSION, check_header

    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    try:
        header = unpacker.unpack()
    except Exception:  # noqa: BLE001 - any decoding failure of the first record means "not a log"
        header = None
    if not isinstance(header, dict) or header.get("schema") != SCHEMA:
        raise LogError(f"{path}: not a tlbrace log (its first record is not a {SCHEMA} header)")
    if header.get("version") != SCHEMA_VERSION:
        raise LogError(f"{path}: log schema version {header.get('version')!r}; this tlbrace reads version "
                       f"{SCHEMA_VERSION}")
    check_header(path, header)
    starts = [unpacker.tell()]
    try:
        for k in range(1, jobs):
            target = len(data) * k // jobs
            while unpacker.tell() < target:
                unpacker.skip()
            starts.append(unpacker.tell())
    except Exception:  # noqa: BLE001 - end of data or damage before the cut
        return header, None
    if any(later <= earlier for earlier, later in zip(starts, starts[1:] + [len(data)])):
        return header, None  # an empty chunk
    return header, starts


def _judge_range(task: tuple[int, int, bool, bool]) -> _ChunkResult:
    """Decode data[start:end] as read_log does and judge each trial when its run of records ends (grouped as
    eventlog.iter_trials groups them). The first run, when a chunk precedes this one, and the last, when one
    follows, may continue across the boundary: they come back loose."""
    start, end, has_previous, has_next = task
    sh = _SHARED
    out = _ChunkResult([], [], {}, None)
    seen: set[int] = set()
    events: list[dict[str, Any]] = []
    trial_end: dict[str, Any] | None = None

    def close(loose: bool) -> None:
        trial = out.runs[-1]
        if sh["only"] is not None and trial not in sh["only"]:
            return
        if loose:
            out.loose[trial] = (events, trial_end)
        else:
            out.reports.append(judge_trial(sh["scenario"], sh["cfg"], sh["path"], trial, events, trial_end,
                                           keep_events=sh["keep"], observe=sh["observe"], memo=sh["memo"]))

    for rec in _records(sh["data"], start, end, out):
        trial = trial_of(rec)
        if trial is None:
            out.strays.add(rec)
            continue
        if not out.runs or out.runs[-1] != trial:
            if out.runs:
                close(loose=has_previous and len(out.runs) == 1)
            out.runs.append(trial)
            if trial in seen:
                return out  # interleaved trials: the caller sees it in the runs and declines
            seen.add(trial)
            events, trial_end = [], None
        if rec["type"] == "trial_end":
            trial_end = rec
        else:
            events.append(rec)
        if out.last is not None:  # the chunk's last record: where it went
            out.last = (out.last[0], out.last[1], "trial_end" if rec["type"] == "trial_end" else "event")
    if out.runs:
        close(loose=has_next or (has_previous and len(out.runs) == 1))
    return out


def _records(data: bytes, start: int, end: int, out: _ChunkResult) -> Iterator[dict[str, Any]]:
    """The records of data[start:end] as read_log decodes them: up to the first one that is not a map or not
    whole, which is noted in ``out.damage``."""
    import msgpack

    from logs.eventlog import another_log, is_header, whole_record

    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(end - start, 1))
    unpacker.feed(memoryview(data)[start:end])
    offset = previous = 0
    pending: dict[str, Any] | None = None  # held back one record: the garbage after it may have begun inside it
    try:
        for obj in unpacker:
            if not isinstance(obj, dict):
                break
            if is_header(obj):  # a chunk never holds this log's own header: another log follows this one
                if pending is not None:
                    yield pending
                out.damage = another_log(start + offset)
                return
            if pending is not None:
                yield pending
            pending, previous, offset = obj, offset, unpacker.tell()
        else:
            if pending is not None:
                out.last = (start + previous, whole_record(pending, _SHARED["run"]), "")
                yield pending
            if start + offset < end:
                out.damage = f"truncated record at byte {start + offset}"
            return
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError):
        pass
    out.at_start = pending is None and offset == 0
    if pending is not None and not whole_record(pending, _SHARED["run"]):
        offset = previous  # read_log drops it likewise
    elif pending is not None:
        yield pending
    out.damage = f"garbage at byte {start + offset}"


# --- re-running a judged trial, for pictures and final states ---------------------------------------------------
def rerun(scenario: Scenario, cfg: Config, executed: Iterable[Transition],
          after: Callable[[Machine, int], None] | None = None) -> Machine:
    """Run exactly the transitions the replay executed, calling ``after(machine, i)`` after each one (and with
    i = -1 before the first): the state at every point of a judged trial."""
    m = Machine(scenario, cfg, record=True)
    if after is not None:
        after(m, -1)
    for i, tr in enumerate(executed):
        m.execute(tuple(tr))
        if after is not None:
            after(m, i)
    return m


# --- many trials --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Summary:
    trials: int
    violating: int
    by_invariant: dict[str, int]
    divergences: int
    disagreements: int
    hit_rate: float
    wilson95: tuple[float, float]


def wilson_interval(hits: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion: honest at hit rates near 0 or 1, unlike p ± z·se."""
    if n == 0:
        return (0.0, 1.0)
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarize(reports: Iterable[TrialReport]) -> Summary:
    reports = list(reports)
    by_invariant: Counter[str] = Counter()
    for r in reports:
        by_invariant.update(r.invariants)
    violating = sum(1 for r in reports if r.violating)
    n = len(reports)
    return Summary(n, violating, dict(sorted(by_invariant.items())),
                   sum(1 for r in reports if r.divergence), sum(1 for r in reports if r.disagreement),
                   violating / n if n else 0.0, wilson_interval(violating, n))
