"""Where a trial's race windows lay: the flush-debt windows and the lock points that the race-window aligner
(``actors.fuzzy_sync``) aims at, read from the step marks the CPU actors record (``actors.cpu``).

Every TLB-shootdown race has one shape, whatever the scenario: a thread changes a present PTE
(``ptep_get_and_clear_full``, ``ptep_modify_prot``) and, until its flush is acknowledged (``wait_acks``), another
CPU may still hold the old translation. That span is the thread's *flush-debt window*. The seed's race
(5df397dec7c4: the rmap dropped inside it), mremap's (eb66ae030829: the PTLs dropped inside it), reclaim's
(3ea277194daa: the flush deferred to the end of the batch) and parallel MADV_DONTNEED's (99baac21e458: another zap
finds the PTE none inside it) all lie in one. The other side of a race is another thread reaching a lock (a PTL,
i_mmap_rwsem, mmap_lock, a folio lock) at the wrong moment, typically the lock the first thread holds or has just
dropped: its *lock points*, the offsets of its lock requests from the start of its op (and the op's start
itself), each with the lock it asks for (``lock_object``).

Nothing here knows the scenario, the ordering, the kernel version or the mutant: only the names of the model's
atomic steps, the same for every scenario.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from kernel_model.steps import kind_of

# A step that changed a present PTE (its result is the old PTE, None when there was none): a flush is owed.
CLEARING_OPS: Final = frozenset({"ptep_get_and_clear_full", "ptep_modify_prot"})
SEND_OP: Final = "flush_tlb_others"  # the shootdown's IPIs go out
# On UP flush_tlb_mm_range is the one step flush_tlb_local (kernel_model.mmu_gather: no other CPU, no IPIs, and
# preemption off inside it), so the flush starts there: where a Preempt pause holds a UP zapper (actors.cpu_align).
UP_SEND_OP: Final = "flush_tlb_local"
ACK_OP: Final = "wait_acks"  # every target has flushed and acknowledged: the debt is paid


def is_lock(op: str) -> bool:
    """A step that may wait for another thread (a PTL, a rwsem, a folio lock, writeback), not for acks."""
    return kind_of(op) == "block" and op != ACK_OP


# The lock a blocking step waits for is its first argument within a family (the PTL of a table, an rwsem by name,
# a folio by pfn): a folio's lock and its writeback bit are both the folio's.
_LOCK_FAMILY: Final = {"spin_lock": "ptl", "down_read": "rwsem", "down_write": "rwsem", "folio_lock": "folio",
                       "folio_wait_writeback": "folio"}


_RELEASE_FAMILY: Final = {"spin_unlock": "ptl", "up_read": "rwsem", "up_write": "rwsem", "folio_unlock": "folio"}


def lock_object(op: str, args: tuple[Any, ...] | list[Any]) -> str:
    """The lock a lock step asks for, e.g. ``ptl:0`` or ``rwsem:i_mmap_rwsem``."""
    return f"{_LOCK_FAMILY.get(op, op)}:{args[0] if args else ''}"


def released_object(op: str, args: tuple[Any, ...] | list[Any]) -> str | None:
    """The lock an unlock step releases (``lock_object``'s words), or None for any other step."""
    family = _RELEASE_FAMILY.get(op)
    return None if family is None or not args else f"{family}:{args[0]}"


def is_marked(op: str) -> bool:
    """The steps whose times the CPU actors record for the aligner (the others cost no record)."""
    return op in CLEARING_OPS or op in (SEND_OP, ACK_OP) or is_lock(op)


@dataclass(frozen=True, slots=True)
class Mark:
    """One recorded step of one thread: op ``pc`` of thread ``tid``, begun and ended at these µs from the trial's
    origin; ``changed``: a clearing step found a present PTE; ``obj``: the lock a lock step asks for."""

    tid: int
    pc: int
    op: str
    begin_us: float
    end_us: float
    changed: bool = False
    obj: str = ""


@dataclass(frozen=True, slots=True)
class DebtWindow:
    """The ``k``-th flush-debt window of op ``pc`` of thread ``tid``: from the step that changed a present PTE to
    the end of the wait for the acks (or of the op, when it sent no IPI)."""

    tid: int
    pc: int
    k: int
    start_us: float
    end_us: float


@dataclass(frozen=True, slots=True)
class LockPoint:
    """The ``j``-th lock request of op ``pc`` of thread ``tid`` (j = 0: the op's start, with no lock), for lock
    ``obj``, ``offset_us`` after the op began."""

    tid: int
    pc: int
    j: int
    offset_us: float
    obj: str = ""


def debt_windows(marks: list[Mark], op_ends: dict[tuple[int, int], float]) -> list[DebtWindow]:
    """Each thread's flush-debt windows, numbered per op in the order they opened. A debt still open when its op
    ends (no IPI was sent: one CPU) closes with the op."""
    out: list[DebtWindow] = []
    open_at: dict[int, tuple[int, float]] = {}  # tid -> (pc, start)
    count: dict[tuple[int, int], int] = {}
    for m in sorted(marks, key=lambda m: (m.begin_us, m.end_us)):
        pending = open_at.get(m.tid)
        if pending is not None and pending[0] != m.pc:  # a new op: the old one's debt ended with it
            out.append(_window(m.tid, pending, count, op_ends.get((m.tid, pending[0]), pending[1])))
            del open_at[m.tid]
            pending = None
        if m.op in CLEARING_OPS and m.changed and pending is None:
            open_at[m.tid] = (m.pc, m.end_us)
        elif m.op == ACK_OP and pending is not None:
            out.append(_window(m.tid, pending, count, m.end_us))
            del open_at[m.tid]
    for tid, pending in open_at.items():
        out.append(_window(tid, pending, count, op_ends.get((tid, pending[0]), pending[1])))
    return out


def _window(tid: int, pending: tuple[int, float], count: dict[tuple[int, int], int], end: float) -> DebtWindow:
    pc, start = pending
    k = count.get((tid, pc), 0)
    count[(tid, pc)] = k + 1
    return DebtWindow(tid, pc, k, start, max(start, end))


def lock_points(marks: list[Mark], op_starts: dict[tuple[int, int], float]) -> list[LockPoint]:
    """Each op's start (j = 0) and its lock requests (j = 1, 2, ...), as offsets from the op's start."""
    out = [LockPoint(tid, pc, 0, 0.0) for tid, pc in sorted(op_starts)]
    seen: dict[tuple[int, int], int] = {}
    for m in sorted(marks, key=lambda m: m.begin_us):
        start = op_starts.get((m.tid, m.pc))
        if start is None or not is_lock(m.op):
            continue
        j = seen.get((m.tid, m.pc), 0) + 1
        seen[(m.tid, m.pc)] = j
        out.append(LockPoint(m.tid, m.pc, j, max(0.0, m.begin_us - start), m.obj))
    return out


@dataclass(frozen=True, slots=True)
class TrialTimes:
    """What one trial's CPU actors measured, on the trial's common origin (the first thread start)."""

    debts: list[DebtWindow]
    points: list[LockPoint]
    step_us: float | None  # the mean length of one step of the trial (None: no step measured)


def trial_times(timings: list[dict[str, Any]]) -> TrialTimes:
    """From each CPU's ``{"start": {tid: ns}, "ops": [[tid, pc, begin_ns, end_ns, steps], ...], "marks": [[tid,
    pc, op, begin_ns, end_ns, changed, obj], ...]}``."""
    starts = [ns for t in timings for ns in (t.get("start") or {}).values()]
    if not starts:
        return TrialTimes([], [], None)
    origin = min(starts)

    def us(ns: float) -> float:
        return (ns - origin) / 1e3

    ops = [op for t in timings for op in (t.get("ops") or [])]
    op_starts = {(int(o[0]), int(o[1])): us(o[2]) for o in ops}
    op_ends = {(int(o[0]), int(o[1])): us(o[3]) for o in ops}
    steps = sum(int(o[4]) for o in ops if len(o) > 4)
    busy = sum(us(o[3]) - us(o[2]) for o in ops if len(o) > 4)
    marks = [Mark(int(m[0]), int(m[1]), str(m[2]), us(m[3]), us(m[4]), bool(m[5]), str(m[6]))
             for t in timings for m in (t.get("marks") or [])]
    return TrialTimes(debt_windows(marks, op_ends), lock_points(marks, op_starts),
                      busy / steps if steps else None)
