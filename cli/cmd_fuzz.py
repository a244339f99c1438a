"""``tlbrace fuzz``: the model's own differential test. Random scenarios, each explored with a bounded search.

Each scenario (2-4 threads, 1-3 pages, programs drawn from every op, file or anonymous memory) is written as a
library-format TOML file and loaded through the scenario loader, so what is fuzzed is what a user can write.
Every violation is written to ``--out`` as that scenario file and a schedule file that ``tlbrace replay``
reproduces. On a kernel that should be correct (``delayed``, or ``--arch up``/``s390``; no mutant, no fix of
``--kernel``'s registry missing) a violation is a model bug or a real kernel bug: the scenario is first shrunk
(fewest threads, operations and pages that keep the same invariant), unless it is a known kernel race
(fuzz.known_races.known_kernel_race: reclaim's activate branch vs msync, docs/reclaim.md; UP's zap from 6.2,
docs/up-v6.2.md), which the report labels once a search with that race's window closed no longer breaks an
invariant (fuzz.known_races.check_known_race; a label it refutes is dropped). ``--check-reduction`` also judges the
search itself: each scenario reduced, with ``--merge-chains`` and in full must reach the same verdicts and end
states (fuzz.reduction_check). ``--parallel P`` or ``--address ADDR`` runs the explorations as Ray tasks; the report
is the same as a serial run's for the same seed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from typing import Any

from cli.json_document import print_document
from logs.one_line import one_line
from cli.options import (add_output_options, add_scenario_options, check_out_dir, config_from_args,
                         integer, nearest_existing)
from cli.memory_budget import add_memory_limit_option, budget_arg, fit_budget
from logs.output_files import replaced_whole
from fuzz.known_races import KNOWN_RACE_DOCS
from fuzz.run import SAMPLING, STRATEGIES

# The most scenarios one campaign generates: the report keeps a line per scenario (a few hundred bytes) and the
# campaign its index list, so ten times this would take gigabytes before the first scenario ran; at a few ms per
# scenario with the smallest budget it is already about an hour. A longer hunt is several seeds.
MAX_COUNT = 1_000_000
# Ray tasks at once: each is a worker process (about 100 MB) on the embedded cluster, which gets one logical CPU
# per task asked for; --parallel 1000 started a thousand of them. A cluster's own CPUs (--address without
# --parallel) are not capped.
MAX_PARALLEL = 64


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fuzz", description=__doc__)
    add_scenario_options(p, scenario_arg=False)
    p.add_argument("--count", type=integer, default=100, metavar="N",
                   help=f"scenarios to generate, at most {MAX_COUNT:,} (default 100)")
    p.add_argument("--using", metavar="OP,OP,...", default=None,
                   help="only scenarios whose programs use one of these operations, e.g. "
                        "mremap,ftruncate,mprotect,reclaim: the first N drawn that do (default: every scenario)")
    p.add_argument("--budget", type=budget_arg, default=None, metavar="N",
                   help="most states to visit per scenario (default 10000); with pct or random, runs per scenario "
                        "(default 300)")
    p.add_argument("--strategy", choices=STRATEGIES, default="dfs",
                   help="how each scenario is searched within its budget (default dfs: it reaches the ends of "
                        "runs, where lost data and hangs are judged; bfs: shortest first; pct or random: whole "
                        "runs sampled from the scenario's seed, which reach deep into scenarios too large to "
                        "search)")
    p.add_argument("--no-shrink", action="store_true",
                   help="write failing scenarios as generated (default: shrink them on a kernel that should be "
                        "correct: delayed, up, s390)")
    p.add_argument("--check-reduction", action="store_true",
                   help="also search each scenario that fits its budget reduced, with --merge-chains, and in full "
                        "(4x the budget): different verdicts or end states are reported as reduction_mismatch, a "
                        "bug of the search, not of the kernel")
    p.add_argument("--parallel", type=integer, default=0, metavar="P",
                   help=f"explore on P Ray workers at once, at most {MAX_PARALLEL} (default 0: serially in this "
                        "process)")
    p.add_argument("--address", metavar="ADDR", default=None,
                   help="join this Ray cluster and explore there (implies Ray; default P: the cluster's CPUs)")
    p.add_argument("--verbose", action="store_true",
                   help="a line on stderr for each scenario as it is judged (its name, size, states searched and "
                        "verdict), in place of one every 10%%; with --parallel or --address, Ray's own warnings and "
                        "logs reach the terminal too (default: off)")
    add_memory_limit_option(p)
    add_output_options(p, default_out="tlbrace-out/fuzz")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from actors.sigint import sigterm_as_interrupt
    from cli.errors import EXIT_OK, EXIT_VIOLATION
    from fuzz.run import run_serial

    opts = _options(args)
    t0 = time.perf_counter()
    files = _ViolationFiles(args.out, opts.cfg, args.kernel, args.seed, opts.strategy)
    progress = _progress(args)
    seen: list[Any] = []  # the outcomes so far, for the report of an interrupted campaign

    def on_outcome(outcome: Any) -> None:
        files.write(outcome)  # as found: a campaign stopped later (^C, a crash) keeps what it found so far
        seen.append(outcome)
        if progress is not None:
            progress(outcome)

    interrupted = False
    try:
        # A Ctrl-C or SIGTERM (`timeout 8h tlbrace fuzz`) ends the campaign with the report of what it finished:
        # it said only "interrupted" (SIGTERM: nothing), leaving hours of outcomes unsummarised.
        with sigterm_as_interrupt():
            if args.parallel or args.address:
                outcomes = _on_ray(args, opts, on_outcome)
            else:
                outcomes = run_serial(args.seed, args.count, opts, on_outcome, args.using)
    except KeyboardInterrupt:
        outcomes, interrupted = sorted(seen, key=lambda o: o.index), True
    report = _report(args, opts, outcomes, files, time.perf_counter() - t0)
    report["interrupted"] = interrupted
    if args.json:
        print_document(report)
    else:
        _print_report(report)
    if interrupted:
        print(f"tlbrace: interrupted after {len(outcomes)} of {args.count} scenarios; the files of the violations "
              f"found are in {args.out}", file=sys.stderr)
        return 130
    if files.error is not None:  # exit 3, one line, after the report: the campaign itself ran to its end
        raise files.error
    return EXIT_VIOLATION if report["violations"] else EXIT_OK


def _options(args: argparse.Namespace) -> Any:
    """The campaign's options, every command-line value checked before anything runs (exit 2 naming it)."""
    from cli.errors import UsageError
    from fuzz.run import DEFAULT_BUDGET, DEFAULT_RUNS, SAMPLING, FuzzOptions, scenario_indices
    from kernel_model.config import ConfigError

    if args.param:
        raise UsageError("--param: fuzz generates its scenarios; it takes no scenario parameters")
    if not 1 <= args.count <= MAX_COUNT:
        raise UsageError(f"--count: expected an integer from 1 to {MAX_COUNT:,}, got {args.count}")
    if args.budget is not None and args.budget < 1:
        raise UsageError(f"--budget: expected a positive integer, got {args.budget}")
    if not 0 <= args.parallel <= MAX_PARALLEL:
        raise UsageError(f"--parallel: expected an integer from 0 to {MAX_PARALLEL}, got {args.parallel}")
    if args.memory_limit is not None and args.strategy in SAMPLING and not args.check_reduction:
        # Ignored without a word, where explore refuses it: a sampled scenario keeps a hash per state.
        raise UsageError(f"--memory-limit: only with --strategy bfs or dfs, or --check-reduction (the searches that "
                         f"store their states, which it limits); --strategy {args.strategy} keeps a hash per state "
                         "and takes --budget runs")
    _check_out(args.out)
    try:
        cfg = config_from_args(args)
    except ConfigError as exc:  # (a --gather size out of range is named by config_from_args, for every command)
        raise UsageError(str(exc)) from None
    args.using = _using(args.using)
    try:  # a filter that too few drawn scenarios pass is the user's to change, before anything runs
        indices = scenario_indices(args.seed, args.count, args.using)
    except ValueError as exc:
        raise UsageError(f"--using: {exc}") from None
    budget = args.budget or (DEFAULT_RUNS if args.strategy in SAMPLING else DEFAULT_BUDGET)
    opts = FuzzOptions(cfg, budget, args.strategy, False if args.no_shrink else None, args.check_reduction)
    fitted = _fit_in_memory(args, opts, indices)
    if args.strategy in SAMPLING or fitted == budget:
        return opts  # pct/random: --budget counts runs, their stored search is the default's 10,000 states
    return FuzzOptions(cfg, fitted, args.strategy, opts.shrink, args.check_reduction)


