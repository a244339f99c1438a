"""Exhaustive depth-first search on several cores: forked workers share one visited table and steal work.

A single process expands 40,000-60,000 states a second (CPython, the hot modules compiled), so one core is the
limit. ``parallel_dfs`` first searches alone, as one process would, for FORK_AFTER_SECONDS; a search that ends
sooner never starts a worker (starting them, and the shared table's page faults, cost tens of milliseconds:
not worth it below that). Then it forks ``workers`` processes (fork: they inherit the scenario, the machine's
memos and the hash seed, so a state hashes alike in all of them), each running controlled.depth_first's
engine on part of the state space:

- The visited set is controlled.shared_words.SharedVisited: 64-bit fingerprints of canonical keys (hash
  compaction, as ``--hash-compact``) in one shared table, inserted by compare-and-swap. Each state is counted
  by exactly one worker, so the state count is the number of distinct fingerprints: that of a one-process
  search with hash compaction over the same state graph (see "Exact counts" below).
- Work moves by stealing (controlled.work_stealing): the seed's stack is dealt out, and a worker that runs dry
  takes the oldest half of the richest worker's frontier. The search is over when no worker holds work and
  none is on its way; the first violation (with stop at first) stops every worker, and its schedule (the
  stolen task's schedule, then the path down the thief's stack) replays from the initial state.

Sleep sets. A state's sleep set (controlled.sleep_sets) must be seen by every worker that reaches the state
again, so with sleep sets the table's slots are pairs: the fingerprint and the sleep set as a bit mask
(controlled.shared_sleep_sets, where a scenario's transitions fit a word). They prune as in one process (on
ladder pages=2 writers=2 stores=1, 0.62x the transitions), but which worker reaches a state first decides
the sleep set it is stored with, so the counts may vary from run to run; the end states and verdicts do not.

Exact counts, without sleep sets (``sleep_sets=False``, `--no-sleep-sets`). Without sleep sets the cycle
proviso does not depend on the order either: the reduction never chooses the turns of a counter writer's loop
alone (controlled.reduction), a property of the state, not of the search stack. So the states reached are
those of the reduced state graph, whatever the order, and the count equals one process's with
``hash_compact=True, sleep_sets=False``. With writer symmetry that needs one more thing: that symmetric states
(the same state with interchangeable writers swapped) get symmetric persistent sets, whichever member of the
orbit a search meets first. controlled.reducer breaks ties between equally small persistent sets by names that
a permutation of those writers leaves alone (before, the first by agent number won: ladder writers=2 stores=1
delayed had 38,663 states in the usual order and 38,660 with each state's successors tried in reverse, and the
workers were a few states off one process). Now the counts are equal with symmetry too
(tests/test_parallel_search.py: 38,644 both ways; 1,125,930 states on ladder pages=2 writers=2 stores=1 on one
process and on two workers).

What a worker pays per state more than one process (issue 17; measured per process in instructions by
bench/worker_instructions.py, docs/compiled-core.md "What a worker pays more than one process"). Mostly the memos,
the reducer's above all, filled again by every worker: after the fork each worker misses on keys the other already
answered (ladder pages=2 writers=2 stores=1: 1.37x the persistent-set misses of one process, 1.5x the relations'),
so two workers run more instructions a state: 7.7% more than one process without sleep sets, 10.5% more than one
forked worker with them (ladder pages=1 writers=2 stores=2 and stores=1). The workers' own code (the shared table's
insert, the shared sleep sets, compiled as hot modules) adds 2.5% (ladder pages=1 writers=2 stores=1 in one forked
worker, 30M of the 106M the fork's fixed cost). Work stealing (a handful of thefts a run), idle time (under a
second) and states explored twice (none without sleep sets; +0.06% transitions with them) cost next to nothing. CPU
a state rises more than the instructions (1.29x against 1.08x on ladder pages=1 writers=2 stores=2, under load): the
page faults of the shared table and of copied heap pages (+2% system time) and, unmeasured here (no hardware
counters), two busy cores' caches. Sharing the memo between workers would cut the main cost, but only compiled and
with keys that mean the same in every worker: a memo key's numbers (controlled.reducer's numbering,
controlled.positions' step ids) are given in the order each process first meets the parts, so after the fork two
workers number them differently.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from controlled.depth_first import ExploreResult, StackEntry, canonical_form, depth_first, root_entry
from controlled.machine import Machine, Transition
from controlled.shared_sleep_sets import SharedSleepSets, TransitionBits
from controlled.shared_words import SharedVisited
from controlled.sleep_sets import NEEDS_REDUCTION, NOTHING, SleepSets
from controlled.work_stealing import Control, Endpoint, Task, split_oldest
from kernel_model.config import Config
from kernel_model.program import Scenario

# How long the first process searches alone before it forks (issue 17): many times what starting the workers
# costs (forking two workers and stopping them with nothing to do: 10-15 ms on this 2-core machine, up to a few
# hundred under a load of 12; then each thousand pages of the shared table a fault), so that a search forks only
# when it is big enough to win that back. Wall time, not a state count: states per second vary tenfold between
# scenarios, and what a fork costs is time.
FORK_AFTER_SECONDS = 0.3
SEED_TICK_EVERY = 64  # new states between two looks at the clock in the seed phase (about a millisecond)
STEAL_TICK_EVERY = 128  # new states between two looks at theft requests, the budget and STOP in a worker
# The coordinator sleeps until a worker reports or exits (their pipes and process sentinels), waking only to
# call ``progress`` this often (or, with none, to look again: nothing is missed in between). It used to poll
# every 10 ms: on ladder pages=2 writers=2 stores=1 (228 s wall under a load of 20) the coordinator took 1.9 s
# of user CPU and 0.45 s of system time, 8% of what the two workers took, on the cores they share.
_POLL = 0.1  # seconds, with progress
_IDLE_POLL = 1.0  # seconds, without
_clock = time.perf_counter  # the seed phase's clock (tests replace it)


def parallel_dfs(scenario: Scenario, cfg: Config, workers: int, budget: int, reduce: bool, stop_at_first: bool,
                 progress: Callable[[int], None] | None, deadline: float | None,
                 symmetric: bool = True, compiled: bool = True, sleep_sets: bool = True) -> ExploreResult:
    """A dfs on ``workers`` processes (see the module docstring); ``compiled``: the shared words' compiled
    atomics when built (False: the locked Python fallback, for the test that compares them); ``sleep_sets``:
    with the reduction, prune with sleep sets shared in the visited table (controlled.shared_sleep_sets) where
    the scenario's transitions fit its word."""
    m = Machine(scenario, cfg, reduce=reduce, symmetric=symmetric)
    sleep = SleepSets(m) if sleep_sets and reduce and TransitionBits.fits(m) else None
    budget = min(budget, SharedVisited.limit_for(budget))
    canon = canonical_form(m, True)
    result = ExploreResult("dfs", False, 1, 0, 0, 0.0)
    result.sleep_sets = sleep is not None
    if sleep_sets:
        result.sleep_sets_off = TransitionBits.too_many(m) if reduce else NEEDS_REDUCTION
    # The seed phase keeps its fingerprints in a plain set: a search that ends before the fork never maps the
    # shared table. The set moves into the table at the fork.
    seen = {canon(m.key())}

    def is_new(c: object) -> bool:
        if c in seen:
            return False
        seen.add(c)
        result.states += 1
        return True

    def over() -> bool:
        return result.states >= budget or (deadline is not None and time.perf_counter() > deadline)

    stack: list[StackEntry] = [root_entry(m)]
    path: list[Transition] = []
    fork_at = _clock() + FORK_AFTER_SECONDS
    if depth_first(m, canon, is_new, stack, path, result, stop_at_first,
                   lambda: _clock() < fork_at and not over(), SEED_TICK_EVERY, sleep):
        result.complete = True
        return result
    if (result.found and stop_at_first) or over():
        return result
    tasks: list[Task] = [(key, path[:depth - 1] + [into], asleep, again) for key, depth, into, asleep, again in stack]
    visited = SharedVisited(budget, compiled, pairs=sleep is not None)
    shared = None
    if sleep is None:
        for h in seen:
            visited.insert(h)  # type: ignore[arg-type]
    else:
        shared = SharedSleepSets(m, visited)
        stored = sleep.stored()
        for h in seen:
            shared.adopt(h, stored.get(h, NOTHING))  # type: ignore[arg-type]
    seen.clear()  # the workers, forked next, need only the table
    control = Control.make(workers, compiled)
    limits = _Limits(budget - result.states, deadline, os.getpid())
    reports = _run_workers(m, visited, control, tasks, limits, workers, stop_at_first,
                           None if progress is None else lambda n: progress(result.states + n), shared)
    _merge_reports(result, reports)
    result.workers = workers
    return result


