"""One trial: a scenario run to quiescence on one set of actors, then judged by replay.

An ``ActorSet`` is one page-table actor and one CPU actor per simulated CPU, configured once and reused from
trial to trial (reset, not recreated). A ``RunningTrial`` starts the CPUs and is polled by the campaign: it ends
when every CPU has run its threads to the end; it is *hung* when nothing has moved for ``hang_timeout``
seconds; it is *crashed* when an actor died or refused a step, named with the actor (the one Ray says is dead,
not the CPU that noticed) and Ray's error. A set that hung or crashed is killed and replaced: a stuck or dead
actor is never reused.

A hung trial is explained in ``Machine.hang_report``'s words: its records so far are replayed into a controlled
machine, which then says who waits in which function for which PTL, folio lock or acks, who holds them, and the
wait-for cycle if there is one (a deadlock of the kernel model: the replay reports the invariant ``hang``). A
hang with no cycle in the model (an actor that stopped taking steps) is the runtime's, not the kernel's.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from actors import cpu as cpu_actor
from actors import page_table as pt_actor
from actors.codec import pack, pack_spec, unpack
from actors.ray_session import ClusterLost
from actors.topology import Topology
from actors.verdict import judge, ordered
from controlled.linearize import schedule_from_records
from controlled.machine import Machine
from controlled.positions import IpiStep, ThreadStep
from kernel_model import wait_for
from kernel_model.config import Config
from kernel_model.events import Violation
from kernel_model.program import Scenario
from kernel_model.steps import Step, kind_of


@dataclass(slots=True)
class TrialResult:
    trial: int
    status: str  # "ok" | "violation" | "hung" | "crashed" | "diverged"
    violations: list[Violation] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)  # in replay order
    steps: int = 0
    nodes: tuple[str, ...] = ()
    actor: str | None = None  # the actor that died or failed (crashed)
    detail: str = ""  # crash error, who waits for whom, or the replay divergence
    seconds: float = 0.0
    seed: int = 0  # the trial's own seed (its jitter)
    timing: list[dict[str, Any]] = field(default_factory=list)  # each CPU's op windows (actors.fuzzy_sync)

    @property
    def failed(self) -> bool:
        return self.status != "ok"


# How long a set's actors may take to start and be configured. Workers start in a second or two here, tens of
# seconds on a loaded machine; a set that takes longer will not start: its node is gone (a raylet killed or out of
# file descriptors: the campaign's replacement set waited for ever in ray.get, deaf to Ctrl-C and SIGTERM).
ACTOR_START_TIMEOUT_S = 120.0


class ActorsUnavailable(ClusterLost):
    """A set of actors did not start within ACTOR_START_TIMEOUT_S; the message is one line for the user. A
    ClusterLost: the cluster can no longer run the command's actors (exit 3, cli.main)."""


class ActorSet:
    def __init__(self, index: int, scenario: Scenario, cfg: Config, node: str | None = None) -> None:
        import ray

        self.index = index
        self.topo = Topology.of(scenario, cfg)
        options: dict[str, Any] = {}
        if node is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
        spec = pack_spec(scenario, cfg)
        self.pt = pt_actor.remote_class().options(**options).remote("pt")
        self.cpus = [cpu_actor.remote_class().options(**options).remote(f"cpu{c}", c)
                     for c in range(self.topo.ncpus)]
        self._configured = [self.pt.configure.remote(spec, self.cpus)] + [c.configure.remote(spec, self.pt, self.cpus)
                                                                          for c in self.cpus]
        self._nodes: tuple[str, ...] | None = None
        self.names = ["pt"] + [f"cpu{c}" for c in range(self.topo.ncpus)]

    @property
    def nodes(self) -> tuple[str, ...]:
        """The node of each actor (pt, cpu0, ...); waits until the set is configured (creating several sets
        first and asking this afterwards lets their workers start in parallel)."""
        if self._nodes is None:
            import ray

            deadline = time.monotonic() + ACTOR_START_TIMEOUT_S
            # ray.wait with a timeout, again and again: a Ctrl-C gets through between two waits.
            while len(ray.wait(self._configured, num_returns=len(self._configured), timeout=1.0)[0]) < len(
                    self._configured):
                if time.monotonic() > deadline:
                    raise ActorsUnavailable(
                        f"the {len(self._configured)} actors of trial set {self.index} did not start within "
                        f"{ACTOR_START_TIMEOUT_S:.0f} s: the Ray node that should run them is gone, or cannot start "
                        f"worker processes (memory, `ulimit -n`, `ulimit -u`)")
            self._nodes = tuple(ray.get(self._configured))
        return self._nodes

    def pid(self, name: str) -> int:
        """The process id of one actor of the set (test fault injection: SIGSTOP it). Asked while it is idle."""
        import ray

        return int(ray.get(self.actor(name).__ray_call__.remote(lambda _self: os.getpid()), timeout=30))

    def actor(self, name: str) -> Any:
        return self.pt if name == "pt" else self.cpus[int(name[3:])]

    def kill(self) -> None:
        import ray

        for a in [self.pt, *self.cpus]:
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead
                pass


