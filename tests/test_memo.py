"""Bounded memos (controlled.memo) forget answers, never change them: searches whose every memo holds one or two
answers find the same states, transitions, end states, verdicts and counterexamples as with the default bounds;
and the compact visited keys (controlled.visited) lose nothing."""

from __future__ import annotations

import random

import pytest

from controlled import canonical, positions, reducer, sleep_sets
from controlled.depth_first import ExploreResult, depth_first, root_entry
from controlled.machine import Machine
from controlled import memo as memo_module
from controlled.memo import MISSING, BoundedMemo, Interner, PyBoundedMemo, PyInterner, PyNumbering
from controlled.sleep_sets import SleepSets
from controlled.visited import CompactKeys, Numbering, _escaped, adder, encoder, numbers, prefix_code
from kernel_model.config import Config
from scenarios.loader import load_scenario
from tests.compiled_required import skip_unless_built

# Each implementation of the memos: the Python classes, and controlled/_memo.pyx's when built (controlled.memo's
# names are those then).
IMPLEMENTATIONS = [pytest.param((PyBoundedMemo, PyInterner, PyNumbering), id="python"),
                   pytest.param((BoundedMemo, Interner, Numbering), id="used")]


def test_the_compiled_memos_are_built_and_used():
    """scripts/setup.sh builds controlled/_memo.pyx; without a compiler the Python memos run (and this test says so
    rather than passing quietly). When built, its classes are dict subclasses that inherit dict's subscript."""
    skip_unless_built(memo_module._COMPILED is not None, "controlled._memo (the Python memos run)")  # noqa: SLF001
    for cls in (BoundedMemo, Interner, Numbering):
        assert cls.__module__ == "controlled._memo" and issubclass(cls, dict)
    assert MISSING is memo_module._COMPILED.MISSING  # noqa: SLF001


@pytest.mark.parametrize("classes", IMPLEMENTATIONS)
def test_a_bounded_memo_keeps_two_generations_and_moves_what_is_asked_again_forward(classes):
    memo = classes[0](2)
    assert memo["a"] is MISSING and memo.misses == 1
    memo.put("a", 1)
    memo.put("b", 2)
    memo.put("c", 3)  # the current generation was full: a and b are now the old one
    assert memo.turns == 1 and memo.held() == 3
    assert memo["a"] == 1  # found in the old generation: moved back into the current one
    memo.put("d", 4)  # full again (c, a): b is dropped
    assert memo["b"] is MISSING and memo["c"] == 3 and memo["a"] == 1 and memo["d"] == 4
    assert memo.held() <= 2 * memo.bound
    memo.put("none", None)  # None is an answer like any other
    assert memo["none"] is None
    memo.forget()
    assert memo.held() == 0 and memo["d"] is MISSING
    with pytest.raises(ValueError):
        classes[0](0)


@pytest.mark.parametrize("classes", IMPLEMENTATIONS)
def test_an_interner_gives_back_one_equal_copy_and_forgets_past_its_bound(classes):
    share = classes[1](2)
    a, b = (1, (2, 3)), (1, (2, 3))
    assert share[a] is a and share[b] is a
    assert share[(4,)] == (4,)
    share[(5,)]  # past the bound: it starts again
    assert len(share) == 1
    assert share[b] is b and share[b] == a


def test_compact_keys_are_a_prefix_code_of_the_part_numbers():
    """Any sequence of numbers, of the three lengths, reads back from its code; and a field that takes more than
    65,535 values still encodes each of its keys apart, and back."""
    rng = random.Random(17)
    for _ in range(200):
        seq = [rng.choice((rng.randrange(255), rng.randrange(255, 65_535), rng.randrange(65_535, 2**32)))
               for _ in range(rng.randrange(1, 12))]
        assert numbers(prefix_code(seq)) == seq
    assert prefix_code([]) == b"" and prefix_code([3, 254]) == bytes([3, 254])
    with pytest.raises(OverflowError):
        _escaped(2**32)
    keys = CompactKeys()
    encoded = [keys.encode(((n,), (), ())) for n in range(70_000)]
    assert len(set(encoded)) == 70_000
    assert [numbers(encoded[n]) for n in (0, 254, 255, 65_534, 65_535, 69_999)] == [
        [1, 0, 0, n] for n in (0, 254, 255, 65_534, 65_535, 69_999)]
    assert [len(encoded[n]) for n in (254, 255, 65_535)] == [4, 6, 10]


