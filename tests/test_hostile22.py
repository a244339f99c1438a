"""Session 22's red team: damage where `analyze --jobs N` cuts a log, `-` as standard input (or refused where it
cannot be), `--until` past `--trials`, `--verbose` that fuzz and scale accepted and threw away, and what the hunt
below found. Each test failed before its fix. None needs Ray."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import msgpack
import pytest
from cli_run import run_cli
import test_hostile21
from test_hostile21 import STEM

found = test_hostile21.found  # the fixture: madv_dontneed's eager counterexample, its log and schedule


# --- damage where analyze --jobs N cuts the log ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def trials_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A controlled log of 12 trials of madv_dontneed (eager), about 76 KB: each --jobs chunk holds several."""
    from kernel_model.config import Config
    from logs.controlled_log import write_controlled_log
    from test_analyze import MADV, random_schedule

    path = tmp_path_factory.mktemp("chunks") / "trials.msgpack"
    for trial in range(12):
        schedule, _ = random_schedule(MADV, Config(ordering="eager"), trial)
        write_controlled_log(path, MADV, Config(ordering="eager"), schedule, run_id="chunks", trial=trial)
    return path


def _record_starts(data: bytes) -> list[int]:
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(data)
    starts = [0]
    for _ in unpacker:
        starts.append(unpacker.tell())
    return starts[:-1]


