"""Where race windows lie (actors/race_windows.py) and the aligner's plan built on them (actors/fuzzy_sync.py's
plan_for / lock_alignment): pure arithmetic on recorded timings with seeded random.Random, no Ray. No test
asserts a hit rate or a time."""

from __future__ import annotations

import random

import pytest

from actors.fuzzy_sync import (IPI_STEPS, LOCK_SPREAD, PREEMPT_STEPS, Delay, OpWindow, Preempt, RaceAligner,
                               TrialPlan)
from actors.race_windows import (DebtWindow, LockPoint, Mark, TrialTimes, debt_windows, is_lock, is_marked,
                                 lock_object, lock_points, released_object, trial_times)


def test_a_changed_pte_opens_a_debt_window_and_the_acks_close_it() -> None:
    marks = [Mark(1, 0, "spin_lock", 0.0, 1.0, obj="ptl:0"),
             Mark(1, 0, "ptep_get_and_clear_full", 1.0, 2.0, changed=True),
             Mark(1, 0, "ptep_get_and_clear_full", 2.0, 3.0, changed=True),  # the debt is already open
             Mark(1, 0, "flush_tlb_others", 5.0, 6.0),
             Mark(1, 0, "wait_acks", 6.0, 9.0),
             Mark(1, 0, "ptep_get_and_clear_full", 10.0, 11.0, changed=False),  # pte_none: nothing is owed
             Mark(1, 0, "ptep_modify_prot", 12.0, 13.0, changed=True),
             Mark(1, 0, "wait_acks", 14.0, 20.0)]
    assert debt_windows(marks, {(1, 0): 30.0}) == [DebtWindow(1, 0, 0, 2.0, 9.0), DebtWindow(1, 0, 1, 13.0, 20.0)]


def test_a_debt_still_open_closes_with_its_op() -> None:
    """One CPU sends no IPI and waits for no ack; a new op (or the end of the trial) ends the window."""
    marks = [Mark(0, 0, "ptep_get_and_clear_full", 1.0, 2.0, changed=True),
             Mark(0, 1, "ptep_get_and_clear_full", 50.0, 51.0, changed=True),
             Mark(2, 0, "ptep_get_and_clear_full", 3.0, 4.0, changed=True)]
    ends = {(0, 0): 10.0, (0, 1): 60.0, (2, 0): 8.0}
    assert sorted(debt_windows(marks, ends), key=lambda w: (w.tid, w.pc)) == [
        DebtWindow(0, 0, 0, 2.0, 10.0), DebtWindow(0, 1, 0, 51.0, 60.0), DebtWindow(2, 0, 0, 4.0, 8.0)]


def test_lock_points_are_the_op_start_and_its_lock_requests() -> None:
    marks = [Mark(0, 1, "down_read", 105.0, 106.0, obj="rwsem:mmap_lock"),
             Mark(0, 1, "wait_acks", 107.0, 120.0),  # not a lock: the CPU waits for acks, not for a thread
             Mark(0, 1, "spin_lock", 110.0, 130.0, obj="ptl:0"),
             Mark(1, 0, "folio_lock", 3.0, 4.0, obj="folio:0")]
    assert lock_points(marks, {(0, 1): 100.0, (1, 0): 0.0}) == [
        LockPoint(0, 1, 0, 0.0), LockPoint(1, 0, 0, 0.0), LockPoint(1, 0, 1, 3.0, "folio:0"),
        LockPoint(0, 1, 1, 5.0, "rwsem:mmap_lock"), LockPoint(0, 1, 2, 10.0, "ptl:0")]


def test_the_marked_steps_and_their_locks() -> None:
    assert is_lock("spin_lock") and is_lock("down_write") and is_lock("folio_wait_writeback")
    assert not is_lock("wait_acks") and not is_lock("ptep_get_and_clear_full")
    assert all(is_marked(op) for op in ("ptep_modify_prot", "flush_tlb_others", "wait_acks", "folio_lock"))
    assert not is_marked("store_tlb") and not is_marked("set_pte_at")
    assert lock_object("spin_lock", (3, 1)) == "ptl:3"
    assert lock_object("down_read", ["i_mmap_rwsem", 2]) == lock_object("down_write", ("i_mmap_rwsem", 0))
    assert lock_object("folio_lock", (0, 1)) == lock_object("folio_wait_writeback", (0, 1)) == "folio:0"
    assert released_object("spin_unlock", (3, 1)) == "ptl:3" and released_object("folio_unlock", (0, 1)) == "folio:0"
    assert released_object("up_write", ("i_mmap_rwsem", 0)) == lock_object("down_read", ("i_mmap_rwsem", 2))
    assert released_object("spin_lock", (3, 1)) is None and released_object("set_pte_at", (0, ())) is None


