"""Fault injection (issue 14): what a hostile user or a failing machine can do to tlbrace, and what it must do back.

- a byte flipped at every position of a 50-trial results file: the resume keeps every intact record (and says which
  bytes it skipped) or refuses naming the offset, leaving the file untouched;
- every header and record field of logs, schedules and results files replaced by arbitrary values (Hypothesis):
  read, or one error of the reader's kind; through the CLI, exit 0, 1 or 2 and never a traceback;
- two drivers on one --out; a disk that fills during a campaign; Ray that will not start; a SIGSTOPped CPU actor;
- FIFOs, devices and header-named paths as inputs; numbers, names and output paths at the door.

Tests that start a driver of their own (a child process with its own embedded Ray) are marked ``slow``.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import msgpack
import pytest
from child_process import ROOT, driver_env
from cli_run import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.campaign import CampaignOptions, run_campaign, trial_seed
from actors.dir_lock import DirectoryBusy, lock_directory
from actors.fault_injection import Faults
from cli.main import main
from kernel_model.config import Config
from logs.results_file import (ResultsError, ResultsWriter, frame, make_header, parse_results, read_results,
                                 trial_record)
from scenarios.loader import load_scenario





# --- a flipped byte anywhere in a results file ----------------------------------------------------------------
def _campaign_header(trials: int) -> dict[str, Any]:
    sc = load_scenario("anon_pages")
    return make_header(run="r", scenario=sc.name, scenario_source=sc.source, params=sc.params,
                       config=Config().to_dict(), seed=0, trials=trials, jitter_us=0.0)


def _record(trial: int) -> dict[str, Any]:
    status = "violation" if trial % 7 == 3 else "ok"
    return trial_record(trial=trial, seed=trial_seed(0, trial), status=status,
                        invariants=["lost_dirty_data"] if status == "violation" else [], detail="",
                        actor=None, steps=40 + trial, seconds=0.01, nodes=["n"], log=None)


def test_a_byte_flipped_anywhere_keeps_every_intact_record_or_refuses_with_the_offset(tmp_path: Path,
                                                                                       monkeypatch: Any) -> None:
    """All positions of a 25-trial file, through the resume path itself (read, open the writer on what was
    read, append the trials it lacks, read again): every intact record is kept and every trial ends up recorded
    once, or the read refuses naming a byte offset at or before the flip and nothing is written."""
    monkeypatch.setattr("logs.results_file.os.fsync", lambda fd: None)  # durability is not what is tested here
    trials = 25
    frames = [frame(_campaign_header(trials))] + [frame(_record(t)) for t in range(trials)]
    data = b"".join(frames)
    starts = [sum(map(len, frames[:k])) for k in range(len(frames) + 1)]
    path = tmp_path / "results.msgpack"
    refused = kept = 0
    for pos in range(len(data)):
        damaged = bytearray(data)
        damaged[pos] ^= 0xFF
        hit = next(k for k in range(len(frames)) if starts[k] <= pos < starts[k + 1])  # the frame the flip hit
        try:
            contents = parse_results(str(path), bytes(damaged))
        except ResultsError as exc:
            refused += 1
            assert hit == 0, f"flip at {pos} (record {hit - 1}) refused: {exc}"  # only the header is fatal
            assert "byte 0" in str(exc)
            continue
        kept += 1
        intact = [_record(t) for t in range(trials) if t != hit - 1]
        assert [r for r in contents.records if r["trial"] != hit - 1] == intact, f"flip at {pos}"
        assert contents.records == intact, f"flip at {pos}: a damaged record was read as good"
        assert contents.skipped or contents.torn, f"flip at {pos}: the damage was not reported"
        # The resume itself: the writer keeps what was read, appends the missing trial, and the file then holds
        # every trial once (the damaged bytes stay, skipped again).
        path.write_bytes(bytes(damaged))
        writer = ResultsWriter(str(path), contents.header, contents)
        writer.append(_record(hit - 1))
        writer.close()
        after = read_results(path)
        assert sorted(r["trial"] for r in after.records) == list(range(trials)), f"flip at {pos}"
        assert after.torn == 0
    assert refused == len(frames[0]) and kept == len(data) - len(frames[0])


def test_damage_in_the_middle_is_reported_by_the_resume_and_every_intact_record_kept(capsys: Any,
                                                                                      tmp_path: Path) -> None:
    """What the user sees: the resume names the skipped bytes (the campaign itself is not run: --trials of
    another campaign would be refused first, so this one is already complete but for the damaged record)."""
    trials = 5
    frames = [frame(_campaign_header(trials))] + [frame(_record(t)) for t in range(trials)]
    data = bytearray(b"".join(frames))
    at = len(frames[0]) + len(frames[1]) + 20  # inside trial 1's record
    data[at] ^= 0x01
    contents = parse_results("f", bytes(data))
    assert [r["trial"] for r in contents.records] == [0, 2, 3, 4]
    assert contents.skipped == [(len(frames[0]) + len(frames[1]), len(frames[0]) + len(frames[1]) + len(frames[2]))]
    assert str(contents.skipped[0][0]) in contents.skipped_text()


def test_the_logs_of_trials_that_run_again_are_removed_on_resume(tmp_path: Path) -> None:
    """Logs written by a killed driver for trials it never recorded: those trials run again, so their old logs go
    (a rerun that passes writes none); recorded trials' logs and other runs' logs stay."""
    from actors.campaign import _remove_unrecorded_logs

    for name in ("madv-r-trial00000", "madv-r-trial00001", "madv-r-trial00002", "madv-other-trial00001",
                 "madv-r-trial00003.schedule"):
        (tmp_path / f"{name}.msgpack").write_bytes(b"x")
    _remove_unrecorded_logs(str(tmp_path), "madv", "r", {0, 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "madv-other-trial00001.msgpack", "madv-r-trial00000.msgpack", "madv-r-trial00002.msgpack",
        "madv-r-trial00003.schedule.msgpack"]


def test_an_old_unframed_results_file_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "results.msgpack"
    path.write_bytes(msgpack.packb({**_campaign_header(3), "version": 1}) + msgpack.packb(_record(0)))
    with pytest.raises(ResultsError, match="version 1 results file"):
        read_results(path)


# --- Hypothesis over every header and record field ---------------------------------------------------------------
_any_value = st.one_of(st.none(), st.booleans(), st.integers(-2**64, 2**64), st.floats(allow_nan=True),
                       st.text(max_size=20), st.binary(max_size=10), st.lists(st.integers(), max_size=3),
                       st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3))


@settings(max_examples=300, deadline=None)
@given(where=st.sampled_from(["header", "record"]), key=st.data(), value=_any_value, drop=st.booleans())
def test_results_file_fields(where: str, key: Any, value: Any, drop: bool) -> None:
    header, rec = _campaign_header(10), _record(3)
    target = header if where == "header" else rec
    name = key.draw(st.sampled_from(sorted(target)))
    if drop:
        del target[name]
    else:
        target[name] = value
    try:
        contents = parse_results("f", frame(header) + frame(rec))
    except ResultsError as exc:
        assert str(exc).startswith("f: ")
        return
    except (ValueError, TypeError, OverflowError):  # msgpack cannot pack the value: nothing to read
        return
    for r in contents.records:  # what is read is what the campaign relies on
        limit = contents.header["trials"]  # nil: an unbounded (--duration/--until) campaign
        assert isinstance(r["trial"], int) and 0 <= r["trial"] and (limit is None or r["trial"] < limit)
        assert isinstance(r["steps"], int) and isinstance(r["invariants"], list)


@pytest.fixture(scope="module")
def counterexample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real schedule file and event log of a violation, decoded, to mutate."""
    out = tmp_path_factory.mktemp("cx")
    assert main(["explore", "madv_dontneed", "--ordering", "eager", "--json", "--out", str(out)]) == 1
    schedule = next(out.glob("*.schedule"))
    log = next(out.glob("*.msgpack"))
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(log.read_bytes())
    return {"schedule": msgpack.unpackb(schedule.read_bytes(), raw=False), "log": list(unpacker)}


