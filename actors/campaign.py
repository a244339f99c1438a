"""A stress campaign: many independent trials of one scenario, ``parallel`` of them at once.

Each of the ``parallel`` actor sets runs one trial at a time and is reused for the next (reset, not recreated);
a set whose trial hung or crashed is killed and replaced, and the campaign goes on. Sets are spread over the
cluster's nodes round-robin. Failing trials keep their full event log (one msgpack file each, written with
``logs.eventlog.EventLogWriter``); passing trials keep counters only, unless ``keep_passing``.

With ``out`` and ``results``, every finished trial is also appended to ``out/results.msgpack``
(``logs.results_file``), so a campaign whose driver was killed can be resumed: the trials recorded there are
counted, not run again, and the others run with the seeds they would have had (``trial_seed``: a pure function
of campaign seed and trial id). A Ctrl-C abandons the running trials (they run again on resume), syncs the file
and returns what finished.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import itertools
import os
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from actors.dir_lock import DirectoryBusy, DirLock, lock_directory
from actors.fault_injection import Faults
from actors.fuzzy_sync import RaceAligner, windows_of
from actors.race_windows import trial_times
from actors.ray_session import GcsWatch, gcs_lost, giving_way
from actors.results_rescue import ResultsLost, rescue
from actors.sigint import sigint_deferred, sigterm_as_interrupt
from actors.stop_rule import StopRule
from actors.trial import ActorSet, RunningTrial, TrialResult
from kernel_model.config import Config
from kernel_model.events import Violation
from kernel_model.kernels import fixes_in_config, parse_version, version_text
from kernel_model.program import Scenario
from logs import results_file
from logs.eventlog import EventLogWriter, make_header
from logs.output_files import OutputFileError, foreign_kind, replaced_whole
from logs.results_file import ResultsContents, ResultsDeleted, ResultsError, ResultsWriter


@dataclass(slots=True)
class CampaignOptions:
    trials: int | None = 100  # None: unbounded (then duration_s or until, or a Ctrl-C, ends the campaign)
    parallel: int = 1
    jitter_us: float = 0.0
    seed: int = 0
    out: str | None = None  # where failing trials' logs go (None: nowhere)
    keep_passing: bool = False
    hang_timeout: float = 5.0
    results: bool = False  # append every finished trial to out/results.msgpack (``tlbrace stress`` does)
    resume: bool = False  # continue the campaign recorded in out/results.msgpack
    duration_s: float | None = None  # stop after this many seconds of this driver (actors.stop_rule says why)
    until: int | None = None  # stop once the campaign holds this many violating trials
    clock_start: float | None = None  # clock() value the duration counts from (None: the campaign's start)
    clock: Callable[[], float] = time.monotonic  # what the duration is measured by (tests pass a trial counter)
    # > 0: sample op windows over at least this many trials, then delay ops at their start so that measured
    # windows of different threads overlap (actors.fuzzy_sync); 0: off
    align: int = 0
    kernel: str | None = None  # --kernel's release, recorded in the results file's header (None: not given)
    faults: Faults | None = None  # test-only: a trial made to crash or hang (actors.fault_injection)
    # Called (from the GcsWatch's thread) before a lost cluster ends a process whose main thread would not give way:
    # what the caller must save first (scale: the finished cells' rows)
    on_lost: Callable[[], None] | None = None
    lost_note: str | None = None  # what on_lost saved, added to the lost cluster's line


def trial_seed(campaign_seed: int, trial: int) -> int:
    """A trial's own seed: the same for a trial id whether the campaign ran straight through or was resumed,
    and independent of which trials ran before it or in parallel (63 bits: a msgpack int)."""
    digest = hashlib.sha256(f"tlbrace-trial:{campaign_seed}:{trial}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(slots=True)
class Prepared:
    """The results file of a campaign about to run: where, its header, and what a resumed file already holds."""

    path: str
    header: dict[str, Any]
    resumed: ResultsContents | None = None
    lock: DirLock | None = None  # held from the check until the campaign has closed its files
    unshared: int = 0  # other names (hard links) the resumed file had: it was copied to be this --out's own

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def prepare_results(scenario: Scenario, cfg: Config, opts: CampaignOptions) -> Prepared | None:
    """Check (before anything runs, and writing nothing but the lock file) that the results file fits the
    command: with ``resume``, that ``out/results.msgpack`` is a results file of this very campaign (a file with
    other names is then made a copy of its own: results_file.unshare). Takes the
    directory's lock first (a second driver is refused), and keeps it in the returned Prepared. Raises
    ResultsError."""
    if not (opts.out and opts.results):
        return None
    path = os.path.join(opts.out, results_file.FILE_NAME)
    header = results_file.make_header(run=uuid.uuid4().hex[:8], scenario=scenario.name,
                                      scenario_source=scenario.source, params=scenario.params,
                                      config=cfg.to_dict(), seed=opts.seed, trials=opts.trials,
                                      jitter_us=opts.jitter_us, kernel=_kernel_identity(cfg, opts.kernel),
                                      align=opts.align)
    os.makedirs(opts.out, exist_ok=True)  # an OSError (read-only, /proc, no permission) is the environment's
    try:
        lock = lock_directory(opts.out)
    except DirectoryBusy as exc:
        raise ResultsError(str(exc)) from None
    try:
        if os.path.isdir(path):
            raise ResultsError(f"{path}: is a directory, expected a results file")
        if opts.resume and os.path.exists(path):
            _check_own_results(path, opts.out)
            contents = results_file.read_results(path)
            why = results_file.mismatch(contents.header, header)
            if why is not None:
                raise ResultsError(f"{path}: the results of another campaign ({why}); use another --out, or the "
                                   f"same scenario, configuration, --kernel, --seed, --trials, --jitter and --align")
            return Prepared(path, contents.header, contents, lock, results_file.unshare(path))
        return Prepared(path, header, lock=lock)
    except BaseException:
        lock.release()
        raise


def _check_own_results(path: str, out: str) -> None:
    """The lock is the directory's: a results file that is a symbolic link into another directory could be the
    results of a campaign running there under its own lock, and two drivers appended to one file (each cutting it
    back to its own last sync on a write error). Such a file is resumed where it is."""
    real = os.path.realpath(path)
    if os.path.dirname(real) != os.path.realpath(out):
        raise ResultsError(f"{path}: is a symbolic link to {real}; a campaign's results file is its directory's own: "
                           f"resume it with --out {os.path.dirname(real)}")


def _kernel_identity(cfg: Config, version: str | None) -> dict[str, Any]:
    """The results header's "kernel": --kernel's release and the fixes the configuration has (after any explicit
    --ordering / --delayed-batches on top of it)."""
    release = None if version is None else version_text(parse_version(version))  # "v4.13", "latest": as named
    return {"version": release, "fixes": sorted(fixes_in_config(cfg.without, cfg.to_dict()))}


@dataclass(slots=True)
class CampaignResult:
    scenario: str
    cfg: Config
    run: str
    trials: int = 0
    by_status: Counter = field(default_factory=Counter)
    by_invariant: Counter = field(default_factory=Counter)
    steps: int = 0
    seconds: float = 0.0
    failing_logs: list[str] = field(default_factory=list)
    failures: list[TrialResult] = field(default_factory=list)  # violating, hung, crashed, diverged
    nodes_by_trial: dict[int, tuple[str, ...]] = field(default_factory=dict)
    resumed: int = 0  # trials counted from the results file, run by an earlier driver
    resumed_steps: int = 0
    interrupted: bool = False  # Ctrl-C: the trials that had not finished were abandoned
    stopped_by: str = "trials"  # which limit ended it: trials, duration, until or interrupt
    first_violation_at: float | None = None  # time.monotonic() when this driver counted its first violation
    results_path: str | None = None
    moved_aside: str | None = None
    skipped: list[tuple[int, int]] = field(default_factory=list)  # damaged byte ranges of the resumed file
    aligner: dict[str, Any] | None = None  # RaceAligner.summary() when the campaign ran with align
    # Trials whose log could not be written because something not a file holds its name: "trial N: why"
    unwritten_logs: list[str] = field(default_factory=list)

    @property
    def violations(self) -> int:
        """Trials in which the oracle found a violated invariant (a confirmed hang included)."""
        return sum(1 for r in self.failures if r.violations)

    def summary(self) -> dict[str, Any]:
        seconds = max(self.seconds, 1e-9)  # this driver's time: the rates count this driver's trials only
        return {
            "scenario": self.scenario, "ordering": self.cfg.ordering, "arch": self.cfg.arch,
            "mutant": self.cfg.mutant, "trials": self.trials, "violations": self.violations,
            "by_invariant": dict(sorted(self.by_invariant.items())),
            "crashed": self.by_status["crashed"], "hung": self.by_status["hung"],
            "diverged": self.by_status["diverged"],
            "seconds": round(self.seconds, 3), "trials_per_s": round((self.trials - self.resumed) / seconds, 2),
            "steps_per_s": round((self.steps - self.resumed_steps) / seconds, 1),
            "failing_logs": list(self.failing_logs), "resumed": self.resumed, "interrupted": self.interrupted,
            "stopped_by": self.stopped_by,
            "results": self.results_path, "aligner": self.aligner or {"on": False},
            "unwritten_logs": list(self.unwritten_logs),
        }


def run_campaign(scenario: Scenario, cfg: Config, opts: CampaignOptions,
                 on_trial: Callable[[TrialResult, CampaignResult], None] | None = None,
                 prepared: Prepared | None = None) -> CampaignResult:
    import ray

    prepared = prepared or prepare_results(scenario, cfg, opts)
    run = prepared.header["run"] if prepared is not None else uuid.uuid4().hex[:8]
    result = CampaignResult(scenario.name, cfg, run)
    try:
        writer, done = _resume(prepared, result, opts, scenario.name) if prepared is not None else (None, set())
    except BaseException:
        if prepared is not None:
            prepared.release()
        raise
    # Lazily: a million trial ids are not built up front (and the recorded ones are skipped).
    ids = _trial_ids(done, opts.trials)
    upcoming = next(ids, None)  # the next trial id to start (None: no more)
    first_wave = len(list(itertools.islice(_trial_ids(done, opts.trials), max(1, opts.parallel))))
    slots = _Slots(scenario, cfg, opts.parallel, [])  # its nodes asked for under the watch, below
    started = time.monotonic()
    rule = StopRule(opts.trials, opts.duration_s, opts.until)
    clock = opts.clock_start if opts.clock_start is not None else opts.clock()

    aligner = (RaceAligner.for_scenario(scenario, opts.seed, opts.align, hang_timeout=opts.hang_timeout)
               if opts.align else None)
    finished = functools.partial(_record_trial, result=result, scenario=scenario, cfg=cfg, opts=opts, writer=writer,
                                 on_trial=on_trial, aligner=aligner)
    start = functools.partial(_start_trial, scenario=scenario, cfg=cfg, opts=opts, run=run, aligner=aligner)
    watch = GcsWatch(prepared.path if prepared is not None else None, _lost_sync(writer, opts.on_lost),
                     note=opts.lost_note)
    try:
        with sigterm_as_interrupt(), watch:
            # Under the watch: a GCS lost before this campaign (a scale grid's head stopped between two cells) has
            # ray.nodes() wait for ever, in C++; the watch's interrupt reaches a main thread waiting in giving_way.
            slots.nodes = [n["NodeID"] for n in giving_way(ray.nodes) if n.get("Alive")]
            if rule.reason(result, clock, opts.clock()) in (None, "trials"):
                slots.prestart(first_wave)  # all sets' workers start in parallel
            _run_trials(slots, ids, upcoming, lambda: rule.reason(result, clock, opts.clock()), start, finished,
                        result)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM, or the watch's word that the GCS is gone
        if gcs_lost():
            raise watch.lost() from None
        result.interrupted = True  # the running trials are abandoned: not recorded, so a resume runs them
        result.stopped_by = "interrupt"
    except ResultsDeleted:
        pass  # rescued below, before the writer's descriptor (all that is left of the file) is closed
    finally:
        result.seconds = time.monotonic() - started
        try:
            if not gcs_lost():  # nothing is asked of a lost cluster: Ray would wait for it, then end the process
                slots.kill_all()
            if writer is not None:
                _close_writer(writer, result, scenario, cfg, opts, prepared.lock if prepared is not None else None)
        finally:
            if prepared is not None:
                prepared.release()
    return result


def _lost_sync(writer: ResultsWriter | None, on_lost: Callable[[], None] | None) -> Callable[[], None] | None:
    """What the watch makes durable before it ends a process whose main thread would not give way: the results
    file, and the caller's own (a scale grid's finished rows)."""
    calls = [c for c in (writer.sync if writer is not None else None, on_lost) if c is not None]
    if not calls:
        return None

    def sync() -> None:
        for call in calls:
            call()
    return sync


def _close_writer(writer: ResultsWriter, result: CampaignResult, scenario: Scenario, cfg: Config,
                  opts: CampaignOptions, held: DirLock | None) -> None:
    """Close the results file; if it was deleted or moved while the campaign ran, save its records first and end
    the campaign with ResultsLost (actors.results_rescue)."""
    if writer.displaced() is None:
        writer.close()
        return
    lost: ResultsLost | None = None
    try:
        # The records live only in this descriptor now: a Ctrl-C (or SIGTERM) in the middle of the copy lost them
        # all. It waits until they are saved, and the line saying where then ends the command (exit 3), not 130.
        with sigint_deferred():
            lost = rescue(writer, opts.out or ".", result.trials, result.failures,
                          lambda where, r: write_trial_log(where, result.run, scenario, cfg, r), held)
    except KeyboardInterrupt:
        if lost is None:
            raise
    finally:
        writer.close()
    assert lost is not None  # rescue returned, or its interrupt went on above
    raise lost


def _run_trials(slots: _Slots, ids: Iterator[int], upcoming: int | None, stop_reason: Callable[[], str | None],
                start: Callable[..., RunningTrial], finished: Callable[[TrialResult], None],
                result: CampaignResult) -> None:
    """Start trials on idle sets and collect the finished ones until no trial is left or the stop rule says
    so (the running trials are then abandoned, as on Ctrl-C)."""
    while upcoming is not None or slots.running:
        reason = stop_reason()
        if reason in ("until", "duration"):
            result.stopped_by = reason
            return
        for i, actors in slots.idle(upcoming is not None):
            assert upcoming is not None
            trial, upcoming = upcoming, next(ids, None)
            slots.running[i] = start(actors, trial=trial)
            if upcoming is None:
                break
        slots.wait()
        slots.collect(finished)
    result.stopped_by = stop_reason() or "trials"


class _Slots:
    """The campaign's ``parallel`` actor sets and the trial each one runs. A set is created when first needed
    (or all at once for the first wave), reused trial after trial, and killed and replaced when its trial left it
    unusable (hung, crashed)."""

    def __init__(self, scenario: Scenario, cfg: Config, parallel: int, nodes: list[str]) -> None:
        self.scenario, self.cfg, self.nodes = scenario, cfg, nodes
        self.sets: list[ActorSet | None] = [None] * max(1, parallel)
        self.running: dict[int, RunningTrial] = {}  # set index -> trial

    def _fresh(self, i: int) -> ActorSet:
        node = self.nodes[i % len(self.nodes)] if len(self.nodes) > 1 else None
        self.sets[i] = ActorSet(i, self.scenario, self.cfg, node)
        return self.sets[i]  # type: ignore[return-value]

    def prestart(self, count: int) -> None:
        for i in range(count):
            self._fresh(i)

    def idle(self, wanted: bool) -> Iterator[tuple[int, ActorSet]]:
        """Each set running no trial (created now if it is not there), while ``wanted``."""
        if not wanted:
            return
        for i in range(len(self.sets)):
            if i not in self.running:
                yield i, self.sets[i] or self._fresh(i)

    def wait(self) -> None:
        import ray

        pending = [ref for t in self.running.values() for ref in t.pending_refs()]
        if pending:
            ray.wait(pending, num_returns=1, timeout=0.25)

    def collect(self, finished: Callable[[TrialResult], None]) -> None:
        """Hand each trial that has ended to ``finished``; kill its set if the trial left it unusable."""
        for i, t in list(self.running.items()):
            if not t.poll():
                continue
            # A Ctrl-C between counting a trial and writing its record would leave the summary and the results
            # file disagreeing by one; the bookkeeping of one finished trial is all or nothing.
            with sigint_deferred():
                del self.running[i]
                assert t.result is not None
                if not t.set_is_reusable:
                    self.sets[i].kill()  # type: ignore[union-attr]
                    self.sets[i] = None
                finished(t.result)

    def kill_all(self) -> None:
        for actors in self.sets:
            if actors is not None:
                actors.kill()


def _resume(prepared: Prepared, result: CampaignResult, opts: CampaignOptions,
            scenario: str) -> tuple[ResultsWriter, set[int]]:
    """Open the results file; on a resume, count the trials it already holds. Returns the writer and their ids."""
    done: set[int] = set()
    writer = _open_writer(prepared, result)
    if prepared.resumed is not None:
        for rec in prepared.resumed.records:
            _count_recorded(result, rec)
            done.add(rec["trial"])
        result.skipped = list(prepared.resumed.skipped)
        if opts.out:
            _remove_unrecorded_logs(opts.out, scenario, result.run, done)
    return writer, done


def _record_trial(r: TrialResult, result: CampaignResult, scenario: Scenario, cfg: Config, opts: CampaignOptions,
                  writer: ResultsWriter | None,
                  on_trial: Callable[[TrialResult, CampaignResult], None] | None,
                  aligner: RaceAligner | None) -> None:
    """Count one finished trial, write its log (if failing) and its record, and tell ``on_trial``; the aligner
    (if any) learns the trial's op windows."""
    log = _account(result, r, scenario, cfg, opts)
    if aligner is not None:
        aligner.observe(windows_of(r.timing), trial_times(r.timing))
        result.aligner = aligner.summary([th.name for th in scenario.threads])
    if writer is not None:
        writer.append(_record_of(r, log))
    if on_trial is not None:
        on_trial(r, result)
    if not r.failed:
        r.records = []  # passing trials keep counters only


