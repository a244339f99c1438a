"""Shared pytest fixtures. One Ray session for the whole run (design.md: ≈ 2 s per ray.init, so never one per
test); tests that do not ask for ``ray_session`` never start Ray.

Markers (pyproject.toml): ``wild`` for every test that starts Ray (actors, campaigns, a cluster), ``slow`` for
the longest of the others; ``pytest -m "not wild"`` is the inner loop. A test that asks for ``ray_session``
without the ``wild`` marker is a collection error, so ``-m "not wild"`` never starts the session's Ray."""

from __future__ import annotations

import os
from typing import Iterator

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [item.nodeid for item in items
                if "ray_session" in getattr(item, "fixturenames", ()) and item.get_closest_marker("wild") is None]
    if unmarked:
        raise pytest.UsageError("tests that use ray_session must be marked wild: " + ", ".join(unmarked))


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A local Ray started once per pytest session: loopback only, quiet, auth off, 2 CPUs; shut down at the end.
    Tests that need a Ray of their own (a multi-node Cluster, a `ray start` head) run it in a subprocess."""
    os.environ["RAY_AUTH_MODE"] = "disabled"
    from actors import ray_session as rs  # sets Ray's environment before `import ray`

    session = rs.start_local(num_cpus=2)
    yield
    rs.close_session(session)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: starts drivers of its own (child processes with their own Ray); "
                                       "deselect with -m 'not slow'")
