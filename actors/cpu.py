"""A simulated CPU as a Ray actor: its TLB, the scenario thread(s) it runs, and the flush IPIs it takes.

The actor drives the very kernel paths the controlled machine drives (``kernel_model.syscalls.op_path``), one
step at a time:

- CPU steps (store_tlb, load_tlb, walk_fill, flush_tlb_local) run here on the actor's TLB, through
  ``kernel_model.tlb`` with a proxy for their page-table part (at most one message: a walk, a D-bit set, the
  store or load itself). A TLB miss or a local flush costs no message at all.
- Page-table steps are one message each to the page-table actor. Those whose result is known in advance (unlock,
  set_pte_at, a store through a dirty entry...) are pipelined: sent without waiting (see ``actors.lamport``).
- Blocking steps wait at the page-table actor (queued FIFO, granted by a message), and the CPU keeps taking IPIs
  meanwhile, as a CPU spinning on a PTL keeps servicing interrupts (brief §5).
- flush_tlb_others sends a flush message to every other CPU (mm_cpumask: every CPU but this one, none lazy);
  wait_acks waits for all their acks, taking IPIs meanwhile. The target's handler logs two events, as the
  controlled machine takes two steps: flush_tlb_func's invalidation (ipi_flush), then the ack (ipi_ack, csd_unlock),
  and the reply to the flush message is the ack. Under the ack_before_invalidate mutant the handler acks and
  returns at once, and the invalidation runs later as a task of its own (``late_flush``, queued on this actor's
  IPI group), so the CPU's thread may take steps in between; the ack's reply carries that task's reference, and
  the initiator collects its event before its run ends.
- Blocking steps and wait_acks also log ``wait_ns``: wall-clock nanoseconds from the request (or the start of the
  wait) to the grant (or the last ack). Only ``tlbrace scale`` reads it; replay ignores it.

An IPI lands between two instructions, never inside one: every step runs holding the CPU's ``irq`` lock, and
the IPI handler (its own concurrency group, so it runs while the thread waits) takes the same lock.

arch=up: every thread shares CPU 0, so one actor runs them all as Python threads over one TLB; a step is
the CPU executing one instruction (the lock is held), and a thread holding a PTL is not preempted: the others
take no step until it unlocks (kernel spinlocks disable preemption). Blocking steps are *tried*: when one
cannot proceed the thread sleeps until another thread's step changed something. A state where every thread
waits is a hang.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any, Callable, Final

from actors.codec import BUSY, ERROR, QUEUED, STALE, pack, unpack, unpack_spec, wire
from actors.jitter import Jitter
from actors.lamport import Timeline
from actors.page_table import EPOCH, PLAIN, QUEUE, TRY, VALIDATE, WALK
from actors.topology import Topology, initial_state, programs
from kernel_model import boot, ops
from kernel_model import tlb as tlbops
from kernel_model.steps import Note, Step, kind_of
from kernel_model.syscalls import op_path

# Page-table steps that always return None and never block: the thread need not wait for them (the op table).
PIPELINED_OPS: Final = ops.PIPELINED_OPS

_BUSY: Final = object()  # a tried blocking step could not proceed (arch=up)


class StepFailed(RuntimeError):
    """The page-table actor refused a step (a lock misuse by a path or a mutant)."""


class TrialHung(RuntimeError):
    """Every thread of this CPU waits for another (arch=up deadlock)."""


class _Stale(Exception):
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

    def __init__(self, cpu: "CpuCore") -> None:
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
            raise _Stale()
        self.stamp = (reply[2], reply[3])
        return reply[1]


class CpuCore:
    """The actor's logic. ``peers[c]`` is CPU c's actor handle (this CPU's own entry is unused)."""

    def __init__(self, name: str, cpu: int, spec: bytes, pt: Any, peers: list[Any]) -> None:
        self.name = name
        self.cpu = cpu
        self.scenario, self.cfg = unpack_spec(spec)
        self.topo = Topology.of(self.scenario, self.cfg)
        self.programs = programs(self.scenario)
        self.tids = self.topo.threads_on(cpu)
        self.pt = pt
        self.peers = peers
        self.s390 = self.cfg.arch == "s390"
        self.up = self.cfg.arch == "up"
        # The no_ipi_while_spinning mutant: the CPU keeps its irq lock while it spins or waits for acks.
        self.hold_irq_while_waiting = self.cfg.has("no_ipi_while_spinning")
        self.irq = threading.Lock()
        self.cv = threading.Condition(self.irq)
        self.grant_cv = threading.Condition()
        self.trial = -1
        self.tl = Timeline(run="", trial=-1, actor=name)
        self.waiting: dict[int, str] = {}
        self.irq_jitter = Jitter(0, 0, -1, cpu, -1)
        # Test-only fault hook (``stall``): in that trial, stop taking steps after the first step with that op.
        self.stall_at: tuple[int, str] | None = None
        self.stalled: str | None = None
        self._reset(-1, "")

    # --- one trial ----------------------------------------------------------------------------------------------
    def _reset(self, trial: int, run: str) -> None:
        self.trial = trial
        self.tl = Timeline(run=run, trial=trial, actor=self.name)
        self.tlb = dict(initial_state(self.scenario, self.cfg).tlbs[self.cpu])
        self.epochs: dict[int, int] = {va: 0 for va in self.tlb}
        self.link = PtLink(self.pt, self.cpu, trial, self.tl)
        self.proxy = TlbProxy(self)
        self.grants: dict[int, list] = {}
        self.acks: dict[int, list[Any]] = {tid: [] for tid in self.tids}
        self.late_flushes: list[Any] = []  # ack_before_invalidate: refs of targets' late_flush tasks
        self.foreign: list[dict[str, Any]] = []  # IPI events other CPUs returned with their acks
        self.ptl_holder: int | None = None
        self.ptl_depth = 0
        self.blocked: set[int] = set()
        self.turn_waiting: set[int] = set()
        self.unfinished = set(self.tids)
        self.hung = False
        self.error: str | None = None
        self.steps = 0
        self.increments = 0
        self.waiting = {}
        # no_ipi_while_spinning: each thread's next step (None: not known yet, between two steps). The controlled
        # machine refuses an IPI while a thread's next step is a spin_lock or wait_acks that cannot proceed, and
        # a thread always has a next step there; so that every wild run replays, this CPU takes no IPI until
        # each thread's next step is known and is neither (stricter, never looser, than the machine).
        self.next_op: dict[int, str | None] = {tid: None for tid in self.tids}
        self.bounded_counters: set[int] = set()  # threads now running a counter with a bound (Op.counts)

    def run(self, message: bytes) -> bytes:
        run, trial, seed, jitter_us = unpack(message)
        with self.cv:
            self._reset(trial, run)
            self.irq_jitter = Jitter(jitter_us, seed, trial, self.cpu, -1)
            self.cv.notify_all()  # an IPI of this trial may already be waiting for the reset
        threads = [threading.Thread(target=self._thread, args=(tid, Jitter(jitter_us, seed, trial, self.cpu, tid)),
                                    name=f"{self.name}-t{tid}") for tid in self.tids[1:]]
        for t in threads:
            t.start()
        if self.tids:
            self._thread(self.tids[0], Jitter(jitter_us, seed, trial, self.cpu, self.tids[0]))
        for t in threads:
            t.join()
        self._collect_late_flushes()
        with self.cv:
            try:
                self.tl.resolve()
            except Exception as exc:  # noqa: BLE001 - a pipelined step failed: the trial crashed
                self.error = self.error or f"{type(exc).__name__}: {exc}"
            status = "error" if self.error else "hung" if self.hung else "ok"
            return pack({"status": status, "error": self.error, "steps": self.steps, "waits": self.describe_waits(),
                         "events": self.tl.records + self.foreign})

    def _thread(self, tid: int, jitter: Jitter) -> None:
        setup = self.scenario.setup
        k = boot.thread_context(self.scenario, self.cfg, tid)
        try:
            for pc, op in enumerate(self.programs[tid]):
                with self.cv:
                    (self.bounded_counters.add if op.counts else self.bounded_counters.discard)(tid)
                gen = op_path(k, op, pc, setup.pages)
                value: Any = None
                while True:
                    try:
                        item = gen.send(value)
                    except StopIteration:
                        break
                    if isinstance(item, Note):
                        with self.cv:
                            self.tl.local(tid, self.cpu, "note", item.fn, item.op, wire(item.args))
                        value = None
                    else:
                        value = self._step(tid, item, jitter)
        except TrialHung:
            pass
        except Exception as exc:  # noqa: BLE001 - reported as the trial's crash, with the actor's name
            with self.cv:
                self.error = self.error or f"{type(exc).__name__}: {exc} {traceback.format_exc()[-800:]}"
                self.hung = self.hung or self.up  # the other threads of this CPU cannot go on either
                self.cv.notify_all()
        finally:
            with self.cv:
                self.unfinished.discard(tid)
                self.next_op.pop(tid, None)
                self.cv.notify_all()

    # --- one step -------------------------------------------------------------------------------------------------
    def _step(self, tid: int, step: Step, jitter: Jitter) -> Any:
        if self.hold_irq_while_waiting:
            with self.cv:
                self.next_op[tid] = step.op
                self.cv.notify_all()
        paused = jitter.pause_before(step.op)  # between instructions: IPIs may land during the pause
        with self.cv:
            if paused:
                self.tl.local(tid, self.cpu, "note", step.fn, "jitter", [step.op, paused])
            while True:
                if self.up:
                    self._wait_turn(tid)
                result = self._execute(tid, step)
                if result is not _BUSY:
                    break
                self._wait_for_change(tid, step)
            self.steps += 1
            if self.up:
                self._after_up_step(tid, step)
            # A counter increment that landed is followed by another one (counter_increment loops), so that
            # next step is known: a no_ipi_while_spinning CPU may take IPIs between turns of the loop, which
            # would otherwise keep its irqs off almost all the time (the machine takes them there too).
            looping = (step.op == "store_tlb" and step.args[1] is None and result == "stored"
                       and tid not in self.bounded_counters)  # a bounded counter's last turn is followed by others
            self.next_op[tid] = "store_tlb" if looping else None
        if self.stall_at == (self.trial, step.op):
            self._stall(tid, step)
        return result

    def _stall(self, tid: int, step: Step) -> None:
        """The test-only hang: this CPU stops taking steps (irqs on, so it still takes IPIs), as if its vCPU
        were never scheduled again. The campaign kills the actor when it reports the trial hung."""
        with self.cv:
            names = [t.name for t in self.scenario.threads]
            self.stalled = f"{names[tid]} on {self.name} stopped taking steps after {step.op} in {step.fn}"
        threading.Event().wait()

    def _execute(self, tid: int, step: Step) -> Any:
        op = step.op
        kind = kind_of(op)
        if kind == "cpu":
            return self._cpu_step(tid, step)
        if kind == "ipi":
            return self._send_ipis(tid, step)
        if op == "wait_acks":
            return self._wait_acks(tid, step)
        if kind == "block":
            return self._blocking(tid, step)
        return self._pt_step(tid, step)

    def _pt_step(self, tid: int, step: Step) -> Any:
        args = wire(step.args)
        if step.op in PIPELINED_OPS:
            ref = self.link.post(step.op, args)
            self.tl.pipelined(tid, self.cpu, step.fn, step.op, args, None, ref)
            return None
        reply = self.link.call(step.op, args)
        self.tl.stamped(tid, self.cpu, "step", step.fn, step.op, args, reply[1], reply[2], reply[3])
        return reply[1]

    def _blocking(self, tid: int, step: Step) -> Any:
        args = wire(step.args)
        seq = self.link.seq
        asked = time.perf_counter_ns()
        reply = self.link.call(step.op, args, TRY if self.up else QUEUE)
        if reply[0] == BUSY:
            self.waiting[tid] = f"{step.op} in {step.fn}: {reply[1]} (page-table gseq {reply[2]})"
            return _BUSY
        if reply[0] == QUEUED:
            hold = self.hold_irq_while_waiting and step.op == "spin_lock"
            grant = self._wait(tid, f"{step.op}{tuple(step.args)}", hold, lambda: self._take_grant(seq))
            result, lamport, gseq = grant[2], grant[3], grant[4]
        else:
            result, lamport, gseq = reply[1], reply[2], reply[3]
        self.tl.stamped(tid, self.cpu, "step", step.fn, step.op, args, result, lamport, gseq)
        self.tl.records[-1]["wait_ns"] = time.perf_counter_ns() - asked  # request to grant, wall clock
        return result

    def _take_grant(self, seq: int) -> list:
        with self.grant_cv:
            while seq not in self.grants:
                self.grant_cv.wait()
            return self.grants.pop(seq)

    def grant(self, message: bytes) -> None:
        """From the page-table actor: a queued blocking step of this CPU has been applied."""
        reply = unpack(message)
        with self.grant_cv:
            if reply[0] == self.trial:
                self.grants[reply[1]] = reply
                self.grant_cv.notify_all()

    def _wait(self, tid: int, what: str, hold: bool, wait: Callable[[], Any]) -> Any:
        """Wait with the irq lock released (IPIs are taken meanwhile), unless ``hold``."""
        self.waiting[tid] = what
        if not hold:
            self.irq.release()
        try:
            return wait()
        finally:
            if not hold:
                self.irq.acquire()
            self.waiting.pop(tid, None)

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
        paused = self.irq_jitter.pause_before("ipi_flush")  # the IPI still in flight: the thread runs on
        with self.cv:
            if self.trial != trial:
                return pack([sent_at, []]), None
            while self.hold_irq_while_waiting and self._irqs_off() and self.trial == trial:
                self.cv.wait()
            if self.trial != trial:
                return pack([sent_at, []]), None
            if paused:
                self.tl.local(initiator, self.cpu, "note", "flush_tlb_func", "jitter", ["ipi_flush", paused])
            if self.cfg.has("ack_before_invalidate"):
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

    # --- TLB steps ----------------------------------------------------------------------------------------------
    def _cpu_step(self, tid: int, step: Step) -> Any:
        op, args = step.op, step.args
        p = self.proxy
        p.begin(args[0])
        if op == "store_tlb":
            va, value = args
            self.increments += value is None
            entry = self.tlb.get(va)
            if self.s390 and entry is not None and not entry.writable:
                p.stamp = self._validate([va])  # the fault below touches no page table: validate it
            try:
                result: Any = tlbops.store_tlb(self.tlb, p, va, value)
            except _Stale:
                self._drop(va)
                result = "miss"
        elif op == "load_tlb":
            try:
                result = tlbops.load_tlb(self.tlb, p, *args)
            except _Stale:
                self._drop(args[0])
                result = None
        elif op == "walk_fill":
            result = tlbops.walk_fill(self.tlb, p, *args)
            if result:
                self.epochs[args[0]] = p.epoch
        else:  # flush_tlb_local
            start, end = args
            if self.s390 and any(start <= va < end for va in self.tlb):
                p.stamp = self._validate([va for va in self.tlb if start <= va < end])
            result = tlbops.flush_tlb_range(self.tlb, start, end)
        wargs = wire(args)
        if p.ref is not None:
            self.tl.pipelined(tid, self.cpu, step.fn, op, wargs, result, p.ref)
        elif p.stamp is not None:
            self.tl.stamped(tid, self.cpu, "step", step.fn, op, wargs, result, p.stamp[0], p.stamp[1])
        else:
            self.tl.local(tid, self.cpu, "step", step.fn, op, wargs, result)
        return result

    def _validate(self, vas: list[int]) -> tuple[int, int]:
        """s390: drop the entries a synchronous clear invalidated since they were filled; one stamped message."""
        reply = self.link.call("validate", [], VALIDATE, [[va, self.epochs.get(va, 0)] for va in vas])
        for va, stale in zip(vas, reply[1]):
            if stale:
                self._drop(va)
        return reply[2], reply[3]

    def _drop(self, va: int) -> None:
        self.tlb.pop(va, None)
        self.epochs.pop(va, None)

    # --- arch=up: one CPU, several threads ---------------------------------------------------------------------
    def _wait_turn(self, tid: int) -> None:
        """A thread holding a PTL is not preempted: nobody else steps until it unlocks."""
        while self.ptl_holder not in (None, tid):
            self.turn_waiting.add(tid)
            try:
                self._check_stuck()
                self.cv.wait(0.5)
            finally:
                self.turn_waiting.discard(tid)

    def _wait_for_change(self, tid: int, step: Step) -> None:
        self.blocked.add(tid)  # until the next step of any thread (which clears the set)
        self._check_stuck()
        self.cv.wait(0.5)

    def _check_stuck(self) -> None:
        """Hung when every unfinished thread either failed its blocking step since the last step anyone took, or
        waits for a PTL holder to unlock (judged now: a waiter may not have woken up yet)."""
        if self.hung:
            raise TrialHung()
        waiting_turn = {t for t in self.turn_waiting if self.ptl_holder not in (None, t)}
        if self.unfinished and self.unfinished <= (self.blocked | waiting_turn):
            self.hung = True
            self.cv.notify_all()
            raise TrialHung()

    def _after_up_step(self, tid: int, step: Step) -> None:
        if step.op == "spin_lock":
            self.ptl_holder, self.ptl_depth = tid, self.ptl_depth + 1
        elif step.op == "spin_unlock" and self.ptl_holder == tid:
            self.ptl_depth -= 1
            if self.ptl_depth == 0:
                self.ptl_holder = None
        self.blocked.discard(tid)
        self.blocked.clear()  # something changed: every waiter retries
        self.waiting.pop(tid, None)
        self.cv.notify_all()

    # --- observation (the "ctl" group: answers while the thread is stuck) -------------------------------------
    def describe_waits(self) -> list[str]:
        names = [t.name for t in self.scenario.threads]
        waits = [f"{names[tid]} on {self.name} waits for {what}" for tid, what in sorted(self.waiting.items())]
        return ([self.stalled] if self.stalled else []) + waits

    def progress(self) -> int:
        """Events so far, a counter loop's increments excepted (see PageTableCore.increments)."""
        return len(self.tl.records) - self.increments

    def snapshot(self) -> bytes:
        return pack({"events": self.tl.snapshot() + list(self.foreign), "waits": self.describe_waits()})


class CpuActor:
    """The Ray actor around CpuCore (made remote by ``remote_class``)."""

    def __init__(self, name: str, cpu: int) -> None:
        self.name = name
        self.cpu = cpu
        self.core: CpuCore | None = None

    def configure(self, spec: bytes, pt: Any, peers: list[Any]) -> str:
        import ray

        self.core = CpuCore(self.name, self.cpu, spec, pt, peers)
        return ray.get_runtime_context().get_node_id()

    def run(self, message: bytes) -> bytes:
        assert self.core is not None
        return self.core.run(message)

    def ipi(self, message: bytes) -> tuple[bytes, Any]:
        assert self.core is not None
        return self.core.ipi(message)

    def late_flush(self, message: bytes) -> bytes:
        assert self.core is not None
        return self.core.late_flush(message)

    def grant(self, message: bytes) -> None:
        assert self.core is not None
        self.core.grant(message)

    def progress(self) -> int:
        return self.core.progress() if self.core is not None else 0

    def snapshot(self) -> bytes:
        assert self.core is not None
        return self.core.snapshot()

    def stall(self, trial: int, op: str) -> None:
        """Test-only fault hook: in ``trial``, stop taking steps after the first ``op`` step."""
        assert self.core is not None
        self.core.stall_at = (trial, op)


_remote: dict[str, Any] = {}


def remote_class() -> Any:
    """The Ray actor class, created lazily (``import ray`` must follow actors.ray_session's environment).

    Concurrency groups, one thread each: ``run`` (default) drives the thread(s); ``ipi`` takes flush IPIs while
    ``run`` waits on a lock or for acks; ``grant`` receives lock grants (it must not wait behind an IPI that waits
    for the irq lock); ``ctl`` answers progress and snapshot queries from the driver even when the CPU is stuck."""
    if "cpu" not in _remote:
        import ray

        for method, group in (("ipi", "ipi"), ("late_flush", "ipi"), ("grant", "grant"), ("progress", "ctl"),
                              ("snapshot", "ctl"), ("stall", "ctl")):
            ray.method(concurrency_group=group)(getattr(CpuActor, method))  # marks the function in place
        _remote["cpu"] = ray.remote(num_cpus=0, max_restarts=0,
                                    concurrency_groups={"ipi": 1, "grant": 1, "ctl": 1})(CpuActor)
    return _remote["cpu"]
