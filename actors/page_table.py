"""The page-table actor: page tables, PTLs, the rmap, struct folio, the page cache and the disk.

It owns one ``kernel_model.state.State`` (everything but the TLBs and IPIs, which belong to the CPU actors) and
applies ``kernel_model.atomic.PageTableOps``: each message is one atomic step, and each applied step gets the
next global sequence number (gseq) and a Lamport stamp (see ``actors.lamport``).

One actor for all page tables, not one per PTE table (split PTLs): a replay needs *one* order of every
shared-state step, and Lamport stamps from several shards would not give it. A store's ``walk`` on one shard and
a zap on another commute, but ``folio_mkclean`` (rmap walk, i_mmap, folio flags) and zap (PTEs, mapcount, PG_dirty)
touch the same folio from different tables, so shards would have to agree on an order for those anyway. The
PTLs are still split (one per table, ``state.ptl``) exactly as the kernel's.

Blocking steps (spin_lock, folio_lock, down_read, down_write, folio_wait_writeback) never block the actor: one
that cannot proceed is queued as *data* (FIFO) and the call returns QUEUED at once; when a later step makes it
possible, the actor applies it right then (stamped in its place in the global order) and sends the grant to the
waiting CPU as a message. So the actor is a plain synchronous Ray actor: one message at a time, in the order
each caller sent them, which the Lamport stamping relies on, and faster than an async actor (design.md).

s390: ``ptep_get_and_clear_full(va, sync=True)`` must invalidate ``va`` in every TLB in the same atomic step (as
``Machine`` does). TLBs live in other processes, so the actor keeps a per-address *epoch*, bumped by every such
clear; a TLB entry remembers the epoch it was filled at (``walk`` returns it), and every step that would use an
entry carries that epoch. If it changed, the answer is STALE: the CPU drops the entry and the step's result is
what Machine gives for a TLB miss, stamped here, after the clear. Equivalent to an atomic broadcast invalidation
for every observer, and exactly replayable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from actors.codec import BUSY, ERROR, OK, QUEUED, STALE, pack, unpack, unpack_spec, wire
from actors.topology import initial_state
from kernel_model import wait_for
from kernel_model.atomic import LockMisuse, PageTableOps

# Message modes (msg[7]).
PLAIN = "s"  # apply the step
QUEUE = "q"  # a blocking step: apply now or queue FIFO and grant later (SMP: the waiter keeps taking IPIs)
TRY = "t"  # a blocking step: apply now or answer BUSY (arch=up: the one CPU retries after another thread's step)
EPOCH = "e"  # a TLB hit's page-table part: extra = [va, epoch the entry was filled at]
WALK = "w"  # the hardware page walk: the result carries the address's epoch
VALIDATE = "v"  # extra = [[va, epoch], ...]: which entries are stale (s390 flushes and read-only faults)


@dataclass(slots=True)
class Waiter:
    caller: int
    seq: int
    est: int  # the Lamport value the waiter's clock had when it asked (its grant is stamped after it)
    tid: int
    op: str
    args: tuple


class PageTableCore:
    """The actor's logic, without Ray (unit-testable)."""

    def __init__(self, spec: bytes) -> None:
        self.scenario, self.cfg = unpack_spec(spec)
        self.trial = -1
        self.reset(-1)

    def reset(self, trial: int) -> None:
        self.trial = trial
        self.state = initial_state(self.scenario, self.cfg)
        self.ops = PageTableOps(self.state)
        self.lamport = 0
        self.gseq = 0
        # A counter writer's increments (write_page of tlb.INCREMENT) are not progress: the loop goes on while
        # the rest of a hung trial stands still, so the driver's hang watch must not count them.
        self.increments = 0
        self.last: dict[int, int] = {}  # caller -> the last stamp it was given
        self.next_seq: dict[int, int] = {}
        self.epochs = [0] * len(self.state.ptes)
        self.waiters: list[Waiter] = []

    def _stamp(self, caller: int, est: int) -> tuple[int, int]:
        self.lamport = max(self.lamport, est) + 1
        self.gseq += 1
        self.last[caller] = self.lamport
        return self.lamport, self.gseq

    def handle(self, data: bytes) -> tuple[bytes, list[tuple[int, bytes]]]:
        """Apply one message; return the reply and the grants (caller, message) it made possible."""
        trial, caller, seq, base, delta, op, args, mode, extra = unpack(data)
        if trial > self.trial:
            # The first message of a new trial resets the tables: a set's next trial starts only once every CPU
            # has finished the last one (pipelined steps and IPI acks included), so nothing of it can follow.
            # This saves the driver a round trip per trial.
            self.reset(trial)
        if trial != self.trial:
            return pack([ERROR, f"message for trial {trial} reached the page tables of trial {self.trial}"]), []
        expected = self.next_seq.get(caller, 0)
        if seq != expected:
            return pack([ERROR, f"cpu{caller}: message {seq} arrived, expected {expected}"]), []
        self.next_seq[caller] = seq + 1
        est = max(base, self.last.get(caller, 0)) + delta
        args = tuple(args)
        if op == "write_page" and args[1] is None:
            self.increments += 1
        try:
            if mode in (QUEUE, TRY):
                if not getattr(self.ops, "can_" + op)(*args):
                    if mode == TRY:
                        return pack([BUSY, self._holder(op, args), self.gseq]), []
                    self.waiters.append(Waiter(caller, seq, est, args[-1], op, args))
                    return pack([QUEUED]), []
                result = getattr(self.ops, op)(*args)
            elif mode == WALK:
                result = [wire(self.ops.walk(*args)), self.epochs[args[0]]]
            elif mode == EPOCH and self.epochs[extra[0]] != extra[1]:
                lamport, gseq = self._stamp(caller, est)
                return pack([STALE, lamport, gseq]), []
            elif mode == VALIDATE:
                result = [self.epochs[va] != epoch for va, epoch in extra]
            else:
                result = getattr(self.ops, op)(*args)
                if op == "ptep_get_and_clear_full" and args[1]:
                    self.epochs[args[0]] += 1  # s390 IPTE: every TLB's entry for va is now stale
        except (LockMisuse, AttributeError, IndexError, TypeError, ValueError) as exc:
            return pack([ERROR, f"{op}{tuple(args)}: {type(exc).__name__}: {exc}"]), []
        lamport, gseq = self._stamp(caller, est)
        reply = pack([OK, wire(result), lamport, gseq])
        return reply, self._grant_waiters() if self.waiters else []

    def _grant_waiters(self) -> list[tuple[int, bytes]]:
        grants: list[tuple[int, bytes]] = []
        progress = True
        while progress and self.waiters:
            progress = False
            for w in list(self.waiters):
                if getattr(self.ops, "can_" + w.op)(*w.args):
                    result = getattr(self.ops, w.op)(*w.args)
                    lamport, gseq = self._stamp(w.caller, w.est)
                    self.waiters.remove(w)
                    grants.append((w.caller, pack([self.trial, w.seq, wire(result), lamport, gseq])))
                    progress = True
        return grants

    def _holder(self, op: str, args: tuple) -> str:
        """What a blocking step waits for, and who holds it (kernel_model.wait_for's words)."""
        lock = wait_for.lock_wait(self.state, op, args, [t.name for t in self.scenario.threads])
        return lock.what if lock is not None else f"{op}{args}"

    def waits(self) -> list[str]:
        """Who waits for what, and who holds it (for a hung trial's report)."""
        names = [t.name for t in self.scenario.threads]
        return [f"{names[w.tid]} waits in {w.op} for {self._holder(w.op, w.args)}" for w in self.waiters]


