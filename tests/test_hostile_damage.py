"""Damaged files and numbers that round to nothing: a log cut short before its verdict, a --memory-limit below one
byte. Each gets a truthful answer rather than a silent "all clear". Each test failed before its fix (session 14's
red team). None needs Ray."""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import pytest
from cli_run import run_cli


@pytest.fixture(scope="module")
def cut_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """madv_dontneed's eager counterexample log (`tlbrace explore` writes it), cut inside its trial_end record, as
    a kill or a full disk leaves a log: every step is there, the verdict is not."""
    from cli.main import main

    out = tmp_path_factory.mktemp("explore")
    assert main(["explore", "madv_dontneed", "--ordering", "eager", "--json", "--out", str(out)]) == 1
    log = out / "madv_dontneed-eager-smp-bfs-0.msgpack"
    data = log.read_bytes()
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    start = 0
    for record in unpacker:
        if record.get("type") == "trial_end":
            break
        start = unpacker.tell()
    else:
        pytest.fail("the counterexample's log has no trial_end record")
    cut = out / "cut.msgpack"
    cut.write_bytes(data[:start + 3])
    return cut


def test_replay_of_a_log_cut_before_its_verdict_replays_what_it_holds(capsys, cut_log):
    """It said "nothing to replay (no failing trial in the log; use --trial ID)" and exit 0: the lost dirty data
    the steps still show was never looked at."""
    rc, out, err = run_cli(capsys, "replay", str(cut_log), "--width", "200")
    assert rc == 1, (out, err)
    assert "lost this trial's verdict" in out and "lost_dirty_data" in out and "nothing to replay" not in out
    assert "truncated record" in out + err


def test_replay_json_of_a_log_without_its_verdict_says_it_is_unknown(capsys, cut_log):
    """--trial 0 on it said "expected no violation ... NOT reproduced": the log never said no violation."""
    rc, out, _ = run_cli(capsys, "replay", str(cut_log), "--trial", "0", "--json")
    replay = json.loads(out)["replays"][0]
    assert rc == 1 and replay["expected"] is None and replay["reproduced"] is None
    assert "lost_dirty_data" in replay["found"]


@pytest.mark.parametrize("size", ["0.5", "0.9", "1e-10G"])
def test_a_memory_limit_below_one_byte_is_refused_not_taken_as_no_limit(capsys, size):
    """int(0.5) bytes is 0, which the budget check reads as "memory unknown": the limit was lifted altogether
    and the search ran at its full budget (exit 0)."""
    rc, _, err = run_cli(capsys, "explore", "madv_dontneed", "--memory-limit", size)
    assert rc == 2 and "--memory-limit" in err and "at least 1 byte" in err, err


def test_the_report_names_a_failing_trials_log_cut_short(capsys, tmp_path, cut_log):
    """The page judged the cut log by what it held and said nothing of the damage: a campaign whose first
    failing trial's log had lost its end read as if that log were whole (or its trial as if it had passed)."""
    from test_hostile_inputs import _campaign

    campaign = _campaign(tmp_path / "campaign", cut_log, recorded_in=str(tmp_path / "campaign"))
    rc, _, err = run_cli(capsys, "report", str(campaign))
    assert rc == 0, err
    page = (campaign / "report.html").read_text()
    assert "madv_dontneed-r-trial00000.msgpack: truncated record at byte" in page
    assert "judged by the records before it" in page


def _results_file(out: Path, trials: int) -> Path:
    """A stress campaign's results file of ``trials`` passing trials, as ResultsWriter writes it."""
    from logs.results_file import FILE_NAME, ResultsWriter, make_header, trial_record

    out.mkdir(parents=True)
    header = make_header(run="r", scenario="madv_dontneed", scenario_source="", params={},
                         config={"ordering": "eager", "arch": "smp"}, seed=0, trials=trials, jitter_us=0.0)
    writer = ResultsWriter(str(out / FILE_NAME), header)
    for t in range(trials):
        writer.append(trial_record(trial=t, seed=t, status="ok", invariants=[], detail="", actor=None, steps=5,
                                   seconds=0.1, nodes=[], log=None))
    writer.close()
    return out / FILE_NAME


