"""Exhaustive depth-first search on several processes (controlled.parallel_search): the states, transitions and
verdicts of one process, counterexamples that replay, work stealing that ends, every worker stopped.

Plain forked processes (no Ray), two workers. Most searches here are smaller than FORK_AFTER_SECONDS takes, so
the fixture makes the seed phase fork at its first look at the clock."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from controlled import parallel_search
from controlled.explorer import explore
from controlled.machine import Machine
from controlled.replay import run_schedule
from controlled.shared_words import compiled_words
from kernel_model.config import Config
from scenarios.loader import load_scenario
from tests.compiled_required import skip_unless_built


@pytest.fixture(autouse=True)
def fork_at_once(monkeypatch):
    monkeypatch.setattr(parallel_search, "FORK_AFTER_SECONDS", 0.0)


def one_process(sc, cfg, **kw):
    """The one-process search the workers must agree with: hash compaction, no sleep sets (as the workers)."""
    return explore(sc, cfg, "dfs", hash_compact=True, sleep_sets=False, **kw)


def capture_reports(monkeypatch) -> list:
    """The workers' reports of the next parallel search (who stole what), as the coordinator merges them."""
    seen: list = []
    real = parallel_search._merge_reports

    def merge(result, reports):
        seen.extend(reports)
        real(result, reports)

    monkeypatch.setattr(parallel_search, "_merge_reports", merge)
    return seen


def test_a_search_that_ends_before_the_fork_time_never_forks(monkeypatch):
    monkeypatch.setattr(parallel_search, "FORK_AFTER_SECONDS", 0.3)
    monkeypatch.setattr(parallel_search, "_clock", lambda: 0.0)  # 0.3 s never pass
    monkeypatch.setattr(multiprocessing, "get_context", None)  # would raise if it forked
    sc = load_scenario("ladder", {"pages": 2, "stores": 1})
    cfg = Config(ordering="delayed")
    r = explore(sc, cfg, "dfs", workers=2)
    # The seed phase is one process's search: with sleep sets, as `--workers` runs by default.
    assert r.complete and r.states == explore(sc, cfg, "dfs", hash_compact=True).states


def test_the_seed_forks_once_its_time_is_up(monkeypatch):
    monkeypatch.setattr(parallel_search, "FORK_AFTER_SECONDS", 0.3)
    now = iter(range(10**6))  # each look at the clock is a second later: over at the first tick
    monkeypatch.setattr(parallel_search, "_clock", lambda: float(next(now)))
    reports = capture_reports(monkeypatch)
    sc = load_scenario("ladder", {"pages": 2, "stores": 1})
    cfg = Config(ordering="delayed")
    r = explore(sc, cfg, "dfs", workers=2, sleep_sets=False)
    assert len(reports) == 2 and sum(rep["states"] for rep in reports) > 0
    assert r.complete and r.states == one_process(sc, cfg).states


# Without sleep sets (controlled.shared_sleep_sets: with them, which worker reaches a state first decides the
# sleep set it is stored with), the reduced state graph does not depend on the order of the search (with interchangeable writers too: the
# reducer breaks ties between persistent sets by names a permutation of the writers leaves alone), and the shared
# table counts each state once, so every count equals one process's.
# --all: the whole graph, so the transitions and schedules are comparable too, and every violation is found.
EXACT_CELLS = [
    ("madv_dontneed", {}, Config(ordering="delayed"), True),
    ("madv_dontneed", {}, Config(ordering="eager"), True),
    ("munmap", {}, Config(ordering="delayed"), True),
    ("ladder", {"pages": 2, "stores": 1}, Config(ordering="delayed"), True),
    ("ladder", {"writers": 2, "stores": 1}, Config(ordering="delayed"), False),
    ("ladder", {"writers": 2, "stores": 1}, Config(ordering="eager"), False),
    ("madv_dontneed", {}, Config(ordering="delayed", mutant="skip_tlb_flush_rmaps"), True),
    # Interchangeable writers, symmetry on (each worker meets other members of an orbit first than one process)
    ("ladder", {"writers": 2, "stores": 1}, Config(ordering="delayed"), True),
    ("ladder", {"writers": 2, "stores": 1}, Config(ordering="eager"), True),
    ("ladder", {"pages": 1, "writers": 2, "stores": 2}, Config(ordering="delayed"), True),
]


@pytest.mark.parametrize("name, params, cfg, symmetric", EXACT_CELLS,
                         ids=[f"{n}-{c.ordering}-{c.mutant or 'ok'}-{'sym' if s else 'nosym'}"
                              for n, _, c, s in EXACT_CELLS])
@pytest.mark.slow  # each a search on two processes and one in this one
def test_two_workers_count_exactly_what_one_process_counts(name, params, cfg, symmetric):
    sc = load_scenario(name, params)
    one = one_process(sc, cfg, symmetric=symmetric, stop_at_first=False)
    two = explore(sc, cfg, "dfs", workers=2, symmetric=symmetric, stop_at_first=False, sleep_sets=False)
    assert one.complete and two.complete
    assert (two.states, two.transitions, two.schedules) == (one.states, one.transitions, one.schedules)
    assert sorted(f.invariants for f in two.found) == sorted(f.invariants for f in one.found)
    assert 0.0 < two.collision_bound < 1e-9


