"""mprotect in mm->tlb_flush_pending before 6.0 (session 19, author19).

From 4.13 to 5.19 change_protection_range does inc_tlb_flush_pending before its walk and dec_tlb_flush_pending
after flush_tlb_range (16af97dc5a89, v4.13; set/clear_tlb_flush_pending before it), and from 6.0 the mmu_gather
of do_mprotect_pkey does (4a18419f71cd). The counter's modelled reader is a zap's tlb_finish_mmu
(mm_tlb_flush_nested, 99baac21e458, v4.13): ftruncate's unmap_mapping_range, which takes no mmap_lock, sees
mprotect in flight and flushes its whole range. The model counted mprotect only from 6.0 before this session, so
that truncator never saw nested there: this file pins the kernel's count and the state it makes reachable.
"""

from __future__ import annotations

from typing import Callable

import pytest

from controlled.machine import Machine
from kernel_model.config import Config
from kernel_model.kernels import kernel_config
from kernel_model.program import Op, Scenario, Setup, Thread
from tests.test_unseen_scenarios import _load


def _protector_steps(kernel: str) -> list[tuple[str, str]]:
    """mprotect(PROT_READ) of one warm, writable page, alone (an idle thread keeps a second CPU in the mm)."""
    sc = Scenario("solo", "", Setup(pages=1, warm_tlb=("t",)), (Thread("t", (Op("mprotect", (0,)),)),
                                                                   Thread("other", ())))
    m = Machine(sc, Config(**kernel_config(kernel)), record=True)
    while not m.run_ends(enabled := m.enabled_all()):
        assert not m.execute(min(enabled))
    return [(e.fn, e.op) for e in m.events if e.kind == "step"]


@pytest.mark.parametrize("kernel, counter", [("4.12", None), ("4.13", "change_protection_range"),
                                             ("5.19", "change_protection_range"), ("6.0", "tlb_gather_mmu")])
def test_mprotect_is_counted_once_around_its_walk_and_flush(kernel: str, counter: str | None) -> None:
    """4.12: no reader of the counter is modelled (NUMA migration and KSM read it), so mprotect is not counted.
    4.13-5.19: change_protection_range counts itself before the first PTE and leaves after its flush_tlb_range.
    6.0: the gather counts it, once (change_protection_range no longer does)."""
    s = _protector_steps(kernel)
    incs = [i for i, x in enumerate(s) if x[1] == "inc_tlb_flush_pending"]
    decs = [i for i, x in enumerate(s) if x[1] == "dec_tlb_flush_pending"]
    if counter is None:
        assert not incs and not decs
        return
    assert [s[i][0] for i in incs] == [counter] and len(decs) == 1
    first_pte = s.index(("change_pte_range", "ptep_modify_prot"))
    last_ack = max(i for i, x in enumerate(s) if x[1] == "wait_acks")
    assert incs[0] < first_pte and last_ack < decs[0] < s.index(("do_mprotect_pkey", "up_write"))


def _run_thread(m: Machine, tid: int, stop: Callable[[Machine], bool]) -> None:
    """Run thread ``tid`` (and the flush IPIs it waits for) until ``stop`` or its end."""
    while m.pos[tid].step is not None and not stop(m):
        enabled = m.enabled_all()
        mine = [t for t in enabled if t[0] == "t" and t[1] == tid] or [t for t in enabled if t[0] == "i"]
        assert mine, f"thread {tid} cannot run and no IPI is pending"
        m.execute(mine[0])


@pytest.mark.parametrize("kernel, arch", [("4.19", "smp"), ("5.19", "smp"), ("5.19", "up")])
def test_ftruncate_zap_sees_a_pre_6_0_mprotect_in_flight_as_nested(kernel: str, arch: str) -> None:
    """unseen18_truncate_vs_mprotect_warm: the protector enters change_protection_range and stops before its
    first PTE lock; the truncator's unmap_mapping_range then runs whole. Its tlb_finish_mmu reads
    mm_tlb_flush_nested true (mprotect's count and its own) and flushes its range. Before this session the model
    counted no pre-6.0 mprotect, and the truncator read false in every run."""
    sc = _load("unseen18_truncate_vs_mprotect_warm")
    names = [t.name for t in sc.threads]
    protector, truncator = names.index("protector"), names.index("truncator")
    m = Machine(sc, Config(**{**sc.config, **kernel_config(kernel), "arch": arch}), record=True)
    assert not m.cfg.mprotect_gathers
    _run_thread(m, protector, lambda mm: mm.pos[protector].step.fn == "change_pte_range")
    _run_thread(m, truncator, lambda mm: False)
    while not m.run_ends(enabled := m.enabled_all()):
        assert not m.execute(min(enabled))
    nested = [e.result for e in m.events if e.tid == truncator and e.op == "mm_tlb_flush_nested"]
    assert nested and nested[0] is True, nested
    assert any(e.tid == truncator and e.op == "nested_flush" for e in m.events)
