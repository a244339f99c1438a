"""Each kernel path's step order, checked against the kernel brief (§1a, §1b, §2, §4, §5).

A path is run alone (one thread, nothing racing it) and its events are compared with the brief's order.
"""

from __future__ import annotations

import pytest

from controlled.replay import run_schedule
from kernel_model.config import Config
from kernel_model.program import Op, Scenario, Setup, Thread


def solo(op: Op, *, cfg: Config = Config(), setup: Setup = Setup(pages=1), extra: tuple[Thread, ...] = ()):
    scenario = Scenario("solo", "", setup, (Thread("t", (op,)),) + extra)
    return run_schedule(scenario, cfg, [], record=True)


def steps(result, *, notes: bool = False) -> list[tuple[str, str]]:
    return [(e.fn, e.op) for e in result.events if e.kind == "step" or (notes and e.kind == "note")]


def index(seq: list[tuple[str, str]], item: tuple[str, str]) -> int:
    return seq.index(item)


def test_zap_eager_removes_rmap_before_the_flush_under_the_ptl():
    r = solo(Op("madvise_dontneed", (0,)), cfg=Config(ordering="eager"))
    s = steps(r, notes=True)
    order = [("zap_pte_range", "spin_lock"), ("zap_pte_range", "ptep_get_and_clear_full"),
             ("zap_pte_range", "set_page_dirty"), ("zap_pte_range", "page_remove_rmap"),
             ("__tlb_remove_page", "queue"), ("zap_pte_range", "force_flush"),
             ("tlb_flush_mmu_tlbonly", "flush_tlb_others"), ("tlb_flush_mmu_tlbonly", "flush_tlb_local"),
             ("zap_pte_range", "spin_unlock"), ("tlb_batch_pages_flush", "put_page")]
    assert [x for x in s if x in order] == order
    assert not r.violations


def test_zap_delayed_removes_rmap_after_the_flush_and_before_unlock():
    r = solo(Op("madvise_dontneed", (0,)), cfg=Config(ordering="delayed"),
             extra=(Thread("other", ()),))  # a second CPU in mm_cpumask, so the flush sends an IPI
    s = steps(r, notes=True)
    assert ("zap_pte_range", "page_remove_rmap") not in s
    queue = next(e for e in r.events if e.op == "queue")
    assert queue.args[1] is True  # encoded with the delay flag
    i_clear = index(s, ("zap_pte_range", "ptep_get_and_clear_full"))
    i_dirty = index(s, ("zap_pte_range", "set_page_dirty"))
    i_ipi = index(s, ("tlb_flush_mmu_tlbonly", "flush_tlb_others"))
    i_wait = index(s, ("tlb_flush_mmu_tlbonly", "wait_acks"))
    i_rmap = index(s, ("tlb_flush_rmaps", "page_remove_rmap"))
    i_unlock = index(s, ("zap_pte_range", "spin_unlock"))
    i_free = index(s, ("tlb_batch_pages_flush", "put_page"))
    assert i_clear < i_dirty < i_ipi < i_wait < i_rmap < i_unlock < i_free


@pytest.mark.parametrize("arch", ["up", "s390"])
def test_up_and_s390_keep_the_old_order(arch):
    r = solo(Op("madvise_dontneed", (0,)), cfg=Config(ordering="delayed", arch=arch))
    s = steps(r)
    assert index(s, ("zap_pte_range", "page_remove_rmap")) < index(s, ("tlb_flush_mmu_tlbonly", "flush_tlb_local"))
    assert not any(e.op == "queue" and e.args[1] for e in r.events)


def test_s390_pte_clear_is_a_synchronous_flush():
    r = solo(Op("madvise_dontneed", (0,)), cfg=Config(arch="s390"))
    clear = next(e for e in r.events if e.op == "ptep_get_and_clear_full")
    assert clear.args[1] is True


