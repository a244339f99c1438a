"""``tlbrace mutants``: the deliberately wrong kernels, what each does wrong, the invariant it breaks and the
scenario that shows it (from the registry in kernel_model/mutants.py)."""

from __future__ import annotations

import argparse

from cli.json_document import print_document
from kernel_model.mutants import REGISTRY, Mutant


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("mutants",
                            description="List the deliberately wrong kernels (--mutant M): a one-line description, "
                                        "the invariant the oracle must report, and the library scenario (with its "
                                        "base configuration) in which `tlbrace explore` finds it.")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of {name, description, breaks, scenario, config, note} on stdout")
    parser.set_defaults(func=run)
    return parser


def shown_by(m: Mutant) -> str:
    """The command that shows the mutant, or why none does."""
    if m.scenario is None:
        return "(none: not observable)"
    flags = " ".join(f"--{k.replace('_', '-')} {v}" if k in ("ordering", "arch") else f"--gather {k}={v}"
                     for k, v in m.config)
    return f"{m.scenario}{' ' + flags if flags else ''}"


def run(args: argparse.Namespace) -> int:
    if args.json:
        print_document([{"name": m.name, "description": m.description, "breaks": m.breaks,
                           "scenario": m.scenario, "config": dict(m.config), "note": m.note} for m in REGISTRY],
                       indent=2)
        return 0
    import shutil
    import textwrap

    width = min(100, shutil.get_terminal_size((80, 24)).columns)
    print("Mutants (--mutant M): deliberately wrong kernels the oracle must catch.\n")
    for m in REGISTRY:
        print(f"{m.name}: breaks {m.breaks}")
        shown = f"shown by: tlbrace explore {shown_by(m)}" if m.scenario else m.note
        for text in (m.description, shown):
            print(textwrap.fill(text, width, initial_indent="    ", subsequent_indent="      "))
    return 0
