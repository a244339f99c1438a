"""The x86 TLB and the user accesses that go through it (kernel brief §5).

A CPU's TLB caches, per virtual page, the frame, the writable bit and the dirty flag of the final PTE. The
functions here are the CPU-side atomic steps: they run in the CPU that owns the TLB (in the Ray runtime: inside
the CPU actor, with at most one message to the page-table actor), and a flush IPI is only ever serviced between
two of them, as an interrupt lands between instructions.

``pt`` is anything with the page-table actions ``walk``, ``pte_mkdirty_write``, ``write_page`` and
``read_page``: ``kernel_model.atomic.PageTableOps`` in-process, or a proxy that sends them to an actor.
"""

from __future__ import annotations

from typing import Any, Protocol

from kernel_model.config import Config
from kernel_model.context import Kctx
from kernel_model.state import TlbEntry
from kernel_model.steps import Path, Step

Tlb = dict[int, TlbEntry]


# A store "value" of INCREMENT is the counter writer's `lock incl`: the word becomes its current contents + 1,
# read and written by one locked instruction (so it lands where the store lands, through the same TLB entry).
INCREMENT = None


class PageTableAccess(Protocol):
    def walk(self, va: int, write: bool) -> Any: ...
    def pte_mkdirty_write(self, va: int, pfn: int, value: int | None) -> bool: ...
    def write_page(self, pfn: int, value: int | None) -> None: ...
    def read_page(self, pfn: int) -> int: ...


# --- CPU-side atomic steps -----------------------------------------------------------------------------------
def store_tlb(tlb: Tlb, pt: PageTableAccess, va: int, value: int | None, walk: bool = False) -> str:
    """One store instruction (``value`` INCREMENT: a locked increment), up to the point where it needs a page
    walk or a fault; with ``walk`` (a uniprocessor: see user_store) the walk of a miss too.

    Returns "stored", "miss" (no entry: walk), "fault" (#PF: not writable, or the PTE vanished under a
    writable-clean entry; with ``walk``, a miss whose walk found no present writable PTE), or, with ``walk``,
    "filled": walked, cached and stored through the fresh entry."""
    entry = tlb.get(va)
    if entry is None:
        if not walk:
            return "miss"
        if not walk_fill(tlb, pt, va, True):
            return "fault"
        pt.write_page(tlb[va].pfn, value)  # the walk set D before caching the entry: no page-table access left
        return "filled"
    if not entry.writable:
        del tlb[va]  # a page fault invalidates the TLB entries of the faulting address (SDM §4.10.4.1)
        return "fault"
    if entry.dirty:
        # The dirty flag is cached: the store touches no page-table entry. This is the stale-entry write.
        pt.write_page(entry.pfn, value)
        return "stored"
    if pt.pte_mkdirty_write(va, entry.pfn, value):
        tlb[va] = entry._replace(dirty=True)
        return "stored"
    del tlb[va]  # the faulting access drops the stale translation
    return "fault"


def load_tlb(tlb: Tlb, pt: PageTableAccess, va: int) -> int | None:
    entry = tlb.get(va)
    if entry is None:
        return None
    return pt.read_page(entry.pfn)


def walk_fill(tlb: Tlb, pt: PageTableAccess, va: int, write: bool) -> bool:
    """A TLB miss: walk the page table (no software locks) and fill the entry only from a present PTE that
    allows the access; the walk sets A (and D for a store) before the entry is cached."""
    pte = pt.walk(va, write)
    if pte is None:
        return False
    tlb[va] = TlbEntry(pte[0], pte[1], pte[2])
    return True


def flush_tlb_range(tlb: Tlb, start: int, end: int) -> int:
    """flush_tlb_func on one CPU: INVLPG each page of [start, end) (a full flush past the ceiling is the same
    thing here: the model's TLB only holds this mm's entries)."""
    gone = [va for va in tlb if start <= va < end]
    for va in gone:
        del tlb[va]
    return len(gone)


# --- the flush IPI handler -----------------------------------------------------------------------------------
# What a target CPU does with a flush request, in order: __flush_smp_call_function_queue runs a synchronous csd's
# func (flush_tlb_func: the invalidation) and then csd_unlock (the ack, which the initiator's csd_lock_wait sees).
# Each step's args are the request's range [start, end).
IPI_FLUSH = Step("flush_tlb_func", "ipi_flush")
IPI_ACK = Step("csd_unlock", "ipi_ack")


def flush_ipi_handler(cfg: Config) -> tuple[Step, ...]:
    """The handler's steps in the order this kernel runs them. The ack_before_invalidate mutant unlocks first
    (as for an asynchronous csd) and lets the CPU run on before it invalidates: coarser than a handler that runs
    with interrupts off, on purpose; it stands for any kernel that lets the initiator go on while a target can
    still use the old translation (e.g. a deferred flush), which is what stale_tlb_access is about."""
    return (IPI_ACK, IPI_FLUSH) if cfg.has("ack_before_invalidate") else (IPI_FLUSH, IPI_ACK)


