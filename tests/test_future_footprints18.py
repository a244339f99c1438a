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
from tests.test_unseen_scenarios import _load

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


@pytest.mark.parametrize("kernel, arch", [("6.2", "up"), ("6.2", "smp"), ("5.19", "up")])
def test_mprotect_and_ftruncate_steps_stay_inside_their_futures(kernel: str, arch: str) -> None:
    """Random runs of unseen18_truncate_vs_mprotect_warm: mprotect's gather (6.2) counts itself in and out of
    mm->tlb_flush_pending and reads it in tlb_finish_mmu ("flushpend"); 5.19's mprotect does not gather."""
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
                       and e.op == "inc_tlb_flush_pending")
    assert not bad, bad[:5]
    assert (gathers > 0) == cfg.mprotect_gathers
