"""Session 17, author17: tests/scenarios/unseen17_*.toml, written from the kernel's code paths (each file's header
reasons out the verdict per kernel and machine before any search was run).

Same rules as tests/test_unseen16.py: a clean verdict needs the whole reduced state space searched (dfs with sleep
sets, 80,000 states at most); a violation is what a bounded search finds first, and must be among the invariants
listed. Every search agreed with its file's prediction.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controlled.explorer import explore
from kernel_model.config import Config
from kernel_model.kernels import kernel_config
from tests.test_unseen_scenarios import _assert_verdict, _kernel_cfg as _cfg, _load

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
LOST_READ_BACK = frozenset({"lost_dirty_data", "expect_failed"})
CLEAN: frozenset[str] = frozenset()

# name -> (kernel, arch) -> the invariants the search finds (dfs, 80,000 states at most).
UNSEEN17: dict[str, dict[tuple[str, str], frozenset[str]]] = {
    # a full, unextendable gather forces the flush of pages 0-1 under the PTL (from 1cf35d47712d), even on 6.2 UP
    "unseen17_up_gather_exhausted_first": {("3.14", "up"): LOST_READ_BACK, ("4.19", "up"): CLEAN,
                                           ("6.1", "up"): CLEAN, ("6.2", "up"): CLEAN,
                                           ("6.1", "smp"): LOST_READ_BACK, ("6.2", "smp"): CLEAN,
                                           ("6.2", "s390"): CLEAN},
    # page 2 of the restarted PTL section: its flush is forced only by its dirty bit, which 6.2 UP ignores
    "unseen17_up_gather_exhausted_last": {("3.14", "up"): LOST_READ_BACK, ("4.19", "up"): CLEAN,
                                          ("6.1", "up"): CLEAN, ("6.2", "up"): LOST_READ_BACK,
                                          ("6.1", "smp"): LOST_READ_BACK, ("6.2", "smp"): CLEAN,
                                          ("6.2", "s390"): CLEAN},
    # the reclaim activate window (docs/reclaim.md), entered through a write-protect fault
    "unseen17_wp_fault_vs_kswapd_msync": {("3.14", "smp"): CLEAN, ("4.10", "smp"): CLEAN,
                                          ("4.11", "smp"): LOST_READ_BACK, ("6.1", "smp"): LOST_READ_BACK,
                                          ("6.2", "smp"): LOST_READ_BACK, ("6.2", "up"): CLEAN,
                                          ("6.2", "s390"): CLEAN},
    # a load's walk and its access as two steps: no freed frame, no stale load, on UP either
    "unseen17_up_load_vs_zap_evict": {("3.14", "smp"): CLEAN, ("6.1", "smp"): CLEAN, ("6.2", "smp"): CLEAN,
                                      ("3.14", "up"): CLEAN, ("6.1", "up"): CLEAN, ("6.2", "up"): CLEAN,
                                      ("6.2", "s390"): CLEAN},
    "unseen17_truncate_vs_wp_fault": {("3.14", "smp"): CLEAN, ("4.19", "smp"): CLEAN, ("6.1", "smp"): CLEAN,
                                      ("6.2", "smp"): CLEAN, ("6.2", "up"): CLEAN, ("6.2", "s390"): CLEAN},
}


def test_every_unseen17_scenario_has_a_verdict_here() -> None:
    assert {p.stem for p in SCENARIOS.glob("unseen17_*.toml")} == set(UNSEEN17)


@pytest.mark.parametrize("name, kernel, arch", [(n, k, a) for n, cells in UNSEEN17.items() for k, a in cells])
def test_unseen17_scenario_on_kernel(name: str, kernel: str, arch: str) -> None:
    sc = _load(name)
    _assert_verdict(explore(sc, _cfg(sc, kernel, arch), "dfs", budget=80_000), UNSEEN17[name][kernel, arch])


@pytest.mark.parametrize("batches", ["active", "local+active"])
def test_unseen17_full_gather_on_6_2_smp_in_both_batch_modes(batches: str) -> None:
    """The seed patch alone (active: no batch past local while delayed_rmap is set, the flush forced at page 0)
    and c47454823bd4 (local+active: one batch past local, the flush forced at page 1): nothing lost in either."""
    sc = _load("unseen17_up_gather_exhausted_first")
    cfg = Config(**{**sc.config, **kernel_config("6.2"), "arch": "smp", "delayed_batches": batches})
    _assert_verdict(explore(sc, cfg, "dfs", budget=80_000), CLEAN)
