"""Time-boxed and until-N campaigns: parsing the limits, which one stops a campaign, and --resume of each.

The Ray tests run on the session's Ray. Real scheduling decides whether an eager trial loses data, so the --until
test keeps a generous --trials cap (15-45% of eager trials hit here: 200 misses in a row is < 1e-14) and checks
which limit stopped the campaign, never how long it took.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from actors.campaign import CampaignOptions, run_campaign, trial_seed
from actors.stop_rule import DurationError, StopRule, parse_duration
from cli.cmd_stress import progress_counts
from cli.main import main
from kernel_model.config import Config
from logs.results_file import read_results
from scenarios.loader import load_scenario


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("10m", 600), ("8h", 28800), ("1d", 86400), ("90", 90),
                                           ("2.5s", 2.5), (" 3M ", 180)])
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "10x", "-5s", "0s", "1h30m", "ten"])
def test_bad_durations_say_what_was_expected(text: str) -> None:
    with pytest.raises(DurationError, match="expected a duration"):
        parse_duration(text)


@dataclass
class SoFar:
    trials: int
    violations: int


def test_the_first_limit_reached_stops_the_campaign() -> None:
    rule = StopRule(trials=10, duration_s=60.0, until=2)
    assert rule.reason(SoFar(3, 1), started=0.0, now=5.0) is None
    assert rule.reason(SoFar(10, 1), started=0.0, now=5.0) == "trials"
    assert rule.reason(SoFar(3, 1), started=0.0, now=60.0) == "duration"
    assert rule.reason(SoFar(3, 2), started=0.0, now=5.0) == "until"
    assert rule.reason(SoFar(10, 2), started=0.0, now=99.0) == "until"  # a tie: the violation is the news
    unbounded = StopRule(duration_s=1.0)
    assert unbounded.reason(SoFar(10**9, 10**6), started=0.0, now=0.5) is None
    assert unbounded.bounded() and not StopRule().bounded()


def test_progress_line_shows_the_hit_rate_with_its_interval_and_the_first_violation() -> None:
    from collections import Counter

    @dataclass
    class Campaign:
        trials: int
        violations: int
        first_violation_at: float | None
        by_status: Counter

    line = progress_counts(Campaign(40, 10, 107.25, Counter(hung=1)), command_start=100.0)
    assert "violations 10" in line and "hit 25.0% [14.2%, 40.2%]" in line and "first 7.2s" in line
    assert "hung 1" in line and "crashed 0" in line
    assert "hit -" in progress_counts(Campaign(0, 0, None, Counter()), 0.0)


@pytest.mark.wild
@pytest.mark.usefixtures("ray_session")
def test_until_stops_at_the_first_violation() -> None:
    opts = CampaignOptions(trials=200, parallel=2, until=1, seed=11)
    result = run_campaign(load_scenario("madv_dontneed"), Config(ordering="eager"), opts)
    assert result.stopped_by == "until" and result.violations >= 1
    assert result.first_violation_at is not None and result.trials < 200
    assert result.summary()["stopped_by"] == "until"


@pytest.mark.wild
@pytest.mark.usefixtures("ray_session")
def test_a_time_boxed_campaign_stops_by_duration_and_resumes_with_a_new_budget(tmp_path: Path) -> None:
    scenario, cfg = load_scenario("madv_dontneed"), Config(ordering="delayed")

    # The duration is measured by a clock that advances one "second" per finished trial, so that what this test
    # checks does not depend on how fast this machine runs trials (a 3 s budget: at least 3 trials).
    ticks = [0.0]

    def tick(_trial: object, _so_far: object) -> None:
        ticks[0] += 1

    def timed(resume: bool):
        return run_campaign(scenario, cfg, CampaignOptions(trials=None, parallel=2, duration_s=3.0, seed=4,
                                                           out=str(tmp_path), results=True, resume=resume,
                                                           clock=lambda: ticks[0]), tick)

    first = timed(False)
    recorded = read_results(tmp_path / "results.msgpack").records
    assert first.stopped_by == "duration" and first.trials == len(recorded) >= 3
    second = timed(True)
    after = read_results(tmp_path / "results.msgpack").records
    ids = [r["trial"] for r in after]
    assert second.stopped_by == "duration" and second.resumed == len(recorded)
    assert second.trials == len(after) >= len(recorded) + 3  # the new budget ran 3 more trials at least
    assert after[:len(recorded)] == recorded and len(set(ids)) == len(ids)  # none lost, none twice
    assert all(r["seed"] == trial_seed(4, r["trial"]) for r in after)
    assert max(ids) < len(ids) + 2  # the lowest ids first: at most the 2 abandoned running trials missing


@pytest.mark.wild
@pytest.mark.usefixtures("ray_session")
def test_stress_json_says_what_stopped_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["stress", "madv_dontneed", "--ordering", "delayed", "--duration", "2s", "--parallel", "2",
                 "--json", "--out", str(tmp_path)])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["stopped_by"] == "duration"
    assert summary["first_violation_s"] is None and summary["violations"] == 0


@pytest.mark.parametrize("argv, words", [(["--duration", "5x"], "--duration '5x': expected a duration"),
                                         (["--until", "0"], "--until: expected an integer in 1.."),
                                         (["--trials", "0"], "--trials: expected an integer in 1..")])
def test_bad_limits_exit_2(argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:  # argparse's own type check exits 2; tlbrace's later checks return it
        code = main(["stress", "madv_dontneed", *argv])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    assert words in capsys.readouterr().err
