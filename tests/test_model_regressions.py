"""Issue 12's model bugs, each shown by a scenario of its own (tests/scenarios/, or a library scenario made for
it): the verdict the kernel gives, on every ordering and machine."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from controlled.explorer import explore
from controlled.machine import Machine
from kernel_model.config import Config
from kernel_model.program import Op, Scenario, Thread
from kernel_model.state import FREE
from scenarios.loader import load_scenario

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
KERNELS = [(o, a) for o in ("eager", "delayed") for a in ("smp", "up", "s390")]


@pytest.mark.parametrize("ordering, arch", KERNELS)
def test_two_faults_on_an_evicted_page_share_one_page_cache_folio(ordering, arch):
    """Point 1: filemap_add_folio's -EEXIST. Before, each fault cached a folio of its own for page 0 and the
    orphan, compared with the disk, was reported as lost_dirty_data on every kernel."""
    sc = load_scenario(str(SCENARIOS / "refault_race.toml"))
    r = explore(sc, Config(ordering=ordering, arch=arch))
    assert r.complete and not r.found, [f.violations for f in r.found]
    assert r.states > 1000  # both faults really raced (the search is not trivially small)


def _reachable_states(sc, cfg: Config):
    """Every state of the full (unreduced) search, as the machine restored to it."""
    m = Machine(sc, cfg)
    start = m.key()
    seen, todo = {start}, [start]
    while todo:
        key = todo.pop()
        m.restore(key)
        yield m
        for tr in m.enabled():
            m.restore(key)
            m.execute(tr)
            nxt = m.key()
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)


@pytest.mark.parametrize("ordering, arch", KERNELS)
def test_eviction_never_frees_a_page_a_fault_is_mapping(ordering, arch):
    """Point 2: the fault holds a folio reference from filemap_fault until the PTE has it. Before, eviction could
    free the folio between do_shared_fault's unlock and ->page_mkwrite, and the PTE then mapped a freed page with
    no invariant firing (fault_vs_evict was clean)."""
    sc = load_scenario("fault_vs_evict")
    cfg = Config(ordering=ordering, arch=arch)
    mapped_freed = states = 0
    for m in _reachable_states(sc, cfg):
        states += 1
        s = m.state
        mapped_freed += any(pte is not None and s.folios[pte.pfn].freed for pte in s.ptes)
    assert states > 20 and mapped_freed == 0
    assert not explore(sc, cfg).found


def test_a_fault_that_drops_its_reference_early_is_caught():
    """Since session 18 the mutant's fault no longer maps the freed page: do_page_mkwrite's recheck of
    folio->mapping answers VM_FAULT_NOPAGE. What it still does is lock a folio already freed (a use after free in
    the kernel, where the recheck reads a freed struct folio): the oracle's freed_while_mapped."""
    sc = load_scenario("fault_vs_evict")
    r = explore(sc, Config(mutant="fault_without_page_ref"))
    assert r.found and "freed_while_mapped" in r.found[0].invariants
    assert "folio_lock of pfn 0, which was already freed" in r.found[0].violations[0].detail
    # The same search without the mutant reaches no state where a fault thread holds a freed folio's lock.
    assert not any(f.locked != FREE and f.freed for m in _reachable_states(sc, Config()) for f in m.state.folios)


def _random_runs(sc, cfg: Config, runs: int, seed: int):
    """Machines run to their end along seeded random schedules, with their events recorded."""
    rng = random.Random(seed)
    for _ in range(runs):
        m = Machine(sc, cfg, record=True)
        while True:
            enabled = m.enabled()
            if m.run_ends(enabled):
                break
            m.execute(rng.choice(enabled))
        yield m


def _op_results(m: Machine, thread: str) -> list:
    tid = m.scenario.thread_index(thread)
    return [e.args[0] for e in m.events if e.tid == tid and e.kind == "note" and e.op == "end"]


@pytest.mark.parametrize("ordering, arch", KERNELS)
def test_a_counter_kept_warm_by_another_thread_ends_at_its_bound(ordering, arch):
    """Point 3: under --arch up the refiller's store refills the TLB the counter shares after the zap's flush.
    Before (no max), the explorer reported a hang on up; with max = 3 the counter stops at its bound."""
    sc = load_scenario(str(SCENARIOS / "counter_kept_warm.toml"))
    r = explore(sc, Config(ordering=ordering, arch=arch))
    assert r.complete and not r.found, [f.violations for f in r.found]
    counts = [_op_results(m, "counter")[0] for m in _random_runs(sc, Config(ordering=ordering, arch=arch), 30, 3)]
    assert max(counts) == 3 and min(counts) >= 0  # it stops at its bound, or earlier when the zap ends it