def _cli_must_not_break(capsys: Any, *argv: str) -> None:
    rc, _, err = run_cli(capsys, *argv)
    assert rc in (0, 1, 2), err[-2000:]
    assert "Traceback" not in err and "internal error" not in err, err[-2000:]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.data(), value=_any_value, drop=st.booleans())
def test_schedule_fields(capsys: Any, tmp_path: Path, counterexample: dict[str, Any], key: Any, value: Any,
                         drop: bool) -> None:
    doc = dict(counterexample["schedule"])
    name = key.draw(st.sampled_from(sorted(doc)))
    if drop:
        del doc[name]
    else:
        doc[name] = value
    try:
        packed = msgpack.packb(doc, use_bin_type=True)
    except (ValueError, TypeError, OverflowError):
        return
    path = tmp_path / "x.schedule"
    path.write_bytes(packed)
    _cli_must_not_break(capsys, "replay", str(path))
    _cli_must_not_break(capsys, "shrink", str(path), "-o", str(tmp_path / "out.schedule"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 10**6), key=st.data(), value=_any_value, drop=st.booleans())
def test_log_fields(capsys: Any, tmp_path: Path, counterexample: dict[str, Any], which: int, key: Any,
                    value: Any, drop: bool) -> None:
    """Any field of the header, of an event or of the trial_end record."""
    records = [dict(r) for r in counterexample["log"]]
    rec = records[which % len(records)]
    name = key.draw(st.sampled_from(sorted(rec)))
    if drop:
        del rec[name]
    else:
        rec[name] = value
    try:
        packed = b"".join(msgpack.packb(r, use_bin_type=True) for r in records)
    except (ValueError, TypeError, OverflowError):
        return
    path = tmp_path / "x.msgpack"
    path.write_bytes(packed)
    _cli_must_not_break(capsys, "replay", str(path))
    _cli_must_not_break(capsys, "analyze", str(path), "--jobs", "1")


