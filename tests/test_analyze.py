"""tlbrace analyze: verdicts by replay, minimal witnesses, damaged logs, outputs. Fast: no Ray, small searches.

Schedules come from seeded random search in the controlled machine ("bursty" random: keep running the same
transition for a while, which reaches the race window far more often than a uniform choice per step).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import pytest

import analysis.analyze as analyze
from analysis.analyze import analyze_log, summarize, wilson_interval
from cli import cmd_analyze
from controlled.machine import Machine
from kernel_model.config import Config
from kernel_model.program import Op, Scenario, Setup, Thread
from logs.controlled_log import write_controlled_log
from logs.eventlog import read_log

MADV = Scenario("madv_dontneed", "", Setup(pages=1, warm_tlb=("writer",)),
                (Thread("writer", (Op("store", (0,), 2),)), Thread("zapper", (Op("madvise_dontneed", (0,)),)),
                 Thread("writeback", (Op("msync", (0,)),))))
# Two anonymous pages and one-entry gather batches: the second page fills the gather, which forces the flush
# (and, in the free_before_flush mutant, the early free) inside zap_pte_range; anon pages alone never force it.
ANON = Scenario("anon_zap", "", Setup(pages=2, anon=True, warm_tlb=("writer",)),
                (Thread("writer", (Op("store", (0,), 2),)), Thread("zapper", (Op("madvise_dontneed", (0, 1)),))))
TINY_GATHER = {"mmu_gather_bundle": 1, "max_gather_batch": 1, "max_gather_batch_count": 1}


def random_schedule(scenario: Scenario, cfg: Config, seed: int) -> tuple[list, list[str]]:
    rng = random.Random(seed)
    m = Machine(scenario, cfg)
    schedule: list = []
    current = None
    while True:
        enabled = m.enabled_all()
        if not enabled:
            return schedule, ["hang"] if not m.finished() else []
        if current not in enabled or rng.random() < 0.3:
            current = rng.choice(enabled)
        schedule.append(current)
        violations = m.execute(current)
        if violations:
            return schedule, sorted({v.invariant for v in violations})


def find_schedule(scenario: Scenario, cfg: Config, invariant: str, tries: int = 5000) -> list:
    for seed in range(tries):
        schedule, found = random_schedule(scenario, cfg, seed)
        if invariant in found:
            return schedule
    raise AssertionError(f"no {invariant} in {tries} random schedules")


@pytest.fixture(autouse=True)
def hand_built_scenarios(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hand-built scenarios have no TOML source: let the analyzer find them by name."""
    by_name = {s.name: s for s in (MADV, ANON)}
    original = analyze.scenario_from_header
    monkeypatch.setattr(analyze, "scenario_from_header",
                        lambda h: by_name[h["scenario"]] if not h["scenario_source"] else original(h))


def run_cli(capsys: pytest.CaptureFixture, *logs: str, **options: object) -> tuple[int, str, str]:
    ns = argparse.Namespace(logs=list(logs), json=False, timeline=None, perfetto=None, trial=None, coverage=False,
                            jobs=1, width=160)  # --width 160: wide enough that no kernel name is folded
    for key, value in options.items():
        setattr(ns, key, value)
    code = cmd_analyze.run(ns)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def eager_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("logs") / "eager.log"
    cfg = Config(ordering="eager")
    write_controlled_log(path, MADV, cfg, find_schedule(MADV, cfg, "lost_dirty_data"), run_id="eager", trial=0)
    for trial, seed in enumerate(range(1, 6), start=1):
        write_controlled_log(path, MADV, cfg, random_schedule(MADV, cfg, seed)[0], run_id="eager", trial=trial)
    return path