def test_without_a_bound_the_kept_warm_counter_still_reports_the_livelock():
    """What max is for: the same scenario without it runs for ever on up (reported as the hang it is)."""
    sc = load_scenario(str(SCENARIOS / "counter_kept_warm.toml"))
    unbounded = dataclasses.replace(sc, threads=(
        Thread("counter", (Op("counter", (0,)),)), *sc.threads[1:]))
    r = explore(unbounded, Config(ordering="delayed", arch="up"))
    assert r.found and r.found[0].invariants == ["hang"]


@pytest.mark.parametrize("ordering, arch", KERNELS)
def test_a_refaulting_counter_counts_on_every_pass_of_its_loop(ordering, arch):
    """Point 3: before, the second pass of a counter loop found the translation gone and did nothing. Now each
    pass faults the page back in when it must and makes its two increments, and no data is lost."""
    sc = load_scenario(str(SCENARIOS / "counter_loop.toml"))
    cfg = Config(ordering=ordering, arch=arch)
    for m in _random_runs(sc, cfg, 30, 5):
        assert _op_results(m, "counter") == [2, 2]
        page = m.state.folios[m.state.page_cache[0]]
        assert page.data == 1 + 4  # the setup's store, then the four increments: none went to another page
    r = explore(sc, cfg)
    if (ordering, arch) == ("eager", "smp"):
        # The patch's race itself: an increment through the stale entry after writeback cleaned the page.
        assert r.found and r.found[0].invariants == ["lost_dirty_data"]
    else:
        assert r.complete and not r.found, [f.violations for f in r.found]


@pytest.mark.parametrize("kernel", ["3.14", "6.18"])
def test_counts_that_coincide_across_pages_do_not_split_end_states(kernel):
    """Fuzz seed 11, scenario 182: storing every state and merging chains reach the same end states as the full
    search (before, named across pages, a coincidence of the two counters' counts made 2, 2 and 3)."""
    from kernel_model.kernels import kernel_config

    sc = load_scenario(str(SCENARIOS / "counter_on_replaced_page.toml"))
    cfg = Config.from_dict(kernel_config(kernel))
    runs = [explore(sc, cfg, "dfs", stop_at_first=False, **how)
            for how in ({}, {"merge": True}, {"reduce": False}, {"sleep_sets": False, "merge": True})]
    assert all(r.complete and not r.found for r in runs)
    assert len({r.schedules for r in runs}) == 1, [r.schedules for r in runs]


def test_store_values_are_named_page_by_page_and_dead_ones_dropped():
    from controlled.canonical import _rename_values
    from kernel_model.state import Folio

    def file_page(index: int, data: int, **kw: object) -> Folio:
        return Folio(index=index, anon=False, data=data, in_page_cache=True, **kw)

    # Two file pages whose contents happen to be equal, or not: the same names (nothing compares them).
    same = _rename_values((file_page(0, 1003), file_page(1, 1003)), (0, 0))
    other = _rename_values((file_page(0, 1003), file_page(1, 2002)), (0, 0))
    assert same == other
    # Within a page, equality with the disk block is kept: clean (data == disk) is not dirty-looking.
    assert _rename_values((file_page(0, 7),), (7,)) != _rename_values((file_page(0, 7),), (5,))
    # The IO snapshot is named with its page's values, and dropped outside writeback.
    under_io = _rename_values((file_page(0, 8, writeback=True, wb_data=7),), (7,))
    assert under_io[0][0][6] == under_io[1][0]  # the snapshot (field 6) and the disk hold the same value
    assert _rename_values((file_page(0, 8, wb_data=7),), (7,))[0][0][6] == -1
    # An anonymous or freed folio's contents are compared with nothing: dropped.
    anon = Folio(index=0, anon=True, data=4)
    assert _rename_values((anon,), (0,)) == _rename_values((anon._replace(data=9),), (0,))
    freed = file_page(0, 4, freed=True)
    assert _rename_values((freed,), (0,)) == _rename_values((freed._replace(data=5),), (0,))
    # An expectation's remembered value is named with its page's: equal to the page's contents or not.
    kept = _rename_values((file_page(0, 1003),), (0,), ((0, 1003),))
    assert kept[2][0][1] == kept[0][0][2]  # field 2: data
    assert _rename_values((file_page(0, 1003),), (0,), ((0, 1002),))[2][0][1] != kept[0][0][2]


