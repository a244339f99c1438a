"""One event schema for both runtimes: every step, note and IPI, in the order it took effect."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

EVENT_KINDS: Final = ("step", "note", "ipi")


@dataclass(frozen=True, slots=True)
class Event:
    seq: int  # global order in which it took effect (the controlled machine's, or the page-table actor's)
    tid: int  # the thread whose path did it (for an IPI: the initiator waiting for the ack)
    cpu: int  # the CPU it ran on (for an IPI: the target that ran flush_tlb_func)
    kind: str  # "step" | "note" | "ipi"
    fn: str  # the kernel function
    op: str  # the atomic action or the note's name
    args: tuple
    result: Any = None

    def as_tuple(self) -> tuple:
        return (self.seq, self.tid, self.cpu, self.kind, self.fn, self.op, self.args, self.result)


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    detail: str
    pfn: int | None = None
