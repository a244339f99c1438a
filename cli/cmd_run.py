"""``tlbrace run``: one wild trial of a scenario on Ray; if it fails, its per-CPU story.

The same options as ``stress`` (one trial, one set of actors). The story lists the trial's events in replay
order, one column per CPU, in the kernel's own function names. ``--seed S --trial ID`` runs with the jitter
seed that trial ID of a ``stress --seed S`` campaign had.
"""

from __future__ import annotations

import argparse

from cli.cmd_stress import add_wild_options, check_size, check_wild_args, close_ray, open_ray
from cli.json_document import print_document
from cli.options import SEED_MAX, int_in, load


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", description=__doc__)
    add_wild_options(p)
    # A trial id is written into the log as a msgpack integer: 10**20 ran the trial, then could not write it.
    p.add_argument("--trial", type=int_in(0, SEED_MAX), default=0, metavar="ID",
                   help="the trial id (seeds its jitter; default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_wild_args(args)
    scenario, cfg = load(args)
    check_size(scenario, cfg, 1, args)
    from rich.console import Console

    from actors.campaign import trial_seed, write_trial_log
    from actors.ray_session import GcsWatch, gcs_lost
    from actors.topology import Topology
    from actors.trial import run_one
    from kernel_model.events import Event
    from cli.errors import EXIT_OK, EXIT_VIOLATION
    from analysis.story import print_story

    session = open_ray(args, 1)
    watch = GcsWatch()
    try:
        with watch:  # a killed GCS: exit 3 and one line, not Ray's exit 1 a minute later (actors.ray_session)
            r = run_one(scenario, cfg, run="run", trial=args.trial, seed=trial_seed(args.seed, args.trial),
                        jitter_us=args.jitter, hang_timeout=args.hang_timeout)
    except KeyboardInterrupt:
        if gcs_lost():
            raise watch.lost() from None
        raise
    finally:
        close_ray(session)
    unsaved: OSError | None = None
    try:
        log = write_trial_log(args.out, "run", scenario, cfg, r) if (r.failed or args.keep_passing) else None
    except OSError as exc:
        # A wild trial is no schedule: real scheduling decided it, and it may never come again. A full disk ended
        # the command at its log (exit 3) without the story: the failure was seen by no one. It is shown first.
        log, unsaved = None, exc
    if args.json:
        print_document({"scenario": scenario.name, "ordering": cfg.ordering, "arch": cfg.arch,
                          "mutant": cfg.mutant, "trial": r.trial, "status": r.status,
                          "violations": [{"invariant": v.invariant, "detail": v.detail} for v in r.violations],
                          "detail": r.detail, "steps": r.steps, "nodes": list(r.nodes), "log": log})
    else:
        from analysis.printable import printable

        console = Console()
        console.print(f"trial {r.trial}: {r.status}, {r.steps} steps in {r.seconds:.3f} s"
                      + (f": {printable(r.detail)}" if r.detail and not r.violations else ""))
        if r.failed and r.records:
            events = [Event(e["seq"], e["tid"], e["cpu"], e["kind"], e["fn"], e["op"], tuple(e["args"]), e["result"])
                      for e in r.records]
            print_story(scenario, list(Topology.of(scenario, cfg).cpu_of), events, r.violations, console)
        if log:
            console.print(f"log: {printable(log)}")
        elif unsaved is not None:
            console.print("log: not saved (the error follows); the story above is all that is left of this trial")
    if unsaved is not None:
        raise unsaved
    return EXIT_VIOLATION if r.violations else EXIT_OK
