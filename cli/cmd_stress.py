"""``tlbrace stress``: many wild trials of a scenario on Ray (CPUs as actors, real scheduling decides).

Without ``--address`` an embedded local Ray cluster is started (and stopped at the end); ``--address`` or
RAY_ADDRESS joins an existing cluster. Every trial is judged by replaying its events in the controlled machine
with the same oracle as ``explore``. Failing trials' full logs go to ``--out``, and every finished trial is
appended to ``--out``/results.msgpack: a campaign whose driver died continues with ``--resume`` (the same
command plus ``--resume``). Ctrl-C stops cleanly: the summary so far, exit status 130, resumable.

A campaign stops after ``--trials N``, after ``--duration 30s|10m|8h`` or after ``--until N`` violating trials,
whichever comes first (actors/stop_rule.py); with ``--duration`` or ``--until`` and no ``--trials``, the number
of trials is unbounded. ``--until`` above ``--trials`` could never be reached, and is refused. On ``--resume``, trials and violations count the whole campaign; the duration is a
fresh budget for this run.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from typing import Any, Final

from actors.fuzzy_sync import MIN_SAMPLES
from logs.one_line import one_line
from cli import ray_watchdog
from cli.json_document import print_document
from cli.options import add_output_options, add_scenario_options, check_out_dir, float_in, int_in, load

# Caps (README, "Limits"): past these a typo would grow memory or actors without bound on a workstation.
MAX_TRIALS: Final = 1_000_000  # the driver keeps a few counters per trial
MAX_PARALLEL: Final = 32  # actor sets at once; each is one Ray worker process per CPU plus one
MAX_WILD_CPUS: Final = 64  # CPU actors of one set (one per scenario thread)
MAX_ACTORS: Final = 256  # actors of all sets together: parallel x (CPUs + 1)
MAX_JITTER_US: Final = 1_000_000.0  # 1 s pauses at race points
MAX_HANG_TIMEOUT_S: Final = 3600.0

MAX_ALIGN_SAMPLES: Final = 10_000  # sampling trials of --align N

DEFAULT_TRIALS = 100  # when no limit at all is given


def add_wild_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``stress`` and ``run``."""
    add_scenario_options(p)
    p.add_argument("--address", metavar="ADDR", default=None,
                   help="join this Ray cluster (default: RAY_ADDRESS, else an embedded local cluster)")
    p.add_argument("--jitter", type=float_in(0.0, MAX_JITTER_US), default=0.0, metavar="US",
                   help="random pauses of up to US microseconds at named race points (default 0: none; at most "
                        f"{MAX_JITTER_US:.0f})")
    p.add_argument("--hang-timeout", type=float_in(0.0, MAX_HANG_TIMEOUT_S, low_open=True), default=5.0,
                   metavar="S", help="a trial with no progress for S seconds is reported as hung (default 5; "
                                     f"at most {MAX_HANG_TIMEOUT_S:.0f})")
    p.add_argument("--keep-passing", action="store_true", help="also keep the logs of passing trials")
    p.add_argument("--verbose", action="store_true", help="let Ray's own warnings and logs reach the terminal")
    add_output_options(p, default_out="tlbrace-out")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stress", description=__doc__)
    add_wild_options(p)
    p.add_argument("--trials", type=int_in(1, MAX_TRIALS), default=None, metavar="N",
                   help=f"stop after N trials (default {DEFAULT_TRIALS}; unbounded when --duration or --until is "
                        f"given without it; at most {MAX_TRIALS})")
    p.add_argument("--duration", default=None, metavar="TIME",
                   help="stop after TIME (30s, 10m, 8h, 1d; at most 366d) counted from the command's start; on "
                        "--resume, a new budget for this run (default: no time limit)")
    p.add_argument("--until", type=int_in(1, MAX_TRIALS), default=None, metavar="N",
                   help="stop after N violating trials, counted over the whole campaign, at most --trials (default: "
                        "no limit)")
    p.add_argument("--parallel", type=int_in(1, MAX_PARALLEL), default=1, metavar="P",
                   help=f"trials running at once, each on its own set of actors (default 1, at most {MAX_PARALLEL}; "
                        f"with at most {MAX_ACTORS} actors in all)")
    p.add_argument("--resume", action="store_true",
                   help="continue the campaign recorded in OUT/results.msgpack (same scenario, configuration, "
                        "--seed, --trials and --jitter): the trials recorded there are counted, not run again "
                        "(default: a new campaign)")
    p.add_argument("--align", nargs="?", const=MIN_SAMPLES, default=0, type=int_in(1, MAX_ALIGN_SAMPLES),
                   metavar="N", help="race-window aligner after LTP's fuzzy sync (actors/fuzzy_sync.py): measure each "
                   f"thread's op windows and lock requests over at least N trials (N defaults to {MIN_SAMPLES}; at "
                   "most 3N), then, in 3 trials of 4, delay one op of every other thread so that one of its lock "
                   "requests comes right after a reference thread's, and pause the reference thread in its window "
                   "(before the next shootdown it owes, after it releases that lock); in half the trials flush IPIs "
                   "arrive late (up to 16 measured steps); real scheduling still decides (default: off)")
    p.set_defaults(func=run)


