"""Hostile sizes (issue 17, red team 12): a scenario or budget the tools cannot finish gets one clear line and exit
status 2 before any work, naming the key, the bound and why. None needs Ray."""

from __future__ import annotations

from pathlib import Path

from cli_run import run_cli

UNSEEN = Path(__file__).parent / "scenarios"


def test_pages_past_what_a_schedule_can_finish_are_refused(capsys, tmp_path):
    """pages = 65,536 was accepted and one random schedule never finished (every transition checks and keys
    every page: O(pages^2) a schedule; 2,048 pages 21 s, 4,096 69 s)."""
    rc, _, err = run_cli(capsys, "explore", str(UNSEEN / "unseen_pages_at_limit.toml"), "--param", "pages=65536",
                         "--strategy", "random", "--budget", "1", "--out", str(tmp_path))
    assert rc == 2, err
    assert "setup.pages: expected an integer <= 2048, got 65536 (param pages)" in err and "O(pages^2)" in err, err
    assert not any(tmp_path.iterdir())  # refused before any work
