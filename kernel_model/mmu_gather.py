"""mm/mmu_gather.c and include/asm-generic/tlb.h: batching pages until their TLB entries are flushed.

The ``MmuGather`` lives on the zapping thread's stack, as in the kernel, so changing it is not a step other CPUs
can observe; each change is recorded as a ``Note`` so that the log (and the oracle) can see the batches. What
the gather does to shared state (flush IPIs, rmap removal, dropping page references) are steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kernel_model.constants import ENCODE_PAGE_BITS, ENCODED_PAGE_BIT_DELAY_RMAP
from kernel_model.context import Kctx
from kernel_model.steps import Note, Path, Step

LOCAL_BATCH = 0  # id of the batch embedded in struct mmu_gather (tlb->local)


def encode_page(pfn: int, flags: int) -> int:
    """The opaque ``struct encoded_page *``: the page pointer with flags in its low bits (70fb4fdff582)."""
    assert 0 <= flags < (1 << ENCODE_PAGE_BITS), "flags must fit in ENCODE_PAGE_BITS (a build-time check)"
    return (pfn << ENCODE_PAGE_BITS) | flags


def encoded_page_ptr(enc: int) -> int:
    return enc >> ENCODE_PAGE_BITS


def encoded_page_flags(enc: int) -> int:
    return enc & ((1 << ENCODE_PAGE_BITS) - 1)


@dataclass(slots=True)
class MmuGatherBatch:
    id: int
    max: int
    encoded_pages: list[int] = field(default_factory=list)

    @property
    def nr(self) -> int:
        return len(self.encoded_pages)


@dataclass(slots=True)
class MmuGather:
    fullmm: bool
    batches: list[MmuGatherBatch]  # batches[0] is tlb->local; the list order is the ->next chain
    active: int = LOCAL_BATCH
    batch_count: int = 0
    delayed_rmap: bool = False
    start: int = -1  # flush range [start, end); end == 0 means nothing recorded yet
    end: int = 0
    cleared_ptes: bool = False
    freed_tables: bool = False
    forced_flushes: int = 0  # statistics: TLB flushes forced from inside zap_pte_range
    # The range the caller gathers for (tlb_gather_mmu's start and end in 4.13-5.x): what a nested flush covers.
    range_start: int = 0
    range_end: int = 0

    def reset_range(self) -> None:
        """__tlb_reset_range"""
        self.start, self.end = -1, 0
        self.cleared_ptes = False
        self.freed_tables = False


def tlb_gather_mmu(k: Kctx, start: int, end: int, fullmm: bool = False) -> Path:
    """Set up the gather for [start, end); since 4.13 (56236a59556c, the series of 99baac21e458) it also counts
    itself in mm->tlb_flush_pending, so that a parallel gather can tell its flush may still be pending."""
    tlb = MmuGather(fullmm=fullmm, batches=[MmuGatherBatch(LOCAL_BATCH, k.cfg.mmu_gather_bundle)],
                    range_start=start, range_end=end)
    yield Note("tlb_gather_mmu", "init", (fullmm,))
    if k.cfg.fixed("tlb_flush_nested"):
        yield Step("tlb_gather_mmu", "inc_tlb_flush_pending", ())
    return tlb


def tlb_remove_tlb_entry(tlb: MmuGather, va: int) -> None:
    """Widen the flush range to cover ``va`` and remember that PTEs were cleared. No flush happens here."""
    tlb.start = va if tlb.start < 0 else min(tlb.start, va)
    tlb.end = max(tlb.end, va + 1)
    tlb.cleared_ptes = True


def tlb_next_batch(k: Kctx, tlb: MmuGather) -> Path:
    """Move to (or allocate) the next batch. Delayed rmap entries must stay where tlb_flush_rmaps walks: the
    seed patch refuses any new batch while delayed_rmap is set; c47454823bd4 allows leaving ``local`` once."""
    ok = _tlb_next_batch(k, tlb)
    yield Note("tlb_next_batch", "next_batch", (ok, tlb.active, tlb.delayed_rmap))
    return ok


def _tlb_next_batch(k: Kctx, tlb: MmuGather) -> bool:
    if tlb.delayed_rmap and not k.cfg.has("delayed_in_any_batch"):
        if k.cfg.delayed_batches == "active" or tlb.active != LOCAL_BATCH:
            return False
    if tlb.active + 1 < len(tlb.batches):
        tlb.active += 1
        return True
    if tlb.batch_count == k.cfg.max_gather_batch_count:
        return False
    # __get_free_page(GFP_NOWAIT): allocation failure is not modelled.
    tlb.batches.append(MmuGatherBatch(len(tlb.batches), k.cfg.max_gather_batch))
    tlb.batch_count += 1
    tlb.active = len(tlb.batches) - 1
    return True


def __tlb_remove_page(k: Kctx, tlb: MmuGather, pfn: int, delay_rmap: bool) -> Path:
    """__tlb_remove_page_size: store the page first, then return True ("full") if no next batch can be had.

    s390 (CONFIG_MMU_GATHER_NO_GATHER; before its generic mmu_gather, its own asm/tlb.h did the same) batches
    nothing: its __tlb_remove_page_size calls free_page_and_swap_cache(page) and returns false, because its IPTE
    has already flushed every CPU's TLB entry for the page when the PTE was cleared. So the reference is dropped
    here, under the PTL, and the gather never fills (no forced flush for a full batch on s390).

    UP before 29eb77825cc7 (v3.10) did the same through tlb_fast_mode() (Kctx.tlb_fast_mode): `if
    (tlb_fast_mode(tlb)) { free_page_and_swap_cache(page); return 1; /* avoid calling tlb_flush_mmu() */ }` (3.x
    returned the room left, so 1 is "not full"), and tlb_flush_mmu returned after the flush with nothing batched.
    There no IPTE has flushed anything: the CPU's TLB entry outlives the page until the gather's flush
    (tlb_end_vma or tlb_finish_mmu), after pte_unmap_unlock, which a preemptible mmu_gather (3.0) lets another
    task reach first."""
    assert tlb.end != 0, "a page is queued only after its PTE was recorded in the range (tlb->end != 0)"
    if k.mmu_gather_no_gather or k.tlb_fast_mode:
        assert not delay_rmap, "tlb_delay_rmap() is constant false under MMU_GATHER_NO_GATHER and on UP"
        yield Step("__tlb_remove_page", "put_page", (pfn,))  # free_page_and_swap_cache
        return False
    batch = tlb.batches[tlb.active]
    batch.encoded_pages.append(encode_page(pfn, ENCODED_PAGE_BIT_DELAY_RMAP if delay_rmap else 0))
    yield Note("__tlb_remove_page", "queue", (pfn, bool(delay_rmap), batch.id))
    if batch.nr == batch.max:
        return not (yield from tlb_next_batch(k, tlb))
    return False


def flush_tlb_mm_range(k: Kctx, fn: str, start: int, end: int) -> Path:
    """arch/x86/mm/tlb.c: IPI every other CPU in mm_cpumask (smp_call_function_many_cond), run flush_tlb_func
    locally, and spin until every target has acknowledged (wait=1: csd_lock_wait on each target's csd). The
    waiting CPU keeps taking IPIs.

    Each target runs the handler in two steps, which the runtimes drive (controlled.machine, actors.cpu):
    flush_tlb_func invalidates [start, end), then the csd is unlocked (the ack the initiator spins on); for a
    synchronous csd __flush_smp_call_function_queue runs func before csd_unlock. wait_acks carries the range so
    that its event says which shootdown has completed (kernel_model.oracle's stale_tlb_access).

    The kernel runs all of it with preemption disabled: preempt_disable()/preempt_enable() in 3.7's
    flush_tlb_mm_range (and flush_tlb_page, flush_tlb_mm), get_cpu()/put_cpu() from 4.13 (4.19: get_cpu;
    flush_tlb_func_local; flush_tlb_others; put_cpu; 5.15+: get_cpu; flush_tlb_multi or flush_tlb_func; put_cpu),
    and arch_tlbbatch_flush likewise. On SMP that changes nothing here: each thread has a CPU of its own, which
    keeps taking IPIs (interrupts stay on), and the paths model no migration. On UP it means no other task runs
    until the flush is done, and there is no flush_tlb_others at all: a !CONFIG_SMP x86 build before 4.13 had
    the UP tlbflush.h (flush_tlb_mm_range only flushed the local TLB), and from 4.13 on the shared code calls
    flush_tlb_others/flush_tlb_multi only if cpumask_any_but(mm_cpumask(mm), cpu) < nr_cpu_ids, never true with
    one CPU. So on UP the whole call is the one step flush_tlb_local, which no other thread can split; before
    session 22 it was flush_tlb_others (sending nothing) and then flush_tlb_local, two transitions another thread
    could run between (no verdict needed that: the same thread could run just before the call, where preemption is
    allowed; but it multiplied UP states)."""
    if k.cfg.arch == "up":
        yield Step(fn, "flush_tlb_local", (start, end))  # preemption off: nothing else runs on the only CPU
        return
    sent = yield Step(fn, "flush_tlb_others", (start, end))
    yield Step(fn, "flush_tlb_local", (start, end))
    if sent:
        yield Step(fn, "wait_acks", (start, end))


def tlb_flush_mmu_tlbonly(k: Kctx, tlb: MmuGather) -> Path:
    if not (tlb.cleared_ptes or tlb.freed_tables):
        return
    yield from flush_tlb_mm_range(k, "tlb_flush_mmu_tlbonly", tlb.start, tlb.end)
    tlb.reset_range()


def tlb_flush_rmaps(k: Kctx, tlb: MmuGather) -> Path:
    """Do the pending rmap removals after the TLB flush, still under the PTL.

    The seed patch walks only the active batch; c47454823bd4 walks ``local`` and then ``active``. The flags are
    not cleared from the entries: tlb_flush_mmu empties the batches before the next PTL section."""
    if not tlb.delayed_rmap:  # f036c8184f8b moved this test inside the function
        return
    walk = [tlb.active]
    if k.cfg.delayed_batches == "local+active" and tlb.active != LOCAL_BATCH:
        walk = [LOCAL_BATCH, tlb.active]
    yield Note("tlb_flush_rmaps", "walk", (tuple(walk),))
    for batch_id in walk:
        for enc in list(tlb.batches[batch_id].encoded_pages):
            if encoded_page_flags(enc) & ENCODED_PAGE_BIT_DELAY_RMAP:
                yield Step("tlb_flush_rmaps", "page_remove_rmap", (encoded_page_ptr(enc), True))
    tlb.delayed_rmap = False
    yield Note("tlb_flush_rmaps", "done", ())


def tlb_batch_pages_flush(k: Kctx, tlb: MmuGather) -> Path:
    """Drop the references the batches hold (free_pages_and_swap_cache), then empty them; active = local."""
    for batch in tlb.batches:
        for enc in batch.encoded_pages:
            yield Step("tlb_batch_pages_flush", "put_page", (encoded_page_ptr(enc),))
        batch.encoded_pages.clear()
    tlb.active = LOCAL_BATCH
    yield Note("tlb_batch_pages_flush", "emptied", ())


def tlb_flush_mmu(k: Kctx, tlb: MmuGather) -> Path:
    if k.cfg.has("free_before_flush"):
        yield from tlb_batch_pages_flush(k, tlb)  # the bug 1cf35d47712d's split guards against
    yield from tlb_flush_mmu_tlbonly(k, tlb)
    yield from tlb_batch_pages_flush(k, tlb)  # tlb_flush_mmu_free (no page-table pages are freed here)


def tlb_finish_mmu(k: Kctx, tlb: MmuGather) -> Path:
    """Flush what is left, then leave mm->tlb_flush_pending.

    99baac21e458: when another gather of the mm is in flight (mm_tlb_flush_nested; from 4.13 to 5.19 an
    mprotect's change_protection_range counts as one, kernel_model.mprotect), this thread may have found
    PTEs already cleared by it (pte_none: nothing recorded, nothing to flush) while that thread's flush is still
    to come; returning to user space then would leave stale TLB entries for a range madvise said is gone. So the
    whole gathered range is flushed. Coarser than v5.2+ on purpose: 7a30df49f63a made the nested flush a fullmm
    one (flush_tlb_mm); the model flushes the call's [start, end) as 4.13 did, which covers every translation
    the call is answerable for."""
    if k.cfg.fixed("tlb_flush_nested") and (yield Step("tlb_finish_mmu", "mm_tlb_flush_nested", ())):
        tlb.start, tlb.end = tlb.range_start, tlb.range_end  # __tlb_adjust_range(tlb, start, end - start)
        tlb.cleared_ptes = True
        yield Note("tlb_finish_mmu", "nested_flush", (tlb.start, tlb.end))
    yield from tlb_flush_mmu(k, tlb)
    if k.cfg.fixed("tlb_flush_nested"):
        yield Step("tlb_finish_mmu", "dec_tlb_flush_pending", ())
    yield Note("tlb_finish_mmu", "done", (tlb.forced_flushes,))
