"""A stress campaign: many independent trials of one scenario, ``parallel`` of them at once.

Each of the ``parallel`` actor sets runs one trial at a time and is reused for the next (reset, not recreated);
a set whose trial hung or crashed is killed and replaced, and the campaign goes on. Sets are spread over the
cluster's nodes round-robin. Failing trials keep their full event log (one msgpack file each, written with
``scenarios.eventlog.EventLogWriter``); passing trials keep counters only, unless ``keep_passing``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from actors.trial import ActorSet, RunningTrial, TrialResult
from kernel_model.config import Config
from kernel_model.program import Scenario
from scenarios.eventlog import EventLogWriter, make_header


@dataclass(slots=True)
class CampaignOptions:
    trials: int = 100
    parallel: int = 1
    jitter_us: float = 0.0
    seed: int = 0
    out: str | None = None  # where failing trials' logs go (None: nowhere)
    keep_passing: bool = False
    hang_timeout: float = 5.0
    # Test-only fault injection: kill this actor ("cpu1", "pt") of the set running this trial id, right after
    # the trial starts.
    kill: tuple[int, str] | None = None


@dataclass(slots=True)
class CampaignResult:
    scenario: str
    cfg: Config
    run: str
    trials: int = 0
    by_status: Counter = field(default_factory=Counter)
    by_invariant: Counter = field(default_factory=Counter)
    steps: int = 0
    seconds: float = 0.0
    failing_logs: list[str] = field(default_factory=list)
    failures: list[TrialResult] = field(default_factory=list)  # violating, hung, crashed, diverged
    nodes_by_trial: dict[int, tuple[str, ...]] = field(default_factory=dict)

    @property
    def violations(self) -> int:
        """Trials in which the oracle found a violated invariant (a confirmed hang included)."""
        return sum(1 for r in self.failures if r.violations)

    def summary(self) -> dict[str, Any]:
        seconds = max(self.seconds, 1e-9)
        return {
            "scenario": self.scenario, "ordering": self.cfg.ordering, "arch": self.cfg.arch,
            "mutant": self.cfg.mutant, "trials": self.trials, "violations": self.violations,
            "by_invariant": dict(sorted(self.by_invariant.items())),
            "crashed": self.by_status["crashed"], "hung": self.by_status["hung"],
            "diverged": self.by_status["diverged"],
            "seconds": round(self.seconds, 3), "trials_per_s": round(self.trials / seconds, 2),
            "steps_per_s": round(self.steps / seconds, 1), "failing_logs": list(self.failing_logs),
        }


def run_campaign(scenario: Scenario, cfg: Config, opts: CampaignOptions,
                 on_trial: Callable[[TrialResult, CampaignResult], None] | None = None) -> CampaignResult:
    import ray

    run = uuid.uuid4().hex[:8]
    result = CampaignResult(scenario.name, cfg, run)
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    sets: list[ActorSet | None] = [None] * max(1, opts.parallel)
    running: dict[int, RunningTrial] = {}  # set index -> trial
    next_trial = 0
    started = time.monotonic()

    def fresh_set(i: int) -> ActorSet:
        node = nodes[i % len(nodes)] if len(nodes) > 1 else None
        return ActorSet(i, scenario, cfg, node)

    try:
        for i in range(min(len(sets), opts.trials)):
            sets[i] = fresh_set(i)  # all sets' workers start in parallel
        while next_trial < opts.trials or running:
            for i in range(len(sets)):
                if i in running or next_trial >= opts.trials:
                    continue
                if sets[i] is None:
                    sets[i] = fresh_set(i)
                actors = sets[i]
                assert actors is not None
                running[i] = RunningTrial(actors, scenario, cfg, run=run, trial=next_trial, seed=opts.seed,
                                          jitter_us=opts.jitter_us, hang_timeout=opts.hang_timeout)
                if opts.kill is not None and opts.kill[0] == next_trial:
                    ray.kill(actors.actor(opts.kill[1]), no_restart=True)
                next_trial += 1
            pending = [ref for t in running.values() for ref in t.pending_refs()]
            if pending:
                ray.wait(pending, num_returns=1, timeout=0.25)
            for i, t in list(running.items()):
                if not t.poll():
                    continue
                del running[i]
                assert t.result is not None
                if not t.set_is_reusable:
                    actors = sets[i]
                    assert actors is not None
                    actors.kill()
                    sets[i] = None
                _account(result, t.result, scenario, cfg, opts)
                if on_trial is not None:
                    on_trial(t.result, result)
                if not t.result.failed:
                    t.result.records = []  # passing trials keep counters only
    finally:
        result.seconds = time.monotonic() - started
        for actors in sets:
            if actors is not None:
                actors.kill()
    return result


def _account(result: CampaignResult, r: TrialResult, scenario: Scenario, cfg: Config,
             opts: CampaignOptions) -> None:
    result.trials += 1
    result.by_status[r.status] += 1
    result.steps += r.steps
    result.nodes_by_trial[r.trial] = r.nodes
    for v in r.violations:
        result.by_invariant[v.invariant] += 1
    if r.failed:
        result.failures.append(r)
    if opts.out and (r.failed or opts.keep_passing):
        path = write_trial_log(opts.out, result.run, scenario, cfg, r)
        if r.failed:
            result.failing_logs.append(path)


def write_trial_log(out: str, run: str, scenario: Scenario, cfg: Config, r: TrialResult) -> str:
    """One self-describing msgpack log for one trial: header, its events in replay order, trial_end."""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{scenario.name}-{run}-trial{r.trial:05d}.msgpack")
    header = make_header(run=run, runtime="wild", scenario=scenario.name, scenario_source=scenario.source,
                         params=scenario.params, config=cfg.to_dict())
    with EventLogWriter(path, header) as writer:
        for rec in r.records:
            writer.write(rec)
        writer.write({"type": "trial_end", "run": run, "trial": r.trial, "status": r.status,
                      "violations": [{"invariant": v.invariant, "detail": v.detail} for v in r.violations],
                      "actor": r.actor, "detail": r.detail, "nodes": list(r.nodes), "steps": r.steps,
                      "seconds": round(r.seconds, 4)})
    return path
