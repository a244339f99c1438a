"""A CPU actor's event timeline and its Lamport clock, with page-table messages in flight.

Replay needs one total order of all events that respects every conflict: the page-table actor's order for
shared state, each CPU's order for its TLB, and IPI send → flush_tlb_func → ack → wait_acks. Sorting by
(lamport, actor, seq) gives it if the clocks are assigned like this:

- a step applied by the page-table actor takes the *page-table actor's* clock at the moment it applies it
  (so page-table order is Lamport order);
- a CPU-local step (a TLB hit that needs no shared state, a note) takes the CPU's clock + 1;
- an IPI, an ack or a grant is merged: clock = max(own, received) before the next event.

Steps whose result is known in advance (spin_unlock, folio_unlock, a store through a dirty entry...) are sent
without waiting (pipelined). Their Lamport value is only known when the reply arrives, so the CPU cannot compute
the clocks of the local events that follow them yet. Instead every page-table message carries ``base`` (the
CPU's exact clock at its last resolve point) and ``delta`` (local events since its last stamped step or resolve
point); the page-table actor remembers the last value it gave each CPU and stamps the message with
``max(own, max(base, last_given) + delta) + 1``, which is exactly what the CPU's clock would have been. The CPU
fills the local events' clocks in later (``resolve``). It must resolve before anything leaves for another CPU
(an IPI, an ack), so that what it sends is exact.
"""

from __future__ import annotations

import threading
from typing import Any


class Timeline:
    def __init__(self, *, run: str, trial: int, actor: str) -> None:
        self.run = run
        self.trial = trial
        self.actor = actor
        self.records: list[dict[str, Any]] = []
        self.pending: list[tuple[int, Any]] = []  # (record index, ObjectRef of a pipelined step's reply)
        self.clock = 0  # exact clock after records[:resolved]
        self.resolved = 0
        self.base = 0
        self.delta = 0
        self.lock = threading.Lock()  # appends vs. a snapshot taken from another concurrency group

    # --- recording --------------------------------------------------------------------------------------
    def _record(self, tid: int, cpu: int, kind: str, fn: str, op: str, args: Any, result: Any,
                lamport: int | None, gseq: int | None) -> dict[str, Any]:
        rec = {"type": "event", "run": self.run, "trial": self.trial, "actor": self.actor, "tid": tid, "cpu": cpu,
               "kind": kind, "fn": fn, "op": op, "args": args, "result": result, "seq": len(self.records),
               "lamport": lamport, "gseq": gseq}
        with self.lock:
            self.records.append(rec)
        return rec

    def local(self, tid: int, cpu: int, kind: str, fn: str, op: str, args: Any, result: Any = None) -> None:
        """A step or note that touched only this CPU: its clock is the CPU's + 1 (filled in when resolved)."""
        self._record(tid, cpu, kind, fn, op, args, result, None, None)
        self.delta += 1
        if not self.pending:
            self._walk()

    def stamped(self, tid: int, cpu: int, kind: str, fn: str, op: str, args: Any, result: Any, lamport: int,
                gseq: int) -> None:
        """A step the page-table actor applied and stamped (including a grant of a queued blocking step)."""
        self._record(tid, cpu, kind, fn, op, args, result, lamport, gseq)
        self.delta = 0
        if not self.pending:
            self._walk()

    def pipelined(self, tid: int, cpu: int, fn: str, op: str, args: Any, result: Any, ref: Any) -> None:
        """A step sent without waiting: its stamp arrives with the reply."""
        rec = self._record(tid, cpu, "step", fn, op, args, result, None, None)
        self.pending.append((rec["seq"], ref))
        self.delta = 0

    def merged(self, tid: int, cpu: int, kind: str, fn: str, op: str, args: Any, result: Any,
               received: int) -> int:
        """An event that follows a message from another CPU (an IPI taken, acks collected, IPIs sent):
        clock = max(own, received) + 1. Resolves first, so the returned clock is exact and may be sent on."""
        self.resolve()
        self.clock = max(self.clock, received) + 1
        self._record(tid, cpu, kind, fn, op, args, result, self.clock, None)
        self.resolved = len(self.records)
        self.base, self.delta = self.clock, 0
        return self.clock

    def merge(self, received: int) -> None:
        """Take in a clock received with a message (before a stamped event that follows it)."""
        self.resolve()
        self.clock = max(self.clock, received)
        self.base, self.delta = self.clock, 0

    def pt_clock(self) -> tuple[int, int]:
        """What a page-table message carries so that the actor can stamp it exactly (see module doc)."""
        return self.base, self.delta

    # --- resolving ----------------------------------------------------------------------------------------
    def resolve(self) -> None:
        """Wait for the replies of pipelined steps, then fill in every clock. They are non-blocking page-table
        steps, so this always completes."""
        if self.pending:
            import ray

            from actors.codec import ERROR, unpack

            replies = ray.get([ref for _, ref in self.pending])
            for (index, _), data in zip(self.pending, replies):
                reply = unpack(data)
                if reply[0] == ERROR:
                    raise PipelinedStepFailed(f"{self.records[index]['op']}: {reply[1]}")
                self.records[index]["lamport"], self.records[index]["gseq"] = reply[2], reply[3]
            self.pending = []
        self._walk()

    def _walk(self) -> None:
        for rec in self.records[self.resolved:]:
            if rec["lamport"] is None:
                self.clock += 1
                rec["lamport"] = self.clock
            else:
                self.clock = max(self.clock, rec["lamport"])
        self.resolved = len(self.records)
        self.base, self.delta = self.clock, 0

    def snapshot(self) -> list[dict[str, Any]]:
        """The records so far with clocks filled in, for a trial that hung (taken from another thread: it
        leaves the live timeline alone)."""
        with self.lock:
            records = [dict(r) for r in self.records]
            pending = list(self.pending)
        clock = 0
        import ray

        from actors.codec import unpack

        try:
            replies = ray.get([ref for _, ref in pending], timeout=5) if pending else []
        except Exception:  # noqa: BLE001 - a snapshot is best effort
            replies = []
        for (index, _), data in zip(pending, replies):
            reply = unpack(data)
            if len(reply) >= 4 and index < len(records):
                records[index]["lamport"], records[index]["gseq"] = reply[2], reply[3]
        for rec in records:
            if rec["lamport"] is None:
                clock += 1
                rec["lamport"] = clock
            else:
                clock = max(clock, rec["lamport"])
        return records


class PipelinedStepFailed(RuntimeError):
    """A step sent without waiting failed at the page-table actor (a lock misuse by a path or a mutant)."""