def _start_trial(actors: ActorSet, scenario: Scenario, cfg: Config, opts: CampaignOptions, run: str,
                 aligner: RaceAligner | None, trial: int) -> RunningTrial:
    faults = opts.faults
    stop_pid = None
    if faults is not None:
        faults.before_start(trial, actors)
        stop_pid = faults.pid_to_stop(trial, actors)
    running = RunningTrial(actors, scenario, cfg, run=run, trial=trial, seed=trial_seed(opts.seed, trial),
                           jitter_us=opts.jitter_us, hang_timeout=opts.hang_timeout,
                           plan=aligner.wire_plan(trial) if aligner is not None else None)
    if faults is not None:
        faults.after_start(trial, actors, stop_pid)
    return running


def _remove_unrecorded_logs(out: str, scenario: str, run: str, recorded: set[int]) -> None:
    """A killed driver may have written the logs of trials whose records it never synced: those trials run again
    (and a rerun that passes writes no log), so their old logs go, and the logs agree with the results file."""
    pattern = re.compile(rf"{re.escape(scenario)}-{re.escape(run)}-trial(\d+)\.msgpack")
    for path in glob.glob(os.path.join(glob.escape(out), f"{glob.escape(scenario)}-{run}-trial*.msgpack")):
        m = pattern.fullmatch(os.path.basename(path))
        if m is not None and int(m.group(1)) not in recorded and foreign_kind(path) is None:
            os.remove(path)  # a FIFO or directory a user put there is left alone: the trial's rerun reports it
    # A log the killed driver was writing (write_trial_log's temporary beside its name; this directory is locked
    # by this driver, so no one else writes one): never a log, and its trial runs again.
    for path in glob.glob(os.path.join(glob.escape(out), f"{glob.escape(scenario)}-{run}-trial*.msgpack.*.tmp")):
        if foreign_kind(path) is None:
            os.remove(path)


