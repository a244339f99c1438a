"""``tlbrace scale``: scaling experiments across simulated CPUs. Runs a grid of wild campaigns on Ray (one per
cell: CPUs x shards x ordering x delayed_batches) and writes results.csv and PNG plots into --out.

CPUS is the number of CPU actors, one per scenario thread. A scenario with one thread group counted by a param
gets that param = CPUS minus its other threads: scale_writers runs CPUS-2 writers beside its zapper and its
writeback CPU, so CPUS >= 3. A scenario without one runs only at its own thread count (zap_many_pages: 1).
SHARDS is the number of PTE tables (split PTLs): the scenario's ptes_per_table param becomes pages/SHARDS.
eager never delays an rmap, so delayed_batches does not apply to it: one eager row per (cpus, shards), with
delayed_batches "-". Exit status 1 when any cell found a violation (as every tlbrace command), else 0.

Default grid: --cpus 3,4,8,16 (or the scenario's own thread count), the scenario's own shards, both orderings,
both delayed_batches, --trials 80: scale_writers' 12 cells took 4 min 21 s on a 2-core machine (--trials 40 with
--cpus 3,4,6,8: 2 min). Throughput columns are steady state (actor start-up left out). --parallel 2 gained
nothing there: at --parallel 1 the CPU and page-table actors already keep the two cores ~80% busy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from logs.one_line import one_line
from cli.cmd_stress import add_wild_options, check_size, check_wild_args, close_ray, open_ray
from cli.json_document import print_document
from cli.options import integer, list_arg, load, one_of, positive_int

DEFAULT_CPUS = (3, 4, 8, 16)
DEFAULT_TRIALS = 80


def add_parser(sub: argparse._SubParsersAction) -> None:
    from kernel_model.config import DELAYED_BATCHES, ORDERINGS
    from cli.help_format import RawDescriptionDefaultsFormatter

    p = sub.add_parser("scale", description=__doc__, formatter_class=RawDescriptionDefaultsFormatter,
                       conflict_handler="resolve")  # --ordering/--delayed-batches become lists here
    add_wild_options(p)
    p.add_argument("--out", default="tlbrace-scale", metavar="DIR",
                   help="results.csv, the plots and failing trials' logs (logs/) go here (default tlbrace-scale)")
    p.add_argument("--cpus", type=list_arg(positive_int, "comma-separated integers >= 1, e.g. 3,4,8"),
                   default=None, metavar="N,N,...",
                   help="CPU counts (= CPU actors = scenario threads; default 3,4,8,16 for a scenario with a "
                        "thread-count param, else its own thread count)")
    p.add_argument("--shards", type=list_arg(positive_int, "comma-separated integers >= 1, e.g. 1,2"),
                   default=None, metavar="K,K,...",
                   help="PTE tables (PTLs): sets the ptes_per_table param to pages/K; K must divide the pages "
                        "(default: the scenario's own)")
    p.add_argument("--ordering", type=list_arg(one_of(ORDERINGS), f"a comma-separated subset of {','.join(ORDERINGS)}"),
                   default=None, metavar="O,O",
                   help="orderings to run (default eager,delayed; with --kernel, that kernel's)")
    p.add_argument("--delayed-batches", type=list_arg(one_of(DELAYED_BATCHES),
                                                    f"a comma-separated subset of {','.join(DELAYED_BATCHES)}"),
                   default=None, metavar="B,B",
                   help="delayed_batches settings for delayed cells (default active,local+active; with --kernel, "
                        "that kernel's)")
    p.add_argument("--trials", type=integer, default=DEFAULT_TRIALS, metavar="N",
                   help=f"trials per cell (default {DEFAULT_TRIALS})")
    p.add_argument("--parallel", type=integer, default=1, metavar="P",
                   help="trials running at once in a cell, each on its own set of actors (default 1)")
    p.set_defaults(func=run)


def plan(args: argparse.Namespace) -> tuple[Any, list[Any], Any]:
    """(the scenario at its own params, the cells, a function cell -> (scenario, config)); UsageError for an
    axis value the scenario cannot take. Ray is not needed."""
    from actors.scale import GridError, knobs_of, plan_cells
    from cli.errors import UsageError

    base = argparse.Namespace(**{**vars(args), "ordering": None, "delayed_batches": None})
    scenario, _ = load(base)
    try:
        knobs = knobs_of(scenario)
    except GridError as exc:
        raise UsageError(str(exc)) from None
    given = {item.partition("=")[0].strip() for item in args.param}
    for name, axis in ((knobs.cpu_param, "--cpus"), (knobs.shard_param, "--shards")):
        if name is not None and name in given:
            raise UsageError(f"--param {name}: set by {axis} in tlbrace scale")
    cpus = args.cpus or ([c for c in DEFAULT_CPUS if c > knobs.fixed_threads] if knobs.cpu_param
                         else [knobs.threads])
    shards = args.shards or [knobs.tables]
    cells = plan_cells(cpus, shards, *_axes(args))
    params: dict[tuple[int, int], dict[str, int]] = {}
    for c in sorted(set(cpus)):
        for s in sorted(set(shards)):
            try:
                params[(c, s)] = knobs.params_for(c, s)
            except GridError as exc:
                raise UsageError(f"{scenario.name}: {exc}") from None

    def make(cell: Any) -> tuple[Any, Any]:
        ns = argparse.Namespace(**{**vars(base), "ordering": cell.ordering,
                                   "delayed_batches": None if cell.ordering == "eager" else cell.delayed_batches,
                                   "param": list(args.param) + [f"{k}={v}" for k, v in
                                                                params[(cell.cpus, cell.shards)].items()]})
        return load(ns)

    return scenario, cells, make


def _axes(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The ordering and delayed_batches axes: as given, else --kernel's single values, else both of each. The
    fix switches --kernel also sets reach every cell through load (cli.options.config_from_args)."""
    from kernel_model.config import DELAYED_BATCHES, ORDERINGS
    from cli.options import kernel_overrides

    kernel = kernel_overrides(args.kernel)
    orderings = args.ordering or ([kernel["ordering"]] if kernel else list(ORDERINGS))
    batches = args.delayed_batches or ([kernel["delayed_batches"]] if kernel else list(DELAYED_BATCHES))
    return orderings, batches


