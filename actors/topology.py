"""Which scenario thread runs on which simulated CPU, and the machine before the first step.

Mirrors ``kernel_model.machine.Machine``'s constructor exactly (one CPU per thread; under arch=up every thread
shares CPU 0 and its TLB), so that the wild runtime starts from the very state a replay starts from.
"""

from __future__ import annotations

from dataclasses import dataclass

from kernel_model.config import Config
from kernel_model.program import Op, Scenario, flatten
from kernel_model.state import State


@dataclass(frozen=True, slots=True)
class Topology:
    ncpus: int
    cpu_of: tuple[int, ...]  # thread id -> CPU

    @classmethod
    def of(cls, scenario: Scenario, cfg: Config) -> "Topology":
        n = len(scenario.threads)
        up = cfg.arch == "up"
        return cls(1 if up else n, tuple(0 if up else t for t in range(n)))

    def threads_on(self, cpu: int) -> tuple[int, ...]:
        return tuple(t for t, c in enumerate(self.cpu_of) if c == cpu)


def initial_state(scenario: Scenario, cfg: Config) -> State:
    topo = Topology.of(scenario, cfg)
    setup = scenario.setup
    warm = tuple(sorted({topo.cpu_of[scenario.thread_index(n)] for n in setup.warm_tlb}))
    return State.initial(setup.pages, setup.ptes_per_table, topo.ncpus, len(scenario.threads), anon=setup.anon,
                         mapped=setup.mapped, warm_cpus=warm)


def programs(scenario: Scenario) -> list[list[Op]]:
    return [flatten(t.ops) for t in scenario.threads]