def test_mremap_before_4_9_flushes_a_moved_dirty_pte_only_after_dropping_the_ptls():
    """Issue 17 (the scenario author): move_ptes flushed a dirty PTE under the PTL on every kernel, so --kernel
    4.8 hid Aaron Lu's race (5d1904204c99, v4.9): writeback cleans the page at its new address and flushes only
    that address while the old address's dirty TLB entry still stores into it. Before, 4.8 was clean."""
    from kernel_model.kernels import kernel_config

    sc = load_scenario("mremap_writeback")
    old = explore(sc, Config(**kernel_config("4.8")))
    assert old.found and "lost_dirty_data" in old.found[0].invariants
    for kernel in ("4.9", "4.18", "6.2"):
        r = explore(sc, Config(**kernel_config(kernel)))
        assert r.complete and not r.found, kernel


@pytest.mark.parametrize("kernel, invariants", [("3.14", set()), ("4.2", set()), ("4.3", {"stale_tlb_access"}),
                                                ("4.13", set())])
def test_reclaim_defers_its_flush_only_since_4_3(kernel, invariants):
    """Issue 17 (the scenario author): reclaim deferred its TLB flush on every kernel, so --kernel 3.14 reported
    mprotect_reclaim's stale_tlb_access; TTU_BATCH_FLUSH came with 72b252aed506 (v4.3), and before it
    try_to_unmap_one flushed at once (ptep_clear_flush): no window for 3ea277194daa to close."""
    from kernel_model.kernels import kernel_config

    sc = load_scenario("mprotect_reclaim")
    r = explore(sc, Config(**kernel_config(kernel)))
    assert {v.invariant for f in r.found for v in f.violations} == invariants
    assert r.found or r.complete


@pytest.mark.parametrize("kernel, invariants", [("3.15", set()), ("4.12", set()), ("4.19", set()), ("4.20", set()),
                                                ("6.2", set())])
def test_munmap_keeps_mmap_lock_for_write_before_4_20(kernel, invariants):
    """Issue 17 (author12): munmap downgraded mmap_lock to read before unmap_region on every kernel, so on 4.12
    a MADV_DONTNEED overlapped munmap's zap of a clean PTE, found it none, flushed nothing (no 99baac21e458 yet)
    and returned: a load through the stale entry was reported as stale_tlb_access. The downgrade came with
    dd2283f2605e (v4.20); before it __do_munmap held the write lock to the end and the two never overlap."""
    from kernel_model.kernels import kernel_config

    sc = load_scenario(str(SCENARIOS / "unseen12_munmap_vs_dontneed_clean.toml"))
    for arch in ("smp", "up"):
        r = explore(sc, Config(**{**kernel_config(kernel), "arch": arch}), "dfs", budget=20_000)
        assert {v.invariant for f in r.found for v in f.violations} == invariants, arch
        assert r.complete, arch
    # The overlap exists from 4.20 on: the search has more to try there.
    assert kernel_config(kernel)["munmap_downgrade"] == (kernel in ("4.20", "6.2"))


def test_data_a_store_puts_past_eof_during_ftruncate_is_not_lost():
    """Issue 17 (author12): the online lost_dirty_data check judged a folio ftruncate had already put past i_size
    (truncate_setsize first) but not yet deleted: on v6.1 a store through the stale entry after msync's snapshot
    was reported lost, though ftruncate discards that data by definition. The full search reported it, the
    reduced one (whole-state checks at quiescence only, when the folio is gone) did not: a reduction mismatch."""
    from kernel_model.kernels import kernel_config

    sc = load_scenario(str(SCENARIOS / "unseen12_truncate_stale_store.toml"))
    cfg = Config(**kernel_config("6.1"))
    for reduce in (True, False):
        r = explore(sc, cfg, "dfs", budget=60_000, reduce=reduce)
        assert r.complete and not r.found, (reduce, [f.invariants for f in r.found])


