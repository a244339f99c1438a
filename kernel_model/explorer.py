"""Search strategies of the controlled runtime: which schedules of a scenario to try.

- ``bfs``: exhaustive, breadth first, with state hashing: the first violation found has a shortest schedule.
- ``dfs``: exhaustive, depth first, with state hashing (less memory for the frontier).
- ``random``: ``budget`` runs, each choosing uniformly among the enabled transitions.
- ``pct``: ``budget`` runs of probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010): random agent
  priorities and ``depth - 1`` random priority-change points; finds bugs of depth d with probability
  >= 1/(n k^(d-1)) per run.

Exhaustive strategies use partial-order reduction (``Machine(reduce=True)``) unless told otherwise, and dfs on
one process adds sleep sets (kernel_model.sleep_sets: fewer transitions, the same end states). bfs keeps
without them: its state and transition counts are the fingerprint restructurings are checked against
(scripts/explore_fingerprint.py). The sampling ones run the oracle's online whole-state check after every step. Every random choice comes from one
``random.Random(seed)``: the same seed gives the same runs.

The visited set holds each state exactly, as the numbers of its canonical key's parts (kernel_model.visited:
a few dozen bytes, against about 1.3 KB for the key itself). ``hash_compact`` keeps only a 64-bit hash of each
visited state instead (hash compaction, Wolper & Leroy 1993; SPIN's -DHC), for searches of tens of millions of
states, at the price that two states whose hashes collide count as one. With n states the chance that any
collide is below n^2 / 2^65 (1e-5 for 20 million), and the result reports that bound.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator

from kernel_model.config import Config
from kernel_model.events import Violation
from kernel_model.gc_pause import gc_paused
from kernel_model.machine import Machine, Transition
from kernel_model.program import Scenario
from kernel_model.sleep_sets import NOTHING, SleepSets
from kernel_model.visited import Keys, adder, encoder, keys_for, stored_bytes

STRATEGIES = ("bfs", "dfs", "random", "pct")
DEFAULT_BUDGET = {"bfs": 2_000_000, "dfs": 2_000_000, "random": 2_000, "pct": 2_000}
# A sampled run longer than this is cut: only a counter writer's loop can run that long, when the scheduler
# keeps choosing it over the agent that would end it (PCT's fixed priorities do exactly that).
MAX_SAMPLE_STEPS = 10_000


@dataclass(slots=True)
class Found:
    violations: list[Violation]
    schedule: list[Transition]

    @property
    def invariants(self) -> list[str]:
        return sorted({v.invariant for v in self.violations})


@dataclass(slots=True)
class ExploreResult:
    strategy: str
    complete: bool  # the whole (reduced) state space was explored
    states: int
    schedules: int  # executions run to their end (sampling) or terminal states reached (exhaustive)
    transitions: int
    seconds: float
    found: list[Found] = field(default_factory=list)
    collision_bound: float = 0.0  # hash compaction: an upper bound on the chance that two states were merged
    stored_bytes: int = 0  # exhaustive, when asked (measure_memory): bytes the visited set holds, all included

    @property
    def bytes_per_state(self) -> float:
        return self.stored_bytes / self.states if self.states else 0.0


def explore(scenario: Scenario, cfg: Config, strategy: str = "bfs", *, budget: int | None = None, seed: int = 0,
            depth: int = 3, reduce: bool = True, stop_at_first: bool = True,
            progress: Callable[[int], None] | None = None, time_limit: float | None = None,
            hash_compact: bool = False, symmetric: bool = True, workers: int = 1,
            measure_memory: bool = False, sleep_sets: bool = True) -> ExploreResult:
    """``time_limit`` (seconds) stops an exhaustive search early, reported as incomplete. ``symmetric``: keep one
    state per orbit of interchangeable writers (kernel_model.symmetry). ``workers`` > 1: dfs on that many
    processes sharing one hash-compacted visited set (kernel_model.parallel_search; implies hash_compact).
    ``measure_memory``: an exhaustive search (one process) reports the bytes its visited set holds (a pass over
    it at the end). ``sleep_sets``: dfs on one process with reduction also prunes with sleep sets
    (kernel_model.sleep_sets)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")
    budget = DEFAULT_BUDGET[strategy] if budget is None else budget
    t0 = time.perf_counter()
    if strategy in ("bfs", "dfs"):
        deadline = None if time_limit is None else t0 + time_limit
        if workers < 1:
            raise ValueError(f"workers: expected a positive integer, got {workers}")
        with gc_paused():  # the visited set: millions of live tuples, no cycles (see kernel_model.gc_pause)
            if strategy == "dfs" and workers > 1:
                from kernel_model.parallel_search import parallel_dfs

                hash_compact = True
                result = parallel_dfs(scenario, cfg, workers, budget, reduce, stop_at_first, progress, deadline,
                                      symmetric)
            elif strategy == "dfs":
                result = _dfs(scenario, cfg, budget, reduce, stop_at_first, progress, deadline, hash_compact,
                              symmetric, measure_memory, sleep_sets)
            else:
                result = _bfs(scenario, cfg, budget, reduce, stop_at_first, progress, deadline, hash_compact,
                              symmetric, measure_memory)
        if hash_compact:
            result.collision_bound = min(1.0, result.states ** 2 / 2.0 ** 65)
        if strategy == "bfs" and reduce and stop_at_first and result.found:
            # The reduced search judges whole-state invariants at quiescence, so its first counterexample runs
            # to the end. An unreduced BFS with online checks stops at the first violating step: the shortest
            # story. Affordable now that we know how deep the violation is; keep the first if it is too big.
            shortest = _bfs(scenario, cfg, max(50_000, 10 * result.states), False, True, None)
            wanted = set(result.found[0].invariants)
            if shortest.found and wanted & set(shortest.found[0].invariants):
                result.found = shortest.found
                result.transitions += shortest.transitions
    else:
        result = _sample(scenario, cfg, strategy, budget, random.Random(seed), depth, stop_at_first, progress)
    result.seconds = time.perf_counter() - t0
    return result


