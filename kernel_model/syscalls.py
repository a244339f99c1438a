"""From a thread's user-level operation to the kernel path that carries it out.

Each operation is bracketed by ``begin``/``end`` notes so that logs and stories read as a program: "A:
store(page 0) = 1002 ... end". Store values are unique per (thread, position), so the oracle can tell whose
data is where.
"""

from __future__ import annotations

from kernel_model.context import Kctx
from kernel_model.memory import do_mmap, do_munmap, mmap_fixed, zap_page_range_single
from kernel_model.mprotect import do_mprotect
from kernel_model.mremap import do_mremap
from kernel_model.program import Op
from kernel_model.reclaim import shrink_folio_list
from kernel_model.truncate import do_truncate
from kernel_model.steps import Note, Path
from kernel_model.tlb import RETRY, bounded_counter, counter_increment, user_load, user_store
from kernel_model.writeback import invalidate_mapping_pages, write_cache_pages


def store_value(tid: int, pc: int) -> int:
    """The value thread ``tid`` writes with its operation number ``pc``: unique, and readable in a log."""
    return (tid + 1) * 1000 + pc + 1


def op_path(k: Kctx, op: Op, pc: int, npages: int) -> Path:
    """The whole operation: attempts until one does not ask to be retried."""
    first = True
    while True:
        result = yield from op_attempt(k, op, pc, npages, first)
        if result is not RETRY:
            return result
        first = False


def op_attempt(k: Kctx, op: Op, pc: int, npages: int, first: bool = True) -> Path:
    """One attempt at operation number ``pc`` of the thread; returns its result or RETRY."""
    pages = op.pages or tuple(range(npages))
    start, end = min(pages), max(pages) + 1
    value = store_value(k.tid, pc) if op.kind == "store" else None
    if first:
        yield Note(op.kind, "begin", (pages, value))
    if op.kind == "store":
        result = yield from user_store(k, pages[0], value)
    elif op.kind == "load":
        result = yield from user_load(k, pages[0])
    elif op.kind == "counter" and op.max is not None:
        result = yield from bounded_counter(k, pages[0], op.refault, op.max)
    elif op.kind == "counter":
        result = yield from counter_increment(k, pages[0])
    elif op.kind == "madvise_dontneed":
        result = yield from zap_page_range_single(k, start, end)
    elif op.kind == "munmap":
        result = yield from do_munmap(k, start, end)
    elif op.kind == "mmap_fixed":
        result = yield from mmap_fixed(k, start, end, op.target)
    elif op.kind == "mmap":
        result = yield from do_mmap(k, start, end, op.target)
    elif op.kind == "msync":
        result = yield from write_cache_pages(k, pages)
    elif op.kind == "evict":
        result = yield from invalidate_mapping_pages(k, pages)
    elif op.kind == "mremap":
        assert op.to is not None, "the loader gives every mremap a destination"
        result = yield from do_mremap(k, start, end, op.to)
    elif op.kind == "ftruncate":
        result = yield from do_truncate(k, start, npages)
    elif op.kind == "mprotect":
        result = yield from do_mprotect(k, start, end)
    elif op.kind == "reclaim":
        result = yield from shrink_folio_list(k, pages)
    else:
        raise ValueError(f"operation {op.kind!r} has no kernel path")
    if result is RETRY:
        return RETRY
    yield Note(op.kind, "end", (result,))
    return result
