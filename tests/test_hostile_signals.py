"""Signals at the edges of a command's life: a Ctrl-C or SIGTERM once the result is printed and the interpreter
shuts down (Ray's atexit ray.shutdown, thread joins). Each test failed before its fix (session 14's red team).
None needs Ray: a slow atexit callback stands in for Ray's shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The installed command's entry point, with a shutdown that takes a while (as ray.shutdown does); it says DONE
# on stderr once the command has returned, so the signal lands in the shutdown and nowhere else.
CHILD = """
import atexit, sys, time
atexit.register(time.sleep, {pause})
atexit.register(lambda: print("DONE", file=sys.stderr, flush=True))
sys.argv = ["tlbrace", "mutants"]
from tlbrace import main
sys.exit(main())
"""


def _interrupted_in_shutdown(signals: list[int], pause: float = 2.0) -> tuple[int, str, str, float]:
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(pause=pause)], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    line = child.stderr.readline()
    assert line.strip() == "DONE", line
    start = time.monotonic()
    for signum in signals:
        child.send_signal(signum)
        time.sleep(0.2)
    out, err = child.communicate(timeout=60)
    return child.returncode, out, err, time.monotonic() - start


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_shutdown_is_no_traceback(signum):
    """A Ctrl-C there printed "Exception ignored in atexit callback" and a KeyboardInterrupt traceback under
    the result; the command's own exit status is kept (its work was done), and the shutdown finishes."""
    rc, out, err, _ = _interrupted_in_shutdown([signum])
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert rc == 0 and "ack_before_invalidate" in out
    assert "finishing the shutdown" in err


def test_a_second_ctrl_c_during_the_shutdown_exits_at_once():
    rc, _, err, elapsed = _interrupted_in_shutdown([signal.SIGINT, signal.SIGINT], pause=30.0)
    assert rc == 128 + signal.SIGINT and elapsed < 20 and "Traceback" not in err, (rc, err)


def test_the_in_process_entry_point_leaves_the_callers_handlers_alone(capsys):
    """Tests (and any program) call cli.main.main in-process: only the command, at its end, changes handlers."""
    from cli.main import main

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert main(["mutants"]) == 0
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert os.getpid() > 0


def _terminated(argv: list[str], after_s: float) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``python -m cli.main ARGV`` sent SIGTERM ``after_s`` seconds in."""
    child = subprocess.Popen([sys.executable, "-m", "cli.main", *argv], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(after_s)
        assert child.poll() is None, "the command ended before the signal: give it more work"
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.returncode, out, err


def test_a_sigterm_ends_a_fuzz_campaign_with_the_report_of_what_it_finished(tmp_path):
    """`timeout 8h tlbrace fuzz` ended with SIGTERM's default: no report, no word (and a Ctrl-C said only
    "interrupted"), however many scenarios it had explored."""
    rc, out, err = _terminated(["fuzz", "--count", "100000", "--seed", "3", "--json", "--out", str(tmp_path / "fuzz")],
                               6)
    assert rc == 130, (rc, err[-2000:])
    report = json.loads(out)
    assert report["interrupted"] is True and "Traceback" not in err
    assert f"interrupted after {report['generated']} of 100000 scenarios" in err


def test_a_sigterm_stops_a_search_as_a_ctrl_c_does(tmp_path):
    """`timeout 1h tlbrace explore` (or `kill PID`) ended the search with SIGTERM's default: exit -15, no word."""
    rc, _, err = _terminated(["explore", "ladder", "--param", "writers=2", "--param", "pages=2", "--param", "stores=2",
                              "--out", str(tmp_path)], 4)
    assert rc == 130 and err.strip() == "tlbrace: interrupted", (rc, err[-2000:])
    assert not list(tmp_path.glob("*.tmp"))


def test_a_ctrl_c_in_a_scale_grid_ends_the_grid_not_only_its_cell(capsys, tmp_path, monkeypatch):
    """Each cell's campaign took the Ctrl-C (or SIGTERM) as its own, and the grid went on to the next cell: a
    SIGTERM 20 s into `tlbrace scale` was lost, and the run ended 30 s later with exit 0. The campaigns here are
    stand-ins (no Ray): the first is interrupted, as run_campaign reports a Ctrl-C."""
    import actors.scale
    import cli.cmd_scale
    from actors.campaign import CampaignResult
    from cli_run import run_cli

    ran: list[str] = []

    def campaign(scenario, cfg, opts, on_trial=None):
        ran.append(cfg.ordering)
        return CampaignResult(scenario.name, cfg, "r", interrupted=not ran[1:], stopped_by="interrupt")

    monkeypatch.setattr(actors.scale, "run_campaign", campaign)
    monkeypatch.setattr(cli.cmd_scale, "open_ray", lambda *_a, **_k: None)
    monkeypatch.setattr(cli.cmd_scale, "close_ray", lambda *_a, **_k: None)
    rc, out, err = run_cli(capsys, "scale", "scale_writers", "--cpus", "3", "--trials", "1", "--json", "--out",
                           str(tmp_path / "scale"))
    assert rc == 130 and len(ran) == 1, (rc, ran, err)
    assert json.loads(out)["interrupted"] is True and "interrupted after 1 of 3 cells" in err
    assert (tmp_path / "scale" / "results.csv").exists()
