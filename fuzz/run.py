"""A fuzz campaign: generate scenario i, explore it (a bounded search, or runs sampled from its seed), shrink it
if it fails on a kernel that should not; serially, or as Ray tasks spread over a cluster.

Scenario i's outcome depends on (seed, i, options) alone, so a campaign gives the same outcomes, in index order,
however its scenarios are spread: serial, ``--parallel P`` on the embedded Ray, or ``--address`` on a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from controlled.explorer import explore
from controlled.replay import run_schedule
from fuzz.generate import Spec, generate, kinds_of, load_spec, scenario_name, scenario_seed, uses
from fuzz.known_races import REFUTED, check_known_race, expects_no_bug, known_kernel_race
from fuzz.reduction_check import reduction_mismatch
from fuzz.shrink import shrink
from kernel_model.config import Config

DEFAULT_BUDGET = 10_000  # states per scenario: about half the generated scenarios are explored whole within it
# Depth first by default: most invariants that matter (lost_dirty_data at quiescence, hang) are judged at the end
# of a run, and a bounded breadth-first search of a larger scenario never gets there (seed 1, eager, 200
# scenarios at 3,000 states: BFS found no lost_dirty_data, DFS 7). A schedule found by DFS is long, so the
# schedule written out is a breadth-first (shortest) one of the final scenario when its budget finds one.
STRATEGIES = ("dfs", "bfs", "pct", "random")
# Sampling strategies (controlled.explorer._sample): the budget is runs, each a whole schedule drawn from the
# scenario's own seed (PCT's priorities, or uniformly random steps). A bounded DFS sees the first branches of a
# large scenario in full and nothing of the rest; runs sampled to their ends reach its deep states, where lost
# data and hangs are judged.
SAMPLING = ("pct", "random")
DEFAULT_RUNS = 300  # pct/random: runs per scenario (a few ms each)
REDUCTION_MISMATCH = "reduction_mismatch"  # --check-reduction's finding: not an invariant of the kernel's


@dataclass(frozen=True, slots=True)
class FuzzOptions:
    cfg: Config
    budget: int = DEFAULT_BUDGET
    strategy: str = "dfs"
    shrink: bool | None = None  # None: shrink exactly when the kernel should be correct (``expects_no_bug``)
    check_reduction: bool = False  # also judge the reductions against the full search (fuzz.reduction_check)

    @property
    def exhaustive_budget(self) -> int:
        """States for a bounded search of one scenario (the shortest schedule, --check-reduction): the budget,
        or for a sampling strategy, whose budget counts runs, the default."""
        return DEFAULT_BUDGET if self.strategy in SAMPLING else self.budget

    @property
    def shrinks(self) -> bool:
        return expects_no_bug(self.cfg) if self.shrink is None else self.shrink


@dataclass(slots=True)
class Outcome:
    """Scenario ``index``: what was explored, and its violation if any (plain data: it crosses Ray)."""

    index: int
    name: str
    text: str  # the scenario file (shrunk when it was); "" without a violation (a long campaign keeps no copy)
    states: int = 0
    complete: bool = False
    invariants: list[str] = field(default_factory=list)  # empty: no violation
    schedule: list[list[Any]] = field(default_factory=list)  # the counterexample, as replay runs it
    original_size: tuple[int, int, int] | None = None  # (threads, ops, pages) before shrinking, if shrunk
    size: tuple[int, int, int] = (0, 0, 0)
    rejected: str = ""  # the loader refused the generated scenario (a fuzzer bug): its message
    mismatch: str = ""  # --check-reduction: how the reduced and full searches disagreed (fuzz.reduction_check)
    reduction_checked: bool = False  # --check-reduction: every search fitted, and they were compared
    node: str = ""  # the Ray node that explored it ("" in process); not part of the report
    # The violation is a known kernel race (known_kernel_race), not a model bug: not shrunk on a kernel that
    # expects_no_bug, and labelled in the report.
    known_race: str = ""
    # What searching the scenario again with that race's window closed found (fuzz.known_races.RaceCheck): a
    # label it refutes is dropped, and the violation is shrunk and reported as unexplained.
    race_check: str = ""

    @property
    def invariant(self) -> str | None:
        return self.invariants[0] if self.invariants else None


def fuzz_one(seed: int, index: int, opts: FuzzOptions) -> Outcome:
    name = scenario_name(seed, index)
    spec = generate(seed, index)
    try:
        scenario, text = load_spec(spec, name)
    except ValueError as exc:  # ScenarioError / AnalysisError: the generator drew what the loader refuses
        return Outcome(index, name, "", rejected=str(exc), size=spec.size())
    sample_seed = scenario_seed(seed, index)  # the runs a sampling strategy draws: scenario i's alone
    result = explore(scenario, opts.cfg, opts.strategy, budget=opts.budget, seed=sample_seed)
    out = Outcome(index, name, text, result.states, result.complete, size=spec.size())
    if opts.check_reduction:
        mismatch = reduction_mismatch(scenario, opts.cfg, opts.exhaustive_budget)
        out.reduction_checked, out.mismatch = mismatch is not None, mismatch or ""
        if out.mismatch:
            out.invariants = [REDUCTION_MISMATCH]
            return out
    if not result.found:
        out.text = ""
        return out
    found = result.found[0]
    invariant = found.invariants[0]
    schedule = found.schedule
    out.known_race = known_kernel_race(opts.cfg, kinds_of(spec), invariant) or ""
    if out.known_race:
        check = check_known_race(scenario, opts.cfg, out.known_race, opts.exhaustive_budget)
        out.race_check = check.describe()
        if check.verdict == REFUTED:
            out.known_race = ""
    if opts.shrinks and not (opts.shrink is None and out.known_race):
        small = shrink(spec, lambda s: _fails_with(s, name, opts, invariant, sample_seed) is not None)
        if small != spec:
            shrunk = _fails_with(small, name, opts, invariant, sample_seed)
            assert shrunk is not None  # shrink keeps only specs that fail
            scenario, text, schedule = shrunk
            out.original_size, out.size, out.text = spec.size(), small.size(), text
    if opts.strategy != "bfs":
        shortest = explore(scenario, opts.cfg, "bfs", budget=opts.exhaustive_budget)
        if shortest.found and invariant in shortest.found[0].invariants:
            schedule = shortest.found[0].schedule
    executed = run_schedule(scenario, opts.cfg, schedule, record=False).executed
    out.invariants = [invariant] + [i for i in found.invariants if i != invariant]
    out.schedule = [list(tr) for tr in executed]
    return out


def _fails_with(spec: Spec, name: str, opts: FuzzOptions, invariant: str,
                sample_seed: int) -> tuple[Any, str, list] | None:
    """(scenario, text, schedule) when ``spec`` loads and its bounded search finds ``invariant``."""
    try:
        scenario, text = load_spec(spec, name)
    except ValueError:
        return None
    result = explore(scenario, opts.cfg, opts.strategy, budget=opts.budget, seed=sample_seed)
    if result.found and invariant in result.found[0].invariants:
        return scenario, text, result.found[0].schedule
    return None


def fuzz_indices(seed: int, indices: list[int], opts: FuzzOptions) -> list[Outcome]:
    return [fuzz_one(seed, i, opts) for i in indices]


def _ray_chunk(seed: int, indices: list[int], opts: FuzzOptions) -> list[Outcome]:
    """fuzz_indices as a Ray task, each outcome labelled with the node that computed it."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    outcomes = fuzz_indices(seed, indices, opts)
    for o in outcomes:
        o.node = node
    return outcomes


