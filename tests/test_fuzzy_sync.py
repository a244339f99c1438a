"""The race-window aligner (actors/fuzzy_sync.py): its arithmetic on given windows (pure, seeded, no Ray), and
one small stress campaign with ``--align`` on the session's Ray. No test asserts a hit rate or a time."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from actors.fuzzy_sync import Delay, OpWindow, RaceAligner, Stat, windows_of
from cli.main import main
from logs.eventlog import read_log
from scenarios.loader import load_scenario

PROGRAMS = [["store", "store"], ["munmap"], ["msync"]]


def sampled(windows: list[OpWindow], trials: int = 5, **kw: int) -> RaceAligner:
    aligner = RaceAligner(PROGRAMS, seed=7, min_samples=trials, max_samples=trials, **kw)
    for _ in range(trials):
        aligner.observe(windows)
    return aligner


# Thread 0's two stores early and short, the munmap in the middle, the msync late and long (µs from the origin).
WINDOWS = [OpWindow(0, 0, 0.0, 100.0), OpWindow(0, 1, 100.0, 200.0), OpWindow(1, 0, 50.0, 1_050.0),
           OpWindow(2, 0, 5_000.0, 9_000.0)]


def start_and_end(aligner: RaceAligner, key: tuple[int, int], delays: list[Delay]) -> tuple[float, float]:
    """Where window ``key`` lies once ``delays`` are applied (a delay before an op shifts that op)."""
    w = aligner.windows[key]
    shift = sum(d.us for d in delays if (d.tid, d.pc) == key)
    return w.start.avg + shift, w.start.avg + shift + w.length.avg


def test_stat_is_ltps_exponential_moving_average() -> None:
    s = Stat()
    s.update(100.0)
    assert (s.avg, s.avg_dev, s.dev_ratio) == (100.0, 0.0, 0.0)  # the first sample seeds the average
    s.update(200.0, alpha=0.25)
    assert s.avg == pytest.approx(125.0)  # 0.25 * 200 + 0.75 * 100
    assert s.avg_dev == pytest.approx(0.25 * 75.0)  # |125 - 200|, averaged with the previous 0
    assert s.dev_ratio == pytest.approx(s.avg_dev / s.avg)


def test_no_delay_while_sampling() -> None:
    aligner = RaceAligner(PROGRAMS, seed=1, min_samples=3, max_samples=6)
    for trial in range(2):
        aligner.observe(WINDOWS)
        assert aligner.sampling and aligner.delays_for(trial) == []


def test_sampling_ends_at_min_samples_when_the_windows_are_steady() -> None:
    aligner = RaceAligner(PROGRAMS, seed=1, min_samples=3, max_samples=10)
    for _ in range(3):
        aligner.observe(WINDOWS)
    assert not aligner.sampling and aligner.samples == 3


def test_sampling_goes_on_to_the_cap_while_the_windows_scatter() -> None:
    aligner = RaceAligner(PROGRAMS, seed=1, min_samples=3, max_samples=8)
    for n in range(1, 9):
        start = 1_000.0 if n % 2 else 9_000.0  # a window that moves by far more than 10% from trial to trial
        aligner.observe([OpWindow(0, 0, start, start + 500.0), OpWindow(1, 0, 0.0, 10.0)])
        assert aligner.sampling == (n < 8)
    assert aligner.samples == 8


def test_observe_after_sampling_changes_nothing() -> None:
    aligner = sampled(WINDOWS)
    before = {k: (s.start.avg, s.length.avg) for k, s in aligner.windows.items()}
    aligner.observe([OpWindow(0, 0, 1e6, 2e6)])
    assert {k: (s.start.avg, s.length.avg) for k, s in aligner.windows.items()} == before


@pytest.mark.parametrize("a,b", [((0, 0), (2, 0)), ((2, 0), (0, 1)), ((1, 0), (2, 0)), ((0, 1), (1, 0))])
def test_two_aligned_windows_overlap_for_every_draw(a: tuple[int, int], b: tuple[int, int]) -> None:
    """LTP's delay range [-len_b, +len_a] (x 1.1): after the delay, b starts within len_b before a's start to
    len_a after it, so the two windows meet (at worst they touch, within the 10% overshoot). One delay, on one of
    the two."""
    aligner = sampled(WINDOWS)
    rng = random.Random(11)
    for _ in range(200):
        delays = aligner.align(a, [b], rng)
        assert len(delays) <= 1 and all(d.us > 0 and (d.tid, d.pc) in (a, b) for d in delays)
        assert overlap(aligner, a, b, delays)


def overlap(aligner: RaceAligner, a: tuple[int, int], b: tuple[int, int], delays: list[Delay]) -> bool:
    a0, a1 = start_and_end(aligner, a, delays)
    b0, b1 = start_and_end(aligner, b, delays)
    slack = 0.1 * (a1 - a0 + b1 - b0) + 1  # the overshoot, and rounding to whole µs
    return b0 <= a1 + slack and a0 <= b1 + slack


def test_every_thread_meets_the_reference_window() -> None:
    """Three threads: the zap and the msync are both moved onto the writer's first store."""
    aligner = sampled(WINDOWS)
    rng = random.Random(2)
    ref, others = (0, 0), [(1, 0), (2, 0)]
    for _ in range(200):
        delays = aligner.align(ref, others, rng)
        assert all(d.us > 0 for d in delays) and len({d.tid for d in delays}) == len(delays)
        assert all(overlap(aligner, ref, b, delays) for b in others)


