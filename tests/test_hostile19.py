"""Session 19's red team: damaged records, linked and shared output files, Ray's temporary directory, and the
numbers a hostile user types. Each test failed before its fix. None needs Ray unless marked wild."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest
from child_process import ROOT, driver_env
from cli_run import run_cli


@pytest.fixture(scope="module")
def eager_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """madv_dontneed's eager counterexample log, as `tlbrace explore` writes it."""
    from cli.main import main

    out = tmp_path_factory.mktemp("explore")
    assert main(["explore", "madv_dontneed", "--ordering", "eager", "--json", "--out", str(out)]) == 1
    return out / "madv_dontneed-eager-smp-bfs-0.msgpack"


def _with_first_step(log: Path, out: Path, key: str, value: Any) -> Path:
    """A copy of ``log`` whose first step record has ``key`` set to ``value``."""
    records = list(msgpack.Unpacker(open(log, "rb"), raw=False, strict_map_key=False))
    first = next(r for r in records if r.get("kind") == "step")
    first[key] = value
    damaged = out / "damaged.msgpack"
    damaged.write_bytes(b"".join(msgpack.packb(r, use_bin_type=True) for r in records))
    return damaged


# (field, bad value, what the message must say): "missing or bad field '<' not supported between instances of 'str'
# and 'int'", "replay crashed: TypeError: list indices must be integers or slices, not float", and -1 taken for the
# last thread (a divergence of step 6, naming nothing).
MALFORMED = [("lamport", "x", "field 'lamport': expected an integer, got 'x'"),
             ("tid", 1.5, "field 'tid': expected a thread number in 0..2"),
             ("tid", "a", "field 'tid': expected a thread number in 0..2"),
             ("tid", -1, "field 'tid': expected a thread number in 0..2 (the scenario has 3), got -1")]


@pytest.mark.parametrize("key, value, needle", MALFORMED)
def test_analyze_names_the_field_of_a_malformed_record(capsys, tmp_path, eager_log, key, value, needle):
    damaged = _with_first_step(eager_log, tmp_path, key, value)
    rc, out, err = run_cli(capsys, "analyze", "--json", str(damaged))
    assert rc == 1, err
    import json

    trial = json.loads(out)["logs"][0]["trials"][0]
    assert trial["divergence"].startswith("malformed event record: event 4 (op 'down_read'): "), trial
    assert needle in trial["divergence"] and trial["violations"] == [], trial


@pytest.mark.parametrize("key, value, needle", MALFORMED)
def test_replay_names_the_field_of_a_malformed_record(capsys, tmp_path, eager_log, key, value, needle):
    damaged = _with_first_step(eager_log, tmp_path, key, value)
    rc, out, err = run_cli(capsys, "replay", str(damaged))
    assert rc == 2 and err.count("\n") == 1, err
    assert f"{damaged}: trial 0: malformed event record: event 4 (op 'down_read'): " in err and needle in err, err


def _tlbrace_limited(*argv: str, address_space: int) -> subprocess.CompletedProcess[str]:
    """``tlbrace ARGV`` as a child process under an address-space limit (`ulimit -v`)."""
    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    return subprocess.run([sys.executable, "-m", "cli.main", *argv], cwd=ROOT, env=driver_env(), text=True,
                          capture_output=True, timeout=120, preexec_fn=set_limit)


def test_a_small_log_is_read_under_an_address_space_limit(eager_log):
    """Under `ulimit -v 3000000` `tlbrace analyze` and `replay` of a 3 KB log said "out of memory under this
    process's address-space limit of 2,929 MB" (exit 3): the reader asked for a 4 GiB buffer (the bound on a log's
    size) before reading a byte. The same for a campaign's results file (stress --resume, report)."""
    for command in ("analyze", "replay"):
        proc = _tlbrace_limited(command, str(eager_log), address_space=3 << 30)
        assert proc.returncode == 1, (command, proc.stderr[-500:])