@pytest.mark.parametrize("value", [True, 0, "x", {"invariant": "lost_dirty_data"}, [True, None]])
@pytest.mark.parametrize("key", ["violations", "status"])
def test_damaged_trial_end_fields_are_ignored(capsys: Any, tmp_path: Path, counterexample: dict[str, Any], key: str,
                                              value: Any) -> None:
    """A trial_end record whose violations or status is not what the runtime writes (hypothesis found
    ``violations = True``: analyze exited 4, "'bool' object is not iterable"): read as not logged."""
    records = [dict(r) for r in counterexample["log"]]
    ends = [r for r in records if r.get("type") == "trial_end"]
    assert ends, "the counterexample log has a trial_end record"
    ends[-1][key] = value
    path = tmp_path / "x.msgpack"
    path.write_bytes(b"".join(msgpack.packb(r, use_bin_type=True) for r in records))
    _cli_must_not_break(capsys, "analyze", str(path), "--jobs", "1")


@pytest.mark.parametrize("kind, where, key, value", [
    ("log", 0, "params", [1, 2]),
    ("log", 0, "scenario_source", 7),
    ("log", 1, "tid", "x"),
    ("log", 1, "lamport", [1]),
    ("schedule", None, "seed", "x"),
    ("schedule", None, "params", {"pages": "two"}),
])
def test_malformed_fields_named_issue_14(capsys: Any, tmp_path: Path, counterexample: dict[str, Any], kind: str,
                                         where: int | None, key: str, value: Any) -> None:
    """The cases the issue lists: exit 2 (a header field) or a clear verdict, never a traceback."""
    if kind == "log":
        records = [dict(r) for r in counterexample["log"]]
        records[where][key] = value
        path = tmp_path / "x.msgpack"
        path.write_bytes(b"".join(msgpack.packb(r) for r in records))
    else:
        path = tmp_path / "x.schedule"
        path.write_bytes(msgpack.packb(dict(counterexample["schedule"], **{key: value})))
    rc, _, err = run_cli(capsys, "replay", str(path))
    assert "Traceback" not in err and "internal error" not in err, err
    if where != 1:  # a header field: refused, naming it
        assert rc == 2 and key in err, err
    else:
        assert rc in (1, 2), err


