"""Every wild trial replays exactly: schedule_from_records(events) run in the controlled Machine gives every
step and every IPI the result the actors logged, for each architecture and ordering, with and without the
jitter, on scenarios with one and several PTE tables, evictions and re-faults."""

from __future__ import annotations

import pytest

from actors.trial import ActorSet, run_one
from actors.verdict import exact_replay
from kernel_model.config import Config
from scenarios.loader import load_scenario

pytestmark = [pytest.mark.wild, pytest.mark.usefixtures("ray_session")]

CASES = [
    ("madv_dontneed", {}, Config(ordering="eager", arch="smp")),
    ("madv_dontneed", {}, Config(ordering="delayed", arch="smp")),
    ("madv_dontneed", {}, Config(ordering="eager", arch="up")),
    ("madv_dontneed", {}, Config(ordering="delayed", arch="s390")),
    ("nadav_poc", {"incs": 4}, Config(ordering="eager", arch="smp")),
    ("nadav_poc", {"incs": 4}, Config(ordering="eager", arch="s390")),
    ("munmap", {}, Config(ordering="delayed", arch="smp")),
]


@pytest.mark.parametrize("name,params,cfg", CASES, ids=[f"{n}-{c.ordering}-{c.arch}" for n, _, c in CASES])
def test_wild_trials_replay_step_for_step(name: str, params: dict[str, int], cfg: Config) -> None:
    scenario = load_scenario(name, params)
    actors = ActorSet(0, scenario, cfg)
    try:
        for trial in range(24):
            r = run_one(scenario, cfg, trial=trial, seed=11, jitter_us=0 if trial % 3 == 0 else 2000,
                        actors=actors)
            assert r.status in ("ok", "violation"), (trial, r.status, r.detail)
            assert exact_replay(scenario, cfg, r.records) == [], trial
            assert r.steps > 0 and all(rec["lamport"] is not None for rec in r.records)
    finally:
        actors.kill()