def test_before_3_15_a_dirty_pte_forces_no_flush_and_the_zap_flushes_at_its_end():
    """Issue 17 (author12): the model's 3.14 flushed each PTE table's dirty pages right after its pte_unmap_unlock.
    Before 1cf35d47712d a dirty PTE forced nothing (only a full batch did): the flush came at tlb_end_vma, after
    every table was zapped, so the window of a table's dirty pages stays open while the zap walks the others."""
    from controlled.replay import run_schedule
    from kernel_model.kernels import kernel_config
    from scenarios.loader import load_scenario_text

    text = '[setup]\npages = 2\nptes_per_table = 1\n[[threads]]\nname = "z"\nprogram = [{ op = "munmap" }]\n'
    sc = load_scenario_text(text, name="munmap_two_tables")

    def order(kernel: str) -> list[tuple]:
        events = run_schedule(sc, Config(**kernel_config(kernel)), []).events
        return [(e.op, e.args) for e in events if e.op in ("spin_unlock", "flush_tlb_local")]

    assert order("3.14") == [("spin_unlock", (0, 0)), ("spin_unlock", (1, 0)), ("flush_tlb_local", (0, 2))]
    assert order("3.15") == [("flush_tlb_local", (0, 1)), ("spin_unlock", (0, 0)),
                             ("flush_tlb_local", (1, 2)), ("spin_unlock", (1, 0))]


def test_madvise_dontneed_of_an_unmapped_range_fails_with_enomem_and_gathers_nothing():
    """Issue 17 (author13): in a scenario without remapping ops the model took every address to keep its VMA for
    the whole run, so a MADV_DONTNEED after munmap zapped the detached range: it counted a gather in
    mm->tlb_flush_pending, took the PTL, found pte_none and so answered for munmap's pending shootdown. The
    kernel's madvise_walk_vmas finds no VMA and returns -ENOMEM at once; with a hole it zaps the VMAs it finds
    and returns -ENOMEM at the end."""
    from controlled.replay import run_schedule
    from kernel_model.kernels import kernel_config
    from kernel_model.memory import ENOMEM
    from scenarios.loader import load_scenario_text

    text = ('[setup]\npages = 3\nmapped = true\n[[threads]]\nname = "u"\nprogram = [{ op = "munmap", pages = [1] },'
            ' { op = "madvise_dontneed", pages = [1] }, { op = "madvise_dontneed", pages = [0, 1, 2] }]\n')
    sc = load_scenario_text(text, name="dontneed_after_munmap")
    events = run_schedule(sc, Config(**kernel_config("6.2")), []).events
    ends = [e for e in events if e.kind == "note" and e.op == "end"]
    assert [e.fn for e in ends] == ["munmap", "madvise_dontneed", "madvise_dontneed"]
    assert [e.args[0] for e in ends[1:]] == [ENOMEM, ENOMEM]
    first_end = events.index(ends[0])
    second_end = events.index(ends[1])
    # The madvise of the hole alone: no gather, no PTL, no PTE cleared.
    assert not [e for e in events[first_end:second_end]
                if e.op in ("inc_tlb_flush_pending", "spin_lock", "ptep_get_and_clear_full")]
    # Across the hole: pages 0 and 2 zapped, page 1 skipped.
    cleared = [e.args[0] for e in events[second_end:] if e.op == "ptep_get_and_clear_full"]
    assert cleared == [0, 2]


def test_try_to_unmap_one_skips_a_cleared_pte_without_waiting_for_the_ptl():
    """Session 16 (author16): try_to_unmap_one took the PTL before looking at the PTE, so kswapd waited for a
    zapper that had cleared it (v6.2: the delayed rmap keeps the folio mapped until the flush). try_to_unmap's
    page_vma_mapped_walk runs without PVMW_SYNC: map_pte returns false for a PTE that is not present before
    spin_lock. kswapd then finds the folio still mapped and activates it (folio_unlock), the zapper still holding
    the PTL."""
    from kernel_model.kernels import kernel_config
    from kernel_model.program import Setup

    sc = Scenario("zap_vs_kswapd", "", Setup(pages=1),
                  (Thread("zapper", (Op("madvise_dontneed", (0,)),)), Thread("kswapd", (Op("reclaim", (0,)),))))
    m = Machine(sc, Config(**kernel_config("6.2")), record=True)
    while not any(e.op == "ptep_get_and_clear_full" for e in m.events):
        m.execute(("t", 0))
    assert m.state.ptl[0] == 0  # the zapper holds the PTL, the PTE is none, the rmap removal delayed
    while m.can_execute(("t", 1)):
        m.execute(("t", 1))
    kswapd = [(e.fn, e.op) for e in m.events if e.tid == 1 and e.kind == "step"]
    assert ("page_vma_mapped_walk", "spin_lock") not in kswapd
    assert kswapd[-1] == ("shrink_folio_list", "put_page")  # shrink_folio_list ran to its end
    assert ("shrink_folio_list", "folio_unlock") in kswapd  # activate_locked: the folio is still mapped


