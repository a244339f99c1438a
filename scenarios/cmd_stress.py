"""``tlbrace stress``: many wild trials of a scenario on Ray (CPUs as actors, real scheduling decides).

Without ``--address`` an embedded local Ray cluster is started (and stopped at the end); ``--address`` or
RAY_ADDRESS joins an existing cluster. Every trial is judged by replaying its events in the controlled machine
with the same oracle as ``explore``. Failing trials' full logs go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from scenarios.options import add_output_options, add_scenario_options, load


def add_wild_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``stress`` and ``run``."""
    add_scenario_options(p)
    p.add_argument("--address", metavar="ADDR", default=None,
                   help="join this Ray cluster (default: RAY_ADDRESS, else an embedded local cluster)")
    p.add_argument("--jitter", type=float, default=0.0, metavar="US",
                   help="random pauses of up to US microseconds at named race points (default 0: none)")
    p.add_argument("--hang-timeout", type=float, default=5.0, metavar="S",
                   help="a trial with no progress for S seconds is reported as hung (default 5)")
    p.add_argument("--keep-passing", action="store_true", help="also keep the logs of passing trials")
    add_output_options(p, default_out="tlbrace-out")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stress", help="many wild trials on Ray actors, with a summary", description=__doc__)
    add_wild_options(p)
    p.add_argument("--trials", type=int, default=100, metavar="N", help="number of trials (default 100)")
    p.add_argument("--parallel", type=int, default=1, metavar="P",
                   help="trials running at once, each on its own set of actors (default 1)")
    p.set_defaults(func=run)


def check_wild_args(args: argparse.Namespace) -> None:
    from scenarios.cli import UsageError

    if getattr(args, "trials", 1) < 1:
        raise UsageError(f"--trials: expected a positive integer, got {args.trials}")
    if getattr(args, "parallel", 1) < 1:
        raise UsageError(f"--parallel: expected a positive integer, got {args.parallel}")
    if args.jitter < 0:
        raise UsageError(f"--jitter: expected microseconds >= 0, got {args.jitter}")
    if args.hang_timeout <= 0:
        raise UsageError(f"--hang-timeout: expected seconds > 0, got {args.hang_timeout}")


def open_ray(args: argparse.Namespace, parallel: int) -> Any:
    """The Ray session for a wild command; a cluster that cannot be joined is bad input (one line, exit 2)."""
    from actors import ray_session
    from scenarios.cli import UsageError

    try:
        return ray_session.open_session(args.address, num_cpus=max(2, parallel))
    except ray_session.RayUnavailable as exc:
        raise UsageError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    check_wild_args(args)
    scenario, cfg = load(args)
    from actors import ray_session
    from actors.campaign import CampaignOptions
    from scenarios.cli import EXIT_OK, EXIT_VIOLATION

    opts = CampaignOptions(trials=args.trials, parallel=args.parallel, jitter_us=args.jitter, seed=args.seed,
                           out=args.out, keep_passing=args.keep_passing, hang_timeout=args.hang_timeout)
    session = open_ray(args, args.parallel)
    try:
        result = _with_progress(scenario, cfg, opts, quiet=args.json)
    finally:
        ray_session.close_session(session)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(result)
    return EXIT_VIOLATION if result.violations else EXIT_OK


def _with_progress(scenario: Any, cfg: Any, opts: Any, *, quiet: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from actors.campaign import run_campaign

    console = Console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), console=console,
                  disable=quiet or not console.is_terminal, transient=False) as progress:
        task = progress.add_task(f"{scenario.name} {cfg.ordering}/{cfg.arch}", total=opts.trials, counts="")

        def on_trial(_trial: Any, so_far: Any) -> None:
            s = so_far.by_status
            progress.update(task, completed=so_far.trials,
                            counts=f"violations {so_far.violations}  hung {s['hung']}  crashed {s['crashed']}")

        return run_campaign(scenario, cfg, opts, on_trial)


def _print_summary(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    s = result.summary()
    console = Console()
    console.print(f"[bold]tlbrace stress[/bold]: {s['scenario']} ({s['ordering']}, {s['arch']}"
                  + (f", mutant {s['mutant']}" if s["mutant"] else "") + f"), run {result.run}")
    table = Table()
    table.add_column("what")
    table.add_column("value", justify="right")
    for key in ("trials", "violations", "hung", "crashed", "diverged", "seconds", "trials_per_s", "steps_per_s"):
        table.add_row(key, str(s[key]))
    for name, count in s["by_invariant"].items():
        table.add_row(f"  {name}", str(count))
    console.print(table)
    for r in result.failures[:5]:
        if r.status in ("crashed", "hung", "diverged"):
            console.print(f"trial {r.trial}: {r.status}: {r.detail}")
    for path in s["failing_logs"][:10]:
        console.print(f"log: {path}")
    if len(s["failing_logs"]) > 10:
        console.print(f"... and {len(s['failing_logs']) - 10} more logs")
    sys.stdout.flush()
