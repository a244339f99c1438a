"""Statement merging (controlled.depth_first._merge_chain, `explore --merge-chains`) is sound: on every library
scenario x ordering on SMP (merging looks at no arch: UP's and s390's runs are cut the same way) and every mutant
row, a dfs that runs through single-transition states without
storing them reaches the same end states and the same verdicts as one that stores every state; it stores fewer;
and its counterexamples replay to their violation."""

from __future__ import annotations

import pytest

from controlled.explorer import ExploreResult, explore
from controlled.replay import run_schedule
from kernel_model.config import Config
from scenarios.loader import load_scenario
from tests.test_sleep_sets import _cases, _verdicts
from tests.test_sleep_sets import _search as sleep_sets_search

BUDGET = 10_000  # stored states per search: every case of the matrix below fits, so one that does not is a failure
# (mkclean_first's three cases need 7,938-8,532 states, half a second of CPU each, session 17: at 6,000 they only
# ever skipped, checking nothing; session 18's filemap_page_mkwrite recheck, one more step in every write-protect
# fault, took them to 8,809-9,222); larger cases: ladder and munmap in the test after it


def _search(name: str, over: dict, **how: object) -> ExploreResult:
    return sleep_sets_search(name, over, BUDGET, **how)


# test_sleep_sets' matrix on SMP, less scale_zap: its stored search needs more than BUDGET states on both SMP cases
# (9,589 and 23,728 states at test_sleep_sets' 16 pages, session 15), so each only skipped after a 2 s search.
@pytest.mark.slow  # about forty configurations, two searches each
@pytest.mark.parametrize("name, over", [(name, over) for name, over in _cases()
                                        if over.get("arch", "smp") == "smp" and name != "scale_zap"])
def test_merging_keeps_every_end_state_and_verdict(name, over):
    stored, merged = _search(name, over), _search(name, over, merge=True)
    assert stored.complete and merged.complete
    # Distinct end states are stored once each in both searches (a run's end is never merged): equal counts of
    # end states reached within the same reduced state graph are equal sets.
    assert (merged.schedules, _verdicts(merged)) == (stored.schedules, _verdicts(stored))
    assert merged.states <= stored.states


@pytest.mark.parametrize("name, over", [("ladder", {"ordering": "delayed"}), ("munmap", {}),
                                        ("madv_dontneed", {"ordering": "eager"})])
def test_merging_stores_fewer_states_and_runs_through_the_rest(name, over):
    stored, merged = _search(name, over), _search(name, over, merge=True)
    assert stored.complete and merged.complete
    assert merged.merged > 0 and stored.merged == 0
    assert merged.states < stored.states
    # Every state the stored search holds is either held by the merged one or run through by it.
    assert merged.states + merged.merged >= stored.states
    assert (merged.schedules, _verdicts(merged)) == (stored.schedules, _verdicts(stored))


def test_a_merged_search_counterexample_replays_to_its_violation():
    sc = load_scenario("madv_dontneed")
    cfg = Config.from_dict({**sc.config, "ordering": "eager"})
    r = explore(sc, cfg, "dfs", merge=True)
    assert r.found, "the eager ordering loses dirty data in some interleaving"
    replay = run_schedule(sc, cfg, r.found[0].schedule)
    assert {v.invariant for v in replay.violations} == set(r.found[0].invariants)


def test_merging_is_the_same_search_each_time():
    sc = load_scenario("ladder")
    cfg = Config.from_dict({**sc.config, "ordering": "delayed"})
    a, b = (explore(sc, cfg, "dfs", merge=True, hash_compact=True) for _ in range(2))
    assert (a.states, a.merged, a.transitions, a.schedules) == (b.states, b.merged, b.transitions, b.schedules)


def test_cli_merge_chains_says_what_it_ran_through_and_refuses_what_it_cannot_do(capsys):
    from cli_run import run_cli

    argv = ("explore", "ladder", "--ordering", "delayed", "--strategy", "dfs", "--merge-chains")
    rc, out, _ = run_cli(capsys, *argv)
    assert rc == 0 and "run through, not stored" in out and "no violation" in out
    rc, out, _ = run_cli(capsys, *argv, "--json")
    assert rc == 0 and '"merged": ' in out and '"merged": 0' not in out
    for other in (("--strategy", "bfs"), ("--workers", "2")):
        rc, _, err = run_cli(capsys, *argv, *other)
        assert rc == 2 and "--merge-chains" in err


@pytest.mark.slow  # a few dozen generated scenarios, two searches each
@pytest.mark.parametrize("kernel", ["4.12", "6.18"])
def test_merging_keeps_verdicts_on_scenarios_nobody_wrote(kernel):
    """The fuzzer's scenarios (fuzz.generate), on a kernel with known races and on one with none: wherever the
    search storing every state is complete, merging reaches the same end states and verdicts."""
    from fuzz.generate import generate, load_spec, scenario_name
    from kernel_model.kernels import kernel_config

    cfg = Config.from_dict(kernel_config(kernel))
    compared = 0
    for index in range(16):
        try:
            sc, _ = load_spec(generate(7, index), scenario_name(7, index))
        except ValueError:
            continue  # a spec the loader refuses (fuzz reports those as generator bugs)
        stored = explore(sc, cfg, "dfs", budget=3_000, stop_at_first=False)
        if not stored.complete:
            continue
        merged = explore(sc, cfg, "dfs", budget=3_000, stop_at_first=False, merge=True)
        assert merged.complete and merged.states <= stored.states, index
        assert (merged.schedules, _verdicts(merged)) == (stored.schedules, _verdicts(stored)), index
        compared += 1
    assert compared >= 6  # most of the first sixteen fit in 3,000 states
