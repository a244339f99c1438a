"""Search strategies of the controlled runtime: which schedules of a scenario to try.

- ``bfs``: exhaustive, breadth first, with state hashing: the first violation found has a shortest schedule.
- ``dfs``: exhaustive, depth first, with state hashing (less memory for the frontier).
- ``random``: ``budget`` runs, each choosing uniformly among the enabled transitions.
- ``pct``: ``budget`` runs of probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010): random agent
  priorities and ``depth - 1`` random priority-change points; finds bugs of depth d with probability
  >= 1/(n k^(d-1)) per run.

Exhaustive strategies use partial-order reduction (``Machine(reduce=True)``) unless told otherwise, and dfs
adds sleep sets (controlled.sleep_sets: fewer transitions, the same end states; on several processes, shared in
their visited table: controlled.shared_sleep_sets). bfs keeps
without them: its state and transition counts are the fingerprint restructurings are checked against
(scripts/explore_fingerprint.py). The sampling ones run the oracle's online whole-state check after every step. Every random choice comes from one
``random.Random(seed)``: the same seed gives the same runs.

The visited set holds each state exactly, as the numbers of its canonical key's parts (controlled.visited:
a few dozen bytes, against about 1.3 KB for the key itself). ``hash_compact`` keeps only a 64-bit hash of each
visited state instead (hash compaction, Wolper & Leroy 1993; SPIN's -DHC), for searches of tens of millions of
states, at the price that two states whose hashes collide count as one. With n states the chance that any
collide is below n^2 / 2^65 (1e-5 for 20 million), and the result reports that bound.
"""

from __future__ import annotations

import random
import time
from collections import deque
from typing import Callable

from controlled.depth_first import TICK_EVERY, ExploreResult, Found, children, depth_first, end_of_run, root_entry
from controlled.gc_pause import gc_paused
from controlled.machine import Machine, Transition
from controlled.sleep_sets import NEEDS_REDUCTION, SleepSets
from controlled.visited import adder, encoder, keys_for, stored_bytes
from kernel_model.config import Config
from kernel_model.events import Violation
from kernel_model.program import Scenario

STRATEGIES = ("bfs", "dfs", "random", "pct")
DEFAULT_BUDGET = {"bfs": 2_000_000, "dfs": 2_000_000, "random": 2_000, "pct": 2_000}
# A sampled run longer than this is cut: only a counter writer's loop can run that long, when the scheduler
# keeps choosing it over the agent that would end it (PCT's fixed priorities do exactly that).
MAX_SAMPLE_STEPS = 10_000