def _trial_ids(done: set[int], limit: int | None) -> Iterator[int]:
    """The ids of the trials still to run, lowest first (a resumed campaign fills the gaps a killed driver left,
    then goes on); unbounded when ``limit`` is None."""
    ids = itertools.count() if limit is None else iter(range(limit))
    return (t for t in ids if t not in done)


def _open_writer(prepared: Prepared, result: CampaignResult) -> ResultsWriter:
    os.makedirs(os.path.dirname(prepared.path) or ".", exist_ok=True)
    result.results_path = prepared.path
    if prepared.resumed is None and os.path.exists(prepared.path):
        result.moved_aside = _move_aside(prepared.path)
    return ResultsWriter(prepared.path, prepared.header, prepared.resumed)


_PLAIN_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what a run id tlbrace wrote looks like (8 hex digits)


def _move_aside(path: str) -> str:
    """A new campaign in the same --out keeps the old one's results: renamed after its run id, when that is a plain
    name (the header's text must never choose a path: a run id of "/../../x" moved the file out of --out)."""
    try:
        tag = results_file.read_results(path).header["run"]
    except ResultsError:
        tag = ""
    if not _PLAIN_RUN_ID.fullmatch(tag):
        tag = time.strftime("%Y%m%d-%H%M%S")
    base, ext = os.path.splitext(path)
    aside, n = f"{base}-{tag}{ext}", 1
    while os.path.exists(aside):
        aside, n = f"{base}-{tag}.{n}{ext}", n + 1
    os.rename(path, aside)
    return aside


