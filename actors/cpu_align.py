"""The race-window aligner's part of a CPU actor (actors.fuzzy_sync): carrying out a trial's plan (start delays
before ops, a pause inside a flush-debt window, the IPI delivery latency) and measuring what the aligner learns
from (each op's window and step count, and the step marks of actors.race_windows). Mixed into
``actors.cpu.CpuCore``, whose irq lock, timeline and trial state it uses.

Every pause is a sleep between two steps with the irq lock released (IPIs land meanwhile), logged as a jitter
note, which replay skips: it makes some orders likelier and forces none.
"""

from __future__ import annotations

import time
from typing import Any

from actors.jitter import IpiLatency
from actors.race_windows import ACK_OP, CLEARING_OPS, is_lock, is_marked, lock_object, released_object
from kernel_model.steps import Step


class AlignerHooks:
    """The aligner's plan and measurements for CpuCore (a mixin: state lives in CpuCore)."""

    def _take_plan(self, plan: list[Any], seed: int, trial: int) -> None:
        """A trial's plan, as ``actors.fuzzy_sync.TrialPlan.wire`` sends it ([] or shorter: no aligner), and
        fresh measurements."""
        delays, preempt, ipi_us = (list(plan) + [[], [], 0][len(plan):])[:3]
        self.align_delays = {(tid, pc): us for tid, pc, us in delays}
        # [tid, pc, j, µs, lock, release µs] (actors.fuzzy_sync.Preempt), or none
        self.preempt: list[Any] = list(preempt)
        self.ipi_latency = IpiLatency(ipi_us, seed, trial, self.cpu)
        self.timing: dict[str, Any] = {"start": {}, "ops": [], "marks": []}
        # tid -> [pc, steps, flush-debt windows opened, debt open, lock requests] of the op it runs
        self.ops_now: dict[int, list[int]] = {}

    def _align_delay(self, tid: int, pc: int, kind: str) -> None:
        """The start delay before this op, logged as a jitter note so that replay skips it: a pause between two
        instructions, which forces no order. Then the op's measurements begin."""
        us = self.align_delays.get((tid, pc), 0)
        if us:
            with self.cv:
                self.tl.local(tid, self.cpu, "note", "fuzzy_sync", "jitter", [kind, us])
            time.sleep(us / 1e6)
        self.ops_now[tid] = [pc, 0, 0, 0, 0]

    def _op_done(self, tid: int, pc: int, begin: int) -> None:
        self.timing["ops"].append([tid, pc, begin, time.monotonic_ns(), self.ops_now[tid][1]])

    def _mark(self, tid: int, step: Step, begin: int, result: Any) -> None:
        """Count the step, and record it if the aligner reads it (actors.race_windows): a PTE changed opens a
        flush-debt window, the acks close it; a lock request is a lock point."""
        now, op = self.ops_now.get(tid), step.op
        if now is None:
            return
        now[1] += 1
        if self._preempting(tid, now) and self.preempt[5] and released_object(op, step.args) == self.preempt[4]:
            self._pause(tid, "release", 5)
        if not is_marked(op):
            return
        changed = op in CLEARING_OPS and result is not None
        lock = is_lock(op)
        now[4] += lock
        self.timing["marks"].append([tid, now[0], op, begin, time.monotonic_ns(), changed,
                                     lock_object(op, step.args) if lock else ""])
        if changed and not now[3]:
            now[2], now[3] = now[2] + 1, 1
        elif op == ACK_OP:
            now[3] = 0

    def _preempt_pause(self, tid: int, step: Step) -> None:
        """The pause inside a flush-debt window (actors.fuzzy_sync.Preempt): before this thread sends the first
        shootdown it owes after the planned lock request of the planned op, as an interrupt would hold it there."""
        now = self.ops_now.get(tid)
        if now is not None and now[3] and self._preempting(tid, now) and self.preempt[3]:
            self._pause(tid, step.op, 3)

    def _preempting(self, tid: int, now: list[int]) -> bool:
        """This thread runs the planned op and has made the planned number of lock requests in it."""
        return bool(self.preempt) and self.preempt[:2] == [tid, now[0]] and now[4] >= self.preempt[2]

    def _pause(self, tid: int, what: str, field: int) -> None:
        us, self.preempt[field] = self.preempt[field], 0  # each pause once
        with self.cv:
            self.tl.local(tid, self.cpu, "note", "fuzzy_sync", "jitter", [what, us])
        time.sleep(us / 1e6)
