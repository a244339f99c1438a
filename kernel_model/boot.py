"""The machine before the first step, and where each thread runs: one definition for both runtimes.

Each scenario thread is a task on its own CPU (under arch=up every thread shares CPU 0 and its TLB). The wild
runtime must start from the very state a replay in the controlled machine starts from, so both build it here.
"""

from __future__ import annotations

from kernel_model.config import Config
from kernel_model.context import Kctx
from kernel_model.program import Scenario, flatten, remaps
from kernel_model.state import State


def cpu_of(scenario: Scenario, cfg: Config) -> list[int]:
    """Thread id -> CPU."""
    return [0 if cfg.arch == "up" else t for t in range(len(scenario.threads))]


def ncpus(scenario: Scenario, cfg: Config) -> int:
    return 1 if cfg.arch == "up" else len(scenario.threads)


def thread_contexts(scenario: Scenario, cfg: Config) -> list[Kctx]:
    """Every thread's context. What they share is computed once: each fact walks every thread's unrolled
    program, so computing it per thread made a machine of 999 writers of 1,000 stores take minutes to build."""
    setup = scenario.setup
    # Threads made by one `count` share one program: look at each distinct program once.
    distinct = tuple({id(t.ops): t for t in scenario.threads}.values())
    kinds = {op.kind for t in distinct for op in flatten(t.ops)}
    remapping = remaps(distinct)
    return [Kctx(cfg, tid, cpu, setup.ptes_per_table, setup.anon, setup.write_notify, "reclaim" in kinds, remapping,
                 "munmap" in kinds, "mprotect" in kinds, "ftruncate" in kinds)
            for tid, cpu in enumerate(cpu_of(scenario, cfg))]


def thread_context(scenario: Scenario, cfg: Config, tid: int) -> Kctx:
    """Thread ``tid``'s context (one CPU actor of the wild runtime needs only its own)."""
    return thread_contexts(scenario, cfg)[tid]


def warm_cpus(scenario: Scenario, cfg: Config) -> tuple[int, ...]:
    """The CPUs whose TLB starts with an entry for every mapped page."""
    cpus = cpu_of(scenario, cfg)
    return tuple(sorted({cpus[scenario.thread_index(n)] for n in scenario.setup.warm_tlb}))


def initial_state(scenario: Scenario, cfg: Config) -> State:
    setup = scenario.setup
    cpus = cpu_of(scenario, cfg)
    warm = warm_cpus(scenario, cfg)
    return State.initial(setup.pages, setup.ptes_per_table, ncpus(scenario, cfg), len(scenario.threads),
                         anon=setup.anon, mapped=setup.mapped, warm_cpus=warm, dirty=setup.dirty,
                         write_notify=setup.write_notify)