# --- verdicts ---------------------------------------------------------------------------------------------------
def test_eager_lost_write_is_found_with_its_witness(eager_log: Path) -> None:
    a = analyze_log(eager_log, jobs=1)
    first = a.trials[0]
    assert first.invariants == ["lost_dirty_data"]
    assert first.divergence is None and first.disagreement is None
    from analysis.witness import witnesses_for

    (w,) = witnesses_for(first.violations, a.scenario, a.cfg, first.executed)
    got = {(r.fn, r.role) for r in w.rows}
    assert ("zap_pte_range", "pte_clear") in got
    assert ("zap_pte_range", "rmap_removal") in got
    assert ("folio_mkclean", "mkclean_check") in got
    assert ("folio_clear_dirty_for_io", "clear_dirty") in got
    assert ("writepage", "io_snapshot") in got
    assert ("user_store", "stale_store") in got
    assert ("flush_tlb_func", "late_flush") in got
    seqs = [r.seq for r in w.rows if r.seq is not None]
    assert seqs == sorted(seqs)  # happens-before order
    by_role = {r.role: r for r in w.rows}
    assert by_role["rmap_removal"].seq < by_role["mkclean_check"].seq < by_role["stale_store"].seq \
        < by_role["late_flush"].seq
    assert "delayed" not in by_role["rmap_removal"].action
    assert by_role["final_state"].action.startswith("page 0 (pfn 0) holds")


def test_delayed_ordering_is_clean(tmp_path: Path) -> None:
    cfg = Config(ordering="delayed")
    path = tmp_path / "delayed.log"
    for seed in range(60):
        write_controlled_log(path, MADV, cfg, random_schedule(MADV, cfg, seed)[0], run_id="d", trial=seed)
    a = analyze_log(path, jobs=1)
    s = summarize(a.trials)
    assert s.trials == 60 and s.violating == 0 and s.divergences == 0 and s.disagreements == 0


@pytest.mark.parametrize("scenario, cfg, invariant, roles", [
    (MADV, Config(ordering="delayed", mutant="delayed_rmap_after_unlock"), "delayed_rmap_after_unlock",
     {"queue_delayed", "unlock", "late_rmap"}),
    (ANON, Config(ordering="delayed", mutant="free_before_flush", **TINY_GATHER), "freed_while_mapped",
     {"free", "late_flush"}),
    (MADV, Config(ordering="eager", mutant="flush_after_unlock"), "lost_dirty_data",
     {"pte_clear", "rmap_removal", "final_state"}),
])
def test_mutants_are_named_by_the_oracle(tmp_path: Path, scenario: Scenario, cfg: Config, invariant: str,
                                         roles: set[str]) -> None:
    path = tmp_path / "mutant.log"
    write_controlled_log(path, scenario, cfg, find_schedule(scenario, cfg, invariant), run_id="m")
    a = analyze_log(path, jobs=1)
    (t,) = a.trials
    assert invariant in t.invariants and t.divergence is None
    from analysis.witness import witnesses_for

    w = next(w for w in witnesses_for(t.violations, a.scenario, a.cfg, t.executed) if w.invariant == invariant)
    assert roles <= {r.role for r in w.rows}
    if invariant == "delayed_rmap_after_unlock":
        late = next(r for r in w.rows if r.role == "late_rmap")
        assert late.after_violation and late.fn == "tlb_flush_rmaps"


def test_the_logs_own_verdict_is_not_trusted(tmp_path: Path, eager_log: Path) -> None:
    """A trial_end claiming "ok" does not hide the violation; it is reported as a disagreement."""
    import msgpack

    contents = read_log(eager_log)
    forged = tmp_path / "forged.log"
    with open(forged, "wb") as f:
        f.write(msgpack.packb(contents.header))
        for rec in contents.records:
            if rec.get("type") == "trial_end":
                rec = dict(rec, status="ok", violations=[])
            f.write(msgpack.packb(rec))
    t = analyze_log(forged, jobs=1).trials[0]
    assert t.invariants == ["lost_dirty_data"]
    assert t.disagreement and "lost_dirty_data" in t.disagreement