def test_three_workers_count_exactly_too():
    """More thieves than victims at times: requests contend for the same victim's slot."""
    sc = load_scenario("ladder", {"writers": 2, "stores": 1})
    cfg = Config(ordering="delayed")
    one = one_process(sc, cfg, symmetric=False)
    three = explore(sc, cfg, "dfs", workers=3, symmetric=False, sleep_sets=False)
    assert three.complete and (three.states, three.transitions) == (one.states, one.transitions)


@pytest.mark.parametrize("name, params, cfg", [
    ("ladder", {"writers": 2, "stores": 1}, Config(ordering="eager")),
    ("madv_dontneed", {}, Config(ordering="delayed", mutant="skip_tlb_flush_rmaps")),
])
def test_the_first_violation_stops_the_workers_and_replays(name, params, cfg):
    sc = load_scenario(name, params)
    expected = one_process(sc, cfg).found[0].invariants
    r = explore(sc, cfg, "dfs", workers=2)
    assert not r.complete and r.found
    assert r.found[0].invariants == expected
    assert run_schedule(sc, cfg, r.found[0].schedule).invariants == expected


@pytest.mark.parametrize("ordering", ["delayed", "eager"])
def test_with_symmetry_one_process_counts_alike_in_either_order(monkeypatch, ordering):
    """Which member of an orbit of interchangeable writers a search meets first must not change what it counts
    (controlled.reducer's tie-break): each state's successors tried in reverse give the same counts. (Before the
    tie-break took the first of equally small persistent sets by agent number: 38,663 and 38,660 states.)"""
    sc = load_scenario("ladder", {"writers": 2, "stores": 1})
    cfg = Config(ordering=ordering)
    forward = one_process(sc, cfg, stop_at_first=False)
    real = Machine.enabled
    monkeypatch.setattr(Machine, "enabled", lambda m: real(m)[::-1])
    backward = one_process(sc, cfg, stop_at_first=False)
    assert forward.complete and backward.complete
    assert (backward.states, backward.transitions, backward.schedules) == \
        (forward.states, forward.transitions, forward.schedules)
    assert sorted(f.invariants for f in backward.found) == sorted(f.invariants for f in forward.found)


def test_a_worker_dealt_nothing_steals_and_the_search_ends(monkeypatch):
    """Uneven work: every task goes to worker 0; worker 1 starts idle and must steal, and both must stop once
    the last task is done (no worker quits while the other can still donate: the counts are exact)."""
    monkeypatch.setattr(parallel_search, "_deal", lambda tasks, workers: [tasks] + [[]] * (workers - 1))
    reports = capture_reports(monkeypatch)
    sc = load_scenario("ladder", {"writers": 2, "stores": 1})
    cfg = Config(ordering="delayed")
    r = explore(sc, cfg, "dfs", workers=2, symmetric=False, sleep_sets=False)
    one = one_process(sc, cfg, symmetric=False)
    by_worker = {rep["worker"]: rep for rep in reports}
    assert by_worker[1]["received"] > 0 and by_worker[0]["donated"] > 0 and by_worker[1]["states"] > 0
    assert r.complete and all(rep["done"] for rep in reports)
    assert r.states == one.states and r.transitions == one.transitions


def test_the_fallback_table_counts_what_the_compiled_one_counts():
    skip_unless_built(compiled_words() is not None, "controlled._atomic_words")
    sc = load_scenario("ladder", {"writers": 2, "stores": 1})
    cfg = Config(ordering="delayed")
    counts = []
    for compiled in (True, False):
        r = parallel_search.parallel_dfs(sc, cfg, 2, 1_000_000, True, True, None, None, symmetric=False,
                                         compiled=compiled, sleep_sets=False)
        assert r.complete
        counts.append((r.states, r.transitions, r.schedules))
    assert counts[0] == counts[1] == (lambda o: (o.states, o.transitions, o.schedules))(
        one_process(sc, cfg, symmetric=False))


