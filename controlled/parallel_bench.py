"""One row of a parallel-search measurement: a cell searched on one process and on ``workers``, side by side.

For bench/bench_explore.py (its workers section) and for the figures in issue 17's note. Each search runs in a
fresh process. On a machine whose cores other work shares, wall time says little on its own, so a row gives CPU
time (the search's process and its reaped children, the workers: ``resource.getrusage``), CPU per state (robust
to the load: what a state costs) and the load average next to it. The one-process search is the one the
workers must agree with (hash compaction, no sleep sets: controlled/parallel_search.py, "Exact counts"), so
the row also says whether the counts are equal.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from controlled.explorer import DEFAULT_BUDGET
from kernel_model.program import Scenario


@dataclass(frozen=True)
class Run:
    complete: bool
    states: int
    transitions: int
    wall: float  # seconds
    cpu: float  # seconds of CPU, user + system, this process and the workers it reaped
    load: float  # the 1-minute load average when it ended
    forked: int = 1  # processes that searched (controlled.parallel_search forks only after its seed phase)

    @property
    def states_per_second(self) -> float:
        return self.states / self.wall if self.wall else 0.0

    @property
    def cpu_per_state(self) -> float:
        """Microseconds of CPU per state: what a process pays for a state, whatever else shares the cores."""
        return 1e6 * self.cpu / self.states if self.states else 0.0


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

    @property
    def cpu_ratio(self) -> float:
        """CPU per state on the workers over one process's: what the workers pay more for a state (1.0: nothing).
        The speed-up a quiet machine would give is at most ``workers / cpu_ratio``."""
        return self.many.cpu_per_state / self.one.cpu_per_state if self.one.cpu_per_state else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "same_counts": self.same_counts, "speedup": round(self.speedup, 2),
                "cpu_ratio": round(self.cpu_ratio, 3)}

    def _unforked(self) -> str:
        return "" if self.many.forked == self.workers else f" (ran on {self.many.forked}: it ended before the fork)"

    def line(self) -> str:
        cell = " ".join(f"{k}={v}" for k, v in self.params.items())
        return (f"{self.scenario} {cell} {self.ordering}: {self.one.states:,} states "
                f"(workers: {self.many.states:,}, {'equal' if self.same_counts else 'DIFFERENT'}); "
                f"1 process {self.one.wall:.1f} s wall / {self.one.cpu:.1f} s CPU, {self.one.cpu_per_state:.1f} us "
                f"CPU/state (load {self.one.load:.2f}); {self.workers} workers{self._unforked()} "
                f"{self.many.wall:.1f} s wall / "
                f"{self.many.cpu:.1f} s CPU, {self.many.cpu_per_state:.1f} us CPU/state (load {self.many.load:.2f}); "
                f"speed-up {self.speedup:.2f}x, CPU per state x{self.cpu_ratio:.2f}")


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


# One search in a fresh interpreter: its CPU (its own and its reaped workers') and wall time around explore(),
# so neither the interpreter's start nor what an earlier search left in this process (the positions memo shared
# by machines of one scenario, a large heap to fork) counts.
_CHILD = """
import json, sys, time
from controlled import parallel_bench, parallel_search
from controlled.explorer import explore
from kernel_model.config import Config
from scenarios.loader import load_scenario
a = json.loads(sys.argv[1])
if a["fork_after"] is not None:
    parallel_search.FORK_AFTER_SECONDS = a["fork_after"]
sc = load_scenario(a["scenario"], a["params"])
cpu0, t0 = parallel_bench._cpu(), time.perf_counter()
r = explore(sc, Config(ordering=a["ordering"]), "dfs", budget=a["budget"], time_limit=a["time_limit"],
            hash_compact=True, sleep_sets=False, symmetric=a["symmetric"], workers=a["workers"], stop_at_first=False)
wall, cpu = time.perf_counter() - t0, parallel_bench._cpu() - cpu0
print(json.dumps([r.complete, r.states, r.transitions, wall, cpu, r.workers]))
"""


def timed(sc: Scenario, ordering: str, workers: int, symmetric: bool = True, budget: int = DEFAULT_BUDGET["dfs"],
          time_limit: float | None = None, fork_after: float | None = None) -> Run:
    """One exhaustive dfs with hash compaction and no sleep sets, on ``workers`` processes (1: one), in a fresh
    process (a library scenario: by its name and parameters). The shared table is sized for ``budget``
    (controlled.shared_words.SharedVisited), by default the command's (2 million states: 32 MiB of table). A
    larger one costs the workers its page faults as the search touches it (20 million: 256 MiB; on ladder
    pages=1 writers=2 stores=2 without symmetry, 303,420 states, 0.4 s more of system time, 4% more CPU per
    state). ``fork_after``: the seed phase's time before the workers fork (None: parallel_search's)."""
    args = {"scenario": sc.name, "params": dict(sc.params), "ordering": ordering, "workers": workers,
            "symmetric": symmetric, "budget": budget, "time_limit": time_limit, "fork_after": fork_after}
    root = Path(__file__).resolve().parent.parent  # the directory holding the packages
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], capture_output=True, text=True, env=env,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"parallel bench: the search of {sc.name} failed:\n{out.stderr}")
    complete, states, transitions, wall, cpu, forked = json.loads(out.stdout.strip().splitlines()[-1])
    return Run(complete, states, transitions, wall, cpu, os.getloadavg()[0], forked)


def bench_row(sc: Scenario, ordering: str = "delayed", workers: int = 2, symmetric: bool = True,
              time_limit: float | None = None, fork_after: float | None = None) -> BenchRow:
    """The scenario (e.g. ``load_scenario("ladder", {"pages": 1, "writers": 2, "stores": 2, "passes": 1})``) on
    one process, then on ``workers``."""
    one = timed(sc, ordering, 1, symmetric, time_limit=time_limit)
    many = timed(sc, ordering, workers, symmetric, time_limit=time_limit, fork_after=fork_after)
    return BenchRow(sc.name, dict(sc.params), ordering, workers, one, many)