def _record_of(r: TrialResult, log: str | None) -> dict[str, Any]:
    return results_file.trial_record(trial=r.trial, seed=r.seed, status=r.status,
                                     invariants=[v.invariant for v in r.violations], detail=r.detail,
                                     actor=r.actor, steps=r.steps, seconds=r.seconds, nodes=list(r.nodes), log=log)


def _count_recorded(result: CampaignResult, rec: dict[str, Any]) -> None:
    """A trial an earlier driver finished, counted as if it had just finished here."""
    status = rec["status"]
    invariants = [str(i) for i in rec["invariants"]]
    result.trials += 1
    result.resumed += 1
    result.by_status[status] += 1
    result.steps += rec["steps"]
    result.resumed_steps += rec["steps"]
    result.nodes_by_trial[rec["trial"]] = tuple(rec.get("nodes") or ())
    for name in invariants:
        result.by_invariant[name] += 1
    if status != "ok":
        detail = str(rec.get("detail") or "")
        result.failures.append(TrialResult(rec["trial"], status, [Violation(i, detail) for i in invariants], [],
                                           rec["steps"], tuple(rec.get("nodes") or ()), rec.get("actor"), detail,
                                           float(rec.get("seconds") or 0.0), rec["seed"]))
    if isinstance(rec.get("log"), str) and status != "ok":
        result.failing_logs.append(rec["log"])


