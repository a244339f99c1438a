"""The parallel search's shared memory (controlled.shared_words) and work-stealing protocol
(controlled.work_stealing): exact inserts under a race, both implementations alike, the frontier split, a theft
answered or taken back. Plain forked processes, each waited for by PID."""

from __future__ import annotations

import os
import random

import pytest

from controlled import work_stealing
from controlled.shared_words import LockedWords, SharedVisited, compiled_words
from controlled.work_stealing import ACTIVE, Control, Endpoint, split_oldest
from tests.compiled_required import skip_unless_built

IMPLEMENTATIONS = [pytest.param(False, id="locked-python")] + (
    [pytest.param(True, id="compiled")] if compiled_words() is not None else [])


def test_the_compiled_atomics_are_built():
    """scripts/setup.sh builds controlled/_atomic_words.pyx; without a compiler the locked fallback runs (and
    this test says so rather than passing quietly)."""
    skip_unless_built(compiled_words() is not None, "controlled._atomic_words (the locked fallback runs)")
    assert SharedVisited(10).compiled and not SharedVisited(10, compiled=False).compiled


@pytest.mark.parametrize("compiled", IMPLEMENTATIONS)
def test_a_fingerprint_is_new_once(compiled):
    v = SharedVisited(100, compiled)
    assert v.compiled == compiled and v.size >= 100 and v.size & (v.size - 1) == 0
    assert v.insert(hash(("a", 1))) and not v.insert(hash(("a", 1)))
    assert v.insert(-5) and not v.insert(-5) and v.insert(5)  # negative hashes are their own fingerprints
    assert v.insert(-(1 << 63)) and v.insert((1 << 63) - 1)  # the extremes of a 64-bit hash
    assert v.insert(0) and not v.insert(0) and not v.insert(1)  # 0 marks a free slot: stored as 1
    collide = [v.size * k + 3 for k in range(1, 6)]  # one home slot: found again by probing
    assert all(v.insert(h) for h in collide) and not any(v.insert(h) for h in collide)


@pytest.mark.parametrize("compiled", IMPLEMENTATIONS)
def test_processes_racing_on_the_same_fingerprints_count_each_once(compiled):
    """Three forked processes insert the same 30,000 fingerprints (each in its own shuffled order, many in the
    same home slots) plus 1,000 of their own: each fingerprint is told new to exactly one of them."""
    v = SharedVisited(200_000, compiled)
    rng = random.Random(1)
    shared = [rng.getrandbits(64) - (1 << 63) for _ in range(30_000)]
    shared += [v.size * k + 7 for k in range(1, 200)]  # a long probe chain, contended
    pids, pipes = [], []
    for child in range(3):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its count of new fingerprints, through the pipe
            os.close(r)
            mine = shared + [(child + 1) << 40 | n for n in range(1_000)]
            random.Random(child).shuffle(mine)
            os.write(w, str(sum(map(v.insert, mine))).encode())
            os._exit(0)
        os.close(w)
        pids.append(pid)
        pipes.append(r)
    counts = []
    for pid, r in zip(pids, pipes):
        with os.fdopen(r) as f:
            counts.append(int(f.read()))
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    assert sum(counts) == len(set(shared)) + 3 * 1_000
    assert not any(v.insert(h) for h in shared)  # and all of them are in the table


@pytest.mark.parametrize("compiled", IMPLEMENTATIONS)
def test_shared_words_compare_and_swap_and_add(compiled):
    words = Control.make(2, compiled).words
    assert isinstance(words, LockedWords) != compiled
    assert words.load(ACTIVE) == 2
    assert words.add(ACTIVE, -1) == 1 and words.add(ACTIVE, -1) == 0 and words.add(ACTIVE, -1) == -1
    assert words.cas(5, 0, 3) and not words.cas(5, 0, 4) and words.load(5) == 3
    assert words.cas(5, 3, 0) and words.load(5) == 0
    with pytest.raises(IndexError):
        words.load(len(words))


