"""A race-window aligner for stress campaigns, after LTP's fuzzy sync (include/tst_fuzzy_sync.h).

LTP's ``tst_fzsync_pair`` reproduces a kernel race between two threads A and B in two phases. While *sampling*
it measures, every iteration, when each thread starts and ends its racing syscall, and keeps exponential moving
averages (``tst_upd_stat``: ``avg`` and ``avg_dev`` with ``avg_alpha`` = 0.25) of the start difference and of
each syscall's length. Once at least ``min_samples`` samples are in and every average deviation is under
``max_dev_ratio`` of its average (or half the time budget has gone), it stops measuring and, every iteration
(``tst_fzsync_pair_update``), draws a delay uniformly from ``[-len_B, +len_A]`` (times 1.1): a negative one
delays A, a positive one B, so that over many iterations every point of A's window meets every point of B's.

Here the "syscalls" are the operations of the scenario's thread programs and an iteration is a trial:

- ``observe`` takes one trial's measured op windows (``OpWindow``: when each op began and ended, in µs from the
  trial's origin, the moment the first of its CPUs began running its threads). The CPU actors measure them with
  CLOCK_MONOTONIC; a campaign places every actor of one set on one node, so their clocks agree.
- After the sampling phase, ``delays_for(trial)`` picks a reference op window and one op window of every other
  thread, draws for each a point ``u`` in ``[-len_B, +len_ref]``, and returns the start delays that move each
  window B to start at the reference's start plus ``u``. With two threads that is LTP's one delay (on B when B
  must start later, else on the reference). The CPU sleeps that long *before the op*, between two
  instructions; real scheduling decides everything after it.

Coarser than LTP, and why: LTP's user marks the one pair of windows that race; here the aligner must not know the
scenario (nor its ordering, arch or mutant), so each trial draws the windows at random among the threads' ops
(the ones that race are aligned in a share of the trials, not all). LTP races two threads; a scenario may need
three to meet (a writer's fault, a zap and writeback), so every thread's window is aligned with the reference's
at once. LTP counts delays in spin loops calibrated against its own wait; here a delay is a sleep in
microseconds. LTP's averages start at 0; these start at the first sample (with 20 samples and alpha 0.25 the
difference is 0.3% of the first sample, but there is no reason to carry it).

Every random choice takes a ``random.Random`` seeded from (campaign seed, trial id): given the same measured
averages, a trial gets the same delay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Final

from actors.topology import programs
from kernel_model.program import Scenario

# tst_fzsync_pair_init's defaults where they carry over; min_samples is LTP's 1024 scaled down to trials, which
# cost milliseconds each where LTP's iterations cost microseconds.
AVG_ALPHA: Final = 0.25
MIN_SAMPLES: Final = 20
MAX_DEV_RATIO: Final = 0.1
# LTP stops sampling when half its time budget is gone (SAMPLING_SLICE); a campaign's trials are the budget,
# and may be unbounded, so the cap is a number of trials.
SAMPLING_CAP: Final = 3
MAX_SAMPLES: Final = SAMPLING_CAP * MIN_SAMPLES
OVERSHOOT: Final = 1.1  # tst_fzsync_pair_update's 1.1 * time_delay: reach slightly past either end


@dataclass(slots=True)
class Stat:
    """tst_fzsync_stat: an exponential moving average, its average deviation, and their ratio."""

    avg: float = 0.0
    avg_dev: float = 0.0
    dev_ratio: float = 0.0
    samples: int = 0

    def update(self, sample: float, alpha: float = AVG_ALPHA) -> None:
        """tst_upd_stat (the first sample seeds the average instead of being averaged with 0)."""
        if self.samples == 0:
            self.avg = sample
        else:
            self.avg = alpha * sample + (1.0 - alpha) * self.avg
            self.avg_dev = alpha * abs(self.avg - sample) + (1.0 - alpha) * self.avg_dev
        self.dev_ratio = abs(self.avg_dev / self.avg) if self.avg else 0.0
        self.samples += 1


@dataclass(frozen=True, slots=True)
class OpWindow:
    """One op of one thread in one trial: when it began and ended, in µs from the trial's origin."""

    tid: int
    pc: int
    start_us: float
    end_us: float