def check_wild_args(args: argparse.Namespace) -> None:
    from cli.errors import UsageError

    for name, cap in (("trials", MAX_TRIALS), ("parallel", MAX_PARALLEL)):
        value = getattr(args, name, 1)
        if value is not None and not 1 <= value <= cap:
            raise UsageError(f"--{name}: expected an integer in 1..{cap}, got {value}")
    check_out_dir(args.out)
    check_ray_address(args)


def check_ray_address(args: argparse.Namespace) -> None:
    """--address, else the RAY_ADDRESS it defaults to, checked before Ray is asked; the message names which."""
    if args.address is not None:
        check_address(args.address, "--address")
    elif os.environ.get("RAY_ADDRESS"):
        check_address(os.environ["RAY_ADDRESS"], "RAY_ADDRESS")


_HOST_PORT = re.compile(r"^(ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$", re.ASCII)


def check_size(scenario: Any, cfg: Any, parallel: int, args: argparse.Namespace | None = None) -> None:
    """The actors a campaign would start, against the caps and, for the embedded cluster (``args`` names no
    cluster to join), against this machine's memory (before Ray starts)."""
    from actors.topology import Topology
    from cli.errors import UsageError

    cpus = Topology.of(scenario, cfg).ncpus
    if cpus > MAX_WILD_CPUS:
        raise UsageError(f"{scenario.name}: {cpus} CPUs (one per thread); a wild run starts at most "
                         f"{MAX_WILD_CPUS} CPU actors (use explore for larger scenarios)")
    if parallel * (cpus + 1) > MAX_ACTORS:
        raise UsageError(f"--parallel {parallel}: {parallel} sets of {cpus + 1} actors; at most {MAX_ACTORS} "
                         f"actors in all (use --parallel {max(1, MAX_ACTORS // (cpus + 1))} or fewer)")
    if args is not None and (args.address or os.environ.get("RAY_ADDRESS") or "local") == "local":
        check_memory(parallel, cpus + 1)
        check_open_files(parallel * (cpus + 1))
        check_processes(parallel * (cpus + 1))


def check_processes(actors: int) -> None:
    """EnvironmentFailure when the process limit (`ulimit -u`) cannot hold the cluster and its ``actors``."""
    from actors.ray_session import RayStartFailed, check_process_limit
    from cli.errors import EnvironmentFailure

    try:
        check_process_limit(actors)
    except RayStartFailed as exc:
        raise EnvironmentFailure(str(exc)) from None


# What the embedded cluster takes of this machine's memory: each actor is a Ray worker process of ~86 MB resident
# (Ray 2.60, measured during `stress --parallel 4`), and the cluster's own processes (GCS, raylet, agents: ~80 MB
# each) come with a 256 MiB object store.
RAY_ACTOR_BYTES: Final = 100 << 20
RAY_BASE_BYTES: Final = 768 << 20


# File descriptors the embedded cluster's raylet holds (measured, Ray 2.60: 97 with 16 actors and 4 idle workers):
# a base and a few per worker process; every other Ray process holds under 100. ray.init raises the soft limit to
# the hard one (at most 65536), so the hard limit is the one that counts.
RAY_BASE_FDS: Final = 64
RAY_FDS_PER_WORKER: Final = 4
RAY_IDLE_WORKERS: Final = 4


