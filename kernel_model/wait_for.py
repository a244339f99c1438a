"""Who waits for whom: the one rule that says why a blocked step cannot proceed, for both runtimes.

A blocked step waits for a lock's holder (spin_lock: the PTL's owner; folio_lock: the folio lock's; down_read and
down_write: the rw_semaphore's writer, else its readers), for the acks of the flush IPIs its thread sent
(wait_acks: the threads on the CPUs that have not taken them), or for writeback to end (folio_wait_writeback).
The controlled machine's hang report (Machine.hang_report), a wild trial's wait-for report
(actors.trial.wait_for_report) and the page-table actor's answer to a blocked request (PageTableCore._holder)
all say it in these words; the first two draw wait-for edges from it and look for a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from kernel_model.state import FREE, State, sem_of
from kernel_model.steps import Step


@dataclass(frozen=True, slots=True)
class Wait:
    what: str  # what the step waits for and who holds it, e.g. "PTL 0 held by zapper"
    holders: list[int]  # the threads it waits for: its wait-for edges


def who(names: Sequence[str], ids: Sequence[int]) -> str:
    return ", ".join(names[i] for i in ids if 0 <= i < len(names)) or "nobody"


def lock_wait(s: State, op: str, args: tuple, names: Sequence[str], tid: int | None = None) -> Wait | None:
    """The wait of a step that takes a lock (``tid``: the thread asking, to name a self-deadlock); None for
    any other step."""
    if op == "spin_lock":
        owner = s.ptl[args[0]]
        self_deadlock = " (itself: the PTL is not recursive)" if owner == tid else ""
        return Wait(f"PTL {args[0]} held by {who(names, [owner])}{self_deadlock}", [owner])
    if op == "folio_lock":
        owner = s.folios[args[0]].locked
        return Wait(f"the folio lock of pfn {args[0]} held by {who(names, [owner])}", [owner])
    if op in ("down_read", "down_write"):
        sem = sem_of(s, args[0])
        holders = [sem.writer] if sem.writer != FREE else list(sem.readers)
        return Wait(f"{args[0]} held by {who(names, holders)}", holders)
    return None


def ipi_targets(s: State, tid: int) -> list[int]:
    """The CPUs that still hold a flush IPI thread ``tid`` sent (its acks still to come)."""
    return [c for c, q in enumerate(s.ipis) if any(i.initiator == tid for i in q)]


def wait_of(s: State, tid: int, step: Step, names: Sequence[str], cpu_of: Sequence[int],
            unfinished: Sequence[bool]) -> Wait:
    """Why thread ``tid``'s ``step`` waits. A thread waiting for acks waits for the threads on the CPUs that have
    not taken its IPIs (``unfinished``: which threads still run; only no_ipi_while_spinning keeps a CPU from
    taking one, while its thread spins)."""
    op, args = step.op, step.args
    lock = lock_wait(s, op, args, names, tid)
    if lock is not None:
        return lock
    if op == "wait_acks":
        cpus = ipi_targets(s, tid)
        on = [t for t in range(len(cpu_of)) if cpu_of[t] in cpus and unfinished[t]]
        return Wait(f"flush IPI acks from CPU {', '.join(map(str, cpus))}, which does not take IPIs while "
                    f"{who(names, on)} spins", on)
    if op == "folio_wait_writeback":
        return Wait(f"writeback of pfn {args[0]} to end", [])
    return Wait(op, [])


def locks_held(s: State, names: Sequence[str]) -> list[str]:
    """Who holds which PTL and folio lock, in words."""
    held = [f"{names[o]} holds PTL {i}" for i, o in enumerate(s.ptl) if 0 <= o < len(names)]
    held += [f"{names[f.locked]} holds the folio lock of pfn {pfn}" for pfn, f in enumerate(s.folios)
             if f.locked != FREE and 0 <= f.locked < len(names)]
    return held


def find_cycle(edges: dict[int, list[int]]) -> list[int]:
    """A cycle of the wait-for graph (thread -> the threads it waits for), or []."""
    for start in edges:
        path, node = [start], start
        while True:
            nxt = [n for n in edges.get(node, []) if n in edges]
            if not nxt:
                break
            node = nxt[0]
            if node in path:
                return path[path.index(node):]
            path.append(node)
    return []


def cycle_text(edges: dict[int, list[int]], names: Sequence[str]) -> str:
    """"; cycle: a -> b -> a" for a cycle of the wait-for graph, or ""."""
    cycle = find_cycle(edges)
    return "; cycle: " + " -> ".join(names[t] for t in cycle + [cycle[0]]) if cycle else ""
