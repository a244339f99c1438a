"""UP's tlb_fast_mode before 29eb77825cc7 ("arch, mm: Remove tlb_fast_mode()", v3.10).

include/asm-generic/tlb.h had ``tlb_fast_mode(tlb)``, constant 1 without CONFIG_SMP: __tlb_remove_page freed each
page at once (``free_page_and_swap_cache``, under the PTL) and returned "not full", and tlb_flush_mmu returned
after the TLB flush with nothing left to free. Since mmu_gather became preemptible (3.0) a zapper preempted after
pte_unmap_unlock, before its flush, let another task of the mm use the CPU's TLB entry of a page already freed:
Max Filippov's report (mtest05 on UP with PREEMPT_VOLUNTARY), fixed by removing fast mode. The model carries it as
the fix switch ``no_tlb_fast_mode`` (kernel_model.kernels) through Kctx.tlb_fast_mode, the s390 path of
__tlb_remove_page (kernel_model.mmu_gather).
"""

from __future__ import annotations

from controlled.explorer import explore
from controlled.replay import run_schedule
from kernel_model.config import Config
from kernel_model.kernels import kernel_config, kernel_for
from kernel_model.program import Op, Scenario, Setup, Thread
from scenarios.loader import load_scenario, load_scenario_text


def kernel(version: str, arch: str) -> Config:
    return Config(**{**kernel_config(version), "arch": arch})


def zap_alone(cfg: Config, pages: int = 4) -> list[tuple[str, str]]:
    scenario = Scenario("solo", "", Setup(pages=pages, dirty=False),
                        (Thread("t", (Op("madvise_dontneed", tuple(range(pages))),)),))
    r = run_schedule(scenario, cfg, [], record=True)
    assert not r.violations
    return [(e.fn, e.op) for e in r.events if e.kind in ("step", "note")]


def test_the_fix_is_in_3_10_and_not_in_3_9() -> None:
    assert "no_tlb_fast_mode" in kernel_for("3.10") and "no_tlb_fast_mode" not in kernel_for("3.9")
    assert Config().fixed("no_tlb_fast_mode")  # without --kernel: the newest kernel


def test_up_before_3_10_frees_each_page_at_once_under_the_ptl() -> None:
    s = zap_alone(kernel("3.9", "up"))
    puts = [i for i, x in enumerate(s) if x == ("__tlb_remove_page", "put_page")]
    assert len(puts) == 4 and puts[-1] < s.index(("zap_pte_range", "spin_unlock"))
    assert ("__tlb_remove_page", "queue") not in s and ("tlb_batch_pages_flush", "put_page") not in s
    # the flush comes after the pages are gone: tlb_end_vma's, after the unlock
    assert s.index(("zap_pte_range", "spin_unlock")) < s.index(("tlb_flush_mmu_tlbonly", "flush_tlb_local"))


def test_up_from_3_10_and_smp_before_it_batch_until_after_the_flush() -> None:
    for cfg in (kernel("3.10", "up"), kernel("3.9", "smp")):
        s = zap_alone(cfg)
        assert ("__tlb_remove_page", "put_page") not in s and s.count(("__tlb_remove_page", "queue")) == 4
        assert s.index(("tlb_flush_mmu_tlbonly", "flush_tlb_local")) < s.index(("tlb_batch_pages_flush", "put_page"))


def test_anon_page_freed_before_the_flush_is_stored_to_on_up_before_3_10() -> None:
    """anon_pages on UP: the zapper frees the anonymous page under the PTL, is preempted after pte_unmap_unlock,
    and the writer, on the same CPU, stores through its still-valid TLB entry into the freed frame. 3.10's
    batching keeps the page until after the flush."""
    sc = load_scenario("anon_pages")
    old = explore(sc, kernel("3.9", "up"), "bfs")
    assert old.found and "freed_while_mapped" in old.found[0].invariants
    new = explore(sc, kernel("3.10", "up"), "bfs")
    assert new.complete and not new.found


EVICT_AFTER_ZAP = """
name = "up_fast_mode_evict"
description = "UP before 3.10: a clean file page's zap drops its reference under the PTL; evict frees it before the flush"
[setup]
pages = 1
mapped = true
dirty = false
warm_tlb = ["reader"]
[[threads]]
name = "reader"
program = [{ op = "load", pages = [0], repeat = 2 }]
[[threads]]
name = "zapper"
program = [{ op = "madvise_dontneed", pages = [0] }]
[[threads]]
name = "evictor"
program = [{ op = "evict", pages = [0] }]
"""


def test_file_page_evicted_before_the_flush_on_up_before_3_10() -> None:
    """A clean file page: after fast mode's free_page_and_swap_cache only the page cache holds it, so
    invalidate_mapping_pages (unmapped, clean, no other reference) frees it while the zapper, preempted after the
    unlock, has not flushed the reader's TLB entry yet: its next load reads a freed frame. From 3.10 the
    gather's reference makes mapping_evict_folio skip the page until after the flush."""
    sc = load_scenario_text(EVICT_AFTER_ZAP, name="up_fast_mode_evict")
    old = explore(sc, kernel("3.9", "up"), "bfs")
    assert old.found and "freed_while_mapped" in old.found[0].invariants
    assert not explore(sc, kernel("3.10", "up"), "bfs").found
