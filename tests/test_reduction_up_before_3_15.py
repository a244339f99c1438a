"""A verdict fuzz found the reduced and the full search to disagree on (session 20, author20): race 1 of
docs/history.md on UP before 3.15, in a window that a later ftruncate closes.

``tlbrace fuzz --ordering delayed --arch up --kernel 3.9 --count 80 --seed 2001 --check-reduction``, scenario 9 (the
same on 3.10 and 3.14, not on 3.15): t0's msync locks the folio, t1's munmap zaps the dirty PTE and unlocks the
PTL before its flush (1cf35d47712d's window), t0's folio_mkclean finds the folio unmapped and writes it back, and
t0's counter stores through CPU 0's stale TLB entry before t1 flushes. The page then differs from the disk with
nothing dirty, until t1's ftruncate takes it out of the file. The full search judged that window lost_dirty_data;
the reduced one, which keeps every end state but not every state on the way, found nothing (510 states). The
oracle now judges a loss when data is dropped or at quiescence (kernel_model/oracle.py): with the ftruncate the run
loses nothing, and both searches say so; without it the data is still lost at quiescence, and both find it.
"""

from __future__ import annotations

import pytest

from controlled.explorer import explore
from fuzz.reduction_check import AGREE, reduction_mismatch
from kernel_model.config import Config
from kernel_model.kernels import kernel_config
from scenarios.loader import load_scenario_text

FUZZ_2001_9 = """
name = "fuzz-2001-9"
[setup]
pages = 1
mapped = true
warm_tlb = ["t0"]
[[threads]]
name = "t0"
program = [{ op = "msync", pages = [0] }, { op = "counter", pages = [0], max = 3 }]
[[threads]]
name = "t1"
program = [{ op = "munmap" }, { op = "store", pages = [0], repeat = 2 }%s]
"""
TRUNCATED = ', { op = "ftruncate", pages = [0] }'


def _invariants(truncated: bool, kernel: str, **how: bool) -> set[str]:
    sc = load_scenario_text(FUZZ_2001_9 % (TRUNCATED if truncated else ""), name="fuzz-2001-9")
    result = explore(sc, Config(**{**kernel_config(kernel), "arch": "up"}), "dfs", stop_at_first=False, **how)
    assert result.complete
    return {i for f in result.found for i in f.invariants}


@pytest.mark.parametrize("kernel", ["3.9", "3.14"])
def test_a_window_ftruncate_closes_is_no_loss_in_either_search(kernel: str) -> None:
    assert _invariants(True, kernel) == set() == _invariants(True, kernel, reduce=False)
    sc = load_scenario_text(FUZZ_2001_9 % TRUNCATED, name="fuzz-2001-9")
    assert reduction_mismatch(sc, Config(**{**kernel_config(kernel), "arch": "up"}), 20_000) == AGREE


def test_without_the_ftruncate_both_searches_find_race_1_before_3_15() -> None:
    assert "lost_dirty_data" in _invariants(False, "3.14")
    assert "lost_dirty_data" in _invariants(False, "3.14", reduce=False)
    assert _invariants(False, "3.15") == set() == _invariants(False, "3.15", reduce=False)
