"""One event schema for both runtimes: every step, note and IPI, in the order it took effect."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

EVENT_KINDS: Final = ("step", "note", "ipi")


# Not frozen: a frozen dataclass's generated __init__ sets each field through object.__setattr__, 8 calls an event,
# about 8x the cost of plain stores (4.0 us against 0.5 us, measured in session 19), and the controlled machine
# builds one for every step the oracle looks at (3.9% of a search's instructions). Nothing assigns to an event's
# fields; unsafe_hash keeps the hash a frozen one had (over the fields), so events still key dicts and sets.
@dataclass(slots=True, unsafe_hash=True)
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