class RunningTrial:
    def __init__(self, actors: ActorSet, scenario: Scenario, cfg: Config, *, run: str, trial: int, seed: int,
                 jitter_us: float, hang_timeout: float, plan: list[Any] | None = None) -> None:
        import ray

        self.actors = actors
        self.scenario = scenario
        self.cfg = cfg
        self.trial = trial
        self.seed = seed
        self.hang_timeout = hang_timeout
        self.started = time.monotonic()
        actors.nodes  # noqa: B018 - configured before the first trial
        # plan: the race-window aligner's [delays, preempt, ipi latency] (actors.fuzzy_sync.TrialPlan.wire)
        message = pack([run, trial, seed, jitter_us, *(plan or [])])
        self.refs = [c.run.remote(message) for c in actors.cpus]
        self.outputs: dict[int, Any] = {}
        self.progress_value = -1
        self.progress_at = self.started
        self._probe: list[Any] | None = None  # progress queries in flight (never waited on: a stopped actor)
        self._probe_sent = self.started
        self.result: TrialResult | None = None

    # --- polling ------------------------------------------------------------------------------------------------
    def pending_refs(self) -> list[Any]:
        return [] if self.result is not None else [r for i, r in enumerate(self.refs) if i not in self.outputs]

    def poll(self) -> bool:
        """Collect what has finished; True once the trial has a result (ok, violation, crashed or hung)."""
        import ray

        if self.result is not None:
            return True
        pending = [r for i, r in enumerate(self.refs) if i not in self.outputs]
        done, _ = ray.wait(pending, num_returns=len(pending), timeout=0)
        for ref in done:
            i = self.refs.index(ref)
            try:
                out = unpack(ray.get(ref))
            except Exception as exc:  # noqa: BLE001 - the actor died (or its task failed): the trial crashed
                self._crashed(f"cpu{i}", exc)
                return True
            self.outputs[i] = out
            if out["status"] == "error":
                self._crashed_in(f"cpu{i}", out["error"])
                return True
        if len(self.outputs) == len(self.refs):
            outs = self.outputs.values()
            hung = any(out["status"] == "hung" for out in outs)  # arch=up: the CPU saw all its threads wait
            self._finish([e for out in outs for e in out["events"]], finished=not hung,
                         waits="; ".join(w for out in outs for w in out["waits"]))
            assert self.result is not None
            self.result.timing = [out.get("timing") or {} for out in outs]
            return True
        self._check_hang()
        return self.result is not None

    def _check_hang(self) -> None:
        """Progress is asked of every actor without waiting for the answer: an actor that cannot answer (a stopped
        process, a lost message) must not stall the campaign's loop. An answer counts for the moment its question
        was sent (the loop may have been busy since, and the answer is then old news); a question unanswered for
        ``hang_timeout`` counts as no progress."""
        import ray

        now = time.monotonic()
        if self._probe is not None:
            ready, _ = ray.wait(self._probe, num_returns=len(self._probe), timeout=0)
            if len(ready) == len(self._probe):
                try:
                    value = sum(ray.get(self._probe))
                except Exception:  # noqa: BLE001 - a dead actor: the run refs report the crash
                    value = self.progress_value
                sent, self._probe = self._probe_sent, None
                if value != self.progress_value:
                    self.progress_value, self.progress_at = value, sent
                elif sent - self.progress_at >= self.hang_timeout:
                    self._hung()
                    return
            elif now - self._probe_sent >= self.hang_timeout and now - self.progress_at >= self.hang_timeout:
                self._hung()  # an actor has not answered for hang_timeout: stopped, or its messages lost
                return
        if self._probe is None and now - self._probe_sent >= min(0.5, self.hang_timeout):
            self._probe = [self.actors.pt.progress.remote()] + [c.progress.remote() for c in self.actors.cpus]
            self._probe_sent = now

    # --- endings ------------------------------------------------------------------------------------------------
    def _finish(self, records: list[dict[str, Any]], *, finished: bool, waits: str = "") -> None:
        seconds = time.monotonic() - self.started
        events = _dedup(records)
        verdict = judge(self.scenario, self.cfg, events, finished=finished)
        steps = sum(1 for e in events if e["kind"] == "step")
        if not finished:  # a hang first: the records of a stopped actor are missing, so its replay diverges
            report = next((v.detail for v in verdict.violations if v.invariant == "hang"), None)
            status = "hung"
            detail = f"{report or wait_for_report(self.scenario, self.cfg, events)} (actors: {waits})"
            if verdict.divergence is not None:
                detail += f" (replay of the records so far: {verdict.divergence})"
        elif verdict.divergence is not None:
            status, detail = "diverged", verdict.divergence
        elif verdict.violations:
            status, detail = "violation", verdict.violations[0].detail
        else:
            status, detail = "ok", ""
        self.result = TrialResult(self.trial, status, verdict.violations, ordered(events), steps,
                                  self.actors.nodes, None, detail, seconds, self.seed)

    def _hung(self) -> None:
        import ray

        records: list[dict[str, Any]] = []
        waits: list[str] = []
        # Every actor is asked at once, and all answers share one deadline: a stopped actor costs that deadline
        # once, not once per actor. A finished CPU is asked too: the flush IPIs it took after its threads ended
        # are in its timeline, and their acks may never have reached an initiator still waiting for another's.
        snaps = [c.snapshot.remote() for c in self.actors.cpus]
        pt_waits = self.actors.pt.waits.remote()
        deadline = time.monotonic() + min(10.0, max(1.0, self.hang_timeout))
        for i, ref in enumerate(snaps):
            if i in self.outputs:
                records.extend(self.outputs[i]["events"])
            try:
                snap = unpack(ray.get(ref, timeout=max(0.0, deadline - time.monotonic())))
                records.extend(snap["events"])
                waits.extend(snap["waits"])
            except Exception as exc:  # noqa: BLE001
                if i not in self.outputs:
                    waits.append(f"cpu{i} did not answer: {type(exc).__name__}")
        try:
            waits.extend(ray.get(pt_waits, timeout=max(0.0, deadline - time.monotonic())))
        except Exception:  # noqa: BLE001
            waits.append("pt did not answer")
        self._finish(records, finished=False, waits="; ".join(dict.fromkeys(waits)) or "no progress")

    def _crashed(self, actor: str, exc: BaseException) -> None:
        self._crashed_in(actor, f"{type(exc).__name__}: {exc}")

    def _crashed_in(self, actor: str, error: str) -> None:
        dead = self._dead_actor()
        if dead is not None and dead != actor:
            actor, error = dead, f"{error} (reported by {actor})"
        error = " ".join(error.split())[:400]
        self.result = TrialResult(self.trial, "crashed", [], [], 0, self.actors.nodes, actor,
                                  f"trial {self.trial}: actor {actor} crashed: {error}",
                                  time.monotonic() - self.started, self.seed)

    def _dead_actor(self) -> str | None:
        """The actor Ray says is dead, if any: a CPU that lost its page-table actor fails its step, but the
        crash is the page-table actor's."""
        import ray
        from ray.exceptions import RayActorError

        names = self.actors.names
        refs = [self.actors.actor(name).progress.remote() for name in names]
        for name, ref in zip(names, refs):
            try:
                ray.get(ref, timeout=5)
            except RayActorError:
                return name
            except Exception:  # noqa: BLE001 - slow or stuck, not known dead
                continue
        return None

    @property
    def set_is_reusable(self) -> bool:
        """Only a set whose trial ended normally is reset and reused: after a hang, a crash or a divergence an
        actor may be stuck, dead or in a state its reset does not undo."""
        return self.result is not None and self.result.status in ("ok", "violation")


