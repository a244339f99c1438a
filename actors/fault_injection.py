"""Test-only faults for the wild runtime: a killed actor, a stalled CPU, a stopped (SIGSTOP) actor process.

The reliability tests need a trial to hang or crash on demand, deterministically, never by sleeping and hoping.
Everything that does it is here, out of the campaign loop and the actors' production paths: the campaign calls
``Faults.before_start`` and ``Faults.after_start`` only when the test gave it faults, and a stalled CPU is one
whose step function was wrapped here (``stall_after``), not one that checks a flag on every step.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

# This module imports nothing of actors: the CPU actor imports it (to stall), and the campaign does too. The
# annotations below say which objects are meant: ActorSet is actors.trial.ActorSet, CpuCore actors.cpu.CpuCore.
ActorSet = Any
CpuCore = Any


@dataclass(slots=True)
class Faults:
    """Which trial (by id) to break, and how. An actor is named as ActorSet.actor names it ("cpu1", "pt")."""

    kill: tuple[int, str] | None = None  # ray.kill this actor right after the trial starts
    stall: tuple[int, str, str] | None = None  # (trial, cpu actor, op): it stops taking steps after that op
    stop: tuple[int, str] | None = None  # SIGSTOP this actor's process right after the trial starts
    stopped: list[int] = field(default_factory=list)  # the pids stopped, for the test to end them

    def before_start(self, trial: int, actors: ActorSet) -> None:
        """Before ``trial`` is sent to its actors: arm a stall (the actor must hear of it first)."""
        import ray

        if self.stall is not None and self.stall[0] == trial:
            actors.nodes  # noqa: B018 - configured before it can be told
            ray.get(actors.actor(self.stall[1]).stall.remote(trial, self.stall[2]))

    def after_start(self, trial: int, actors: ActorSet, stop_pid: int | None) -> None:
        """Right after ``trial`` started: kill or stop the named actor."""
        import ray

        if self.kill is not None and self.kill[0] == trial:
            ray.kill(actors.actor(self.kill[1]), no_restart=True)
        if stop_pid is not None:
            self.stopped.append(stop_pid)
            os.kill(stop_pid, signal.SIGSTOP)

    def pid_to_stop(self, trial: int, actors: ActorSet) -> int | None:
        """The pid to SIGSTOP in ``trial`` (asked before the trial starts: a stopped actor answers nothing)."""
        return actors.pid(self.stop[1]) if self.stop is not None and self.stop[0] == trial else None


def stall_after(core: CpuCore, trial: int, op: str) -> None:
    """In ``trial``, the CPU's thread stops taking steps after its first ``op`` step (irqs on, so it still takes
    IPIs), as if its vCPU were never scheduled again; its hang report says so. The campaign kills the actor when
    it reports the trial hung. Wraps this one core's step function: other cores, and this one in other trials,
    run exactly as in production."""
    step: Callable[..., Any] = core._step
    describe_waits: Callable[[], list[str]] = core.describe_waits
    stalled: list[str] = []

    def stepping(tid: int, s: Any, jitter: Any) -> Any:
        result = step(tid, s, jitter)
        if core.trial == trial and s.op == op:
            with core.cv:
                names = [t.name for t in core.scenario.threads]
                stalled.append(f"{names[tid]} on {core.name} stopped taking steps after {s.op} in {s.fn}")
            threading.Event().wait()
        return result

    core._step = stepping  # type: ignore[method-assign]
    core.describe_waits = lambda: stalled[:1] + describe_waits()  # type: ignore[method-assign]