# The first scenarios drawn stand for all when pricing a search's memory: the generator's bounds (1-3 pages, 2-4
# threads, short programs) keep their initial states within a small factor of each other.
PRICED_SCENARIOS = 8


def _fit_in_memory(args: argparse.Namespace, opts: Any, indices: list[int]) -> int:
    """The states each scenario's stored search may visit (the budget, or for pct/random the breadth-first search
    of the shortest schedule), checked against --memory-limit or the memory available (cli.memory_budget): a
    --budget that cannot fit is refused before the campaign, the default lowered. --check-reduction's full search
    takes FULL_BUDGET_FACTOR times it."""
    from fuzz.generate import generate, load_spec, scenario_name
    from fuzz.reduction_check import FULL_BUDGET_FACTOR

    scenarios = []
    for index in indices[:PRICED_SCENARIOS]:
        try:
            scenarios.append(load_spec(generate(args.seed, index), scenario_name(args.seed, index))[0])
        except ValueError:  # the loader refuses it: the campaign reports it, nothing to price
            continue
    sampling = opts.strategy in SAMPLING
    factor = FULL_BUDGET_FACTOR if opts.check_reduction else 1
    strategy = "dfs" if opts.check_reduction or opts.strategy == "dfs" else "bfs"
    # --parallel P on the embedded cluster runs P searches at once on this machine; a joined cluster's tasks run
    # on its nodes, each with its own memory.
    embedded = (args.address or os.environ.get("RAY_ADDRESS") or "local") == "local"
    states = fit_budget(scenarios, opts.cfg, strategy, factor * opts.exhaustive_budget,
                        given=args.budget is not None and not sampling, memory_limit=args.memory_limit,
                        hash_compact=False, label="fuzz: each search of a scenario such as",
                        at_once=args.parallel if embedded else 1)
    return states // factor


