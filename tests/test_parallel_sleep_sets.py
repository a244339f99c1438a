"""Sleep sets on the parallel search (controlled.shared_sleep_sets): the shared table's pairs of words, and
searches on two workers that reach the end states and verdicts of one process.

Which worker reaches a state first decides the sleep set it is stored with, so the state and transition counts
may vary from run to run; the end states may not: each search reaches a subset of the full search's end states
(``schedules`` counts the distinct ones), so equal counts are equal sets (as tests/test_sleep_sets.py argues)."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from analysis.mutant_table import MUTANT_TABLE
from controlled import parallel_search
from controlled.explorer import ExploreResult, explore
from controlled.machine import Machine
from controlled.replay import run_schedule
from controlled.shared_sleep_sets import MAX_BITS, READY, TransitionBits
from controlled.shared_words import LockedWords, compiled_words, shared_words
from kernel_model.config import ARCHES, ORDERINGS, Config
from scenarios.loader import library_names, load_scenario

BUDGET = 60_000
OVER_BUDGET = ("mremap_truncate", "nadav_poc", "scale_writers", "scale_zap")  # as tests/test_sleep_sets.py


@pytest.fixture(autouse=True)
def fork_at_once(monkeypatch):
    monkeypatch.setattr(parallel_search, "FORK_AFTER_SECONDS", 0.0)


def _implementations() -> list[bool]:
    """The locked fallback always, and the compiled atomics where they are built (scripts/setup.sh, which CI
    runs, builds them)."""
    return [True, False] if compiled_words() is not None else [False]


@pytest.mark.parametrize("compiled", _implementations())
def test_a_claim_is_new_once_and_intersect_clears_each_bit_once(compiled):
    words = shared_words(2 * 16, compiled)
    assert isinstance(words, LockedWords) != compiled
    at = words.claim(0, 15, 12345)
    assert at >= 0 and at % 2 == 0
    assert words.claim(0, 15, 12345) == -1 - at  # found: the same pair
    other = words.claim(0, 15, 12345 + 16)  # same home slot: probes on to the next pair
    assert other >= 0 and other != at
    words.store(at + 1, 0b1011 | READY)
    assert words.intersect(at + 1, 0b0011, READY) == 0b1011 | READY  # clears bit 3: this caller explores it
    assert words.load(at + 1) == 0b0011 | READY
    assert words.intersect(at + 1, 0b0111, READY) == 0b0011 | READY  # nothing of it outside: nothing cleared
    assert words.load(at + 1) == 0b0011 | READY
    assert words.intersect(at + 1, 0, READY) == 0b0011 | READY
    assert words.load(at + 1) == READY
    with pytest.raises(IndexError):
        words.claim(0, 16, 1)  # a table of 17 pairs does not fit 32 words


def _publish_later(words, at: int, bits: int) -> None:
    time.sleep(0.3)
    words.store(at, bits | READY)


@pytest.mark.parametrize("compiled", _implementations())
def test_a_revisit_waits_until_the_first_visitor_published_its_sleep_set(compiled):
    words = shared_words(2 * 16, compiled)
    at = words.claim(0, 15, 7)
    child = multiprocessing.get_context("fork").Process(target=_publish_later, args=(words, at + 1, 0b110))
    child.start()
    try:
        t0 = time.perf_counter()
        assert words.intersect(at + 1, 0b010, READY) == 0b110 | READY  # not 0: it waited for the publication
        assert time.perf_counter() - t0 > 0.1
        assert words.load(at + 1) == 0b010 | READY
    finally:
        child.join(10)


def test_transitions_round_trip_through_their_bits():
    code = TransitionBits(3, 2)
    trs = frozenset({("t", 0), ("t", 2), ("i", 0, 1), ("i", 1, 2)})
    bits = code.bits(trs)
    assert bits == 1 << 0 | 1 << 2 | 1 << (3 + 0 + 1) | 1 << (3 + 3 + 2)
    assert code.transitions(bits) == trs and code.transitions(0) == frozenset()
    m = Machine(load_scenario("madv_dontneed"), Config(), reduce=True)
    assert TransitionBits.fits(m) and m.nthreads * (1 + m.ncpus) <= MAX_BITS


def _cases() -> list[tuple[str, dict]]:
    out = [(name, {"ordering": o, "arch": "smp"}) for name in library_names() if name not in OVER_BUDGET
           for o in ORDERINGS]
    out += [("madv_dontneed", {"ordering": o, "arch": a}) for o in ORDERINGS for a in ARCHES if a != "smp"]
    out += [(row[0], {**row[1], "mutant": mutant}) for mutant, row in MUTANT_TABLE.items() if row]
    return out


def _search(name: str, over: dict, **how: object) -> ExploreResult:
    sc = load_scenario(name)
    return explore(sc, Config.from_dict({**sc.config, **over}), "dfs", stop_at_first=False, budget=BUDGET,
                   hash_compact=True, **how)


def _verdicts(r: ExploreResult) -> set[str]:
    return {i for f in r.found for i in f.invariants}


@pytest.mark.slow  # two searches each, one on two workers
@pytest.mark.parametrize("name, over", _cases())
def test_two_workers_with_sleep_sets_reach_the_end_states_and_verdicts_of_one_process(name, over):
    one = _search(name, over, sleep_sets=False)
    assert one.complete, f"the reduced search needs more than {BUDGET} states: leave {name} out (OVER_BUDGET)"
    two = _search(name, over, workers=2)
    assert two.complete
    assert (two.schedules, _verdicts(two)) == (one.schedules, _verdicts(one))
    if not one.found:  # where runs stop at violations, what a search stores depends on its order
        assert two.transitions <= one.transitions


def test_sleep_sets_prune_on_the_workers_and_the_first_violation_replays():
    sc = load_scenario("ladder", {"writers": 2, "stores": 1})
    cfg = Config(ordering="delayed")
    without = explore(sc, cfg, "dfs", workers=2, sleep_sets=False)
    with_sleep = explore(sc, cfg, "dfs", workers=2)
    assert without.complete and with_sleep.complete and with_sleep.schedules == without.schedules
    assert with_sleep.transitions < without.transitions  # 0.6x on this cell in one process
    eager = Config(ordering="eager")
    r = explore(sc, eager, "dfs", workers=2)
    assert r.found and run_schedule(sc, eager, r.found[0].schedule).invariants == r.found[0].invariants


def test_a_search_says_whether_it_pruned_with_sleep_sets_and_why_not(capsys):
    """--workers on a scenario whose transitions do not fit a word, and --no-reduce, run without sleep sets: the
    result, the JSON and the summary line say so and why; a search that prunes with them says nothing."""
    import json

    from cli.main import main

    wide = load_scenario("ladder", {"writers": 8, "stores": 1})
    over = explore(wide, Config(), "dfs", workers=2, budget=300)
    assert not over.sleep_sets and f"more than the {MAX_BITS}" in over.sleep_sets_off
    m = Machine(wide, Config(), reduce=True)
    assert not TransitionBits.fits(m) and str(TransitionBits.count(m)) in over.sleep_sets_off
    sc = load_scenario("madv_dontneed")
    for workers in (1, 2):
        unreduced = explore(sc, Config(), "dfs", workers=workers, reduce=False)
        assert not unreduced.sleep_sets and "--no-reduce" in unreduced.sleep_sets_off
        pruned = explore(sc, Config(), "dfs", workers=workers)
        assert pruned.sleep_sets and pruned.sleep_sets_off == ""
        asked_off = explore(sc, Config(), "dfs", workers=workers, sleep_sets=False)
        assert not asked_off.sleep_sets and asked_off.sleep_sets_off == ""  # as asked: nothing to explain
    assert main(["explore", "madv_dontneed", "--strategy", "dfs", "--no-reduce", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["sleep_sets"] is False and "--no-reduce" in doc["sleep_sets_off"]
    assert main(["explore", "madv_dontneed", "--strategy", "dfs", "--no-reduce"]) == 0
    assert "without sleep sets: they need the partial-order reduction" in " ".join(capsys.readouterr().out.split())
    assert main(["explore", "madv_dontneed", "--strategy", "dfs", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["sleep_sets"] is True and doc["sleep_sets_off"] is None