def test_a_header_never_makes_tlbrace_open_a_path(capsys: Any, tmp_path: Path,
                                                  counterexample: dict[str, Any]) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for named in ("/dev/zero", str(fifo), str(ROOT / "scenarios" / "library" / "madv_dontneed.toml")):
        records = [dict(r) for r in counterexample["log"]]
        records[0].update(scenario=named, scenario_source="")
        log = tmp_path / "named.msgpack"
        log.write_bytes(b"".join(msgpack.packb(r) for r in records))
        for argv in (["replay", str(log)], ["analyze", str(log), "--jobs", "1"]):
            rc, _, err = run_cli(capsys, *argv)
            assert rc == 2 and "never names a file" in err, err
        doc = dict(counterexample["schedule"], scenario=named, scenario_source="")
        sched = tmp_path / "named.schedule"
        sched.write_bytes(msgpack.packb(doc))
        rc, _, err = run_cli(capsys, "replay", str(sched))
        assert rc == 2 and "never names a file" in err, err


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "dir"])
def test_inputs_must_be_regular_files(capsys: Any, tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)
    elif kind == "dir":
        path = str(tmp_path)
    else:
        path = kind
    results_dir = tmp_path / "campaign"
    results_dir.mkdir()
    os.symlink(path, results_dir / "results.msgpack")
    named = [["explore", path], ["replay", path], ["analyze", path], ["shrink", path, "-o", str(tmp_path / "o")]]
    # A FIFO named as an input read once is read, waiting for its writer as cat does (test_hostile21.py).
    for argv in (named if kind != "fifo" else []) + [["stress", "anon_pages", "--out", str(results_dir), "--resume"]]:
        rc, _, err = run_cli(capsys, *argv)
        assert rc == 2 and "Traceback" not in err, (argv, err)
        assert "regular file" in err or "directory" in err, (argv, err)


# --- numbers, names and output paths at the door -------------------------------------------------------------
@pytest.mark.parametrize("argv, needle", [
    (["stress", "anon_pages", "--hang-timeout", "nan"], "--hang-timeout"),
    (["stress", "anon_pages", "--hang-timeout", "inf"], "--hang-timeout"),
    (["stress", "anon_pages", "--jitter", "nan"], "--jitter"),
    (["stress", "anon_pages", "--jitter", "inf"], "--jitter"),
    (["stress", "anon_pages", "--parallel", "1000"], "--parallel"),
    (["stress", "anon_pages", "--trials", "10000000000"], "--trials"),
    (["run", "ladder", "--param", "writers=1000"], "at most 64 CPU actors"),
    (["stress", "scale_writers", "--param", "writers=60", "--parallel", "8"], "actors in all"),
    (["explore", "madv_dontneed", "--strategy", "pct", "--depth", "100000000000"], "--depth"),
    (["explore", "madv_dontneed", "--depth", "0"], "--depth"),
    (["explore", "madv_dontneed", "--seed", str(2**70)], "--seed"),
    (["stress", "anon_pages", "--seed", str(2**70)], "--seed"),
    (["stress", "anon_pages", "--out", ""], "--out ''"),
    (["explore", "madv_dontneed", "--out", ""], "--out ''"),
    (["analyze", "x.msgpack", "--timeline", "x.xyz"], "--timeline x.xyz"),
])
def test_numbers_and_paths_at_the_door(capsys: Any, argv: list[str], needle: str) -> None:
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2 and needle in err and "Traceback" not in err, err


def test_output_paths_that_are_files_or_directories(capsys: Any, tmp_path: Path,
                                                    counterexample: dict[str, Any]) -> None:
    a_file = tmp_path / "f"
    a_file.write_text("x")
    sched = tmp_path / "c.schedule"
    sched.write_bytes(msgpack.packb(counterexample["schedule"]))
    log = tmp_path / "c.msgpack"
    log.write_bytes(b"".join(msgpack.packb(r) for r in counterexample["log"]))
    for argv, needle in ((["stress", "anon_pages", "--out", str(a_file)], "is a file"),
                         (["explore", "madv_dontneed", "--out", str(a_file)], "is a file"),
                         (["shrink", str(sched), "-o", str(tmp_path)], "is a directory"),
                         (["analyze", str(log), "--perfetto", str(tmp_path)], "is a directory"),
                         (["analyze", str(log), "--timeline", str(tmp_path / "no" / "x.png")], "does not exist")):
        rc, _, err = run_cli(capsys, *argv)
        assert rc == 2 and needle in err and "Traceback" not in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.msgpack", "c.schedule", "f"]  # no DIR.tmp left