def check_open_files(actors: int) -> None:
    """EnvironmentFailure when the open-files limit cannot hold the raylet's connections to ``actors`` workers:
    under `ulimit -n 64`, `stress --parallel 2` lost its raylet mid-campaign, printed 47 lines of Ray's messages
    and ended as an internal error (ActorDiedError, exit 4); under `ulimit -n 40` ray.init waited 30 s for the
    GCS and blamed memory."""
    import resource

    from cli.errors import EnvironmentFailure

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = RAY_BASE_FDS + RAY_FDS_PER_WORKER * (actors + RAY_IDLE_WORKERS)
    if hard == resource.RLIM_INFINITY or hard >= max(need, 2 * RAY_BASE_FDS):
        return
    raise EnvironmentFailure(f"the limit of open files (`ulimit -n`) is {hard}: the embedded Ray cluster needs about "
                             f"{max(need, 2 * RAY_BASE_FDS)} for {actors} actors (its raylet holds a few for each "
                             f"worker process); raise it (`ulimit -n 4096`), or use a smaller --parallel")


def check_memory(parallel: int, per_set: int) -> None:
    """``parallel`` sets of ``per_set`` actors must fit in the memory this machine has available: `stress --parallel
    32` of a 7-thread scenario started 256 worker processes (about 25 GB) whatever the machine had, and left the
    kernel's OOM killer to end actors, Ray's own processes or others' programs. Refused, saying what fits (the
    cap of MAX_ACTORS still applies to a cluster joined with --address, whose memory is not this machine's)."""
    from cli.errors import UsageError
    from controlled.search_memory import available_bytes, human

    available = available_bytes()
    need = RAY_BASE_BYTES + parallel * per_set * RAY_ACTOR_BYTES
    if available <= 0 or need <= available:  # 0: this system cannot say
        return
    fits = (available - RAY_BASE_BYTES) // (per_set * RAY_ACTOR_BYTES)
    todo = (f"use --parallel {fits} or fewer" if fits >= 1 else "free some memory") + \
        ", or join a larger cluster with --address"
    raise UsageError(f"--parallel {parallel}: {parallel * per_set} actors, each a Ray worker process of about "
                     f"{RAY_ACTOR_BYTES >> 20} MB, with the embedded cluster's own processes need about "
                     f"{human(need)}; this machine has {human(available)} available: {todo}")


def check_address(address: str, where: str) -> None:
    """HOST:PORT, ray://HOST:PORT, auto or local; anything else is refused before Ray is asked (which could
    otherwise spend its whole join timeout on a typo)."""
    from cli.errors import UsageError

    if address in ("auto", "local"):
        return
    m = _HOST_PORT.match(address)
    if m is None or not 1 <= int(m.group(3)) <= 65535:
        raise UsageError(f"{where} {address!r}: expected HOST:PORT with a port in 1..65535 (e.g. 127.0.0.1:6379), "
                         "ray://HOST:PORT, auto or local")


