"""``tlbrace analyze LOG...``: judge every logged trial by replay, explain each violation, draw it.

Human output: per log, the violations with their minimal witness (litmus-style, one column per thread), the
divergences and disagreements, then a summary over all trials (hit rate with a Wilson 95% interval). ``--json``
prints the same as one JSON document instead. Exit status: 0 clean; 1 a violation, a replay that diverged from
the log, or a log whose own verdict the replay contradicts; 2 bad input (not a log, unknown version, a scenario
that cannot be rebuilt).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from analysis import coverage as cov
from analysis.analyze import AnalysisError, LogAnalysis, TrialReport, analyze_log, summarize
from analysis.printable import printable
from analysis.witness import Witness, witness_table, witnesses_for
from cli.json_document import print_document
from cli.options import EVENT_LOG_KIND, add_view_options, console_for, diagram_width, integer, other_kind
from logs.eventlog import LogError
from logs.one_line import one_line
from scenarios.input_files import STDIN

EXIT_OK, EXIT_VIOLATION, EXIT_BAD_INPUT = 0, 1, 2
MAX_WITNESSES = 5  # past this many violating trials, show the first of each invariant (--trial shows any)
MAX_PERFETTO_TRIALS = 20
TIMELINE_SUFFIXES = (".png", ".svg")
MAX_JOBS = 256


def _is_results_file(path: str) -> bool:
    """A stress campaign's results file (framed, or an older plain one), told by its first bytes (a FIFO is never
    opened here: the log reader refuses it)."""
    from cli.options import RESULTS_KIND, tlbrace_data_kind

    return tlbrace_data_kind(path) == RESULTS_KIND


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("analyze", description=__doc__.splitlines()[0])
    p.add_argument("logs", nargs="+", metavar="LOG", help="event logs (msgpack or JSON Lines)")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout instead of tables")
    p.add_argument("--timeline", metavar="FILE", help="draw one trial (--trial, else the first violating) as "
                                                      "PNG or SVG (default: no picture)")
    p.add_argument("--perfetto", metavar="FILE.json", help="Chrome/Perfetto trace-event JSON of the violating trials "
                                                      "(or --trial) (default: none)")
    p.add_argument("--trial", type=integer, metavar="ID", help="only this trial (of each log) (default: every trial)")
    p.add_argument("--coverage", action="store_true", help="which orders of the race-critical events occurred")
    p.add_argument("--jobs", type=integer, default=None, metavar="N",
                   help="analyse in N processes (default: the CPU count; 1 = in this process)")
    add_view_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cli.errors import UsageError

    err = Console(stderr=True)
    only = {args.trial} if args.trial is not None else None
    try:  # output paths before any work
        _check_outputs(args)
    except UsageError as exc:
        print(f"tlbrace: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    args.unreadable = 0
    args.interrupted = None
    analyses = _analyze_logs(args, only, err)
    if analyses is None:
        if args.interrupted is not None:
            raise KeyboardInterrupt  # in the first log: nothing judged to show
        return EXIT_BAD_INPUT
    reports = [r for a in analyses for r in a.trials]
    if only is not None and not reports:
        print(f"tlbrace: error: no trial {args.trial} in {one_line(', '.join(args.logs))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _show(args, analyses, reports, only, err)
    if args.interrupted is not None:
        done, total = args.interrupted
        print(f"tlbrace: interrupted after {done} of {total} logs; the verdicts above are theirs", file=sys.stderr)
        return 130
    if args.unreadable:
        return EXIT_BAD_INPUT
    bad = any(r.violating or r.divergence or r.disagreement for r in reports)
    return EXIT_VIOLATION if bad else EXIT_OK


def _show(args: argparse.Namespace, analyses: list[LogAnalysis], reports: list[TrialReport], only: set[int] | None,
          err: Console) -> None:
    """The pictures asked for, then the verdicts (tables, diagrams or JSON)."""
    witnesses = {id(r): _witnesses(a, r) for a in analyses for r in _explained(a, reports, only)}
    coverage = cov.aggregate(r.coverage for r in reports) if args.coverage else None
    try:
        if args.timeline:
            _timeline(args.timeline, analyses, witnesses, err)
        if args.perfetto:
            _perfetto(args.perfetto, analyses, witnesses, only, err)
    except OSError as exc:
        # A full disk (or an output directory gone) ended the command before the verdicts, after all the
        # judging (minutes for a large log): they are printed first, then the error (exit 3).
        _output(args, analyses, reports, witnesses, coverage)
        raise exc from None
    _output(args, analyses, reports, witnesses, coverage)


def _check_outputs(args: argparse.Namespace) -> None:
    """--timeline, --perfetto and --jobs, checked before any work; raises UsageError."""
    from cli.errors import UsageError
    from cli.options import check_out_file

    if args.timeline is not None:  # '' is refused, not taken for "no picture"
        check_out_file(args.timeline, "--timeline", TIMELINE_SUFFIXES)
    if args.perfetto is not None:
        check_out_file(args.perfetto, "--perfetto", (".json",))  # not over a scenario or a CSV of the user's
    if args.jobs is not None and not 1 <= args.jobs <= MAX_JOBS:
        raise UsageError(f"--jobs {args.jobs}: expected an integer in 1..{MAX_JOBS}")


def _output(args: argparse.Namespace, analyses: list[LogAnalysis], reports: list[TrialReport],
            witnesses: dict[int, list[Witness]], coverage: cov.Coverage | None) -> None:
    """JSON, or the tables (and diagrams with --format diagram) on the terminal."""
    if args.json:
        print_document(_as_json(analyses, witnesses, coverage), indent=1)
        return
    diagram = getattr(args, "format", "table") == "diagram"
    if diagram:
        _print_diagrams(analyses, witnesses, diagram_width(args))
    _print(console_for(args), analyses, reports, witnesses, coverage, tables=not diagram)


def _analyze_logs(args: argparse.Namespace, only: set[int] | None, err: Console) -> list[LogAnalysis] | None:
    """Every readable log judged, a warning for each damaged one and an error for each unreadable one; None (after
    the error messages) when no log could be read."""
    analyses: list[LogAnalysis] = []
    logs = [path for path in args.logs if not _is_results_file(path)]
    for path in args.logs:
        if path not in logs:  # `analyze OUT/*.msgpack` matches the campaign's results file too: not a log
            err.print(f"tlbrace: note: {printable(path)} is a stress campaign's results file, not an event log: skipped",
                      highlight=False)
    logs = _distinct(logs)
    if not logs:
        print("tlbrace: error: no event log given (only results files; their failing trials' logs sit beside "
              "them)", file=sys.stderr)
        return None
    for done, path in enumerate(logs):
        try:
            analysis = analyze_log(path, pipes=True, only_trials=only, keep_events=only is not None,
                                   observe=cov.observe if args.coverage else None, jobs=args.jobs)
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM in `analyze OUT/*.msgpack`: every log judged so far was lost with "interrupted".
            # They are shown (witnesses and pictures as usual), then the line saying how many, exit 130.
            args.interrupted = (done, len(logs))
            break
        except (LogError, AnalysisError) as exc:
            # One unreadable log of a glob (an empty file a killed driver left) no longer hides the others: each
            # is named, the rest analysed, and the exit status is still 2 (args.unreadable).
            print(f"tlbrace: error: {one_line(other_kind(path, EVENT_LOG_KIND) or str(exc))}" + ("; analysing the other logs" if len(logs) > 1 else ""),
                  file=sys.stderr)
            args.unreadable += 1
            continue
        if analysis.damage:
            err.print(f"[yellow]tlbrace: warning: {printable(path)}: {printable(analysis.damage)}; analysed the records before it[/]",
                      highlight=False)
        if analysis.strays:
            err.print(f"[yellow]tlbrace: warning: {printable(path)}: {printable(analysis.strays)}[/]", highlight=False)
            if not analysis.trials:  # nothing judged: no clean verdict (exit 0) on a log no trial could be read of
                args.unreadable += 1
        analyses.append(analysis)
    return analyses or None


def _distinct(paths: list[str]) -> list[str]:
    """Each file once: a log named twice (`analyze OUT/*.msgpack OUT/x.msgpack`, ./x and x, a symbolic link to
    it) had its trials counted twice, in the totals and the hit rate's interval alike."""
    seen: dict[tuple[int, int], str] = {}
    distinct = []
    for path in paths:
        try:
            # `analyze - -`: standard input named twice (by identity, "-" was always its own first: CPython keeps
            # one object for each one-character string, so it was judged twice)
            st = os.fstat(0) if path == STDIN else os.stat(path)
        except (OSError, ValueError):
            distinct.append(path)  # the reader says what is wrong with it
            continue
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen[key] = path
            distinct.append(path)
        else:
            print(f"tlbrace: note: {one_line(path)} is the same file as {one_line(seen[key])}: analysed once",
                  file=sys.stderr)
    return distinct


