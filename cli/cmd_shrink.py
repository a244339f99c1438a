"""``tlbrace shrink FILE -o OUT``: reduce a failing schedule to a minimal one that still violates the same
invariant (delta debugging over its transitions; the result is never longer than the input)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from rich.console import Console

from analysis.printable import printable
from analysis.story import print_story
from cli.json_document import print_document
from controlled.machine import Machine, Transition
from controlled.replay import RunResult, run_schedule
from logs.one_line import one_line
from logs.schedule_file import ScheduleError, ScheduleFile, read_schedule, write_schedule


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("shrink", description=__doc__)
    p.add_argument("file", metavar="FILE", help="a .schedule file written by explore")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="where to write the shrunk schedule (required: no default)")
    p.add_argument("--json", action="store_true", help="print one machine-readable JSON object on stdout")
    p.set_defaults(func=run)


class ShrinkInterrupted(KeyboardInterrupt):
    """A Ctrl-C or SIGTERM during the shrinking, with the shortest schedule found so far (it still reproduces)."""

    def __init__(self, schedule: list[Transition], result: RunResult) -> None:
        super().__init__()
        self.schedule, self.result = schedule, result


def shrink(sf: ScheduleFile) -> tuple[list[Transition], RunResult]:
    """ddmin over the schedule: keep a candidate if replaying it (with deterministic completion) still violates
    one of the file's invariants within no more transitions than the best so far. Interrupted, it raises
    ShrinkInterrupted with the best so far."""
    target = set(sf.invariants)

    def test(candidate: list[Transition]) -> RunResult | None:
        rr = run_schedule(sf.scenario, sf.config, candidate, record=False)
        return rr if target & set(rr.invariants) else None

    best = test(sf.schedule)
    if best is None:
        raise ScheduleError("the schedule does not reproduce its invariant; nothing to shrink")
    current = list(best.executed)
    try:
        current = _ddmin(current, test)
    except KeyboardInterrupt:
        raise ShrinkInterrupted(current, run_schedule(sf.scenario, sf.config, current, complete=False)) from None
    final = run_schedule(sf.scenario, sf.config, current, complete=False)
    return current, final


def _ddmin(current: list[Transition], test: Any) -> list[Transition]:
    """The delta debugging itself; ``current`` (a list this updates in place as it shrinks, so that an interrupt
    keeps the best so far) is returned."""
    n = 2
    while len(current) >= 2:
        chunk = max(1, len(current) // n)
        shrunk = False
        for start in range(0, len(current), chunk):
            candidate = current[:start] + current[start + chunk:]
            rr = test(candidate)
            if rr is not None and len(rr.executed) < len(current):
                current[:], shrunk = list(rr.executed), True
                n = max(n - 1, 2)
                break
        if not shrunk:
            if chunk == 1:
                break
            n = min(len(current), n * 2)
    return current


def run(args: argparse.Namespace) -> int:
    from cli.errors import UsageError
    from cli.options import SCHEDULE_KIND, check_out_file, other_kind

    check_out_file(args.output, "-o", may_replace=SCHEDULE_KIND)  # before the work: a directory, or a missing one, is refused now
    replacing = _replaced(args.file, args.output)
    try:
        sf = read_schedule(args.file)
        original = run_schedule(sf.scenario, sf.config, sf.schedule, complete=False, record=False)
        schedule, result = shrink(sf)
    except ScheduleError as exc:
        raise UsageError(other_kind(args.file, SCHEDULE_KIND) or str(exc)) from None
    except ShrinkInterrupted as stop:
        # A Ctrl-C said "interrupted" and threw the shrinking done so far away (minutes on a long schedule): the
        # shortest schedule found, which still reproduces, is written, and shrinking it again goes on from there.
        schedule, result = stop.schedule, stop.result
        args.interrupted = True
    invariants = sorted(set(sf.invariants) & set(result.invariants)) or result.invariants
    write_schedule(args.output, ScheduleFile(sf.scenario, sf.config, schedule, invariants, sf.strategy, sf.seed))
    if replacing:
        print(f"tlbrace: note: -o {one_line(args.output)}: {replacing}", file=sys.stderr)
    if args.json:
        # print_document: while a --json command runs, sys.stdout is stderr (cli.json_document), so the document
        # json.dump wrote there went to stderr, and `tlbrace shrink ... --json | jq` read nothing.
        print_document({"input": args.file, "output": args.output, "before": len(original.executed),
                        "after": len(schedule), "invariants": invariants})
    else:
        console = Console(width=max(140, Console().width))
        print_story(sf.scenario, Machine(sf.scenario, sf.config).cpu_of, result.events, result.violations, console)
        console.print(f"shrunk {len(original.executed)} → {len(schedule)} transitions; written to "
                      f"{printable(args.output)}")
    if getattr(args, "interrupted", False):
        print(f"tlbrace: interrupted; the shortest schedule found so far ({len(schedule)} transitions) is in "
              f"{one_line(args.output)}: shrink it again to go on", file=sys.stderr)
        return 130
    return 1 if result.violations else 0


def _replaced(source: str, output: str) -> str | None:
    """What writing ``output`` replaces, for a note after the write (None: nothing). A non-empty file that holds
    no schedule is refused (UsageError): `shrink x.schedule -o notes.txt` replaced the notes without a word. A
    schedule, the input itself included (shrinking in place, as `sort -o f f` sorts in place), is replaced whole
    (written aside and renamed: an interrupted shrink leaves it as it was), and the note says so."""
    from cli.errors import UsageError
    from cli.options import SCHEDULE_KIND, tlbrace_data_kind

    try:
        st = os.stat(output)
    except (OSError, ValueError):
        return None  # a new file (check_out_file has refused what cannot be written)
    if tlbrace_data_kind(output) != SCHEDULE_KIND:
        if st.st_size == 0:
            return None
        raise UsageError(f"-o {output}: exists and holds {st.st_size:,} bytes that are not a schedule file; "
                         "writing there would destroy them: expected a new file name, or a schedule to replace")
    try:
        same = os.path.samefile(source, output)
    except (OSError, ValueError):
        same = False
    return ("the input schedule was replaced by the shrunk one (shrunk in place)" if same else
            "an existing schedule file was replaced by the shrunk one")