@dataclass(frozen=True)
class _Limits:
    budget: int  # states the workers may insert, all together
    deadline: float | None
    # The coordinator's PID, taken before the fork: a worker that asked os.getppid() only once it had started
    # could ask after a SIGKILLed coordinator was gone, get the reaper's PID, and never see it die (CI, under load).
    coordinator: int


def _run_workers(m: Machine, visited: SharedVisited, control: Control, tasks: list[Task], limits: _Limits,
                 workers: int, stop_at_first: bool, progress: Callable[[int], None] | None,
                 sleep: SharedSleepSets | None = None) -> list[dict[str, Any]]:
    """Fork ``workers`` processes, deal them ``tasks`` (the seed's stack), wait for each one's report (or the
    first failure) and stop them all, by their own handles, whatever happens."""
    import multiprocessing  # here, not at the top: a search that ends in the seed never pays for it (~20 ms)
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("fork")
    dealt = _deal(tasks, workers)
    pipes = [ctx.Pipe(duplex=False) for _ in range(workers)]  # (read end, write end): worker w reads pipes[w][0]
    answers = [ctx.Pipe(duplex=False) for _ in range(workers)]  # worker w's report: it writes answers[w][1]
    procs = [ctx.Process(target=_worker, daemon=True,
                         args=(w, m, visited, control, dealt[w], [p[0] for p in pipes],
                               [p[1] for p in pipes], answers[w][1], limits, stop_at_first, sleep))
             for w in range(workers)]
    for proc in procs:
        proc.start()
    for _, writer in answers:
        writer.close()  # only the workers hold them now: when every holder is gone, a reader left unread is at EOF
    reports: list[dict[str, Any]] = []
    waiting = {answers[w][0]: procs[w] for w in range(workers)}  # reports not yet read, and their workers
    try:
        while waiting:
            ready = wait([*waiting, *[proc.sentinel for proc in waiting.values()]],
                         timeout=_IDLE_POLL if progress is None else _POLL)
            if progress is not None:
                progress(control.total_inserted())
            if _read_reports(ready, waiting, reports):
                break  # a failed worker: stop the others now (one may be waiting on its answer to a theft)
    finally:
        control.stop()
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for reader, writer in pipes:
            reader.close()
            writer.close()
        for reader, _ in answers:
            reader.close()
    return reports