# --- which trials get a witness -------------------------------------------------------------------------------------
def _explained(a: LogAnalysis, all_reports: list[TrialReport], only: set[int] | None) -> list[TrialReport]:
    violating = [r for r in a.trials if r.violating]
    if only is not None or sum(r.violating for r in all_reports) <= MAX_WITNESSES:
        return violating
    firsts: dict[str, TrialReport] = {}
    for r in violating:
        for inv in r.invariants:
            firsts.setdefault(inv, r)
    return list({id(r): r for r in firsts.values()}.values())


def _witnesses(a: LogAnalysis, r: TrialReport) -> list[Witness]:
    if r.divergence and r.divergence.startswith(("replay crashed", "malformed")):
        return []
    return witnesses_for(r.violations, a.scenario, a.cfg, r.executed)


def _chosen(analyses: list[LogAnalysis]) -> tuple[LogAnalysis, TrialReport] | None:
    """The trial a single picture shows: the first violating one, else the first."""
    pairs = [(a, r) for a in analyses for r in a.trials]
    return next(((a, r) for a, r in pairs if r.violating), pairs[0] if pairs else None)


# --- pictures and traces ---------------------------------------------------------------------------------------------
def _timeline(path: str, analyses: list[LogAnalysis], witnesses: dict[int, list[Witness]], err: Console) -> None:
    from analysis.timeline import draw_timeline  # matplotlib is slow to import: only when asked

    chosen = _chosen(analyses)
    if chosen is None:
        err.print("tlbrace: warning: no trial to draw")
        return
    a, r = chosen
    events = r.replay_events or _replay_events(a, r)
    ws = witnesses.get(id(r)) or []
    verdict = ", ".join(r.invariants) or "no violation"
    draw_timeline(path, a.scenario, a.cfg, events, r.executed, r.violations, ws[0] if ws else None,
                  f"{os.path.basename(a.path)} trial {r.trial}: {a.header.get('scenario')} — {verdict}")


