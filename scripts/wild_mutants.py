"""Does real scheduling reach each mutant the explorer catches? One stress campaign per mutant, on the scenario
and base configuration of analysis.mutant_table, on the embedded local Ray cluster; prints a table of how
many trials violated the mutant's invariant (and, as a control, the same campaign without the mutant).

Nothing here forces an interleaving: these are ordinary campaigns (optionally with --jitter). A mutant with 0
hits in N trials has a window real scheduling did not reach in N trials; the explorer's counterexample length
says how narrow it is.

    PYTHONPATH=. python scripts/wild_mutants.py [--trials 200] [--jitter US] [--hang-timeout S] [--only MUTANT ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from actors import ray_session  # noqa: E402  (Ray's environment before `import ray`)
from actors.campaign import CampaignOptions, run_campaign  # noqa: E402
from analysis.mutant_table import MUTANT_TABLE  # noqa: E402
from controlled.explorer import explore  # noqa: E402
from kernel_model.config import MUTANT_BREAKS, Config  # noqa: E402
from scenarios.loader import load_scenario  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--jitter", type=float, default=0.0, help="max pause at race points, µs (default none)")
    ap.add_argument("--only", nargs="*", default=None, help="mutants to run (default: every observable one)")
    ap.add_argument("--hang-timeout", type=float, default=1.0,
                    help="seconds without progress before a trial is hung (the deadlock mutants hang every trial)")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback-only embedded cluster, as `tlbrace stress`
    session = ray_session.open_session(None, num_cpus=2)
    rows = []
    try:
        for mutant, where in MUTANT_TABLE.items():
            if where is None or (args.only and mutant not in args.only):
                continue
            rows.append(_row(mutant, *where, args))
            print(" | ".join(str(c) for c in rows[-1]), flush=True)
    finally:
        ray_session.close_session(session)
    _print_table(rows, args)
    return 0


def _row(mutant: str, name: str, base: dict, args: argparse.Namespace) -> list:
    """One mutant's row: its scenario, the explorer's counterexample length, and the wild hit rates with the
    mutant and without it (the control)."""
    scenario = load_scenario(name)
    row: list = [mutant, name, ", ".join(f"{k}={v}" for k, v in base.items()) or "defaults", MUTANT_BREAKS[mutant]]
    steps = explore(scenario, Config.from_dict({**scenario.config, **base, "mutant": mutant}))
    row.append(len(steps.found[0].schedule) if steps.found else "-")
    for mut in (mutant, None):
        cfg = Config.from_dict({**scenario.config, **base, "mutant": mut})
        t0 = time.perf_counter()
        result = run_campaign(scenario, cfg, CampaignOptions(trials=args.trials, parallel=2, jitter_us=args.jitter,
                                                             seed=1, hang_timeout=args.hang_timeout))
        hits = result.by_invariant.get(MUTANT_BREAKS[mutant], 0)
        other = {k: v for k, v in result.by_invariant.items() if k != MUTANT_BREAKS[mutant]}
        bad = {k: v for k, v in result.by_status.items() if k in ("crashed", "diverged") and v}
        row.append(f"{hits}/{result.trials}" + (f" {other}" if other else "") + (f" {bad}" if bad else ""))
        if mut:
            row.append(f"{time.perf_counter() - t0:.0f}s")
    return row


def _print_table(rows: list[list], args: argparse.Namespace) -> None:
    print()
    header = ["mutant", "scenario", "base", "invariant", "explorer steps", "wild hits (mutant)", "time",
              "control (no mutant)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    missed = [r[0] for r in rows if str(r[5]).startswith("0/")]
    print(f"\njitter {args.jitter:g} µs, {args.trials} trials per campaign; not reached: {', '.join(missed) or 'none'}")


if __name__ == "__main__":
    sys.exit(main())
