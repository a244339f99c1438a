"""``tlbrace stress`` and ``tlbrace run`` from the command line (in-process, on the session's Ray), and the
one-line error for a cluster that is not there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.main import main
from logs.eventlog import read_log

SUMMARY_KEYS = {"scenario", "ordering", "arch", "mutant", "trials", "violations", "by_invariant", "crashed", "hung",
                "seconds", "trials_per_s", "steps_per_s", "failing_logs"}


@pytest.mark.wild
@pytest.mark.usefixtures("ray_session")
def test_stress_json_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["stress", "madv_dontneed", "--ordering", "delayed", "--trials", "6", "--parallel", "2",
                 "--jitter", "500", "--seed", "3", "--json", "--out", str(tmp_path)])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert SUMMARY_KEYS <= set(summary)
    assert summary["trials"] == 6 and summary["violations"] == 0 and summary["failing_logs"] == []
    assert summary["ordering"] == "delayed" and summary["arch"] == "smp" and summary["mutant"] is None


@pytest.mark.wild
@pytest.mark.usefixtures("ray_session")
def test_run_prints_the_per_cpu_story_of_a_failed_trial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "madv_dontneed", "--arch", "up", "--mutant", "double_ptl", "--hang-timeout", "2",
                 "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "hung" in out and "hang" in out
    assert "zap_pte_range" in out and "writer (CPU 0)" in out  # one column per thread and its CPU
    log = next(tmp_path.glob("*.msgpack"))
    contents = read_log(log)
    assert contents.header["runtime"] == "wild" and contents.records[-1]["status"] == "hung"


@pytest.mark.parametrize("argv", [["--trials", "0"], ["--jitter", "-1"], ["--ordering", "sideways"]])
def test_bad_input_exits_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        code = main(["stress", "madv_dontneed", *argv])
        raise SystemExit(code)
    assert exc.value.code == 2


@pytest.mark.wild  # its child process asks Ray to join a cluster
def test_an_unreachable_cluster_is_one_line_and_exit_2() -> None:
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main())",
                           "stress", "madv_dontneed", "--address", "127.0.0.1:1", "--trials", "1"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot join the Ray cluster at 127.0.0.1:1" in lines[0]
    assert time.monotonic() - started < 30