def test_the_draws_cover_the_whole_window() -> None:
    """The offset of b's start from a's start spreads over [-len_b, +len_a]: every part of one window meets the
    other in some trials, not just one fixed offset."""
    aligner = sampled(WINDOWS)
    a, b = (0, 0), (2, 0)  # a: 100 µs long at 0; b: 4000 µs long at 5000
    rng = random.Random(3)
    offsets = []
    for _ in range(400):
        delays = aligner.align(a, [b], rng)
        offsets.append(start_and_end(aligner, b, delays)[0] - start_and_end(aligner, a, delays)[0])
    assert min(offsets) < -0.8 * 4000 and max(offsets) > 0.8 * 100
    assert min(offsets) >= -1.1 * 4000 - 1 and max(offsets) <= 1.1 * 100 + 1


def test_delays_are_deterministic_for_a_seed_and_trial() -> None:
    one, two = sampled(WINDOWS), sampled(WINDOWS)
    assert [one.delays_for(t) for t in range(50)] == [two.delays_for(t) for t in range(50)]
    other = RaceAligner(PROGRAMS, seed=8, min_samples=5, max_samples=5)
    for _ in range(5):
        other.observe(WINDOWS)
    assert [one.delays_for(t) for t in range(50)] != [other.delays_for(t) for t in range(50)]


def test_each_trial_delays_at_most_one_op_per_thread_and_every_earlier_op_gets_its_turn() -> None:
    """A delay only moves an op later: the msync, which starts after every other op ends, is never delayed;
    each op that starts before another's end is, in some trials."""
    aligner = sampled(WINDOWS)
    delayed = set()
    for trial in range(300):
        delays = aligner.delays_for(trial)
        assert len({d.tid for d in delays}) == len(delays) <= 2
        delayed.update((d.tid, d.pc) for d in delays)
    assert delayed == {(0, 0), (0, 1), (1, 0)}
    assert aligner.chosen and all(d.us > 0 for d in aligner.chosen) and 0 < aligner.delayed_trials <= 300


def test_delays_stay_under_the_cap() -> None:
    """A sleeping CPU takes no step: the campaign caps delays under its hang timeout."""
    aligner = RaceAligner(PROGRAMS, seed=3, min_samples=1, max_samples=1, max_delay_us=700.0)
    aligner.observe(WINDOWS)
    delays = [d for trial in range(100) for d in aligner.delays_for(trial)]
    assert delays and max(d.us for d in delays) == 700