def _replay_events(a: LogAnalysis, r: TrialReport) -> list:
    from analysis.analyze import rerun

    return rerun(a.scenario, a.cfg, r.executed).events


def _perfetto(path: str, analyses: list[LogAnalysis], witnesses: dict[int, list[Witness]],
              only: set[int] | None, err: Console) -> None:
    from analysis.perfetto import TraceTrial, write_trace

    picked = [(a, r) for a in analyses for r in a.trials if only is not None or r.violating][:MAX_PERFETTO_TRIALS]
    if not picked:
        chosen = _chosen(analyses)
        picked = [chosen] if chosen else []
    trials = []
    for a, r in picked:
        seqs = frozenset(row.seq for w in witnesses.get(id(r), []) for row in w.rows if row.seq is not None)
        m_threads = tuple(t.name for t in a.scenario.threads)
        events = r.replay_events or _replay_events(a, r)
        cpu_of = tuple(next((e.cpu for e in events if e.tid == t and e.kind != "ipi"), t)
                       for t in range(len(m_threads)))
        trials.append(TraceTrial(f"{os.path.basename(a.path)} trial {r.trial}", m_threads, cpu_of, events,
                                 r.violations, seqs))
    n = write_trace(path, trials)
    err.print(f"wrote {n} trace events for {len(trials)} trial(s) to {printable(path)}", highlight=False)


# --- output ----------------------------------------------------------------------------------------------------------
def _as_json(analyses: list[LogAnalysis], witnesses: dict[int, list[Witness]],
             coverage: cov.Coverage | None) -> dict[str, Any]:
    s = summarize(r for a in analyses for r in a.trials)
    out: dict[str, Any] = {
        "logs": [{"path": a.path, "run": a.header.get("run"), "runtime": a.header.get("runtime"),
                  "scenario": a.header.get("scenario"), "damage": a.damage, "strays": a.strays,
                  "trials": [_trial_json(r, witnesses.get(id(r))) for r in a.trials]} for a in analyses],
        "summary": {"trials": s.trials, "violating": s.violating, "by_invariant": s.by_invariant,
                    "divergences": s.divergences, "disagreements": s.disagreements, "hit_rate": s.hit_rate,
                    "wilson95": list(s.wilson95)},
    }
    if coverage is not None:
        out["coverage"] = coverage.as_dict()
    return out


