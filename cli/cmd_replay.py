"""``tlbrace replay FILE``: reproduce a schedule file, or a failing trial of a wild log, deterministically."""

from __future__ import annotations

import argparse
from typing import Any

from analysis.printable import printable
from analysis.story import print_story
from cli.json_document import print_document
from cli.options import add_view_options, console_for, diagram_width, integer
from controlled.machine import Machine
from controlled.replay import run_schedule
from logs.schedule_file import SCHEMA as SCHEDULE_SCHEMA


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", description=__doc__)
    p.add_argument("file", metavar="FILE", help="a .schedule file (explore/shrink) or a msgpack/jsonl log")
    p.add_argument("--trial", type=integer, default=None, help="which trial of a log (default: every failing one)")
    p.add_argument("--json", action="store_true", help="print one machine-readable JSON object on stdout")
    add_view_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = console_for(args, stderr=args.json)
    kind = _kind_of(args.file)
    results = _replay_schedule(args, console) if kind == "schedule" else _replay_log(args, console)
    reproduced = all(r["reproduced"] is not False for r in results)  # None: the log lost what was expected
    if args.json:
        print_document({"file": args.file, "kind": kind, "replays": results, "reproduced": reproduced})
    else:
        for r in results:
            console.print(printable(_verdict_line(r)))  # its invariants and divergence come from the file
        if not results:
            console.print("nothing to replay (no failing trial in the log; use --trial ID)")
    return 1 if any(r["found"] for r in results) else 0


def _verdict_line(r: dict) -> str:
    where = f"trial {r['trial']}: " if r["trial"] is not None else ""
    found = r["found"] or "no violation"
    divergence = f" ({r['divergence']})" if r["divergence"] else ""
    if r["expected"] is None:
        return (f"{where}the log lost this trial's verdict (no trial_end record: the file was cut short or "
                f"damaged), replay found {found}{divergence}")
    return (f"{where}expected {r['expected'] or 'no violation'}, replay found {found}: "
            f"{'reproduced' if r['reproduced'] else 'NOT reproduced'}{divergence}")


def _show(args: argparse.Namespace, console: Any, scenario: Any, cfg: Any, rr: Any, title: str) -> None:
    """The replay as a diagram or a story, unless --json."""
    if args.json:
        return
    cpu_of = Machine(scenario, cfg).cpu_of
    if args.format == "diagram":
        from analysis.diagram import render_diagram
        print(render_diagram(scenario, cpu_of, rr.events, rr.violations, diagram_width(args), title=title))
    else:
        print_story(scenario, cpu_of, rr.events, rr.violations, console)


def _replay_schedule(args: argparse.Namespace, console: Any) -> list[dict]:
    from cli.errors import UsageError
    from logs.schedule_file import ScheduleError, read_schedule

    try:
        sf = read_schedule(args.file)
    except ScheduleError as exc:
        raise UsageError(str(exc)) from None
    if args.trial is not None:  # a schedule is one run: ignoring --trial would replay something not asked for
        raise UsageError(f"--trial {args.trial}: {args.file} is a schedule file (one run); --trial picks a trial of "
                         "a log")
    rr = run_schedule(sf.scenario, sf.config, sf.schedule, complete=False)
    _show(args, console, sf.scenario, sf.config, rr, args.file)
    return [_report(None, sf.invariants, rr)]


