"""TLB shootdown on a CPU actor: sending flush IPIs, waiting for their acks, and the IPI handler that runs
flush_tlb_func between two of this CPU's steps (mixed into ``actors.cpu.CpuCore``, whose irq lock, TLB,
timeline and peers it uses)."""

from __future__ import annotations

import time
from typing import Any

from actors.codec import pack, unpack, wire
from kernel_model import tlb as tlbops
from kernel_model.steps import Step


class FlushIpis:
    """flush_tlb_others, wait_acks and flush_tlb_func for CpuCore (a mixin: state lives in CpuCore)."""

    # --- TLB shootdown ------------------------------------------------------------------------------------------
    def _send_ipis(self, tid: int, step: Step) -> int:
        start, end = step.args
        targets = [c for c in range(self.topo.ncpus) if c != self.cpu]
        # Resolve first: the clock sent with the IPI must be exact.
        clock = self.tl.merged(tid, self.cpu, "step", step.fn, step.op, [start, end], len(targets), 0)
        message = pack([self.trial, tid, start, end, clock])
        self.acks[tid].extend(self.peers[c].ipi.remote(message) for c in targets)
        return len(targets)

    def _wait_acks(self, tid: int, step: Step) -> None:
        import ray

        refs, self.acks[tid] = self.acks[tid], []
        asked = time.perf_counter_ns()
        replies = self._wait(tid, f"flush acks from {len(refs)} CPU(s)", self.hold_irq_while_waiting,
                             lambda: ray.get(refs))
        latest = 0
        for data, late in replies:
            clock, records = unpack(data)
            latest = max(latest, clock)
            self.foreign.extend(records)
            if late is not None:
                self.late_flushes.append(late)
        self.tl.merged(tid, self.cpu, "step", step.fn, step.op, wire(step.args), None, latest)
        self.tl.records[-1]["wait_ns"] = time.perf_counter_ns() - asked  # until the last ack, wall clock

    def _collect_late_flushes(self) -> None:
        """ack_before_invalidate: the targets' late invalidations of this CPU's shootdowns, whose events come back
        as their tasks' results (so that they are collected even when the target's own run has ended)."""
        import ray

        refs, self.late_flushes = self.late_flushes, []
        for data in ray.get(refs):
            records = unpack(data)
            with self.cv:
                self.foreign.extend(records)

    def ipi(self, message: bytes) -> tuple[bytes, Any]:
        """The flush IPI handler on this CPU for another CPU's shootdown; the reply is the ack, with the handler's
        events (so that they are collected even when this CPU's own thread has already finished) and, under
        ack_before_invalidate, the reference of the late_flush task that will invalidate."""
        trial, initiator, start, end, sent_at = unpack(message)
        with self.cv:
            while self.trial < trial:
                self.cv.wait()  # this CPU has not started the trial yet
            if self.trial != trial:
                return pack([sent_at, []]), None
        # The IPI still in flight (jitter at the race point, the aligner's delivery latency): the thread runs on.
        paused = self.irq_jitter.pause_before("ipi_flush") + self.ipi_latency.pause()
        with self.cv:
            if self.trial != trial:
                return pack([sent_at, []]), None
            while self.hold_irq_while_waiting and self._irqs_off() and self.trial == trial:
                self.cv.wait()
            if self.trial != trial:
                return pack([sent_at, []]), None
            if paused:
                self.tl.local(initiator, self.cpu, "note", "flush_tlb_func", "jitter", ["ipi_flush", paused])
            if tlbops.flush_ipi_handler(self.cfg)[0].op == "ipi_ack":  # the handler's order, as the kernel path has it
                clock = self.tl.merged(initiator, self.cpu, "ipi", "csd_unlock", "ipi_ack", [start, end], None,
                                       sent_at)
                ack = self.tl.records[-1]
                late = self.peers[self.cpu].late_flush.remote(pack([trial, initiator, start, end]))
                return pack([clock, [ack]]), late
            flush = self._flush_for_ipi(initiator, start, end, sent_at)
            clock = self.tl.merged(initiator, self.cpu, "ipi", "csd_unlock", "ipi_ack", [start, end], None, 0)
            return pack([clock, [flush, self.tl.records[-1]]]), None

    def late_flush(self, message: bytes) -> bytes:
        """ack_before_invalidate: flush_tlb_func, after the ack has gone out (a task of its own, so that the
        CPU's thread may step in between). Returns the event."""
        trial, initiator, start, end = unpack(message)
        with self.cv:
            if self.trial != trial:
                return pack([])
            return pack([self._flush_for_ipi(initiator, start, end, 0)])

    def _flush_for_ipi(self, initiator: int, start: int, end: int, sent_at: int) -> dict[str, Any]:
        """flush_tlb_func for [start, end) on this CPU (irq lock held); returns its event record."""
        if self.s390 and any(start <= va < end for va in self.tlb):
            self.tl.merge(sent_at)
            lamport, gseq = self._validate([va for va in self.tlb if start <= va < end])
            dropped = tlbops.flush_tlb_range(self.tlb, start, end)
            self.tl.stamped(initiator, self.cpu, "ipi", "flush_tlb_func", "ipi_flush", [start, end], dropped,
                            lamport, gseq)
        else:
            dropped = tlbops.flush_tlb_range(self.tlb, start, end)
            self.tl.merged(initiator, self.cpu, "ipi", "flush_tlb_func", "ipi_flush", [start, end], dropped, sent_at)
        return self.tl.records[-1]

    def _irqs_off(self) -> bool:
        """no_ipi_while_spinning: some thread of this CPU is about to spin (or spins) on a PTL or for acks, or
        is between two steps (its next one not known yet)."""
        return any(op is None or op in ("spin_lock", "wait_acks") for op in self.next_op.values())
