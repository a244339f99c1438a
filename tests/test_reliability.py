"""Campaigns that survive faults: a driver killed with SIGKILL resumes without losing or repeating a trial, Ctrl-C
stops cleanly, a dead CPU or page-table actor crashes only its trial, a trial that stops moving is reported hung
with who waits for whom, and the deadlocking mutants are a ``hang`` finding with the wait-for cycle in both
runtimes. Faults come from test-only hooks (actors.fault_injection.Faults), never from sleeping and hoping.

The driver tests run ``python -m cli.main stress`` in a child process with its own embedded Ray, started in a
session of its own, so that the child's whole process tree (driver, GCS, raylet, workers) can be stopped by PID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from child_process import ROOT, driver_env

from actors.campaign import CampaignOptions, run_campaign, trial_seed
from actors.fault_injection import Faults
from controlled.explorer import explore
from kernel_model.config import Config
from logs.results_file import ResultsError, frame, read_results
from scenarios.loader import load_scenario

pytestmark = pytest.mark.wild  # drivers in child processes with their own Ray, and campaigns on the session's

TRIALS = 200


def stress_cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", "stress", "madv_dontneed", "--ordering", "eager",
            "--trials", str(TRIALS), "--parallel", "2", "--seed", "5", "--json", "--out", str(out), *extra]


def interruptible(cmd: list[str]) -> list[str]:
    """``cmd`` (a Python command) with SIGINT back at its default before Python starts. A test run launched in
    the background (``bash scripts/test.sh &``) has SIGINT ignored, children inherit that across exec, and a
    Python started so never installs its KeyboardInterrupt handler: Ctrl-C must reach the driver as it does a
    terminal's foreground job."""
    shim = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
            "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")
    return [sys.executable, "-c", shim, *cmd[1:]]


def descendants(root: int) -> dict[int, str]:
    """PID -> start time of every process below ``root`` (the start time guards against a reused PID)."""
    children: dict[int, list[int]] = {}
    started: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        started[int(entry)] = fields[19]
    out: dict[int, str] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out[child] = started[child]
            todo.append(child)
    return out


