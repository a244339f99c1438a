"""The fix registry (kernel_model/kernels.py), --kernel, and `tlbrace history` (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import main as cli
from controlled.explorer import explore
from kernel_model.config import Config, ConfigError
from kernel_model.kernels import (
    BY_NAME, REGISTRY, SWITCHES, KernelError, history_kernels, kernel_config, kernel_for, parse_version,
    previous_release,
)
from scenarios.loader import load_scenario


# --- the registry ----------------------------------------------------------------------------------------------
def test_every_fix_names_a_commit_a_release_and_a_scenario_that_names_it() -> None:
    assert len({f.name for f in REGISTRY}) == len(REGISTRY)
    releases = [parse_version(f.release) for f in REGISTRY]
    assert releases == sorted(releases), "the registry is kept in release order"
    for f in REGISTRY:
        assert len(f.commit) == 12 and int(f.commit, 16) >= 0
        if f.scenario is not None and f.knob is None:
            assert f.commit in load_scenario(f.scenario).description


def test_kernel_for_is_the_fixes_merged_by_that_release() -> None:
    assert kernel_for("3.9") == frozenset()
    assert kernel_for("3.14") == {"no_tlb_fast_mode"}  # 29eb77825cc7 (3.10): UP's tlb_fast_mode removed
    old = {"no_tlb_fast_mode"}
    assert kernel_for("3.15") == old | {"flush_before_unlock"}
    assert kernel_for("4.8") == old | {"flush_before_unlock"}
    assert kernel_for("4.9") == old | {"flush_before_unlock", "mremap_dirty_flush"}  # 5d1904204c99
    assert kernel_for("4.12") == old | {"flush_before_unlock", "mremap_dirty_flush"}
    # 4.13 also has 3ea277194daa (mprotect vs reclaim's batched flush)
    assert kernel_for("4.13") == old | {"flush_before_unlock", "mremap_dirty_flush", "tlb_flush_nested",
                                        "flush_tlb_batched_pending"}
    assert kernel_for("v6.2") == {f.name for f in REGISTRY if parse_version(f.release) <= (6, 2)}
    assert kernel_for("latest") == {f.name for f in REGISTRY}
    for f in REGISTRY:
        assert f.name in kernel_for(f.release) and f.name not in kernel_for(previous_release(f.release))


def test_kernel_6_1_is_eager_and_6_2_is_delayed_with_its_follow_up() -> None:
    assert Config(**kernel_config("6.1")) == Config(ordering="eager", delayed_batches="active")
    # 5df397dec7c4 also dropped the forced flush of a dirty PTE where tlb_delay_rmap is false (docs/up-v6.2.md).
    assert Config(**kernel_config("6.2")) == Config(ordering="delayed", delayed_batches="local+active",
                                                    zap_dirty_forces_flush=False)
    assert set(Config(**kernel_config("4.12")).without) == {"tlb_flush_nested", "flush_tlb_batched_pending",
                                                          "mremap_flush_under_ptl"}


@pytest.mark.parametrize("bad", ["3.20", "2.6", "7.0", "4", "four", "", "4.13.1", "6.-1"])
def test_unknown_versions_are_refused(bad: str) -> None:
    with pytest.raises(KernelError, match="known: 3.0-3.19"):
        parse_version(bad)


def test_history_kernels_bracket_every_fix() -> None:
    kernels = history_kernels()
    for f in REGISTRY:
        assert f.release in kernels and previous_release(f.release) in kernels


def test_config_without_round_trips_and_is_checked() -> None:
    cfg = Config(without=["tlb_flush_nested", "flush_before_unlock"])  # a list, as msgpack gives it back
    assert cfg.without == ("flush_before_unlock", "tlb_flush_nested") and not cfg.fixed("tlb_flush_nested")
    assert Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="without"):
        Config(without=("no_such_fix",))
    assert set(SWITCHES) <= set(BY_NAME)


def test_the_flush_after_unlock_mutant_is_the_kernel_without_1cf35d47712d() -> None:
    assert not Config(mutant="flush_after_unlock").fixed("flush_before_unlock")
    assert Config().fixed("flush_before_unlock")


# --- the races on their kernels ----------------------------------------------------------------------------------
@pytest.mark.parametrize("scenario,before,after,invariant", [
    ("up_fast_mode", "3.9", "3.10", "freed_while_mapped"),
    ("flush_after_unlock", "3.14", "3.15", "lost_dirty_data"),
    ("mremap_writeback", "4.8", "4.9", "lost_dirty_data"),
    ("parallel_dontneed", "4.12", "4.13", "stale_tlb_access"),
    ("madv_dontneed", "6.1", "6.2", "lost_dirty_data"),
])
def test_each_race_is_found_before_its_fix_and_not_after(scenario: str, before: str, after: str,
                                                         invariant: str) -> None:
    sc = load_scenario(scenario)
    old = explore(sc, Config.from_dict({**sc.config, **kernel_config(before)}), "bfs")
    assert old.found and invariant in old.found[0].invariants
    new = explore(sc, Config.from_dict({**sc.config, **kernel_config(after)}), "bfs")
    assert new.complete and not new.found


# --- the command line --------------------------------------------------------------------------------------------
def test_explore_kernel_6_1_reproduces_eager(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    assert cli.main(["explore", "madv_dontneed", "--kernel", "6.1", "--json", "--out", out]) == 1
    by_kernel = json.loads(capsys.readouterr().out)
    assert cli.main(["explore", "madv_dontneed", "--ordering", "eager", "--json", "--out", out]) == 1
    by_ordering = json.loads(capsys.readouterr().out)
    assert by_kernel["ordering"] == "eager" and by_kernel["kernel"] == "6.1"
    assert by_kernel["violations"][0]["steps"] == by_ordering["violations"][0]["steps"]


def test_an_explicit_option_overrides_the_kernel(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["explore", "madv_dontneed", "--kernel", "6.2", "--delayed-batches", "active", "--json",
                     "--out", str(tmp_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["ordering"], doc["delayed_batches"]) == ("delayed", "active")


@pytest.mark.parametrize("argv", [
    ["explore", "madv_dontneed", "--kernel", "9.9"],
    ["fuzz", "--count", "1", "--kernel", "4.21"],
    ["history", "madv_dontneed", "--kernels", "4.12,x"],
    ["history"],
    ["history", "madv_dontneed", "--all"],
])
def test_bad_versions_and_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    assert cli.main(argv + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "tlbrace: error:" in err and "Traceback" not in err


def test_history_json_on_a_small_scenario(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    png = tmp_path / "m.png"
    assert cli.main(["history", "parallel_dontneed", "--kernels", "4.12,v4.13", "--json",
                     "--png", str(png)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["scenario"] == "parallel_dontneed"
    assert [set(k) for k in doc["kernels"]] == [{"kernel", "fixes", "verdict", "invariants", "steps"}] * 2
    old, new = doc["kernels"]
    assert old["kernel"] == "4.12" and old["verdict"] == "violation" and old["invariants"] == ["stale_tlb_access"]
    assert old["steps"] > 0 and "tlb_flush_nested" not in old["fixes"]
    assert new == {"kernel": "4.13", "fixes": ["no_tlb_fast_mode", "flush_before_unlock", "mremap_dirty_flush",
                                               "tlb_flush_nested", "flush_tlb_batched_pending"],
                   "verdict": "clean",
                   "invariants": [], "steps": None}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_history_says_incomplete_when_the_budget_runs_out(capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path) -> None:
    assert cli.main(["history", "parallel_dontneed", "--kernels", "4.13", "--budget", "10", "--no-png",
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kernels"][0]["verdict"] == "incomplete"


def test_history_table_and_png_default_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["history", "flush_after_unlock", "--kernels", "3.14,3.15", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "lost_dirty_data" in out and "clean (exhaustive)" in out and "1cf35d47712d" in out
    assert (tmp_path / "history.png").stat().st_size > 1000


def test_history_kernels_bracket_the_changes_that_move_a_window() -> None:
    """Issue 17 (author12): reclaim's batched flush (4.3) and munmap's mmap_lock downgrade (4.20) are no fixes but
    open or move windows the registry's fixes close; history shows the releases on both sides of each."""
    from kernel_model.kernels import BATCHED_UNMAP_FLUSH_RELEASE, MUNMAP_DOWNGRADE_RELEASE

    kernels = history_kernels()
    assert {"4.2", "4.3", "4.19", "4.20"} <= set(kernels)
    assert kernel_config("4.2")["batched_unmap_flush"] is False and kernel_config("4.3")["batched_unmap_flush"]
    assert kernel_config("4.19")["munmap_downgrade"] is False and kernel_config("4.20")["munmap_downgrade"]
    assert (BATCHED_UNMAP_FLUSH_RELEASE, MUNMAP_DOWNGRADE_RELEASE) == ("4.3", "4.20")


def test_history_kernels_bracket_mprotects_mmu_gather() -> None:
    """Session 19 (author19): 4a18419f71cd (6.0) made mprotect read mm->tlb_flush_pending in its own
    tlb_finish_mmu, so it flushes when a concurrent zap's flush may still be pending; 5.19's mprotect is only
    counted in it (change_protection_range). history shows both sides."""
    from kernel_model.kernels import MPROTECT_MMU_GATHER_RELEASE

    assert MPROTECT_MMU_GATHER_RELEASE == "6.0" and {"5.19", "6.0"} <= set(history_kernels())
    assert kernel_config("5.19")["mprotect_gathers"] is False and kernel_config("6.0")["mprotect_gathers"]
    assert kernel_config("5.19")["without"] == kernel_config("6.0")["without"] == ()
