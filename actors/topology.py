"""Which scenario thread runs on which simulated CPU, and the machine before the first step.

Mirrors ``controlled.machine.Machine``'s constructor exactly (one CPU per thread; under arch=up every thread
shares CPU 0 and its TLB), so that the wild runtime starts from the very state a replay starts from.
"""

from __future__ import annotations

from dataclasses import dataclass

from kernel_model import boot
from kernel_model.config import Config
from kernel_model.program import Op, Scenario, flatten
from kernel_model.state import State


@dataclass(frozen=True, slots=True)
class Topology:
    ncpus: int
    cpu_of: tuple[int, ...]  # thread id -> CPU

    @classmethod
    def of(cls, scenario: Scenario, cfg: Config) -> "Topology":
        return cls(boot.ncpus(scenario, cfg), tuple(boot.cpu_of(scenario, cfg)))

    def threads_on(self, cpu: int) -> tuple[int, ...]:
        return tuple(t for t, c in enumerate(self.cpu_of) if c == cpu)


def initial_state(scenario: Scenario, cfg: Config) -> State:
    return boot.initial_state(scenario, cfg)  # the very state a replay in the controlled machine starts from


def programs(scenario: Scenario) -> list[list[Op]]:
    return [flatten(t.ops) for t in scenario.threads]
