"""How fast is ``tlbrace analyze`` next to merely decoding the log?

Builds (or reuses, under /tmp) a log of about a million events: many trials of madv_dontneed under the eager
ordering, schedules from seeded bursty random search. Then, in the same run: plain msgpack decoding of the file,
the serial replay verdict, and the parallel one (one process per CPU), each as events/s, and the ratio to raw
decoding (goal: analysis >= 1/3 of raw decode). Every trial is judged by the oracle; nothing is skipped.

    PYTHONPATH=. python bench/bench_analyze.py [--events 1000000] [--jobs N] [--rebuild] [--library]

``--library`` builds the log from the library's madv_dontneed (the counter writer: longer trials whose states
differ by the counter's value) instead of the fixed two-store writer.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time

import msgpack

from analysis.analyze import LogAnalysis, analyze_log, summarize
from controlled.machine import Machine
from kernel_model.config import Config
from kernel_model.program import Op, Scenario, Setup, Thread
from logs.controlled_log import write_controlled_log

SCENARIO = Scenario("madv_dontneed", "", Setup(pages=1, warm_tlb=("writer",)),
                    (Thread("writer", (Op("store", (0,), 2),)), Thread("zapper", (Op("madvise_dontneed", (0,)),)),
                     Thread("writeback", (Op("msync", (0,)),))))
CFG = Config(ordering="eager")


def bursty_schedule(seed: int) -> list:
    """Seeded random schedule that keeps running one transition for a while (reaches the window more often)."""
    rng = random.Random(seed)
    m = Machine(SCENARIO, CFG)
    schedule, current = [], None
    while True:
        enabled = m.enabled_all()
        if not enabled:
            return schedule
        if current not in enabled or rng.random() < 0.3:
            current = rng.choice(enabled)
        schedule.append(current)
        if m.execute(current):
            return schedule


def build(path: str, events: int) -> None:
    if os.path.exists(path):
        os.remove(path)
    written, trial, t0 = 0, 0, time.perf_counter()
    while written < events:
        result = write_controlled_log(path, SCENARIO, CFG, bursty_schedule(trial), run_id="bench", trial=trial)
        written += len(result.events)
        trial += 1
    print(f"built {path}: {written:,} events in {trial:,} trials ({time.perf_counter() - t0:.1f} s)")


def count_events(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for rec in msgpack.Unpacker(f, raw=False) if rec.get("type") == "event")


def raw_decode(path: str) -> float:
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        data = f.read()
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=len(data))
    unpacker.feed(data)
    for _ in unpacker:
        pass
    return time.perf_counter() - t0


def verdicts(analysis: LogAnalysis) -> str:
    """Every trial's verdict and executed schedule, as one digest: a single small object, so that keeping it
    does not keep the heap pages of the analysis alive (see main)."""
    return hashlib.sha256(repr([(t.trial, t.invariants, t.divergence, t.disagreement, t.executed)
                                for t in analysis.trials]).encode()).hexdigest()


def timed_analysis(path: str, jobs: int) -> tuple[float, LogAnalysis]:
    t0 = time.perf_counter()
    analysis = analyze_log(path, jobs=jobs, scenario=SCENARIO)
    return time.perf_counter() - t0, analysis


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--path", default=None)
    ap.add_argument("--library", action="store_true",
                    help="use the library madv_dontneed (the counter writer) instead of the two-store writer")
    args = ap.parse_args()
    if args.library:
        global SCENARIO
        from scenarios.loader import load_scenario
        SCENARIO = load_scenario("madv_dontneed")
    name = "counter-" if args.library else ""
    path = args.path or f"/tmp/tlbrace-bench-analyze-{name}{args.events}.log"
    if args.rebuild or not os.path.exists(path):
        build(path, args.events)
    else:
        print(f"reusing {path} (--rebuild to make it again)")
    events = count_events(path)
    size = os.path.getsize(path)
    print(f"{events:,} events, {size / 1e6:.1f} MB, {os.cpu_count()} CPU(s)")

    t_raw = raw_decode(path)
    t_serial, serial = timed_analysis(path, 1)
    serial_verdicts = verdicts(serial)
    # Dropped before the parallel run: the serial analysis's reports share memory pages with its (freed) records
    # and keep ~1 GB of heap alive, which each forked process would then copy page by page as it allocates
    # (2 s of system time each on this host). A user's `tlbrace analyze` forks from a fresh process.
    del serial
    t_par, parallel = timed_analysis(path, args.jobs)
    s = summarize(parallel.trials)
    same = serial_verdicts == verdicts(parallel)

    def rate(t: float) -> str:
        return f"{events / t:>12,.0f} events/s ({t:6.2f} s)"

    print(f"raw msgpack decode         {rate(t_raw)}")
    print(f"analysis, 1 process        {rate(t_serial)}   ratio {t_raw / t_serial:.2f}")
    print(f"analysis, {args.jobs} processes{' ' * (6 - len(str(args.jobs)))}  {rate(t_par)}   ratio "
          f"{t_raw / t_par:.2f}   (goal >= 0.33)")
    print(f"verdicts: {s.trials:,} trials, {s.violating:,} violating {s.by_invariant}, {s.divergences} divergences;"
          f" serial and parallel agree: {same}")
    # What limits it: replay is mostly answered by the replay memo (controlled.replay_memo); what remains beyond
    # decoding is grouping each trial's records, linearising them and walking the memo, all per record or step.
    beyond = 1 - t_raw / t_serial
    print(f"limit: {beyond:.0%} of the serial time is beyond plain decoding (grouping, linearising and judging each "
          f"trial); processes divide it only if CPUs are free (this host: {os.cpu_count()} CPU(s), load average "
          f"{os.getloadavg()[0]:.1f})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
