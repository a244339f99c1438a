"""Shared pytest fixtures. One Ray session for the whole run (design.md: ≈ 2 s per ray.init, so never one per
test); tests that do not ask for ``ray_session`` never start Ray.

Markers (pyproject.toml): ``wild`` for every test that starts Ray (actors, campaigns, a cluster, or drivers with
a Ray of their own in child processes), ``slow`` for the longest of the others; ``pytest -m "not wild"`` is the
inner loop. A test that asks for ``ray_session`` without the ``wild`` marker is a collection error, so
``-m "not wild"`` never starts the session's Ray.

Under pytest-xdist (scripts/test.sh runs the suite on the machine's cores with ``--dist loadgroup``) every xdist
worker is a pytest session of its own, so each would start its own Ray. Every ``wild`` test is therefore put in
one xdist group, RAY_GROUP: all of them run on one worker, one after another, as in a serial run, and only that
worker ever starts the session's Ray (or a child's cluster, which would compete with it for the same 2 cores and
/tmp/tlbrace-UID otherwise)."""

from __future__ import annotations

import os
import subprocess
from typing import Iterator

import pytest

RAY_GROUP = "ray"  # the xdist group of the wild tests (xdist appends "@ray" to their node ids)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the xdist_group marks into the node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [item.nodeid for item in items
                if "ray_session" in getattr(item, "fixturenames", ()) and item.get_closest_marker("wild") is None]
    if unmarked:
        raise pytest.UsageError("tests that use ray_session must be marked wild: " + ", ".join(unmarked))
    if getattr(config.option, "loadgroup", False):  # an xdist worker of `--dist loadgroup` (scripts/test.sh)
        for item in items:
            if item.get_closest_marker("wild") is not None:
                item.add_marker(pytest.mark.xdist_group(RAY_GROUP))
        # The slow tests first (xdist deals the group first, being the largest scope, then tests in this order): a
        # test of a minute dealt out last would leave the other worker idle for that minute. A stable sort: every
        # worker collects the same order, as xdist requires.
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.hookimpl(tryfirst=True)  # before the fixtures' setup: a loose wild test starts no Ray
def pytest_runtest_setup(item: pytest.Item) -> None:
    """xdist's own hook names the group in each node id ("...@ray"), and its scheduler keeps a group on one worker
    by that name alone. Should it stop doing so (as with pytest 9.2: see pyproject.toml), the wild tests would be
    spread over the workers, each with a Ray of its own: they fail instead, saying why."""
    if (getattr(item.config.option, "loadgroup", False) and item.get_closest_marker("wild") is not None
            and not item.nodeid.endswith("@" + RAY_GROUP)):
        pytest.fail(f"pytest-xdist did not put this wild test in the xdist group {RAY_GROUP!r}: with pytest "
                    f"{pytest.__version__} the wild tests would start one Ray per worker; use the pytest of "
                    f"pyproject.toml (scripts/setup.sh), or -n 0", pytrace=False)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A local Ray started once per pytest session: loopback only, quiet, auth off, 2 CPUs; shut down at the end.
    Tests that need a Ray of their own (a multi-node Cluster, a `ray start` head) run it in a subprocess."""
    os.environ["RAY_AUTH_MODE"] = "disabled"
    from actors import ray_session as rs  # sets Ray's environment before `import ray`

    session = rs.start_local(num_cpus=2)
    started = _ray_node_processes() if session.owned else []  # a Ray this session did not start is not ours
    yield
    rs.close_session(session)
    _stop_leftovers(started)


def _ray_node_processes() -> list[subprocess.Popen]:
    """The processes this session's ray.init started (GCS, raylet, ...; the raylet ends its own workers). Ray's
    Node object is private API: if it moves, there is nothing to check and ray.shutdown alone stops them."""
    import ray

    node = getattr(getattr(getattr(ray, "_private", None), "worker", None), "_global_node", None)
    if node is None or not hasattr(node, "live_processes"):
        return []
    return [proc for _kind, proc in node.live_processes()]


def _stop_leftovers(started: list[subprocess.Popen]) -> None:
    """ray.shutdown() stops what ray.init started. Should one of those processes outlive it (an xdist worker exits
    right after its session, and nothing else would stop it), kill it by its PID, never by name; Popen signals
    only a child it has not reaped yet, so the PID cannot be another process's."""
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
