"""Positions merged by their generator's state (controlled.generator_state, Positions._representative).

A search keys a thread by the first history met that left its kernel path generator in the same state. That is
sound only if equal states behave the same for ever after: these tests would fail if the state left out anything
the generator's future depends on (a live local, a loop's position, aliasing, a delegated sub-generator), and if
a machine going on from a representative did anything its own history would not.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from controlled import generator_state
from controlled.explorer import explore
from controlled.machine import Machine
from kernel_model.config import Config
from kernel_model.mutants import REGISTRY
from scenarios.loader import load_scenario

pytestmark = pytest.mark.skipif(not generator_state.SUPPORTED, reason="reads CPython 3.11's generator frames")

LIBRARY = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "scenarios" / "library").glob("*.toml"))
UNSEEN = sorted(str(p) for p in (Path(__file__).resolve().parent / "scenarios").glob("unseen*.toml"))
CONFIGS = [{"ordering": "delayed"}, {"ordering": "eager"}, {"arch": "up"}, {"arch": "s390"}] + \
    [{"mutant": m.name} for m in REGISTRY]


def _at(gen, results):
    """``gen`` started and sent ``results``; the generator."""
    next(gen)
    for r in results:
        gen.send(r)
    return gen


def _looping(xs):
    total = 0
    for x in xs:
        got = yield x
        total += got
    yield total


def test_a_dead_result_is_forgotten_and_a_live_one_kept():
    """Past results only summed: two histories with one sum are one state; another sum is another."""
    same = [generator_state.state_of(_at(_looping((5, 6, 7)), r)) for r in ((1, 2), (2, 1), (0, 3))]
    assert same[0] is not None and same[0] == same[1] == same[2]
    assert generator_state.state_of(_at(_looping((5, 6, 7)), (1, 1))) != same[0]


def test_a_loops_position_is_state_even_where_the_locals_agree():
    """The same element twice: the locals agree in the first and second turn, the iterator does not (one more
    turn to go or none). Left out, the two would merge and the first would never yield its last element."""
    first = generator_state.state_of(_at(_looping((4, 4)), ()))
    second = generator_state.state_of(_at(_looping((4, 4)), (0,)))
    assert first is not None and second is not None and first != second


def _aliasing(shared):
    a = [0]
    b = a if shared else [0]
    yield 1
    a.append(1)
    yield len(b)


def test_aliasing_is_state():
    """Two locals holding one list are not two equal lists: the next append is seen through both or one."""
    assert generator_state.state_of(_at(_aliasing(True), ())) != generator_state.state_of(_at(_aliasing(False), ()))


def _outer(n):
    yield 0
    got = yield from _inner(n)
    yield got


def _inner(n):
    seen = yield n
    return (seen, n)


def test_a_delegated_generators_state_is_read():
    """yield from: the sub-generator's live locals are the outer's state too (n is read after the yield)."""
    a = generator_state.state_of(_at(_outer(1), (None,)))
    b = generator_state.state_of(_at(_outer(2), (None,)))
    assert a is not None and a != b
    assert a == generator_state.state_of(_at(_outer(1), ("anything",)))  # the first result is dead


def test_types_are_told_apart():
    """True and 1 are equal, but a path may print one or test it with ``is``: not one state."""
    assert generator_state.state_of(_at(_keeping(), (True,))) != generator_state.state_of(_at(_keeping(), (1,)))


def _keeping():
    got = yield 0
    yield 1
    yield got


def _waiting(x):
    yield ("step", x)
    yield 0


def test_the_step_waited_at_is_not_in_the_state():
    """A value read only to build the step a generator waits at is dead once it yields: the two states are one,
    so a position must be keyed by its step too (Positions._representative). Without the step, a fault waiting
    to unlock pfn 1 took the history of one waiting to unlock pfn 0 (fault_vs_evict, found by the lockstep runs
    below)."""
    assert generator_state.state_of(_at(_waiting(1), ())) == generator_state.state_of(_at(_waiting(2), ()))


class _Opaque:
    pass


def _holding(obj):
    yield obj
    yield obj


def test_an_unknown_object_gives_no_state():
    assert generator_state.state_of(_at(_holding(_Opaque()), ())) is None


def _seen(events):
    return [(e.tid, e.cpu, e.kind, e.fn, e.op, e.args, e.result) for e in events]


def _lockstep(sc, cfg, rng: random.Random, steps: int = 600) -> int:
    """One random run in lockstep (see below); how many times a thread stood at a representative other than
    its own history."""
    merging = Machine(sc, cfg, record=True, reduce=True)
    plain = Machine(sc, cfg, record=True, reduce=True, merge=False)
    restored = None
    switch, merged, mark, restored_mark = rng.randrange(40), 0, 0, 0
    for step in range(steps):
        enabled = plain.enabled_all()
        assert merging.enabled_all() == enabled, step
        if plain.run_ends(enabled):
            break
        if step == switch:
            restored = Machine(sc, cfg, record=True, reduce=True)
            restored.restore(merging.key())
            mark, restored_mark = len(merging.events), len(restored.events)  # its boot's notes before
        if restored is not None:
            assert restored.enabled_all() == enabled, step
        tr = rng.choice(enabled)
        violations = plain.execute(tr)
        assert merging.execute(tr) == violations, step
        if restored is not None:
            assert restored.execute(tr) == violations, step
        merged += sum(a.at != b.at for a, b in zip(merging.pos, plain.pos))
        if violations:
            break
    assert _seen(merging.events) == _seen(plain.events)
    if restored is not None:
        assert _seen(restored.events[restored_mark:]) == _seen(merging.events[mark:])
    return merged


@pytest.fixture(params=[False, True], ids=["retries", "dead-results"])
def dead_results(request, monkeypatch):
    """Both merges: retries only (the default) and, opt-in, histories that differ in dead results."""
    monkeypatch.setattr(generator_state, "DEAD_RESULTS", request.param)
    return request.param


@pytest.mark.parametrize("name", LIBRARY + UNSEEN, ids=lambda name: Path(name).stem)
def test_a_machine_on_representatives_does_what_its_own_history_does(name, dead_results):
    """Random runs in lockstep: a machine that merges positions, one that never does, and, from a random point
    of each run on, a third restored from the merging machine's key (its positions are representatives, rebuilt
    from their results). Same transitions, so the same enabled sets, the same violations and the same events
    (every step and note with its arguments and result), in every configuration and mutant."""
    sc = load_scenario(name)
    for n, over in enumerate(CONFIGS):
        cfg = Config.from_dict({**sc.config, **over})
        rng = random.Random(n)
        for _ in range(3):
            _lockstep(sc, cfg, rng)


def test_lockstep_runs_do_meet_merged_positions(dead_results):
    """The check above is not vacuous: the machines do stand at representatives (madv_dontneed's writer retries
    its store after the zap; two-page ladder cells)."""
    merged = 0
    for name, params in (("madv_dontneed", None), ("ladder", {"pages": 2, "writers": 2, "stores": 1, "passes": 2})):
        sc = load_scenario(name, params)
        for ordering in ("delayed", "eager"):
            rng = random.Random(7)
            merged += sum(_lockstep(sc, Config(ordering=ordering), rng) for _ in range(6))
    assert merged > 0


def test_the_ladder_merges_positions_and_keeps_its_verdicts(monkeypatch, dead_results):
    """On a two-page ladder cell a writer's retried store is its first store again (and, with dead results, the
    writeback pass forgets most of its first page): fewer states, the same verdicts and end states as without
    merging; eager still loses dirty data."""
    sc = load_scenario("ladder", {"pages": 2, "writers": 1, "stores": 1, "passes": 1})
    for ordering in ("delayed", "eager"):
        cfg = Config(ordering=ordering)
        merged = explore(sc, cfg, "dfs", stop_at_first=False)
        with monkeypatch.context() as patch:
            patch.setattr(generator_state, "SUPPORTED", False)
            plain = explore(sc, cfg, "dfs", stop_at_first=False)
        assert merged.complete and plain.complete
        kinds = [sorted({i for f in r.found for i in f.invariants}) for r in (merged, plain)]
        assert kinds[0] == kinds[1]
        assert merged.schedules == plain.schedules  # distinct end states: a finished thread's position is ()
        assert merged.states < plain.states
        if ordering == "eager":
            assert "lost_dirty_data" in kinds[0]