@pytest.mark.parametrize("jobs", [2, 3])
def test_damage_inside_the_record_a_jobs_cut_falls_in_is_reported_as_with_one_job(capsys, tmp_path, monkeypatch,
                                                                                   trials_log, jobs):
    """16 zero bytes inside the record that straddles a chunk cut: the chunk before it judged the half-record
    (trial 5: "malformed event record: field 'kind' is missing") and the damage was put at the cut, 65 bytes
    later; with --jobs 1 the half-record is dropped, the trial judged on what is before it, and the damage put
    where the record begins. Each record around each cut is damaged in turn: the output is the same."""
    import analysis.analyze as analyze

    monkeypatch.setattr(analyze, "PARALLEL_MIN_BYTES", 0)
    data = trials_log.read_bytes()
    starts = _record_starts(data)
    damaged = tmp_path / "damaged.msgpack"
    for k in range(1, jobs):
        first_past = next(i for i, s in enumerate(starts) if s >= len(data) * k // jobs)
        for victim in starts[first_past - 2:first_past + 1]:
            damaged.write_bytes(data[:victim + 30] + b"\0" * 16 + data[victim + 30:])
            one = run_cli(capsys, "analyze", str(damaged), "--jobs", "1")
            many = run_cli(capsys, "analyze", str(damaged), "--jobs", str(jobs))
            assert many == one, (victim, one[2], many[2])
            assert one[2].count("garbage at byte") == 1 and "malformed" not in one[1]


# --- `-`: standard input ---------------------------------------------------------------------------------------------

@pytest.fixture
def stdin() -> Iterator:
    """``stdin(data, pipe=False)``: descriptor 0 replaced for the test by a file (`< FILE`) or a pipe holding
    ``data``; what tlbrace kept of an earlier test's standard input is forgotten."""
    import threading

    from scenarios import input_files

    saved = os.dup(0)
    threads: list[threading.Thread] = []

    def use(data: bytes, pipe: bool = False) -> None:
        input_files._PIPED.pop((input_files.STDIN, 0, 0), None)
        if pipe:
            r, w = os.pipe()

            def feed() -> None:
                with os.fdopen(w, "wb") as f:
                    f.write(data)
            threads.append(threading.Thread(target=feed, daemon=True))
            threads[-1].start()
        else:
            import tempfile

            f = tempfile.TemporaryFile()
            f.write(data)
            f.seek(0)
            r = os.dup(f.fileno())
            f.close()
        os.dup2(r, 0)
        os.close(r)

    yield use
    os.dup2(saved, 0)
    os.close(saved)
    for t in threads:
        t.join(5)
    input_files._PIPED.pop((input_files.STDIN, 0, 0), None)


@pytest.mark.parametrize("command, file, pipe, needle", [
    ("explore", "toml", False, "lost_dirty_data"),
    ("explore", "toml", True, "lost_dirty_data"),
    ("analyze", "msgpack", True, "trial 0: VIOLATION lost_dirty_data"),
    ("analyze", "msgpack", False, "trial 0: VIOLATION lost_dirty_data"),
    ("replay", "msgpack", True, "reproduced"),
    ("replay", "schedule", False, "reproduced"),
    ("shrink", "schedule", True, "written to"),
])
def test_a_dash_reads_standard_input(capsys, tmp_path, found, stdin, command, file, pipe, needle):
    """`zcat run.msgpack.gz | tlbrace analyze -` was "-: cannot read the log: No such file or directory", `cat
    s.toml | tlbrace explore -` "-: no library scenario or file of that name": `-` is standard input to cat, tar
    and every tool a kernel engineer pipes through. Now it is, wherever the input is read once."""
    from scenarios.loader import LIBRARY_DIR

    data = {"msgpack": (found / f"{STEM}.msgpack").read_bytes(), "schedule": (found / f"{STEM}.schedule").read_bytes(),
            "toml": (LIBRARY_DIR / "madv_dontneed.toml").read_bytes()}[file]
    stdin(data, pipe)
    extra = {"shrink": ["-o", str(tmp_path / "s.schedule")],
             "explore": ["--ordering", "eager", "--out", str(tmp_path / "o")]}.get(command, [])
    rc, out, err = run_cli(capsys, command, "-", *extra)
    assert rc == 1 and needle in out and "error" not in err, err


def test_a_scenario_without_a_name_on_standard_input_is_called_stdin(capsys, tmp_path, stdin):
    from scenarios.loader import LIBRARY_DIR

    text = (LIBRARY_DIR / "madv_dontneed.toml").read_text()
    stdin("\n".join(line for line in text.splitlines() if not line.startswith("name = \"madv")).encode())
    rc, out, err = run_cli(capsys, "explore", "-", "--ordering", "eager", "--out", str(tmp_path))
    assert rc == 1 and (tmp_path / "stdin-eager-smp-bfs-0.schedule").exists(), err


def test_standard_input_named_twice_is_analysed_once(capsys, found, stdin):
    """`analyze - -` counted the trial twice: the log named twice is recognised by its inode, but `-` is no
    path, and CPython keeps a single object for each one-character string, so the check by identity always
    found `-` to be its own first."""
    stdin((found / f"{STEM}.msgpack").read_bytes(), pipe=True)
    rc, out, err = run_cli(capsys, "analyze", "-", "-", "--json")
    import json

    assert rc == 1 and json.loads(out)["summary"]["trials"] == 1, err
    assert "tlbrace: note: - is the same file as -: analysed once" in err


@pytest.mark.parametrize("argv, needle", [
    (["analyze", "-"], "-: standard input is empty; expected the log on it"),
    (["explore", "-"], "-: standard input is empty; expected the scenario file on it"),
    (["replay", "-"], "-: standard input is empty; expected the file to replay on it"),
])
def test_an_empty_standard_input_is_named(capsys, tmp_path, stdin, argv, needle):
    stdin(b"")
    rc, out, err = run_cli(capsys, *argv, *(["--out", str(tmp_path)] if argv[0] == "explore" else []))
    assert rc == 2 and needle in err and err.count("\n") == 1, err


def test_a_terminal_on_standard_input_is_refused_not_waited_on(capsys, tmp_path):
    """`tlbrace analyze -` typed at a prompt would wait for a log typed in."""
    from scenarios import input_files

    main_fd, tty = os.openpty()
    saved = os.dup(0)
    os.dup2(tty, 0)
    try:
        rc, out, err = run_cli(capsys, "analyze", "-")
    finally:
        os.dup2(saved, 0)
        for fd in (saved, tty, main_fd):
            os.close(fd)
        input_files._PIPED.pop((input_files.STDIN, 0, 0), None)
    assert rc == 2 and "-: the log is to come on standard input, which is a terminal: pipe it or redirect it" in err


@pytest.mark.parametrize("argv, needle", [
    (["explore", "madv_dontneed", "--out", "-"], "--out -: expected a directory path; its files cannot go to "
                                                 "standard output (./- names a directory called '-')"),
    (["fuzz", "--count", "1", "--out", "-"], "--out -: expected a directory path"),
    (["shrink", "SCHEDULE", "-o", "-"], "-o -: expected a file path; tlbrace writes this file whole, never to "
                                        "standard output"),
    (["history", "madv_dontneed", "--kernels", "6.2", "--out", "-"], "--out -: expected a directory path"),
    (["history", "madv_dontneed", "--kernels", "6.2", "--png", "-"], "--png -: expected a file path"),
    (["analyze", "LOG", "--timeline", "-"], "--timeline -: expected a file path"),
    (["report", "-"], "-: report reads a directory of campaigns, which standard input cannot be"),
])
def test_a_dash_as_an_output_is_refused_and_nothing_named_dash_is_made(capsys, tmp_path, monkeypatch, found, argv,
                                                                       needle):
    """`explore X --out -` made a directory named '-' and wrote the counterexample there; `shrink S -o -` a file
    named '-'. Whoever typed `-` meant standard output, which these files never go to."""
    monkeypatch.chdir(tmp_path)
    paths = {"SCHEDULE": str(found / f"{STEM}.schedule"), "LOG": str(found / f"{STEM}.msgpack")}
    rc, out, err = run_cli(capsys, *[paths.get(a, a) for a in argv])
    assert rc == 2 and needle in err and err.count("\n") == 1, err
    assert not os.path.lexists(tmp_path / "-")


def test_a_file_named_dash_is_still_reachable_as_dot_slash_dash(capsys, tmp_path, monkeypatch, found):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-").write_bytes((found / f"{STEM}.msgpack").read_bytes())
    rc, out, err = run_cli(capsys, "analyze", "./-")
    assert rc == 1 and "VIOLATION lost_dirty_data" in out, err


# --- --until past --trials -------------------------------------------------------------------------------------------

def test_until_more_than_trials_is_refused_before_ray(capsys, tmp_path, monkeypatch):
    """`stress --trials 1 --until 5` ran its one trial and said "stopped after 1 trials": five violating trials
    cannot happen in one (on --resume both count the whole campaign), so the limit asked for could never apply."""
    import cli.cmd_stress

    monkeypatch.setattr(cli.cmd_stress, "open_ray", lambda *_a, **_k: pytest.fail("the campaign was run"))
    rc, out, err = run_cli(capsys, "stress", "madv_dontneed", "--trials", "1", "--until", "5", "--out",
                           str(tmp_path / "o"))
    assert rc == 2 and "--until 5: more violating trials than --trials 1 can hold, so it could never stop the " \
                      "campaign: expected --until at most 1" in err, err
    assert not (tmp_path / "o").exists()


def test_until_equal_to_trials_or_without_trials_is_taken(capsys, tmp_path, monkeypatch):
    from cli.cmd_stress import stop_limits
    from cli.main import build_parser

    for argv, limits in ((["--trials", "5", "--until", "5"], (5, None, 5)), (["--until", "500"], (None, None, 500))):
        args = build_parser().parse_args(["stress", "madv_dontneed", *argv])
        assert stop_limits(args) == limits


# --- --verbose that was accepted and thrown away -----------------------------------------------------------------------

def test_fuzz_verbose_prints_each_scenario(capsys, tmp_path):
    """`fuzz --verbose` was taken out of the command line before it was parsed (it asks only for tracebacks
    elsewhere), so the option its --help offers did nothing. It now gives a line per scenario judged."""
    rc, out, err = run_cli(capsys, "fuzz", "--count", "3", "--budget", "50", "--verbose", "--out", str(tmp_path))
    assert rc == 0, err
    lines = [line for line in err.splitlines() if line.startswith("tlbrace fuzz: ")]
    assert [line.split(" scenarios ")[0] for line in lines] == [f"tlbrace fuzz: {i}/3" for i in (1, 2, 3)], err
    assert all("(threads, ops, pages = (" in line and " states, " in line and ": no violation" in line
               for line in lines), err


@pytest.mark.parametrize("argv", [["fuzz", "--count", "1", "--parallel", "1"], ["scale", "scale_writers", "--cpus",
                                                                              "3", "--trials", "1"]])
def test_verbose_reaches_ray_for_fuzz_and_scale(capsys, tmp_path, monkeypatch, argv):
    """Both commands' --help says --verbose lets Ray's warnings through; both had it removed before parsing."""
    import cli.cmd_scale
    import cli.cmd_stress

    seen = []

    def refuse(args, *_a, **_k):
        seen.append(args.verbose)
        raise KeyboardInterrupt
    monkeypatch.setattr(cli.cmd_stress, "open_ray", refuse)
    monkeypatch.setattr(cli.cmd_scale, "open_ray", refuse)
    run_cli(capsys, *argv, "--verbose", "--out", str(tmp_path / "o"))
    assert seen == [True]


# --- logs joined end to end -------------------------------------------------------------------------------------------

def _jsonl(data: bytes) -> bytes:
    import json

    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(data)
    return b"".join(json.dumps(rec).encode() + b"\n" for rec in unpacker)


@pytest.mark.parametrize("fmt, jobs", [("msgpack", "1"), ("msgpack", "2"), ("jsonl", "1")])
def test_two_logs_joined_end_to_end_are_not_judged_as_one(capsys, tmp_path, monkeypatch, found, fmt, jobs):
    """`cat a.msgpack b.msgpack > c.msgpack; tlbrace analyze c.msgpack`: the second log's header was skipped as a
    record of no trial, and trial 0 of both runs was replayed as one trial ("divergence: step 3 returned Pte(...);
    the log recorded None"), exit 1, nothing said about a second log. Now the second header is where the first
    log ends, named with the command that cuts out the next one; replay agrees."""
    import analysis.analyze as analyze

    monkeypatch.setattr(analyze, "PARALLEL_MIN_BYTES", 0)
    one = (found / f"{STEM}.msgpack").read_bytes()
    if fmt == "jsonl":
        one = _jsonl(one)
    joined = tmp_path / f"joined.{fmt}"
    joined.write_bytes(one + one)
    rc, out, err = run_cli(capsys, "analyze", str(joined), "--jobs", jobs)
    needle = (f"another log's header at byte {len(one)} (logs joined end to end: the next one is `tail -c "
              f"+{len(one) + 1} FILE`, to analyse on its own); analysed the records before it")
    assert rc == 1 and needle in " ".join(err.split()), err
    assert "divergence:" not in out and "trial 0: VIOLATION lost_dirty_data" in out
    rc, out, err = run_cli(capsys, "replay", str(joined))
    assert rc == 1 and f"another log's header at byte {len(one)}" in out and "reproduced" in out, out


def test_a_log_joined_after_one_of_many_trials_keeps_the_first_ones_verdicts(capsys, tmp_path, monkeypatch,
                                                                               trials_log, found):
    """With several --jobs chunks, the second header is found by the chunk it falls in; the chunks after it do
    not count, as with one reader."""
    import analysis.analyze as analyze

    monkeypatch.setattr(analyze, "PARALLEL_MIN_BYTES", 0)
    joined = tmp_path / "joined.msgpack"
    joined.write_bytes(trials_log.read_bytes() + (found / f"{STEM}.msgpack").read_bytes())
    outputs = [run_cli(capsys, "analyze", str(joined), "--jobs", jobs, "--json") for jobs in ("1", "3")]
    assert outputs[0] == outputs[1]
    import json

    doc = json.loads(outputs[0][1])
    assert doc["summary"]["trials"] == 12 and doc["logs"][0]["damage"].startswith("another log's header at byte")


# --- a deleted current directory ---------------------------------------------------------------------------------

@pytest.fixture
def deleted_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    return tmp_path


@pytest.mark.parametrize("argv, needle", [
    (["analyze", "LOG", "--timeline", "t.png"], "--timeline t.png: the current directory no longer exists"),
    (["analyze", "LOG", "--perfetto", "t.json"], "--perfetto t.json: the current directory no longer exists"),
    (["shrink", "SCHEDULE", "-o", "s.schedule"], "-o s.schedule: the current directory no longer exists"),
    (["report", "DIR", "-o", "r.html"], "-o r.html: the current directory no longer exists"),
    (["analyze", "rel.msgpack"], "rel.msgpack: cannot read the log: the current directory no longer exists"),
    (["explore", "rel.toml", "--out", "OUT"], "rel.toml: cannot read the scenario file: the current directory no "
                                               "longer exists"),
])
def test_a_deleted_current_directory_is_named_for_relative_files_too(capsys, deleted_cwd, found, argv, needle):
    """`--out` named it (test_hostile_outputs), the other relative paths did not: `analyze L --timeline t.png`
    was "tlbrace: error: No such file or directory: check the path and the device", naming no file (after the
    whole analysis), and `analyze rel.msgpack` "No such file or directory" for a file that may be there."""
    paths = {"LOG": str(found / f"{STEM}.msgpack"), "SCHEDULE": str(found / f"{STEM}.schedule"),
             "DIR": str(found), "OUT": str(deleted_cwd / "o")}
    rc, out, err = run_cli(capsys, *[paths.get(a, a) for a in argv])
    assert rc in (2, 3) and needle in err and "(deleted after the shell entered it)" in err, err
    assert err.count("\n") == 1


# --- a full disk after the work -----------------------------------------------------------------------------------------

def _enospc(path: str, *_a: object, **_k: object) -> None:
    import errno

    raise OSError(errno.ENOSPC, "No space left on device", path)


@pytest.mark.parametrize("json_out", [False, True])
def test_history_prints_its_table_when_the_matrix_cannot_be_written(capsys, tmp_path, monkeypatch, json_out):
    """On a full disk history ended at the PNG with exit 3 and no table: every search's verdict (an hour of them
    with --all) was lost, and --json printed nothing. Now the table (or the document) comes first, then the same
    one-line error, exit 3."""
    import json

    import analysis.history_plot

    monkeypatch.setattr(analysis.history_plot, "plot_history", lambda _r, _k, png: _enospc(png))
    rc, out, err = run_cli(capsys, "history", "madv_dontneed", "--kernels", "6.1,6.2", "--out", str(tmp_path),
                           *(["--json"] if json_out else []))
    assert rc == 3 and f"{tmp_path / 'history.png'}: No space left on device: free some space" in err, err
    if json_out:
        assert [k["verdict"] for k in json.loads(out)["kernels"]] == ["violation", "clean"]
    else:
        assert "lost_dirty_data" in out and "clean (exhaustive)" in out and "matrix written" not in out, out


def test_fuzz_reports_every_violation_it_could_not_save_and_runs_to_the_end(capsys, tmp_path, monkeypatch):
    """On a full disk fuzz ended at its first violation's scenario file (exit 3): no report, the rest of the
    campaign not run. Now each unsaved violation is in the report, saying how to draw it again, the campaign
    runs to its end, and the first error ends the command (exit 3)."""
    import json

    import cli.cmd_fuzz

    def full(path: str, _what: str) -> None:
        _enospc(path)
    monkeypatch.setattr(cli.cmd_fuzz, "replaced_whole", full)
    argv = ["fuzz", "--count", "6", "--budget", "500", "--mutant", "no_ipi_while_spinning", "--out", str(tmp_path)]
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 3 and "fuzz-0-2.toml: No space left on device: free some space" in err and err.count("error") == 1
    assert "6 scenarios" in out and "hang: fuzz-0-2 (threads, ops, pages = (2, 3, 3)) not saved (" in out, out
    assert "the same command draws it again (scenario 2 of --seed 0)" in out
    rc, out, err = run_cli(capsys, *argv, "--json")
    doc = json.loads(out)
    assert rc == 3 and doc["generated"] == 6 and doc["violations"][0]["not_saved"].endswith("No space left on device")


@pytest.mark.parametrize("picture", ["--perfetto", "--timeline"])
def test_analyze_prints_its_verdicts_when_a_picture_cannot_be_written(capsys, tmp_path, monkeypatch, found, picture):
    """`analyze big.msgpack --perfetto p.json` on a full disk judged every trial, then ended at the trace with
    exit 3 before printing a verdict."""
    import analysis.perfetto
    import analysis.timeline

    monkeypatch.setattr(analysis.perfetto, "write_trace", lambda path, _t: _enospc(path))
    monkeypatch.setattr(analysis.timeline, "draw_timeline", lambda path, *_a: _enospc(path))
    target = str(tmp_path / ("p.json" if picture == "--perfetto" else "t.png"))
    rc, out, err = run_cli(capsys, "analyze", str(found / f"{STEM}.msgpack"), picture, target)
    assert rc == 3 and f"{target}: No space left on device" in err and err.count("\n") == 1, err
    assert "trial 0: VIOLATION lost_dirty_data" in out and "hit rate" in out, out


# --- records no trial takes ------------------------------------------------------------------------------------------

def _rewritten(source: Path, target: Path, change) -> Path:
    records = list(msgpack.Unpacker(open(source, "rb"), raw=False, strict_map_key=False))
    target.write_bytes(b"".join(msgpack.packb(r if i == 0 else change(dict(r))) for i, r in enumerate(records)))
    return target


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_log_whose_trial_ids_are_no_integers_is_no_clean_verdict(capsys, tmp_path, monkeypatch, trials_log, jobs):
    """A log converted by a tool that wrote every trial id as 0.0 (or "0"): each record was skipped without a
    word, and analyze said "0 trial(s)", exit 0, a clean verdict on twelve trials; replay "nothing to replay",
    exit 0. Now the skipped records are counted and named, and a log with no trial left is exit 2."""
    import analysis.analyze as analyze

    monkeypatch.setattr(analyze, "PARALLEL_MIN_BYTES", 0)
    floats = _rewritten(trials_log, tmp_path / "floats.msgpack", lambda r: dict(r, trial=float(r["trial"])))
    rc, out, err = run_cli(capsys, "analyze", str(floats), "--jobs", jobs)
    needle = "record(s) that are neither an event nor a trial_end of an integer trial (the first: type 'event', " \
             "trial 0.0): not judged"
    assert rc == 2 and needle in " ".join(err.split()), err
    rc, out, err = run_cli(capsys, "replay", str(floats))
    assert rc == 2 and needle in err and "no trial to replay" in err, err


def test_a_few_stray_records_are_named_and_the_rest_judged(capsys, tmp_path, monkeypatch, trials_log):
    import json

    import analysis.analyze as analyze

    monkeypatch.setattr(analyze, "PARALLEL_MIN_BYTES", 0)
    some = _rewritten(trials_log, tmp_path / "some.msgpack",
                      lambda r: dict(r, trial=str(r["trial"])) if r["trial"] == 3 else r)
    docs = []
    for jobs in ("1", "3"):
        rc, out, err = run_cli(capsys, "analyze", str(some), "--jobs", jobs, "--json")
        assert rc == 1, err
        docs.append(json.loads(out))
    assert docs[0] == docs[1] and docs[0]["summary"]["trials"] == 11
    assert docs[0]["logs"][0]["strays"].endswith("record(s) that are neither an event nor a trial_end of an integer "
                                                 "trial (the first: type 'event', trial '3'): not judged")


@pytest.mark.parametrize("json_out", [False, True])
def test_run_shows_a_failing_trial_whose_log_cannot_be_written(capsys, tmp_path, monkeypatch, found, json_out):
    """`tlbrace run` on a full disk: the trial ran and failed, then its log could not be written and the command
    ended there (exit 3) without the story. A wild trial cannot be replayed into existence again: what it showed
    was lost. Now its story (or JSON) comes first, then the error."""
    import json

    import actors.campaign
    import actors.trial
    import cli.cmd_run
    from actors.trial import TrialResult
    from kernel_model.events import Violation

    records = [r for r in msgpack.Unpacker(open(found / f"{STEM}.msgpack", "rb"), raw=False, strict_map_key=False)
               if r.get("type") == "event"]
    result = TrialResult(0, "violation", [Violation("lost_dirty_data", "file page 0 holds 2 but the disk holds 1")],
                         records, steps=len(records))
    monkeypatch.setattr(cli.cmd_run, "open_ray", lambda *_a, **_k: None)
    monkeypatch.setattr(cli.cmd_run, "close_ray", lambda *_a, **_k: None)
    monkeypatch.setattr(actors.trial, "run_one", lambda *_a, **_k: result)
    monkeypatch.setattr(actors.campaign, "write_trial_log", lambda out, *_a: _enospc(f"{out}/x.msgpack"))
    rc, out, err = run_cli(capsys, "run", "madv_dontneed", "--ordering", "eager", "--out", str(tmp_path),
                           *(["--json"] if json_out else []))
    assert rc == 3 and "x.msgpack: No space left on device" in err and err.count("\n") == 1, err
    if json_out:
        assert json.loads(out)["violations"][0]["invariant"] == "lost_dirty_data"
    else:
        assert "trial 0: violation" in out and "zap_pte_range" in out and "log: not saved" in out, out


# --- an output file where nothing can be created -----------------------------------------------------------------------

@pytest.mark.parametrize("argv, module, work", [
    (["analyze", "LOG", "--timeline", "/proc/t.png"], "cli.cmd_analyze", "analyze_log"),
    (["analyze", "LOG", "--perfetto", "/proc/t.json"], "cli.cmd_analyze", "analyze_log"),
    (["shrink", "SCHEDULE", "-o", "/proc/s.schedule"], "cli.cmd_shrink", "shrink"),
    (["history", "madv_dontneed", "--kernels", "6.2", "--png", "/proc/h.png"], "cli.cmd_history", "history_row"),
    (["report", "DIR", "-o", "/proc/r.html"], "analysis.report", "write_report"),
])
def test_an_output_file_where_nothing_can_be_created_is_refused_before_the_work(capsys, monkeypatch, found, argv,
                                                                                 module, work):
    """--out was probed at the door (test_hostile_outputs); an output file's directory was not: on a read-only
    file system (or /proc) `shrink -o` ran its delta debugging, `history --png` every search, `analyze
    --timeline` judged every trial, and only then failed (exit 3)."""
    import importlib

    monkeypatch.setattr(importlib.import_module(module), work, lambda *_a, **_k: pytest.fail("the work ran"))
    paths = {"LOG": str(found / f"{STEM}.msgpack"), "SCHEDULE": str(found / f"{STEM}.schedule"), "DIR": str(found)}
    rc, out, err = run_cli(capsys, *[paths.get(a, a) for a in argv])
    assert rc == 3 and f"{argv[-2]} {argv[-1]}: nothing can be created in /proc (" in err, err
    assert "choose a writable place for it" in err and err.count("\n") == 1


# --- a compressed input --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command, file, compress", [
    ("analyze", "msgpack", "gzip"), ("analyze", "msgpack", "xz"), ("replay", "msgpack", "bz2"),
    ("replay", "schedule", "gzip"), ("shrink", "schedule", "gzip"), ("explore", "toml", "gzip"),
])
def test_a_compressed_input_is_named_with_the_pipe_that_reads_it(capsys, tmp_path, found, command, file, compress):
    """`tlbrace analyze run.msgpack.gz` said "not a tlbrace log (its first record is not a tlbrace-log header)",
    `shrink s.schedule.gz` "not one msgpack document", `explore s.toml.gz` "not UTF-8 text: invalid start byte":
    true, and no help to someone who keeps logs compressed. Now the compressor is named, with the pipe into `-`."""
    import bz2
    import gzip
    import lzma

    from scenarios.loader import LIBRARY_DIR

    source = LIBRARY_DIR / "madv_dontneed.toml" if file == "toml" else found / f"{STEM}.{file}"
    pack, cat = {"gzip": (gzip.compress, "zcat"), "xz": (lzma.compress, "xzcat"), "bz2": (bz2.compress, "bzcat")}[compress]
    path = tmp_path / f"{source.name}.{compress}"
    path.write_bytes(pack(source.read_bytes()))
    extra = {"shrink": ["-o", str(tmp_path / "s.schedule")], "explore": ["--out", str(tmp_path / "o")]}.get(command, [])
    rc, out, err = run_cli(capsys, command, str(path), *extra)
    name = {"bz2": "bzip2"}.get(compress, compress)
    assert rc == 2 and f"{path}: {name}-compressed; expected it decompressed, e.g. piped in as -: {cat} {path} | " \
                      "tlbrace ... -" in err and err.count("\n") == 1, err


