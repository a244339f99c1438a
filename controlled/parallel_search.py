"""Exhaustive depth-first search on several cores: forked workers share one hash-compacted visited set.

A single process expands 40,000-60,000 states a second (CPython, the hot modules compiled), so one core is the
limit. Here ``workers`` processes (fork: they inherit the scenario, the machine's memos and the hash seed, so a
state hashes alike in all of them) each run controlled.depth_first.depth_first on a part of the state space:

- The visited set is an open-addressing table of 64-bit state hashes (hash compaction, as ``hash_compact``) in
  one anonymous shared mapping. Inserting is a read and a write, not atomic: two workers that insert the same
  state at the same instant may both expand it (work done twice, nothing lost), and a worker whose fresh slot is
  overwritten by another's insert in between checks it again and probes on. The counts stay exact unless a
  write lands between another worker's write and its check, which makes that state count twice at most.
- Work starts as the stack of a short depth-first search from the initial state, a few entries per worker; a
  worker that runs dry says so, and busy workers hand it the shallowest entry of their stack (the largest
  untried subtree), with the schedule that reaches it, through a queue. The search is over when no task is
  queued or running.

The workers run without sleep sets (controlled.sleep_sets): a state's sleep set would have to be shared with
its hash for a revisit by another worker to know what is left to explore.

Results: the states are the insertions the workers made, the schedules and transitions their sums; a violation
carries the schedule down its worker's stack. Which violation a worker meets first depends on the race between
workers, so parallel search is for proofs; counterexamples come out shortest from bfs. With writer symmetry
the state count can differ from one process's by a few in a million: persistent sets are not chosen
symmetrically, so which state of an orbit is met first decides which reduced successors are tried (the
verdicts do not change; tests/test_parallel_search.py).
"""

from __future__ import annotations

import mmap
import os
import queue
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from controlled.depth_first import ExploreResult, StackEntry, canonical_form, depth_first, root_entry
from controlled.machine import Machine, Transition
from controlled.sleep_sets import NOTHING
from kernel_model.config import Config
from kernel_model.program import Scenario

_MASK = (1 << 64) - 1
MAX_LOAD = 0.7  # past this fill of the table, probing slows down: the search stops as incomplete
SEED_TASKS_PER_WORKER = 4  # stack entries to start from, per worker (idle workers are then fed by the busy)
# States the first process searches alone before it forks: a search smaller than this ends there, without the
# cost of starting workers (tens of milliseconds: about as long as this many states take). Measured on the
# ladder (bench/bench_explore.py, 2 workers): 4,000 gives 1.1-1.2x more states/s than 20,000 on cells of 20k-100k
# states, and 2,000 makes a 3,500-state cell slower than one process.
FORK_AFTER = 4_000
SEED_TICK_EVERY = 64  # new states between two looks at whether the seed is ready (1 when FORK_AFTER is tiny)
MAX_TABLE = 1 << 27  # slots (1 GiB): room for 94 million states
FIRST_GENERATION = 1 << 22  # slots (32 MiB) of the shared table's first generation (see SharedVisited)
_POLL = 0.01  # seconds: how often an idle worker or the coordinator looks again (0.05 idled mid-size searches)


class SharedVisited:
    """A set of 64-bit state hashes in memory that forked children share (0 marks a free slot), in generations.

    Each page of an anonymous shared mapping is zeroed by the fault of the first insert that lands on it, and
    hashes land anywhere: one table sized for the budget (1 GiB for the bench's) spreads a search of a few
    hundred thousand states over as many pages, which cost a fifth of its time. So the table grows: a first
    generation of FIRST_GENERATION slots, then each four times larger, all in one mapping made before the fork
    (its pages cost nothing until touched). Inserts go to the current generation (slot 0 of the mapping holds
    its number); lookups also probe the older ones. ``advance`` moves on once the current one is MAX_LOAD full.
    A worker that has not seen the move yet may insert a state the others put in the newer generation: that
    state is expanded twice, as with the race described in the module docstring; none is lost."""

    def __init__(self, capacity: int) -> None:
        self.size = self.size_for(capacity)  # slots in all generations
        self.regions = _generations(self.size)  # (first slot, size - 1) of each generation
        # advance() moves to generation g + 1 once this many hashes are in generations 0..g.
        self._full_at = _full_at(self.regions)
        self.limit = self._full_at[-1]
        self._map = mmap.mmap(-1, (1 + self.size) * 8)  # anonymous, MAP_SHARED: zero pages, allocated when touched
        self.slots = memoryview(self._map).cast("Q")

    @staticmethod
    def size_for(capacity: int) -> int:
        return 1 << max(16, (capacity - 1).bit_length())

    @classmethod
    def limit_for(cls, capacity: int) -> int:
        """How many hashes a table for ``capacity`` takes before probing slows down."""
        return _full_at(_generations(cls.size_for(capacity)))[-1]

    def advance(self, inserted: int) -> None:
        """Move inserts on to the next generation once ``inserted`` hashes (all workers') fill the current one."""
        slots = self.slots
        while slots[0] < len(self.regions) - 1 and inserted >= self._full_at[slots[0]]:
            slots[0] += 1

    def insert(self, h: int) -> bool:
        """Add ``h`` (any int hash); True if it was not there. (Hash 0 is stored as 1: the two count as one.)"""
        h &= _MASK
        if h == 0:
            h = 1
        current = self.slots[0]
        for g in range(current):  # older generations: look only
            if self._probe(g, h)[0]:
                return False
        while True:
            found, slot = self._probe(current, h)
            if found:
                return False
            self.slots[slot] = h
            if self.slots[slot] == h:
                return True
            # Another worker took this slot between the read and the write: probe again.

    def _probe(self, g: int, h: int) -> tuple[bool, int]:
        """Linear probing in generation ``g``: (True, the slot holding ``h``) or (False, the free slot where
        the probe for it ends)."""
        first, mask = self.regions[g]
        slots = self.slots
        i = h & mask
        while True:
            v = slots[first + i]
            if v == h or v == 0:
                return v == h, first + i
            i = (i + 1) & mask


