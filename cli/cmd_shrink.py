"""``tlbrace shrink FILE -o OUT``: reduce a failing schedule to a minimal one that still violates the same
invariant (delta debugging over its transitions; the result is never longer than the input)."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console

from analysis.printable import printable
from analysis.story import print_story
from controlled.machine import Machine, Transition
from controlled.replay import RunResult, run_schedule
from logs.schedule_file import ScheduleError, ScheduleFile, read_schedule, write_schedule


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("shrink", description=__doc__)
    p.add_argument("file", metavar="FILE", help="a .schedule file written by explore")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="where to write the shrunk schedule (required: no default)")
    p.add_argument("--json", action="store_true", help="print one machine-readable JSON object on stdout")
    p.set_defaults(func=run)


def shrink(sf: ScheduleFile) -> tuple[list[Transition], RunResult]:
    """ddmin over the schedule: keep a candidate if replaying it (with deterministic completion) still violates
    one of the file's invariants within no more transitions than the best so far."""
    target = set(sf.invariants)

    def test(candidate: list[Transition]) -> RunResult | None:
        rr = run_schedule(sf.scenario, sf.config, candidate, record=False)
        return rr if target & set(rr.invariants) else None

    best = test(sf.schedule)
    if best is None:
        raise ScheduleError("the schedule does not reproduce its invariant; nothing to shrink")
    current = list(best.executed)
    n = 2
    while len(current) >= 2:
        chunk = max(1, len(current) // n)
        shrunk = False
        for start in range(0, len(current), chunk):
            candidate = current[:start] + current[start + chunk:]
            rr = test(candidate)
            if rr is not None and len(rr.executed) < len(current):
                current, best, shrunk = list(rr.executed), rr, True
                n = max(n - 1, 2)
                break
        if not shrunk:
            if chunk == 1:
                break
            n = min(len(current), n * 2)
    final = run_schedule(sf.scenario, sf.config, current, complete=False)
    return current, final


def run(args: argparse.Namespace) -> int:
    from cli.errors import UsageError
    from cli.options import SCHEDULE_KIND, check_out_file, other_kind

    check_out_file(args.output, "-o", may_replace=SCHEDULE_KIND)  # before the work: a directory, or a missing one, is refused now
    try:
        sf = read_schedule(args.file)
        original = run_schedule(sf.scenario, sf.config, sf.schedule, complete=False, record=False)
        schedule, result = shrink(sf)
    except ScheduleError as exc:
        raise UsageError(other_kind(args.file, SCHEDULE_KIND) or str(exc)) from None
    invariants = sorted(set(sf.invariants) & set(result.invariants)) or result.invariants
    write_schedule(args.output, ScheduleFile(sf.scenario, sf.config, schedule, invariants, sf.strategy, sf.seed))
    if args.json:
        json.dump({"input": args.file, "output": args.output, "before": len(original.executed),
                   "after": len(schedule), "invariants": invariants}, sys.stdout)
        sys.stdout.write("\n")
    else:
        console = Console(width=max(140, Console().width))
        print_story(sf.scenario, Machine(sf.scenario, sf.config).cpu_of, result.events, result.violations, console)
        console.print(f"shrunk {len(original.executed)} → {len(schedule)} transitions; written to "
                      f"{printable(args.output)}")
    return 1 if result.violations else 0
