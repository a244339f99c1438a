"""``tlbrace scale``: the grid's axes, its metrics (counts, never times), its CSV and plots, and the Dec 2022
finding (c47454823bd4): with delayed rmaps only in the active batch a zap of many dirty pages force-flushes
every MMU_GATHER_BUNDLE pages; local+active flushes once. Counted in the controlled runtime and in the wild."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from child_process import on_two_nodes

from actors.scale import (CSV_COLUMNS, NOT_DELAYED, Cell, GridError, as_records, knobs_of, percentile_us, plan_cells,
                          wilson, zap_counts)
from analysis.scale_plots import plot_all
from cli.main import main
from controlled.replay import run_schedule
from kernel_model.config import Config
from kernel_model.constants import MMU_GATHER_BUNDLE
from scenarios.loader import load_scenario

PLOTS = ("hit_rate.png", "throughput.png", "flushes.png", "waits.png")
ROOT = Path(__file__).resolve().parents[1]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        return list(reader)


def assert_accounting(row: dict[str, Any]) -> None:
    """What every cell must satisfy whatever the race did: no hit rate is asserted, only its bookkeeping."""
    trials, violations = int(row["trials"]), int(row["violations"])
    lo, rate, hi = float(row["hit_rate_lo"]), float(row["hit_rate"]), float(row["hit_rate_hi"])
    assert 0 <= violations <= trials
    assert 0.0 <= lo <= rate <= hi <= 1.0
    assert math.isclose(rate, violations / trials, abs_tol=1e-4)


# --- the axes ----------------------------------------------------------------------------------------------------
def test_cpus_and_shards_map_onto_scale_writers_params() -> None:
    knobs = knobs_of(load_scenario("scale_writers"))
    assert (knobs.cpu_param, knobs.fixed_threads, knobs.shard_param, knobs.pages) == ("writers", 2, "ptes_per_table", 8)
    assert knobs.params_for(5, 4) == {"writers": 3, "ptes_per_table": 2}
    s = load_scenario("scale_writers", knobs.params_for(5, 4))
    assert len(s.threads) == 5 and s.setup.pages // s.setup.ptes_per_table == 4  # 5 CPU actors, 4 PTLs
    with pytest.raises(GridError, match="at least 3"):
        knobs.params_for(2, 2)
    with pytest.raises(GridError, match="divisor"):
        knobs.params_for(4, 3)


def test_a_scenario_without_a_thread_count_param_runs_at_its_own_size() -> None:
    knobs = knobs_of(load_scenario("zap_many_pages"))
    assert knobs.cpu_param is None and knobs.shard_param is None and (knobs.threads, knobs.tables) == (1, 1)
    assert knobs.params_for(1, 1) == {}
    with pytest.raises(GridError, match="only --cpus 1"):
        knobs.params_for(2, 1)


def test_eager_cells_ignore_delayed_batches() -> None:
    cells = plan_cells([4, 3], [2], ["eager", "delayed"], ["active", "local+active"])
    assert cells == [Cell(3, 2, "eager", NOT_DELAYED), Cell(4, 2, "eager", NOT_DELAYED),
                     Cell(3, 2, "delayed", "active"), Cell(4, 2, "delayed", "active"),
                     Cell(3, 2, "delayed", "local+active"), Cell(4, 2, "delayed", "local+active")]


def test_wilson_interval_and_percentiles() -> None:
    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(0, 40)
    assert lo == 0.0 and math.isclose(hi, 0.0876, abs_tol=1e-3)
    lo, hi = wilson(20, 40)
    assert lo < 0.5 < hi and math.isclose(lo + hi, 1.0)
    assert percentile_us([], 50) is None
    assert percentile_us([3000, 1000, 2000], 50) == 2.0 and percentile_us(list(range(1, 101)), 99) == 0.099


@pytest.mark.parametrize("bad", [["--cpus", "2"], ["--shards", "3"], ["--param", "writers=3"], ["--cpus", "x"],
                                 ["--ordering", "eager,sideways"], ["--trials", "0"]])
def test_bad_axes_exit_2_before_ray_starts(bad: list[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(["scale", "scale_writers", "--out", str(tmp_path), *bad]))
    assert exc.value.code == 2


# --- c47454823bd4's finding, counted in the controlled runtime ---------------------------------------------------
@pytest.mark.parametrize("pages", [8, 16, 64, 100])
def test_controlled_forced_flushes_active_vs_local_plus_active(pages: int) -> None:
    """One zap of `pages` dirty file pages: `active` can keep delayed entries only in the 8-entry local bundle,
    so it flushes every 8 pages; `local+active` may add one 510-entry batch, so it flushes once (brief §2, §9)."""
    scenario = load_scenario("zap_many_pages", {"pages": pages})
    counts = {}
    for batches in ("active", "local+active"):
        result = run_schedule(scenario, Config(ordering="delayed", delayed_batches=batches), [])
        assert not result.violations
        counts[batches] = zap_counts(as_records(result.events))
    active, both = counts["active"], counts["local+active"]
    assert active.zaps == both.zaps == 1 and active.pages_zapped == both.pages_zapped == pages
    assert active.forced_flushes == active.tlb_flushes == math.ceil(pages / MMU_GATHER_BUNDLE)
    assert both.forced_flushes == both.tlb_flushes == 1
    if pages == 64:
        assert (active.forced_flushes, both.forced_flushes) == (8, 1)  # the brief's numbers


# --- the wild runtime, on the session's Ray -----------------------------------------------------------------------
@pytest.mark.wild
@pytest.mark.usefixtures("ray_session")
def test_wild_forced_flushes_match_the_brief(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["scale", "zap_many_pages", "--ordering", "delayed", "--trials", "2", "--json",
                 "--out", str(tmp_path)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    rows = {r["delayed_batches"]: r for r in out["rows"]}
    assert set(rows) == {"active", "local+active"}
    assert rows["active"]["forced_flushes_per_zap"] == 8 and rows["local+active"]["forced_flushes_per_zap"] == 1
    assert rows["active"]["tlb_flushes_per_zapped_page"] == 0.125
    assert rows["local+active"]["tlb_flushes_per_zapped_page"] == round(1 / 64, 4)
    assert all(r["pages_zapped"] == 64 * r["trials"] for r in rows.values())


@pytest.mark.wild
@pytest.mark.usefixtures("ray_session")
def test_wild_forced_flushes_with_writers_on_other_cpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same 8 vs 1 while writer CPUs hold TLB entries, and each flush IPIs every other CPU."""
    code = main(["scale", "scale_writers", "--param", "pages=64", "--param", "stores=1", "--cpus", "3",
                 "--shards", "1", "--ordering", "delayed", "--trials", "2", "--json", "--out", str(tmp_path)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    rows = {r["delayed_batches"]: r for r in out["rows"]}
    assert rows["active"]["forced_flushes_per_zap"] == 8 and rows["local+active"]["forced_flushes_per_zap"] == 1
    assert rows["active"]["ipis_per_zap"] == 8 * 2 and rows["local+active"]["ipis_per_zap"] == 1 * 2


@pytest.mark.wild
@pytest.mark.usefixtures("ray_session")
def test_grid_writes_a_csv_row_per_cell_and_the_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["scale", "scale_writers", "--cpus", "3,4", "--trials", "3", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    rows = read_csv(tmp_path / "results.csv")
    assert code == (1 if any(int(r["violations"]) for r in rows) else 0)
    cells = {(r["cpus"], r["shards"], r["ordering"], r["delayed_batches"]) for r in rows}
    assert cells == {(c, "2", o, b) for c in ("3", "4")
                     for o, b in (("eager", "-"), ("delayed", "active"), ("delayed", "local+active"))}
    assert len(rows) == 6
    for row in rows:
        assert_accounting(row)
        assert int(row["trials"]) == 3 and row["nodes"] == "1"
        assert int(row["hung"]) == int(row["crashed"]) == int(row["diverged"]) == 0
        assert float(row["ipis_per_zap"]) == 2 * (int(row["cpus"]) - 1)  # 2 PTLs, each flush IPIs every other CPU
        assert float(row["ptl_wait_p50_us"]) > 0 and float(row["flush_rtt_p50_us"]) > 0
    assert all(r["violations"] == "0" for r in rows if r["ordering"] == "delayed")
    for name in PLOTS:
        assert (tmp_path / name).stat().st_size > 1000, name
    assert "tlbrace scale" in printed and "results.csv" in printed


def test_plots_from_rows_without_latencies(tmp_path: Path) -> None:
    """A grid whose trials took no PTL and sent no IPI (one CPU) still draws every picture."""
    row = {c: "" for c in CSV_COLUMNS} | {"cpus": 1, "shards": 1, "ordering": "delayed", "delayed_batches": "active",
                                          "trials": 2, "violations": 0, "hit_rate": 0.0, "hit_rate_lo": 0.0,
                                          "hit_rate_hi": 0.66, "trials_per_s": 3.0, "steps_per_s": 900.0,
                                          "tlb_flushes_per_zapped_page": 0.125, "forced_flushes_per_zap": 8.0}
    paths = plot_all([row, row | {"delayed_batches": "local+active", "forced_flushes_per_zap": 1.0}],
                     str(tmp_path), "zap_many_pages")
    assert [Path(p).name for p in paths] == list(PLOTS)
    assert all(Path(p).stat().st_size > 1000 for p in paths)


# --- two nodes, joined by --address --------------------------------------------------------------------------
CLUSTER_BODY = r"""
    from cli.main import main
    code = main(["scale", "scale_writers", "--cpus", "3", "--ordering", "delayed", "--delayed-batches", "active",
                 "--trials", "4", "--parallel", "2", "--address", cluster.address, "--json", "--out", sys.argv[1]])
    print(json.dumps({"code": code}))
"""


@pytest.mark.wild  # a Ray cluster of its own, in a child process
def test_scale_runs_on_a_two_node_cluster_joined_by_address(tmp_path: Path) -> None:
    *_, cli_json, status = on_two_nodes(CLUSTER_BODY, str(tmp_path))
    assert status == {"code": 0}
    (row,) = cli_json["rows"]
    assert row["trials"] == 4 and row["violations"] == 0 and row["nodes"] == 2  # both nodes ran actor sets
    assert_accounting(row)
    (csv_row,) = read_csv(tmp_path / "results.csv")
    assert csv_row["nodes"] == "2"
