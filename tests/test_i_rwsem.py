"""The inode's i_rwsem around ftruncate, and the holes truncation leaves in the file (kernel_model/truncate.py,
docs/reclaim.md): two ftruncates never overlap, a page the file grows over again reads zeros, writer symmetry
renames the lock's holder, and the reduced searches agree with the full one on truncations racing a writer."""

from __future__ import annotations

import pytest

from controlled.explorer import explore
from controlled.machine import Machine
from controlled.symmetry import permute
from fuzz.reduction_check import AGREE, reduction_mismatch
from kernel_model.config import Config
from kernel_model.state import FREE, HOLE
from scenarios.loader import load_scenario_text
from tests.test_model_regressions import _random_runs

# Two truncators (to 0 pages, and to 1: a shrink and, after the first, a grow) and a writer storing to both pages.
TWO_TRUNCATES = """
name = "two_truncates"
description = "two ftruncates of one file and a writer"
[setup]
pages = 2
warm_tlb = ["writer"]
[[threads]]
name = "writer"
program = [{ op = "store", pages = [0, 1] }]
[[threads]]
name = "to0"
program = [{ op = "ftruncate" }]
[[threads]]
name = "to1"
program = [{ op = "ftruncate", pages = [1] }]
"""

# One thread: its store reaches the disk, the file shrinks to nothing and grows back over page 0, and a load
# faults page 0 in again.
SHRINK_GROW_READ = """
name = "shrink_grow_read"
description = "store, msync, ftruncate to 0, ftruncate to 1, load page 0"
[setup]
pages = 2
[[threads]]
name = "t"
program = [{ op = "store", pages = [0] }, { op = "msync" }, { op = "ftruncate" },
           { op = "ftruncate", pages = [1] }, { op = "load", pages = [0] }]
"""


def _load(text: str, name: str):
    return load_scenario_text(text, name=name)


@pytest.mark.parametrize("arch", ["smp", "up"])
def test_two_ftruncates_never_overlap(arch: str) -> None:
    """No run has both truncators past their i_size_write and before their inode_unlock at once, and whoever is
    there holds i_rwsem for write."""
    sc = _load(TWO_TRUNCATES, "two_truncates")
    for m in _random_runs(sc, Config(ordering="delayed", arch=arch), 200, seed=21):
        inside: set[int] = set()
        for ev in m.events:
            if ev.kind != "step":
                continue
            if ev.op == "i_size_write":
                inside.add(ev.tid)
                assert len(inside) == 1, "two ftruncates between i_size_write and inode_unlock"
            elif ev.op == "up_write" and ev.args[0] == "i_rwsem":
                inside.discard(ev.tid)
        assert m.state.i_rwsem.writer == FREE and not inside


def test_every_state_has_at_most_one_truncator_in_the_locked_region() -> None:
    """The whole state space, unreduced, with the truncators that are between their i_size_write and their
    inode_unlock carried along each path: never two, and the one there holds i_rwsem for write."""
    sc = _load(TWO_TRUNCATES, "two_truncates")
    m = Machine(sc, Config(ordering="delayed", arch="smp"), symmetric=False, record=True)
    seen: set = set()
    stack: list[tuple[tuple, frozenset[int]]] = [(m.key(), frozenset())]
    while stack:
        key, inside = stack.pop()
        if (key, inside) in seen:
            continue
        seen.add((key, inside))
        m.restore(key)
        assert len(inside) <= 1 and all(m.state.i_rwsem.writer == t for t in inside)
        for tr in m.enabled_all():
            m.restore(key)
            before = len(m.events)
            violations = m.execute(tr)
            now = set(inside)
            for ev in m.events[before:]:
                if ev.kind == "step" and ev.op == "i_size_write":
                    now.add(ev.tid)
                elif ev.kind == "step" and ev.op == "up_write" and ev.args[0] == "i_rwsem":
                    now.discard(ev.tid)
            assert not violations, violations
            stack.append((m.key(), frozenset(now)))
    assert len(seen) > 1_000


def test_a_page_the_file_grows_over_again_reads_the_hole() -> None:
    """ext4_truncate freed page 0's block when the file shrank to nothing: the load after the grow back to one
    page faults in a hole (zeros), not the store msync had written."""
    sc = _load(SHRINK_GROW_READ, "shrink_grow_read")
    (m,) = _random_runs(sc, Config(ordering="delayed", arch="smp"), 1, seed=0)
    assert m.finished()
    written = [ev.result for ev in m.events if ev.kind == "step" and ev.op == "end_page_writeback"]
    assert written and written[0] != HOLE  # msync wrote the store
    loads = [ev.args[0] for ev in m.events if ev.kind == "note" and ev.fn == "load" and ev.op == "end"]
    assert loads == [HOLE]
    assert m.state.i_size == 1 and m.state.disk == [HOLE, HOLE]