def _check_out(out: str) -> None:
    """--out is written only when a violation is found, maybe hours in: a path that cannot become a directory
    we may write is refused now, not after the campaign (which would lose what it found)."""
    from cli.errors import UsageError

    check_out_dir(out)  # not a file, nor under one, and something can be created there
    existing = nearest_existing(out)
    if not os.access(existing, os.W_OK | os.X_OK):  # permission bits (another user's directory): exit 2
        raise UsageError(f"--out {out}: {existing} is not writable, expected a directory this user may write")


def _on_ray(args: argparse.Namespace, opts: Any, on_outcome: Any) -> list[Any]:
    from cli.cmd_stress import check_ray_address, close_ray, open_ray
    from fuzz.run import run_ray

    check_ray_address(args)  # RAY_ADDRESS=junk was "cannot join the Ray cluster at junk", naming no variable
    session = open_ray(args, args.parallel)
    try:
        import ray

        from actors.ray_session import GcsWatch, gcs_lost

        parallel = args.parallel or max(1, int(ray.cluster_resources().get("CPU", 1)))
        watch = GcsWatch()
        try:
            # A head that is killed or vanishes: exit 3 and one line (actors.ray_session), not "interrupted" (130)
            # as if the user had pressed Ctrl-C, nor a wait for ever on a head that stopped answering.
            with watch:
                return run_ray(args.seed, args.count, opts, parallel, on_outcome, args.using)
        except KeyboardInterrupt:
            if gcs_lost():
                raise watch.lost() from None
            raise
    finally:
        close_ray(session)


def _using(text: str | None) -> frozenset[str]:
    """--using's operation kinds (kernel_model.program.OP_KINDS); an unknown one is a usage error."""
    from cli.errors import UsageError
    from kernel_model.program import OP_KINDS

    if text is None:
        return frozenset()
    from cli.options import comma_list, one_of

    try:
        return frozenset(comma_list(text, one_of(OP_KINDS), "a comma-separated list of operations: "
                                    + ", ".join(sorted(OP_KINDS))))
    except ValueError as exc:
        raise UsageError(f"--using: {exc}") from None


