"""``tlbrace history``: which kernel releases reach a scenario's race. Explore it once per kernel version.

Each kernel is the model configured with the fixes of kernel_model/kernels.py merged by that release (``--kernel``
of explore). Each search is a breadth-first one with partial-order reduction: exhaustive when the whole state
space fits the budget ("clean" then means no schedule of the scenario breaks an invariant on that kernel), else
"incomplete" (no violation within the budget, which the table states). A violation's steps are the length of
the shortest counterexample (breadth-first search finds a shortest one first).

The default kernels are, for each fix of the registry and for each change that moves a window without being a
fix (reclaim's batched flush in 4.3, kswapd's seen-twice rule in 4.11, munmap's mmap_lock downgrade in 4.20,
mprotect's mmu_gather in 6.0, 6.2's zap without the forced flush on UP), the release before it and its own, and
the newest (kernel_model.kernels.history_kernels). The table has one row per kernel; ``--all`` does it for
every library scenario. A PNG (``--png``, default ``<--out>/history.png``) shows the verdicts as a matrix:
kernels across, scenarios down. Exit status 1 when a scenario that shows a fix's race (its registry entry names
it) breaks an invariant on a kernel that has that fix.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from cli.json_document import print_document
from cli.memory_budget import add_memory_limit_option, budget_arg, fit_budget
from kernel_model.config import Config
from kernel_model.kernels import REGISTRY, KernelError, history_kernels, kernel_config, kernel_for, parse_version

DEFAULT_HISTORY_BUDGET = 200_000  # states per (scenario, kernel) search


@dataclass(slots=True)
class Cell:
    """One scenario on one kernel."""

    kernel: str
    fixes: list[str]
    verdict: str  # "violation" | "clean" | "incomplete"
    invariants: list[str]
    steps: int | None  # the shortest counterexample's transitions; None without a violation
    states: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The issue's keys, exactly."""
        return {"kernel": self.kernel, "fixes": self.fixes, "verdict": self.verdict,
                "invariants": self.invariants, "steps": self.steps}


@dataclass(slots=True)
class Row:
    scenario: str
    description: str
    cells: list[Cell] = field(default_factory=list)
    arch: str = "smp"  # the machine the kernels ran on

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "kernels": [c.to_json() for c in self.cells]}


