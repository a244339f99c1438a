"""The reduction's future footprints (controlled.op_footprints) cover the steps of two paths session 18 found
under-declared: a fault's put_page that frees a folio ftruncate deleted meanwhile (its freed_while_mapped check
reads every CPU's TLB entry, ops._fp_put_page), and mprotect's mmu_gather from v6.0 (4a18419f71cd:
tlb_gather_mmu / tlb_finish_mmu on mm->tlb_flush_pending). A step outside its thread's future lets the reduction
drop an order that matters; tests/test_explore.py checks the same on random runs of library scenarios."""

from __future__ import annotations

import random
from typing import Callable

import pytest

from controlled.machine import Machine
from kernel_model.config import Config
from kernel_model.kernels import kernel_config
from scenarios.loader import load_scenario_text
from tests.test_unseen_scenarios import _load

# A store faults on an unmapped page of a shared file mapping while ftruncate cuts the file to 0.
STORE_VS_TRUNCATE = """
name = "store_vs_truncate"
description = "a write fault on an unmapped page vs ftruncate to 0"
[setup]
pages = 1
mapped = false
[[threads]]
name = "writer"
program = [{ op = "store", pages = [0] }]
[[threads]]
name = "truncator"
program = [{ op = "ftruncate" }]
"""


def _outside_future(m: Machine, tid: int) -> list:
    """The objects the thread's next step touches that its future footprint does not declare (in that mode)."""
    p = m.pos[tid]
    fp = m.footprints.step_footprint(tid, p.step, [f.index for f in m.state.folios], m.state) or {}
    future = m.footprints.future(tid, p.op_index)
    # the UP preemption token is written by lock steps and only read in futures, on purpose (controlled.reduction)
    return [(p.step.fn, p.step.op, obj, mode, future.get(obj)) for obj, mode in fp.items()
            if obj != ("preempt",) and future.get(obj) not in (mode, "w")]


def _run(m: Machine, pick: Callable[[list], "tuple | None"], bad: list, freeing_puts: list) -> None:
    """Run the transitions ``pick`` chooses (None: stop), collecting steps outside their futures."""
    while True:
        enabled = m.enabled_all()
        if m.run_ends(enabled):
            return
        tr = pick(enabled)
        if tr is None:
            return
        if tr[0] == "t":
            bad += _outside_future(m, tr[1])
            step = m.pos[tr[1]].step
            if step.op == "put_page" and m.state.folios[step.args[0]].refcount == 1:
                freeing_puts.append((tr[1], step.fn))
        if m.execute(tr):
            return


@pytest.mark.parametrize("arch", ["smp", "up"])
def test_a_faults_put_page_freeing_a_truncated_folio_stays_inside_its_future(arch: str) -> None:
    """The writer's do_shared_fault unlocks the folio for ->page_mkwrite; ftruncate runs whole in that window
    (truncate_inode_pages deletes the folio, the fault's reference is the last); filemap_page_mkwrite's recheck
    answers VM_FAULT_NOPAGE and the fault's put_page frees the folio, reading every CPU's TLB entry for it. Before
    op_footprints' _freeing_put the writer's future named only its own CPU's (SMP: CPU 1's entry was outside)."""
    sc = load_scenario_text(STORE_VS_TRUNCATE, name="store_vs_truncate")
    m = Machine(sc, Config(arch=arch), reduce=True)
    bad: list = []
    freeing_puts: list = []

    def writer_to_the_relock(enabled: list) -> "tuple | None":
        step = m.pos[0].step
        if step is not None and (step.fn, step.op) == ("do_page_mkwrite", "folio_lock"):
            return None
        return next((t for t in enabled if t[0] == "t" and t[1] == 0), enabled[0])

    _run(m, writer_to_the_relock, bad, freeing_puts)
    _run(m, lambda enabled: next((t for t in enabled if t[0] == "t" and t[1] == 1), enabled[0]), bad, freeing_puts)
    assert (0, "do_shared_fault") in freeing_puts, freeing_puts
    assert not bad, bad


@pytest.mark.parametrize("kernel, arch", [("6.2", "up"), ("6.2", "smp"), ("5.19", "up")])
def test_mprotect_and_ftruncate_steps_stay_inside_their_futures(kernel: str, arch: str) -> None:
    """Random runs of unseen18_truncate_vs_mprotect_warm: mprotect's gather (6.2) counts itself in and out of
    mm->tlb_flush_pending and reads it in tlb_finish_mmu ("flushpend"); 5.19's mprotect does not gather, and its
    change_protection_range counts itself in and out (session 19: 16af97dc5a89's inc/dec_tlb_flush_pending)."""
    sc = _load("unseen18_truncate_vs_mprotect_warm")
    cfg = Config(**{**sc.config, **kernel_config(kernel), "arch": arch})
    rng = random.Random(18)
    protector = [t.name for t in sc.threads].index("protector")
    bad: list = []
    gathers = 0
    for _ in range(40):
        m = Machine(sc, cfg, record=True, reduce=True)
        _run(m, rng.choice, bad, [])
        gathers += sum(1 for e in m.events if e.kind == "step" and e.tid == protector
                       and (e.fn, e.op) == ("tlb_gather_mmu", "inc_tlb_flush_pending"))
    assert not bad, bad[:5]
    assert (gathers > 0) == cfg.mprotect_gathers