# --- user accesses as paths ----------------------------------------------------------------------------------
class _Retry:
    """Returned by an access attempt that must be retried from the start (after a fill or a fault), as the
    hardware restarts the instruction. Runtimes loop on it (see ``kernel_model.syscalls.op_path``); the
    explorer treats a retry as a fresh start, so that histories of earlier attempts do not multiply states."""

    def __repr__(self) -> str:
        return "RETRY"


RETRY = _Retry()


def user_store(k: Kctx, va: int, value: int) -> Path:
    """One attempt of a store instruction. Returns True (stored), False (SIGSEGV) or RETRY."""
    from kernel_model.memory import do_user_addr_fault

    r = yield Step("user_store", "store_tlb", _store_args(k, va, value))
    if r == "stored" or r == "filled":
        return True
    if r == "miss" and (yield Step("user_store", "walk_fill", (va, True))):
        return RETRY  # the entry is cached now: the store retries through it
    if not (yield from do_user_addr_fault(k, va, write=True)):
        return False
    return RETRY


def _store_args(k: Kctx, va: int, value: int | None) -> tuple:
    """store_tlb's arguments. On SMP a miss is two steps, the walk (walk_fill) and the retried store through the
    entry it cached: a flush IPI between them only makes the store walk again, and another CPU may clear the PTE
    after the walk set D and before the write is visible (x86-TSO's store buffer). On a uniprocessor nothing else
    runs on the CPU within one instruction, so the walk and the write are one step (``walk``): otherwise a zapper
    and writeback could run between them on the same CPU and the write land after writeback's snapshot, a loss
    no uniprocessor shows (session 16, docs/up-v6.2.md)."""
    return (va, value, True) if k.cfg.arch == "up" else (va, value)


def counter_increment(k: Kctx, va: int) -> Path:
    """One turn of the counter writer's loop (Nadav Amit's PoC: ``for (;;) (*counter)++;``): a locked increment
    through the TLB. Returns RETRY (go round again) while it lands through a cached translation, True once the
    translation is gone (the zap's flush reached this CPU), when the thread stops.

    This is the counter without ``refault`` and without ``max`` (bounded_counter runs the others): the lost write
    is the one that went through the stale entry, so it stops where the translation ends. It never walks or
    faults, so the loop's states repeat (up to the counter's value) and exhaustive search stays finite."""
    r = yield Step("user_store", "store_tlb", (va, INCREMENT))
    return RETRY if r == "stored" else True


def bounded_counter(k: Kctx, va: int, refault: bool, limit: int) -> Path:
    """The counter writer with a bound (``max``): at most ``limit`` locked increments, in one attempt, so that
    the count is part of the thread's position. Without ``refault`` it stops early once the translation is gone,
    as counter_increment does; with it, it takes the store's path when the TLB has no usable entry (walk, or the
    page fault: do_shared_fault faults the page back in, marks it dirty, installs a writable PTE) and carries
    on, as the PoC's ``for (;;) (*counter)++;`` does. Returns the number of increments that landed, or False on
    SIGSEGV (the address is no longer mapped)."""
    from kernel_model.memory import do_user_addr_fault

    landed = 0
    while landed < limit:
        r = yield Step("user_store", "store_tlb", _store_args(k, va, INCREMENT) if refault else (va, INCREMENT))
        if r == "stored" or r == "filled":
            landed += 1
            continue
        if not refault:
            break
        if r == "miss" and (yield Step("user_store", "walk_fill", (va, True))):
            continue
        if not (yield from do_user_addr_fault(k, va, write=True)):
            return False
    return landed


def user_load(k: Kctx, va: int) -> Path:
    """One attempt of a load instruction: the value, None (SIGSEGV) or RETRY.

    A miss is two steps (walk_fill, then load_tlb on the retry) on a uniprocessor too, unlike a store (see
    _store_args): the walk writes nothing the data depends on, and caching a translation with no access yet is a
    speculative TLB fill, which x86 may do at any time (SDM Vol. 3A §4.10.2.3, "Details of TLB Use", cited from
    memory), so the split allows nothing a uniprocessor forbids (docs/up-v6.2.md, session 17;
    tests/scenarios/unseen17_up_load_vs_zap_evict.toml)."""
    from kernel_model.memory import do_user_addr_fault

    value = yield Step("user_load", "load_tlb", (va,))
    if value is not None:
        return value
    if (yield Step("user_load", "walk_fill", (va, False))):
        return RETRY
    if not (yield from do_user_addr_fault(k, va, write=False)):
        return None
    return RETRY