def _generations(total: int) -> list[tuple[int, int]]:
    """(first slot, size - 1) of each generation of a table of ``total`` slots (a power of two): FIRST_GENERATION
    slots (or all of them, if fewer), then four times more each time, as much as fits. Slot 0 is the counter."""
    out = []
    first, left, size = 1, total, min(FIRST_GENERATION, total)
    while size:
        out.append((first, size - 1))
        first, left = first + size, left - size
        size = min(size * 4, 1 << (left.bit_length() - 1)) if left else 0  # the largest power of two that fits
    return out


def _full_at(regions: list[tuple[int, int]]) -> list[int]:
    out, total = [], 0
    for _, mask in regions:
        total += int((mask + 1) * MAX_LOAD)
        out.append(total)
    return out


def parallel_dfs(scenario: Scenario, cfg: Config, workers: int, budget: int, reduce: bool, stop_at_first: bool,
                 progress: Callable[[int], None] | None, deadline: float | None,
                 symmetric: bool = True) -> ExploreResult:
    m = Machine(scenario, cfg, reduce=reduce, symmetric=symmetric)
    capacity = min(MAX_TABLE, int(budget / MAX_LOAD) + 1)
    budget = min(budget, SharedVisited.limit_for(capacity))

    canon = canonical_form(m, True)
    result = ExploreResult("dfs", False, 1, 0, 0, 0.0)
    # The seed phase keeps its hashes in a plain set: a search that ends before the fork never touches the
    # shared table, whose pages are each faulted in by the first insert that lands there (that cost more than a
    # small search itself). The set moves into the table at the fork.
    seen = {canon(m.key())}

    def is_new(c: object) -> bool:
        if c in seen:
            return False
        seen.add(c)
        result.states += 1
        return True

    def over() -> bool:
        return result.states >= budget or (deadline is not None and time.perf_counter() > deadline)

    # The seed: depth first from the initial state until the search is big enough to share and the stack holds
    # enough tasks to share.
    stack: list[StackEntry] = [root_entry(m)]
    path: list[Transition] = []
    target = SEED_TASKS_PER_WORKER * workers
    if depth_first(m, canon, is_new, stack, path, result, stop_at_first,
                   lambda: (result.states < FORK_AFTER or len(stack) < target) and not over(),
                   min(SEED_TICK_EVERY, max(1, FORK_AFTER))):
        result.complete = True
        return result
    if (result.found and stop_at_first) or over():
        return result
    tasks = [(key, path[:depth - 1] + [into]) for key, depth, into, _, _ in stack]
    visited = SharedVisited(capacity)
    for h in seen:
        visited.insert(h)  # type: ignore[arg-type]
    visited.advance(len(seen))
    seen.clear()  # the workers, forked next, need only the table
    import multiprocessing  # here, not at the top: a search that ends in the seed never pays for it (~20 ms)

    ctx = multiprocessing.get_context("fork")
    shared = _Shared(pending=ctx.Value("q", len(tasks)), idle=ctx.Value("q", 0), stop=ctx.Value("b", 0),
                     inserted=ctx.Array("q", workers), budget=budget - result.states, deadline=deadline,
                     seeded=result.states)
    reports = _run_workers(ctx, m, visited, tasks, shared, workers, stop_at_first,
                           None if progress is None else lambda n: progress(result.states + n))
    _merge_reports(result, reports)
    return result


