"""A race-window aligner for stress campaigns, after LTP's fuzzy sync (include/tst_fuzzy_sync.h).

LTP's ``tst_fzsync_pair`` reproduces a kernel race between two threads A and B in two phases. While *sampling*
it measures, every iteration, when each thread starts and ends its racing syscall, and keeps exponential moving
averages (``tst_upd_stat``: ``avg`` and ``avg_dev`` with ``avg_alpha`` = 0.25) of the start difference and of
each syscall's length. Once at least ``min_samples`` samples are in and every average deviation is under
``max_dev_ratio`` of its average (or half the time budget has gone), it stops measuring and, every iteration
(``tst_fzsync_pair_update``), draws a delay uniformly from ``[-len_B, +len_A]`` (times 1.1): a negative one
delays A, a positive one B, so that over many iterations every point of A's window meets every point of B's.

Here the "syscalls" are the operations of the scenario's thread programs and an iteration is a trial. The CPU
actors measure (CLOCK_MONOTONIC; a campaign places every actor of one set on one node, so their clocks agree)
each op's window and step count, and the marks of ``actors.race_windows``: when a thread changed a present PTE,
sent a shootdown, had it acknowledged, and asked for a lock (and which). From those the aligner learns, over the
sampling trials, where each op's *lock points* lie (its lock requests, as offsets from its start, each with its
lock), how long one step takes, and, for the summary, where the *flush-debt windows* lie (a thread between
changing a PTE and its flush being acknowledged: where every TLB-shootdown race of the library lies). Then every
trial gets a plan (``plan_for``), drawn with a ``random.Random`` seeded from (campaign seed, trial):

- A share (UNALIGNED_SHARE) of trials is left to real scheduling alone, so the hits it finds by itself stay.
- Otherwise one lock request of one thread is the reference (``lock_alignment``), and every other thread gets
  one of its lock points, one that asks for the same lock when it has any, placed a uniform time after it
  (within LOCK_SPREAD steps): a start delay before that op (``Delay``), as LTP delays one side. The other side
  of a race waits for the lock the first side holds or has just dropped, and comes in right behind it. The
  reference thread is also *preempted* in its window (``Preempt``): it pauses before the first shootdown it owes
  after that lock request (if it owes one: a flush-debt window is open), for a uniform time of up to
  PREEMPT_STEPS measured steps, and again right after it releases the reference lock, as an interrupt taken
  there holds a real kernel thread (the PTL is a spin_lock, which leaves interrupts on, so the first pause may
  come with the PTL held); the other threads' lock points are spread over those pauses too. A scenario whose threads take no lock gets LTP's
  alignment of whole op windows instead (``delays_for``): a reference op window and one op window of every
  other thread, each drawn at a point ``u`` of ``[-len_B, +len_ref]``.
- Independently, in a share (IPI_SHARE) of trials, every flush IPI reaches its target after a latency drawn
  uniformly from [0, IPI_STEPS measured steps] (``ipi_latency_us``, actors.jitter.IpiLatency). A hardware IPI
  takes microseconds, tens to hundreds of kernel steps; an actor message takes about as long as one step, so
  without it the model's IPIs arrive too early by that ratio.

Every pause is a sleep between two steps with the CPU's irq lock released (it takes IPIs meanwhile), logged as a
jitter note that replay skips: it makes likelier orders that were possible without
it and forces none; real scheduling decides everything after it. The oracle judges what happened, and a kernel
with the fix stays clean under any plan.

Coarser than LTP, and why: LTP's user marks the one pair of windows that race; here the aligner must not know the
scenario (nor its ordering, kernel or mutant), so each trial draws the reference and the lock points at random
among those measured (the ones that race are aligned in a share of the trials, not all). LTP races two threads; a
scenario may need three to meet (a writer's fault, a zap and writeback), so every thread is aligned with the
reference at once. LTP counts delays in spin loops calibrated against its own wait; here a delay is a sleep in
microseconds. LTP's averages start at 0; these start at the first sample (with 20 samples and alpha 0.25 the
difference is 0.3% of the first sample, but there is no reason to carry it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Final

from actors.race_windows import TrialTimes
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
# The plan's shares and scales (module docstring). A quarter of the trials unaligned keeps what real scheduling
# reaches alone; the pause and the IPI latency are counted in measured steps, so that they scale with the machine.
UNALIGNED_SHARE: Final = 0.25
PREEMPT_STEPS: Final = 64
LOCK_SPREAD: Final = 8
IPI_SHARE: Final = 0.5
IPI_STEPS: Final = 16


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


@dataclass(frozen=True, slots=True)
class Preempt:
    """Once thread ``tid`` has made ``j`` lock requests in op ``pc``: pause ``us`` microseconds before it sends the
    first shootdown it owes there (a flush-debt window is open: actors.race_windows), and ``release_us`` right
    after it first releases ``lock`` (0: no pause)."""

    tid: int
    pc: int
    j: int
    us: int
    lock: str = ""
    release_us: int = 0


@dataclass(frozen=True, slots=True)
class TrialPlan:
    """What the aligner asks of one trial: start delays, a pause inside a window, and the IPI latency bound."""

    delays: list[Delay] = field(default_factory=list)
    preempt: Preempt | None = None
    ipi_latency_us: int = 0

    def wire(self) -> list[Any]:
        """As the trial message carries it (actors.trial, actors.cpu)."""
        p = self.preempt
        return [[[d.tid, d.pc, d.us] for d in self.delays], [] if p is None else [p.tid, p.pc, p.j, p.us, p.lock, p.release_us],
                self.ipi_latency_us]


@dataclass(slots=True)
class WindowStats:
    """The averages of one op's window over the sampling trials (diff_sa / diff_sb, and the start from the
    common origin, whose differences are LTP's diff_ss)."""

    start: Stat = field(default_factory=Stat)
    length: Stat = field(default_factory=Stat)