def test_a_thief_gets_the_oldest_half_of_the_frontier():
    none = frozenset()
    tasks = [("k0", [], none, None), ("k1", ["a"], none, None)]
    # Stack entries (key, depth, into, asleep, again): children of the states on path ["p1", "p2"]. A task keeps
    # the entry's sleep set and the transitions a revisit found awake.
    stack = [("s1", 1, "x", frozenset({"q"}), None), ("s2", 2, "y", none, ("r",)), ("s3", 3, "z", none, None),
             ("s4", 3, "w", none, None)]
    given = split_oldest(tasks, stack, ["p1", "p2"])
    assert given == [("k0", [], none, None), ("k1", ["a"], none, None), ("s1", ["x"], frozenset({"q"}), None)]
    assert tasks == [] and [e[0] for e in stack] == ["s2", "s3", "s4"]
    given = split_oldest([], stack, ["p1", "p2"])
    assert given == [("s2", ["p1", "y"], none, ("r",))] and [e[0] for e in stack] == ["s3", "s4"]
    assert split_oldest([], stack[:1], ["p1", "p2"]) == []  # one entry: kept, to work on


class _Pipe:
    """An in-process stand-in for a worker's pipe."""

    def __init__(self):
        self.messages = []

    def send(self, obj):
        self.messages.append(obj)

    def poll(self, timeout):
        return bool(self.messages)

    def recv(self):
        return self.messages.pop(0)


def test_a_theft_is_answered_once_and_counted_active_before_it_leaves():
    control = Control.make(2, compiled=False)
    pipes = [_Pipe(), _Pipe()]
    victim = Endpoint(control, 0, pipes[0], pipes, lambda: True)
    thief = Endpoint(control, 1, pipes[1], pipes, lambda: True)
    thief.go_idle()
    assert control.words.load(ACTIVE) == 1
    victim.publish(4)
    assert control.words.cas(control.request(0), 0, 2)  # the thief's request, as steal() makes it
    victim.serve(lambda: [("k", [])])
    assert control.words.load(ACTIVE) == 2 and control.words.load(control.request(0)) == 0
    assert thief._answer(0) == [("k", [])] and victim.donated == 1
    victim.serve(lambda: pytest.fail("no request pending: nothing to give"))


def test_a_request_the_victim_never_saw_is_taken_back(monkeypatch):
    monkeypatch.setattr(work_stealing, "POLL", 0.0)
    control = Control.make(2, compiled=False)
    pipes = [_Pipe(), _Pipe()]
    thief = Endpoint(control, 1, pipes[1], pipes, lambda: True)
    assert control.words.cas(control.request(0), 0, 2)
    control.words.store(control.size(0), 0)  # the victim ran dry before it looked
    assert thief._answer(0) == [] and control.words.load(control.request(0)) == 0


def test_an_idle_worker_stops_when_no_worker_holds_work():
    control = Control.make(2, compiled=False)
    pipes = [_Pipe(), _Pipe()]
    ends = [Endpoint(control, w, pipes[w], pipes, lambda: True) for w in range(2)]
    ends[0].go_idle()
    ends[1].go_idle()
    assert control.words.load(ACTIVE) == 0
    assert ends[0].steal() is None and ends[1].steal() is None


def test_a_stale_or_unwanted_build_is_not_used(monkeypatch):
    from controlled import shared_words

    skip_unless_built(compiled_words() is not None, "controlled._atomic_words")
    monkeypatch.setattr(shared_words, "_built_digest", lambda: "a digest of some older source")
    with pytest.warns(RuntimeWarning, match="source changed since the build"):
        assert compiled_words() is None
        assert not SharedVisited(10).compiled  # the locked fallback, then
    monkeypatch.undo()
    monkeypatch.setenv("TLBRACE_PURE_PYTHON", "1")
    assert compiled_words() is None
