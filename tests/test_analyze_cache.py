"""The replay memo (controlled.replay_memo) changes how fast ``analyze`` judges, never what it reports.

Every report of the memoised path (the default) is compared, field by field, with the report of a plain replay
(``judge_trial`` without a memo: ``run_schedule`` in a fresh Machine) of the same records: a few hundred varied
trials (violating, clean, hung), and tampered copies (results changed, records dropped, reordered or malformed,
jitter notes, forged or missing trial_end records), serially and in 2 processes. The one-pass linearisation is
compared with the sort-based computation it replaces, and judging while decoding with reading the whole log.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import msgpack
import pytest

from analysis import coverage
import analysis.analyze as analyze
from analysis.analyze import TrialReport, analyze_log, judge_trial
from controlled import replay_memo
from controlled.linearize import linearize_trial, order_key, schedule_from_records
from kernel_model.config import Config
from kernel_model.program import Scenario
from logs.controlled_log import write_controlled_log
from logs.eventlog import iter_trials, read_log
from test_analyze import ANON, MADV, TINY_GATHER, random_schedule  # bursty random schedules, as the bench's

# (name, scenario, config, trials): violations of several invariants, hangs, and clean runs.
CAMPAIGNS = [
    ("eager", MADV, Config(ordering="eager"), 120),
    ("delayed_rmap", MADV, Config(ordering="delayed", mutant="delayed_rmap_after_unlock"), 60),
    ("free_early", ANON, Config(ordering="delayed", mutant="free_before_flush", **TINY_GATHER), 60),
    ("no_ipi", MADV, Config(ordering="eager", mutant="no_ipi_while_spinning"), 50),
]


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Scenario, Config]]:
    out = {}
    for name, scenario, cfg, trials in CAMPAIGNS:
        path = tmp_path_factory.mktemp("memo") / f"{name}.log"
        for trial in range(trials):
            schedule, _ = random_schedule(scenario, cfg, trial)
            write_controlled_log(path, scenario, cfg, schedule, run_id=name, trial=trial)
        out[name] = (path, scenario, cfg)
    out["tampered"] = (tamper(out["eager"][0], tmp_path_factory.mktemp("memo") / "tampered.log"), MADV,
                       Config(ordering="eager"))
    return out


def tamper(source: Path, path: Path) -> Path:
    """A copy of ``source`` with every kind of damage a replay must notice (or must not be fooled by)."""
    contents = read_log(source)
    rng = random.Random(7)
    with open(path, "wb") as f:
        f.write(msgpack.packb(contents.header))
        for trial, events, end in iter_trials(contents):
            how = trial % 10
            events = [dict(r) for r in events]
            steps = [r for r in events if r["kind"] == "step"]
            if how == 0 and trial % 20 == 10:  # a thread id that equals an int but is not one: a crash
                rng.choice(steps)["tid"] += 0.0
            elif how == 0 and trial % 20 == 0:  # a bool where an IPI's CPU should be
                r = next((r for r in events if r["kind"] == "ipi" and r["cpu"] in (0, 1)), None)
                if r is not None:
                    r["cpu"] = bool(r["cpu"])
            elif how == 1:  # a changed step result: a divergence at that step
                r = rng.choice(steps)
                r["result"] = [r["result"], "forged"]
            elif how == 2:  # a step record missing: the replay runs something else or skips
                events.remove(rng.choice(steps))
            elif how == 3:  # written in reverse: the replay must sort by Lamport clock
                events.reverse()
            elif how == 4:  # the trial cut short, no trial_end: it may end mid-way or in a hang
                events, end = events[:len(events) // 2], None
            elif how == 5:  # delay-injection notes of the wild runtime: not kernel events
                events.insert(1, {**events[0], "kind": "note", "op": "jitter", "seq": -1})
            elif how == 6 and trial % 20 == 6:  # a forged verdict: a disagreement when the replay finds otherwise
                end = dict(end, status="violation", violations=[{"invariant": "negative_mapcount", "detail": "?"}])
            elif how == 6:
                end = dict(end, status="ok", violations=[])
            elif how == 7 and trial % 20 == 7:  # a malformed record
                del events[len(events) // 2]["kind"]
            elif how == 7:  # a thread id the model does not have: the replay crashes
                rng.choice(steps)["tid"] = "writer"
            elif how == 8:  # a duplicated IPI (or step): not enabled when its turn comes
                r = rng.choice([r for r in events if r["kind"] == "ipi"] or steps)
                events.insert(events.index(r) + 1, dict(r))
            elif how == 9:  # a step after the end: not enabled when its turn comes
                events.append(dict(steps[-1], lamport=events[-1]["lamport"] + 1))
            for r in events:
                f.write(msgpack.packb(r))
            if end is not None:
                f.write(msgpack.packb(end))
    return path


def plain_reports(path: Path, scenario: Scenario, cfg: Config, **kwargs: Any) -> list[TrialReport]:
    """Every trial replayed from scratch by run_schedule, as analyze did before the memo."""
    return [judge_trial(scenario, cfg, str(path), trial, events, end, **kwargs)
            for trial, events, end in iter_trials(read_log(path))]


@pytest.mark.parametrize("name", [c[0] for c in CAMPAIGNS] + ["tampered"])
def test_memoised_reports_equal_plain_replays(logs: dict, name: str) -> None:
    path, scenario, cfg = logs[name]
    expected = plain_reports(path, scenario, cfg)
    got = analyze_log(path, jobs=1, scenario=scenario).trials
    assert [r.trial for r in got] == [r.trial for r in expected]
    for g, e in zip(got, expected):
        assert g == e, f"trial {e.trial}"  # every field: violations, divergence, disagreement, executed, events


def test_the_campaigns_cover_what_they_claim(logs: dict) -> None:
    invariants = {i for name in logs for r in plain_reports(*logs[name]) for i in r.invariants}
    assert {"lost_dirty_data", "delayed_rmap_after_unlock", "freed_while_mapped", "hang"} <= invariants
    tampered = plain_reports(*logs["tampered"])
    divergences = [r.divergence for r in tampered if r.divergence]
    # A thread id of "writer" or 1.0 crashed the replay; it is now named as the malformed field it is.
    for what in ("returned", "not enabled", "events; the log holds", "field 'kind' is missing", "field 'tid'"):
        assert any(what in d for d in divergences), what
    assert any(r.disagreement for r in tampered)
    assert sum(1 for r in tampered if not r.divergence and not r.violating) > 40  # the memo's own ground


@pytest.mark.parametrize("name", ["eager", "no_ipi", "tampered"])
def test_memoised_reports_equal_plain_replays_in_two_processes(logs: dict, name: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analyze, "PARALLEL_MIN_BYTES", 0)
    path, scenario, cfg = logs[name]
    assert analyze_log(path, jobs=2, scenario=scenario).trials == plain_reports(path, scenario, cfg)


def test_a_memo_that_outgrows_its_bound_starts_afresh(logs: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_memo, "MAX_NODES", 40)
    path, scenario, cfg = logs["eager"]
    assert analyze_log(path, jobs=1, scenario=scenario).trials == plain_reports(path, scenario, cfg)


def test_coverage_and_kept_events_take_the_full_replay(logs: dict) -> None:
    path, scenario, cfg = logs["eager"]
    got = analyze_log(path, jobs=1, scenario=scenario, observe=coverage.observe)
    assert got.trials == plain_reports(path, scenario, cfg, observe=coverage.observe)
    assert any(r.coverage for r in got.trials)
    kept = analyze_log(path, jobs=1, scenario=scenario, keep_events=True)
    assert kept.trials == plain_reports(path, scenario, cfg, keep_events=True)
    assert all(r.replay_events for r in kept.trials)


def test_ordinary_trials_are_not_replayed_in_full(logs: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default verdict path answers ordinary trials from the memo: only the violating ones (which need their
    events for a witness) go through run_schedule."""
    path, scenario, cfg = logs["eager"]
    calls = []
    full = analyze.run_schedule
    monkeypatch.setattr(analyze, "run_schedule", lambda *a, **k: calls.append(1) or full(*a, **k))
    reports = analyze_log(path, jobs=1, scenario=scenario).trials
    assert len(calls) == sum(1 for r in reports if r.violating) < len(reports)


