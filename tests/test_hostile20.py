"""Session 20's red team: list options, booleans where numbers belong, the process limit, Ray's leftover session
directories, a Ctrl-C while Ray starts, and damaged or unusual inputs. Each test failed before its fix. None
needs Ray unless marked wild."""

from __future__ import annotations

import os
import resource
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
from child_process import ROOT, driver_env
from cli_run import run_cli


@pytest.fixture(scope="module")
def eager_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """madv_dontneed's eager counterexample log (and its .schedule beside it), as `tlbrace explore` writes it."""
    from cli.main import main

    out = tmp_path_factory.mktemp("explore")
    assert main(["explore", "madv_dontneed", "--ordering", "eager", "--json", "--out", str(out)]) == 1
    return out / "madv_dontneed-eager-smp-bfs-0.msgpack"


# --- list options ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, needle", [
    (["scale", "scale_writers", "--cpus", "3,,4"], "argument --cpus: '3,,4': item 2 is empty; expected"),
    (["scale", "scale_writers", "--cpus", "3,4,"], "argument --cpus: '3,4,': item 3 is empty"),
    (["scale", "scale_writers", "--cpus", "3,-4"], "argument --cpus: '3,-4': item 2, '-4', is not positive"),
    (["scale", "scale_writers", "--cpus", "4,8,4"], "'4,8,4': item 3, '4', is given twice (as item 1)"),
    (["scale", "scale_writers", "--shards", "1,,2"], "argument --shards: '1,,2': item 2 is empty"),
    (["scale", "scale_writers", "--ordering", "eager,,delayed"], "argument --ordering: 'eager,,delayed': item 2 "
                                                                  "is empty"),
    (["scale", "scale_writers", "--delayed-batches", "active,active"], "item 2, 'active', is given twice"),
    (["history", "madv_dontneed", "--kernels", "4.12,,4.13"], "--kernels: '4.12,,4.13': item 2 is empty"),
    (["history", "madv_dontneed", "--kernels", "4.13,v4.13"], "item 2, 'v4.13', is given twice (as item 1)"),
    (["fuzz", "--using", "store,,load"], "--using: 'store,,load': item 2 is empty"),
    (["fuzz", "--using", "store,load,store"], "item 3, 'store', is given twice"),
])
def test_a_list_option_with_an_empty_or_repeated_item_is_refused(capsys, tmp_path, monkeypatch, argv, needle):
    """`scale --cpus 3,,4` ran as 3,4, `--cpus 4,8,4` as 4,8, `history --kernels 4.12,,4.13` and `fuzz --using
    store,,load` dropped the empty item: a typo (3,5,4? 4,8,16?) went unseen."""
    import cli.cmd_scale

    monkeypatch.setattr(cli.cmd_scale, "open_ray", lambda *_a, **_k: pytest.fail("the grid was run"))
    cheap = {"scale": [], "history": ["--budget", "10", "--no-png"], "fuzz": ["--count", "1", "--budget", "10"]}
    rc, out, err = run_cli(capsys, *argv, *cheap[argv[0]], "--out", str(tmp_path / "o"))
    assert rc == 2 and needle in err and err.count("tlbrace: error:") == 1, err
    assert not (tmp_path / "o").exists()


# --- booleans where an integer is expected ----------------------------------------------------------------------

def _schedule_with(eager_log: Path, out: Path, index: int, transition: list[Any]) -> Path:
    doc = msgpack.unpackb(eager_log.with_suffix(".schedule").read_bytes(), raw=False, strict_map_key=False)
    doc["schedule"][index] = transition
    damaged = out / "damaged.schedule"
    damaged.write_bytes(msgpack.packb(doc))
    return damaged


@pytest.mark.parametrize("transition", [["t", True], ["i", True, 0], ["i", 0, False]])
def test_a_boolean_in_a_schedule_transition_is_refused(capsys, tmp_path, eager_log, transition):
    """A schedule whose transition was ["t", true] replayed thread 1's step (Python's True is 1): "reproduced"."""
    damaged = _schedule_with(eager_log, tmp_path, 1, transition)
    for argv in (["replay", str(damaged)], ["shrink", str(damaged), "-o", str(tmp_path / "s.schedule")]):
        rc, out, err = run_cli(capsys, *argv)
        assert rc == 2 and err.count("\n") == 1, err
        assert f"{damaged}: schedule[1]: expected" in err and "with integer numbers" in err, err


