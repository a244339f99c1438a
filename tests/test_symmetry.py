"""Writer symmetry: swapping interchangeable writers maps runs onto runs, and search keeps every verdict."""

from __future__ import annotations

import random

import pytest

from kernel_model.config import Config
from kernel_model.explorer import explore
from kernel_model.machine import Machine, Transition
from kernel_model.symmetry import Permutation, Symmetry, permute
from scenarios.loader import load_scenario


def _swap(tr: Transition, p: Permutation) -> Transition:
    return ("t", p.tid[tr[1]]) if tr[0] == "t" else ("i", p.cpu[tr[1]], p.tid[tr[2]])


def _plain_canonical(m: Machine) -> tuple:
    kept, m.symmetry = m.symmetry, Symmetry([], [], [])
    try:
        return m.canonical(m.key())
    finally:
        m.symmetry = kept


@pytest.mark.parametrize("arch", ["smp", "up", "s390"])
def test_swapping_writers_maps_every_run_onto_a_run(arch):
    """The permutation is an automorphism of the machine: the swapped schedule is enabled step by step and ends
    in the swapped state (up to store-value renaming)."""
    sc = load_scenario("ladder", {"writers": 2, "pages": 2})
    cfg = Config(ordering="eager", arch=arch)
    p, = Machine(sc, cfg).symmetry.perms
    rng = random.Random(3)
    for _ in range(40):
        a, b = Machine(sc, cfg), Machine(sc, cfg)
        while True:
            enabled = a.enabled()
            assert sorted(_swap(tr, p) for tr in enabled) == sorted(b.enabled())
            if a.run_ends(enabled):
                break
            tr = rng.choice(enabled)
            va, vb = a.execute(tr), b.execute(_swap(tr, p))
            assert [v.invariant for v in va] == [v.invariant for v in vb]
            assert permute(_plain_canonical(a), p) == _plain_canonical(b)
            if va:
                break


def test_symmetry_keeps_every_verdict_with_fewer_states():
    sc = load_scenario("ladder", {"writers": 2})
    cfg = Config(ordering="eager")
    plain = Machine.__init__

    def without_symmetry(self, *args, **kwargs):
        plain(self, *args, **kwargs)
        self.symmetry = Symmetry([], [], [])

    with_sym = explore(sc, cfg, "bfs", stop_at_first=False)
    Machine.__init__ = without_symmetry
    try:
        without = explore(sc, cfg, "bfs", stop_at_first=False)
    finally:
        Machine.__init__ = plain
    assert with_sym.complete and without.complete
    assert {i for f in with_sym.found for i in f.invariants} == {i for f in without.found for i in f.invariants}
    assert with_sym.states < 0.6 * without.states
    print(f"{without.states} states -> {with_sym.states} with writer symmetry")