def test_a_reader_racing_the_truncations_reads_the_store_or_a_hole() -> None:
    """A reader of page 0 beside a thread that writes it back and truncates the file to 0 then 1: every search
    ends clean, and the reader's value is the store's, the file's old contents, or the hole."""
    text = """
name = "reader_vs_shrink_grow"
description = "store, msync, ftruncate to 0 and to 1, a reader of page 0"
[setup]
pages = 2
mapped = false
[[threads]]
name = "t"
program = [{ op = "store", pages = [0] }, { op = "msync" }, { op = "ftruncate" }, { op = "ftruncate", pages = [1] }]
[[threads]]
name = "reader"
program = [{ op = "load", pages = [0] }]
"""
    sc = _load(text, "reader_vs_shrink_grow")
    for arch in ("smp", "up"):
        r = explore(sc, Config(ordering="delayed", arch=arch), "dfs", budget=50_000, stop_at_first=False)
        assert r.complete and not r.found, [f.invariants for f in r.found]
    values = set()
    for m in _random_runs(sc, Config(ordering="delayed", arch="smp"), 300, seed=5):
        values.update(ev.args[0] for ev in m.events if ev.kind == "note" and ev.fn == "load" and ev.op == "end")
    assert HOLE in values and 1001 in values  # the store's value (thread 0, operation 0) and, late, the hole


EXPECT_AFTER_GROW = """
name = "expect_after_grow"
description = "a store, the file shrunk to nothing and grown back; the expectation on page 0"
[setup]
pages = 2
[[threads]]
name = "t"
program = [{ op = "store", pages = [0] }, { op = "ftruncate" }, { op = "ftruncate", pages = [1] }%s]
[[expect]]
kind = "file_holds_last_store"
thread = "t"
page = 0
"""


@pytest.mark.parametrize("after", ["", ', { op = "store", pages = [0] }'])
def test_an_expectation_forgets_a_store_truncation_discarded(after: str) -> None:
    """The store before the shrink was discarded (the page reads a hole once the file grows back): nothing to
    expect of it. A store after the grow is the file's again, and a final sync must find it."""
    sc = _load(EXPECT_AFTER_GROW % after, "expect_after_grow")
    r = explore(sc, Config(ordering="delayed", arch="smp"), "dfs", budget=20_000, stop_at_first=False)
    assert r.complete and not r.found, [f.invariants for f in r.found]


SYMMETRIC_WRITERS = """
name = "writers_and_truncate"
description = "two interchangeable writers and an ftruncate"
[setup]
pages = 2
warm_tlb = ["w0", "w1"]
[[threads]]
name = "w0"
program = [{ op = "store", pages = [0, 1] }]
[[threads]]
name = "w1"
program = [{ op = "store", pages = [0, 1] }]
[[threads]]
name = "truncator"
program = [{ op = "ftruncate", pages = [1] }]
"""


def test_symmetry_renames_the_i_rwsem_holder() -> None:
    """Writer symmetry renames i_rwsem's holder (state key place 17) as it renames mmap_lock's. (Only a
    truncator ever holds it, and truncators are never interchangeable writers: the renaming is for a key in
    which a moved thread holds it, as permute must handle every field that names a thread.)"""
    sc = _load(SYMMETRIC_WRITERS, "writers_and_truncate")
    cfg = Config(ordering="delayed", arch="smp")
    (p,) = Machine(sc, cfg).symmetry.perms
    assert p.tid[:2] == (1, 0)  # the two writers swap
    state, positions, oracle = Machine(sc, cfg, symmetric=False).canonical(Machine(sc, cfg, symmetric=False).key())
    held = (state[:17] + ((0, ()),) + state[18:], positions, oracle)
    assert permute(held, p)[0][17] == (1, ())
    assert permute(held, p)[0][8] == state[8]  # nobody holds mmap_lock: unchanged
    readers = (state[:17] + ((FREE, (0, 2)),) + state[18:], positions, oracle)
    assert permute(readers, p)[0][17] == (FREE, (1, 2))


def test_symmetry_keeps_the_verdicts_of_writers_beside_a_truncation() -> None:
    sc = _load(SYMMETRIC_WRITERS, "writers_and_truncate")
    for ordering in ("eager", "delayed"):
        cfg = Config(ordering=ordering, arch="smp")
        # Unreduced: the reduction alone already leaves one order of the writers here.
        with_sym = explore(sc, cfg, "dfs", budget=60_000, stop_at_first=False, reduce=False)
        without = explore(sc, cfg, "dfs", budget=120_000, stop_at_first=False, reduce=False, symmetric=False)
        assert with_sym.complete and without.complete
        assert with_sym.states < without.states
        assert {i for f in with_sym.found for i in f.invariants} == {i for f in without.found for i in f.invariants}


@pytest.mark.parametrize("ordering, arch", [("delayed", "smp"), ("delayed", "up"), ("eager", "smp")])
def test_reduced_and_full_searches_agree_on_two_truncates_and_a_writer(ordering: str, arch: str) -> None:
    sc = _load(TWO_TRUNCATES, "two_truncates")
    assert reduction_mismatch(sc, Config(ordering=ordering, arch=arch), 30_000) == AGREE