def test_s390_frees_each_page_at_once_under_the_ptl():
    """s390's __tlb_remove_page_size (MMU_GATHER_NO_GATHER) is free_page_and_swap_cache and `return false`: its
    IPTE flushed as the PTE was cleared, so the zap drops the page reference under the PTL, queues nothing, and a
    gather never fills however many pages it zaps (no forced flush for a full batch)."""
    r = solo(Op("madvise_dontneed", (0, 1, 2, 3)), cfg=Config(arch="s390", max_gather_batch=1, max_gather_batch_count=1),
             setup=Setup(pages=4, dirty=False))
    s = steps(r, notes=True)
    assert not any(e.op == "queue" for e in r.events)
    assert ("tlb_batch_pages_flush", "put_page") not in s
    puts = [i for i, x in enumerate(s) if x == ("__tlb_remove_page", "put_page")]
    assert len(puts) == 4 and puts[-1] < index(s, ("zap_pte_range", "spin_unlock"))
    assert ("zap_pte_range", "force_flush") not in s  # clean pages, and a full batch cannot happen on s390
    assert not r.violations


def test_anon_and_clean_pages_are_never_delayed():
    anon = solo(Op("madvise_dontneed", (0,)), setup=Setup(pages=1, anon=True))
    clean = solo(Op("madvise_dontneed", (0,)), setup=Setup(pages=1, dirty=False))
    for r in (anon, clean):
        assert not any(e.op == "queue" and e.args[1] for e in r.events)
        assert ("zap_pte_range", "page_remove_rmap") in steps(r)
    assert not any(e.op == "set_page_dirty" for e in anon.events)  # anon pages ignore the dirty bit


def test_folio_mkclean_returns_early_without_the_ptl_when_unmapped():
    r = solo(Op("msync", (0,)), setup=Setup(pages=1, mapped=False))
    # An unmapped, clean page: writeback skips it before folio_mkclean (not dirty).
    assert ("folio_mkclean", "folio_mapped") not in steps(r)
    # Mapped: folio_mkclean walks i_mmap and takes the PTL, then cleans and write-protects with a flush.
    r = solo(Op("msync", (0,)))
    s = steps(r)
    order = [("write_cache_pages", "folio_lock"), ("folio_mkclean", "folio_mapped"),
             ("rmap_walk_file", "down_read"), ("page_vma_mapped_walk", "spin_lock"),
             ("ptep_clear_flush", "ptep_get_and_clear_full"), ("ptep_clear_flush", "flush_tlb_local"),
             ("page_mkclean_one", "set_pte_at"), ("page_vma_mapped_walk", "spin_unlock"),
             ("folio_clear_dirty_for_io", "folio_mark_dirty"), ("folio_clear_dirty_for_io", "folio_test_clear_dirty"),
             ("writepage", "writepage"), ("writepage", "folio_unlock"), ("end_page_writeback", "end_page_writeback")]
    assert [x for x in s if x in order] == order
    wp = next(e for e in r.events if e.fn == "page_mkclean_one")
    assert tuple(wp.args[1])[1:3] == (False, False)  # write-protected and clean


def test_mkclean_takes_the_ptl_even_when_the_pte_is_already_gone():
    # A page still counted as mapped while its PTE is none (a delayed rmap entry): the walk must wait on the
    # PTL rather than trust the empty PTE.
    r = solo(Op("msync", (0,)))
    assert ("page_vma_mapped_walk", "spin_lock") in steps(r)


def test_do_shared_fault_marks_dirty_under_the_folio_lock_after_mapping():
    r = solo(Op("store", (0,)), setup=Setup(pages=1, mapped=False))
    s = steps(r)
    order = [("user_store", "store_tlb"), ("user_store", "walk_fill"), ("do_user_addr_fault", "down_read"),
             ("filemap_fault", "folio_lock"), ("do_page_mkwrite", "folio_lock"),
             ("finish_fault", "spin_lock"), ("finish_fault", "pte_none"), ("finish_fault", "page_add_file_rmap"),
             ("finish_fault", "set_pte_at"), ("finish_fault", "spin_unlock"),
             ("fault_dirty_shared_page", "folio_mark_dirty"), ("fault_dirty_shared_page", "folio_unlock")]
    assert [x for x in s if x in order][:len(order)] == order
    # then the store restarts: it misses, walks the new PTE, fills its TLB and lands through it
    assert s[-3:] == [("user_store", "store_tlb"), ("user_store", "walk_fill"), ("user_store", "store_tlb")]
    pte = next(e for e in r.events if e.fn == "finish_fault" and e.op == "set_pte_at").args[1]
    assert tuple(pte)[1:3] == (True, True)  # present+writable+dirty
    assert r.events[-1].op == "end" and not r.violations


