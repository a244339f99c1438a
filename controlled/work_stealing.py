"""Work stealing between the parallel search's workers, and when the search is over.

Each worker keeps its frontier as a deque: the tasks it holds (states to search from, each with the schedule
that reaches it) and the stack of the depth-first search it is running, oldest (shallowest: the largest
subtrees left) first. It searches from the newest end; a worker that runs dry steals from the oldest end of
the richest other worker's frontier. The entries are Python objects (machine keys, schedules), so they cannot
live in shared memory as they are: a theft is a request in shared memory, answered by the busy worker between
two expansions with half of its frontier, pickled through the thief's pipe. (A deque in shared memory would
need every entry serialised when it is pushed: a cost paid on every state, where this pays on every theft.)

Shared words (controlled.shared_words), all updated atomically:

- ``ACTIVE``: workers that hold work, plus work in flight to a thief. A worker leaves it once, when its
  frontier is empty; a donor adds the thief back before its tasks leave. So it is 0 exactly when no worker
  holds work and none is on its way: the search is over, and every idle worker sees it and stops. No worker
  can quit while another may still donate: a donor holds work, so ACTIVE >= 1 until it runs dry itself.
- ``STOP``: a violation (with stop at first), the budget or the deadline: every worker stops at its next look.
- ``REQUEST[v]``: 0, or 1 + the worker waiting for ``v``'s answer. A thief claims it by compare-and-swap from
  0 (one thief per victim at a time); the victim takes it by compare-and-swap back to 0 and then always
  answers (its tasks, or nothing); a thief that waited long enough, seeing its victim has nothing to give,
  takes it back the same way, and only one of the two swaps can succeed, so no answer is lost or awaited in
  vain.
- ``SIZE[w]``: how many entries w's frontier holds (published between expansions): whom to steal from.
- ``INSERTED[w]``: states w has inserted into the visited table (the budget, progress).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from controlled.shared_words import Words, shared_words

ACTIVE = 0
STOP = 1
_FIXED = 2  # words before the per-worker arrays
POLL = 0.005  # seconds an idle worker waits between two looks (a victim answers within one tick: milliseconds)

# (machine key of the state to search from, the schedule that reaches it, the sleep set it is searched with, and
# None to search it, or the transitions a revisit found awake: controlled.depth_first's stack entry, moved)
Task = tuple[tuple, list, frozenset, "tuple | None"]


@dataclass
class Control:
    """The shared words of one parallel search (see the module docstring for their meaning)."""

    words: Words
    workers: int

    @classmethod
    def make(cls, workers: int, compiled: bool = True) -> "Control":
        control = cls(shared_words(_FIXED + 3 * workers, compiled), workers)
        control.words.store(ACTIVE, workers)  # every worker starts holding work (or goes idle at once)
        return control

    def request(self, w: int) -> int:
        return _FIXED + w

    def size(self, w: int) -> int:
        return _FIXED + self.workers + w

    def inserted(self, w: int) -> int:
        return _FIXED + 2 * self.workers + w

    def total_inserted(self) -> int:
        load = self.words.load
        return sum(load(self.inserted(w)) for w in range(self.workers))

    @property
    def stopped(self) -> bool:
        return self.words.load(STOP) != 0

    def stop(self) -> None:
        self.words.store(STOP, 1)


class Endpoint:
    """Worker ``me``'s side of the protocol: ``inbox`` is the read end of its pipe, ``outboxes[w]`` the write
    end of worker w's."""

    def __init__(self, control: Control, me: int, inbox: Any, outboxes: list[Any],
                 alive: Callable[[], bool]) -> None:
        self.control = control
        self.me = me
        self.inbox = inbox
        self.outboxes = outboxes
        self.alive = alive  # False once the coordinator is gone: stop waiting
        self.donated = 0  # thefts answered with work, and tasks received (for reports)
        self.received = 0

    def publish(self, size: int) -> None:
        self.control.words.store(self.control.size(self.me), size)

    def serve(self, give: Callable[[], list[Task]]) -> None:
        """Between two expansions of a busy worker: answer a pending theft with ``give()`` (half the frontier)."""
        c = self.control
        slot = c.request(self.me)
        thief = c.words.load(slot)
        if thief == 0 or not c.words.cas(slot, thief, 0):
            return  # none, or the thief took it back
        tasks = give()
        if tasks:
            c.words.add(ACTIVE, 1)  # the thief holds work from now on: counted before the work leaves
            self.donated += 1
        self.outboxes[thief - 1].send(tasks)

    def go_idle(self) -> None:
        """The frontier is empty: say so, answer a pending theft with nothing, leave ACTIVE."""
        self.publish(0)
        self.serve(list)
        self.control.words.add(ACTIVE, -1)

    def steal(self) -> list[Task] | None:
        """An idle worker's wait: tasks taken from another worker's frontier (this worker counts in ACTIVE
        again), or None once the search is over or stopped."""
        c = self.control
        while True:
            if c.stopped or not self.alive() or c.words.load(ACTIVE) == 0:
                return None
            victim = self._richest()
            if victim is None or not c.words.cas(c.request(victim), 0, self.me + 1):
                time.sleep(POLL)  # nobody to steal from yet, or another thief is being served
                continue
            tasks = self._answer(victim)
            if tasks:
                self.received += len(tasks)
                return tasks

    def _richest(self) -> int | None:
        """The other worker with the most entries to give (at least 2: it keeps one to work on)."""
        c = self.control
        sizes = [(c.words.load(c.size(w)), -w) for w in range(c.workers) if w != self.me]
        best = max(sizes, default=(0, 0))
        return -best[1] if best[0] >= 2 else None

    def _answer(self, victim: int) -> list[Task]:
        """Wait for ``victim``'s answer to this worker's request; take the request back (and get nothing) once
        the victim has nothing left to give, or the search stops."""
        c = self.control
        while True:
            if self.inbox.poll(POLL):
                return self.inbox.recv()
            if c.words.load(c.size(victim)) < 2 or c.stopped or not self.alive():
                if c.words.cas(c.request(victim), self.me + 1, 0):
                    return []  # taken back before the victim saw it: no answer will come
                return self.inbox.recv()  # the victim took it: its answer is on its way


def split_oldest(tasks: list[Task], stack: list, path: list) -> list[Task]:
    """Half of a frontier (at least one entry when it holds two or more), taken from its oldest end: first the
    held tasks (oldest first), then the bottom of the depth-first stack, whose entries become tasks with the
    schedule that reaches them (controlled.depth_first: an entry of depth d is reached by ``path[:d - 1]`` and
    the transition into it), keeping its sleep set. Removes what it returns from ``tasks`` and ``stack``."""
    n = (len(tasks) + len(stack)) // 2
    given = tasks[:n]
    del tasks[:n]
    rest = n - len(given)
    if rest > 0:
        given += [(key, path[:depth - 1] + [into], asleep, again) for key, depth, into, asleep, again in stack[:rest]]
        del stack[:rest]
    return given