def run(args: argparse.Namespace) -> int:
    check_wild_args(args)
    scenario, cells, make = plan(args)
    for cell in cells:
        # Every cell's scenario loads, and fits the wild runtime's actor caps, before Ray starts: --cpus 65 (or
        # 4 with --parallel 100) started Ray and the grid, as stress never would.
        check_size(*make(cell), args.parallel, args)
    os.makedirs(args.out, exist_ok=True)
    lock = _lock_out(args.out)
    try:
        return _run_locked(args, scenario, cells, make)
    finally:
        lock.release()


def _lock_out(out: str) -> Any:
    """The --out directory's lock (actors/dir_lock.py), as stress takes it: two scale runs in one --out each wrote
    results.csv and the plots, and the later one's replaced the earlier one's rows."""
    from actors.dir_lock import DirectoryBusy, lock_directory
    from cli.errors import UsageError

    try:
        return lock_directory(out)
    except DirectoryBusy as exc:
        raise UsageError(str(exc)) from None


def _run_locked(args: argparse.Namespace, scenario: Any, cells: list[Any], make: Any) -> int:
    from actors.campaign import CampaignOptions
    from actors.ray_session import ClusterLost
    from actors.scale import GridResult, write_csv
    from cli.errors import EXIT_OK, EXIT_VIOLATION
    from analysis.report import SCALE_CSV
    from analysis.scale_plots import PLOT_NAMES, plot_all
    from logs.output_files import check_output_file

    csv_path = os.path.join(args.out, SCALE_CSV)
    grid = GridResult()
    opts = CampaignOptions(trials=args.trials, parallel=args.parallel, jitter_us=args.jitter, seed=args.seed,
                           out=os.path.join(args.out, "logs"), keep_passing=args.keep_passing,
                           hang_timeout=args.hang_timeout, on_lost=lambda: write_csv(csv_path, grid.rows),
                           lost_note=f"the scale run stopped: the cells that finished are in {csv_path}")
    # Every file written at the end, checked before the grid runs: a FIFO named results.csv made the finished
    # grid wait for a reader for ever (its rows never written).
    for name in (SCALE_CSV,) + PLOT_NAMES:
        check_output_file(os.path.join(args.out, name), "scale run's " + name)
    started = time.monotonic()
    session = open_ray(args, args.parallel)
    try:
        _with_progress(scenario.name, cells, make, opts, grid, quiet=args.json)
    except ClusterLost:  # the cells that finished are measured: their rows are kept (the line, lost_note, says so)
        write_csv(csv_path, grid.rows)
        raise
    finally:
        close_ray(session)
    write_csv(csv_path, grid.rows)
    title = scenario.name + "".join(f" {p}" for p in args.param)
    plots = plot_all(grid.rows, args.out, title)
    seconds = time.monotonic() - started
    if args.json:
        print_document({"scenario": scenario.name, "params": args.param, "rows": grid.rows, "csv": csv_path,
                          "plots": plots, "seconds": round(seconds, 2), "failing_logs": grid.failing_logs,
                          "interrupted": grid.interrupted})
    else:
        _print_table(title, grid.rows, csv_path, plots, seconds, len(grid.failing_logs))
    if grid.interrupted:  # each cell's campaign took a Ctrl-C or SIGTERM as its own and the grid went on
        print(f"tlbrace: interrupted after {len(grid.rows)} of {len(cells)} cells; {one_line(csv_path)} and the "
              "plots hold those (the last one's trials up to the interrupt)", file=sys.stderr)
        return 130
    return EXIT_VIOLATION if grid.violations else EXIT_OK