@pytest.mark.parametrize("out", ["/proc/tlbrace-out", "/proc/self"])
def test_an_out_that_cannot_be_written_is_an_environment_failure(capsys: Any, out: str) -> None:
    rc, _, err = run_cli(capsys, "stress", "anon_pages", "--trials", "1", "--out", out)
    assert rc == 3 and out in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_read_only_out_is_an_environment_failure(capsys: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """EROFS as the kernel reports it (no read-only mount is available to an unprivileged test)."""
    real_open = os.open

    def read_only(path: Any, flags: int, *args: Any) -> int:
        if str(path).startswith(str(tmp_path)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    rc, _, err = run_cli(capsys, "stress", "anon_pages", "--trials", "1", "--out", str(tmp_path))
    assert rc == 3 and "Read-only file system" in err and "writable" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["a/b", "../../x", "x\0y", ".hidden", ""])
def test_scenario_names_never_become_paths(capsys: Any, tmp_path: Path, name: str) -> None:
    toml = tmp_path / "s.toml"
    text = (ROOT / "scenarios" / "library" / "madv_dontneed.toml").read_text()
    text = "\n".join(line for line in text.splitlines() if not line.startswith("name ="))
    toml.write_text(f"name = {json.dumps(name)}\n{text}")
    rc, _, err = run_cli(capsys, "explore", str(toml), "--ordering", "eager", "--out", str(tmp_path / "out"))
    assert rc == 2 and "name" in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "x").exists()
    rc, _, err = run_cli(capsys, "explore", f"madv{chr(0)}dontneed")
    assert rc == 2 and "NUL" in err


def test_a_results_file_beside_the_logs_is_skipped_by_analyze(capsys: Any, tmp_path: Path,
                                                              counterexample: dict[str, Any]) -> None:
    """The README's `tlbrace analyze tlbrace-out/eager/*.msgpack` matches results.msgpack too."""
    (tmp_path / "results.msgpack").write_bytes(frame(_campaign_header(1)))
    (tmp_path / "madv-r-trial00000.msgpack").write_bytes(b"".join(msgpack.packb(r) for r in counterexample["log"]))
    rc, out, err = run_cli(capsys, "analyze", *sorted(map(str, tmp_path.glob("*.msgpack"))), "--jobs", "1")
    assert rc == 1 and "results file" in err and "lost_dirty_data" in out
    rc, _, err = run_cli(capsys, "analyze", str(tmp_path / "results.msgpack"))
    assert rc == 2 and "no event log" in err
    rc, _, err = run_cli(capsys, "replay", str(tmp_path / "results.msgpack"))
    assert rc == 2 and "results file" in err


def test_an_ipv6_literal_is_not_a_dns_failure(capsys: Any, tmp_path: Path) -> None:
    # --out: not the repository's tlbrace-out, whose lock a test on another xdist worker may hold at that moment
    rc, _, err = run_cli(capsys, "stress", "anon_pages", "--trials", "1", "--address", "[::1]:1",
                         "--out", str(tmp_path))
    assert rc == 2 and "resolve" not in err and "Name or service" not in err and "[::1]:1" in err, err


# --- two drivers on one directory -------------------------------------------------------------------------------
def test_the_directory_lock_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    first = lock_directory(str(tmp_path))
    with pytest.raises(DirectoryBusy, match=f"pid {os.getpid()}"):
        lock_directory(str(tmp_path))  # another open file description: refused, as another process would be
    first.release()
    lock_directory(str(tmp_path)).release()  # free again once released (and after a kill: the kernel drops it)


def two_drivers(out: Path, delay: float, trials: int = 60) -> tuple[list[subprocess.CompletedProcess], list[int]]:
    """Two `stress` drivers on one --out, the second started ``delay`` seconds after the first."""
    cmd = [sys.executable, "-m", "cli.main", "stress", "madv_dontneed", "--trials", str(trials), "--seed", "3",
           "--json", "--out", str(out)]
    procs = [subprocess.Popen(cmd, env=driver_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)]
    threading.Event().wait(delay)  # not a race being forced: the two starts are the user's, any distance apart
    procs.append(subprocess.Popen(cmd, env=driver_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, start_new_session=True))
    done = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return done, [p.pid for p in procs]


@pytest.mark.wild  # two `stress` drivers, each starting an embedded Ray of its own
@pytest.mark.parametrize("delay", [0.0, 2.0])
def test_two_drivers_on_one_out(tmp_path: Path, delay: float) -> None:
    out = tmp_path / "campaign"
    (first, second), pids = two_drivers(out, delay)
    codes = sorted([first.returncode, second.returncode])
    refused = first if first.returncode == 2 else second
    ran = second if refused is first else first
    assert codes[0] in (0, 1) and codes[1] == 2, (first.stderr[-2000:], second.stderr[-2000:])
    assert "another tlbrace campaign" in refused.stderr and f"pid {pids[0 if ran is first else 1]}" in refused.stderr
    records = read_results(out / "results.msgpack").records
    assert sorted(r["trial"] for r in records) == list(range(60))
    assert json.loads(ran.stdout)["trials"] == 60
    assert not list(out.glob("results-*.msgpack"))  # nothing moved aside


