"""Command-line options that several subcommands share, and how they become a Scenario and a Config.

The configuration of a run is the scenario file's ``[config]`` table, overridden by what the command line says.
"""

from __future__ import annotations

import argparse
from typing import Any

from kernel_model.config import ARCHES, DELAYED_BATCHES, MUTANTS, ORDERINGS, Config
from kernel_model.program import Scenario


def add_scenario_options(p: argparse.ArgumentParser, *, scenario_arg: bool = True) -> None:
    if scenario_arg:
        p.add_argument("scenario", metavar="SCENARIO", help="a library scenario name or the path of a TOML file")
    p.add_argument("--param", action="append", default=[], metavar="NAME=INT",
                   help="override a scenario parameter (repeatable), e.g. --param pages=2")
    p.add_argument("--ordering", choices=ORDERINGS, help="eager (v6.1: rmap removed before the flush) or "
                   "delayed (the patch)")
    p.add_argument("--arch", choices=ARCHES, help="smp, up or s390")
    p.add_argument("--mutant", choices=MUTANTS, help="run a deliberately wrong kernel")
    p.add_argument("--delayed-batches", choices=DELAYED_BATCHES,
                   help="where delayed rmaps may sit: active (the seed patch) or local+active (c47454823bd4)")
    p.add_argument("--gather", action="append", default=[], metavar="FIELD=INT",
                   help="mmu_gather size override: mmu_gather_bundle, max_gather_batch, max_gather_batch_count")


def add_output_options(p: argparse.ArgumentParser, *, default_out: str = "tlbrace-out") -> None:
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--json", action="store_true", help="print one machine-readable JSON object on stdout")
    p.add_argument("--out", default=default_out, metavar="DIR", help=f"where files go (default {default_out})")


def load(args: argparse.Namespace) -> tuple[Scenario, Config]:
    from scenarios.loader import load_scenario, parse_params

    scenario = load_scenario(args.scenario, parse_params(args.param))
    return scenario, config_from_args(args, scenario.config)


def config_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None) -> Config:
    """``base`` (a scenario's [config] table) overridden by the command line's configuration options."""
    from scenarios.cli import UsageError

    overrides: dict[str, Any] = {}
    for key in ("ordering", "arch", "mutant", "delayed_batches"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    for item in getattr(args, "gather", []):
        name, sep, value = item.partition("=")
        if not sep or name not in ("mmu_gather_bundle", "max_gather_batch", "max_gather_batch_count"):
            raise UsageError(f"--gather {item!r}: expected mmu_gather_bundle|max_gather_batch|"
                             "max_gather_batch_count=INT")
        try:
            overrides[name] = int(value)
        except ValueError:
            raise UsageError(f"--gather {item!r}: {value!r} is not an integer") from None
    return Config.from_dict({**(base or {}), **overrides})