def test_every_worker_started_is_stopped(tmp_path, monkeypatch):
    pids = tmp_path / "workers"
    real = parallel_search._worker

    def worker(*args):
        fd = os.open(pids, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        real(*args)

    monkeypatch.setattr(parallel_search, "_worker", worker)
    sc = load_scenario("ladder", {"writers": 2, "stores": 1})
    for cfg in (Config(ordering="delayed"), Config(ordering="eager")):  # ends complete; ends at a violation
        explore(sc, cfg, "dfs", workers=2)
    started = [int(line) for line in pids.read_text().split()]
    assert len(started) == 4
    alive = [pid for pid in started if _running(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)  # by PID: never leave a process of ours behind
    assert not alive


def test_the_budget_and_the_time_limit_stop_the_workers():
    sc = load_scenario("ladder", {"pages": 2, "writers": 2})
    r = explore(sc, Config(ordering="delayed"), "dfs", workers=2, budget=10_000)
    assert not r.complete and 10_000 <= r.states < 20_000
    r = explore(sc, Config(ordering="delayed"), "dfs", workers=2, time_limit=0.5)
    assert not r.complete and r.seconds < 30


def test_a_worker_that_fails_is_reported_with_its_traceback(monkeypatch):
    sc = load_scenario("ladder", {"pages": 2})
    real = parallel_search.depth_first
    calls = []

    def seed_then_break(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            return real(*args, **kwargs)
        raise ValueError("model bug in a worker")

    monkeypatch.setattr(parallel_search, "depth_first", seed_then_break)  # the workers are forked: they see it
    with pytest.raises(RuntimeError, match="model bug in a worker"):
        explore(sc, Config(ordering="delayed"), "dfs", workers=2)


def test_a_worker_killed_outright_fails_the_search(monkeypatch):
    """A worker gone without a report (SIGKILL: no traceback to send) fails the search: the coordinator, which
    sleeps on the workers' pipes and process handles, wakes at its death."""
    real = parallel_search._worker

    def worker(me, *args):
        if me == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        real(me, *args)

    monkeypatch.setattr(parallel_search, "_worker", worker)
    monkeypatch.setattr(parallel_search, "_IDLE_POLL", 600.0)  # only the worker's death wakes the coordinator
    sc = load_scenario("ladder", {"pages": 2, "writers": 2})
    with pytest.raises(RuntimeError, match="a worker died"):
        explore(sc, Config(ordering="delayed"), "dfs", workers=2)


def test_workers_stop_when_the_coordinator_is_killed(tmp_path):
    """A coordinator killed outright (SIGKILL: no finally, no cleanup) must not leave workers searching on, even
    when it dies before they first look at it."""
    pids = tmp_path / "workers"
    script = tmp_path / "coordinator.py"
    script.write_text(
        "import os, sys, time\n"
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
        "    time.sleep(1.0)\n"  # as under load: the coordinator dies before this worker first looks at it
        "    real(*args)\n"
        "parallel_search._worker = worker\n"
        "parallel_search.FORK_AFTER_SECONDS = 0.0\n"
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


def test_the_bench_row_compares_one_process_with_the_workers():
    from controlled.parallel_bench import bench_row

    row = bench_row(load_scenario("ladder", {"pages": 2, "stores": 1}), "delayed", workers=2, fork_after=0.0)
    assert row.one.complete and row.many.complete and row.same_counts
    assert row.one.forked == 1 and row.many.forked == 2  # each in a fresh process: the fixture's 0 s passed on
    assert row.one.cpu > 0 and row.many.cpu > 0 and row.one.cpu_per_state > 0 and row.cpu_ratio > 0
    assert "equal" in row.line() and "us CPU/state" in row.line() and "ended before the fork" not in row.line()
    assert row.as_dict()["many"]["states"] == row.one.states


def test_the_cli_says_how_many_workers_and_the_collision_bound(capsys, tmp_path):
    from cli_run import run_cli

    argv = ("explore", "ladder", "--param", "pages=2", "--param", "stores=1", "--ordering", "delayed",
            "--strategy", "dfs", "--out", str(tmp_path))
    rc, out, _ = run_cli(capsys, *argv, "--workers", "2")
    assert rc == 0 and "on 2 workers; hash compaction: chance of a merged state below" in " ".join(out.split())
    rc, out, _ = run_cli(capsys, *argv, "--workers", "2", "--no-sleep-sets", "--json")
    doc = json.loads(out)
    rc1, out1, _ = run_cli(capsys, *argv, "--hash-compact", "--no-sleep-sets", "--json")
    one = json.loads(out1)
    assert rc == rc1 == 0 and doc["workers"] == doc["forked"] == 2 and doc["complete"]
    assert (doc["states"], doc["transitions"]) == (one["states"], one["transitions"])
    assert doc["collision_bound"] == one["collision_bound"] > 0
    rc, _, err = run_cli(capsys, *argv[:-4], "--strategy", "bfs", "--workers", "2")
    assert rc == 2 and "--workers" in err


def test_the_cli_says_when_a_search_ended_before_the_fork(capsys, tmp_path, monkeypatch):
    """A search that ends before the fork (here: a clock on which 0.3 s never pass) ran on one process, and the
    line says so rather than claiming two workers."""
    from cli_run import run_cli

    monkeypatch.setattr(parallel_search, "FORK_AFTER_SECONDS", 0.3)
    monkeypatch.setattr(parallel_search, "_clock", lambda: 0.0)

    argv = ("explore", "madv_dontneed", "--ordering", "delayed", "--strategy", "dfs", "--workers", "2",
            "--out", str(tmp_path))
    rc, out, _ = run_cli(capsys, *argv)
    assert rc == 0 and "on 1 process (it ended before the fork at 0.3 s)" in " ".join(out.split())
    rc, out, _ = run_cli(capsys, *argv, "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["workers"] == 2 and doc["forked"] == 1 and doc["complete"]
