"""A CPU actor's line to the page-table actor: numbered messages carrying its Lamport state (``PtLink``), and
the page-table half of one CPU step as at most one such message (``TlbProxy``, the ``pt`` that
``kernel_model.tlb`` is given)."""

from __future__ import annotations

from typing import Any

from actors.codec import ERROR, STALE, pack, unpack
from actors.lamport import Timeline
from actors.page_table import EPOCH, PLAIN, WALK


class StepFailed(RuntimeError):
    """The page-table actor refused a step (a lock misuse by a path or a mutant)."""


class Stale(Exception):
    """s390: the TLB entry's translation was invalidated by a synchronous PTE clear since it was filled."""


class PtLink:
    """Numbered messages from one CPU to the page-table actor, each carrying the CPU's Lamport state."""

    def __init__(self, pt: Any, caller: int, trial: int, timeline: Timeline) -> None:
        self.pt = pt
        self.caller = caller
        self.trial = trial
        self.tl = timeline
        self.seq = 0

    def _message(self, op: str, args: list, mode: str, extra: Any) -> bytes:
        base, delta = self.tl.pt_clock()
        data = pack([self.trial, self.caller, self.seq, base, delta, op, args, mode, extra])
        self.seq += 1
        return data

    def call(self, op: str, args: list, mode: str = PLAIN, extra: Any = None) -> list:
        import ray

        reply = unpack(ray.get(self.pt.step.remote(self._message(op, args, mode, extra))))
        if reply[0] == ERROR:
            raise StepFailed(reply[1])
        return reply

    def post(self, op: str, args: list) -> Any:
        return self.pt.step.remote(self._message(op, args, PLAIN, None))


class TlbProxy:
    """``kernel_model.tlb``'s ``pt``: the page-table part of one CPU step, as at most one message. Remembers
    the stamp (or the pipelined reply) so that the step's event gets it."""

    def __init__(self, cpu: Any) -> None:  # an actors.cpu.CpuCore (which imports this module)
        self.cpu = cpu
        self.va = 0
        self.stamp: tuple[int, int] | None = None
        self.ref: Any = None
        self.epoch = 0

    def begin(self, va: int) -> None:
        self.va, self.stamp, self.ref = va, None, None

    def walk(self, va: int, write: bool) -> Any:
        reply = self.cpu.link.call("walk", [va, write], WALK)
        self.stamp = (reply[2], reply[3])
        pte, self.epoch = reply[1]
        return pte

    def pte_mkdirty_write(self, va: int, pfn: int, value: int | None) -> bool:
        return self._checked("pte_mkdirty_write", [va, pfn, value])

    def write_page(self, pfn: int, value: int | None) -> None:
        if not self.cpu.s390 and value is not None:
            # A store through a dirty entry always lands (x86): nothing to wait for.
            self.ref = self.cpu.link.post("write_page", [pfn, value])
            return None
        # s390 checks the translation first. A locked increment (value None) is a serializing read-modify-write
        # that completes before the next instruction: the CPU waits for it (which also keeps a counter loop
        # from flooding the actor), and a flush IPI, taken between instructions, waits for it too. Coarser than
        # hardware: here the memory access is a message, so that wait is a round trip, not nanoseconds.
        return self._checked("write_page", [pfn, value])

    def read_page(self, pfn: int) -> int:
        return self._checked("read_page", [pfn])

    def _checked(self, op: str, args: list) -> Any:
        if self.cpu.s390:
            reply = self.cpu.link.call(op, args, EPOCH, [self.va, self.cpu.epochs.get(self.va, 0)])
        else:
            reply = self.cpu.link.call(op, args)
        if reply[0] == STALE:
            self.stamp = (reply[1], reply[2])
            raise Stale()
        self.stamp = (reply[2], reply[3])
        return reply[1]
