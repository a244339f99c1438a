"""`tlbrace fuzz --check-reduction`: the reductions judged against the full search, on scenarios nobody wrote.

The exhaustive search cuts the state space four ways: persistent sets and sleep sets (controlled.reducer,
controlled.sleep_sets), canonical keys (store values renamed page by page, interchangeable writers ordered:
controlled.canonical, controlled.symmetry), and, with ``--merge-chains``, states run through without being
stored (controlled.depth_first). Each claims to keep every end state and every verdict. The library scenarios
test that (tests/test_sleep_sets.py); this tests it on each generated scenario where the searches fit: the
default search, the same merging chains, and the full search (no reduction, every state stored, one state per
orbit), all with every violation kept. They must find the same verdicts, and, where nothing is violated, the
same number of end states (the reduced searches reach a subset of the full search's: equal counts are equal
sets). Every search stops a run at its first violation (the full one checks every step online), so end states
are compared only between searches that find none. A difference is a reduction bug: fuzz seed 11's scenario 182
was one (the value renaming split end states; now tests/scenarios/counter_on_replaced_page.toml).
"""

from __future__ import annotations

from controlled.explorer import ExploreResult, explore
from kernel_model.config import Config
from kernel_model.program import Scenario

FULL_BUDGET_FACTOR = 4  # the full search gets this many times the reduced search's budget


NOT_COMPARED = None  # one of the searches did not fit its budget: nothing to compare
AGREE = ""


def reduction_mismatch(scenario: Scenario, cfg: Config, budget: int) -> str | None:
    """What the reduced searches find that the full search does not (or the reverse), in words; AGREE ("") when
    they agree, NOT_COMPARED (None) when one of them does not fit its budget."""
    runs: dict[str, ExploreResult] = {}
    for label, how, limit in (("reduced", {}, budget), ("merged", {"merge": True}, budget),
                              ("full", {"reduce": False}, FULL_BUDGET_FACTOR * budget)):
        result = explore(scenario, cfg, "dfs", budget=limit, stop_at_first=False, **how)
        if not result.complete:
            return NOT_COMPARED
        runs[label] = result
    verdicts = {label: sorted({i for f in r.found for i in f.invariants}) for label, r in runs.items()}
    ends = {label: r.schedules for label, r in runs.items()}
    # Every search stops a run at its first violation, and which runs a violation cuts short depends on the order a
    # search takes (a sleep set may leave the only order that reaches an end state past a violating one for
    # another that the violation cuts): end states are comparable only between searches that found nothing (fuzz
    # seed 205's scenario 19 on 3.14 UP: 5 end states reduced, 6 merged and full, the same verdicts).
    compared = {k: v for k, v in runs.items() if not v.found}
    if len(set(map(tuple, verdicts.values()))) > 1 or len({ends[k] for k in compared}) > 1:
        return "; ".join(f"{label}: verdicts {verdicts[label] or 'none'}, {ends[label]} end states"
                         for label in runs)
    return AGREE