def _trial_json(r: TrialReport, ws: list[Witness] | None) -> dict[str, Any]:
    return {"trial": r.trial, "verdict": "violation" if r.violating else "ok", "events": r.events,
            "violations": [{"invariant": v.invariant, "detail": v.detail, "pfn": v.pfn} for v in r.violations],
            "divergence": r.divergence, "logged": {"status": r.logged_status,
                                                   "invariants": list(r.logged_invariants)},
            "disagreement": r.disagreement,
            "witnesses": [w.as_dict() for w in ws] if ws is not None else None}


def _print_diagrams(analyses: list[LogAnalysis], witnesses: dict[int, list[Witness]], width: int) -> None:
    """The race diagram of each explained violating trial (the ones that get a witness table)."""
    from controlled.machine import Machine
    from analysis.diagram import render_diagram

    for a in analyses:
        for r in a.trials:
            if id(r) not in witnesses:
                continue
            events = r.replay_events or _replay_events(a, r)
            print(render_diagram(a.scenario, Machine(a.scenario, a.cfg).cpu_of, events, r.violations, width,
                                 title=f"{a.path} trial {r.trial}: {', '.join(r.invariants)}"))


def _print(con: Console, analyses: list[LogAnalysis], reports: list[TrialReport],
           witnesses: dict[int, list[Witness]], coverage: cov.Coverage | None, tables: bool = True) -> None:
    for a in analyses:
        h = a.header
        con.print(f"[bold]{printable(a.path)}[/]: scenario {printable(h.get('scenario'))}, "
                  f"{printable(h.get('runtime'))} run {printable(h.get('run'))}, "
                  f"{len(a.trials)} trial(s)", highlight=False)
        for r in a.trials:
            if r.violating:
                con.print(f"  trial {r.trial}: [bold red]VIOLATION[/] {', '.join(r.invariants)}", highlight=False)
                for v in r.violations:
                    con.print(f"    {v.invariant}: {printable(v.detail)}", highlight=False)
            if r.divergence:
                con.print(f"  trial {r.trial}: [yellow]divergence[/]: {printable(r.divergence)}", highlight=False)
            if r.disagreement:
                con.print(f"  trial {r.trial}: [yellow]disagreement[/]: {printable(r.disagreement)}", highlight=False)
            if r.logged_status is None and r.events:
                con.print(f"  trial {r.trial}: no trial_end record (the log ends inside it)", highlight=False)
            for w in witnesses.get(id(r), []) if tables else []:
                where = "" if w.pfn is None else f" on pfn {w.pfn}"  # stale_tlb_access is about an address, not a page
                con.print(witness_table(w, f"trial {r.trial}: {w.invariant}{where} — minimal witness"))
        shown = sum(1 for r in a.trials if id(r) in witnesses)
        hidden = sum(1 for r in a.trials if r.violating) - shown
        if hidden > 0:
            con.print(f"  ({hidden} more violating trial(s) not explained here: use --trial ID)", highlight=False)
    con.print(_summary_table(reports))
    if coverage is not None:
        con.print(cov.coverage_table(coverage))
        if coverage.never:
            con.print("never observed: " + "; ".join(coverage.never), highlight=False)


def _summary_table(reports: list[TrialReport]) -> Table:
    s = summarize(reports)
    t = Table(title="Summary", title_justify="left", show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("trials", str(s.trials))
    t.add_row("violating trials", str(s.violating))
    for inv, n in s.by_invariant.items():
        t.add_row(f"  {inv}", str(n))
    lo, hi = s.wilson95
    t.add_row("hit rate (Wilson 95%)", f"{s.hit_rate:.2%} [{lo:.2%}, {hi:.2%}]")
    t.add_row("replay divergences", str(s.divergences))
    t.add_row("log/replay disagreements", str(s.disagreements))
    return t
