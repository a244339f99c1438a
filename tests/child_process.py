"""What the tests that start child processes share: the project root, the children's environments, and a
two-node ``ray.cluster_utils.Cluster`` script wrapped around a body of test code.

A child gets a Ray of its own (the session's Ray stays as it is). Two kinds of child:
- a ``tlbrace`` driver (``driver_env``): the CLI turns token auth off itself for its loopback-only embedded
  cluster, so the test's RAY_AUTH_MODE/RAY_ADDRESS are removed rather than inherited;
- a script that builds a Cluster itself (``cluster_env``): loopback only (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0),
  auth off for head and driver alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

_CLUSTER_HEAD = r"""
import json, sys
from actors import ray_session  # Ray's environment before `import ray`
import ray
from ray.cluster_utils import Cluster

node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 128 * 1024 * 1024}
cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
cluster.add_node(**node)
try:
    cluster.wait_for_nodes()
"""
_CLUSTER_TAIL = r"""
finally:
    ray.shutdown()
    cluster.shutdown()
"""


def driver_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("RAY_AUTH_MODE", None)  # the CLI itself turns auth off for its loopback-only embedded cluster
    env.pop("RAY_ADDRESS", None)
    return env


def cluster_env() -> dict[str, str]:
    return dict(os.environ, RAY_AUTH_MODE="disabled", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
                RAY_USAGE_STATS_ENABLED="0", RAY_worker_maximum_startup_concurrency="16", PYTHONPATH=str(ROOT))


def on_two_nodes(body: str, *argv: str, timeout: float = 240) -> list[Any]:
    """Run ``body`` (Python, indented by 4, with ``cluster`` in scope; ``sys.argv[1:]`` are ``argv``) inside a
    two-node loopback Cluster in a child process, shut the cluster down, and return the JSON lines it printed."""
    script = _CLUSTER_HEAD + body + _CLUSTER_TAIL
    proc = subprocess.run([sys.executable, "-c", script, *argv], env=cluster_env(), cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith(("{", "["))]