def open_ray(args: argparse.Namespace, parallel: int) -> Any:
    """The Ray session for a wild command; a cluster that cannot be joined is bad input (one line, exit 2).

    The embedded cluster is loopback-only, so it runs without token authentication (unless RAY_AUTH_MODE says
    otherwise): Ray 2.60 would write a token file and warn about it. Ray's own warnings stay out of the
    terminal unless ``--verbose``; its errors still reach it."""
    from actors import ray_session  # Ray's environment, before `import ray`
    from cli.errors import UsageError

    address = args.address or os.environ.get("RAY_ADDRESS") or None
    if address in (None, "local"):
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if address not in (None, "local"):
        try:
            ray_session.probe(address)  # before `import ray`, which alone takes seconds
        except ray_session.RayUnavailable as exc:
            raise UsageError(str(exc)) from None
    if not getattr(args, "verbose", False):
        _quiet_ray()
    from actors.sigint import signals_held_through_ray_init, sigint_deferred
    from cli.errors import EnvironmentFailure

    session = None
    # What this driver starts (the embedded cluster) is stopped by PID if the driver dies without stopping it.
    watchdog = ray_watchdog.start() if address in (None, "local") else None
    try:
        # A Ctrl-C inside ray.init (in CoreWorker's constructor) left a half-built core worker that crashed the
        # interpreter at exit (SIGSEGV, exit 139, after "tlbrace: interrupted"), a SIGTERM exited 15 leaving
        # Ray's agents orphaned: both are held back until Ray is up, then the session is closed and the
        # interrupt goes on (exit 130).
        with signals_held_through_ray_init():
            session = ray_session.open_session(args.address, num_cpus=max(2, parallel),
                                               quiet=not getattr(args, "verbose", False))
            if watchdog is not None and session.owned:
                ray_watchdog.attach(session, watchdog)
            elif watchdog is not None:
                watchdog.stop()  # Ray was already up in this process: not ours to watch
        return session
    except BaseException as exc:
        if watchdog is not None and session is None:
            watchdog.stop(clean=False)  # a half-started cluster: what it started goes
        if isinstance(exc, ray_session.RayUnavailable):
            raise UsageError(str(exc)) from None
        if isinstance(exc, ray_session.RayStartFailed):
            raise EnvironmentFailure(str(exc)) from None
        if isinstance(exc, KeyboardInterrupt) and session is not None:
            with sigint_deferred():
                close_ray(session)
        raise


def close_ray(session: Any) -> None:
    """Shut down (or leave) what ``open_ray`` opened, then release its watchdog: told all is stopped, or, when
    the shutdown failed, left to stop what it saw start."""
    from actors import ray_session

    clean = False
    try:
        clean = ray_session.close_session(session)
    finally:
        ray_watchdog.detach(session, clean)


def _quiet_ray() -> None:
    """Only errors through Ray's own log handler (it does not propagate to the root logger)."""
    import ray  # noqa: F401 - importing it installs the handler on the "ray" logger

    for handler in logging.getLogger("ray").handlers:
        if not any(isinstance(f, _ErrorsOnly) for f in handler.filters):
            handler.addFilter(_ErrorsOnly())


class _ErrorsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def stop_limits(args: argparse.Namespace) -> tuple[int | None, float | None, int | None]:
    """(trials, duration in seconds, until) from the command line: bad values are usage errors."""
    from actors.stop_rule import DurationError, parse_duration
    from cli.errors import UsageError

    duration = None
    if args.duration is not None:
        try:
            duration = parse_duration(args.duration)
        except DurationError as exc:
            raise UsageError(f"--duration {exc}") from None
    if args.until is not None and args.until < 1:
        raise UsageError(f"--until: expected a positive integer, got {args.until}")
    trials = args.trials
    if trials is not None and args.until is not None and args.until > trials:
        # `--trials 1 --until 5` ran its one trial and stopped "after 1 trials" as if --until had not been given:
        # a campaign of N trials never holds more than N violating ones (on --resume too: both count the whole
        # campaign), so the limit asked for could never be the one that stops it.
        raise UsageError(f"--until {args.until}: more violating trials than --trials {trials} can hold, so it could "
                         f"never stop the campaign: expected --until at most {trials}, or no --trials (then trials "
                         f"run until {args.until} violate)")
    if trials is None and duration is None and args.until is None:
        trials = DEFAULT_TRIALS
    return trials, duration, args.until