@pytest.mark.parametrize("damage, needle", [("flip", "damaged bytes "), ("cut", "bytes are a record cut short")])
def test_the_report_names_what_of_a_results_file_it_could_not_count(capsys, tmp_path, damage, needle):
    """A results file with damaged bytes in the middle (or a torn tail) was counted from its intact records
    without a word: "trials run 5" of a campaign that recorded 6, exit 0, no note on the page."""
    results = _results_file(tmp_path / "campaign", 6)
    data = bytearray(results.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x40  # inside a record's frame: its checksum no longer holds
    else:
        data = data[:-7]
    results.write_bytes(bytes(data))
    rc, out, err = run_cli(capsys, "report", str(tmp_path / "campaign"), "--json")
    assert rc == 0, err
    campaign = json.loads(out)["campaigns"][0]
    assert campaign["trials"] == 5 and needle in campaign["damage"], campaign
    assert err.startswith(f"tlbrace: warning: {results}: ") and needle in err and err.count("\n") == 1, err
    assert needle in (tmp_path / "campaign" / "report.html").read_text()


def _crafted_results(out: Path, **record: object) -> Path:
    """A results file whose one record checks out (its frame's checksum holds) but has ``record``'s values."""
    from logs.results_file import FILE_NAME, frame, make_header, trial_record

    out.mkdir(parents=True)
    header = make_header(run="r", scenario="madv_dontneed", scenario_source="", params={},
                         config={"ordering": "eager", "arch": "smp"}, seed=0, trials=5, jitter_us=0.0)
    rec = trial_record(trial=0, seed=0, status="violation", invariants=["lost_dirty_data"], detail="", actor=None,
                       steps=5, seconds=0.1, nodes=[], log=None) | record
    (out / FILE_NAME).write_bytes(frame(header) + frame(rec))
    return out / FILE_NAME


@pytest.mark.parametrize("key, value, expected", [("seconds", "abc", "a number or nil"),
                                                  ("nodes", 5, "a list or nil"), ("log", 5, "a string or nil")])
def test_a_record_with_a_value_of_the_wrong_kind_is_named_not_an_internal_error(capsys, tmp_path, monkeypatch, key,
                                                                                 value, expected):
    """A record whose frame checks out but whose "seconds" was a string ended `report` with an internal error
    (exit 4), and one whose "nodes" was a number ended `stress --resume` with one once Ray had started."""
    import cli.cmd_stress

    results = _crafted_results(tmp_path / "campaign", **{key: value})
    needle = f"{results}: record at byte "
    rc, _, err = run_cli(capsys, "report", str(tmp_path / "campaign"))
    assert rc == 2 and err.startswith(f"tlbrace: error: {needle}"), err
    assert f"trial 0: {key!r}: expected {expected}, got {value!r}" in err and err.count("\n") == 1, err
    monkeypatch.setattr(cli.cmd_stress, "open_ray", lambda *_a, **_k: pytest.fail("Ray was started"))
    rc, _, err = run_cli(capsys, "stress", "madv_dontneed", "--ordering", "eager", "--trials", "5", "--resume",
                         "--out", str(tmp_path / "campaign"))
    assert rc == 2 and needle in err and err.count("\n") == 1, err


@pytest.mark.parametrize("transition, named", [(["t", 99], "thread 99, but the scenario has threads 0..2"),
                                               (["t", -1], "thread -1, but"),
                                               (["i", 99, 0], "CPU 99, but the scenario has CPUs 0..2"),
                                               (["i", 0, 7], "an IPI from thread 7, but")])
def test_a_schedule_naming_a_thread_the_scenario_lacks_is_refused(capsys, cut_log, transition, named):
    """A schedule whose transition names thread 99 of a three-thread scenario replayed without it (the replay
    skips what it cannot take at that point): "reproduced": false, no divergence, exit 0."""
    schedule = cut_log.parent / "madv_dontneed-eager-smp-bfs-0.schedule"
    doc = msgpack.unpackb(schedule.read_bytes(), raw=False)
    doc["schedule"][3] = transition
    bad = cut_log.parent / f"bad-{transition[0]}{transition[1]}.schedule"
    bad.write_bytes(msgpack.packb(doc, use_bin_type=True))
    for command in ("replay", "shrink"):
        rc, out, err = run_cli(capsys, command, str(bad), *(["-o", str(bad) + ".min"] if command == "shrink" else []))
        assert rc == 2 and not out and err.count("\n") == 1, (command, rc, err)
        assert err.startswith(f"tlbrace: error: {bad}: schedule[3] ") and named in err, err


def test_a_log_named_twice_is_counted_once(capsys, cut_log):
    """`analyze L ./L` (or L and a symbolic link to it, or a glob plus one of its files) counted the log's trials
    twice: "trials 2, violating 2, hit rate 100% [34%, 100%]" from one trial."""
    log = cut_log.parent / "madv_dontneed-eager-smp-bfs-0.msgpack"
    link = cut_log.parent / "latest.msgpack"
    link.symlink_to(log)
    rc, out, err = run_cli(capsys, "analyze", str(log), str(link), "--json")
    assert rc == 1 and len(json.loads(out)["logs"]) == 1, err
    assert err == f"tlbrace: note: {link} is the same file as {log}: analysed once\n", err
