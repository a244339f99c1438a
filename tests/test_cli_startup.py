"""What `tlbrace` imports before its command runs: only the chosen subcommand's module (cli/commands.py). Building
the parser imported every subcommand, and with them rich, structlog and the search: `tlbrace --help` took 15
times a bare interpreter's start (bench/import_time.py measures it; no test here measures time)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.commands import SUMMARIES
from cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
PROBE = """
import contextlib, io, json, sys
from cli.main import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("cli", "rich", "structlog", "ray",
                                                                       "controlled", "analysis", "msgpack"))))
"""


def _imported(*argv: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_the_top_level_help_imports_no_subcommand():
    mods = _imported("--help")
    assert not {m for m in mods if m.startswith("cli.cmd_")}, mods
    assert not {m for m in mods if m.split(".")[0] in ("rich", "structlog", "ray", "controlled", "analysis")}, mods


@pytest.mark.parametrize("argv", [["mutants"], ["scenarios", "--json"]])
def test_a_listing_command_imports_only_its_own_module(argv):
    mods = _imported(*argv)
    assert {m for m in mods if m.startswith("cli.cmd_")} == {f"cli.cmd_{argv[0]}"}, mods
    assert not {m for m in mods if m.split(".")[0] in ("structlog", "ray", "controlled")}, mods


def test_the_parser_names_every_subcommand_with_its_help_once_and_builds_each_on_demand():
    parser = build_parser()
    before = parser.format_help()
    assert all(summary in " ".join(before.split()) for summary in SUMMARIES.values())
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in SUMMARIES:
        assert action.choices[name].prog == f"tlbrace {name}"  # built now
    assert parser.format_help() == before  # listed once each, as before they were built
    args = parser.parse_args(["explore", "ladder", "--budget", "7"])
    assert args.command == "explore" and args.budget == 7
