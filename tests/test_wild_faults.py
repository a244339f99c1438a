"""A campaign survives what goes wrong: an actor killed mid-trial makes that trial "crashed" (named, with Ray's
error) while the others finish on fresh actors; a deadlocked kernel makes a trial "hung", confirmed by the
replay's hang report."""

from __future__ import annotations

import pytest

from actors.campaign import CampaignOptions, run_campaign
from actors.fault_injection import Faults
from kernel_model.config import Config
from scenarios.loader import load_scenario

pytestmark = [pytest.mark.wild, pytest.mark.usefixtures("ray_session")]


def test_killing_a_cpu_actor_crashes_only_that_trial() -> None:
    scenario = load_scenario("madv_dontneed")
    result = run_campaign(scenario, Config(ordering="delayed"),
                          CampaignOptions(trials=6, parallel=2, jitter_us=2000, faults=Faults(kill=(2, "cpu1"))))
    assert result.trials == 6
    assert result.by_status["crashed"] == 1 and result.by_status["ok"] == 5, result.summary()
    crashed, = [r for r in result.failures if r.status == "crashed"]
    assert crashed.trial == 2 and crashed.actor == "cpu1"
    assert "trial 2" in crashed.detail and "cpu1" in crashed.detail and "Error" in crashed.detail


@pytest.mark.parametrize("arch", ["smp", "up"])
def test_a_deadlocked_kernel_is_reported_hung_with_who_waits(arch: str) -> None:
    scenario = load_scenario("madv_dontneed")
    result = run_campaign(scenario, Config(ordering="delayed", arch=arch, mutant="double_ptl"),
                          CampaignOptions(trials=2, parallel=1, hang_timeout=1.0))
    assert result.by_status["hung"] == 2, result.summary()
    assert result.by_invariant["hang"] == 2 and result.violations == 2
    hung = result.failures[0]
    assert "zapper" in hung.violations[0].detail  # Machine.hang_report: zapper waits for its own PTL
    assert "zapper" in hung.detail  # what the actors said