def test_a_schedule_whose_version_is_true_is_not_called_version_1(capsys, tmp_path, eager_log):
    """"version": true was "schedule version 1 (each flush IPI as two transitions) ... record it again"."""
    doc = msgpack.unpackb(eager_log.with_suffix(".schedule").read_bytes(), raw=False, strict_map_key=False)
    doc["version"] = True
    damaged = tmp_path / "v.schedule"
    damaged.write_bytes(msgpack.packb(doc))
    rc, out, err = run_cli(capsys, "replay", str(damaged))
    assert rc == 2 and "schedule version True; this tlbrace reads 2" in err, err


def test_a_log_record_whose_trial_is_true_is_not_trial_1(tmp_path, eager_log):
    """An event record with "trial": true was counted among trial 1's records (True == 1 as a dict key)."""
    from analysis.analyze import analyze_log
    from logs.eventlog import iter_trials, read_log

    records = list(msgpack.Unpacker(open(eager_log, "rb"), raw=False, strict_map_key=False))
    for rec in records[1:]:
        rec["trial"] = 1
    stray = dict(next(r for r in records if r.get("type") == "event"), trial=True)
    damaged = tmp_path / "d.msgpack"
    damaged.write_bytes(b"".join(msgpack.packb(r) for r in records + [stray]))
    trials = list(iter_trials(read_log(damaged)))
    assert [(t, len(events)) for t, events, _ in trials] == [(1, len(records) - 2)], trials
    report = analyze_log(str(damaged))
    assert [t.trial for t in report.trials] == [1] and report.trials[0].violations, report


# --- the process limit, and Ray's start ---------------------------------------------------------------------------

def test_a_process_limit_ray_cannot_run_under_is_one_line_before_ray(capsys, tmp_path, monkeypatch):
    """Under `ulimit -u` too low for Ray's ~200 threads and ~17 a worker, a thread or worker Ray cannot start aborts
    its process in C++ or leaves ray.init waiting; the open-files and address-space limits were checked, this one
    not. Now one line, exit 3, before Ray starts (the kernel exempts root, the machine tests run as)."""
    import ray

    from actors import ray_session

    real = resource.getrlimit
    monkeypatch.setattr(resource, "getrlimit",
                        lambda which: (300, 300) if which == resource.RLIMIT_NPROC else real(which))
    monkeypatch.setattr(ray_session, "_exempt_from_process_limit", lambda: False)
    monkeypatch.setattr(ray_session, "tasks_of_user", lambda: 100)
    monkeypatch.setattr(ray, "init", lambda *_a, **_k: pytest.fail("Ray was started"))
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # this worker may hold the session's Ray
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    rc, out, err = run_cli(capsys, "stress", "madv_dontneed", "--trials", "1", "--out", str(tmp_path / "o"))
    assert rc == 3 and err.count("\n") == 1, err
    assert "the limit of processes (`ulimit -u`) is 300: you run 100 processes and threads already, and the " \
           "embedded Ray cluster and 4 actors needs about 352 more" in err, err
    with pytest.raises(ray_session.RayStartFailed, match="embedded Ray cluster needs about 256 more"):
        ray_session.start_local()  # fuzz --parallel and any other start: the cluster alone


def _start_stuck_driver(tmp_path: Path, *argv: str) -> subprocess.Popen[str]:
    """``tlbrace stress`` in a child whose ray.init never returns (as one stuck in Ray's C++ core, or a join that
    waits for its head), once it has said it is there."""
    script = ("import sys, time, ray\n"
              "from actors import ray_session as rs\n"
              f"rs.TEMP_BASE = {str(tmp_path / 'base')!r}\n"
              "rs.probe = lambda address: None  # as if a Ray head answered there\n"
              "def stuck(*_a, **_k):\n"
              "    print('in ray.init', flush=True)\n"
              "    time.sleep(600)\n"
              "ray.init = stuck\n"
              "from cli.main import main\n"
              f"sys.exit(main(['stress', 'madv_dontneed', '--trials', '1', '--out', {str(tmp_path / 'o')!r}, "
              f"*{list(argv)!r}]))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=driver_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    assert ready and proc.stdout.readline() == "in ray.init\n", proc.stderr.read() if not ready else ""
    return proc


@pytest.mark.parametrize("signum, join", [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)])
def test_a_ctrl_c_while_ray_init_hangs_ends_the_command(tmp_path, signum, join):
    """A Ctrl-C (or SIGTERM) while ray.init hung was held back until ray.init returned: the command waited out the
    start's whole deadline, 180 s, then said the cluster did not start (exit 3); a join (--address) waited out its
    30 s. Now: "interrupted", exit 130, one line on the terminal (not in Ray's start log, where fd 2 points
    meanwhile)."""
    proc = _start_stuck_driver(tmp_path, *(["--address", "127.0.0.1:6379"] if join else []))
    proc.send_signal(signum)
    try:
        _out, err = proc.communicate(timeout=60)  # far below the deadline it used to wait for
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the driver did not end on the signal")
    assert proc.returncode == 130, err
    assert err == ("tlbrace: interrupted while joining the Ray cluster at 127.0.0.1:6379\n" if join else
                   "tlbrace: interrupted while the embedded Ray cluster was starting (what it started is stopped)\n")


