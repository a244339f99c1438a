"""The mmap op (issue 12, "Ops"): an address maps a file offset, anonymous memory, or nothing, so an address and
a file index are no longer the same number. mmap maps a file range or anonymous memory at free addresses;
mmap_fixed remaps over an existing mapping (to the same range, another offset, or anonymous memory); munmap then
mmap is expressible. Scenario syntax, the paths' effect on state, and the verdicts of two scenarios of our own on
every kernel."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from controlled.explorer import explore
from controlled.machine import Machine
from kernel_model.config import Config
from kernel_model.constants import VMA_ANON, VMA_NONE
from scenarios.loader import ScenarioError, load_scenario_text
from tests.kernel_orderings import kernel_orderings

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
# Off SMP the eager and the delayed kernel are one (tests/kernel_orderings.py): searched once.
KERNELS = [(o, a) for o in ("eager", "delayed") for a in ("smp", "up", "s390") if o in kernel_orderings(a)]


def _scenario(program: str, pages: int = 2, anon: bool = False,
              writer: str = '[{ op = "load", pages = [0] }]') -> str:
    return (f'name = "t"\ndescription = "t"\n[setup]\npages = {pages}\nanon = {str(anon).lower()}\n'
            f'[[threads]]\nname = "a"\nprogram = {program}\n[[threads]]\nname = "b"\nprogram = {writer}\n')


def _load(text: str):
    return load_scenario_text(text, name="t")


def test_the_loader_reads_what_a_range_maps() -> None:
    sc = _load(_scenario('[{ op = "mmap", pages = [1], offset = 0 }, { op = "mmap", pages = [0], anon = true }, '
                         '{ op = "mmap_fixed", pages = [0, 1], offset = 0 }, { op = "mmap_fixed", pages = [0] }]'))
    ops = sc.threads[0].ops
    assert [op.target for op in ops] == [0, VMA_ANON, 0, None]
    assert [op.kind for op in ops] == ["mmap", "mmap", "mmap_fixed", "mmap_fixed"]


@pytest.mark.parametrize("program, key, words", [
    ('[{ op = "mmap", pages = [0] }]', "threads[0].program[0]", "offset = N (a file range) or anon = true"),
    ('[{ op = "mmap", pages = [0], offset = 0, anon = true }]', "threads[0].program[0].offset", "not both"),
    ('[{ op = "mmap", pages = [0, 1], offset = 1 }]', "threads[0].program[0].offset", "past the end of the file"),
    ('[{ op = "mmap", pages = [0], offset = -1 }]', "threads[0].program[0].offset", ">= 0"),
    ('[{ op = "mmap", pages = [1, 0], offset = 0 }]', "threads[0].program[0].pages", "contiguous ascending"),
    ('[{ op = "munmap", pages = [0], offset = 0 }]', "threads[0].program[0].offset", "only mmap and mmap_fixed"),
    ('[{ op = "mmap_fixed", pages = [0], anon = 1 }]', "threads[0].program[0].anon", "expected true or false"),
])
def test_bad_mmap_syntax_names_the_key_and_the_expectation(program: str, key: str, words: str) -> None:
    with pytest.raises(ScenarioError) as info:
        _load(_scenario(program))
    assert info.value.key == key and words in str(info.value), (info.value.key, str(info.value))


def test_a_file_offset_needs_a_file() -> None:
    with pytest.raises(ScenarioError, match="needs a backing file") as info:
        _load(_scenario('[{ op = "mmap_fixed", pages = [0], offset = 1 }]', anon=True))
    assert info.value.key == "threads[0].program[0].offset"
    _load(_scenario('[{ op = "mmap_fixed", pages = [0], anon = true }]', anon=True))  # anonymous is fine


def _run(text: str, cfg: Config = Config(ordering="delayed"), seed: int = 0) -> Machine:
    """One random run of the scenario to its end (any schedule: the asserted effects hold on all)."""
    m = Machine(_load(text), cfg, record=True)
    rng = random.Random(seed)
    while not m.run_ends(enabled := m.enabled()):
        m.execute(rng.choice(enabled))
    return m


@pytest.mark.parametrize("seed", range(5))
def test_munmap_then_mmap_of_another_offset_maps_it_at_the_address(seed: int) -> None:
    m = _run(_scenario('[{ op = "munmap", pages = [0] }, { op = "mmap", pages = [0], offset = 1 }, '
                       '{ op = "store", pages = [0] }]'), seed=seed)
    s = m.state
    assert s.vma[0] == 1 and s.i_mmap[1] == (0, 1) and s.i_mmap[0] == ()  # page 1 is mapped at 0 and at 1
    pte = s.ptes[0]
    assert pte is not None and s.folios[pte.pfn].index == 1 and not s.folios[pte.pfn].anon
    assert s.folios[pte.pfn].data == 1003  # thread a's third operation stored there


def test_mmap_over_a_mapped_address_fails_and_changes_nothing() -> None:
    m = _run(_scenario('[{ op = "mmap", pages = [0], offset = 1 }]'))
    assert m.state.vma == [0, 1] and m.state.i_mmap == [(0,), (1,)]
    assert any(e.op == "eexist" for e in m.events)


@pytest.mark.parametrize("seed", range(5))
def test_a_remap_to_anonymous_memory_gets_a_new_frame(seed: int) -> None:
    m = _run(_scenario('[{ op = "mmap_fixed", pages = [0], anon = true }, { op = "store", pages = [0] }]', pages=1),
             seed=seed)
    s = m.state
    assert s.vma == [VMA_ANON] and s.i_mmap == [()]
    pte = s.ptes[0]
    assert pte is not None and s.folios[pte.pfn].anon and s.folios[pte.pfn].data == 1002
    file_page = s.page_cache[0]
    assert file_page is not None and s.folios[file_page].data != 1002  # the store went to the new frame


def test_munmap_leaves_no_vma_and_a_store_segfaults() -> None:
    m = _run(_scenario('[{ op = "munmap", pages = [0] }, { op = "store", pages = [0] }]'))
    assert m.state.vma[0] == VMA_NONE and m.state.ptes[0] is None
    assert any(e.op == "sigsegv" for e in m.events)


# The verdicts of our two scenarios (tests/scenarios/), explored exhaustively: the old order on SMP loses the
# data its zap leaves in a stale TLB entry (the patch's race, through munmap or a MAP_FIXED remap to anonymous
# memory); the patched order, UP and s390 do not.
@pytest.mark.slow
@pytest.mark.parametrize("name", ["munmap_then_mmap", "remap_anon_writeback"])
@pytest.mark.parametrize("ordering, arch", KERNELS)
def test_verdicts_on_every_kernel(name: str, ordering: str, arch: str) -> None:
    sc = load_scenario_text((SCENARIOS / f"{name}.toml").read_text(), name=name)
    r = explore(sc, Config(ordering=ordering, arch=arch))
    if (ordering, arch) == ("eager", "smp"):
        assert r.found and "lost_dirty_data" in r.found[0].invariants
    else:
        assert r.complete and not r.found, [f.violations for f in r.found]


@pytest.mark.slow
@pytest.mark.parametrize("ordering, arch", [("eager", "smp"), ("delayed", "smp"), ("delayed", "s390")])
def test_the_reduction_keeps_the_verdict_with_remaps(ordering: str, arch: str) -> None:
    """With remaps the footprints are coarser (any folio, any address); the reduced search must still reach the
    verdict the full one does."""
    sc = load_scenario_text((SCENARIOS / "remap_anon_writeback.toml").read_text(), name="remap_anon_writeback")
    cfg = Config(ordering=ordering, arch=arch)
    full = explore(sc, cfg, reduce=False, symmetric=False)
    reduced = explore(sc, cfg)
    assert full.complete or full.found
    assert bool(full.found) == bool(reduced.found)
    assert reduced.complete or reduced.found
    if not full.found:
        assert reduced.states < full.states  # the reduction did cut something