def test_a_tampered_result_is_a_divergence(tmp_path: Path, eager_log: Path) -> None:
    import msgpack

    contents = read_log(eager_log)
    tampered = tmp_path / "tampered.log"
    done = False
    with open(tampered, "wb") as f:
        f.write(msgpack.packb(contents.header))
        for rec in contents.records:
            if not done and rec.get("op") == "folio_mapped":
                rec, done = dict(rec, result=not rec["result"]), True
            f.write(msgpack.packb(rec))
    assert done
    assert analyze_log(tampered, jobs=1).trials[0].divergence


def test_parallel_and_serial_verdicts_agree(eager_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analyze, "PARALLEL_MIN_BYTES", 0)
    serial = analyze_log(eager_log, jobs=1)
    parallel = analyze_log(eager_log, jobs=2)
    key = [(t.trial, t.invariants, t.divergence, t.disagreement, t.executed) for t in serial.trials]
    assert key == [(t.trial, t.invariants, t.divergence, t.disagreement, t.executed) for t in parallel.trials]


def test_same_seed_same_log_bytes(tmp_path: Path) -> None:
    cfg = Config(ordering="eager")
    blobs = []
    for name in ("a.log", "b.log"):
        path = tmp_path / name
        for seed in range(3):
            write_controlled_log(path, MADV, cfg, random_schedule(MADV, cfg, seed)[0], run_id="det", trial=seed)
        created = read_log(path).header["created"].encode()
        blobs.append(path.read_bytes().replace(created, b"CREATED"))
    assert blobs[0] == blobs[1]


def test_wilson_interval() -> None:
    lo, hi = wilson_interval(0, 100)
    assert lo == 0.0 and 0.03 < hi < 0.04
    lo, hi = wilson_interval(50, 100)
    assert lo < 0.5 < hi and abs((lo + hi) / 2 - 0.5) < 1e-9


# --- the command ------------------------------------------------------------------------------------------------
def test_cli_exit_codes_and_witness_table(capsys: pytest.CaptureFixture, eager_log: Path, tmp_path: Path) -> None:
    code, out, _ = run_cli(capsys, str(eager_log))
    assert code == 1
    for needle in ("VIOLATION lost_dirty_data", "ptep_get_and_clear_full", "page_remove_rmap", "not_mapped",
                   "folio_test_clear_dirty", "writepage", "→ stored", "flush_tlb_func", "writer", "zapper",
                   "writeback", "hit rate"):
        assert needle in out, needle
    cfg = Config(ordering="delayed")
    clean = tmp_path / "clean.log"
    write_controlled_log(clean, MADV, cfg, random_schedule(MADV, cfg, 0)[0], run_id="c")
    assert run_cli(capsys, str(clean))[0] == 0


def test_json_output_shape(capsys: pytest.CaptureFixture, eager_log: Path) -> None:
    code, out, _ = run_cli(capsys, str(eager_log), json=True, coverage=True)
    doc = json.loads(out)
    assert code == 1
    (log,) = doc["logs"]
    assert log["damage"] is None and log["scenario"] == "madv_dontneed" and len(log["trials"]) == 6
    t0 = log["trials"][0]
    assert t0["verdict"] == "violation" and t0["violations"][0]["invariant"] == "lost_dirty_data"
    assert t0["logged"] == {"status": "violation", "invariants": ["lost_dirty_data"]}
    assert {"seq", "thread", "cpu", "fn", "action", "why", "role"} <= set(t0["witnesses"][0]["rows"][0])
    s = doc["summary"]
    assert s["trials"] == 6 and s["by_invariant"]["lost_dirty_data"] >= 1
    lo, hi = s["wilson95"]
    assert lo <= s["hit_rate"] <= hi
    assert doc["coverage"]["trials"] == 6 and doc["coverage"]["pairs"]