def test_trial_times_reads_the_cpus_measurements_on_one_origin() -> None:
    timings = [{"start": {0: 2_000_000}, "ops": [[0, 0, 2_000_000, 6_000_000, 4]],
                "marks": [[0, 0, "ptep_get_and_clear_full", 3_000_000, 3_500_000, True, ""],
                          [0, 0, "wait_acks", 4_000_000, 5_000_000, False, ""]]},
               {"start": {1: 1_000_000}, "ops": [[1, 0, 1_000_000, 3_000_000, 4]],
                "marks": [[1, 0, "spin_lock", 1_500_000, 1_600_000, False, "ptl:0"]]}, {}]
    times = trial_times(timings)
    assert times.debts == [DebtWindow(0, 0, 0, 2_500.0, 4_000.0)]
    assert times.points == [LockPoint(0, 0, 0, 0.0), LockPoint(1, 0, 0, 0.0), LockPoint(1, 0, 1, 500.0, "ptl:0")]
    assert times.step_us == pytest.approx((4_000.0 + 2_000.0) / 8)
    assert trial_times([{}]) == TrialTimes([], [], None)


# A zapper (thread 0) whose PTL request is 100 µs into its op, which starts at 1000; a writeback (thread 1) whose
# op starts at 0 and asks for the same PTL 400 µs in, and for a folio lock 50 µs in; a writer (thread 2) that takes
# no lock. One step: 10 µs.
OPS = [OpWindow(0, 0, 1_000.0, 2_000.0), OpWindow(1, 0, 0.0, 3_000.0), OpWindow(2, 0, 0.0, 500.0)]
TIMES = TrialTimes([DebtWindow(0, 0, 0, 1_150.0, 1_300.0)],
                   [LockPoint(0, 0, 0, 0.0), LockPoint(0, 0, 1, 100.0, "ptl:0"), LockPoint(1, 0, 0, 0.0),
                    LockPoint(1, 0, 1, 50.0, "folio:0"), LockPoint(1, 0, 2, 400.0, "ptl:0"), LockPoint(2, 0, 0, 0.0)],
                   10.0)


def sampled(times: TrialTimes = TIMES, trials: int = 3, **kw: float) -> RaceAligner:
    aligner = RaceAligner([["munmap"], ["msync"], ["store"]], seed=5, min_samples=trials, max_samples=trials, **kw)
    for _ in range(trials):
        aligner.observe(OPS, times)
    return aligner


def where(aligner: RaceAligner, point: tuple[int, int, int], delays: list[Delay]) -> float:
    """When lock point ``point`` comes once ``delays`` are applied."""
    shift = sum(d.us for d in delays if (d.tid, d.pc) == point[:2])
    return aligner.windows[point[:2]].start.avg + shift + aligner.points[point].avg


def test_a_lock_point_of_the_other_thread_lands_just_after_the_reference_lock() -> None:
    """Writeback's request for the zapper's PTL (its only one) comes after the zapper's, within LOCK_SPREAD steps
    plus the zapper's pause; the writer, with no lock, has its op start put there."""
    aligner = sampled()
    rng = random.Random(1)
    checked = 0
    for _ in range(300):
        delays, preempt = aligner.lock_alignment([0, 1, 2], rng, 10.0)
        if preempt is None or preempt.tid != 0:
            continue  # a writeback lock was the reference this time (the pause names the reference)
        at = where(aligner, (0, 0, 1), delays)
        last = at + LOCK_SPREAD * 10.0 + preempt.us + preempt.release_us + 1
        assert at - 1 <= where(aligner, (1, 0, 2), delays) <= last
        assert at - 1 <= where(aligner, (2, 0, 0), delays) <= last
        assert len({d.tid for d in delays}) == len(delays) and all(d.us > 0 for d in delays)
        checked += 1
    assert checked > 50