# --- a Ctrl-C in history -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("json_out", [False, True])
def test_an_interrupted_history_prints_the_searches_that_finished(capsys, tmp_path, monkeypatch, json_out):
    """`timeout 1h tlbrace history --all` (or a Ctrl-C) said "tlbrace: interrupted", exit 130, and nothing else:
    every finished search's verdict was lost (fuzz and stress report what they finished). Now the table holds
    them, and a line says how many of how many; no matrix is written."""
    import json

    import controlled.explorer

    real = controlled.explorer.explore
    calls = []

    def third_is_interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(controlled.explorer, "explore", third_is_interrupted)
    rc, out, err = run_cli(capsys, "history", "madv_dontneed", "--kernels", "6.1,6.2,6.18", "--out", str(tmp_path),
                           *(["--json"] if json_out else []))
    assert rc == 130 and "tlbrace: interrupted after 2 of 3 searches; the table holds those that finished" in err
    if json_out:
        assert [k["kernel"] for k in json.loads(out)["kernels"]] == ["6.1", "6.2"]
    else:
        assert "lost_dirty_data" in out and "clean (exhaustive)" in out and "6.18" not in out, out
    assert not (tmp_path / "history.png").exists()


def test_an_interrupted_analyze_of_many_logs_shows_the_logs_it_judged(capsys, tmp_path, monkeypatch, found):
    """`analyze OUT/*.msgpack` interrupted in its third log said "tlbrace: interrupted" and showed nothing of the
    two it had judged."""
    import analysis.analyze
    import cli.cmd_analyze

    logs = []
    for i in range(3):
        logs.append(tmp_path / f"l{i}.msgpack")
        logs[-1].write_bytes((found / f"{STEM}.msgpack").read_bytes())
    real = analysis.analyze.analyze_log
    monkeypatch.setattr(cli.cmd_analyze, "analyze_log",
                        lambda path, **k: (_ for _ in ()).throw(KeyboardInterrupt) if path.endswith("l2.msgpack")
                        else real(path, **k))
    rc, out, err = run_cli(capsys, "analyze", *map(str, logs))
    assert rc == 130 and "tlbrace: interrupted after 2 of 3 logs; the verdicts above are theirs" in err, err
    assert out.count("trial 0: VIOLATION lost_dirty_data") == 2 and "l2.msgpack" not in out