def _replay_log(args: argparse.Namespace, console: Any) -> list[dict]:
    """Each failing trial of the log (or the one --trial names), replayed expecting each logged result."""
    from analysis.analyze import AnalysisError, rebuilt_from_header
    from cli.errors import UsageError
    from logs.eventlog import LogError, iter_trials, read_log, stray_records

    try:
        contents = read_log(args.file, pipes=True)
        scenario, cfg = rebuilt_from_header(args.file, contents.header)
    except (LogError, AnalysisError, OSError) as exc:
        raise UsageError(str(exc)) from None
    if contents.damage:
        console.print(f"[yellow]warning: {printable(args.file)}: {printable(contents.damage)}; replaying up to "
                      "there[/]")
    results = []
    trials = list(iter_trials(contents))
    strays = stray_records(contents).message()
    if strays and not trials:  # "nothing to replay", exit 0, of a log whose every record was skipped
        raise UsageError(f"{args.file}: {strays}; no trial to replay")
    if strays:
        console.print(f"[yellow]warning: {printable(args.file)}: {printable(strays)}[/]")
    _check_trial_asked(args, [trial for trial, _, _ in trials])
    for trial, events, end in trials:
        if args.trial is not None and trial != args.trial:
            continue
        violations = (end or {}).get("violations", [])
        if not isinstance(violations, list) or not all(isinstance(v, dict) and isinstance(v.get("invariant"), str)
                                                       for v in violations):
            # An invariant that was a list made the comparison with the replay's a TypeError (exit 4).
            raise UsageError(f"{args.file}: trial {trial}: malformed trial_end record (violations: expected a "
                             f"list of maps each naming its invariant as a string, got {_short(violations)})")
        # A trial whose trial_end was lost (a log cut short by a kill or a full disk) is replayed as far as its
        # events go, with no verdict to compare against: skipping it said "nothing to replay", exit 0.
        logged = [v.get("invariant") for v in violations] if end is not None else None
        if args.trial is None and logged == []:
            continue
        rr = _replay_trial(f"{args.file}: trial {trial}", scenario, cfg, events)
        results.append(_report(trial, logged, rr))
        _show(args, console, scenario, cfg, rr, f"{args.file} trial {trial}")
    return results


def _replay_trial(where: str, scenario: Any, cfg: Any, events: list[dict]) -> Any:
    """One trial's events replayed, expecting each logged result; a record the replay cannot use is a UsageError
    naming its field (a thread -1 ran the last thread, and was reported only as a divergence)."""
    from controlled.linearize import order_key, schedule_from_records
    from cli.errors import UsageError
    from kernel_model import boot
    from logs.event_fields import first_field_problem

    try:
        steps = [r for r in sorted(events, key=order_key) if r.get("kind") == "step"]
        rr = run_schedule(scenario, cfg, schedule_from_records(events), complete=False,
                          expected=[r.get("result") for r in steps])
        failed = None if rr.divergence is None else ""
    except (TypeError, KeyError, ValueError, AttributeError, IndexError, RecursionError) as exc:
        rr, failed = None, f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
    if failed is not None:
        problem = first_field_problem(events, len(scenario.threads), boot.ncpus(scenario, cfg))
        if problem is not None or failed:
            raise UsageError(f"{where}: malformed event record"
                             + (f": {problem}" if problem is not None else f"s {failed}"))
    return rr


def _short(value: Any) -> str:
    """A value of a damaged record for a message: its repr, cut; a value too deep to repr is said to be so."""
    try:
        return f"{value!r:.60}"
    except RecursionError:
        return "a value nested too deeply to show"


def _check_trial_asked(args: argparse.Namespace, ids: list[int]) -> None:
    """--trial names a trial the log holds (else it would replay nothing and say there was nothing to replay)."""
    from cli.errors import UsageError

    if args.trial is None or args.trial in ids:
        return
    some = ", ".join(map(str, ids[:10])) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
    raise UsageError(f"--trial {args.trial}: {args.file} holds no trial {args.trial} (its trials: "
                     f"{some or 'none'})")


def _report(trial: int | None, expected: list[str] | None, rr) -> dict:
    """One replay's outcome; ``expected`` None: the log lost the trial's verdict (``reproduced`` is None too)."""
    found = rr.invariants
    if expected is None:
        reproduced = None
    else:
        reproduced = bool(set(expected) & set(found)) if expected else not found
    return {"trial": trial, "expected": None if expected is None else sorted(set(expected)), "found": found,
            "steps": len(rr.executed), "reproduced": reproduced, "divergence": rr.divergence}


def _kind_of(path: str) -> str:
    from logs.results_file import MAGIC as RESULTS_MAGIC
    from cli.errors import UsageError
    from scenarios.input_files import MAX_LOG_BYTES, InputFileError, read_head

    try:
        head = read_head(path, "file to replay", MAX_LOG_BYTES)
    except InputFileError as exc:
        raise UsageError(str(exc)) from None
    if head.startswith(RESULTS_MAGIC) or b"tlbrace-results" in head:
        raise UsageError(f"{path}: a stress campaign's results file, not a log or schedule: replay the failing "
                         f"trials' logs it names (tlbrace replay OUT/<scenario>-<run>-trialNNNNN.msgpack)")
    return "schedule" if SCHEDULE_SCHEMA.encode() in head else "log"