@dataclass(frozen=True, slots=True)
class Delay:
    """Sleep ``us`` microseconds before op ``pc`` of thread ``tid``."""

    tid: int
    pc: int
    us: int


@dataclass(slots=True)
class WindowStats:
    """The averages of one op's window over the sampling trials (diff_sa / diff_sb, and the start from the
    common origin, whose differences are LTP's diff_ss)."""

    start: Stat = field(default_factory=Stat)
    length: Stat = field(default_factory=Stat)


class RaceAligner:
    """Measures op windows over the first trials of a campaign, then delays one op per trial so that a pair of
    windows overlaps. ``programs[tid]`` is the op kinds of thread ``tid`` (what each thread's program has: the only
    thing it knows of the scenario)."""

    def __init__(self, programs: list[list[str]], seed: int, *, min_samples: int = MIN_SAMPLES,
                 max_samples: int = MAX_SAMPLES, max_dev_ratio: float = MAX_DEV_RATIO,
                 alpha: float = AVG_ALPHA, max_delay_us: float | None = None) -> None:
        if not 1 <= min_samples <= max_samples:
            raise ValueError(f"min_samples {min_samples} and max_samples {max_samples}: expected "
                             "1 <= min_samples <= max_samples")
        self.programs = [list(p) for p in programs]
        self.seed = seed
        self.min_samples = min_samples
        self.max_samples = max_samples
        self.max_dev_ratio = max_dev_ratio
        self.alpha = alpha
        # A sleeping CPU takes no step: a delay as long as the campaign's hang timeout would be reported as a hang.
        self.max_delay_us = max_delay_us
        self.windows: dict[tuple[int, int], WindowStats] = {}
        self.samples = 0
        self.sampling = True
        self.chosen: list[Delay] = []  # every delay handed out, in order (the summary's figures)
        self.delayed_trials = 0

    @classmethod
    def for_scenario(cls, scenario: Scenario, seed: int, min_samples: int = MIN_SAMPLES, *,
                     hang_timeout: float | None = None) -> "RaceAligner":
        """An aligner for a campaign of ``scenario``: it is told the op kinds of each thread's program, nothing
        else (not the scenario's name, ordering, arch or mutant). It samples at most 3 x ``min_samples`` trials
        (MAX_SAMPLES for the default), and keeps each delay under half the campaign's hang timeout (seconds)."""
        return cls([[op.kind for op in program] for program in programs(scenario)], seed, min_samples=min_samples,
                   max_samples=SAMPLING_CAP * min_samples,
                   max_delay_us=None if hang_timeout is None else hang_timeout * 1e6 / 2)

    # --- sampling phase -------------------------------------------------------------------------------------
    def observe(self, windows: list[OpWindow]) -> None:
        """One trial's measured windows. Ignored once sampling has ended: as in LTP, the delayed trials' timings
        are not averaged in (a delay shifts them by design)."""
        if not self.sampling or not windows:
            return
        for w in windows:
            stats = self.windows.setdefault((w.tid, w.pc), WindowStats())
            stats.start.update(w.start_us, self.alpha)
            stats.length.update(max(0.0, w.end_us - w.start_us), self.alpha)
        self.samples += 1
        settled = all(s.start.dev_ratio <= self.max_dev_ratio and s.length.dev_ratio <= self.max_dev_ratio
                      for s in self.windows.values())
        if self.samples >= self.max_samples or (self.samples >= self.min_samples and settled):
            self.sampling = False

    # --- alignment phase ------------------------------------------------------------------------------------
    def candidates(self) -> list[tuple[int, int]]:
        """The measured (thread, op) windows, in a stable order."""
        return sorted(self.windows)

    def delays_for(self, trial: int) -> list[Delay]:
        """The start delays of one trial: none while sampling (or with fewer than two threads measured), else
        those that align one random op window of every other thread with a random reference window."""
        threads = sorted({tid for tid, _ in self.windows})
        if self.sampling or len(threads) < 2:
            return []
        rng = random.Random(f"tlbrace-fuzzy-sync:{self.seed}:{trial}")
        ref = rng.choice(self.candidates())
        others = [(tid, rng.choice([pc for t, pc in self.candidates() if t == tid])) for tid in threads
                  if tid != ref[0]]
        delays = self.align(ref, others, rng)
        self.chosen.extend(delays)
        self.delayed_trials += bool(delays)
        return delays

    def wire_delays(self, trial: int) -> list[list[int]]:
        """delays_for as the trial message carries them: [tid, pc, µs] each."""
        return [[d.tid, d.pc, d.us] for d in self.delays_for(trial)]

    def align(self, ref: tuple[int, int], others: list[tuple[int, int]], rng: random.Random) -> list[Delay]:
        """Delays that move each window b of ``others`` to start at ``ref``'s start plus u_b, u_b drawn from
        [-len_b, +len_ref] (times OVERSHOOT): tst_fzsync_pair_update's time_delay, from the common origin instead
        of a barrier. A delay can only make an op later, so the shifts are taken relative to the smallest (the
        reference's 0 included): with two threads that delays b when u says b must start later, else the
        reference, as LTP's positive and negative delays do; with more, every chosen window meets the
        reference's. Shifts that round to 0 µs are left out."""
        wr = self.windows[ref]
        shifts = {ref: 0.0}
        for b in others:
            wb = self.windows[b]
            u = OVERSHOOT * (rng.random() * (wr.length.avg + wb.length.avg) - wb.length.avg)
            shifts[b] = wr.start.avg + u - wb.start.avg  # > 0: b must start later; < 0: the reference must
        low = min(shifts.values())
        cap = float("inf") if self.max_delay_us is None else self.max_delay_us
        return [Delay(tid, pc, us) for (tid, pc), shift in shifts.items() if (us := round(min(shift - low, cap)))]

    # --- reporting ------------------------------------------------------------------------------------------
    def summary(self, names: list[str]) -> dict[str, Any]:
        """What the aligner measured and chose, for the stress summary (``names``: the threads' names)."""
        def label(tid: int, pc: int) -> str:
            return f"{names[tid]}.{self.programs[tid][pc]}#{pc}"

        delays = [d.us for d in self.chosen]
        by_op: dict[str, list[int]] = {}
        for d in self.chosen:
            by_op.setdefault(label(d.tid, d.pc), []).append(d.us)
        return {
            "on": True, "phase": "sampling" if self.sampling else "aligning", "sampled_trials": self.samples,
            "windows": {label(*key): {"start_us": round(s.start.avg, 1), "len_us": round(s.length.avg, 1),
                                      "dev_ratio": round(max(s.start.dev_ratio, s.length.dev_ratio), 3)}
                        for key, s in sorted(self.windows.items())},
            "delayed_trials": self.delayed_trials,
            "delay_us": ({"min": min(delays), "median": sorted(delays)[len(delays) // 2], "max": max(delays)}
                         if delays else None),
            "delays_by_op": {op: {"count": len(us), "min": min(us), "max": max(us)}
                             for op, us in sorted(by_op.items())},
        }


def windows_of(timings: list[dict[str, Any]]) -> list[OpWindow]:
    """A trial's op windows from what its CPU actors measured, each ``{"start": {tid: ns}, "ops": [[tid, pc,
    begin_ns, end_ns], ...]}`` for its own threads; the origin is the earliest thread start of the trial."""
    starts = [ns for t in timings for ns in (t.get("start") or {}).values()]
    ops = [op for t in timings for op in (t.get("ops") or [])]
    if not starts or not ops:
        return []
    origin = min(starts)
    return [OpWindow(int(tid), int(pc), (begin - origin) / 1e3, (end - origin) / 1e3) for tid, pc, begin, end in ops]