# --- a Ctrl-C in shrink ------------------------------------------------------------------------------------------------

def test_an_interrupted_shrink_writes_the_shortest_schedule_found_so_far(capsys, tmp_path, monkeypatch):
    """A Ctrl-C (or SIGTERM) during shrink said "interrupted" and threw the delta debugging done so far away. Now
    the shortest schedule found, which still reproduces, is written, and a line says to shrink it again."""
    import json

    import cli.cmd_shrink

    rc, out, err = run_cli(capsys, "explore", "madv_dontneed", "--ordering", "eager", "--strategy", "random",
                           "--budget", "50", "--seed", "3", "--json", "--out", str(tmp_path))
    (found,) = json.loads(out)["violations"]
    real = cli.cmd_shrink.run_schedule
    calls = []

    def interrupted_at_the_sixtieth(*a, **k):
        calls.append(1)
        if len(calls) == 60:  # of 128 calls: it has shrunk 37 to 32 by then
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(cli.cmd_shrink, "run_schedule", interrupted_at_the_sixtieth)
    target = tmp_path / "shrunk.schedule"
    rc, out, err = run_cli(capsys, "shrink", found["schedule_file"], "-o", str(target))
    assert rc == 130 and "tlbrace: interrupted; the shortest schedule found so far (" in err, err
    steps = int(err.split("so far (")[1].split(" ")[0])
    assert steps < found["steps"] and f"written to {target}" in out
    monkeypatch.setattr(cli.cmd_shrink, "run_schedule", real)
    rc, out, err = run_cli(capsys, "replay", str(target))
    assert rc == 1 and "reproduced" in out, out