def test_the_start_deadlines_line_reaches_the_terminal(tmp_path):
    """The line of a start that missed its deadline went to Ray's start log (fd 2 is that log while ray.init runs,
    for the commands: quiet=True), and the terminal saw nothing at all before exit 3."""
    script = ("import time, ray\n"
              "from actors import ray_session as rs\n"
              f"rs.TEMP_BASE = {str(tmp_path / 'base')!r}\n"
              "rs.START_TIMEOUT_S = 0.5\n"
              "ray.init = lambda *a, **k: time.sleep(60)\n"
              "rs.start_local(quiet=True)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=driver_env(), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 3 and proc.stderr.startswith("tlbrace: error: the embedded Ray cluster did not start "
                                                           "within 0 s"), proc.stderr


# --- Ray's leftover session directories ---------------------------------------------------------------------------

def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _session(ray_dir: Path, stamp: str, pid: int, *, age_s: float = 3600.0) -> Path:
    """A session directory as Ray leaves it (its logs, a socket's place), last changed ``age_s`` ago."""
    path = ray_dir / f"session_2026-12-07_{stamp}_123456_{pid}"
    (path / "logs").mkdir(parents=True)
    (path / "sockets").mkdir()
    (path / "logs" / "raylet.out").write_text("raylet\n")
    then = time.time() - age_s
    for p in (path / "logs" / "raylet.out", path / "logs", path / "sockets", path):
        os.utime(p, (then, then))
    return path


def test_the_sessions_of_dead_clusters_are_removed_and_live_ones_kept(tmp_path, monkeypatch):
    """Ray never removes a session directory: 90 of them, 1.8 GB, had piled up in /tmp/tlbrace-0/ray in an
    afternoon. A start now removes those of dead clusters (all but the newest few), and never a live one's."""
    from actors import ray_leftovers

    monkeypatch.setattr(ray_leftovers, "KEEP_DEAD", 1)
    ray_dir = tmp_path / "ray"
    dead = _dead_pid()
    old = [_session(ray_dir, f"10-00-0{i}", dead) for i in range(3)]  # the newest (10-00-02) is kept
    mine = _session(ray_dir, "09-00-00", os.getpid())  # its head's process is alive
    recent = _session(ray_dir, "08-00-00", dead, age_s=5)  # something still writes in it
    orphan = _session(ray_dir, "07-00-00", dead)  # a raylet that outlived its driver still names it
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", f"--session-dir={orphan}"])
    # Until the child has exec'd, /proc shows the parent's command line: wait for the one that names the session
    # (CI under load removed the orphan's session once, having looked too early).
    cmdline = Path(f"/proc/{worker.pid}/cmdline")
    deadline = time.monotonic() + 20
    while str(orphan).encode() not in cmdline.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)
    link = ray_dir / f"session_2026-12-07_06-00-00_123456_{dead}"
    link.symlink_to(old[0])
    half = ray_dir / f".removing-session_2026-12-07_05-00-00_1_{dead}-{dead}"  # its remover was killed
    (half / "logs").mkdir(parents=True)
    try:
        removed = ray_leftovers.remove_dead_sessions(str(ray_dir))
    finally:
        worker.kill()
        worker.wait()
    assert sorted(removed) == sorted([half.name, old[0].name, old[1].name]), removed
    assert not old[0].exists() and not old[1].exists() and not half.exists()
    assert all(p.is_dir() for p in (old[2], mine, recent, orphan)) and link.is_symlink()
    assert not list(ray_dir.glob(".removing-*"))