def test_a_file_that_grows_while_read_is_read_to_its_bound(tmp_path):
    from scenarios.input_files import InputFileError, _read_at_most

    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    with open(path, "rb") as f:
        assert _read_at_most(f, 4, 100) == b"x" * 10  # grown from 4 bytes since the fstat: read on
    with open(path, "rb") as f:
        assert _read_at_most(f, 4, 7) == b"x" * 7
    from scenarios.input_files import read_input

    with pytest.raises(InputFileError, match="at most 9 are read"):
        read_input(path, "log", 9)


def test_an_address_space_limit_ray_cannot_start_under_is_one_line_before_ray(capsys, tmp_path, monkeypatch):
    """Under `ulimit -v 1000000` `tlbrace stress` died in ray.init of SIGABRT (exit 134) after a page of Ray's C++
    stack traces; under 1500000 it waited for ever, deaf to Ctrl-C and SIGTERM. Now: one line, exit 3, Ray not
    started."""
    import ray

    real = resource.getrlimit
    monkeypatch.setattr(resource, "getrlimit",
                        lambda which: (1_000_000 << 10, resource.RLIM_INFINITY) if which == resource.RLIMIT_AS
                        else real(which))
    monkeypatch.setattr(ray, "init", lambda *_a, **_k: pytest.fail("Ray was started"))
    # This pytest worker may already hold the session's Ray (tests/conftest.py), which start_local reuses without a
    # check: the test is about a process that has none yet.
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    rc, out, err = run_cli(capsys, "stress", "madv_dontneed", "--trials", "1", "--out", str(tmp_path / "o"))
    assert rc == 3 and err.count("\n") == 1, err
    assert "address-space limit of 976 MB (`ulimit -v`)" in err and "2,048 MB" in err, err


def _python(script: str) -> subprocess.CompletedProcess[str]:
    """``script`` run by this Python in a child process at the project's root (no Ray is started unless it does)."""
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=driver_env(), capture_output=True, text=True,
                          timeout=60)


def test_a_ray_start_that_never_returns_ends_with_one_line():
    """A ray.init stuck in Ray's core (its raylet waiting for workers that cannot start) held the command for ever:
    Ctrl-C and SIGTERM are held back until ray.init returns. Now it ends after a deadline, exit 3."""
    script = ("import time, ray\n"
              "from actors import ray_session as rs\n"
              "rs.START_TIMEOUT_S = 0.5\n"
              "ray.init = lambda *a, **k: time.sleep(60)\n"
              "rs.start_local()\n")
    proc = _python(script)
    assert proc.returncode == 3, proc.stderr[-500:]
    assert proc.stderr.startswith("tlbrace: error: the embedded Ray cluster did not start within 0 s") and \
        proc.stderr.count("\n") == 1, proc.stderr


@pytest.mark.parametrize("plant", ["symlink", "open_dir", "file"])
def test_rays_temporary_directory_planted_by_someone_else_is_refused_and_left_alone(tmp_path, monkeypatch, plant):
    """Every user's Ray went to one fixed /tmp/tlbrace-ray, which Ray makes world-writable (chmod 0777, through a
    symbolic link too): another user's link there opened a directory of yours to everyone. Ray's directory is now
    under a directory of the user's own, mode 700, made if absent and refused when it is anything else."""
    from actors import ray_session as rs

    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    base = tmp_path / "base"
    if plant == "symlink":
        base.symlink_to(victim)
    elif plant == "open_dir":
        base.mkdir()
        base.chmod(0o777)
    else:
        base.write_text("")
    monkeypatch.setattr(rs, "TEMP_BASE", str(base))
    with pytest.raises(rs.RayStartFailed, match="must be a directory of your own that only you may use") as caught:
        rs.temp_dir()
    assert str(base) in str(caught.value) and "\n" not in str(caught.value)
    assert victim.stat().st_mode & 0o777 == 0o700 and not (victim / "ray").exists()


def test_rays_temporary_directory_is_made_private(tmp_path, monkeypatch):
    from actors import ray_session as rs

    base = tmp_path / "base"
    monkeypatch.setattr(rs, "TEMP_BASE", str(base))
    assert rs.temp_dir() == str(base / "ray") and base.stat().st_mode & 0o777 == 0o700
    assert rs.temp_dir() == str(base / "ray")  # a second run (or a concurrent one) of the same user shares it


