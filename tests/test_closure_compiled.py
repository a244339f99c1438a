"""The compiled conflict closure (controlled/_closure.pyx) gives the Python closure's members (controlled.closure).

Both close a set of agents under the same rules over bit sets; the compiled one only runs them over C words.
These run both side by side on every closure of real searches (two interchangeable writers, where every seed is
tried; and munmap, three CPUs whose IPIs the conditional rules weigh), and on random inputs of up to 64 agents.
"""

from __future__ import annotations

import random

import pytest

from controlled.closure import WORD, Closure, compiled_closure
from controlled.depth_first import dfs_holding
from controlled.machine import Machine
from controlled.visited import CompactKeys
from kernel_model.config import Config
from scenarios.loader import load_scenario
from tests.compiled_required import skip_unless_built

COMPILED = compiled_closure()
needs_compiled = pytest.mark.skipif(COMPILED is None,
                                    reason="controlled._closure is not built (bash scripts/setup.sh builds it)")


def test_the_compiled_closure_is_built():
    """scripts/setup.sh builds controlled/_closure.pyx; without a compiler the Python closure runs (and this test
    says so rather than passing quietly)."""
    skip_unless_built(COMPILED is not None, "controlled._closure (the Python closure runs)")


class BothClosures:
    """A Closure for the reducer that closes each seed both ways and fails on the first difference."""

    calls = 0
    closed = 0  # closures that found a set

    def __init__(self, *args: object) -> None:
        self.args = args
        self.fast, self.slow = COMPILED(*args), Closure(*args)  # type: ignore[misc]

    def close(self, seed: int, bound: int) -> int:
        fast, slow = self.fast.close(seed, bound), self.slow.close(seed, bound)
        assert fast == slow, f"seed {seed}, bound {bound}, {self.args}: compiled {fast:b} != Python {slow:b}"
        BothClosures.calls += 1
        BothClosures.closed += bool(fast)
        return fast


@needs_compiled
@pytest.mark.parametrize("name, params, ordering", [("ladder", {"pages": 1, "writers": 2, "stores": 1}, "delayed"),
                                                    ("munmap", {}, "delayed")],
                         ids=["two-writers", "munmap"])
def test_both_closures_agree_on_every_closure_of_a_search(name, params, ordering):
    m = Machine(load_scenario(name, params), Config(ordering=ordering), reduce=True)
    assert m.reducer is not None
    m.reducer._closure = BothClosures  # noqa: SLF001
    BothClosures.calls = BothClosures.closed = 0
    result, _ = dfs_holding(m, CompactKeys(compiled=False))
    assert result.complete and result.states > 1_000
    assert BothClosures.calls > result.states // 10 and 0 < BothClosures.closed < BothClosures.calls


@needs_compiled
def test_both_closures_agree_on_random_relations_of_up_to_64_agents():
    rng = random.Random(17)
    for _ in range(20_000):
        nagents = rng.randint(1, WORD)
        nthreads = rng.randint(0, nagents)
        ncpus = nagents - nthreads

        def sparse() -> int:
            return rng.getrandbits(nagents) & rng.getrandbits(nagents) & rng.getrandbits(nagents)

        cpu_of = [rng.randrange(max(ncpus, 1)) for _ in range(nthreads)]
        args = (nthreads, cpu_of, [sparse() for _ in range(nagents)], [sparse() for _ in range(nagents)],
                [rng.randint(1, 3) for _ in range(nagents)], sparse() & sparse(), rng.getrandbits(nagents) | 1,
                rng.getrandbits(nthreads) if nthreads else 0, [rng.getrandbits(max(ncpus, 1)) for _ in range(nthreads)],
                [rng.getrandbits(max(ncpus, 1)) for _ in range(nthreads)], rng.getrandbits(max(ncpus, 1)))
        fast, slow = COMPILED(*args), Closure(*args)  # type: ignore[misc]
        for seed in range(nagents):
            bound = rng.randint(1, 3 * nagents + 1)
            assert fast.close(seed, bound) == slow.close(seed, bound), (args, seed, bound)