# --- a log header's informative keys ---------------------------------------------------------------------------------

def _with_runtime(found: Path, target: Path, runtime: object, jsonl: bool) -> Path:
    import json

    records = list(msgpack.Unpacker(open(found / f"{STEM}.msgpack", "rb"), raw=False, strict_map_key=False))
    records[0]["runtime"] = runtime
    target.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in records) if jsonl
                       else b"".join(msgpack.packb(r) for r in records))
    return target


def _nested(depth: int) -> object:
    value: object = "wild"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("command", [["analyze"], ["analyze", "--json"], ["replay"]])
@pytest.mark.parametrize("runtime, jsonl, needle", [
    (_nested(1000), False, "header key 'runtime' is nested more than 32 deep"),
    (float("nan"), True, "header key 'runtime': expected a string, got nan"),
])
def test_a_header_runtime_that_is_no_string_is_named(capsys, tmp_path, found, command, runtime, jsonl, needle):
    """The header's "runtime" is shown as it is, and was read unchecked: nested 1,000 deep it was an internal
    error (RecursionError, exit 4) in analyze and replay; NaN (a JSON Lines log) came out of `analyze --json` as
    the bare word NaN, which no JSON reader takes."""
    log = _with_runtime(found, tmp_path / f"log.{'jsonl' if jsonl else 'msgpack'}", runtime, jsonl)
    rc, out, err = run_cli(capsys, command[0], str(log), *command[1:])
    assert rc == 2 and f"{log}: {needle}" in err and err.count("\n") == 1, err


