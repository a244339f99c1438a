"""Exhaustive depth-first search on several processes (controlled.parallel_search): the same state space as
one process, counterexamples that replay, failures and limits reported."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from controlled import parallel_search
from controlled.explorer import explore
from controlled.replay import run_schedule
from kernel_model.config import Config
from scenarios.loader import load_scenario


@pytest.fixture(autouse=True)
def fork_at_once(monkeypatch):
    """Fork the workers as soon as there is work to share (these searches are smaller than FORK_AFTER)."""
    monkeypatch.setattr(parallel_search, "FORK_AFTER", 0)


def test_a_small_search_ends_before_any_worker_starts(monkeypatch):
    monkeypatch.setattr(parallel_search, "FORK_AFTER", 1_000_000)
    monkeypatch.setattr(multiprocessing, "get_context", None)  # would raise if it forked
    sc = load_scenario("madv_dontneed")
    r = explore(sc, Config(ordering="delayed"), "dfs", workers=2)
    assert r.complete and r.states == explore(sc, Config(ordering="delayed"), "dfs", hash_compact=True,
                                             sleep_sets=False).states


def test_the_shared_visited_set_is_a_set_of_64_bit_hashes():
    v = parallel_search.SharedVisited(100)
    assert v.size >= 100 and v.size & (v.size - 1) == 0
    assert v.insert(hash(("a", 1))) and not v.insert(hash(("a", 1)))
    assert v.insert(-5) and not v.insert(-5) and v.insert(5)  # negative hashes are their own values
    assert v.insert(0) and not v.insert(0)  # 0 marks a free slot: stored as another value, still found
    collide = [v.size * k + 3 for k in range(1, 6)]  # one home slot: found again by probing
    assert all(v.insert(h) for h in collide) and not any(v.insert(h) for h in collide)


def test_the_shared_set_grows_in_generations_and_finds_hashes_in_every_one(monkeypatch):
    monkeypatch.setattr(parallel_search, "FIRST_GENERATION", 1 << 10)
    v = parallel_search.SharedVisited(1 << 16)
    assert [mask + 1 for _, mask in v.regions] == [1 << 10, 1 << 12, 1 << 14, 1 << 15, 1 << 13, 1 << 11, 1 << 10]
    hashes = [hash(("state", n)) for n in range(v.limit)]
    for n, h in enumerate(hashes):
        assert v.insert(h)
        v.advance(n + 1)
    assert v.slots[0] == len(v.regions) - 1  # it moved through every generation
    assert not any(v.insert(h) for h in hashes)  # and finds each hash in the generation that holds it


def test_a_forked_child_inserts_into_the_same_set():
    v = parallel_search.SharedVisited(1000)
    pid = os.fork()
    if pid == 0:
        os._exit(0 if v.insert(12345) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not v.insert(12345)


# Without writer symmetry the reduced state graph does not depend on the order of the search, so two workers
# must visit exactly the states one process visits. (With symmetry, which member of an orbit is met first
# decides which reduced successors are tried: the counts may differ by a few states, the verdicts do not.)
@pytest.mark.parametrize("name, params, ordering", [
    ("madv_dontneed", {}, "delayed"),
    ("munmap", {}, "delayed"),
    ("ladder", {"pages": 2, "stores": 1}, "delayed"),
])
def test_two_workers_visit_the_states_one_process_visits(name, params, ordering):
    sc = load_scenario(name, params)
    cfg = Config(ordering=ordering)
    one = explore(sc, cfg, "dfs", hash_compact=True, symmetric=False, sleep_sets=False)  # as the workers
    two = explore(sc, cfg, "dfs", workers=2, symmetric=False)
    assert one.complete and two.complete and not one.found and not two.found
    # Never fewer (a state lost), and more only by the documented race: two workers that insert the same state
    # at the same instant both count and expand it (controlled/parallel_search.py), and the successors of a
    # state expanded twice can race again. CI saw 3,404 vs 3,403; a loaded 2-core machine 724 vs 721. The
    # bound is loose on purpose; what it must catch is a shortfall (a lost state), which it still does exactly.
    for mine, theirs in ((two.states, one.states), (two.transitions, one.transitions),
                         (two.schedules, one.schedules)):
        assert theirs <= mine <= theirs + 10 + theirs // 100
    assert 0.0 < two.collision_bound < 1e-9


@pytest.mark.slow  # a whole search, once in one process and once on two
def test_with_symmetry_two_workers_reach_the_same_verdict():
    sc = load_scenario("ladder", {"writers": 2, "stores": 1})
    one = explore(sc, Config(ordering="delayed"), "dfs", hash_compact=True, sleep_sets=False)  # as the workers
    two = explore(sc, Config(ordering="delayed"), "dfs", workers=2)
    assert one.complete and two.complete and not two.found
    assert abs(two.states - one.states) <= one.states // 1000


def test_a_counterexample_found_by_a_worker_replays():
    sc = load_scenario("ladder", {"writers": 2, "stores": 1})
    cfg = Config(ordering="eager")
    r = explore(sc, cfg, "dfs", workers=2)
    assert not r.complete and r.found
    found = r.found[0]
    assert found.invariants == ["lost_dirty_data"]
    assert run_schedule(sc, cfg, found.schedule).invariants == ["lost_dirty_data"]


def test_the_budget_and_the_time_limit_stop_the_workers():
    sc = load_scenario("ladder", {"pages": 2, "writers": 2})
    r = explore(sc, Config(ordering="delayed"), "dfs", workers=2, budget=10_000)
    assert not r.complete and 10_000 <= r.states < 20_000
    r = explore(sc, Config(ordering="delayed"), "dfs", workers=2, time_limit=0.5)
    assert not r.complete and r.seconds < 30


def test_a_worker_that_fails_is_reported_with_its_traceback(monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("model bug in a worker")

    sc = load_scenario("ladder", {"pages": 2})
    real = parallel_search.depth_first
    calls = []

    def seed_then_break(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs) if len(calls) == 1 else broken()

    monkeypatch.setattr(parallel_search, "depth_first", seed_then_break)  # the workers are forked: they see it
    with pytest.raises(RuntimeError, match="model bug in a worker"):
        explore(sc, Config(ordering="delayed"), "dfs", workers=2)


def test_workers_stop_when_the_coordinator_is_killed(tmp_path):
    """A coordinator killed outright (SIGKILL: no finally, no cleanup) must not leave workers searching on."""
    import signal
    import subprocess
    import sys
    import time

    pids = tmp_path / "workers"
    script = tmp_path / "coordinator.py"
    script.write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {os.getcwd()!r})\n"
        "from controlled import parallel_search\n"
        "from kernel_model.config import Config\n"
        "from controlled.explorer import explore\n"
        "from scenarios.loader import load_scenario\n"
        "real = parallel_search._worker\n"
        "def worker(*args):\n"
        f"    fd = os.open({str(pids)!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND)\n"
        "    os.write(fd, f'{os.getpid()}\\n'.encode())\n"
        "    os.close(fd)\n"
        "    real(*args)\n"
        "parallel_search._worker = worker\n"
        "parallel_search.FORK_AFTER = 0\n"
        "sc = load_scenario('ladder', {'pages': 2, 'writers': 2})\n"
        "explore(sc, Config(ordering='delayed'), 'dfs', workers=2)\n")
    proc = subprocess.Popen([sys.executable, str(script)])
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        workers = [int(line) for line in pids.read_text().split()] if pids.exists() else []
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(workers) == 2, "the coordinator did not start its workers"
    deadline = time.monotonic() + 20
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in workers if _running(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)  # by PID: never leave a process of ours behind
    assert not alive


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