def test_write_cache_pages_skips_a_clean_folio_under_writeback_without_waiting():
    """Session 16 (author16): write_cache_pages waited for writeback before testing PG_dirty. The kernel tests
    PG_dirty first ("someone wrote it for us": a clean folio is skipped, under writeback or not), and waits only
    for a dirty one (WB_SYNC_ALL), before folio_clear_dirty_for_io."""
    from kernel_model.program import Setup

    sc = Scenario("two_syncs", "", Setup(pages=1),
                  (Thread("first", (Op("msync", (0,)),)), Thread("second", (Op("msync", (0,)),))))
    m = Machine(sc, Config(), record=True)
    while not any(e.op == "writepage" for e in m.events):
        m.execute(("t", 0))
    m.execute(("t", 0))  # writepage's folio_unlock: PG_writeback still set, the IO not yet ended
    assert m.state.folios[0].writeback and not m.state.folios[0].dirty
    while m.can_execute(("t", 1)):
        m.execute(("t", 1))
    second = [e.op for e in m.events if e.tid == 1 and e.kind == "step"]
    assert "folio_wait_writeback" not in second and "folio_test_writeback" not in second
    assert second[-2:] == ["folio_test_dirty", "folio_unlock"]
    assert not any(e.op == "end_page_writeback" for e in m.events)  # it never waited for the first's IO


def _run_to_end(m: Machine, tid: int) -> None:
    """Run thread ``tid`` to its end, letting flush IPIs it waits on be taken (the other threads stay put)."""
    while m.pos[tid].step is not None:
        if m.can_execute(("t", tid)):
            m.execute(("t", tid))
        else:
            m.execute(next(tr for tr in m.enabled_all() if tr[0] == "i"))


@pytest.mark.parametrize("arch", ["smp", "up", "s390"])
def test_a_write_protect_fault_keeps_its_folio_while_kswapd_unmaps_it(arch):
    """Session 17 (author17): wp_page_shared takes a folio reference under the PTL (get_page / folio_get) and
    drops it after fault_dirty_shared_page. The model's do_wp_page took none, so kswapd, unmapping the read-only
    clean PTE while the fault was between its PTL sections, found only the page cache's and its own reference:
    __remove_mapping freed the folio, and the fault then locked and dirtied a freed folio. With the reference,
    page_ref_freeze(2) fails and the folio stays cached (shrink_folio_list keeps it)."""
    from kernel_model.program import Setup

    sc = Scenario("wp_vs_kswapd", "", Setup(pages=1, dirty=False, warm_tlb=("writer",)),
                  (Thread("writer", (Op("store", (0,)),)), Thread("kswapd", (Op("reclaim", (0,)),))))
    m = Machine(sc, Config(arch=arch), record=True)
    while not any(e.fn == "do_wp_page" and e.op == "spin_unlock" for e in m.events):
        m.execute(("t", 0))
    _run_to_end(m, 1)
    folio = m.state.folios[0]
    assert not folio.freed and folio.in_page_cache and m.state.page_cache[0] == 0
    assert not any(e.op == "remove_mapping" and e.result for e in m.events)
    _run_to_end(m, 0)
    assert not any(e.tid == 0 and e.op in ("folio_lock", "folio_mark_dirty") and m.state.folios[e.args[0]].freed
                   for e in m.events)
    folio = m.state.folios[0]
    assert folio.refcount == 1 + folio.mapcount  # the page cache's and the PTE's: the fault dropped its own



def _truncate_vs_write_fault() -> Scenario:
    from kernel_model.program import Setup

    return Scenario("truncate_vs_write_fault", "", Setup(pages=1, mapped=False),
                    (Thread("writer", (Op("store", (0,)),)), Thread("truncator", (Op("ftruncate", (0,)),))))


