"""Multi-node and --address runs, each on a Ray of its own in a child process (the session's Ray stays as it is).

Both keep Ray on loopback (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, set by actors.ray_session before `import ray`)
and turn token auth off for head and driver alike. The `ray start --block` head is stopped by SIGTERM to its PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from child_process import ROOT, cluster_env, on_two_nodes

pytestmark = pytest.mark.wild  # each test runs a Ray cluster of its own in a child process

RAY = Path(sys.executable).with_name("ray")

CLUSTER_BODY = r"""
    from actors.campaign import CampaignOptions, run_campaign
    from kernel_model.config import Config
    from scenarios.loader import load_scenario
    ray.init(address=cluster.address, **ray_session.quiet_init_kwargs())
    result = run_campaign(load_scenario("madv_dontneed"), Config(ordering="delayed"),
                          CampaignOptions(trials=6, parallel=2))
    print(json.dumps({"nodes": [n["NodeID"] for n in ray.nodes() if n["Alive"]],
                      "ips": sorted({n["NodeManagerAddress"] for n in ray.nodes()}),
                      "by_trial": {str(k): list(v) for k, v in result.nodes_by_trial.items()},
                      "summary": result.summary()}))
"""


def test_trials_run_on_both_nodes_of_a_two_node_cluster() -> None:
    out = on_two_nodes(CLUSTER_BODY)[-1]
    assert out["ips"] == ["127.0.0.1"]
    assert out["summary"]["trials"] == 6 and out["summary"]["violations"] == 0
    by_trial = out["by_trial"]
    assert len(by_trial) == 6
    used = {n for nodes in by_trial.values() for n in nodes}
    assert used == set(out["nodes"]) and len(used) == 2  # both nodes ran trials
    assert all(len(set(nodes)) == 1 for nodes in by_trial.values())  # each trial's actors on one node


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ray_head() -> Iterator[tuple[subprocess.Popen, int]]:
    """A `ray start --head --block` child on 127.0.0.1 (the head and its port), in a session of its own so that a
    test can stop (SIGSTOP) its whole process group; stopped at the end by SIGTERM to its PID."""
    port = free_port()
    head = subprocess.Popen([str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                             "--num-cpus=2", "--include-dashboard=false", "--temp-dir=/tmp/tlbrace-ray-head",
                             "--block"], env=cluster_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and head.poll() is None, "the head did not come up"
                time.sleep(0.3)
        yield head, port
    finally:
        os.killpg(head.pid, signal.SIGCONT)  # a stopped head cannot stop
        head.send_signal(signal.SIGTERM)  # its PID only: never `ray stop`, never its whole process group
        head.wait(timeout=60)


def stress_argv(port: int, out: Path, trials: int) -> list[str]:
    return [sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main())", "stress",
            "madv_dontneed", "--ordering", "delayed", "--address", f"127.0.0.1:{port}", "--trials", str(trials),
            "--json", "--out", str(out)]


def test_stress_joins_a_ray_start_head_by_address(tmp_path: Path) -> None:
    with ray_head() as (_head, port):
        proc = subprocess.run(stress_argv(port, tmp_path, 4), env=cluster_env(), cwd=ROOT, capture_output=True,
                              text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads(proc.stdout)
        assert summary["trials"] == 4 and summary["violations"] == summary["crashed"] == 0


def test_stress_on_a_head_that_vanishes_ends_with_exit_3_and_its_results_whole(tmp_path: Path) -> None:
    """The head's whole process group SIGSTOPped in the middle of the campaign, as a machine that stops or is cut
    off leaves it: nothing is refused, nothing answers. Before, the driver waited for more than 150 s (killed
    then); now one line names the results file and --resume, exit 3, every synced record readable."""
    from logs.results_file import read_results

    results = tmp_path / "results.msgpack"
    with ray_head() as (head, port):
        driver = subprocess.Popen(stress_argv(port, tmp_path, 100_000), env=cluster_env(), cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            deadline = time.monotonic() + 180
            while not (results.exists() and len(read_results(results).records) >= 20):
                assert driver.poll() is None and time.monotonic() < deadline, "no trials recorded"
                time.sleep(0.5)
            os.killpg(head.pid, signal.SIGSTOP)
            _out, err = driver.communicate(timeout=150)  # Ray's own end would come after 60 s, exit 1
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)  # its own session: the driver and what it forked
                driver.wait()
    assert driver.returncode == 3, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tlbrace: error: Ray's GCS at 127.0.0.1:{port} has not answered")
    assert f"recorded in {results}" in lines[0] and "--resume" in lines[0]
    contents = read_results(results)
    assert len(contents.records) >= 20 and not contents.skipped


def test_scale_on_a_head_that_vanishes_ends_with_exit_3_and_its_finished_rows(tmp_path: Path) -> None:
    """`tlbrace scale --address` with the head's process group SIGSTOPped in the middle of the grid. Before, a
    grid whose next cell began after the stop waited in ray.nodes() for ever (seen: over 200 s, no word); now one
    line, exit 3, and results.csv holds the cells that finished."""
    import csv

    argv = [sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main())", "scale",
            "scale_writers", "--cpus", "3,4,5", "--trials", "40", "--json", "--out", str(tmp_path)]
    with ray_head() as (head, port):
        driver = subprocess.Popen(argv + ["--address", f"127.0.0.1:{port}"], env=cluster_env(), cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            # Some way into the grid (when exactly does not matter: in a cell or between two)
            stop_at = time.monotonic() + 25
            while time.monotonic() < stop_at:
                assert driver.poll() is None, driver.communicate()[1][-3000:]
                time.sleep(0.5)
            os.killpg(head.pid, signal.SIGSTOP)
            _out, err = driver.communicate(timeout=150)
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait()
    assert driver.returncode == 3, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tlbrace: error: Ray's GCS at 127.0.0.1:{port} "), lines
    assert f"the cells that finished are in {tmp_path / 'results.csv'}" in lines[0], lines[0]
    with open(tmp_path / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(row["trials"] == "40" for row in rows)
