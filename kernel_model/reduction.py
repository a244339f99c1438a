"""Partial-order reduction for the controlled explorer: steps that need not be interleaved.

A step may run alone, ahead of every other choice (an "ample set" of one), when it is **invisible** (it changes
nothing the oracle reads: no page data, dirty state, PTE, TLB, mapcount or PTL) and **independent** of every step
another thread could ever take from here (it neither changes what they read nor enables or disables them). Then
every interleaving that puts other threads' steps before it reaches the same states, in the same order of
visible changes, as one that runs it first. The state graph is acyclic (each transition consumes a step or an
IPI), so the cycle proviso holds trivially.

Independence is judged statically and conservatively from the scenario: which operations any other thread's
program contains.
"""

from __future__ import annotations

from dataclasses import dataclass

from kernel_model.program import Scenario, flatten
from kernel_model.steps import Step


@dataclass(frozen=True, slots=True)
class StaticFacts:
    vma_changes: bool  # some thread munmaps or remaps: mmap_lock/i_mmap_rwsem writers, VMAs and i_mmap change
    page_cache_changes: bool  # some thread evicts: page-cache lookups can change
    writeback_threads: frozenset[int]  # threads that set or clear PG_writeback

    @classmethod
    def of(cls, scenario: Scenario) -> "StaticFacts":
        kinds = [{op.kind for op in flatten(t.ops)} for t in scenario.threads]
        return cls(
            vma_changes=any(k & {"munmap", "mmap_fixed"} for k in kinds),
            page_cache_changes=any("evict" in k for k in kinds),
            writeback_threads=frozenset(t for t, k in enumerate(kinds) if "msync" in k),
        )


_SEM_OPS = frozenset({"down_read", "up_read", "find_vma", "i_mmap_lookup"})


def runs_alone(facts: StaticFacts, tid: int, step: Step, holds_ptl: bool) -> bool:
    op = step.op
    if op == "wait_acks":
        return True  # enabled once every ack is in; nothing another thread does can disable it, it changes nothing
    if op in _SEM_OPS:
        return not facts.vma_changes  # readers only: read-read commutes, VMAs and i_mmap never change
    if op == "filemap_get_folio":
        return not facts.page_cache_changes
    if op in ("folio_test_writeback", "folio_wait_writeback"):
        return facts.writeback_threads <= {tid}
    if op == "pte_none":
        # Every PTE writer holds the PTL except the hardware walk, which never makes a none PTE present.
        return holds_ptl
    return False
