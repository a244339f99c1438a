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

Split by concern: this module runs the threads and their steps; ``actors.cpu_link`` is the line to the
page-table actor, ``actors.cpu_ipi`` the TLB shootdown (sending, acks, the IPI handler), ``actors.cpu_up``
arch=up's turn-taking. Test-only faults (a stalled CPU) are in ``actors.fault_injection``, not here.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any, Callable, Final

from actors.codec import BUSY, QUEUED, pack, unpack, unpack_spec, wire
from actors.cpu_align import AlignerHooks
from actors.cpu_ipi import FlushIpis
from actors.cpu_link import PtLink, Stale, TlbProxy
from actors.cpu_up import TrialHung, UpScheduling
from actors.jitter import Jitter
from actors.lamport import Timeline
from actors.page_table import QUEUE, TRY, VALIDATE
from actors.race_windows import SEND_OP, UP_SEND_OP
from actors.topology import Topology, initial_state, programs
from kernel_model import boot, ops
from kernel_model import tlb as tlbops
from kernel_model.steps import Note, Step, kind_of
from kernel_model.syscalls import op_path

# Page-table steps that always return None and never block: the thread need not wait for them (the op table).
PIPELINED_OPS: Final = ops.PIPELINED_OPS

_BUSY: Final = object()  # a tried blocking step could not proceed (arch=up)


class CpuCore(FlushIpis, UpScheduling, AlignerHooks):
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
        self._take_plan([], 0, -1)  # actors.cpu_align: the race-window aligner's plan and measurements
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
        run, trial, seed, jitter_us, *rest = unpack(message)
        self._take_plan(rest, seed, trial)  # actors.fuzzy_sync's plan for this trial (actors.cpu_align)
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
                         "events": self.tl.records + self.foreign, "timing": self.timing})

    def _thread(self, tid: int, jitter: Jitter) -> None:
        setup = self.scenario.setup
        k = boot.thread_context(self.scenario, self.cfg, tid)
        self.timing["start"][tid] = time.monotonic_ns()
        try:
            for pc, op in enumerate(self.programs[tid]):
                with self.cv:
                    (self.bounded_counters.add if op.counts else self.bounded_counters.discard)(tid)
                self._align_delay(tid, pc, op.kind)
                begin = time.monotonic_ns()
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
                self._op_done(tid, pc, begin)
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
        if step.op == SEND_OP or (self.up and step.op == UP_SEND_OP):
            self._preempt_pause(tid, step)
        paused = jitter.pause_before(step.op)  # between instructions: IPIs may land during the pause
        begin = time.monotonic_ns()
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
        self._mark(tid, step, begin, result)
        return result

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

    # --- TLB steps ----------------------------------------------------------------------------------------------
    def _cpu_step(self, tid: int, step: Step) -> Any:
        op, args = step.op, step.args
        p = self.proxy
        p.begin(args[0])
        if op == "store_tlb":
            va, value = args[0], args[1]  # a third, walk: a uniprocessor's miss walks in the same step
            self.increments += value is None
            entry = self.tlb.get(va)
            if self.s390 and entry is not None and not entry.writable:
                p.stamp = self._validate([va])  # the fault below touches no page table: validate it
            try:
                result: Any = tlbops.store_tlb(self.tlb, p, *args)
            except Stale:
                self._drop(va)
                result = "miss"
            if result == "filled":
                self.epochs[va] = p.epoch  # cached by the walk, as walk_fill's entries are
        elif op == "load_tlb":
            try:
                result = tlbops.load_tlb(self.tlb, p, *args)
            except Stale:
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

    # --- observation (the "ctl" group: answers while the thread is stuck) -------------------------------------
    def describe_waits(self) -> list[str]:
        names = [t.name for t in self.scenario.threads]
        waits = [f"{names[tid]} on {self.name} waits for {what}" for tid, what in sorted(self.waiting.items())]
        return waits

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
        """Test-only: in ``trial``, stop taking steps after the first ``op`` step (actors.fault_injection)."""
        from actors.fault_injection import stall_after

        assert self.core is not None
        stall_after(self.core, trial, op)



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