def _bfs(scenario: Scenario, cfg: Config, budget: int, reduce: bool, stop_at_first: bool,
         progress: Callable[[int], None] | None, deadline: float | None = None, hash_compact: bool = False,
         symmetric: bool = True, measure_memory: bool = False) -> ExploreResult:
    m = Machine(scenario, cfg, reduce=reduce, symmetric=symmetric)
    # The visited set holds canonical keys (store values renamed, see Machine.canonical), encoded exactly or as
    # hashes (kernel_model.visited); the frontier holds the real states to restore. Each canonical node keeps
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
            hang = _end_of_run(m, result)
            if hang is not None:
                result.found.append(Found([hang], schedule_to(ckey)))
                if stop_at_first:
                    return
            continue
        for _, tr, new, violations in _children(m, key, enabled, result):
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
         symmetric: bool = True, measure_memory: bool = False, sleep_sets: bool = True) -> ExploreResult:
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
    # The budget is checked between batches of new states: at most a batch the size of the budget, so that a small
    # budget of a huge scenario (megabytes a state) is not overrun by a thousand states.
    result.complete = depth_first(m, canon, is_new, [root_entry(m)], [], result, stop_at_first, tick,
                                  min(TICK_EVERY, max(1, budget)), sleep)
    result.states = len(seen)
    if measure_memory:
        result.stored_bytes = stored_bytes(seen, keys)
    return result


# (state key, depth, the transition into it, its sleep set, and None to explore it, or the transitions to
# explore from it again: those a revisit found awake, kernel_model.sleep_sets)
StackEntry = tuple[tuple, int, "Transition | None", frozenset, "tuple | None"]
TICK_EVERY = 1024  # new states between two calls of depth_first's tick


def root_entry(m: Machine) -> StackEntry:
    """The stack entry of the state ``m`` is in, as the first of a search."""
    return (m.key(), 0, None, NOTHING, None)


