"""From a thread's user-level operation to the kernel path that carries it out.

Each operation is bracketed by ``begin``/``end`` notes so that logs and stories read as a program: "A:
store(page 0) = 1002 ... end". Store values are unique per (thread, position), so the oracle can tell whose
data is where.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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
    value = store_value(k.tid, pc) if op.kind == "store" else None
    path = KERNEL_PATHS.get(op.kind)
    if path is None:
        raise ValueError(f"operation {op.kind!r} has no kernel path")
    if first:
        yield Note(op.kind, "begin", (pages, value))
    result = yield from path(k, Call(op, pages, value, npages))
    if result is RETRY:
        return RETRY
    yield Note(op.kind, "end", (result,))
    return result


@dataclass(frozen=True, slots=True)
class Call:
    """One user-level operation's arguments, as its kernel path takes them."""

    op: Op
    pages: tuple[int, ...]
    value: int | None  # a store's value (store_value)
    npages: int  # the file's size in pages at boot

    @property
    def start(self) -> int:
        return min(self.pages)

    @property
    def end(self) -> int:
        return max(self.pages) + 1


def _counter(k: Kctx, c: Call) -> Path:
    if c.op.max is not None:
        return bounded_counter(k, c.pages[0], c.op.refault, c.op.max)
    return counter_increment(k, c.pages[0])


def _mremap(k: Kctx, c: Call) -> Path:
    assert c.op.to is not None, "the loader gives every mremap a destination"
    return do_mremap(k, c.start, c.end, c.op.to)


# Each user-level operation's kernel path (program.OP_KINDS names the operations a scenario may use).
KERNEL_PATHS: dict[str, Callable[[Kctx, Call], Path]] = {
    "store": lambda k, c: user_store(k, c.pages[0], c.value),
    "load": lambda k, c: user_load(k, c.pages[0]),
    "counter": _counter,
    "madvise_dontneed": lambda k, c: zap_page_range_single(k, c.start, c.end),
    "munmap": lambda k, c: do_munmap(k, c.start, c.end),
    "mmap_fixed": lambda k, c: mmap_fixed(k, c.start, c.end, c.op.target),
    "mmap": lambda k, c: do_mmap(k, c.start, c.end, c.op.target),
    "msync": lambda k, c: write_cache_pages(k, c.pages),
    "evict": lambda k, c: invalidate_mapping_pages(k, c.pages),
    "mremap": _mremap,
    "ftruncate": lambda k, c: do_truncate(k, c.start, c.npages),
    "mprotect": lambda k, c: do_mprotect(k, c.start, c.end),
    "reclaim": lambda k, c: shrink_folio_list(k, c.pages),
}