@pytest.mark.wild
# --- disk full, and Ray that will not start ---------------------------------------------------------------------
def test_a_full_disk_during_a_campaign_exits_3_and_the_campaign_resumes(capsys: Any, tmp_path: Path,
                                                                        monkeypatch: Any, ray_session: None) -> None:
    real_append = ResultsWriter.append
    calls = {"n": 0}

    def append_until_full(self: ResultsWriter, record: dict[str, Any]) -> None:
        calls["n"] += 1
        if calls["n"] > 6:
            raise OSError(errno.ENOSPC, "No space left on device", self.path)
        real_append(self, record)

    monkeypatch.setattr(ResultsWriter, "append", append_until_full)
    argv = ["stress", "anon_pages", "--trials", "12", "--seed", "4", "--json", "--out", str(tmp_path)]
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 3 and "No space left on device" in err and "--resume" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    before = read_results(tmp_path / "results.msgpack")
    assert before.torn == 0 and before.skipped == [] and len(before.records) <= 6
    monkeypatch.setattr(ResultsWriter, "append", real_append)
    rc, out, err = run_cli(capsys, *argv, "--resume")
    assert rc in (0, 1), err
    after = read_results(tmp_path / "results.msgpack")
    assert sorted(r["trial"] for r in after.records) == list(range(12))
    assert json.loads(out)["resumed"] == len(before.records)