def run(args: argparse.Namespace) -> int:
    command_start = time.monotonic()  # first_violation_s and --duration count from here: Ray's start included
    check_wild_args(args)
    trials, duration, until = stop_limits(args)
    scenario, cfg = load(args)
    check_size(scenario, cfg, args.parallel, args)
    from actors.campaign import CampaignOptions, prepare_results
    from logs.output_files import check_output_file
    from logs.results_file import FILE_NAME, ResultsError
    from cli.errors import EXIT_OK, EXIT_VIOLATION, EnvironmentFailure, UsageError, os_error_text

    opts = CampaignOptions(trials=trials, parallel=args.parallel, jitter_us=args.jitter, seed=args.seed,
                           out=args.out, keep_passing=args.keep_passing, hang_timeout=args.hang_timeout,
                           results=True, resume=args.resume, duration_s=duration, until=until,
                           clock_start=command_start, align=args.align, kernel=args.kernel)
    # A new campaign moves an old results file aside: a FIFO or a device there was moved too, and reported as
    # "the previous campaign's results were kept" (a directory is refused by prepare_results).
    results_path = os.path.join(args.out, FILE_NAME)
    if not os.path.isdir(results_path):
        check_output_file(results_path, "campaign's results file")
    try:  # the results file is judged before Ray starts, and nothing is written if it does not fit
        prepared = prepare_results(scenario, cfg, opts)
    except ResultsError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:  # --out cannot be made or written: read-only, /proc, no permission
        raise EnvironmentFailure(f"--out: {os_error_text(exc)}") from None
    _say_what_resumes(args.resume, prepared)
    try:
        session = open_ray(args, args.parallel)
    except BaseException:
        if prepared is not None:
            prepared.release()
        raise
    from actors.results_rescue import ResultsLost
    from actors.trial import ActorsUnavailable

    try:
        result = _with_progress(scenario, cfg, opts, prepared, quiet=args.json, command_start=command_start)
    except ResultsLost as exc:  # --out deleted under the campaign: its records are saved, the line says where
        raise EnvironmentFailure(str(exc)) from None
    except ActorsUnavailable as exc:  # the campaign's finally has closed the results file: resumable
        raise EnvironmentFailure(f"{exc}; the trials finished are recorded in {results_path}; run the same command "
                                 f"with --resume to go on") from None
    except OSError as exc:  # the results file or a log cannot be written (disk full): the file stays resumable
        where = "" if exc.filename else f"--out {args.out}: "
        raise EnvironmentFailure(where + os_error_text(exc, "run the same command with --resume to go on")) \
            from None
    finally:
        close_ray(session)
    summary = result.summary()
    summary["first_violation_s"] = _since(command_start, result.first_violation_at)
    summary["command_s"] = _since(command_start, time.monotonic())  # Ray's start and shutdown included
    if args.json:
        print_document(summary)
    else:
        _print_summary(result, summary)
    _warn_unwritten_logs(result.unwritten_logs)
    if result.moved_aside:
        print(f"tlbrace: the previous campaign's results were kept as {one_line(result.moved_aside)}", file=sys.stderr)
    if result.interrupted:
        of = f" of {trials}" if trials is not None else ""
        print(f"tlbrace: interrupted after {result.trials}{of} trials; the same command with "
              f"--resume continues it", file=sys.stderr)
        return 130
    return EXIT_VIOLATION if result.violations else EXIT_OK


def _say_what_resumes(resume: bool, prepared: Any) -> None:
    """Before Ray starts: a --resume with nothing to continue (a mistyped --out would silently start afresh), and
    the damaged bytes a resumed results file had."""
    if prepared is None:
        return
    if resume and prepared.resumed is None:
        print(f"tlbrace: note: --resume: there is no {one_line(prepared.path)} to continue; a new campaign starts",
              file=sys.stderr)
    if prepared.unshared:
        print(f"tlbrace: note: {one_line(prepared.path)} had {prepared.unshared} other name(s) (a hard link); this "
              f"campaign goes on in a copy of its own, and the other names keep the file as it was",
              file=sys.stderr)
    if prepared.resumed is not None and prepared.resumed.skipped:
        print(f"tlbrace: warning: {one_line(prepared.path)}: skipped damaged bytes {prepared.resumed.skipped_text()} "
              f"(every intact record is kept; the trials recorded there run again)", file=sys.stderr)


def _warn_unwritten_logs(lines: list[str]) -> None:
    """Trials whose log name was taken (a FIFO, a directory): counted and recorded; only their log is missing."""
    for line in lines[:10]:
        print(f"tlbrace: warning: {one_line(line)}", file=sys.stderr)
    if len(lines) > 10:
        print(f"tlbrace: warning: ... and {len(lines) - 10} more trials without a log", file=sys.stderr)


def _since(start: float, at: float | None) -> float | None:
    return None if at is None else round(at - start, 3)