def test_store_through_a_dirty_tlb_entry_touches_no_pte():
    r = solo(Op("store", (0,)), setup=Setup(pages=1, warm_tlb=("t",)))
    assert steps(r) == [("user_store", "store_tlb")]


def test_store_through_a_writable_clean_entry_sets_the_pte_dirty_bit():
    from controlled.machine import Machine

    setup = Setup(pages=1, dirty=False, write_notify=False, warm_tlb=("t",))
    m = Machine(Scenario("solo", "", setup, (Thread("t", (Op("store", (0,)),)),)), Config(), record=True)
    m.execute(("t", 0))
    assert [(e.op, e.result) for e in m.events if e.kind == "step"] == [("store_tlb", "stored")]
    assert m.state.ptes[0].dirty and not m.state.folios[0].dirty  # the PTE remembers, PG_dirty does not


def test_write_to_a_read_only_pte_takes_do_wp_page():
    r = solo(Op("store", (0,)), setup=Setup(pages=1, dirty=False, warm_tlb=("t",)))
    s = steps(r)
    assert ("do_wp_page", "pte_same") in s and ("wp_page_reuse", "set_pte_at") in s
    assert index(s, ("do_page_mkwrite", "folio_lock")) < index(s, ("wp_page_reuse", "set_pte_at"))


def test_flush_waits_for_every_ack():
    r = solo(Op("madvise_dontneed", (0,)), extra=(Thread("a", ()), Thread("b", ())))
    sent = next(e for e in r.events if e.op == "flush_tlb_others")
    assert sent.result == 2
    acks = [e for e in r.events if e.op == "ipi_ack"]
    wait = next(i for i, e in enumerate(r.events) if e.op == "wait_acks")
    assert len(acks) == 2 and all(r.events.index(a) < wait for a in acks)


@pytest.mark.parametrize("batches, forced", [("active", 8), ("local+active", 1)])
def test_forced_flushes_for_many_dirty_pages(batches, forced):
    """c47454823bd4: with delayed entries only in the active batch, the 8-entry local bundle forces a flush
    every 8 pages; letting them sit in local plus one more batch removes that."""
    setup = Setup(pages=64)
    r = solo(Op("madvise_dontneed", tuple(range(64))), cfg=Config(delayed_batches=batches), setup=setup)
    assert sum(1 for e in r.events if e.op == "force_flush") == forced
    assert not r.violations


# --- the counter writer (Nadav Amit's PoC loop) ----------------------------------------------------------------
COUNTER = Scenario("counter", "", Setup(pages=1, warm_tlb=("w",)),
                   (Thread("w", (Op("counter", (0,)),)), Thread("z", (Op("madvise_dontneed", (0,)),))))


def test_counter_increments_while_its_translation_lives_and_stops_once_it_is_gone():
    from controlled.machine import Machine

    m = Machine(COUNTER, Config(ordering="delayed"), record=True)
    before = m.state.folios[0].data
    for _ in range(5):
        assert m.is_counter_increment(("t", 0))  # it lands, so the loop goes round again
        m.execute(("t", 0))
    assert m.state.folios[0].data == before + 5  # each turn is a locked increment: contents + 1
    r = run_schedule(COUNTER, Config(ordering="delayed"), [("t", 0)] * 5)  # completion: the zap runs first
    stores = [e for e in r.events if e.op == "store_tlb"]
    assert [e.result for e in stores] == ["stored"] * 5 + ["miss"]  # the last turn finds the entry flushed
    assert stores[-1].seq > next(e.seq for e in r.events if e.op == "ipi_flush")
    assert not r.violations and not any(e.op == "walk_fill" for e in r.events)  # it never walks or faults


def test_a_counter_spinning_beside_a_deadlock_is_a_hang_not_a_livelock():
    r = run_schedule(COUNTER, Config(ordering="delayed", mutant="double_ptl"), [])
    assert [v.invariant for v in r.violations] == ["hang"]
    assert "w keeps incrementing through its TLB entry" in r.violations[0].detail
    assert "PTL 0 held by z (itself" in r.violations[0].detail
