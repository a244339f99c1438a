"""Print what the controlled explorer finds for every library scenario x ordering x arch, and for each row of the
mutant table: the baseline that a restructuring must reproduce exactly (issue 13, "behaviour is identical").

One line per search: the configuration, how the search ended, states, transitions, terminal schedules, and the
verdict (the invariants of the first violation, and its schedule's length). Each search is the CLI's default
(``tlbrace explore``: bfs with partial-order reduction and writer symmetry, stopping at the first violation)
capped at ``--budget`` states, so the whole run takes minutes. How it ended: ``complete`` (the whole reduced
state space), ``stopped`` (at its first violation), or ``CAPPED`` (the budget ran out first: a partial
fingerprint). The figures are deterministic: run it before and after a change and diff the two outputs.

    PYTHONPATH=. .venv/bin/python scripts/explore_fingerprint.py [--budget N] [--only NAME ...] > before.txt
"""

from __future__ import annotations

import argparse
import sys
import time
from itertools import chain
from typing import Iterator

from analysis.mutant_table import MUTANT_TABLE
from controlled.explorer import ExploreResult, explore
from kernel_model.config import ARCHES, ORDERINGS, Config
from kernel_model.program import Scenario
from scenarios.loader import library_names, load_scenario

DEFAULT_BUDGET = 200_000
# mkclean_ignores_result has no row (not observable for data in this model); tests/test_explore.py proves it
# harmless on these scenarios, so its fingerprint is taken there.
HARMLESS_MUTANT_SCENARIOS = ("madv_dontneed", "mkclean_first", "writable_clean")


def fingerprint(result: ExploreResult) -> str:
    # Not complete: either the first violation stopped the search (as the CLI does), or the budget did.
    scope = "complete" if result.complete else "stopped" if result.found else "CAPPED"
    verdict = "clean"
    if result.found:
        first = result.found[0]
        verdict = f"{','.join(first.invariants)} in {len(first.schedule)} steps"
    return (f"{scope} states={result.states} transitions={result.transitions} schedules={result.schedules} "
            f"verdict={verdict}")


def search(scenario: Scenario, budget: int, **config: object) -> str:
    cfg = Config.from_dict({**scenario.config, **config})
    shown = {"ordering": cfg.ordering, "arch": cfg.arch, **{k: v for k, v in config.items() if k != "mutant"}}
    if cfg.mutant:
        shown["mutant"] = cfg.mutant
    label = " ".join(f"{k}={v}" for k, v in shown.items())
    return f"{scenario.name} {label}: {fingerprint(explore(scenario, cfg, 'bfs', budget=budget))}"


def library_lines(names: list[str], budget: int) -> Iterator[str]:
    for name in names:
        scenario = load_scenario(name)
        for ordering in ORDERINGS:
            for arch in ARCHES:
                yield search(scenario, budget, ordering=ordering, arch=arch)


def mutant_lines(names: list[str] | None, budget: int) -> Iterator[str]:
    for mutant, row in MUTANT_TABLE.items():
        rows = [(row[0], row[1])] if row else [(name, {}) for name in HARMLESS_MUTANT_SCENARIOS]
        for name, base in rows:
            if names is None or name in names:
                scenario = load_scenario(name)
                yield f"mutant {mutant}: base   {search(scenario, budget, **base)}"
                yield f"mutant {mutant}: caught {search(scenario, budget, **base, mutant=mutant)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=DEFAULT_BUDGET, help=f"most states per search "
                                                                           f"(default {DEFAULT_BUDGET})")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these library scenarios")
    args = parser.parse_args(argv)
    names = library_names()
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown or args.budget < 1:
        print(f"explore_fingerprint: error: --only: no library scenario {', '.join(unknown)}" if unknown else
              f"explore_fingerprint: error: --budget: expected a positive integer, got {args.budget}",
              file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    chosen = args.only or names
    print(f"# explore fingerprint: bfs, budget {args.budget} states per search")
    for line in chain(library_lines(chosen, args.budget), mutant_lines(args.only, args.budget)):
        print(line, flush=True)
    print(f"# {time.perf_counter() - t0:.0f} s (not part of the fingerprint)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