def _run_workers(ctx: Any, m: Machine, visited: "SharedVisited", tasks: list, shared: "_Shared", workers: int,
                 stop_at_first: bool, progress: Callable[[int], None] | None) -> list[dict[str, Any]]:
    """Fork ``workers`` processes on the queued ``tasks``, wait for each one's report and stop them all, by their
    own handles, whatever happens. ``progress`` is told the states the workers have inserted so far."""
    task_queue = ctx.Queue()
    results = ctx.Queue()
    for task in tasks:
        task_queue.put(task)
    procs = [ctx.Process(target=_worker, args=(w, m, visited, task_queue, results, shared, stop_at_first),
                         daemon=True) for w in range(workers)]
    for proc in procs:
        proc.start()
    reports: list[dict[str, Any]] = []
    try:
        while len(reports) < workers:
            try:
                reports.append(results.get(timeout=_POLL))
            except queue.Empty:
                if progress is not None:
                    progress(sum(shared.inserted))
                dead = [proc.exitcode for proc in procs if proc.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"parallel search: a worker died (exit codes {dead})")
    finally:
        shared.stop.value = 1
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
    return reports


def _merge_reports(result: ExploreResult, reports: list[dict[str, Any]]) -> None:
    """The workers' counts and findings added to the seed phase's ``result``."""
    errors = [r["error"] for r in reports if "error" in r]
    if errors:
        raise RuntimeError("parallel search: a worker failed:\n" + errors[0])
    result.states += sum(r["states"] for r in reports)
    result.transitions += sum(r["transitions"] for r in reports)
    result.schedules += sum(r["schedules"] for r in reports)
    for r in reports:
        result.found.extend(r["found"])
    result.complete = all(r["done"] for r in reports)


@dataclass
class _Shared:
    """What the workers share besides the visited set and the queues."""

    pending: Any  # tasks queued or being searched: 0 means the search is over
    idle: Any  # workers waiting for a task
    stop: Any  # set on a violation (stop at first), the deadline or the budget
    inserted: Any  # states inserted, per worker (for the budget and progress)
    budget: int
    deadline: float | None
    seeded: int  # states the coordinator inserted before the fork


def _worker(index: int, m: Machine, visited: SharedVisited, task_queue: Any, results: Any, shared: _Shared,
            stop_at_first: bool) -> None:
    result = ExploreResult("dfs", False, 0, 0, 0, 0.0)
    report: dict[str, Any]
    parent = os.getppid()
    try:
        count = 0
        canon = canonical_form(m, True)

        def is_new(c: object) -> bool:
            nonlocal count
            if visited.insert(c):  # type: ignore[arg-type]
                count += 1
                return True
            return False

        stack: list[StackEntry] = []
        path: list[Transition] = []

        def tick() -> bool:
            shared.inserted[index] = count
            if shared.stop.value or os.getppid() != parent:  # stopped, or the coordinator was killed
                return False
            inserted = sum(shared.inserted)
            if inserted >= shared.budget or (shared.deadline is not None and time.perf_counter() > shared.deadline):
                shared.stop.value = 1
                return False
            visited.advance(shared.seeded + inserted)
            if shared.idle.value > 0 and len(stack) > 1 and task_queue.empty():
                # Someone waits for work: hand over the shallowest untried state (the largest subtree left).
                key, depth, into, _, _ = stack.pop(0)
                with shared.pending.get_lock():
                    shared.pending.value += 1
                task_queue.put((key, path[:depth - 1] + [into]))
            return True

        done = False
        waiting = False
        while not shared.stop.value and os.getppid() == parent:
            try:
                key, prefix = task_queue.get(timeout=_POLL)
            except queue.Empty:
                if shared.pending.value == 0:
                    done = True
                    break
                if not waiting:
                    waiting = True
                    with shared.idle.get_lock():
                        shared.idle.value += 1
                continue
            if waiting:
                waiting = False
                with shared.idle.get_lock():
                    shared.idle.value -= 1
            stack[:] = [(key, len(prefix), prefix[-1] if prefix else None, NOTHING, None)]
            path[:] = prefix[:-1]
            if not depth_first(m, canon, is_new, stack, path, result, stop_at_first, tick):
                if result.found and stop_at_first:
                    shared.stop.value = 1
                break
            with shared.pending.get_lock():
                shared.pending.value -= 1
        shared.inserted[index] = count
        report = {"states": count, "transitions": result.transitions, "schedules": result.schedules,
                  "found": result.found, "done": done}
    except BaseException:  # noqa: BLE001 - reported to the coordinator, which raises it
        report = {"error": traceback.format_exc()}
    results.put(report)
    results.close()
    results.join_thread()
    os._exit(0)  # no atexit handlers: they belong to the parent (Ray's among them, in a test session)