def test_a_json_document_never_holds_nan():
    import io

    from cli import json_document

    out = io.StringIO()
    json_document._documents.append(out)
    try:
        json_document.print_document({"a": [1.5, float("nan")], "b": {"c": float("-inf")}, "d": "NaN"})
    finally:
        json_document._documents.pop()
    assert out.getvalue() == '{"a": [1.5, null], "b": {"c": null}, "d": "NaN"}\n'


@pytest.mark.parametrize("key", ["scenario", "seed", "strategy"])
@pytest.mark.parametrize("command", ["replay", "shrink"])
def test_a_schedule_value_nested_too_deeply_is_named(capsys, tmp_path, found, key, command):
    """Session 20 bounded the nesting of a schedule's params and config; its scenario, seed and strategy nested
    1,000 deep were still an internal error (RecursionError in the repr meant to show them, exit 4)."""
    doc = msgpack.unpackb((found / f"{STEM}.schedule").read_bytes(), raw=False, strict_map_key=False)
    doc[key] = _nested(1000)
    path = tmp_path / "deep.schedule"
    path.write_bytes(msgpack.packb(doc))
    rc, out, err = run_cli(capsys, command, str(path), *(["-o", str(tmp_path / "s.schedule")]
                                                         if command == "shrink" else []))
    assert rc == 2 and f"{path}: '{key}' is nested more than 32 deep" in err and err.count("\n") == 1, err
