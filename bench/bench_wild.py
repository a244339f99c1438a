"""How fast the wild runtime steps, against what Ray itself allows on this machine.

Prints, from one run:
- the raw Ray actor round trip: an actor calling a trivial actor that echoes msgpack bytes of a step message's
  size, synchronously (one at a time, as a CPU waits for a page-table step) and pipelined;
- the emulator's steady-state steps/s and trials/s on madv_dontneed with --parallel 1 and 2 (actor start-up
  excluded), and steps/s as a fraction of the raw synchronous call rate;
- what limits it: messages per step, and how the message rate compares with the raw rate.

Usage: PYTHONPATH=. python bench/bench_wild.py [--trials N] [--scenario NAME] [--param k=v ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from actors import ray_session  # noqa: E402  (Ray's environment before `import ray`)


class Echo:
    def call(self, data: bytes) -> bytes:
        return data


class Caller:
    def __init__(self, echo: Any) -> None:
        self.echo = echo

    def rate(self, n: int, pipelined: bool, data: bytes) -> float:
        import ray

        started = time.perf_counter()
        if pipelined:
            ray.get([self.echo.call.remote(data) for _ in range(n)])
        else:
            for _ in range(n):
                ray.get(self.echo.call.remote(data))
        return n / (time.perf_counter() - started)


def raw_rates(n: int) -> tuple[float, float]:
    import ray

    from actors.codec import pack

    data = pack([3, 1, 17, 42, 2, "ptep_get_and_clear_full", [0, False], "s", None])  # a typical step message
    echo = ray.remote(num_cpus=0)(Echo).remote()
    caller = ray.remote(num_cpus=0)(Caller).remote(echo)
    ray.get(caller.rate.remote(200, False, data))  # warm up
    sync = ray.get(caller.rate.remote(n, False, data))
    piped = ray.get(caller.rate.remote(n, True, data))
    for a in (echo, caller):
        ray.kill(a)
    return sync, piped


def emulator(scenario: Any, cfg: Any, trials: int, parallel: int) -> dict[str, float]:
    from actors.campaign import CampaignOptions, run_campaign

    stamps: list[tuple[float, int, int]] = []  # (time, cumulative steps, cumulative messages)
    totals = {"steps": 0, "messages": 0}

    def on_trial(r: Any, _so_far: Any) -> None:
        steps = r.steps
        # One message per page-table-stamped event (steps, validations), one per IPI (its ack is the reply),
        # one run call per CPU; grants of queued locks are not counted (a lower bound).
        messages = sum(1 for e in r.records if e.get("gseq") is not None)
        messages += sum(e["result"] for e in r.records if e["op"] == "flush_tlb_others")
        messages += len(r.nodes) - 1
        totals["steps"] += steps
        totals["messages"] += messages
        stamps.append((time.perf_counter(), totals["steps"], totals["messages"]))

    opts = CampaignOptions(trials=trials, parallel=parallel, keep_passing=True)  # keep records for counting
    run_campaign(scenario, cfg, opts, on_trial)
    skip = min(len(stamps) // 5, 20)  # steady state: after the first trials (actor and worker start-up)
    (t0, s0, m0), (t1, s1, m1) = stamps[skip], stamps[-1]
    seconds = max(t1 - t0, 1e-9)
    return {"trials_per_s": (len(stamps) - 1 - skip) / seconds, "steps_per_s": (s1 - s0) / seconds,
            "messages_per_s": (m1 - m0) / seconds, "messages_per_step": (m1 - m0) / max(s1 - s0, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--scenario", default="madv_dontneed")
    parser.add_argument("--param", action="append", default=[])
    args = parser.parse_args()

    from kernel_model.config import Config
    from scenarios.loader import load_scenario, parse_params

    scenario = load_scenario(args.scenario, parse_params(args.param))
    cfg = Config.from_dict({**scenario.config, "ordering": "delayed"})
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    session = ray_session.start_local(num_cpus=2)
    try:
        sync, piped = raw_rates(args.calls)
        print(f"raw Ray actor->actor round trips, msgpack step messages: {sync:,.0f} calls/s synchronous, "
              f"{piped:,.0f} calls/s pipelined")
        results = {p: emulator(scenario, cfg, args.trials, p) for p in (1, 2)}
    finally:
        ray_session.close_session(session)
    for p, r in results.items():
        print(f"emulator --parallel {p}: {r['trials_per_s']:.1f} trials/s, {r['steps_per_s']:,.0f} steps/s "
              f"= {r['steps_per_s'] / sync:.0%} of the raw synchronous call rate "
              f"({r['messages_per_s']:,.0f} messages/s, {r['messages_per_step']:.2f} messages per step)")
    best = max(results.values(), key=lambda r: r["steps_per_s"])
    print("what limits it: every step that touches shared state is one actor message (the page-table actor "
          f"serialises them), {best['messages_per_step']:.2f} messages per step; the message rate reaches "
          f"{best['messages_per_s'] / sync:.0%} of the raw synchronous rate ({best['messages_per_s'] / piped:.0%} of "
          f"the pipelined one). Each Ray call costs CPU in caller, callee and the core workers, and this machine "
          f"has {os.cpu_count()} cores for the driver, the raylet and every actor: more trials in parallel "
          "compete for the same cores rather than overlap waits.")


if __name__ == "__main__":
    main()
