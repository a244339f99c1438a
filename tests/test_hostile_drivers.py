"""A wild driver killed from outside (SIGKILL, the OOM killer): what it started goes with it. Each test failed
before its fix (session 14's red team).

The driver runs in a child process with its own embedded Ray (tests/test_reliability.py's helpers)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from child_process import ROOT, driver_env
from test_reliability import alive, descendants, stress_cmd, wait_for_records

pytestmark = pytest.mark.wild  # a driver in a child process with a Ray of its own

# Ray's GCS and raylet share the driver's fate at once (PR_SET_PDEATHSIG); this bounds the rest (the watchdog
# notes processes every 0.5 s and kills as soon as the driver's pipe ends), with room for a loaded machine.
GONE_WITHIN_S = 15


def test_a_sigkilled_driver_leaves_no_ray_process_behind(tmp_path):
    """Before, the raylet's dashboard and runtime-env agents outlived the SIGKILLed driver by about 60 s, its
    workers by about 30 s (each waits out a reconnect to the dead GCS)."""
    out = tmp_path / "campaign"
    proc = subprocess.Popen(stress_cmd(out), env=driver_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    tree: dict[int, str] = {}
    try:
        wait_for_records(out / "results.msgpack", 5, proc)
        tree = descendants(proc.pid)
        assert any(_name(pid) == "raylet" for pid in tree), tree  # the embedded cluster is the driver's
        os.kill(proc.pid, signal.SIGKILL)  # the driver alone, as the OOM killer does
        proc.wait(timeout=30)
        deadline = time.monotonic() + GONE_WITHIN_S
        while True:
            left = {pid: _name(pid) for pid, start in tree.items() if alive(pid, start)}
            if not left:
                break
            assert time.monotonic() < deadline, f"still alive {GONE_WITHIN_S} s after the driver's SIGKILL: {left}"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for pid, start in tree.items():  # what the test saw start, by PID, should the check have failed
            if alive(pid, start):
                os.kill(pid, signal.SIGKILL)


def test_a_campaign_that_ends_leaves_no_watchdog_behind(tmp_path):
    out = tmp_path / "campaign"
    proc = subprocess.Popen(stress_cmd(out, "--trials", "20"), env=driver_env(), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    tree: dict[int, str] = {}
    try:
        wait_for_records(out / "results.msgpack", 1, proc)
        tree = descendants(proc.pid)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode in (0, 1) and err == "", err[-2000:]
        deadline = time.monotonic() + GONE_WITHIN_S
        while any(alive(pid, start) for pid, start in tree.items()):
            assert time.monotonic() < deadline, "a process of the finished campaign is still alive"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"
