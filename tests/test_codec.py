"""The scenario and configuration reach the actors whole: every library scenario survives the wire."""

from __future__ import annotations

import pytest

from actors.codec import pack_spec, unpack_spec
from kernel_model import boot
from kernel_model.config import Config
from scenarios.loader import list_scenarios, load_scenario


@pytest.mark.parametrize("name", [n for n, _, _ in list_scenarios()])
def test_scenario_round_trips_through_the_wire(name):
    scenario = load_scenario(name)
    cfg = Config.from_dict({**scenario.config, "ordering": "eager"})
    back, cfg_back = unpack_spec(pack_spec(scenario, cfg))
    assert back == scenario and cfg_back == cfg
    # so the actors start from the very state a replay starts from
    assert boot.initial_state(back, cfg_back).key() == boot.initial_state(scenario, cfg).key()
