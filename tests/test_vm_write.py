"""VM_WRITE: mprotect(PROT_READ) takes write permission from the VMA, not only from its PTEs.

The kernel's mprotect_fixup clears VM_WRITE before change_protection write-protects the PTEs, so a later write
fault fails do_user_addr_fault's access_error and the store gets SIGSEGV; it never makes the page writable again.
Before VM_WRITE was modelled, such a store faulted the page writable again (do_wp_page), dirtied it and could be
lost or judged as if the program had called mprotect(PROT_READ|PROT_WRITE): a scenario written from the kernel's
description ("mprotect, then store") got a verdict the kernel cannot give. copy_vma keeps the flags, so mremap of
a write-protected range stays write-protected."""

from __future__ import annotations

import pytest

from controlled.explorer import explore
from controlled.machine import Machine
from kernel_model.config import Config
from kernel_model.program import Op, Scenario, Setup, Thread
from kernel_model.state import State


def _run_in_order(scenario: Scenario, cfg: Config) -> Machine:
    """Each thread to its end, in thread order (IPIs delivered as soon as they are sent)."""
    m = Machine(scenario, cfg, record=True)
    for tid in range(len(scenario.threads)):
        while True:
            enabled = m.enabled_all()
            ipis = [tr for tr in enabled if tr[0] == "i"]
            mine = [tr for tr in enabled if tr[0] == "t" and tr[1] == tid]
            if not ipis and not mine:
                break
            assert not m.execute((ipis or mine)[0])
    assert m.finished()
    return m


def _notes(m: Machine, op: str) -> list[tuple]:
    return [(e.fn, e.args) for e in m.events if e.kind == "note" and e.op == op]


def _ends(m: Machine, kind: str) -> list:
    return [e.args[0] for e in m.events if e.kind == "note" and e.fn == kind and e.op == "end"]


def _writable(s: State, va: int) -> bool:
    pte = s.ptes[va]
    return (pte is not None and pte.write) or any(t.get(va) is not None and t[va].writable for t in s.tlbs)


@pytest.mark.parametrize("mapped", [True, False])
def test_a_store_after_mprotect_read_gets_sigsegv_and_changes_nothing(mapped):
    sc = Scenario("mprotect_then_store", "", Setup(pages=1, mapped=mapped),
                  (Thread("a", (Op("mprotect", (0,)), Op("store", (0,)))),))
    before = Machine(sc, Config()).state.folios
    m = _run_in_order(sc, Config())
    assert _notes(m, "sigsegv") == [("do_user_addr_fault", (0,))]
    assert _ends(m, "store") == [False]
    assert not _writable(m.state, 0)
    assert m.state.folios == before  # nothing stored, nothing dirtied, no folio faulted in
    assert m.state.vm_write == [False]


def test_a_load_after_mprotect_read_still_reads():
    sc = Scenario("mprotect_then_load", "", Setup(pages=1, mapped=False),
                  (Thread("a", (Op("mprotect", (0,)), Op("load", (0,)))),))
    m = _run_in_order(sc, Config())
    assert not _notes(m, "sigsegv")
    assert _ends(m, "load") == [0]


def test_mremap_carries_the_write_protection_to_the_new_range():
    sc = Scenario("mprotect_mremap_store", "", Setup(pages=2, mapped=True),
                  (Thread("a", (Op("mprotect", (0,)), Op("mremap", (0,), to=1), Op("store", (1,)))),))
    m = _run_in_order(sc, Config())
    assert _notes(m, "sigsegv") == [("do_user_addr_fault", (1,))]
    assert m.state.vm_write == [True, False]  # the old range has no VMA (canonical True), the new one no VM_WRITE


def test_mmap_fixed_over_a_protected_range_is_writable_again():
    sc = Scenario("mprotect_remap_store", "", Setup(pages=1, mapped=True),
                  (Thread("a", (Op("mprotect", (0,)), Op("mmap_fixed", (0,)), Op("store", (0,)))),))
    m = _run_in_order(sc, Config())
    assert not _notes(m, "sigsegv")
    assert _ends(m, "store") == [True]


def test_without_mprotect_a_write_fault_does_not_look_at_vm_write():
    """Scenarios without mprotect keep their state spaces: no access_error step anywhere."""
    sc = Scenario("store_only", "", Setup(pages=1, mapped=False), (Thread("a", (Op("store", (0,)),)),))
    m = _run_in_order(sc, Config())
    assert not [e for e in m.events if e.op in ("access_error", "vm_flags_reset", "vm_flags_init")]


def test_stores_refused_after_mprotect_cannot_be_lost_even_in_the_old_order():
    """The old order (eager) loses a store only through a translation that outlives the rmap (§6). Here every store
    follows the storer's own mprotect(PROT_READ), whose flush removed its translation: the kernel refuses each one
    (SIGSEGV), so nothing is stored and nothing can be lost, whatever the zap and writeback do. Before VM_WRITE
    was modelled, the first store faulted the page writable again and the second was lost through the zap's stale
    entry (lost_dirty_data in this very search)."""
    sc = Scenario("mprotect_stores_vs_zap", "", Setup(pages=1, mapped=True, warm_tlb=("a",)),
                  (Thread("a", (Op("mprotect", (0,)), Op("store", (0,), 2))),
                   Thread("zapper", (Op("madvise_dontneed", (0,)),)), Thread("wb", (Op("msync", (0,)),))))
    result = explore(sc, Config(ordering="eager"), "dfs", budget=200_000, stop_at_first=False)
    assert result.complete and result.states > 100
    assert not result.found