def test_damaged_logs_are_read_up_to_the_damage(capsys: pytest.CaptureFixture, eager_log: Path,
                                                tmp_path: Path) -> None:
    data = eager_log.read_bytes()
    truncated = tmp_path / "truncated.log"
    truncated.write_bytes(data[:-7])
    code, out, err = run_cli(capsys, str(truncated), json=True)
    doc = json.loads(out)
    assert "truncated record at byte" in err and "truncated record at byte" in doc["logs"][0]["damage"]
    assert doc["logs"][0]["trials"][0]["verdict"] == "violation" and code == 1
    assert doc["logs"][0]["trials"][-1]["logged"]["status"] is None  # its trial_end was cut off
    garbage = tmp_path / "garbage.log"
    garbage.write_bytes(data + b"\xc1\xc1 not msgpack")
    code, out, err = run_cli(capsys, str(garbage))
    assert f"garbage at byte {len(data)}" in err and "VIOLATION lost_dirty_data" in out


def test_not_a_log_is_bad_input(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    code, out, err = run_cli(capsys, str(text))
    assert code == 2 and "not a tlbrace log" in err and "Traceback" not in err and err.count("\n") == 1
    import msgpack

    future = tmp_path / "future.log"
    future.write_bytes(msgpack.packb({"schema": "tlbrace-log", "version": 99}))
    code, _, err = run_cli(capsys, str(future))
    assert code == 2 and "version 99" in err
    assert run_cli(capsys, str(tmp_path / "missing.log"))[0] == 2


def test_perfetto_trace_fields(capsys: pytest.CaptureFixture, eager_log: Path, tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    run_cli(capsys, str(eager_log), perfetto=str(trace))
    events = json.loads(trace.read_text())["traceEvents"]
    assert events
    for e in events:
        assert {"name", "ph", "ts", "pid", "tid"} <= set(e), e
        if e["ph"] == "X":
            assert e["dur"] > 0
    phases = {e["ph"] for e in events}
    assert {"X", "i", "s", "f", "M"} <= phases
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert names == {"writer (CPU 0)", "zapper (CPU 1)", "writeback (CPU 2)"}
    assert any(e["name"].startswith("VIOLATION lost_dirty_data") for e in events)


def test_timeline_is_drawn(capsys: pytest.CaptureFixture, eager_log: Path, tmp_path: Path) -> None:
    png, svg = tmp_path / "t.png", tmp_path / "t.svg"
    run_cli(capsys, str(eager_log), timeline=str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    run_cli(capsys, str(eager_log), timeline=str(svg), trial=1)
    assert b"<svg" in svg.read_bytes()[:1000]


def test_trial_selection(capsys: pytest.CaptureFixture, eager_log: Path) -> None:
    code, out, _ = run_cli(capsys, str(eager_log), trial=0, json=True)
    assert [t["trial"] for t in json.loads(out)["logs"][0]["trials"]] == [0]
    code, _, err = run_cli(capsys, str(eager_log), trial=99)
    assert code == 2 and "no trial 99" in err


def test_scenario_is_rebuilt_from_the_header_source(tmp_path: Path) -> None:
    from scenarios import loader

    scenario = loader.load_scenario("madv_dontneed")
    cfg = Config(ordering="eager")
    path = tmp_path / "lib.log"
    write_controlled_log(path, scenario, cfg, random_schedule(scenario, cfg, 0)[0], run_id="lib")
    header = read_log(path).header
    assert header["scenario_source"] == scenario.source
    (t,) = analyze_log(path, jobs=1).trials  # the autouse patch falls through to the real loader here
    assert t.divergence is None


def test_a_counter_writers_lost_store_is_the_first_increment_after_the_io_snapshot() -> None:
    """The library madv_dontneed's writer increments with no value to match against the page: the witness must
    name an increment the IO snapshot missed, not an earlier stale one that the snapshot holds."""
    import random

    from controlled.machine import Machine
    from controlled.replay import run_schedule
    from scenarios.loader import load_scenario
    from analysis.witness import witnesses_for

    scenario, cfg = load_scenario("madv_dontneed"), Config(ordering="eager")
    for seed in range(2000):  # seeded random schedules until one has a stale increment before the snapshot
        rng, m, schedule = random.Random(seed), Machine(scenario, cfg), []
        while (enabled := m.enabled_all()) and not m.stuck() and len(schedule) < 500:
            schedule.append(rng.choice(enabled))
            if m.execute(schedule[-1]):
                break
        r = run_schedule(scenario, cfg, schedule, complete=False)
        if r.invariants != ["lost_dirty_data"]:
            continue
        clear = next(e.seq for e in r.events if e.op == "ptep_get_and_clear_full")
        snap = next(e.seq for e in r.events if e.op == "writepage")
        if any(e.op == "store_tlb" and e.result == "stored" and clear < e.seq < snap for e in r.events):
            break
    else:
        pytest.fail("no random schedule had a stale increment before the IO snapshot")
    (w,) = witnesses_for(r.violations, scenario, cfg, r.executed)
    by_role = {row.role: row for row in w.rows}
    assert by_role["io_snapshot"].seq < by_role["stale_store"].seq < by_role["late_flush"].seq
    assert by_role["stale_store"].action.startswith("increment to va 0")


def test_witness_table_has_a_column_for_each_thread_that_takes_part_only() -> None:
    """A bystander (a thread with no row in the witness, such as a writer on another page) gets no column: on an
    80-column terminal each empty column squeezes the ones that tell the race."""
    from rich.console import Console

    from analysis.witness import Witness, WitnessRow, witness_table

    rows = (WitnessRow(46, 2, 2, "zap_pte_range", "page_remove_rmap(pfn 1)", "the window opens", "rmap"),
            WitnessRow(52, 3, 3, "folio_mkclean", "not_mapped(1)", "no rmap walk", "mkclean"),
            WitnessRow(None, None, None, "end", "lost", "the page is clean", "final_state"))
    w = Witness("lost_dirty_data", 1, "file page 1 holds 4", ("bystander", "w1", "zapper", "wb"), (0, 1, 2, 3), rows)
    console = Console(width=200, record=True)
    console.print(witness_table(w))
    text = console.export_text()
    assert "bystander" not in text and "w1" not in text
    assert "zapper" in text and "wb" in text and "page_remove_rmap" in text and "not_mapped(1)" in text
    # The cells sit under their own thread's column: the zapper's row is in the column after "#".
    zap_row = next(line for line in text.splitlines() if "zap_pte_range" in line)
    assert zap_row.split("│")[2].strip() == "zap_pte_range"


def test_a_counters_loss_through_mremaps_window_is_explained_as_the_move() -> None:
    """The library mremap_writeback on 4.8 (before 5d1904204c99): the witness is move_ptes' clear of the old
    address and the counter's increment through it after the snapshot, not writeback's own ptep_clear_flush at
    the new address taken for "the zapper's" clear (what it showed before session 19)."""
    from controlled.explorer import explore
    from controlled.replay import run_schedule
    from kernel_model.kernels import kernel_config
    from scenarios.loader import load_scenario
    from analysis.witness import witnesses_for

    scenario, cfg = load_scenario("mremap_writeback"), Config(**kernel_config("4.8"))
    r = explore(scenario, cfg, "dfs", budget=80_000)
    run = run_schedule(scenario, cfg, r.found[0].schedule)
    (w,) = witnesses_for(r.found[0].violations, scenario, cfg, run.executed)
    by_role = {row.role: row for row in w.rows}
    assert by_role["pte_clear"].fn == "move_ptes" and by_role["mkclean_check"].fn == "ptep_clear_flush"
    assert by_role["io_snapshot"].seq < by_role["stale_store"].seq < by_role["late_flush"].seq
    assert by_role["stale_store"].action.startswith("increment to va 0")