@pytest.mark.parametrize("classes", IMPLEMENTATIONS)
def test_a_numbering_numbers_parts_in_order_of_first_appearance(classes):
    numbering = classes[2]()
    assert [numbering[p] for p in ("a", (1, 2), "a", frozenset({1}), (1, 2))] == [0, 1, 0, 2, 1]


def test_compact_keys_number_each_field_apart_and_stay_exact_past_255_values():
    keys = CompactKeys()
    # 300 values of one field: numbers past 255 are escaped, and every key stays distinct and stable.
    encoded = [keys.encode(((n, "same"), (), ())) for n in range(300)]
    assert len(set(encoded)) == 300
    assert [keys.encode(((n, "same"), (), ())) for n in range(300)] == encoded
    assert len(encoded[10]) == 5 and len(encoded[299]) == 7  # shape 3 + numbers 1 + 1, or 3 + 1
    assert numbers(encoded[299]) == [2, 0, 0, 299, 0]
    # The same value in another field is another part, numbered in that field's table.
    assert keys.encode((("same", 0), (), ())) != keys.encode(((0, "same"), (), ()))


# The bounds of every memo the search keeps, by module: (module, constant) -> the tiny bound the test sets.
TINY = {(reducer, "PERSISTENT_BOUND"): 1, (reducer, "NUMBERED_BOUND"): 2, (reducer, "RELATIONS_BOUND"): 1, (reducer, "PART_BOUND"): 1,
        (reducer, "SHARED_BOUND"): 2, (sleep_sets, "FOOTPRINT_BOUND"): 1, (sleep_sets, "INDEPENDENT_BOUND"): 1,
        (sleep_sets, "CHILDREN_BOUND"): 1, (sleep_sets, "SHARED_BOUND"): 2, (positions, "POSITIONS_BOUND"): 2,
        (canonical, "_RENAMED_SLOTS"): 2, (canonical, "_RENAMED_MIN"): 1}


def _search(name: str, params: dict, over: dict) -> tuple[ExploreResult, list[BoundedMemo]]:
    """An exhaustive dfs with sleep sets, as explorer._dfs runs it; the result and the machine's memos."""
    sc = load_scenario(name, params)
    m = Machine(sc, Config.from_dict({**sc.config, **over}), reduce=True)
    sleep = SleepSets(m)
    canon = encoder(m.canonical, CompactKeys())
    seen = {canon(m.key())}
    result = ExploreResult("dfs", False, 0, 0, 0, 0.0)
    result.complete = depth_first(m, canon, adder(seen), [root_entry(m)], [], result, False, lambda: True,
                                  sleep=sleep)
    result.states = len(seen)
    r = m.reducer
    assert r is not None
    memos = [r._persistent, r._relations_memo, r._footprint_memo, r._relation_memo,  # noqa: SLF001
             sleep._footprints, sleep._independent, m.canonicaliser._renamed, m.positions.memo,  # noqa: SLF001
             sleep._children]  # noqa: SLF001
    return result, memos


def _summary(r: ExploreResult) -> tuple:
    return (r.complete, r.states, r.transitions, r.schedules,
            [(f.invariants, [tuple(tr) for tr in f.schedule]) for f in r.found])


@pytest.mark.parametrize("name, params, over", [
    ("ladder", {"writers": 2, "stores": 1}, {"ordering": "delayed"}),
    ("mkclean_first", {}, {"ordering": "eager"}),  # finds lost_dirty_data
    ("madv_dontneed", {}, {"ordering": "eager", "arch": "up"}),
    ("munmap", {}, {"arch": "s390"}),
    ("mprotect_reclaim", {}, {}),  # covered translations: the footprint contexts of completions
    ("writable_clean", {}, {}),
    ("parallel_dontneed", {}, {}),
])
def test_memos_with_tiny_bounds_find_exactly_what_the_default_bounds_find(monkeypatch, name, params, over):
    default, _ = _search(name, params, over)
    for (module, constant), bound in TINY.items():
        monkeypatch.setattr(module, constant, bound)
    monkeypatch.setattr(positions, "_SHARED_MEMOS", {})  # a memo of this scenario's positions with the tiny bound
    tiny, memos = _search(name, params, over)
    assert _summary(tiny) == _summary(default)
    assert all(memo.bound <= 2 and memo.held() <= 2 * memo.bound for memo in memos)
    # The bounds bit: the memos the search asks most turned over many times.
    assert memos[0].turns > 10 and memos[1].turns > 10 and memos[5].turns > 10