def wait_for_report(scenario: Scenario, cfg: Config, records: list[dict[str, Any]]) -> str:
    """Who waits for whom at the moment a trial stopped moving, in ``Machine.hang_report``'s words
    (kernel_model.wait_for): the records so far replayed into a controlled machine, then each unfinished thread's
    wait (or that it could run but its CPU took no step), the locks held, and the wait-for cycle if there is one."""
    m = Machine(scenario, cfg)
    for tr in schedule_from_records(records):
        if m.can_execute(tr):
            m.execute(tr)
    names = [t.name for t in scenario.threads]
    edges: dict[int, list[int]] = {}
    parts = [_thread_wait(m, tid, p.step, names, edges) for tid, p in enumerate(m.pos) if p.step is not None]
    report = "; ".join(parts + wait_for.locks_held(m.state, names)) or "every thread finished in the replay"
    return report + wait_for.cycle_text(edges, names)


def _thread_wait(m: Machine, tid: int, step: Step, names: list[str], edges: dict[int, list[int]]) -> str:
    """One unfinished thread's part of wait_for_report; its wait-for edges go into ``edges``."""
    if m.can_execute(ThreadStep(tid)):
        return f"{names[tid]} could take {step.op} in {step.fn} but its CPU took no step"
    if step.op == "wait_acks":
        late = [c for c in wait_for.ipi_targets(m.state, tid) if m.can_execute(IpiStep(c, tid))]
        if late:  # the target could take the IPI: its actor did not (not the mutant's irqs-off spin)
            return (f"{names[tid]} waits in {step.fn} for flush IPI acks from CPU {', '.join(map(str, late))}, "
                    "which took no IPI")
    if kind_of(step.op) == "block":  # wait_acks included
        what, holders = m.wait_target(tid, step)  # the words (and wait-for edges) of hang_report
        edges[tid] = holders
        return f"{names[tid]} waits in {step.fn} for {what}"
    return f"{names[tid]} waits in {step.fn} at {step.op}"


def _dedup(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """IPI events arrive twice (from the target's own log and with the ack to the initiator): keep one."""
    seen: set[tuple[str, int]] = set()
    out = []
    for r in records:
        key = (r["actor"], r["seq"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def run_one(scenario: Scenario, cfg: Config, *, run: str = "run", trial: int = 0, seed: int = 0,
            jitter_us: float = 0.0, hang_timeout: float = 5.0, actors: ActorSet | None = None) -> TrialResult:
    """A single trial on a fresh (or given) actor set; the set is killed afterwards if it was created here."""
    own = actors is None
    actors = actors or ActorSet(0, scenario, cfg)
    try:
        t = RunningTrial(actors, scenario, cfg, run=run, trial=trial, seed=seed, jitter_us=jitter_us,
                         hang_timeout=hang_timeout)
        import ray

        while not t.poll():
            ray.wait(t.pending_refs(), num_returns=len(t.pending_refs()), timeout=0.2)
        assert t.result is not None
        return t.result
    finally:
        if own:
            actors.kill()