@pytest.mark.parametrize("command", ["stress", "scale"])
def test_a_parallel_past_the_machines_memory_is_refused_before_ray(capsys, tmp_path, monkeypatch, command):
    """`stress --parallel 32` started its 128 actor processes (about 13 GB) on a machine with 2 GB available: the
    OOM killer chose what to end. Refused before Ray starts, saying what fits."""
    import ray

    from controlled import search_memory

    monkeypatch.setattr(search_memory, "available_bytes", lambda: 2 << 30)
    monkeypatch.setattr(ray, "init", lambda *_a, **_k: pytest.fail("Ray was started"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    argv = (["stress", "madv_dontneed", "--trials", "1"] if command == "stress"
            else ["scale", "scale_writers", "--cpus", "3"])
    rc, out, err = run_cli(capsys, *argv, "--parallel", "32", "--out", str(tmp_path / "o"))
    assert rc == 2 and err.count("\n") == 1, err
    assert "--parallel 32: 128 actors" in err and "2.0 GB available: use --parallel 3 or fewer" in err, err


def test_a_resume_through_a_hard_linked_results_file_leaves_the_other_name_as_it_was(capsys, tmp_path,
                                                                                       monkeypatch):
    """`cp -al A B` (or `ln A/results.msgpack B/`), then `stress --resume --out B`: B's records were appended
    through the shared inode into A's results file too (and a torn tail cut off both), silently. Now B goes on
    in a copy of its own, with a note."""
    import cli.cmd_stress
    from actors.campaign import CampaignOptions, prepare_results
    from kernel_model.config import Config
    from logs.results_file import ResultsWriter, read_results, trial_record
    from scenarios.loader import load_scenario

    a, b = tmp_path / "a", tmp_path / "b"
    b.mkdir()
    prepared = prepare_results(load_scenario("anon_pages"), Config(), CampaignOptions(out=str(a), trials=5,
                                                                                      results=True))
    assert prepared is not None
    writer = ResultsWriter(prepared.path, prepared.header)
    writer.append(trial_record(trial=0, seed=0, status="ok", invariants=[], detail="", actor=None, steps=5,
                               seconds=0.1, nodes=[], log=None))
    writer.close()
    prepared.release()
    before = (a / "results.msgpack").read_bytes()
    os.link(a / "results.msgpack", b / "results.msgpack")

    def campaign_appends(*_args: Any, **_kwargs: Any) -> None:
        raise KeyboardInterrupt  # stands for the campaign: the file is what the test looks at

    monkeypatch.setattr(cli.cmd_stress, "open_ray", campaign_appends)
    rc, out, err = run_cli(capsys, "stress", "anon_pages", "--trials", "5", "--resume", "--out", str(b))
    assert "had 1 other name(s) (a hard link); this campaign goes on in a copy of its own" in err, err
    assert os.stat(a / "results.msgpack").st_nlink == 1 and os.stat(b / "results.msgpack").st_nlink == 1
    writer = ResultsWriter(str(b / "results.msgpack"), prepared.header, read_results(b / "results.msgpack"))
    writer.append(trial_record(trial=1, seed=1, status="ok", invariants=[], detail="", actor=None, steps=5,
                               seconds=0.1, nodes=[], log=None))
    writer.close()
    assert (a / "results.msgpack").read_bytes() == before
    assert len(read_results(b / "results.msgpack").records) == 2


def test_an_output_that_cannot_be_made_is_named_by_its_own_name_not_the_temporary_one(tmp_path, monkeypatch):
    """On a read-only --out, `tlbrace report` said "report.html.5erbxy2n.tmp: Read-only file system" and `analyze
    --timeline t.png` "t.png.vow1thlt.tmp: ...": names the user never gave and cannot find."""
    import errno
    import tempfile

    from logs.output_files import replaced_whole

    def read_only(*_args: Any, prefix: str = "", dir: str = "", **_kwargs: Any) -> tuple[int, str]:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.path.join(dir, prefix + "x1y2z3.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    target = tmp_path / "report.html"
    with pytest.raises(OSError) as caught:
        with replaced_whole(target, "report"):
            pass
    assert caught.value.filename == str(target)


def test_fuzz_parallel_prices_its_searches_together(capsys, tmp_path, monkeypatch):
    """`fuzz --parallel 8 --budget 20000000` priced each search against all the memory available (8 GB here):
    each fitted alone, and eight at once needed five times what the machine had."""
    import ray

    from controlled import search_memory

    monkeypatch.setattr(search_memory, "available_bytes", lambda: 8 << 30)
    monkeypatch.setattr(ray, "init", lambda *_a, **_k: pytest.fail("Ray was started"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    rc, out, err = run_cli(capsys, "fuzz", "--count", "1", "--budget", "20000000", "--parallel", "8", "--out",
                           str(tmp_path / "o"))
    assert rc == 2 and err.count("\n") == 1, err
    assert "(this machine's memory, shared by 8 searches at once)" in err and "what fits: --budget" in err, err


def test_a_malformed_transition_of_a_schedule_file_is_named_by_its_index(capsys, tmp_path, eager_log):
    """A schedule file whose third transition was ["t", 1.0] said "schedule: expected a list of ["t", tid] or ["i",
    cpu, initiator]", not which of its transitions."""
    schedule = eager_log.with_suffix(".schedule")
    doc = msgpack.unpackb(schedule.read_bytes(), raw=False, strict_map_key=False)
    doc["schedule"][2] = ["t", 1.0]
    damaged = tmp_path / "damaged.schedule"
    damaged.write_bytes(msgpack.packb(doc))
    rc, out, err = run_cli(capsys, "replay", str(damaged))
    assert rc == 2 and err.count("\n") == 1, err
    assert f"{damaged}: schedule[2]: expected" in err and "got ['t', 1.0]" in err, err


def test_an_open_files_limit_ray_cannot_run_under_is_one_line_before_ray(capsys, tmp_path, monkeypatch):
    """Under `ulimit -n 64`, `stress --parallel 2` lost its raylet mid-campaign: 47 lines of Ray's messages, then
    "internal error: ActorDiedError" (exit 4). Now one line, exit 3, before Ray starts."""
    import ray

    real = resource.getrlimit
    monkeypatch.setattr(resource, "getrlimit",
                        lambda which: (64, 64) if which == resource.RLIMIT_NOFILE else real(which))
    monkeypatch.setattr(ray, "init", lambda *_a, **_k: pytest.fail("Ray was started"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    rc, out, err = run_cli(capsys, "stress", "madv_dontneed", "--trials", "1", "--parallel", "2", "--out",
                           str(tmp_path / "o"))
    assert rc == 3 and err.count("\n") == 1, err
    assert "the limit of open files (`ulimit -n`) is 64" in err and "needs about 128 for 8 actors" in err, err


def test_actors_that_never_start_are_given_up_after_a_deadline(monkeypatch):
    """With its raylet SIGKILLed mid-campaign, `stress` replaced the crashed trial's actors and waited for the new
    ones in ray.get for ever, deaf to Ctrl-C and SIGTERM."""
    import ray

    from actors import trial
    from actors.ray_session import ClusterLost

    monkeypatch.setattr(trial, "ACTOR_START_TIMEOUT_S", 0.05)
    monkeypatch.setattr(ray, "wait", lambda refs, num_returns, timeout: ([], list(refs)))  # never ready
    actors = object.__new__(trial.ActorSet)
    actors.index, actors._configured, actors._nodes = 3, ["pt", "cpu0"], None
    with pytest.raises(ClusterLost, match="the 2 actors of trial set 3 did not start within 0 s"):
        actors.nodes  # noqa: B018


def test_a_campaign_whose_actors_cannot_start_is_one_line_and_resumable(capsys, tmp_path, monkeypatch):
    import cli.cmd_stress
    from actors.trial import ActorsUnavailable

    def no_actors(*_args: Any, **_kwargs: Any) -> None:
        raise ActorsUnavailable("the 4 actors of trial set 0 did not start within 120 s: ...")

    monkeypatch.setattr(cli.cmd_stress, "open_ray", lambda *_a, **_k: object())
    monkeypatch.setattr(cli.cmd_stress, "close_ray", lambda *_a, **_k: None)
    monkeypatch.setattr(cli.cmd_stress, "_with_progress", no_actors)
    rc, out, err = run_cli(capsys, "stress", "madv_dontneed", "--trials", "3", "--out", str(tmp_path))
    assert rc == 3 and err.count("\n") == 1, err
    assert f"recorded in {tmp_path / 'results.msgpack'}; run the same command with --resume" in err, err


def test_rays_own_messages_while_it_fails_to_start_stay_off_the_terminal(tmp_path):
    """Under `ulimit -f 12` the GCS could not start: three lines of Ray's C++ retries ("rpc_client.h:153: Failed to
    connect to GCS ...") reached the terminal before tlbrace's line. They go to a log the line names."""
    base = tmp_path / "base"
    script = ("import os, sys, ray\n"
              "from actors import ray_session as rs\n"
              f"rs.TEMP_BASE = {str(base)!r}\n"
              "def failing(*_a, **_k):\n"
              "    os.write(2, b'rpc_client.h:153: Failed to connect to GCS\\n')\n"
              "    raise RuntimeError('Failed to start GCS')\n"
              "ray.init = failing\n"
              "try:\n"
              "    rs.start_local(quiet=True)\n"
              "except rs.RayStartFailed as exc:\n"
              "    print(f'tlbrace: error: {exc}', file=sys.stderr)\n")
    proc = _python(script)
    assert proc.stderr.count("\n") == 1 and "rpc_client" not in proc.stderr, proc.stderr
    assert f"(Ray's own messages: {base}/start-stderr.log)" in proc.stderr, proc.stderr
    assert "Failed to connect to GCS" in (base / "start-stderr.log").read_text()


def _deeply_nested_jsonl(log: Path, out: Path) -> Path:
    """``log`` as JSON Lines, with a record nested 200,000 deep after its header."""
    import json

    records = list(msgpack.Unpacker(open(log, "rb"), raw=False, strict_map_key=False))
    deep = '{"type": "event", "trial": 0, "x": ' + "[" * 200_000 + "]" * 200_000 + "}"
    path = out / "deep.jsonl"
    path.write_text("\n".join([json.dumps(records[0]), deep] + [json.dumps(r) for r in records[1:]]) + "\n")
    return path


def test_a_json_lines_log_nested_too_deeply_is_damage_not_an_internal_error(capsys, tmp_path, eager_log):
    """`tlbrace analyze` and `replay` of a JSON Lines log with a value nested 200,000 deep: "internal error:
    RecursionError: maximum recursion depth exceeded while decoding a JSON array" (exit 4)."""
    deep = _deeply_nested_jsonl(eager_log, tmp_path)
    rc, out, err = run_cli(capsys, "analyze", str(deep))
    assert rc == 0 and "garbage at byte" in err and "internal error" not in err, err
    rc, out, err = run_cli(capsys, "replay", str(deep))
    assert rc in (0, 2) and "internal error" not in err, err


def test_appending_to_a_log_nested_too_deeply_is_refused(tmp_path, eager_log):
    from kernel_model.config import Config
    from logs.controlled_log import write_controlled_log
    from logs.eventlog import LogError
    from scenarios.loader import load_scenario

    deep = tmp_path / "deep.jsonl"
    deep.write_text("{" + '"x": ' + "[" * 200_000 + "]" * 200_000 + "}\n")
    with pytest.raises(LogError, match="cannot append: not a tlbrace log"):
        write_controlled_log(deep, load_scenario("madv_dontneed"), Config(), [], run_id="r", fmt="jsonl")


def test_a_result_nested_too_deeply_is_a_malformed_field_not_an_internal_error(capsys, tmp_path, eager_log):
    """A step result nested 990 deep: analyze and replay were "internal error: RecursionError" (exit 4)."""
    value: Any = 0
    for _ in range(990):
        value = [value]
    damaged = _with_first_step(eager_log, tmp_path, "result", value)
    rc, out, err = run_cli(capsys, "replay", str(damaged))
    assert rc == 2 and "field 'result': nested more than 32 deep" in err and err.count("\n") == 1, err
    rc, out, err = run_cli(capsys, "analyze", "--json", str(damaged))
    import json

    assert rc == 1, err
    assert "field 'result': nested more than 32 deep" in json.loads(out)["logs"][0]["trials"][0]["divergence"]


@pytest.mark.parametrize("key", ["config", "params"])
def test_a_header_value_nested_too_deeply_is_named(capsys, tmp_path, eager_log, key):
    """A log header whose config or params value was nested 990 deep: "internal error: RecursionError: maximum
    recursion depth exceeded while getting the repr of an object" (exit 4), from the message meant to show it."""
    records = list(msgpack.Unpacker(open(eager_log, "rb"), raw=False, strict_map_key=False))
    value: Any = 0
    for _ in range(990):
        value = [value]
    name = "ordering" if key == "config" else "passes"
    records[0][key][name] = value
    damaged = tmp_path / "damaged.msgpack"
    damaged.write_bytes(b"".join(msgpack.packb(r) for r in records))
    for command in ("analyze", "replay"):
        rc, out, err = run_cli(capsys, command, str(damaged))
        assert rc == 2 and err.count("\n") == 1, err
        assert f"header key '{key}': '{name}' is nested more than 32 deep" in err, err


def test_replay_names_a_verdict_whose_invariant_is_no_string(capsys, tmp_path, eager_log):
    """A trial_end record whose invariant was [1]: "internal error: TypeError: unhashable type: 'list'"."""
    records = list(msgpack.Unpacker(open(eager_log, "rb"), raw=False, strict_map_key=False))
    records[-1]["violations"] = [{"invariant": [1], "detail": ""}]
    damaged = tmp_path / "damaged.msgpack"
    damaged.write_bytes(b"".join(msgpack.packb(r) for r in records))
    rc, out, err = run_cli(capsys, "replay", str(damaged))
    assert rc == 2 and "malformed trial_end record" in err and "naming its invariant as a string" in err, err


@pytest.mark.parametrize("where", ["header", "record"])
def test_a_results_file_value_nested_too_deeply_is_named(capsys, tmp_path, where):
    """`tlbrace report` of a results file with a config value or a record's invariants nested 990 deep:
    "internal error: RecursionError: maximum recursion depth exceeded while getting the repr of an object"."""
    from logs.results_file import frame, make_header, trial_record

    value: Any = 0
    for _ in range(990):
        value = [value]
    header = make_header(run="r", scenario="madv_dontneed", scenario_source="", params={},
                         config={"ordering": value} if where == "header" else {}, seed=0, trials=3, jitter_us=0.0)
    record = trial_record(trial=0, seed=0, status="ok", invariants=[value] if where == "record" else [], detail="",
                          actor=None, steps=1, seconds=0.1, nodes=[], log=None)
    (tmp_path / "results.msgpack").write_bytes(frame(header) + frame(record))
    rc, out, err = run_cli(capsys, "report", str(tmp_path), "-o", str(tmp_path / "r.html"))
    assert rc == 2 and err.count("\n") == 1, err
    assert ("header key 'config': 'ordering' is nested more than 32 deep" if where == "header"
            else "record at byte 181: 'invariants' is nested more than 32 deep") in err, err


def test_a_schedule_config_value_nested_too_deeply_is_named(capsys, tmp_path, eager_log):
    """replay and shrink of a schedule file whose config's ordering was nested 990 deep: "internal error:
    RecursionError ... while getting the repr of an object"."""
    doc = msgpack.unpackb(eager_log.with_suffix(".schedule").read_bytes(), raw=False, strict_map_key=False)
    value: Any = 0
    for _ in range(990):
        value = [value]
    doc["config"]["ordering"] = value
    damaged = tmp_path / "damaged.schedule"
    damaged.write_bytes(msgpack.packb(doc))
    for argv in (["replay", str(damaged)], ["shrink", str(damaged), "-o", str(tmp_path / "s.schedule")]):
        rc, out, err = run_cli(capsys, *argv)
        # named at the schedule's key since session 22 (logs' nesting check runs before the config is read)
        assert rc == 2 and f"{damaged}: 'config' is nested more than 32 deep" in err, err