class RaceAligner:
    """Measures op windows, lock points and step lengths over the first trials of a campaign, then plans each
    trial's pauses (module docstring). ``programs[tid]`` is the op kinds of thread ``tid`` (what each thread's program has: the only
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
        # actors.race_windows: flush-debt windows (tid, pc, k), lock points' offsets (tid, pc, j), one step's length
        self.debts: dict[tuple[int, int, int], WindowStats] = {}
        self.points: dict[tuple[int, int, int], Stat] = {}
        self.objects: dict[tuple[int, int, int], str] = {}  # the lock each lock point asked for when first seen
        self.step = Stat()
        self.planned = {"unaligned": 0, "locks": 0, "ops": 0, "preempted": 0, "ipi_latency": 0}

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
    def observe(self, windows: list[OpWindow], times: TrialTimes | None = None) -> None:
        """One trial's measured op windows and (if given) its flush-debt windows, lock points and step length.
        Ignored once sampling has ended: as in LTP, the delayed trials' timings are not averaged in (a delay
        shifts them by design)."""
        if not self.sampling or not windows:
            return
        for w in windows:
            stats = self.windows.setdefault((w.tid, w.pc), WindowStats())
            stats.start.update(w.start_us, self.alpha)
            stats.length.update(max(0.0, w.end_us - w.start_us), self.alpha)
        if times is not None:
            self._observe_times(times)
        self.samples += 1
        settled = all(s.start.dev_ratio <= self.max_dev_ratio and s.length.dev_ratio <= self.max_dev_ratio
                      for s in self.windows.values())
        if self.samples >= self.max_samples or (self.samples >= self.min_samples and settled):
            self.sampling = False

    def _observe_times(self, times: TrialTimes) -> None:
        for d in times.debts:
            stats = self.debts.setdefault((d.tid, d.pc, d.k), WindowStats())
            stats.start.update(d.start_us, self.alpha)
            stats.length.update(d.end_us - d.start_us, self.alpha)
        for p in times.points:
            self.points.setdefault((p.tid, p.pc, p.j), Stat()).update(p.offset_us, self.alpha)
            self.objects.setdefault((p.tid, p.pc, p.j), p.obj)
        if times.step_us is not None:
            self.step.update(times.step_us, self.alpha)

    # --- alignment phase ------------------------------------------------------------------------------------
    def plan_for(self, trial: int) -> TrialPlan:
        """One trial's plan (module docstring): none while sampling or with fewer than two threads measured."""
        threads = sorted({tid for tid, _ in self.windows})
        if self.sampling or len(threads) < 2:
            return TrialPlan()
        rng = random.Random(f"tlbrace-fuzzy-sync:{self.seed}:{trial}")
        step = self.step.avg if self.step.samples else 0.0
        ipi = self._capped(rng.random() * IPI_STEPS * step) if rng.random() < IPI_SHARE else 0
        self.planned["ipi_latency"] += bool(ipi)
        if rng.random() < UNALIGNED_SHARE:
            self.planned["unaligned"] += 1
            return TrialPlan([], None, ipi)
        if not any(key[2] >= 1 for key in self.points):  # no lock request measured: LTP's op windows
            self.planned["ops"] += 1
            delays = self._op_alignment(threads, rng)
            return TrialPlan(delays, None, ipi)
        self.planned["locks"] += 1
        delays, preempt = self.lock_alignment(threads, rng, step)
        self.planned["preempted"] += preempt is not None
        self.chosen.extend(delays)
        self.delayed_trials += bool(delays)
        return TrialPlan(delays, preempt, ipi)

    def lock_alignment(self, threads: list[int], rng: random.Random,
                       step_us: float) -> tuple[list[Delay], Preempt | None]:
        """A reference lock request of one thread, and one lock point of every other thread placed a uniform time
        after it, within LOCK_SPREAD steps plus the pauses: the start delays that put each there (relative to the
        smallest shift, as ``align``), and the pauses of the reference thread before the next shootdown it owes
        (none if it owes none) and right after it releases the reference lock. A thread's lock point is drawn among those that ask for the reference's lock,
        when it has any (the other side of a race waits for the lock the first side holds or has just dropped)."""
        ref = rng.choice(sorted(key for key in self.points if key[2] >= 1 and key[:2] in self.windows))
        tid, pc, j = ref
        at = self.windows[(tid, pc)].start.avg + self.points[ref].avg
        pause = self._capped(rng.random() * PREEMPT_STEPS * step_us)
        release = self._capped(rng.random() * PREEMPT_STEPS * step_us)
        shifts = {(tid, pc): 0.0}
        for other in threads:
            mine = sorted(key for key in self.points if key[0] == other and key[:2] in self.windows)
            if other == tid or not mine:
                continue
            point = rng.choice([key for key in mine if self.objects[key] == self.objects[ref]] or mine)
            target = at + rng.random() * (LOCK_SPREAD * step_us + pause + release)
            shifts[point[:2]] = target - self.points[point].avg - self.windows[point[:2]].start.avg
        preempt = Preempt(tid, pc, j, pause, self.objects[ref], release) if pause or release else None
        return self._delays(shifts), preempt

    def _capped(self, us: float) -> int:
        return round(min(us, float("inf") if self.max_delay_us is None else self.max_delay_us))

    def _delays(self, shifts: dict[tuple[int, int], float]) -> list[Delay]:
        """Start delays for the wanted shifts: a delay can only make an op later, so they are taken relative to
        the smallest; those that round to 0 µs are left out."""
        low = min(shifts.values())
        return [Delay(tid, pc, us) for (tid, pc), shift in shifts.items() if (us := self._capped(shift - low))]

    def wire_plan(self, trial: int) -> list[Any]:
        """plan_for as the trial message carries it."""
        return self.plan_for(trial).wire()

    def candidates(self) -> list[tuple[int, int]]:
        """The measured (thread, op) windows, in a stable order."""
        return sorted(self.windows)

    def delays_for(self, trial: int) -> list[Delay]:
        """LTP's alignment of whole op windows alone: none while sampling (or with fewer than two threads
        measured), else the delays that align one random op window of every other thread with a random reference
        window."""
        threads = sorted({tid for tid, _ in self.windows})
        if self.sampling or len(threads) < 2:
            return []
        return self._op_alignment(threads, random.Random(f"tlbrace-fuzzy-sync:{self.seed}:{trial}"))

    def _op_alignment(self, threads: list[int], rng: random.Random) -> list[Delay]:
        ref = rng.choice(self.candidates())
        others = [(tid, rng.choice([pc for t, pc in self.candidates() if t == tid])) for tid in threads
                  if tid != ref[0]]
        delays = self.align(ref, others, rng)
        self.chosen.extend(delays)
        self.delayed_trials += bool(delays)
        return delays

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
        return self._delays(shifts)

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
            "debt_windows": {f"{label(tid, pc)}.{k}": {"start_us": round(s.start.avg, 1),
                                                        "len_us": round(s.length.avg, 1)}
                             for (tid, pc, k), s in sorted(self.debts.items())},
            "step_us": round(self.step.avg, 1) if self.step.samples else None,
            "plans": dict(self.planned),
        }


def windows_of(timings: list[dict[str, Any]]) -> list[OpWindow]:
    """A trial's op windows from what its CPU actors measured, each ``{"start": {tid: ns}, "ops": [[tid, pc,
    begin_ns, end_ns, steps], ...]}`` for its own threads; the origin is the earliest thread start of the
    trial (actors.race_windows.trial_times reads the rest)."""
    starts = [ns for t in timings for ns in (t.get("start") or {}).values()]
    ops = [op for t in timings for op in (t.get("ops") or [])]
    if not starts or not ops:
        return []
    origin = min(starts)
    return [OpWindow(int(op[0]), int(op[1]), (op[2] - origin) / 1e3, (op[3] - origin) / 1e3) for op in ops]