def test_filemap_page_mkwrite_rechecks_the_mapping_of_a_folio_truncated_meanwhile():
    """Session 18 (author18): filemap_page_mkwrite locks the folio and, finding folio->mapping changed (ftruncate
    deleted it from the page cache while do_shared_fault had it unlocked for ->page_mkwrite), unlocks and returns
    VM_FAULT_NOPAGE: do_shared_fault drops its reference and the store retries (a none PTE past EOF: SIGBUS). The
    model's ->page_mkwrite did not look: it marked the orphan dirty and finish_fault mapped it after truncation
    had finished, a PTE to a page no longer in the file (no invariant fired: a store past EOF is discarded)."""
    m = Machine(_truncate_vs_write_fault(), Config(), record=True)
    while not any(e.fn == "do_shared_fault" and e.op == "folio_unlock" for e in m.events):
        m.execute(("t", 0))
    _run_to_end(m, 1)
    assert not m.state.folios[0].in_page_cache and m.state.i_size == 0
    _run_to_end(m, 0)
    writer = [(e.fn, e.op, e.result) for e in m.events if e.tid == 0 and e.kind == "step"]
    assert ("do_page_mkwrite", "folio_test_mapping", False) in writer
    assert not any(op in ("folio_mark_dirty", "set_pte_at", "page_add_file_rmap") for _, op, _ in writer)
    assert any(e.op == "sigbus" for e in m.events if e.tid == 0)  # the retried store: past EOF
    assert m.state.ptes[0] is None and m.state.folios[0].freed  # the fault's reference was the last


@pytest.mark.parametrize("ordering, arch", KERNELS)
def test_no_pte_maps_a_truncated_folio_once_ftruncate_returned(ordering, arch):
    """The same race over every interleaving: once ftruncate returned, no PTE maps a folio outside the page
    cache (before the recheck, the fault's PTE did in some)."""
    sc, cfg = _truncate_vs_write_fault(), Config(ordering=ordering, arch=arch)
    orphans = states = 0
    for m in _reachable_states(sc, cfg):
        states += 1
        done = m.pos[1].step is None
        orphans += done and any(p is not None and not m.state.folios[p.pfn].in_page_cache for p in m.state.ptes)
    assert states > 50 and orphans == 0


@pytest.mark.parametrize("kernel", ["4.3", "4.12"])
def test_mremap_before_4_19_flushes_the_old_range_even_when_every_pte_was_none(kernel):
    """Session 22 (scen22): move_ptes told move_page_tables to flush the old range only when it had moved a PTE,
    so a range kswapd had just cleared (flush deferred, 4.3-4.12) was left to the deferred flush, mremap returned,
    and a store through the old address's entry was reported as stale_tlb_access (unseen12_reclaim_vs_mremap and
    unseen12_mremap_vs_reclaim_free on 4.3 and 4.12). The kernel's move_ptes ends ``if (force_flush)
    flush_tlb_range(...); else *need_flush = true;`` (4.9-4.18; before 4.9 move_page_tables set need_flush after
    every move_ptes call) and move_page_tables then flushes the old range whatever was moved."""
    from kernel_model.kernels import kernel_config

    sc = load_scenario(str(SCENARIOS / "unseen12_reclaim_vs_mremap.toml"))
    r = explore(sc, Config(**kernel_config(kernel)))
    assert r.complete and not r.found, [f.violations for f in r.found]


def _move_page_tables_flushes(kernel: str) -> list[str]:
    """The fns of the TLB flushes one thread's MADV_DONTNEED of page 0 and then mremap of page 0 to address 1 make
    (the mremap finds page 0's PTE none)."""
    from controlled.replay import run_schedule
    from kernel_model.kernels import kernel_config
    from kernel_model.program import Setup

    ops = (Op("madvise_dontneed", (0,)), Op("mremap", (0,), to=1))
    sc = Scenario(name="dontneed_then_mremap", description="", setup=Setup(pages=2, mapped=True, dirty=False),
                  threads=(Thread("t", ops),))
    run = run_schedule(sc, Config(**kernel_config(kernel)), [])
    assert not run.violations
    return [e.fn for e in run.events if e.kind == "step" and e.op in ("flush_tlb_local", "flush_tlb_others")
            and e.fn == "move_page_tables"]


def test_move_page_tables_flushes_an_all_none_old_range_only_before_4_19():
    """eb66ae030829 (4.19) dropped need_flush: the flush under the PTLs covers the present PTEs moved, and a range
    of none PTEs is not flushed at all (flush_tlb_batched_pending, 4.13, covers reclaim's deferred flush)."""
    assert _move_page_tables_flushes("4.8") and _move_page_tables_flushes("4.18")
    assert not _move_page_tables_flushes("4.19") and not _move_page_tables_flushes("6.2")