def explore(scenario: Scenario, cfg: Config, strategy: str = "bfs", *, budget: int | None = None, seed: int = 0,
            depth: int = 3, reduce: bool = True, stop_at_first: bool = True,
            progress: Callable[[int], None] | None = None, time_limit: float | None = None,
            hash_compact: bool = False, symmetric: bool = True, workers: int = 1,
            measure_memory: bool = False, sleep_sets: bool = True, merge: bool = False) -> ExploreResult:
    """``time_limit`` (seconds) stops an exhaustive search early, reported as incomplete. ``symmetric``: keep one
    state per orbit of interchangeable writers (controlled.symmetry). ``workers`` > 1: dfs on that many
    processes sharing one hash-compacted visited set (controlled.parallel_search; implies hash_compact).
    ``measure_memory``: an exhaustive search (one process) reports the bytes its visited set holds (a pass over
    it at the end). ``sleep_sets``: dfs with reduction also prunes with sleep sets (controlled.sleep_sets; on
    workers, controlled.shared_sleep_sets). ``merge``: dfs on one process runs through states with a single transition to try
    without storing them (controlled.depth_first._merge_chain): fewer states held, more transitions run."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")
    budget = DEFAULT_BUDGET[strategy] if budget is None else budget
    t0 = time.perf_counter()
    if strategy in ("bfs", "dfs"):
        deadline = None if time_limit is None else t0 + time_limit
        if workers < 1:
            raise ValueError(f"workers: expected a positive integer, got {workers}")
        with gc_paused():  # the visited set: millions of live tuples, no cycles (see controlled.gc_pause)
            if strategy == "dfs" and workers > 1:
                from controlled.parallel_search import parallel_dfs

                hash_compact = True
                result = parallel_dfs(scenario, cfg, workers, budget, reduce, stop_at_first, progress, deadline,
                                      symmetric, sleep_sets=sleep_sets)
            elif strategy == "dfs":
                result = _dfs(scenario, cfg, budget, reduce, stop_at_first, progress, deadline, hash_compact,
                              symmetric, measure_memory, sleep_sets, merge)
            else:
                result = _bfs(scenario, cfg, budget, reduce, stop_at_first, progress, deadline, hash_compact,
                              symmetric, measure_memory)
        if reduce:
            for found in result.found:
                found.schedule = _step_by_step(scenario, cfg, found.schedule)
        if hash_compact:
            result.collision_bound = min(1.0, result.states ** 2 / 2.0 ** 65)
        if strategy == "bfs" and reduce and stop_at_first and result.found:
            # The reduced search judges whole-state invariants at quiescence, so its first counterexample runs
            # to the end. An unreduced BFS with online checks stops at the first violating step (lost_dirty_data's
            # at an eviction or at quiescence: kernel_model/oracle.py): the shortest story. Affordable now that we
            # know how deep the violation is; keep the first if it is too big.
            shortest = _bfs(scenario, cfg, max(50_000, 10 * result.states), False, True, None)
            wanted = set(result.found[0].invariants)
            if shortest.found and wanted & set(shortest.found[0].invariants):
                result.found = shortest.found
                result.transitions += shortest.transitions
    else:
        result = _sample(scenario, cfg, strategy, budget, random.Random(seed), depth, stop_at_first, progress)
    result.seconds = time.perf_counter() - t0
    return result


def _step_by_step(scenario: Scenario, cfg: Config, schedule: list[Transition]) -> list[Transition]:
    """A reducing search's schedule as a machine that replays it needs it: each thread transition as many times
    as the steps it ran (a lock acquire and the step joined to it are two; controlled.lock_joins)."""
    m = Machine(scenario, cfg, reduce=True)
    out: list[Transition] = []
    for tr in schedule:
        out.extend([tr] * len(m.pos[tr[1]].block) if tr[0] == "t" and m.pos[tr[1]].block else [tr])
        m.execute(tr)
    return out


def _bfs(scenario: Scenario, cfg: Config, budget: int, reduce: bool, stop_at_first: bool,
         progress: Callable[[int], None] | None, deadline: float | None = None, hash_compact: bool = False,
         symmetric: bool = True, measure_memory: bool = False) -> ExploreResult:
    m = Machine(scenario, cfg, reduce=reduce, symmetric=symmetric)
    # The visited set holds canonical keys (store values renamed, see Machine.canonical), encoded exactly or as
    # hashes (controlled.visited); the frontier holds the real states to restore. Each canonical node keeps
    # the first path that reached it. Without the renaming a counter writer's loop (its word counts up forever)
    # would make the state space infinite.
    keys = keys_for(hash_compact)
    canon = encoder(m.canonical, keys)
    root = m.key()
    parent: dict[object, tuple | None] = {canon(root): None}  # canonical state -> (canonical parent, transition)
    frontier: deque[tuple[tuple, object]] = deque([(root, canon(root))])  # (state to restore, its canonical key)
    result = ExploreResult("bfs", False, 1, 0, 0, 0.0)
    try:
        _bfs_loop(m, canon, parent, frontier, result, budget, stop_at_first, progress, deadline)
    finally:
        result.states = len(parent)
        if measure_memory:
            result.stored_bytes = stored_bytes(parent, keys)
    return result


def _bfs_loop(m: Machine, canon: Callable[[tuple], object], parent: dict[object, tuple | None],
              frontier: deque[tuple[tuple, object]], result: ExploreResult, budget: int, stop_at_first: bool,
              progress: Callable[[int], None] | None, deadline: float | None) -> None:
    def schedule_to(ckey: object) -> list[Transition]:
        out = []
        while parent[ckey] is not None:
            ckey, tr = parent[ckey]  # type: ignore[misc]
            out.append(tr)
        out.reverse()
        return out

    while frontier:
        if len(parent) >= budget:
            return
        key, ckey = frontier.popleft()
        m.restore(key)
        enabled = m.enabled()
        if m.run_ends(enabled):
            hang = end_of_run(m, result)
            if hang is not None:
                result.found.append(Found([hang], schedule_to(ckey)))
                if stop_at_first:
                    return
            continue
        for _, tr, new, violations in children(m, key, enabled, result):
            cnew = canon(new)
            if violations:
                if cnew not in parent:
                    parent[cnew] = (ckey, tr)
                result.found.append(Found(violations, schedule_to(ckey) + [tr]))
                if stop_at_first:
                    return
                continue
            if cnew not in parent:
                parent[cnew] = (ckey, tr)
                frontier.append((new, cnew))
                result.states = len(parent)
                if result.states % 10_000 == 0:
                    if progress is not None:
                        progress(result.states)
                    if deadline is not None and time.perf_counter() > deadline:
                        return
    result.complete = True


def _dfs(scenario: Scenario, cfg: Config, budget: int, reduce: bool, stop_at_first: bool,
         progress: Callable[[int], None] | None, deadline: float | None = None, hash_compact: bool = False,
         symmetric: bool = True, measure_memory: bool = False, sleep_sets: bool = True,
         merge: bool = False) -> ExploreResult:
    m = Machine(scenario, cfg, reduce=reduce, symmetric=symmetric)
    keys = keys_for(hash_compact)
    canon = encoder(m.canonical, keys)
    root = m.key()
    seen = {canon(root)}
    is_new = adder(seen)
    sleep = SleepSets(m) if sleep_sets and reduce else None

    def tick() -> bool:
        if progress is not None:
            progress(len(seen))
        return len(seen) < budget and (deadline is None or time.perf_counter() < deadline)

    result = ExploreResult("dfs", False, 1, 0, 0, 0.0)
    result.sleep_sets = sleep is not None
    if sleep_sets and not reduce:
        result.sleep_sets_off = NEEDS_REDUCTION
    # The budget is checked between batches of new states: at most a batch the size of the budget, so that a small
    # budget of a huge scenario (megabytes a state) is not overrun by a thousand states.
    result.complete = depth_first(m, canon, is_new, [root_entry(m)], [], result, stop_at_first, tick,
                                  min(TICK_EVERY, max(1, budget)), sleep, merge)
    result.states = len(seen)
    if measure_memory:
        result.stored_bytes = stored_bytes(seen, keys)
    return result


def _sample(scenario: Scenario, cfg: Config, strategy: str, runs: int, rng: random.Random, depth: int,
            stop_at_first: bool, progress: Callable[[int], None] | None) -> ExploreResult:
    result = ExploreResult(strategy, False, 0, 0, 0, 0.0)
    seen: set[int] = set()
    steps_estimate = 50
    for run in range(runs):
        m = Machine(scenario, cfg)
        chooser = _random_chooser(rng) if strategy == "random" else _pct_chooser(m, rng, depth, steps_estimate)
        schedule: list[Transition] = []
        violations: list[Violation] = []
        while True:
            enabled = m.enabled()
            if m.run_ends(enabled):
                if not m.finished():
                    violations = [m.hang_report()]
                break
            if len(schedule) >= MAX_SAMPLE_STEPS:
                break  # a counter writer the scheduler never stops favouring: this run is cut, not judged
            tr = chooser(enabled, len(schedule))
            schedule.append(tr)
            violations = m.execute(tr)
            seen.add(hash(m.key()))
            if violations:
                break
        result.transitions += len(schedule)
        result.schedules += 1
        if len(schedule) < MAX_SAMPLE_STEPS:
            steps_estimate = max(steps_estimate, len(schedule))
        if progress is not None:
            progress(run + 1)
        if violations:
            result.found.append(Found(violations, schedule))
            if stop_at_first:
                break
    result.states = len(seen)
    return result


def _random_chooser(rng: random.Random) -> Callable[[list[Transition], int], Transition]:
    return lambda enabled, _step: enabled[rng.randrange(len(enabled))]


def _agent(tr: Transition) -> tuple:
    """Who performs a transition: a thread, or a CPU's IPI handler."""
    return ("t", tr[1]) if tr[0] == "t" else ("i", tr[1])


def _pct_chooser(m: Machine, rng: random.Random, depth: int,
                 steps: int) -> Callable[[list[Transition], int], Transition]:
    agents = [("t", t) for t in range(m.nthreads)] + [("i", c) for c in range(m.ncpus)]
    order = agents[:]
    rng.shuffle(order)
    # Initial priorities depth..depth+n-1 (higher runs first); change points lower the running agent to i < depth.
    priority = {a: depth + i for i, a in enumerate(order)}
    change_points = {rng.randrange(1, max(2, steps)): i for i in range(1, depth)}

    def choose(enabled: list[Transition], step: int) -> Transition:
        best = max(enabled, key=lambda tr: (priority[_agent(tr)], tr))
        if step in change_points:
            priority[_agent(best)] = change_points[step]
            best = max(enabled, key=lambda tr: (priority[_agent(tr)], tr))
        return best

    return choose