def _progress(args: argparse.Namespace) -> Any:
    """One line on stderr every 10% of the campaign (none with --json); with --verbose, one per scenario (with
    --json too: stderr is not the document's)."""
    if args.json and not args.verbose:
        return None
    done = [0]
    step = 1 if args.verbose else max(1, args.count // 10)

    def on_outcome(outcome: Any) -> None:
        done[0] += 1
        if done[0] % step == 0:
            detail = f" {_outcome_line(outcome)}" if args.verbose else ""
            print(f"tlbrace fuzz: {done[0]}/{args.count} scenarios{detail}", file=sys.stderr, flush=True)

    return on_outcome


def _outcome_line(o: Any) -> str:
    """One scenario's outcome for --verbose: "fuzz-0-7 (threads, ops, pages = (3, 5, 2)): 1,234 states,
    complete: no violation"."""
    if o.rejected:
        return f"{o.name}: refused by the loader (a generator bug): {one_line(o.rejected)}"
    verdict = ", ".join(o.invariants) or "no violation"
    if o.mismatch:
        verdict = f"reduction_mismatch: {one_line(o.mismatch)}"
    shrunk = f", shrunk from {tuple(o.original_size)}" if o.original_size else ""
    return (f"{o.name} (threads, ops, pages = {tuple(o.size)}{shrunk}): {o.states:,} states, "
            f"{'complete' if o.complete else 'within the budget'}: {verdict}")


class _ViolationFiles:
    """Each violation's scenario file and schedule file in --out, written as its outcome arrives; ``entries``:
    the report's line for each, by scenario index."""

    def __init__(self, out: str, cfg: Any, kernel: str | None, seed: int, strategy: str) -> None:
        self.out, self.cfg, self.seed, self.strategy = out, cfg, seed, strategy
        self.tag = "-".join(([f"v{kernel}"] if kernel else []) + [cfg.ordering, cfg.arch]
                            + ([cfg.mutant] if cfg.mutant else []))
        self.entries: dict[int, dict[str, Any]] = {}
        self.error: OSError | None = None  # the first violation that could not be written (a full disk)

    def write(self, o: Any) -> None:
        """The violation's files, if it is one. One that cannot be written (a full disk, --out gone read-only)
        ended the campaign at once, exit 3 and no report: the violations found so far and the scenarios still
        to run were lost. Now its entry says it was not saved, the campaign goes on (the later ones may fit, and
        each is in the report), and the first error ends the command once the report is out."""
        if not o.invariants:
            return
        try:
            self._write(o)
        except OSError as exc:
            self.error = self.error or exc
            self.entries[o.index] = {
                "invariant": o.invariant, "invariants": o.invariants, "scenario_file": None, "schedule_file": None,
                "not_saved": f"{exc.filename or self.out}: {exc.strerror or exc}", "name": o.name, "index": o.index,
                "size": list(o.size), "shrunk_from": list(o.original_size) if o.original_size else None}
            if o.known_race:
                self.entries[o.index]["known_race"] = o.known_race
            if o.race_check:
                self.entries[o.index]["race_check"] = o.race_check

    def _write(self, o: Any) -> None:
        from fuzz.generate import scenario_from_text
        from logs.schedule_file import ScheduleFile, write_schedule

        os.makedirs(self.out, exist_ok=True)
        # A scenario as generated is the same for every kernel (seed and index make it); shrunk, it is this
        # kernel's, and is named as its schedule is: two campaigns of one seed on two kernels writing one --out at
        # once (or one after the other) replaced each other's shrunk scenario under the shared name, and a report
        # then named a file that was not its scenario.
        stem = f"{o.name}-{self.tag}" if o.original_size else o.name
        scenario_file = os.path.join(self.out, f"{stem}.toml")
        with replaced_whole(scenario_file, "fuzz scenario") as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(o.text)
        if o.mismatch:  # no run to replay: the searches disagree on the whole state space
            self.entries[o.index] = {
                "invariant": o.invariant, "invariants": o.invariants, "scenario_file": scenario_file,
                "schedule_file": None, "mismatch": o.mismatch, "index": o.index, "size": list(o.size),
                "shrunk_from": None}
            return
        schedule_file = os.path.join(self.out, f"{o.name}-{self.tag}.schedule")
        scenario = scenario_from_text(o.text, o.name)
        write_schedule(schedule_file, ScheduleFile(scenario, self.cfg, [tuple(t) for t in o.schedule],
                                                   o.invariants, self.strategy, self.seed))
        self.entries[o.index] = {
            "invariant": o.invariant, "invariants": o.invariants, "scenario_file": scenario_file,
            "schedule_file": schedule_file, "steps": len(o.schedule), "index": o.index, "size": list(o.size),
            "shrunk_from": list(o.original_size) if o.original_size else None}
        if o.known_race:  # a real kernel race the model shows (fuzz.known_races), not a model bug
            self.entries[o.index]["known_race"] = o.known_race
        if o.race_check:  # the search with that race's window closed (kept when it refuted the label too)
            self.entries[o.index]["race_check"] = o.race_check


def _report(args: argparse.Namespace, opts: Any, outcomes: list[Any], files: _ViolationFiles,
            seconds: float) -> dict[str, Any]:
    """The campaign's report (the issue's JSON keys first); violations in scenario order."""
    cfg = opts.cfg
    violations = [files.entries[o.index] for o in outcomes if o.index in files.entries]
    explored = [o for o in outcomes if not o.rejected]
    return {
        "generated": len(outcomes),
        "explored": len(explored),
        "complete": sum(1 for o in explored if o.complete),
        "reduction_checked": sum(1 for o in explored if o.reduction_checked),
        "violations": violations,
        "seconds": round(seconds, 3),
        "using": sorted(args.using),
        "seed": args.seed, "ordering": cfg.ordering, "arch": cfg.arch, "mutant": cfg.mutant, "kernel": args.kernel,
        "without": list(cfg.without),
        "budget": opts.budget, "strategy": opts.strategy, "states": sum(o.states for o in explored),
        "by_invariant": dict(sorted(Counter(v["invariant"] for v in violations).items())),
        "rejected": [{"index": o.index, "error": o.rejected} for o in outcomes if o.rejected],
    }


def _print_report(report: dict[str, Any]) -> None:
    n = report["generated"]
    found = len(report["violations"])
    kernel = f"kernel {report['kernel']}, " if report["kernel"] else ""
    print(f"tlbrace fuzz: {n} scenarios ({kernel}{report['ordering']}, {report['arch']}"
          f"{', mutant ' + report['mutant'] if report['mutant'] else ''}, seed {report['seed']}, budget "
          f"{report['budget']} {'runs' if report['strategy'] in SAMPLING else 'states'}, {report['strategy']}): "
          f"{report['explored']} explored, {report['complete']} completely; "
          f"{found} with a violation ({100.0 * found / max(n, 1):.1f}%); {report['seconds']:.1f} s")
    if report["reduction_checked"]:
        print(f"  --check-reduction: reduced, merged and full searches compared on {report['reduction_checked']} "
              "scenarios (the others did not fit the budget)")
    for name, count in report["by_invariant"].items():
        print(f"  {name}: {count}")
    for v in report["violations"][:20]:
        shrunk = f", shrunk from {tuple(v['shrunk_from'])}" if v["shrunk_from"] else ""
        known = (f" [known kernel race: {v['known_race']}, {KNOWN_RACE_DOCS.get(v['known_race'], 'docs/')}; "
                 f"{v['race_check']}]" if v.get("known_race") else
                 f" [not the known kernel race its conditions suggest: {v['race_check']}]" if v.get("race_check")
                 else "")
        if v.get("not_saved"):
            print(f"  {v['invariant']}{known}: {v['name']} (threads, ops, pages = {tuple(v['size'])}{shrunk}) not "
                  f"saved ({v['not_saved']}): the same command draws it again (scenario {v['index']} of --seed "
                  f"{report['seed']})")
            continue
        print(f"  {v['invariant']}{known}: {v['scenario_file']} (threads, ops, pages = {tuple(v['size'])}{shrunk}); "
              + (v["mismatch"] if v.get("mismatch") else f"tlbrace replay {v['schedule_file']}"))
    if found > 20:
        print(f"  ... and {found - 20} more (--json lists them all)")
    for r in report["rejected"]:
        print(f"  generator bug: scenario {r['index']} refused by the loader: {r['error']}")