def progress_counts(so_far: Any, command_start: float) -> str:
    """The progress line's running figures: violations, the hit rate with its Wilson 95% interval, the time
    to the first violation (from the command's start), hangs and crashes."""
    from analysis.analyze import wilson_interval

    n, k = so_far.trials, so_far.violations
    lo, hi = wilson_interval(k, n)
    rate = f"hit {k / n:.1%} [{lo:.1%}, {hi:.1%}]" if n else "hit -"
    first = _since(command_start, so_far.first_violation_at)
    s = so_far.by_status
    return (f"violations {k}  {rate}  first {'-' if first is None else f'{first:.1f}s'}  "
            f"hung {s['hung']}  crashed {s['crashed']}")


def _with_progress(scenario: Any, cfg: Any, opts: Any, prepared: Any, *, quiet: bool,
                   command_start: float) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from actors.campaign import run_campaign

    console = Console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), console=console,
                  disable=quiet or not console.is_terminal, transient=False) as progress:
        done = len(prepared.resumed.records) if prepared is not None and prepared.resumed is not None else 0
        limits = ([f"{opts.duration_s:g}s"] if opts.duration_s is not None else []) + (
            [f"until {opts.until}"] if opts.until is not None else [])
        task = progress.add_task(f"{scenario.name} {cfg.ordering}/{cfg.arch}"
                                 + (f" ({', '.join(limits)})" if limits else ""),
                                 total=opts.trials, counts="", completed=done)

        def on_trial(_trial: Any, so_far: Any) -> None:
            progress.update(task, completed=so_far.trials, counts=progress_counts(so_far, command_start))

        return run_campaign(scenario, cfg, opts, on_trial, prepared)


def _print_summary(result: Any, s: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from analysis.analyze import wilson_interval
    from analysis.printable import printable

    console = Console()
    console.print(f"[bold]tlbrace stress[/bold]: {s['scenario']} ({s['ordering']}, {s['arch']}"
                  + (f", mutant {s['mutant']}" if s["mutant"] else "") + f"), run {result.run}"
                  + (f", {s['resumed']} trials resumed from the results file" if s["resumed"] else "")
                  + (", interrupted" if s["interrupted"] else ""))
    table = Table()
    table.add_column("what")
    table.add_column("value", justify="right")
    for key in ("trials", "violations", "hung", "crashed", "diverged", "seconds", "trials_per_s", "steps_per_s",
                "stopped_by"):
        table.add_row(key, str(s[key]))
    for name, count in s["by_invariant"].items():
        table.add_row(f"  {name}", str(count))
    if s["trials"]:
        lo, hi = wilson_interval(s["violations"], s["trials"])
        table.add_row("hit rate (Wilson 95%)", f"{s['violations'] / s['trials']:.2%} [{lo:.2%}, {hi:.2%}]")
    if s["first_violation_s"] is not None:
        table.add_row("first violation after", f"{s['first_violation_s']:.1f} s")
    console.print(table)
    if s["aligner"]["on"]:
        console.print(f"aligner: {aligner_line(s['aligner'])}")
    for r in result.failures[:5]:
        if r.status in ("crashed", "hung", "diverged"):
            console.print(f"trial {r.trial}: {r.status}: {printable(r.detail)}")
    if s["results"]:
        console.print(f"results: {printable(s['results'])}")
    for path in s["failing_logs"][:10]:
        console.print(f"log: {printable(path)}")
    if len(s["failing_logs"]) > 10:
        console.print(f"... and {len(s['failing_logs']) - 10} more logs")
    sys.stdout.flush()


def aligner_line(a: dict[str, Any]) -> str:
    """The aligner's part of the summary in one line: its phase, samples, and the delays it chose."""
    d = a["delay_us"]
    delays = f"delays {d['min']}..{d['max']} µs (median {d['median']})" if d else "no delays"
    ops = ", ".join(f"{op} x{v['count']}" for op, v in a["delays_by_op"].items())
    plans = a.get("plans") or {}
    shares = (f"; {plans['unaligned']} unaligned, {plans['preempted']} paused in a window, {plans['ipi_latency']} "
              "with late IPIs") if plans else ""
    return (f"on, {a['phase']} after {a['sampled_trials']} sampled trials; {a['delayed_trials']} trials delayed, "
            f"{delays}" + (f" before {ops}" if ops else "") + shares)
