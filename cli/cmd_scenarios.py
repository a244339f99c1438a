"""``tlbrace scenarios``: list the library scenarios, their one-line descriptions and default params."""

from __future__ import annotations

import argparse

from cli.json_document import print_document
from scenarios.loader import list_scenarios


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("scenarios",
                            description="List the library scenarios with their default params (override them "
                                        "with --param NAME=VALUE in the other subcommands).")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of {name, description, params} on stdout")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    scenarios = list_scenarios()
    if args.json:
        print_document([{"name": n, "description": d, "params": p} for n, d, p in scenarios], indent=2)
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="tlbrace library scenarios")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("description")
    table.add_column("params", no_wrap=True)
    for name, description, params in scenarios:
        table.add_row(name, description, "\n".join(f"{k}={v}" for k, v in params.items()) or "-")
    Console().print(table)
    return 0