# How far past ``count`` scenario_indices looks for scenarios that use the operations asked for.
MAX_DRAWS_PER_SCENARIO = 100


def scenario_indices(seed: int, count: int, using: frozenset[str] = frozenset()) -> list[int]:
    """The indices of the scenarios a campaign explores: 0..count-1, or with ``using`` the first ``count`` whose
    programs use one of those operations (scenario i stays the i-th drawn, whatever the filter: the same on Ray,
    serially, and in a shrunk report). ValueError when too few are drawn."""
    if not using:
        return list(range(count))
    out: list[int] = []
    for index in range(count * MAX_DRAWS_PER_SCENARIO):
        if uses(generate(seed, index), using):
            out.append(index)
            if len(out) == count:
                return out
    raise ValueError(f"only {len(out)} of {count * MAX_DRAWS_PER_SCENARIO} generated scenarios use "
                     f"{', '.join(sorted(using))}")


def run_serial(seed: int, count: int, opts: FuzzOptions,
               on_outcome: Callable[[Outcome], None] | None = None,
               using: frozenset[str] = frozenset()) -> list[Outcome]:
    out = []
    for i in scenario_indices(seed, count, using):
        outcome = fuzz_one(seed, i, opts)
        out.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return out


def chunk_size(count: int, parallel: int) -> int:
    """Scenarios per Ray task: enough to amortise a task's overhead (a few ms), few enough to balance the load
    (about eight tasks per worker) and to report progress."""
    return max(1, min(50, count // (8 * max(1, parallel))))


def run_ray(seed: int, count: int, opts: FuzzOptions, parallel: int,
            on_outcome: Callable[[Outcome], None] | None = None,
            using: frozenset[str] = frozenset()) -> list[Outcome]:
    """The same outcomes as ``run_serial``, computed by Ray tasks of ``chunk_size`` scenarios, at most
    ``parallel`` at once (Ray places them on whichever nodes have a CPU free). Ray must be initialised."""
    import ray

    task = ray.remote(num_cpus=1, max_retries=2)(_ray_chunk)
    size = chunk_size(count, parallel)
    indices = scenario_indices(seed, count, using)
    chunks = [indices[start:start + size] for start in range(0, count, size)]
    pending: dict[Any, int] = {}
    results: dict[int, Outcome] = {}
    next_chunk = 0
    while next_chunk < len(chunks) or pending:
        while next_chunk < len(chunks) and len(pending) < max(1, parallel):
            pending[task.remote(seed, chunks[next_chunk], opts)] = next_chunk
            next_chunk += 1
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            del pending[ref]
            for outcome in ray.get(ref):
                results[outcome.index] = outcome
                if on_outcome is not None:
                    on_outcome(outcome)
    return [results[i] for i in indices]
