"""``tlbrace explore``: search the schedules of a scenario in the controlled runtime.

Each violation found is written as a schedule file (``--out``) that ``tlbrace replay`` reproduces exactly, and
printed as a per-CPU story.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Final


from analysis.printable import printable
from analysis.story import print_story
from cli.errors import os_error_text
from cli.json_document import print_document
from cli.options import (add_output_options, add_scenario_options, add_view_options, check_out_dir,
                               console_for, diagram_width, int_in, load)
from cli.memory_budget import add_memory_limit_option, budget_arg, check_memory_limit_applies, fit_budget
from controlled.explorer import DEFAULT_BUDGET, STRATEGIES, explore
from controlled.replay import run_schedule
from kernel_model.config import Config
from logs.controlled_log import write_controlled_log
from logs.output_files import check_output_file, replaced_whole
from logs.schedule_file import ScheduleFile, write_schedule


MAX_DEPTH = 1000  # change points past the run's length are never reached; this bounds the draw of them
MAX_WORKERS = 64  # processes sharing one visited table
PCT_DEPTH = 3


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explore", description=__doc__)
    add_scenario_options(p)
    p.add_argument("--strategy", choices=STRATEGIES, default="bfs",
                   help="bfs (exhaustive, shortest counterexample first), dfs, random or pct (default bfs)")
    p.add_argument("--budget", type=budget_arg, default=None,
                   help="bfs/dfs: most states to visit; random/pct: number of runs (default: "
                        + ", ".join(f"{k} {v:,}" for k, v in DEFAULT_BUDGET.items()) + ")")
    p.add_argument("--depth", type=int_in(1, MAX_DEPTH), default=None,
                   help=f"pct bug depth: depth - 1 priority change points per run (default {PCT_DEPTH}, "
                        f"1..{MAX_DEPTH})")
    p.add_argument("--no-reduce", action="store_true",
                   help="bfs/dfs without partial-order reduction (every interleaving; slower)")
    p.add_argument("--no-sleep-sets", action="store_true",
                   help="dfs: without sleep sets on top of the reduction (more transitions, the same verdicts)")
    p.add_argument("--merge-chains", action="store_true",
                   help="dfs on one process: do not store the states of one agent's run of single transitions "
                        "(SPIN's statement merging): about 40%% fewer states held, about 20%% more transitions run, "
                        "the same verdicts; for a proof that memory, not time, limits")
    p.add_argument("--all", action="store_true", help="keep searching after the first violation")
    p.add_argument("--hash-compact", action="store_true",
                   help="bfs/dfs: remember a 64-bit hash per state, not the state (a tenth of the memory; the "
                        "JSON's collision_bound says how likely a merge of two states was)")
    p.add_argument("--workers", type=int_in(1, MAX_WORKERS), default=1,
                   help="dfs: search on this many processes once the search has run 0.3 s, sharing one "
                        "hash-compacted visited set and stealing work from each other (implies --hash-compact; "
                        "sleep sets are shared in that set, so the counts may vary from run to run, never the "
                        "verdicts; with --no-sleep-sets, exactly the counts of --hash-compact --no-sleep-sets; "
                        "default 1)")
    p.add_argument("--log-format", choices=("msgpack", "jsonl"), default="msgpack",
                   help="format of each counterexample's event log (jsonl: JSON Lines for people)")
    add_memory_limit_option(p)
    add_output_options(p)
    add_view_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    _check_search_options(args)
    check_out_dir(args.out)
    scenario, cfg = load(args)
    args.budget = fit_budget([scenario], cfg, args.strategy, args.budget or DEFAULT_BUDGET[args.strategy],
                             given=args.budget is not None, memory_limit=args.memory_limit,
                             hash_compact=args.hash_compact or args.workers > 1, label="explore",
                             offers_hash_compact=True)
    console = console_for(args, stderr=args.json)
    result = explore(scenario, cfg, args.strategy, budget=args.budget, seed=args.seed,
                     depth=args.depth or PCT_DEPTH, reduce=not args.no_reduce, stop_at_first=not args.all,
                     hash_compact=args.hash_compact, workers=args.workers, sleep_sets=not args.no_sleep_sets, merge=args.merge_chains)
    violations_out = []
    unsaved: OSError | None = None  # the first write that failed: raised once everything found is printed
    for n, found in enumerate(result.found):
        replay = run_schedule(scenario, cfg, found.schedule)
        stem = "-".join([scenario.name] + _kernel_words(args.kernel, cfg, "v{}") + [args.strategy, str(n)])
        path = os.path.join(args.out, f"{stem}.schedule")
        log_path = os.path.join(args.out, f"{stem}.{args.log_format}")
        try:
            _save(args, scenario, cfg, found, replay.executed, stem, path, log_path)
            failed = None
        except OSError as exc:
            unsaved, failed = unsaved or exc, exc
        violations_out.append({"invariant": found.invariants[0], "invariants": found.invariants,
                               "detail": found.violations[0].detail, "steps": len(replay.executed),
                               "schedule_file": path, "log_file": log_path})
        if failed is not None:  # the search found it, maybe hours in: its schedule is kept in what is printed
            violations_out[-1].update(schedule_file=path if os.path.isfile(path) else None, log_file=None,
                                      schedule=[list(t) for t in replay.executed])
        if not args.json:
            _show(args, console, scenario, cfg, found, replay, stem, (path, log_path), failed)
    summary = {"scenario": scenario.name, "params": scenario.params, "ordering": cfg.ordering, "arch": cfg.arch,
               "mutant": cfg.mutant, "delayed_batches": cfg.delayed_batches, "kernel": args.kernel,
               "without": list(cfg.without), "strategy": args.strategy,
               "complete": result.complete, "states": result.states, "schedules": result.schedules,
               "transitions": result.transitions, "seconds": round(result.seconds, 3),
               "collision_bound": result.collision_bound, "workers": args.workers, "forked": result.workers,
               "merged": result.merged, "sleep_sets": result.sleep_sets,
               "sleep_sets_off": result.sleep_sets_off or None,
               "violations": violations_out}
    if args.json:
        print_document(summary)
    else:
        verdict = (f"{len(violations_out)} violation(s): " + ", ".join(v["invariant"] for v in violations_out)
                   if violations_out else "no violation")
        scope = "the whole state space" if result.complete else "a partial search"
        console.print(f"{' '.join([scenario.name] + _kernel_words(args.kernel, cfg, 'kernel={}', True))} "
                      f"strategy={args.strategy}: {verdict} — "
                      f"{scope}, {result.states} states"
                      + (f" (and {result.merged} run through, not stored)" if result.merged else "")
                      + f", {result.transitions} transitions, {result.seconds:.2f} s"
                      + _compaction_words(result.collision_bound, args.workers, result.workers)
                      + (f"; without sleep sets: {result.sleep_sets_off}" if result.sleep_sets_off else ""))
    if unsaved is not None:
        raise unsaved  # exit 3, naming the file and what to do (cli.errors.os_error_text)
    return 1 if violations_out else 0


def _show(args: argparse.Namespace, console: Any, scenario: Any, cfg: Config, found: Any, replay: Any, stem: str,
          files: tuple[str, str], failed: OSError | None) -> None:
    """One counterexample for people: its story or diagram, then where it was written (or why not, with its
    schedule)."""
    from controlled.machine import Machine

    path, log_path = files
    cpu_of = Machine(scenario, cfg).cpu_of
    if args.format == "diagram":
        from analysis.diagram import render_diagram
        print(render_diagram(scenario, cpu_of, replay.events, replay.violations or found.violations,
                             diagram_width(args), title=f"{stem}: {', '.join(found.invariants)}"))
    else:
        print_story(scenario, cpu_of, replay.events, replay.violations or found.violations, console)
    if failed is None:
        console.print(f"schedule written to {printable(path)} ({len(replay.executed)} transitions); "
                      f"reproduce with: tlbrace replay {printable(path)}; event log: {printable(log_path)} "
                      "(tlbrace analyze)")
    else:
        console.print(f"[red]not saved[/] ({printable(os_error_text(failed))}); its schedule, "
                      f"{len(replay.executed)} transitions (--json prints it too): "
                      f"{' '.join(map(_transition_text, replay.executed))}", highlight=False)


def _save(args: argparse.Namespace, scenario: Any, cfg: Any, found: Any, executed: list, stem: str, path: str,
          log_path: str) -> None:
    """A counterexample's schedule and event log, written under --out (OSError: a full disk, a read-only one...).
    The search ran first, maybe for hours: a write that failed ended the command at once (exit 3), and what it
    had found was neither saved nor printed."""
    os.makedirs(args.out, exist_ok=True)
    check_output_file(log_path, "event log")  # both names before either file is written
    write_schedule(path, ScheduleFile(scenario, cfg, executed, found.invariants, args.strategy, args.seed))
    # A log is append-only; a new search replaces the old counterexample's, whole (a second explore of the
    # same scenario into this --out appended its trial to the first one's log, without a header of its own).
    with replaced_whole(log_path, "event log") as tmp:
        write_controlled_log(tmp, scenario, cfg, executed, run_id=stem, fmt=args.log_format)


def _transition_text(tr: tuple) -> str:
    """A schedule's transition as a person copies it: t1 (thread 1's step), i2:0 (an IPI on CPU 2 from thread 0)."""
    return f"t{tr[1]}" if tr[0] == "t" else f"i{tr[1]}:{tr[2]}"


def _compaction_words(collision_bound: float, workers: int, forked: int) -> str:
    """With hash compaction (--hash-compact, --workers): the bound on the chance that two states were merged;
    with --workers, on how many processes the search ran (one when it ended before the fork)."""
    on = ""
    if workers > 1:
        on = f" on {forked} workers" if forked > 1 else " on 1 process (it ended before the fork at 0.3 s)"
    return f"{on}; hash compaction: chance of a merged state below {collision_bound:.1e}" if collision_bound else on


def _kernel_words(kernel: str | None, cfg: Config, kernel_format: str, named: bool = False) -> list[str]:
    """What names the run's kernel: --kernel's version (if given), ordering, arch, the fixes it lacks (named)
    and the mutant; as key=value words when ``named`` (the summary line), bare (a file stem) otherwise."""
    words = [kernel_format.format(kernel)] if kernel else []
    pairs = [("ordering", cfg.ordering), ("arch", cfg.arch)]
    if named and cfg.without:
        pairs.append(("without", ",".join(cfg.without)))
    if cfg.mutant:
        pairs.append(("mutant", cfg.mutant))
    return words + [f"{k}={v}" if named else v for k, v in pairs]


def _check_search_options(args: argparse.Namespace) -> None:
    """Refuse (exit 2) the options that cannot go together or are out of range."""
    from cli.errors import UsageError

    if args.budget is not None and args.budget < 1:
        raise UsageError(f"--budget: expected a positive integer, got {args.budget}")
    check_memory_limit_applies(args)
    if args.workers < 1 or (args.workers > 1 and args.strategy != "dfs"):
        raise UsageError(f"--workers: expected a positive integer, and more than 1 only with --strategy dfs; got "
                         f"{args.workers} with --strategy {args.strategy}")
    _check_strategy_options(args)
    if args.merge_chains and (args.strategy != "dfs" or args.workers > 1):
        raise UsageError(f"--merge-chains: only with --strategy dfs on one process; got --strategy {args.strategy} "
                         f"--workers {args.workers}")


# Options that only one kind of search reads, and the strategies that read them: any other ran as if the option
# had not been given (`--strategy random --hash-compact`, `--strategy bfs --depth 7`), so the run was not the one
# asked for, and nothing said so.
_ONLY_WITH: Final = (("depth", "--depth", ("pct",), "its priority change points per run"),
                     ("no_reduce", "--no-reduce", ("bfs", "dfs"), "the stored-state searches' reduction"),
                     ("hash_compact", "--hash-compact", ("bfs", "dfs"), "how they store a state; random and pct "
                                                                         "keep a hash per state anyway"),
                     ("no_sleep_sets", "--no-sleep-sets", ("dfs",), "dfs's pruning; bfs has none"))


def _check_strategy_options(args: argparse.Namespace) -> None:
    from cli.errors import UsageError

    for attr, flag, strategies, what in _ONLY_WITH:
        value = getattr(args, attr)
        if value not in (None, False) and args.strategy not in strategies:
            raise UsageError(f"{flag}: only with --strategy {' or '.join(strategies)} ({what}); got --strategy "
                             f"{args.strategy}")