def test_ray_that_will_not_start_exits_3_in_one_line(capsys: Any, tmp_path: Path, monkeypatch: Any) -> None:
    import ray

    def broken_init(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("Failed to start the GCS server.\nSee the logs.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", broken_init)
    rc, _, err = run_cli(capsys, "stress", "anon_pages", "--trials", "1", "--out", str(tmp_path))
    assert rc == 3 and "embedded Ray cluster would not start" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    lock_directory(str(tmp_path)).release()  # the campaign's lock was let go


def test_a_ctrl_c_while_ray_starts_waits_for_it_then_shuts_it_down(capsys: Any, tmp_path: Path,
                                                                   monkeypatch: Any) -> None:
    """A Ctrl-C that landed inside ray.init (in CoreWorker's constructor) left a half-built core worker: the
    driver printed "tlbrace: interrupted" and then died of SIGSEGV at exit (exit 139; SIGINT about 4.5 s after
    `tlbrace stress` started, 5 times in 8). Now the interrupt waits for ray.init, and Ray is shut down."""
    import ray

    calls: list[str] = []

    def init_interrupted_midway(*_a: Any, **_k: Any) -> None:
        calls.append("init")
        os.kill(os.getpid(), signal.SIGINT)  # Python raises KeyboardInterrupt at the next bytecode, unless held
        for _ in range(1000):
            pass
        calls.append("init finished")

    monkeypatch.setattr(ray, "is_initialized", lambda: "init finished" in calls and "shutdown" not in calls)
    monkeypatch.setattr(ray, "init", init_interrupted_midway)
    monkeypatch.setattr(ray, "shutdown", lambda *a, **k: calls.append("shutdown"))
    rc, _, err = run_cli(capsys, "stress", "anon_pages", "--trials", "1", "--out", str(tmp_path))
    assert rc == 130 and "interrupted" in err and "Traceback" not in err, err
    assert calls == ["init", "init finished", "shutdown"]
    lock_directory(str(tmp_path)).release()  # the campaign's lock was let go


def test_a_sigterm_stops_a_campaign_as_a_ctrl_c_does_and_waits_for_its_bookkeeping() -> None:
    """`kill PID` or `timeout 1h tlbrace stress` sent SIGTERM: Ray's handler dumped a native stack trace and exited
    15 with no summary. run_campaign now takes it as a Ctrl-C (summary, exit 130, resumable); and a SIGTERM during
    a finished trial's bookkeeping waits for it, as a Ctrl-C does (the first version did not: the summary said
    80 trials, the results file held 79)."""
    import time

    from actors.sigint import sigint_deferred, sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with sigterm_as_interrupt():
            with sigint_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # the handler runs between bytecodes here; it must not raise yet
                finished.append("counted and recorded")
            finished.append("after the section")  # not reached: the held SIGTERM is raised as the section ends
    assert finished == ["counted and recorded"]
    with pytest.raises(KeyboardInterrupt):
        with sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
    assert signal.getsignal(signal.SIGTERM) is before  # restored: outside a campaign SIGTERM is what it was
    with sigint_deferred():  # and a deferred section outside a campaign leaves SIGTERM's handler alone
        assert signal.getsignal(signal.SIGTERM) is before


def test_an_internal_error_is_one_line_and_never_exit_1(capsys: Any, monkeypatch: Any) -> None:
    import cli.cmd_explore as cmd

    monkeypatch.setattr(cmd, "explore", lambda *a, **k: 1 / 0)
    rc, _, err = run_cli(capsys, "explore", "madv_dontneed")
    assert rc == 4 and "internal error" in err and "Traceback" not in err
    rc, _, err = run_cli(capsys, "explore", "madv_dontneed", "--verbose")
    assert rc == 4 and "Traceback" in err


@pytest.mark.wild
# --- hangs --------------------------------------------------------------------------------------------------------
def test_a_sigstopped_cpu_actor_is_hung_and_the_campaign_goes_on_on_fresh_actors(ray_session: None) -> None:
    scenario = load_scenario("madv_dontneed")
    cfg = Config.from_dict({**scenario.config, "ordering": "eager"})
    opts = CampaignOptions(trials=5, parallel=1, seed=2, hang_timeout=2.0, faults=Faults(stop=(1, "cpu1")))
    try:
        result = run_campaign(scenario, cfg, opts)
    finally:
        for pid in opts.faults.stopped:  # a process this test stopped: end it by its pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    by_trial = {r.trial: r for r in result.failures}
    assert result.trials == 5 and result.by_status["hung"] == 1 and by_trial[1].status == "hung"
    assert "cpu1 did not answer" in by_trial[1].detail and " waits " in by_trial[1].detail  # the wait-for report
    assert result.by_status["diverged"] == 0 and result.by_status["crashed"] == 0  # the next set was fresh
    assert result.by_status["ok"] + result.by_status["violation"] == 4


def test_a_join_to_a_port_that_is_not_ray_is_one_line(tmp_path: Path) -> None:
    """A TCP listener that never speaks Ray: one line, exit 2, none of Ray's C++ retries on the terminal."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        port = server.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "cli.main", "stress", "anon_pages", "--trials", "1",
                               "--out", str(tmp_path), "--address", f"127.0.0.1:{port}"],
                              env=driver_env(), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], proc.stderr[-3000:]


def test_a_sigterm_while_ray_starts_waits_for_it_then_shuts_it_down(capsys: Any, tmp_path: Path,
                                                                   monkeypatch: Any) -> None:
    """ray.init installs its SIGTERM handler (sys.exit(15)) first thing: a SIGTERM 3 or 5 s into `tlbrace stress`
    exited 15 with no message and left the cluster's DashboardAgent and RuntimeEnvAgent running, orphaned. Now it
    waits for ray.init as a Ctrl-C does, Ray is shut down, exit 130; Ray's handler is installed once it is up."""
    import ray
    import ray._private.utils as ray_utils

    calls: list[str] = []

    def rays_handler(signum: int, _frame: Any) -> None:
        sys.exit(signum)

    def init_terminated_midway(*_a: Any, **_k: Any) -> None:
        calls.append("init")
        ray_utils.set_sigterm_handler(rays_handler)  # as ray.init does before it connects
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass
        calls.append("init finished")

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(ray, "is_initialized", lambda: "init finished" in calls and "shutdown" not in calls)
    monkeypatch.setattr(ray, "init", init_terminated_midway)
    monkeypatch.setattr(ray, "shutdown", lambda *a, **k: calls.append("shutdown"))
    try:
        rc, _, err = run_cli(capsys, "stress", "anon_pages", "--trials", "1", "--out", str(tmp_path))
        installed = signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert rc == 130 and "interrupted" in err and "Traceback" not in err, err
    assert calls == ["init", "init finished", "shutdown"]
    assert installed is rays_handler  # Ray's own handler, once ray.init had returned
    lock_directory(str(tmp_path)).release()
