"""The controlled machine builds an event only when it is recorded or the oracle acts on its op
(oracle.OBSERVED_OPS, and oracle.TLB_OPS while Oracle.wants them). This checks those lists against
Oracle.observe: every event left out must be one that observe ignores, so leaving it unbuilt changes no
verdict."""

from __future__ import annotations

import random

import pytest

from controlled.machine import Machine
from kernel_model.config import MUTANTS, Config
from kernel_model.oracle import OBSERVED_OPS, TLB_OPS, Oracle
from scenarios.loader import library_names, load_scenario


@pytest.mark.parametrize("name", library_names())
def test_events_left_unbuilt_are_those_the_oracle_ignores(name):
    sc = load_scenario(name)
    rng = random.Random(7)
    ignored = seen = 0
    for run in range(30):
        cfg = Config.from_dict({**sc.config, "ordering": rng.choice(["eager", "delayed"]),
                                "mutant": rng.choice([None, *MUTANTS])})
        m = Machine(sc, cfg, record=True)
        steps = 0
        while steps < 400:
            enabled = m.enabled()
            if m.run_ends(enabled):
                break
            before = m.oracle.key()
            start = len(m.events)
            m.execute(rng.choice(enabled))
            steps += 1
            # Replay this transition's events on an oracle in the state before it: an event outside
            # OBSERVED_OPS must leave the ghost state alone and report nothing, whatever that state holds.
            probe = Oracle()
            probe.restore(before)
            for ev in m.events[start:]:
                seen += 1
                if ev.op in OBSERVED_OPS[ev.kind] or (ev.op in TLB_OPS[ev.kind]
                                                      and probe.wants(m.state, ev.cpu, ev.op, ev.args)):
                    probe.observe(m.state, ev)
                    continue
                ignored += 1
                key = probe.key()
                assert probe.observe(m.state, ev) == [], ev
                assert probe.key() == key, ev
    assert seen and ignored  # the check ran on real events