def add_parser(sub: argparse._SubParsersAction) -> None:
    from cli.help_format import RawDescriptionDefaultsFormatter

    p = sub.add_parser("history", description=__doc__, formatter_class=RawDescriptionDefaultsFormatter)
    p.add_argument("scenario", metavar="SCENARIO", nargs="?", default=None,
                   help="a library scenario name or the path of a TOML file (default: none; give one or --all)")
    p.add_argument("--all", action="store_true", help="every library scenario (`tlbrace scenarios` lists them)")
    p.add_argument("--kernels", metavar="V,V,...", default=None,
                   help="kernel releases, e.g. 4.12,4.13 (default: for each fix of the registry, and for each "
                        "change that moves a window without being a fix (reclaim's batched flush, 72b252aed506, "
                        "4.3; kswapd's seen-twice rule, 4eda48235011, 4.11; munmap's mmap_lock downgrade, "
                        "dd2283f2605e, 4.20; mprotect's mmu_gather, 4a18419f71cd, 6.0), the release before it and "
                        f"its own, and the newest: {','.join(history_kernels())})")
    p.add_argument("--budget", type=budget_arg, default=None, metavar="STATES",
                   help=f"most states per search; a search that stops there is 'incomplete' (default "
                        f"{DEFAULT_HISTORY_BUDGET:,}, lowered to what fits in memory)")
    add_memory_limit_option(p)
    p.add_argument("--png", metavar="FILE", default=None,
                   help="where the matrix PNG goes (default: <--out>/history.png)")
    p.add_argument("--no-png", action="store_true", help="write no PNG")
    p.add_argument("--arch", choices=("smp", "up", "s390"), default=None,
                   help="the machine every kernel runs on (default: each scenario's own [config] arch, else smp); "
                        "on up, 6.2 and later have no forced flush of a dirty PTE (docs/up-v6.2.md)")
    p.add_argument("--json", action="store_true",
                   help="print JSON on stdout: one {scenario, kernels} object, or a list of them with --all")
    p.add_argument("--out", default="tlbrace-out", metavar="DIR", help="where the PNG goes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cli.errors import UsageError
    from scenarios.loader import library_names, load_scenario

    if args.all == (args.scenario is not None):
        raise UsageError("history: expected a SCENARIO or --all (one of them)")
    if args.budget is not None and args.budget < 1:
        raise UsageError(f"--budget: expected a positive integer, got {args.budget}")
    kernels = parse_kernels(args.kernels)
    png = _png_path(args)
    names = library_names() if args.all else [args.scenario]
    scenarios = [load_scenario(name) for name in names]  # every file loads before any search runs
    # Each (scenario, kernel) search is a bfs of at most --budget states: the largest scenario must fit.
    args.budget = fit_budget(scenarios, Config(), "bfs", args.budget or DEFAULT_HISTORY_BUDGET,
                             given=args.budget is not None, memory_limit=args.memory_limit, hash_compact=False,
                             label="history")
    rows: list[Row] = []
    try:
        for sc in scenarios:
            history_row(sc, kernels, args.budget, progress=None if args.json else _progress, arch=args.arch,
                        rows=rows)
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM (`timeout 1h tlbrace history --all`): it said "interrupted" and nothing else, and the
        # verdicts of every search that had finished (an hour's with --all; none on the terminal with --json)
        # were lost. They are printed, without the matrix (a partial one would look like a whole one).
        return _interrupted(args, [r for r in rows if r.cells], len(scenarios) * len(kernels))
    unwritten = _plot(rows, kernels, png)
    regressions = fixed_but_reachable(rows)
    if args.json:
        doc: Any = [r.to_json() for r in rows] if args.all else rows[0].to_json()
        print_document(doc)
    else:
        print_rows(rows, args.budget)
        if png is not None and unwritten is None:
            print(f"matrix written to {png}")
    for line in regressions:
        print(f"tlbrace history: {line}", file=sys.stderr)
    if unwritten is not None:  # the table is out: the searches (hours with --all) are not lost with the picture
        raise unwritten
    return 1 if regressions else 0


def _interrupted(args: argparse.Namespace, rows: list[Row], searches: int) -> int:
    """The table (or JSON) of the searches that finished before a Ctrl-C, and a line saying how many; exit 130."""
    if args.json:
        print_document([r.to_json() for r in rows] if args.all else (rows[0].to_json() if rows else None))
    elif rows:
        print_rows(rows, args.budget)
    for line in fixed_but_reachable(rows):
        print(f"tlbrace history: {line}", file=sys.stderr)
    done = sum(len(r.cells) for r in rows)
    print(f"tlbrace: interrupted after {done} of {searches} searches; the table holds those that finished (no "
          "matrix written)", file=sys.stderr)
    return 130


def _plot(rows: list[Row], kernels: list[str], png: str | None) -> OSError | None:
    """The matrix written to ``png``, or the OSError that stopped it (a full disk, a directory gone read-only),
    raised only once the table is printed: it ended the command before the table, and every search's verdict
    was lost (exit 3, and nothing on stdout with --json)."""
    if png is None:
        return None
    from analysis.history_plot import plot_history

    try:
        os.makedirs(os.path.dirname(png) or ".", exist_ok=True)
        plot_history(rows, kernels, png)
    except OSError as exc:
        return exc
    return None


def _png_path(args: argparse.Namespace) -> str | None:
    """Where the matrix goes (None: --no-png), checked writable before any search."""
    from cli.errors import UsageError
    from cli.options import check_out_dir, check_out_file

    if args.no_png:
        if args.png is not None:  # --png was dropped without a word
            raise UsageError(f"--png {args.png} and --no-png: expected one of them")
        return None
    if args.png is None:
        check_out_dir(args.out)
        return os.path.join(args.out, "history.png")
    check_out_file(args.png, "--png", (".png",))
    return args.png


def parse_kernels(text: str | None) -> list[str]:
    """--kernels: releases in the order given, each once; each must be one the registry knows."""
    from cli.errors import UsageError

    if text is None:
        return list(history_kernels())
    from cli.options import comma_list

    def release(item: str) -> str:
        try:
            v = parse_version(item)
        except KernelError as exc:
            raise ValueError(f"is not a release: {exc}") from None
        return f"{v[0]}.{v[1]}"

    try:
        return comma_list(text, release, "a comma-separated list of releases such as 4.12,4.13")
    except ValueError as exc:
        raise UsageError(f"--kernels: {exc}") from None


def history_row(scenario: Any, kernels: list[str], budget: int, progress: Any = None, arch: str | None = None,
                rows: list[Row] | None = None) -> Row:
    """Explore ``scenario`` on each kernel (its [config] overridden by the kernel's fixes, and by ``arch``). The
    row is appended to ``rows`` before its first search, so that a caller interrupted keeps the finished cells."""
    from kernel_model.config import Config
    from controlled.explorer import explore

    row = Row(scenario.name, scenario.description, arch=arch or scenario.config.get("arch", "smp"))
    if rows is not None:
        rows.append(row)
    for kernel in kernels:
        cfg = Config.from_dict({**scenario.config, **kernel_config(kernel), "arch": row.arch})
        result = explore(scenario, cfg, "bfs", budget=budget, stop_at_first=True)
        fixes = sorted(kernel_for(kernel), key=[f.name for f in REGISTRY].index)
        if result.found:
            found = result.found[0]
            cell = Cell(kernel, fixes, "violation", found.invariants, len(found.schedule))
        else:
            cell = Cell(kernel, fixes, "clean" if result.complete else "incomplete", [], None)
        cell.states, cell.seconds = result.states, result.seconds
        row.cells.append(cell)
        if progress is not None:
            progress(scenario.name, cell)
    return row


def fixed_but_reachable(rows: list[Row]) -> list[str]:
    """A fix's own scenario breaking an invariant on a kernel that has the fix: the fix (or the model) is wrong."""
    out = []
    by_scenario = {r.scenario: r for r in rows}
    for fix in REGISTRY:
        row = by_scenario.get(fix.scenario or "")
        if row is None:
            continue
        for cell in row.cells:
            if fix.name in cell.fixes and cell.verdict == "violation":
                on = cell.kernel if row.arch == "smp" else f"{cell.kernel} ({row.arch})"
                out.append(f"{row.scenario} breaks {', '.join(cell.invariants)} on {on}, which has "
                           f"{fix.commit} ({fix.name})")
    return out


def _progress(scenario: str, cell: Cell) -> None:
    print(f"  {scenario} on {cell.kernel}: {cell.verdict} ({cell.states:,} states, {cell.seconds:.1f} s)",
          file=sys.stderr)


def print_rows(rows: list[Row], budget: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from analysis.printable import printable  # a description is text, not rich markup

    console = Console(width=max(Console().width, 110))
    for row in rows:
        on = "" if row.arch == "smp" else f" (arch {row.arch})"
        table = Table(title=printable(f"{row.scenario}{on}: {row.description}"), title_justify="left")
        for header in ("kernel", "fixes it lacks", "verdict", "invariants", "steps", "states"):
            table.add_column(header, justify="right" if header in ("steps", "states") else "left",
                             no_wrap=header != "fixes it lacks")
        for c in row.cells:
            missing = [f.commit for f in REGISTRY if f.name not in c.fixes]
            verdict = {"clean": "clean (exhaustive)", "incomplete": f"incomplete (stopped at {budget:,} states)",
                       "violation": "violation"}[c.verdict]
            table.add_row(c.kernel, " ".join(missing) or "-", verdict, ", ".join(c.invariants) or "-",
                          "-" if c.steps is None else str(c.steps), f"{c.states:,}")
        console.print(table)
