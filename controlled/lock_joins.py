"""Lipton's reduction for the exhaustive searches: a lock acquire runs in one transition with the step after it,
and a release with the step before it.

A thread's acquire (spin_lock, folio_lock, down_read, down_write) is a right mover (Lipton, "Reduction: a method
of proving properties of parallel programs", CACM 1975; Flanagan and Qadeer's movers): take a run in which other
agents act between the acquire and the thread's next step. Moving the acquire forward past them, to just before
that step, gives a run with the same end state, the same events and the same verdicts, provided nothing they do
reads the lock except acquiring it (disabled while it is held) or releasing it (only the holder may):
- every step they take there was enabled before the acquire too, and leaves the same state after it: the
  acquire changes only its lock's owner, which none of their steps reads;
- the oracle does not observe acquires (oracle.OBSERVED_OPS) and judges whole states at quiescence only while
  reducing, and a thread between an acquire and its next step is not finished, so no judged state is skipped;
- the step after it is not itself blocking (else the pair is not joined), so the pair always runs to its end.
The search then needs no state between the two: the machine runs both in one transition (``Resolved.block``).
This is the IPI handler's "invalidate, ack" (controlled.positions.ipi_transitions) for the threads' locks. The
two steps' events are emitted in order, so the oracle and every record see what they saw before.

What reads a lock without acquiring it, so keeps its acquire a transition of its own (``joinable_acquires``):
- folio_trylock (reclaim's shrink_folio_list) and evict_folio (invalidate_mapping_pages skips a locked folio):
  with a reclaim or evict operation in any program, folio_lock is not joined;
- the oracle's rmap check at a PTL release judges a folio only when every table that may map it is unlocked:
  with remaps (mmap, mremap, mmap_fixed to another offset) it reads other tables' PTLs, so spin_lock is not
  joined. Without remaps a folio is mapped only at its own address, in its own table, whose release is the
  thread's own step.
rw_semaphores have no such reader (their readers are kept sorted, so two down_reads commute to one state). On UP
a spin_lock is a right mover vacuously: nobody else runs while it is held. Under no_ipi_while_spinning a CPU that
takes IPIs after an acquire took them before it (a thread spinning on the lock could still take it then).

A release (folio_unlock, up_read, up_write) is a left mover for the same reason, and runs in one transition with
the step before it (``joinable_releases``): take a run in which other agents act between that step and the
release. Moving the release back, to just after the step, gives a run with the same end state, events and
verdicts, provided:
- nothing they do reads the lock except acquiring it, which is disabled until the release: as for the acquires,
  so folio_unlock is joined only where no folio_trylock or evict_folio may run;
- the release changes nothing else they could see. The notes its transition emits after it move back with it,
  so it is joined only when none follows, or only the call's "end" note. "End" turns the call's covered
  translations stale in the oracle (a store through one is a violation after it and not before), so such a
  release has a block of its own (Resolved.uncovered), taken only while the oracle holds no covered translation
  of the thread (Machine._settle_joins: a function of the state, as the search needs);
- the step before it has a result the path does not read (kernel_model.ops.FED_NONE), so the release is known
  from the position whatever that step returns.
A chain is joined whole (Positions._joined): an acquire, the step after it, then each release that qualifies.

spin_unlock is not joined: its rmap check (oracle rmap_pte_mismatch) reads the table's PTEs and its folios'
mapcounts, which a mutant may change outside the PTL (delayed_rmap_after_unlock), so another agent's step between
it and the step before would change what the check sees. docs/reduction-next.md measures what joining it would
add and what it needs.

Checked as the other reductions are: end states and verdicts equal to the full search (which never joins) on
the library matrix × orderings × arches × mutants (tests/test_sleep_sets.py, tests/test_merge_chains.py), and
``tlbrace fuzz --check-reduction``. Schedules stay step by step (controlled.explorer expands a joining
search's counterexamples): replays and the wild runtime never see a joined pair.
"""

from __future__ import annotations

from controlled.op_footprints import flat
from kernel_model.program import Op

# Operation kinds whose paths read PG_locked without waiting for it (folio_trylock, evict_folio).
_FOLIO_LOCK_READERS = frozenset({"reclaim", "evict"})


def _folio_lock_read(programs: list[list[Op]]) -> bool:
    """May some path read PG_locked without waiting for it?"""
    return bool({op.kind for program in programs for op in flat(program)} & _FOLIO_LOCK_READERS)


def joinable_acquires(programs: list[list[Op]], linear: bool) -> frozenset[str]:
    """The acquires a search may run together with the step after them, for these programs; ``linear``:
    no operation remaps an address (controlled.reduction.Footprints.linear)."""
    joinable = {"down_read", "down_write"}
    if linear:
        joinable.add("spin_lock")
    if not _folio_lock_read(programs):
        joinable.add("folio_lock")
    return frozenset(joinable)


def joinable_releases(programs: list[list[Op]]) -> frozenset[str]:
    """The releases a search may run together with the step before them, for these programs (where the call goes
    on after them: Positions._joined checks that)."""
    return frozenset({"up_read", "up_write"} | (set() if _folio_lock_read(programs) else {"folio_unlock"}))