class PageTableActor:
    """The Ray actor around PageTableCore (made remote by ``remote_class``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.core: PageTableCore | None = None
        self.cpus: list[Any] = []

    def configure(self, spec: bytes, cpus: list[Any]) -> str:
        self.core = PageTableCore(spec)
        self.cpus = cpus
        return _node_id()

    def reset(self, trial: int) -> None:
        assert self.core is not None
        self.core.reset(trial)

    def step(self, data: bytes) -> bytes:
        assert self.core is not None
        reply, grants = self.core.handle(data)
        for caller, message in grants:
            self.cpus[caller].grant.remote(message)  # fire and forget: the CPU waits for it
        return reply

    def progress(self) -> int:
        return self.core.gseq - self.core.increments if self.core is not None else 0

    def waits(self) -> list[str]:
        return self.core.waits() if self.core is not None else []


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


_remote: dict[str, Callable[..., Any]] = {}


def remote_class() -> Any:
    """The Ray actor class (created lazily: ``import ray`` must come after actors.ray_session set the env)."""
    if "pt" not in _remote:
        import ray

        # num_cpus=0 like the CPU actors: it is one of a trial's set of actors, not a unit of work to pack.
        _remote["pt"] = ray.remote(num_cpus=0, max_restarts=0)(PageTableActor)
    return _remote["pt"]
