"""fuzz.known_races.check_known_race: a fuzz violation labelled a known kernel race keeps its label only when the
scenario, searched again with that race's window closed, breaks no invariant. Every verdict comes from a search."""

from __future__ import annotations

from pathlib import Path

import pytest

import fuzz.run
from fuzz.known_races import (CONFIRMED, RECLAIM_WRITEBACK_RACE, REFUTED, UP_ZAP_FLUSH_RACE, RaceCheck,
                              check_known_race, window_closed)
from fuzz.run import FuzzOptions, fuzz_one
from kernel_model.config import Config
from kernel_model.kernels import kernel_config
from scenarios.loader import load_scenario

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
UP_6_18 = Config(**kernel_config("6.18"), arch="up")


def test_closing_a_window_changes_only_its_switch() -> None:
    assert window_closed(Config(), RECLAIM_WRITEBACK_RACE) == Config(batched_unmap_flush=False)
    assert window_closed(UP_6_18, UP_ZAP_FLUSH_RACE) == Config(**{**kernel_config("6.18"), "arch": "up",
                                                                  "zap_dirty_forces_flush": True})


@pytest.mark.parametrize("scenario, cfg, race", [
    (str(SCENARIOS / "unseen_reclaim_stores.toml"), Config(), RECLAIM_WRITEBACK_RACE),
    ("madv_dontneed", UP_6_18, UP_ZAP_FLUSH_RACE),
])
def test_a_known_race_goes_away_with_its_window_closed(scenario: str, cfg: Config, race: str) -> None:
    check = check_known_race(load_scenario(scenario), cfg, race, 200_000)
    assert check.verdict == CONFIRMED, check


def test_another_race_refutes_the_label() -> None:
    """Under the eager order the zap race loses data whatever reclaim does: closing reclaim's deferred flush
    leaves the loss, so the label would have hidden it."""
    check = check_known_race(load_scenario("madv_dontneed"), Config(ordering="eager"), RECLAIM_WRITEBACK_RACE,
                             200_000)
    assert check.verdict == REFUTED and "lost_dirty_data" in check.invariants, check


def test_fuzz_reports_the_check_with_its_label() -> None:
    """Seed 77's scenario 2 on UP 6.18 loses a store through a preempted zapper's entry (found by a campaign)."""
    out = fuzz_one(77, 2, FuzzOptions(cfg=UP_6_18))
    assert out.invariant == "lost_dirty_data"
    assert out.known_race == UP_ZAP_FLUSH_RACE
    assert out.race_check.startswith("window closed: ") and "refuted" not in out.race_check.replace("not refuted", "")


def test_a_refuted_label_is_dropped_and_the_violation_shrunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plumbing: with the check answering REFUTED, the outcome carries no label and is shrunk as a model bug
    (the refutation itself is searched for real above)."""
    monkeypatch.setattr(fuzz.run, "check_known_race", lambda *a: RaceCheck(REFUTED, 1, ("lost_dirty_data",)))
    out = fuzz_one(77, 2, FuzzOptions(cfg=UP_6_18))
    assert out.known_race == "" and "refuted (lost_dirty_data)" in out.race_check
    assert out.original_size is not None and out.size <= out.original_size