def depth_first(m: Machine, canon: Callable[[tuple], object], is_new: Callable[[object], bool],
                stack: list[StackEntry], path: list[Transition], result: ExploreResult, stop_at_first: bool,
                tick: Callable[[], bool], tick_every: int = TICK_EVERY, sleep: SleepSets | None = None) -> bool:
    """Expand the states on ``stack`` depth first until it is empty (True), or ``tick()`` returns False, or a
    violation stops the search (False). ``tick`` is called between two expansions once ``tick_every`` new states
    have been found since the last call, so that the stack then holds only unexpanded states, each a child of a
    state on the schedule ``path`` (the schedule to the last state expanded): its schedule is
    ``path[:depth - 1] + [transition into it]``. ``is_new(canonical)`` adds a state to the visited set and says
    whether it was new. Counts go into ``result``. ``sleep``: prune with sleep sets (kernel_model.sleep_sets).

    The schedule to the state being expanded is the path down the stack, so no state keeps a parent (with hash
    compaction a visited state costs its hash alone). Children are pushed in order and the last one pushed is
    expanded next: when it was the last one executed, the machine is already in it and is not restored (a third
    of all restores, and every one along a chain of single transitions). ``tick`` may take entries from the
    bottom of the stack (parallel_search gives them to another worker)."""
    in_place = False  # the machine is in the state on top of the stack
    fresh = 0
    while stack:
        if fresh >= tick_every:
            fresh = 0
            if not tick():
                return False
        key, depth, into, asleep, again = stack.pop()
        if depth:
            del path[depth - 1:]
            path.append(into)  # type: ignore[arg-type]
        if not in_place:
            m.restore(key)
        in_place = False
        todo = _to_try(m, asleep, again, sleep)
        if todo is None:
            hang = _end_of_run(m, result)
            if hang is not None:
                result.found.append(Found([hang], list(path)))
                if stop_at_first:
                    return False
            continue
        child_asleep = None if sleep is None else sleep.child_sleep_sets(asleep, todo)
        last = len(todo) - 1
        for n, tr, new, violations in _children(m, key, todo, result):
            cnew = canon(new)
            new_state = is_new(cnew)
            revisit = None
            if child_asleep is not None:
                revisit = sleep.visit(cnew, new_state, child_asleep[n])  # type: ignore[union-attr]
            if violations:
                result.found.append(Found(violations, path + [tr]))
                if stop_at_first:
                    return False
                continue
            if new_state:
                stack.append((new, depth + 1, tr, NOTHING if child_asleep is None else child_asleep[n], None))
                in_place = n == last
                fresh += 1
            elif revisit is not None:
                stack.append((new, depth + 1, tr, revisit[1], revisit[0]))
                in_place = n == last
    return True


def _to_try(m: Machine, asleep: frozenset, again: tuple | None, sleep: SleepSets | None) -> list[Transition] | None:
    """The transitions to try from the state ``m`` is in (None: the run ends there): the reduced enabled set, or
    on a revisit (``again``) those of ``again`` enabled; less those asleep."""
    if again is None:
        todo = m.enabled()
        if m.run_ends(todo):
            return None
    else:  # a revisit: what was asleep when it was first reached and is awake now
        enabled = m.enabled_all()
        todo = [tr for tr in again if tr in enabled]
    if sleep is not None and asleep:
        awake = [tr for tr in todo if tr not in asleep]
        sleep.slept += len(todo) - len(awake)
        return awake
    return todo


def dfs_holding(m: Machine, keys: Keys) -> tuple[ExploreResult, int]:
    """A complete DFS from the state ``m`` is in, its visited set holding ``keys``' encoding (to compare
    encodings): the result, and the bytes the visited set holds."""
    canon = encoder(m.canonical, keys)
    seen = {canon(m.key())}
    result = ExploreResult("dfs", False, 0, 0, 0, 0.0)
    result.complete = depth_first(m, canon, adder(seen), [root_entry(m)], [], result, False, lambda: True)
    result.states = len(seen)
    return result, stored_bytes(seen, keys)


def _end_of_run(m: Machine, result: ExploreResult) -> Violation | None:
    """Count a run that ended in the state ``m`` is in; the hang it ends in, if unfinished."""
    result.schedules += 1
    return None if m.finished() else m.hang_report()


def _children(m: Machine, key: tuple, enabled: list[Transition],
              result: ExploreResult) -> Iterator[tuple[int, Transition, tuple, list[Violation]]]:
    """Run each of ``enabled`` from the state ``key`` (which ``m`` is in): its number, itself, the state it
    leads to and the violations it makes."""
    for n, tr in enumerate(enabled):
        if n:
            m.restore(key)  # the first transition runs on the state enabled() was computed on
        violations = m.execute(tr)
        result.transitions += 1
        yield n, tr, m.key(), violations


def canonical_form(m: Machine, hash_compact: bool) -> Callable[[tuple], object]:
    """What the visited set holds for a machine key: its canonical form, encoded exactly or as a 64-bit hash."""
    return encoder(m.canonical, keys_for(hash_compact))


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
