"""Multi-node and --address runs, each on a Ray of its own in a child process (the session's Ray stays as it is).

Both keep Ray on loopback (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, set by actors.ray_session before `import ray`)
and turn token auth off for head and driver alike. The `ray start --block` head is stopped by SIGTERM to its PID.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

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


def test_stress_joins_a_ray_start_head_by_address(tmp_path: Path) -> None:
    port = free_port()
    head = subprocess.Popen([str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                             "--num-cpus=2", "--include-dashboard=false", "--temp-dir=/tmp/tlbrace-ray-head",
                             "--block"], env=cluster_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and head.poll() is None, "the head did not come up"
                time.sleep(0.3)
        proc = subprocess.run([sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main())",
                               "stress", "madv_dontneed", "--ordering", "delayed", "--address", f"127.0.0.1:{port}",
                               "--trials", "4", "--json", "--out", str(tmp_path)],
                              env=cluster_env(), cwd=ROOT, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads(proc.stdout)
        assert summary["trials"] == 4 and summary["violations"] == summary["crashed"] == 0
    finally:
        head.send_signal(signal.SIGTERM)  # its PID only: never `ray stop`, never its whole process group
        head.wait(timeout=60)
