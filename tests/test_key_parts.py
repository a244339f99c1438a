"""Machine.key's shared parts and Machine.restore in place (issue 17) give exactly what building afresh gives.

Machine.key hands out the previous key's part objects where the state did not change (State.key's ``like``), and
Machine.restore keeps the lists and TLB dicts that already hold the restored parts (State.from_key's ``into``);
controlled.symmetry's permute memoises each field by identity. All three are speed only: the keys must be equal to
the plain ones, a restored state equal to a fresh one (TLB dicts in the same order: paths iterate them), and a
memoised permutation equal to a fresh one. Checked along random runs, restoring random earlier states, in
whichever mode (compiled or TLBRACE_PURE_PYTHON=1) the suite runs.
"""

from __future__ import annotations

import random

import pytest

from controlled.machine import Machine
from controlled.symmetry import Reordered, permute
from kernel_model.config import Config
from kernel_model.state import State
from scenarios.loader import load_scenario


def _same_state(a: State, b: State) -> bool:
    return a == b and [list(t.items()) for t in a.tlbs] == [list(t.items()) for t in b.tlbs]


@pytest.mark.parametrize("name, params, arch", [
    ("ladder", {"writers": 2, "pages": 2}, "smp"),
    ("writable_clean", None, "smp"),  # a TLB entry replaced in place (its dirty bit set): same size, new part
    ("mprotect_reclaim", None, "smp"),
    ("madv_dontneed", None, "up"),
    ("munmap", None, "s390"),
])
def test_shared_keys_and_restores_in_place_are_the_plain_ones(name, params, arch):
    sc = load_scenario(name, params)
    cfg = Config.from_dict({**sc.config, "arch": arch})
    rng = random.Random(7)
    m = Machine(sc, cfg, reduce=True)
    keys = [m.key()]
    for _ in range(300):
        enabled = m.enabled_all()
        if m.run_ends(enabled) or rng.random() < 0.2:
            back = rng.choice(keys)
            m.restore(back)  # in place when the machine holds the last key's parts
            assert _same_state(m.state, State.from_key(back[0]))
            assert m.key() == back and m.state.key() == back[0]
            continue
        m.execute(rng.choice(enabled))
        key = m.key()
        assert key[0] == m.state.key()  # shared parts or not, the plain key
        keys.append(key)
    assert len(keys) > 50


def test_memoised_permutations_are_fresh_ones():
    sc = load_scenario("ladder", {"writers": 2, "pages": 2})
    m = Machine(sc, Config(ordering="delayed"), reduce=True)
    p, = m.symmetry.perms
    memo = Reordered()
    rng = random.Random(5)
    for _ in range(200):
        enabled = m.enabled_all()
        if m.run_ends(enabled):
            break
        m.execute(rng.choice(enabled))
        plain = m.canonicaliser.canonical(m.key())
        assert permute(plain, p, memo) == permute(plain, p)