def alive(pid: int, start: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == start and fields[0] != "Z"


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the child's process group, then any of its descendants that left the group, each by PID; wait
    until all of them are gone."""
    tree = descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child leads its own session: its group id is its PID
    except ProcessLookupError:
        pass
    for pid, start in tree.items():
        if alive(pid, start):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(alive(pid, start) for pid, start in tree.items()):
        assert time.monotonic() < deadline, "processes of the killed driver are still alive"
        time.sleep(0.1)


def wait_for_records(path: Path, n: int, proc: subprocess.Popen, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"the campaign ended (status {proc.returncode}) before {n} trials were recorded"
        assert time.monotonic() < deadline, f"fewer than {n} trials recorded in {timeout} s"
        if path.exists():
            try:
                count = len(read_results(path).records)
            except ResultsError:
                count = 0
            if count >= n:
                return count
        time.sleep(0.05)


def test_a_killed_driver_resumes_without_losing_or_repeating_a_trial(tmp_path: Path) -> None:
    out = tmp_path / "campaign"
    path = out / "results.msgpack"
    proc = subprocess.Popen(stress_cmd(out), env=driver_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_records(path, 30, proc)
    finally:
        kill_tree(proc)
    killed = path.read_bytes()
    before = read_results(path)
    intact = killed[:before.intact]
    # A kill in the middle of a write: the next record cut short. Resume must drop it and write that trial again.
    torn = frame({"type": "trial", "trial": 199, "seed": 1, "status": "ok", "invariants": []})
    with open(path, "ab") as f:
        f.write(torn[:len(torn) // 2])
    assert read_results(path).torn > 0

    resumed = subprocess.run(stress_cmd(out, "--resume"), env=driver_env(), cwd=ROOT, capture_output=True, text=True,
                             timeout=180)
    assert resumed.returncode in (0, 1), resumed.stderr[-3000:]
    assert resumed.stderr == ""  # Ray's own warnings (token auth...) stay out of the terminal
    summary = json.loads(resumed.stdout)
    after = read_results(path)
    ids = [r["trial"] for r in after.records]
    assert path.read_bytes().startswith(intact)  # every record written before the kill, byte for byte
    assert after.records[:len(before.records)] == before.records
    assert sorted(ids) == list(range(TRIALS))  # every trial exactly once
    assert all(r["seed"] == trial_seed(5, r["trial"]) for r in after.records)  # the uninterrupted seeds
    assert after.torn == 0
    assert summary["trials"] == TRIALS and summary["resumed"] == len(before.records)
    assert summary["violations"] == sum(1 for r in after.records if r["invariants"])
    # The logs agree with the results file: a trial the killed driver logged but never recorded ran again, and
    # its old log went (replaced if it failed again, removed if it passed).
    assert {str(p) for p in out.glob("*-trial*.msgpack")} == {r["log"] for r in after.records if r["log"]}


def test_ctrl_c_stops_cleanly_and_the_campaign_resumes(tmp_path: Path) -> None:
    out = tmp_path / "campaign"
    path = out / "results.msgpack"
    proc = subprocess.Popen(interruptible(stress_cmd(out)), env=driver_env(), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for_records(path, 20, proc)
        os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends the driver
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        kill_tree(proc)  # nothing should be left; this only makes sure
    assert proc.returncode == 130, f"stdout: {stdout[-2000:]}\nstderr: {stderr[-3000:]}"
    summary = json.loads(stdout)
    recorded = read_results(path)
    assert summary["interrupted"] and summary["trials"] == len(recorded.records) < TRIALS
    assert recorded.torn == 0 and "--resume" in stderr and "Traceback" not in stderr

    resumed = subprocess.run(stress_cmd(out, "--resume"), env=driver_env(), cwd=ROOT, capture_output=True, text=True,
                             timeout=180)
    assert resumed.returncode in (0, 1), resumed.stderr[-3000:]
    assert sorted(r["trial"] for r in read_results(path).records) == list(range(TRIALS))
    assert json.loads(resumed.stdout)["trials"] == TRIALS


# --- faults inside a campaign (the session's Ray) -------------------------------------------------------------

@pytest.mark.usefixtures("ray_session")
def test_a_dead_page_table_actor_crashes_only_its_trial() -> None:
    result = run_campaign(load_scenario("madv_dontneed"), Config(ordering="delayed"),
                          CampaignOptions(trials=4, parallel=2, faults=Faults(kill=(1, "pt"))))
    crashed, = [r for r in result.failures if r.status == "crashed"]
    assert result.trials == 4 and result.by_status["ok"] == 3
    assert crashed.trial == 1 and crashed.actor == "pt"  # the dead actor, not the CPU that noticed
    assert crashed.detail.startswith("trial 1: actor pt crashed: ") and "ActorDiedError" in crashed.detail


@pytest.mark.usefixtures("ray_session")
def test_a_cpu_that_stops_taking_steps_is_hung_with_who_waits_for_whom() -> None:
    result = run_campaign(load_scenario("madv_dontneed"), Config(ordering="delayed"),
                          CampaignOptions(trials=3, parallel=1, hang_timeout=1.0,
                                          faults=Faults(stall=(1, "cpu1", "spin_lock"))))
    hung, = [r for r in result.failures if r.status == "hung"]
    assert result.by_status["ok"] == 2 and hung.trial == 1  # trial 2 ran on fresh actors
    assert hung.violations == []  # the model has no deadlock here: the runtime hung, not the kernel
    assert "zapper could take ptep_get_and_clear_full in zap_pte_range but its CPU took no step" in hung.detail
    assert "zapper holds PTL 0" in hung.detail
    assert "zapper on cpu1 stopped taking steps after spin_lock in zap_pte_range" in hung.detail
    if "writeback waits" in hung.detail:  # writeback reached the PTL before the hang was declared
        assert "writeback waits in page_vma_mapped_walk for PTL 0 held by zapper" in hung.detail


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("mutant, cycle", [("double_ptl", "cycle: zapper -> zapper"),
                                           ("no_ipi_while_spinning", "cycle: zapper -> writeback -> zapper")])
def test_a_deadlocking_kernel_is_a_hang_with_its_cycle_in_both_runtimes(mutant: str, cycle: str) -> None:
    scenario = load_scenario("madv_dontneed")
    cfg = Config(ordering="delayed", mutant=mutant)
    controlled = explore(scenario, cfg).found[0].violations[0]
    assert controlled.invariant == "hang" and cycle in controlled.detail
    result = run_campaign(scenario, cfg, CampaignOptions(trials=2, parallel=2, hang_timeout=0.5))
    assert result.by_status["hung"] >= 1 and result.by_status["diverged"] == 0, result.summary()
    for r in result.failures:
        assert r.status == "hung" and [v.invariant for v in r.violations] == ["hang"]
        assert cycle in r.violations[0].detail and cycle in r.detail