def test_one_thread_measured_means_no_delay() -> None:
    aligner = RaceAligner(PROGRAMS, seed=1, min_samples=1, max_samples=1)
    aligner.observe([OpWindow(0, 0, 0.0, 10.0), OpWindow(0, 1, 10.0, 20.0)])
    assert not aligner.sampling and aligner.delays_for(0) == []


def test_windows_of_merges_the_cpus_and_takes_the_earliest_start_as_origin() -> None:
    timings = [{"start": {0: 5_000}, "ops": [[0, 0, 6_000, 9_000]]},
               {"start": {1: 3_000}, "ops": [[1, 0, 4_000, 8_000]]}, {}]
    assert windows_of(timings) == [OpWindow(0, 0, 3.0, 6.0), OpWindow(1, 0, 1.0, 5.0)]
    assert windows_of([{}]) == []


def test_the_aligner_knows_only_the_threads_op_kinds() -> None:
    scenario = load_scenario("munmap")
    aligner = RaceAligner.for_scenario(scenario, seed=0, min_samples=4, hang_timeout=2.0)
    assert aligner.programs == PROGRAMS and aligner.max_samples == 12 and aligner.max_delay_us == 1e6
    summary = aligner.summary([t.name for t in scenario.threads])
    assert summary["on"] and summary["phase"] == "sampling" and summary["delay_us"] is None


def test_bad_sampling_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="min_samples"):
        RaceAligner(PROGRAMS, seed=0, min_samples=5, max_samples=4)


@pytest.mark.wild
@pytest.mark.usefixtures("ray_session")
def test_stress_with_align_reports_the_aligner(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A small campaign: 2 trials sampled at least (6 at most), then delays; each delay the summary counts is
    in a trial's log as a fuzzy_sync pause (which replay skips: no trial diverged)."""
    code = main(["stress", "munmap", "--ordering", "delayed", "--trials", "10", "--align", "2", "--seed", "4",
                 "--keep-passing", "--json", "--out", str(tmp_path)])
    summary = json.loads(capsys.readouterr().out)
    assert summary["trials"] == 10 and summary["diverged"] == summary["crashed"] == 0
    assert code == (1 if summary["violations"] else 0)
    aligner = summary["aligner"]
    assert aligner["on"] and aligner["phase"] == "aligning" and 2 <= aligner["sampled_trials"] <= 6
    assert set(aligner["windows"]) == {"writer.store#0", "writer.store#1", "zapper.munmap#0", "writeback.msync#0"}
    pauses = [r for log in tmp_path.glob("munmap-*.msgpack") for r in read_log(str(log)).records
              if r.get("fn") == "fuzzy_sync"]
    starts = [r for r in pauses if r["args"][0] not in ("flush_tlb_others", "release")]  # the others: Preempt
    assert len(starts) == sum(v["count"] for v in aligner["delays_by_op"].values())
    assert aligner["delayed_trials"] <= len(starts) <= 2 * aligner["delayed_trials"]  # 3 threads: 2 at most
    assert len(pauses) - len(starts) <= 2 * aligner["plans"]["preempted"]
    assert all(r["op"] == "jitter" and r["args"][1] > 0 for r in pauses)
    plans = aligner["plans"]
    assert plans["unaligned"] + plans["locks"] + plans["ops"] == 10 - aligner["sampled_trials"]
    assert set(aligner["debt_windows"]) <= {f"{op}.{k}" for op in aligner["windows"] for k in range(4)}


@pytest.mark.parametrize("value", ["0", "-3", "x", "10001"])
def test_a_bad_align_count_exits_2(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["stress", "munmap", "--align", value])
    assert exc.value.code == 2 and "--align" in capsys.readouterr().err