def test_the_reference_thread_is_paused_before_its_next_owed_shootdown_and_after_the_release() -> None:
    aligner = sampled()
    rng = random.Random(2)
    plans = [aligner.lock_alignment([0, 1, 2], rng, 10.0)[1] for _ in range(300)]
    pauses = [p for p in plans if p is not None]
    assert {(p.tid, p.pc, p.j, p.lock) for p in pauses} == {(0, 0, 1, "ptl:0"), (1, 0, 1, "folio:0"),
                                                             (1, 0, 2, "ptl:0")}  # every lock request
    for us in ([p.us for p in pauses], [p.release_us for p in pauses]):
        assert all(0 <= x <= PREEMPT_STEPS * 10.0 for x in us)
        assert max(us) > 0.8 * PREEMPT_STEPS * 10.0  # the whole range is drawn


def test_plans_are_deterministic_and_mix_aligned_unaligned_and_late_ipis() -> None:
    one, two = sampled(), sampled()
    plans = [one.plan_for(t) for t in range(400)]
    assert plans == [two.plan_for(t) for t in range(400)]
    unaligned = [p for p in plans if not p.delays and p.preempt is None]
    assert 0.15 * 400 < len(unaligned) < 0.35 * 400  # UNALIGNED_SHARE, a quarter
    late = [p.ipi_latency_us for p in plans if p.ipi_latency_us]
    assert 0.4 * 400 < len(late) < 0.6 * 400 and max(late) <= IPI_STEPS * 10.0
    assert one.planned["unaligned"] == len(unaligned) and one.planned["locks"] == 400 - len(unaligned)
    assert TrialPlan([Delay(1, 0, 5)], Preempt(0, 0, 1, 7, "ptl:0", 8), 9).wire() == [
        [[1, 0, 5]], [0, 0, 1, 7, "ptl:0", 8], 9]
    assert TrialPlan().wire() == [[], [], 0]


def test_no_plan_while_sampling() -> None:
    aligner = RaceAligner([["munmap"], ["msync"], ["store"]], seed=5, min_samples=3, max_samples=3)
    aligner.observe(OPS, TIMES)
    assert aligner.sampling and aligner.plan_for(0) == TrialPlan()


def test_without_lock_requests_the_plan_aligns_op_windows() -> None:
    """A scenario whose threads take no lock (LTP's case: two syscalls) gets LTP's op-window alignment."""
    times = TrialTimes([], [LockPoint(0, 0, 0, 0.0), LockPoint(1, 0, 0, 0.0), LockPoint(2, 0, 0, 0.0)], 10.0)
    aligner = sampled(times)
    plans = [aligner.plan_for(t) for t in range(100)]
    assert aligner.planned["locks"] == 0 and aligner.planned["ops"] > 0
    assert all(p.preempt is None for p in plans) and any(p.delays for p in plans)


def test_every_pause_stays_under_the_cap() -> None:
    aligner = sampled(max_delay_us=200.0)
    plans = [aligner.plan_for(t) for t in range(300)]
    pauses = [d.us for p in plans for d in p.delays] + [us for p in plans if p.preempt is not None
                                                         for us in (p.preempt.us, p.preempt.release_us)]
    assert pauses and max(pauses) == 200 and all(p.ipi_latency_us <= 200 for p in plans)


def test_the_summary_says_what_was_measured_and_planned() -> None:
    from cli.cmd_stress import aligner_line

    aligner = sampled()
    plans = [aligner.plan_for(t) for t in range(40)]
    s = aligner.summary(["zapper", "writeback", "writer"])
    assert s["debt_windows"] == {"zapper.munmap#0.0": {"start_us": 1150.0, "len_us": 150.0}} and s["step_us"] == 10.0
    assert s["plans"]["preempted"] == sum(p.preempt is not None for p in plans)
    line = aligner_line(s)
    assert f"{s['plans']['unaligned']} unaligned" in line and f"{s['plans']['ipi_latency']} with late IPIs" in line
