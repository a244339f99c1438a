"""Hostile sizes (issue 17, red team 12): a scenario or budget the tools cannot finish gets one clear line and exit
status 2 before any work, naming the key, the bound and why. None needs Ray."""

from __future__ import annotations

from pathlib import Path

import pytest

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


@pytest.mark.parametrize("argv", [
    ["history", "madv_dontneed", "--no-png"],
    ["fuzz", "--count", "2"],
    ["fuzz", "--count", "2", "--check-reduction"],
])
def test_a_budget_that_cannot_fit_in_memory_is_refused_before_any_search(capsys, tmp_path, argv):
    """history and fuzz took any --budget (10**11 states: 206 TB for history's bfs) and ran until memory ran out;
    explore alone priced it. Now all three share cli.memory_budget."""
    rc, _, err = run_cli(capsys, *argv, "--budget", "100000000000", "--memory-limit", "1G",
                         "--out", str(tmp_path / "out"))
    assert rc == 2, err
    assert "a search of" in err and "states needs about" in err and "what fits: --budget" in err, err
    assert "--hash-compact" not in err  # neither command has it
    assert not (tmp_path / "out").exists()


def test_a_default_history_budget_is_lowered_to_what_fits(capsys, tmp_path):
    rc, out, err = run_cli(capsys, "history", "madv_dontneed", "--kernels", "6.2", "--memory-limit", "40M",
                           "--no-png", "--json")
    assert rc == 0, err
    assert "the default budget of 200,000 states would need about" in err and "searching at most" in err, err


@pytest.mark.parametrize("strategy", ["random", "pct"])
def test_a_memory_limit_with_a_sampling_strategy_is_refused_not_ignored(capsys, tmp_path, strategy):
    """explore --strategy random|pct --memory-limit 1K ran as if no limit had been given."""
    rc, _, err = run_cli(capsys, "explore", "madv_dontneed", "--strategy", strategy, "--memory-limit", "1K",
                         "--out", str(tmp_path))
    assert rc == 2 and "--memory-limit: only with --strategy bfs or dfs" in err and strategy in err, err


_PPT_SCENARIO = """name = "ppt"
[params]
ppt = 2
[setup]
pages = 2
ptes_per_table = {ppt}
[[threads]]
name = "writer"
program = [{{ op = "store", pages = [0, 1] }}]
"""


@pytest.mark.parametrize("ppt, shown", [("18446744073709551616", "18446744073709551616"),
                                        ('"ppt"\n# via --param', "9000 (param ppt = 9000)")])
def test_ptes_per_table_past_any_kernel_is_refused_before_any_work(capsys, tmp_path, ppt, shown):
    """ptes_per_table was uncapped: 2**64 passed explore, and stress failed after Ray had started (msgpack's
    integers end at 2**64: "internal error: OverflowError", exit 4). No kernel has more than 8,192 PTEs a table."""
    path = tmp_path / "ppt.toml"
    path.write_text(_PPT_SCENARIO.format(ppt=ppt))
    out = tmp_path / "out"
    rc, _, err = run_cli(capsys, "explore", str(path), "--param", "ppt=9000", "--out", str(out))
    assert rc == 2, err
    assert "setup.ptes_per_table: expected an integer <= 8192" in err and f"got {shown}" in err, err
    assert "PTRS_PER_PTE" in err and not out.exists()
    path.write_text(_PPT_SCENARIO.format(ppt='"ppt"'))
    rc, _, err = run_cli(capsys, "explore", str(path), "--param", "ppt=8192", "--out", str(out))
    assert rc == 0, err  # the largest real table still loads


@pytest.mark.parametrize("argv, expected", [
    (["--cpus", "65"], "65 CPUs (one per thread); a wild run starts at most 64 CPU actors"),
    (["--cpus", "16", "--parallel", "32"], "--parallel 32: 32 sets of 17 actors; at most 256 actors"),
])
def test_a_scale_grid_past_the_actor_caps_is_refused_before_ray_starts(capsys, tmp_path, monkeypatch, argv,
                                                                       expected):
    """stress refuses these sizes; scale started Ray and ran the grid up to the oversized cell."""
    import cli.cmd_scale

    def no_ray(*_a, **_k):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(cli.cmd_scale, "open_ray", no_ray)
    rc, _, err = run_cli(capsys, "scale", "scale_writers", *argv, "--trials", "1", "--out", str(tmp_path / "s"))
    assert rc == 2 and expected in err, err


def test_a_cpu_count_given_twice_is_refused(capsys):
    """--cpus 4,4 ran the cells of 4 CPUs twice, each a row of the table and a point of the plots; then it ran
    them once, silently, so a typo for 4,8 went unseen: now it is refused (tests/test_hostile20.py)."""
    rc, _out, err = run_cli(capsys, "scale", "scale_writers", "--cpus", "4,3,4")
    assert rc == 2 and "'4,3,4': item 3, '4', is given twice (as item 1)" in err, err