def _with_progress(name: str, cells: list[Any], make: Any, opts: Any, grid: Any, *, quiet: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from actors.scale import run_grid

    console = Console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), console=console,
                  disable=quiet or not console.is_terminal) as progress:
        task = progress.add_task(name, total=len(cells) * opts.trials, counts="")
        done = {"trials": 0, "violations": 0}

        def on_cell(cell: Any) -> None:
            progress.update(task, description=f"{name} {cell.cpus} CPUs, {cell.shards} PTL(s), {cell.label}")

        def on_trial(_cell: Any, r: Any, _so_far: Any) -> None:
            done["trials"] += 1
            done["violations"] += bool(r.violations)
            progress.update(task, completed=done["trials"], counts=f"violations {done['violations']}")

        return run_grid(cells, make, opts, on_trial, on_cell, grid)


def _cell_text(value: Any, digits: int = 2) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _print_table(title: str, rows: list[dict[str, Any]], csv_path: str, plots: list[str], seconds: float,
                 failing: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from analysis.printable import printable

    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # a file or pipe: do not wrap the table at 80 columns
    console.print(f"[bold]tlbrace scale[/bold]: {title}")
    table = Table(show_lines=False)
    # (header, how to show a row); every column is a CSV column or two
    columns: list[tuple[str, Any]] = [
        ("CPUs", lambda r: str(r["cpus"])), ("PTLs", lambda r: str(r["shards"])),
        ("ordering", lambda r: r["ordering"] + ("" if r["delayed_batches"] == "-" else f"/{r['delayed_batches']}")),
        ("trials", lambda r: str(r["trials"])), ("viol", lambda r: str(r["violations"])),
        ("hit rate [95%]", lambda r: f"{r['hit_rate']:.2f} [{r['hit_rate_lo']:.2f},{r['hit_rate_hi']:.2f}]"),
        ("trials/s", lambda r: _cell_text(r["trials_per_s"])), ("steps/s", lambda r: _cell_text(r["steps_per_s"], 0)),
        ("IPIs/zap", lambda r: _cell_text(r["ipis_per_zap"], 1)),
        ("flushes/page", lambda r: _cell_text(r["tlb_flushes_per_zapped_page"], 3)),
        ("forced/zap", lambda r: _cell_text(r["forced_flushes_per_zap"], 2)),
        ("PTL µs p50/p99", lambda r: f"{_cell_text(r['ptl_wait_p50_us'], 0)}/{_cell_text(r['ptl_wait_p99_us'], 0)}"),
        ("RTT µs p50/p99",
         lambda r: f"{_cell_text(r['flush_rtt_p50_us'], 0)}/{_cell_text(r['flush_rtt_p99_us'], 0)}"),
    ]
    for header, _ in columns:
        table.add_column(header, justify="left" if header == "ordering" else "right", no_wrap=True)
    for r in rows:
        table.add_row(*(show(r) for _, show in columns))
    console.print(table)
    console.print(f"{len(rows)} cells in {seconds:.1f} s; csv: {printable(csv_path)}")
    for path in plots:
        console.print(f"plot: {printable(path)}")
    if failing:
        console.print(f"{failing} failing trial log(s) in {printable(os.path.join(os.path.dirname(csv_path), 'logs'))}")
    sys.stdout.flush()