def test_a_start_of_ray_removes_dead_sessions_first(tmp_path, monkeypatch):
    import ray

    from actors import ray_leftovers
    from actors import ray_session as rs

    monkeypatch.setattr(ray_leftovers, "KEEP_DEAD", 0)
    monkeypatch.setattr(rs, "TEMP_BASE", str(tmp_path / "base"))
    dead = _session(Path(rs.temp_dir()), "10-00-00", _dead_pid())

    def failing(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("no Ray here")

    monkeypatch.setattr(ray, "init", failing)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(rs.RayStartFailed):
        rs.start_local()
    assert not dead.exists()


# --- damaged and unusual inputs ---------------------------------------------------------------------------------

def test_a_report_of_a_directory_without_runs_leaves_the_page_there_alone(capsys, tmp_path):
    """`tlbrace report D` where D held no campaign (its results moved away, or a mistyped D) wrote an empty page
    over D/report.html, the report of the runs that were there, and then said "no results.msgpack ... under it"."""
    page = tmp_path / "report.html"
    page.write_text("<html>the last campaign's report</html>")
    rc, out, err = run_cli(capsys, "report", str(tmp_path))
    assert rc == 2 and "no results.msgpack (tlbrace stress --out)" in err and err.count("\n") == 1, err
    assert page.read_text() == "<html>the last campaign's report</html>"


def test_paths_with_brackets_and_newlines_are_printed_as_given(capsys, tmp_path):
    """`explore --out 'runs[/]x'`, then `shrink -o` or `analyze --perfetto` there: "internal error: MarkupError:
    closing tag '[/]' ... has nothing to close" (exit 4) once the work was done and the files written (rich read
    the path as markup; '[red]' in it vanished from the line). A newline in the path split the line in two."""
    out = tmp_path / "runs[/]x\nnl"
    rc, stdout, err = run_cli(capsys, "explore", "madv_dontneed", "--ordering", "eager", "--out", str(out),
                              "--width", "1000")
    assert rc == 1 and "internal error" not in err, err
    line = next(t for t in stdout.splitlines() if t.startswith("schedule written to"))
    assert f"{tmp_path}/runs[/]x\\nnl/madv_dontneed-eager-smp-bfs-0.schedule" in line, line
    schedule = out / "madv_dontneed-eager-smp-bfs-0.schedule"
    rc, stdout, err = run_cli(capsys, "shrink", str(schedule), "-o", str(out / "s.schedule"))
    assert rc == 1 and "internal error" not in err and "runs[/]x\\nnl/s.schedule" in stdout, err
    rc, stdout, err = run_cli(capsys, "analyze", str(schedule.with_suffix(".msgpack")), "--perfetto",
                              str(out / "p.json"))
    assert rc == 1 and "internal error" not in err and "runs[/]x\\nnl/p.json" in err.replace("\n", ""), err


@pytest.mark.parametrize("errno_name, needle", [("EROFS", "Read-only file system: remount it read-write, then run "
                                                           "the same command with --resume to go on"),
                                                ("EACCES", "Permission denied: give back the permission to write "
                                                           "there, then run the same command with --resume")])
def test_a_campaign_whose_out_turns_read_only_says_to_resume_it(capsys, tmp_path, monkeypatch, errno_name, needle):
    """--out remounted read-only mid-campaign (46 trials recorded): "...trial00046.msgpack: Read-only file
    system: choose a writable --out / output file". Another --out starts the campaign afresh; the 46 trials are
    kept only by making this one writable again and resuming."""
    import errno

    import cli.cmd_stress

    log = str(tmp_path / "madv_dontneed-x-trial00046.msgpack")

    def read_only(*_args: Any, **_kwargs: Any) -> None:
        code = getattr(errno, errno_name)
        raise OSError(code, os.strerror(code), log)

    monkeypatch.setattr(cli.cmd_stress, "open_ray", lambda *_a, **_k: object())
    monkeypatch.setattr(cli.cmd_stress, "close_ray", lambda *_a, **_k: None)
    monkeypatch.setattr(cli.cmd_stress, "_with_progress", read_only)
    rc, out, err = run_cli(capsys, "stress", "madv_dontneed", "--trials", "3", "--out", str(tmp_path))
    assert rc == 3 and err.count("\n") == 1 and f"{log}: {needle}" in err, err


def test_replay_of_a_log_whose_verdict_holds_markup_is_no_internal_error(capsys, tmp_path, eager_log):
    """A trial_end whose invariant was "lost[/]x": `tlbrace replay` said "internal error: MarkupError: closing tag
    '[/]' ... has nothing to close" (exit 4) after replaying it."""
    records = list(msgpack.Unpacker(open(eager_log, "rb"), raw=False, strict_map_key=False))
    records[-1]["violations"] = [{"invariant": "lost[/]x", "detail": ""}]
    damaged = tmp_path / "d.msgpack"
    damaged.write_bytes(b"".join(msgpack.packb(r) for r in records))
    rc, out, err = run_cli(capsys, "replay", str(damaged))
    assert rc == 1 and "internal error" not in err, err
    assert "trial 0: expected ['lost[/]x'], replay found ['lost_dirty_data']: NOT reproduced" in out, out


@pytest.mark.parametrize("command, given, needle", [
    ("shrink", ".msgpack", "is an event log, not a schedule file: analyze or replay it"),
    ("analyze", ".schedule", "is a schedule file, not an event log: replay or shrink it"),
    ("explore", ".schedule", "is a schedule file, not a scenario: replay or shrink it"),
    ("explore", ".msgpack", "is an event log, not a scenario: analyze or replay it"),
])
def test_a_tlbrace_file_given_where_another_kind_is_expected_is_named(capsys, tmp_path, eager_log, command, given,
                                                                        needle):
    """`shrink LOG` said "not a tlbrace schedule file (not one msgpack document)", `analyze SCHEDULE` "not a tlbrace
    log", `explore LOG` "not UTF-8 text: invalid start byte at byte 0": each a file tlbrace wrote itself."""
    path = str(eager_log.with_suffix(given))
    argv = {"shrink": [path, "-o", str(tmp_path / "s.schedule")], "analyze": [path],
            "explore": [path, "--budget", "10", "--out", str(tmp_path)]}[command]
    rc, out, err = run_cli(capsys, command, *argv)
    assert rc == 2 and err.startswith(f"tlbrace: error: {path}: {needle} (tlbrace ") and err.count("\n") == 1, err


@pytest.mark.parametrize("victim", ["results.csv", "my.toml"])
def test_a_report_or_trace_is_not_written_over_a_file_of_another_kind(capsys, tmp_path, eager_log, victim):
    """`tlbrace report RUN -o RUN/results.csv` replaced the scale run's rows (what the page is made of) with HTML,
    `-o my.toml` a scenario file, and `analyze L --perfetto my.toml` the same with trace JSON: exit 0."""
    target = tmp_path / victim
    target.write_text("cpus,shards,ordering\n3,1,eager\n")
    for argv in (["report", str(tmp_path), "-o", str(target)], ["analyze", str(eager_log), "--perfetto", str(target)]):
        rc, out, err = run_cli(capsys, *argv)
        assert rc == 2 and err.count("\n") == 1 and "expected a file name ending in ." in err, err
        assert target.read_text() == "cpus,shards,ordering\n3,1,eager\n"


def test_a_gather_size_given_twice_is_refused(capsys, tmp_path):
    """`--gather mmu_gather_bundle=1 --gather mmu_gather_bundle=2` searched with 2, the first silently dropped
    (`--param pages=1 --param pages=2` is refused: "pages is given twice")."""
    rc, out, err = run_cli(capsys, "explore", "madv_dontneed", "--gather", "mmu_gather_bundle=1", "--gather",
                           "mmu_gather_bundle=2", "--out", str(tmp_path))
    assert rc == 2 and err == "tlbrace: error: --gather 'mmu_gather_bundle=2': mmu_gather_bundle is given twice\n", err


@pytest.mark.parametrize("damage", ["bom", "blank_first", "blank_inside"])
def test_a_json_lines_log_with_a_bom_or_blank_lines_is_read_whole(capsys, tmp_path, damage):
    """A JSON Lines log saved by an editor with a UTF-8 BOM, or with a blank first line, was "not a tlbrace log
    (its first record is not a tlbrace-log header)" (exit 2); a blank line inside one ended the reading there
    ("garbage at byte N"), every record after it left out."""
    from cli.main import main

    assert main(["explore", "madv_dontneed", "--ordering", "eager", "--json", "--log-format", "jsonl", "--out",
                 str(tmp_path)]) == 1
    capsys.readouterr()
    lines = (tmp_path / "madv_dontneed-eager-smp-bfs-0.jsonl").read_bytes().splitlines(keepends=True)
    edited = {"bom": [b"\xef\xbb\xbf" + lines[0]] + lines[1:], "blank_first": [b"\n"] + lines,
              "blank_inside": lines[:3] + [b"  \r\n"] + lines[3:]}[damage]
    log = tmp_path / "edited.jsonl"
    log.write_bytes(b"".join(edited))
    rc, out, err = run_cli(capsys, "analyze", str(log))
    assert rc == 1 and err == "" and "trial 0: VIOLATION lost_dirty_data" in out, err
    rc, out, err = run_cli(capsys, "replay", str(log))
    assert rc == 1 and err == "" and "reproduced" in out, err
