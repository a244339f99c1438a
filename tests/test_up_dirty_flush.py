"""zap_pte_range's forced flush of a dirty file PTE on UP (Config.zap_dirty_forces_flush, docs/up-v6.2.md).

5df397dec7c4 (6.2) moved `force_flush = 1` for a dirty PTE inside `if (tlb_delay_rmap(tlb))`, constant false on
UP and s390. So from 6.2 a UP zapper removes the rmap, drops the PTL and may be preempted before its flush, and
its CPU's stale dirty entry carries the writer's next store into a page writeback has just cleaned. `--kernel`
6.2 and later model that; the default keeps the brief's UP mode (the v6.1 flush). Every verdict here comes from
an exhaustive search: nothing is scheduled by hand. The first tests fail on the model before session 15, which
forced the flush on every release."""

from __future__ import annotations

import pytest

from controlled.explorer import explore
from fuzz.known_races import RECLAIM_WRITEBACK_RACE, UP_ZAP_FLUSH_RACE, known_kernel_race
from kernel_model.config import Config
from kernel_model.kernels import kernel_config
from scenarios.loader import load_scenario


def _verdicts(name: str, cfg: Config) -> tuple[bool, list[str]]:
    r = explore(load_scenario(name), cfg, "dfs", budget=200_000, stop_at_first=False)
    return r.complete, sorted({i for f in r.found for i in f.invariants})


def test_the_knob_follows_the_release() -> None:
    assert Config().zap_dirty_forces_flush is True  # the brief's UP mode
    assert kernel_config("6.1")["zap_dirty_forces_flush"] is True
    assert kernel_config("6.2")["zap_dirty_forces_flush"] is False
    assert kernel_config("3.15")["zap_dirty_forces_flush"] is True


@pytest.mark.parametrize("scenario", ["madv_dontneed", "munmap"])
def test_up_from_6_2_loses_the_store_a_preempted_zapper_leaves_behind(scenario: str) -> None:
    complete, found = _verdicts(scenario, Config(**kernel_config("6.2"), arch="up"))
    assert "lost_dirty_data" in found


@pytest.mark.parametrize("over", [kernel_config("6.1"), {}], ids=["6.1", "default"])
def test_up_with_the_forced_flush_stays_clean(over: dict) -> None:
    complete, found = _verdicts("madv_dontneed", Config(**over, arch="up"))
    assert complete and found == []


@pytest.mark.parametrize("arch", ["s390", "smp"])
def test_6_2_elsewhere_stays_clean(arch: str) -> None:
    """s390's PTE clear flushes every TLB itself; SMP forces the flush through tlb_delay_rmap."""
    complete, found = _verdicts("madv_dontneed", Config(**kernel_config("6.2"), arch=arch))
    assert complete and found == []


@pytest.mark.parametrize("over, kinds, invariant, label", [
    ({**kernel_config("6.2"), "arch": "up"}, {"madvise_dontneed", "msync", "store"}, "lost_dirty_data",
     UP_ZAP_FLUSH_RACE),
    ({**kernel_config("6.18"), "arch": "up"}, {"munmap", "msync"}, "expect_failed", UP_ZAP_FLUSH_RACE),
    ({"arch": "up"}, {"madvise_dontneed", "msync"}, "lost_dirty_data", None),  # the forced flush: a model bug
    ({**kernel_config("6.1"), "arch": "up"}, {"madvise_dontneed", "msync"}, "lost_dirty_data", None),
    ({**kernel_config("6.2"), "arch": "up"}, {"mprotect", "msync"}, "lost_dirty_data", None),  # nothing zaps
    ({**kernel_config("6.2"), "arch": "up"}, {"madvise_dontneed", "store"}, "lost_dirty_data", None),  # no msync
    ({**kernel_config("6.2"), "arch": "up"}, {"madvise_dontneed", "msync"}, "stale_tlb_access", None),
    ({**kernel_config("6.2"), "arch": "s390"}, {"madvise_dontneed", "msync"}, "lost_dirty_data", None),
    ({**kernel_config("6.2")}, {"reclaim", "msync"}, "lost_dirty_data", RECLAIM_WRITEBACK_RACE),
])
def test_the_fuzzer_labels_the_up_race_precisely(over: dict, kinds: set, invariant: str, label: str | None) -> None:
    assert known_kernel_race(Config(**over), frozenset(kinds), invariant) == label


def test_history_on_up_shows_the_window_6_2_reopened() -> None:
    """`tlbrace history SCENARIO --arch up`: clean on 6.1, the loss on 6.2; and the regression is reported (exit 1)."""
    from cli.cmd_history import fixed_but_reachable, history_row

    row = history_row(load_scenario("madv_dontneed"), ["6.1", "6.2"], 50_000, arch="up")
    assert row.arch == "up"
    assert [c.verdict for c in row.cells] == ["clean", "violation"]
    assert row.cells[1].invariants == ["lost_dirty_data"]
    assert any("on 6.2 (up)" in line for line in fixed_but_reachable([row]))
    smp = history_row(load_scenario("madv_dontneed"), ["6.2"], 50_000)
    assert smp.arch == "smp" and smp.cells[0].verdict == "clean"