def _read_reports(ready: list[Any], waiting: dict[Any, Any], reports: list[dict[str, Any]]) -> bool:
    """Read the reports of ``ready`` (what the coordinator's wait returned) into ``reports``, each worker's once;
    raise if a worker died. True: a worker failed (its report holds the error)."""
    failed = False
    for reader in [r for r in waiting if r in ready]:
        try:
            reports.append(reader.recv())
        except EOFError:  # its pipe closed with nothing in it: the worker is gone without a report
            raise RuntimeError(f"parallel search: a worker died (exit code {waiting[reader].exitcode})") from None
        del waiting[reader]
        failed = failed or "error" in reports[-1]
    dead = [proc.exitcode for proc in waiting.values() if proc.exitcode not in (None, 0)]
    if dead:
        raise RuntimeError(f"parallel search: a worker died (exit codes {dead})")
    return failed


def _deal(tasks: list[Task], workers: int) -> list[list[Task]]:
    """The seed's stack (oldest first) dealt out: worker w takes every w-th entry, so each starts with some of the
    shallow entries (the large subtrees); stealing evens out the rest."""
    return [tasks[w::workers] for w in range(workers)]


def _merge_reports(result: ExploreResult, reports: list[dict[str, Any]]) -> None:
    """The workers' counts and findings added to the seed phase's ``result``."""
    errors = [r["error"] for r in reports if "error" in r]
    if errors:
        raise RuntimeError("parallel search: a worker failed:\n" + errors[0])
    result.states += sum(r["states"] for r in reports)
    result.transitions += sum(r["transitions"] for r in reports)
    result.schedules += sum(r["schedules"] for r in reports)
    for r in sorted(reports, key=lambda r: r["worker"]):
        result.found.extend(r["found"])
    result.complete = all(r["done"] for r in reports)


