"""One row of a parallel-search measurement: a cell searched on one process and on ``workers``, side by side.

For bench/bench_explore.py (its ladder) and for the figures in issue 17's note. On a machine whose cores other
work shares, wall time says little on its own, so a row gives CPU time (this process and its reaped children,
the workers: ``resource.getrusage``) and the load average next to it. The one-process search is the one the
workers must agree with (hash compaction, no sleep sets: controlled/parallel_search.py, "Exact counts"), so
the row also says whether the counts are equal.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import asdict, dataclass

from controlled.explorer import explore
from kernel_model.config import Config
from kernel_model.program import Scenario


@dataclass(frozen=True)
class Run:
    complete: bool
    states: int
    transitions: int
    wall: float  # seconds
    cpu: float  # seconds of CPU, user + system, this process and the workers it reaped
    load: float  # the 1-minute load average when it ended

    @property
    def states_per_second(self) -> float:
        return self.states / self.wall if self.wall else 0.0


@dataclass(frozen=True)
class BenchRow:
    scenario: str
    params: dict
    ordering: str
    workers: int
    one: Run
    many: Run

    @property
    def same_counts(self) -> bool:
        return (self.one.states, self.one.transitions) == (self.many.states, self.many.transitions)

    @property
    def speedup(self) -> float:
        return self.one.wall / self.many.wall if self.many.wall else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "same_counts": self.same_counts, "speedup": round(self.speedup, 2)}

    def line(self) -> str:
        cell = " ".join(f"{k}={v}" for k, v in self.params.items())
        return (f"{self.scenario} {cell} {self.ordering}: {self.one.states:,} states "
                f"(workers: {self.many.states:,}, {'equal' if self.same_counts else 'DIFFERENT'}); "
                f"1 process {self.one.wall:.1f} s wall / {self.one.cpu:.1f} s CPU (load {self.one.load:.2f}); "
                f"{self.workers} workers {self.many.wall:.1f} s wall / {self.many.cpu:.1f} s CPU "
                f"(load {self.many.load:.2f}); speedup {self.speedup:.2f}x")


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(sc: Scenario, ordering: str, workers: int, symmetric: bool = True, budget: int = 20_000_000,
          time_limit: float | None = None) -> Run:
    """One exhaustive dfs with hash compaction and no sleep sets, on ``workers`` processes (1: this one). The
    shared table is sized for ``budget`` (controlled.shared_words.SharedVisited): 20 million states is 256 MiB of
    table, whose page faults cost about 0.3 s of system time once touched."""
    cpu0, t0 = _cpu(), time.perf_counter()
    r = explore(sc, Config(ordering=ordering), "dfs", budget=budget, time_limit=time_limit, hash_compact=True,
                sleep_sets=False, symmetric=symmetric, workers=workers, stop_at_first=False)
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    return Run(r.complete, r.states, r.transitions, wall, cpu, os.getloadavg()[0])


def bench_row(sc: Scenario, ordering: str = "delayed", workers: int = 2, symmetric: bool = True,
              time_limit: float | None = None) -> BenchRow:
    """The scenario (e.g. ``load_scenario("ladder", {"pages": 1, "writers": 2, "stores": 2, "passes": 1})``) on
    one process, then on ``workers``."""
    one = timed(sc, ordering, 1, symmetric, time_limit=time_limit)
    many = timed(sc, ordering, workers, symmetric, time_limit=time_limit)
    return BenchRow(sc.name, dict(sc.params), ordering, workers, one, many)
