"""``tlbrace report DIR``: one self-contained HTML page of the stress campaigns (and scale runs) under DIR: the
summary, hit rate with its interval, counts by invariant, the first failing trial's witness, race diagram and
timeline, race-window coverage, scaling plots, links to the logs (analysis/report.py)."""

from __future__ import annotations

import argparse
import os
import sys

from logs.one_line import one_line
from cli.json_document import print_document


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", description=__doc__)
    p.add_argument("dir", metavar="DIR", help="a stress --out directory (or one holding several), or a scale run")
    p.add_argument("-o", "--output", default=None, metavar="FILE.html",
                   help="where the page goes, a name ending in .html (default: DIR/report.html)")
    p.add_argument("--json", action="store_true", help="print what the page holds as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from logs.results_file import ResultsError
    from cli.errors import EXIT_BAD_INPUT, EXIT_OK, UsageError
    from cli.options import check_out_file
    from analysis.report import write_report

    if args.dir == "-":  # standard input elsewhere (scenarios.input_files.STDIN): no directory comes through it
        raise UsageError("-: report reads a directory of campaigns, which standard input cannot be: expected a "
                         "tlbrace stress --out or scale --out directory (./- for one named '-')")
    if not os.path.isdir(args.dir):
        raise UsageError(f"{args.dir}: not a directory (expected a tlbrace stress --out or scale --out directory)")
    out = args.output if args.output is not None else os.path.join(args.dir, "report.html")
    # A directory, a device or a FIFO there is refused before any work; so is a name without .html: `-o
    # results.csv` replaced the scale run the page was made of, `-o my.toml` a scenario, with HTML.
    check_out_file(out, "-o", (".html", ".htm"))
    try:
        made = write_report(args.dir, out)
    except ResultsError as exc:
        raise UsageError(str(exc)) from None
    for text in made["unreadable"]:
        print(f"tlbrace: error: {one_line(text)} (left out of the report; the other runs are in it)", file=sys.stderr)
    for c in made["campaigns"]:
        if c["damage"]:
            print(f"tlbrace: warning: {one_line(os.path.join(c['dir'], 'results.msgpack'))}: {one_line(c['damage'])}",
                  file=sys.stderr)
    if args.json:
        print_document(made)
    else:
        print(f"report: {os.path.abspath(out)}")
        if made["first_failure"]:
            print(f"first failing trial: {made['first_failure']}")
    return EXIT_BAD_INPUT if made["unreadable"] else EXIT_OK