def _account(result: CampaignResult, r: TrialResult, scenario: Scenario, cfg: Config,
             opts: CampaignOptions) -> str | None:
    """Count a finished trial; returns the path of its event log, if one was kept."""
    result.trials += 1
    result.by_status[r.status] += 1
    result.steps += r.steps
    result.nodes_by_trial[r.trial] = r.nodes
    for v in r.violations:
        result.by_invariant[v.invariant] += 1
    if r.violations and result.first_violation_at is None:
        result.first_violation_at = time.monotonic()
    if r.failed:
        result.failures.append(r)
    if opts.out and (r.failed or opts.keep_passing):
        try:
            path = write_trial_log(opts.out, result.run, scenario, cfg, r)
        except OutputFileError as exc:  # one trial's name is taken: that trial is reported, the campaign goes on
            result.unwritten_logs.append(f"trial {r.trial}: its log was not written: {exc}")
            return None
        if r.failed:
            result.failing_logs.append(path)
        return path
    return None


def write_trial_log(out: str, run: str, scenario: Scenario, cfg: Config, r: TrialResult) -> str:
    """One self-describing msgpack log for one trial: header, its events in replay order, trial_end."""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{scenario.name}-{run}-trial{r.trial:05d}.msgpack")
    kind = foreign_kind(path)
    if kind is not None:  # removed, a user's FIFO or device was lost; a directory stopped the campaign (exit 3)
        raise OutputFileError(f"{path}: the trial's event log would go there, but it is {kind}; expected a regular "
                              "file or nothing (move it away to keep the next trials' logs)")
    header = make_header(run=run, runtime="wild", scenario=scenario.name, scenario_source=scenario.source,
                         params=scenario.params, config=cfg.to_dict())
    # Written beside its name and renamed over it once whole (the rename replaces a symlink there, or the log of
    # the same trial run before a resume, and never follows it). The log was written in place: a `tlbrace
    # analyze` or `report` of the campaign's directory while it ran read a failing trial's log cut short, judged
    # the events before the cut "ok" and exited 0; a driver killed mid-write left such a log behind for good.
    with replaced_whole(path, "trial's event log") as tmp, EventLogWriter(tmp, header) as writer:
        for rec in r.records:
            writer.write(rec)
        writer.write({"type": "trial_end", "run": run, "trial": r.trial, "status": r.status,
                      "violations": [{"invariant": v.invariant, "detail": v.detail} for v in r.violations],
                      "actor": r.actor, "detail": r.detail, "nodes": list(r.nodes), "steps": r.steps,
                      "seconds": round(r.seconds, 4), "seed": r.seed})
    return path
