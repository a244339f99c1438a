"""What a scenario asks the simulated machine to do: pages, threads and their user-level operations.

These are the resolved, validated forms (plain ints, no parameters); ``scenarios.loader`` builds them from TOML.
Each operation stands for a system call or a user access, and expands into kernel paths by
``kernel_model.syscalls.op_path``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

# The user-level operations a thread program may contain, with the kernel entry point each one models.
OP_KINDS: Final = {
    "store": "user store through the TLB (x86 semantics), faulting via do_shared_fault / do_wp_page",
    "load": "user load through the TLB, faulting via do_read_fault",
    "counter": "the PoC's counter writer: `lock incl` of a page's word through the TLB, again and again, for as "
               "long as the TLB still holds a writable translation for it (refault = true: faulting the page "
               "back in and carrying on; max = N: at most N increments)",
    "madvise_dontneed": "madvise(MADV_DONTNEED): zap_page_range_single under mmap_lock read",
    "munmap": "munmap: detach VMAs, unmap_region (zap, free_pgtables unlinks i_mmap), under mmap_lock",
    "mmap_fixed": "mmap(MAP_FIXED) over the range: do_munmap of the old VMA first, then link a new one: the same "
                  "file range, another file offset (offset = N) or anonymous memory (anon = true)",
    "mmap": "mmap(addr, MAP_FIXED_NOREPLACE) of a file range (offset = N) or anonymous memory (anon = true) at "
            "the range's addresses: do_mmap → mmap_region, vma_link into the file's i_mmap tree; fails (EEXIST, "
            "nothing changed) when an address is still mapped",
    "msync": "msync(MS_SYNC)/fsync: write_cache_pages over the file, WB_SYNC_ALL",
    "evict": "posix_fadvise(POSIX_FADV_DONTNEED): drop clean, unmapped, unreferenced page-cache pages",
    "mremap": "mremap(MREMAP_MAYMOVE|MREMAP_FIXED) of the pages to the same number of pages at `to`: move_ptes",
    "ftruncate": "ftruncate to the first listed page, under inode_lock: i_size_write, unmap_mapping_range, "
                 "truncate_inode_pages (file pages from there to the end leave the file), ext4_truncate (their "
                 "blocks become holes); to a size above the current one, the file grows over holes",
    "mprotect": "mprotect(PROT_READ): mprotect_fixup clears VM_WRITE (a later store gets SIGSEGV), "
                "change_protection write-protects the PTEs, one flush if any changed",
    "reclaim": "kswapd's shrink_folio_list: try_to_unmap with TTU_BATCH_FLUSH (deferred flush), pageout",
    "loop": "repeat a body of operations",
}


# A counter with refault = true and no max stops after this many increments. Its increments are counted in the
# thread's position (a bounded loop), so every increment multiplies the states an exhaustive search visits; two
# is the least that shows what refault is for: an increment that may land through a stale translation, then one
# after the page was faulted back in. Scenarios that need a longer run (under real scheduling) say max = N.
REFAULT_COUNTER_MAX: Final = 2


@dataclass(frozen=True, slots=True)
class Op:
    kind: str
    pages: tuple[int, ...] = ()
    repeat: int = 1
    body: tuple["Op", ...] = ()
    # counter only: fault the page back in when the translation is gone (as the PoC's loop does), and the
    # bound on increments (None: unbounded, allowed only without refault: the loop then ends with the
    # translation).
    refault: bool = False
    max: int | None = None
    to: int | None = None  # mremap only: the first page of the destination range
    # mmap and mmap_fixed only: what the range maps: the file offset of its first page (each later page maps the
    # next offset), VMA_ANON (kernel_model.state) for anonymous memory, or None: mmap_fixed's default, the same
    # file range (or anonymous memory in an anonymous setup), as before the remap.
    target: int | None = None

    @property
    def counts(self) -> bool:
        """A counter whose increments are counted (it has a bound): it ends by itself, never loops forever."""
        return self.kind == "counter" and self.max is not None


@dataclass(frozen=True, slots=True)
class Thread:
    name: str
    ops: tuple[Op, ...]


@dataclass(frozen=True, slots=True)
class Setup:
    """The machine before the first step."""

    pages: int = 1
    # Pages of one PTE table (one PTL each: split PTLs). The kernel's is 512; smaller values shard the page tables.
    ptes_per_table: int = 512
    # Pages start mapped MAP_SHARED, present+writable+dirty, PG_dirty set: an earlier store faulted them in.
    mapped: bool = True
    # Threads whose CPU starts with a dirty, writable TLB entry for every mapped page (brief §6 setup).
    warm_tlb: tuple[str, ...] = ()
    # Anonymous private pages instead of a shared file: never delayed, no writeback.
    anon: bool = False
    # Mapped pages start dirty (PTE D and PG_dirty, data not yet on disk). False: clean PTEs, clean pages.
    dirty: bool = True
    # The shared mapping wants write notifications (an fs with ->page_mkwrite, or dirty accounting), so
    # writable PTEs are made only by write faults, already dirty. False (as for a mapping that cannot track
    # dirty pages): PTEs are writable from the first fault and the CPU sets their dirty bit on the first store,
    # so a PTE's dirty bit can be the only record that the page is dirty.
    write_notify: bool = True


@dataclass(frozen=True, slots=True)
class Expect:
    """An end-of-run check a scenario states (``[[expect]]``), judged by the oracle as ``expect_failed``.
    ``file_holds_last_store``: after a final sync, the file holds the last value ``thread`` stored to ``page``."""

    kind: str
    thread: str
    page: int


EXPECT_KINDS: Final = ("file_holds_last_store",)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    setup: Setup
    threads: tuple[Thread, ...]
    config: dict[str, object] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)
    source: str = ""  # the TOML text it was loaded from, recorded in logs and schedule files
    expect: tuple[Expect, ...] = ()

    def thread_index(self, name: str) -> int:
        return [t.name for t in self.threads].index(name)


def remaps(threads: tuple[Thread, ...]) -> bool:
    """May an operation change what an address maps (an mmap, an mmap_fixed to another target, or an mremap,
    which moves a VMA to other addresses)? When none can, every address maps its own file page (or its anonymous
    page) for the whole run: the paths and the reduction use that instead of reading the VMA
    (kernel_model.context.Kctx.remaps)."""
    return any(op.kind in ("mmap", "mremap") or op.target is not None for t in threads for op in flatten(t.ops))


def flatten(ops: tuple[Op, ...]) -> list[Op]:
    """The program as the straight sequence of operations a thread runs (loops and repeats unrolled)."""
    out: list[Op] = []
    for op in ops:
        for _ in range(op.repeat):
            if op.kind == "loop":
                out.extend(flatten(op.body))
            elif op.kind == "store" and len(op.pages) > 1:
                # A store touches one address; "store to all pages" means one store per page, in order.
                out.extend(Op("store", (p,)) for p in op.pages)
            elif op.kind == "load" and len(op.pages) > 1:
                out.extend(Op("load", (p,)) for p in op.pages)
            elif op.kind == "counter":
                out.append(Op(op.kind, op.pages, refault=op.refault, max=op.max))
            elif op.kind == "mremap":
                out.append(Op(op.kind, op.pages, to=op.to))
            elif op.target is not None:
                out.append(Op(op.kind, op.pages, target=op.target))
            else:
                out.append(Op(op.kind, op.pages))
    return out