def test_linearize_trial_is_the_sorted_schedule(logs: dict) -> None:
    def reference(records: list[dict[str, Any]]) -> tuple:
        try:
            ordered = sorted(records, key=order_key)
            return (schedule_from_records(ordered), [r.get("result") for r in ordered if r["kind"] == "step"],
                    sum(1 for r in records if r.get("op") == "jitter"))
        except (KeyError, TypeError) as exc:
            return (type(exc), str(exc))

    def fast(records: list[dict[str, Any]]) -> tuple:
        try:
            return tuple(linearize_trial(records))
        except (KeyError, TypeError) as exc:
            return (type(exc), str(exc))

    rng = random.Random(3)
    checked = 0
    for name in ("eager", "tampered"):
        for _, events, _ in iter_trials(read_log(logs[name][0])):
            shuffled = rng.sample(events, len(events))
            tied = [dict(r, lamport=0) for r in events]  # equal clocks: actor and seq decide
            mixed = [dict(r, lamport=str(r["lamport"])) if i == 3 else r for i, r in enumerate(events)]
            for records in (events, shuffled, tied, mixed, events[:1], []):
                assert fast(records) == reference(records)
                checked += 1
    assert checked > 1000


# --- judging as the log is decoded (analyze_streamed) gives what reading it whole gives ------------------------
def rewrite(source: Path, path: Path, records: list[dict[str, Any]], tail: bytes = b"") -> Path:
    with open(path, "wb") as f:
        f.write(msgpack.packb(read_log(source).header))
        for r in records:
            f.write(msgpack.packb(r))
        f.write(tail)
    return path


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("damage", ["interleaved", "truncated", "garbage", "not a map"])
def test_streamed_analysis_equals_reading_the_whole_log(logs: dict, tmp_path: Path, damage: str, jobs: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analyze, "PARALLEL_MIN_BYTES", 0)
    source, scenario, cfg = logs["eager"]
    records = read_log(source).records
    half = len(records) // 2
    if damage == "interleaved":  # trials 1 and 2 alternate: only the whole-log reader groups them
        one = [r for r in records if r.get("trial") == 1]
        two = [r for r in records if r.get("trial") == 2]
        rest = [r for r in records if r.get("trial") not in (1, 2)]
        mixed = [r for pair in zip(one, two) for r in pair] + one[len(two):] + two[len(one):]
        path = rewrite(source, tmp_path / "x.log", rest[:half] + mixed + rest[half:])
    elif damage == "truncated":
        path = rewrite(source, tmp_path / "x.log", records[:half], msgpack.packb(records[half])[:-3])
    elif damage == "garbage":
        path = rewrite(source, tmp_path / "x.log", records[:half], b"\xc1" + msgpack.packb(records[half]))
    else:
        path = rewrite(source, tmp_path / "x.log", records[:half] + [17] + records[half:])  # type: ignore[list-item]
    whole = read_log(path)
    streamed = analyze.analyze_streamed(str(path), jobs, scenario=scenario)
    assert (streamed is None) == (damage == "interleaved")  # interleaved: it declines, read_log groups them
    got = analyze_log(path, jobs=jobs, scenario=scenario)
    assert got.damage == whole.damage and (got.damage is None) == (damage == "interleaved")
    assert got.trials == plain_reports(path, scenario, cfg)
