"""What a hostile user feeds tlbrace (odd numbers, damaged or moved files, options that do not apply) gets one
clear line and exit status 2, never a traceback, and loses nothing already written. Found by red-teaming every
command's inputs (issue 17); each test failed before its fix. None needs Ray."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from cli_run import run_cli


@pytest.fixture(scope="module")
def counterexample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(schedule file, event log) of madv_dontneed's eager counterexample, as `tlbrace explore` writes them."""
    from cli.main import main

    out = tmp_path_factory.mktemp("explore")
    assert main(["explore", "madv_dontneed", "--ordering", "eager", "--json", "--out", str(out)]) == 1
    return out / "madv_dontneed-eager-smp-bfs-0.schedule", out / "madv_dontneed-eager-smp-bfs-0.msgpack"


@pytest.mark.parametrize("width", ["10001", str(1 << 63), "99999999999999999999999"])
@pytest.mark.parametrize("command", ["explore", "replay", "analyze"])
def test_a_huge_width_is_refused_not_run_out_of_memory(capsys, counterexample, command, width):
    """--width 2**63 ran out of memory (exit 3), --width 10**23 overflowed a C size (exit 4)."""
    schedule, log = counterexample
    target = {"explore": ["madv_dontneed", "--ordering", "eager", "--out", str(schedule.parent)],
              "replay": [str(schedule)], "analyze": [str(log)]}[command]
    rc, _, err = run_cli(capsys, command, *target, "--format", "diagram", "--width", width)
    assert rc == 2 and "--width" in err and "40..10000" in err and "Traceback" not in err


def test_replay_of_a_trial_the_log_lacks_is_an_error(capsys, counterexample):
    """It said "nothing to replay (no failing trial in the log; use --trial ID)" and exit 0."""
    _, log = counterexample
    rc, out, err = run_cli(capsys, "replay", str(log), "--trial", "7")
    assert rc == 2 and "--trial 7" in err and str(log) in err and "its trials: 0" in err, (out, err)
    rc, _, _ = run_cli(capsys, "replay", str(log), "--trial", "0")
    assert rc == 1  # the trial it holds still replays


def test_replay_of_a_schedule_with_trial_is_an_error(capsys, counterexample):
    """A schedule file is one run: --trial was silently ignored and the whole schedule replayed."""
    schedule, _ = counterexample
    rc, out, err = run_cli(capsys, "replay", str(schedule), "--trial", "5")
    assert rc == 2 and "--trial 5" in err and "schedule file" in err and not out


def test_the_report_of_a_moved_campaign_finds_its_logs_beside_the_results(capsys, tmp_path, counterexample):
    """stress records each failing log's path as --out named it (relative to that day's cwd): after a move, or
    from another cwd, the page said "cannot read the log" and lost the first failing trial's witness."""
    from kernel_model.config import Config
    from logs.results_file import ResultsWriter, make_header, trial_record
    from scenarios.loader import load_scenario

    _, log = counterexample
    campaign = tmp_path / "moved"
    campaign.mkdir()
    shutil.copy(log, campaign / "madv_dontneed-r-trial00000.msgpack")
    sc = load_scenario("madv_dontneed")
    header = make_header(run="r", scenario=sc.name, scenario_source=sc.source, params=sc.params,
                         config=Config(ordering="eager").to_dict(), seed=0, trials=1, jitter_us=0.0)
    writer = ResultsWriter(str(campaign / "results.msgpack"), header)
    writer.append(trial_record(trial=0, seed=1, status="violation", invariants=["lost_dirty_data"], detail="",
                               actor=None, steps=9, seconds=0.1, nodes=[],
                               log=os.path.join("old-place", "madv_dontneed-r-trial00000.msgpack")))
    writer.close()
    rc, out, err = run_cli(capsys, "report", str(campaign), "--json")
    assert rc == 0, err
    assert '"first_failure": "' + str(campaign / "madv_dontneed-r-trial00000.msgpack") in out
    assert "cannot read the log" not in (campaign / "report.html").read_text()