class _Search:
    """One worker's search: its frontier (held tasks and the running task's stack), its counts, its ticks."""

    def __init__(self, me: int, m: Machine, visited: SharedVisited, control: Control, endpoint: Endpoint,
                 limits: _Limits, tasks: list[Task], sleep: SharedSleepSets | None = None) -> None:
        self.me, self.m, self.control, self.endpoint, self.limits = me, m, control, endpoint, limits
        self.sleep = sleep
        self.tasks = tasks  # oldest first; searched from the end, stolen from the front
        self.stack: list[StackEntry] = []
        self.path: list[Transition] = []
        self.result = ExploreResult("dfs", False, 0, 0, 0, 0.0)
        self.parent = limits.coordinator
        # The visited table's insert, called on every transition: straight to the words' operation (with sleep
        # sets, SharedSleepSets.is_new, which also counts), no Python layer between (see SharedSleepSets).
        self.inserted = [0]  # states this worker inserted first, without sleep sets
        self.is_new: Callable[[object], bool] = sleep.is_new if sleep is not None else \
            _counting_insert(visited.words.insert, visited.mask, self.inserted)

    @property
    def count(self) -> int:
        """States this worker inserted first (each state is counted by one worker)."""
        return self.sleep.count if self.sleep is not None else self.inserted[0]

    def alive(self) -> bool:
        """The coordinator is still there (a coordinator killed outright must not leave workers searching)."""
        return os.getppid() == self.parent

    def tick(self) -> bool:
        """Between two expansions: publish the counts, stop when told or over a limit, answer a theft."""
        c = self.control
        c.words.store(c.inserted(self.me), self.count)
        if c.stopped or not self.alive():
            return False
        limits = self.limits
        late = limits.deadline is not None and time.perf_counter() > limits.deadline
        if late or c.total_inserted() >= limits.budget:
            c.stop()
            return False
        self.endpoint.publish(len(self.tasks) + len(self.stack))
        self.endpoint.serve(lambda: split_oldest(self.tasks, self.stack, self.path))
        return True

    def run(self, stop_at_first: bool) -> bool:
        """Search until the whole search is over (True) or stopped (False)."""
        canon = canonical_form(self.m, True)
        while True:
            if not self.tasks:
                self.endpoint.go_idle()
                stolen = self.endpoint.steal()
                if stolen is None:
                    return not self.control.stopped and self.alive()
                self.tasks = stolen
            elif not self.tick():  # between two tasks too: a run of small ones may never reach a tick inside
                return False
            key, prefix, asleep, again = self.tasks.pop()
            self.stack[:] = [(key, len(prefix), prefix[-1] if prefix else None, asleep, again)]
            self.path[:] = prefix[:-1]
            self.endpoint.publish(len(self.tasks) + 1)
            if not depth_first(self.m, canon, self.is_new, self.stack, self.path, self.result, stop_at_first,
                               self.tick, STEAL_TICK_EVERY, self.sleep):
                if self.result.found and stop_at_first:
                    self.control.stop()
                return False


def _counting_insert(insert: Callable[[int, int, object], bool], mask: int,
                     count: list[int]) -> Callable[[object], bool]:
    """The table's insert as depth_first's is_new: whether the fingerprint was new, counted in ``count[0]``."""

    def is_new(c: object) -> bool:
        if insert(0, mask, c):
            count[0] += 1
            return True
        return False

    return is_new


def _worker(me: int, m: Machine, visited: SharedVisited, control: Control, tasks: list[Task], inboxes: list[Any],
            outboxes: list[Any], results: Any, limits: _Limits, stop_at_first: bool,
            sleep: SharedSleepSets | None = None) -> None:
    report: dict[str, Any]
    try:
        for w, inbox in enumerate(inboxes):
            if w != me:
                inbox.close()  # only its own pipe's read end: a pipe is then read by one process
        search = _Search(me, m, visited, control, None, limits, list(tasks), sleep)  # type: ignore[arg-type]
        search.endpoint = Endpoint(control, me, inboxes[me], outboxes, search.alive)
        done = search.run(stop_at_first)
        control.words.store(control.inserted(me), search.count)
        r = search.result
        report = {"worker": me, "states": search.count, "transitions": r.transitions, "schedules": r.schedules,
                  "found": r.found, "done": done, "donated": search.endpoint.donated,
                  "received": search.endpoint.received}
    except BaseException:  # noqa: BLE001 - reported to the coordinator, which raises it
        control.stop()
        report = {"worker": me, "error": traceback.format_exc()}
    results.send(report)
    results.close()
    os._exit(0)  # no atexit handlers: they belong to the parent (Ray's among them, in a test session)
