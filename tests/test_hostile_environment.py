"""A hostile environment rather than hostile input: standard streams closed, resource limits (`ulimit -f`,
`ulimit -n`, `ulimit -v`), the C locale without UTF-8 mode, another program's msgpack where a results file
should be. Each gets one line and the documented exit status. Each test failed before its fix (session 18's red
team). None needs Ray."""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys

import msgpack
import pytest
from child_process import ROOT, driver_env
from cli_run import run_cli


def _tlbrace(*argv: str, shell_redirect: str = "", env: dict[str, str] | None = None, limit: tuple[int, int] | None =
             None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``tlbrace ARGV`` as a child process (``python -m cli.main``), its standard streams redirected by the shell
    words ``shell_redirect`` (e.g. ">&-") and, if given, one resource limit (resource, bytes) set in the child."""
    def set_limit() -> None:
        if limit is not None:
            resource.setrlimit(limit[0], (limit[1], limit[1]))

    command = [sys.executable, "-m", "cli.main", *argv]
    if shell_redirect:
        command = ["bash", "-c", f'exec "$@" {shell_redirect}', "bash", *command]
    return subprocess.run(command, cwd=ROOT, env=env or driver_env(), capture_output=True, text=True,
                          timeout=timeout, preexec_fn=set_limit if limit is not None else None)


def test_a_closed_stdout_is_output_thrown_away_not_a_traceback_with_exit_1():
    """`tlbrace scenarios >&-` (stdout closed, as a daemon's job or `cmd >&-` leaves it) ended in a traceback
    with exit 1, the status of a violation: Python's sys.stdout was None."""
    for argv in (("scenarios",), ("mutants", "--json")):
        proc = _tlbrace(*argv, shell_redirect=">&-")
        assert proc.returncode == 0 and proc.stderr == "", (argv, proc.returncode, proc.stderr[-500:])


def test_a_closed_stderr_leaves_the_error_off_stdout_and_the_status_2():
    """With stderr closed, the error line went to stdout (print to a None file writes there)."""
    proc = _tlbrace("explore", "no-such-scenario", shell_redirect="2>&-")
    assert proc.returncode == 2 and proc.stdout == "", (proc.returncode, proc.stdout)


def test_a_file_size_limit_names_the_file_and_the_limit(tmp_path):
    """Under `ulimit -f` the counterexample's log could not be written whole: "tlbrace: error: File too large:
    check the path and the device, or choose another output path", naming no file and no limit."""
    proc = _tlbrace("explore", "madv_dontneed", "--ordering", "eager", "--json", "--out", str(tmp_path),
                    limit=(resource.RLIMIT_FSIZE, 2000))
    assert proc.returncode == 3, proc.stderr[-500:]
    err = proc.stderr
    # The schedule or the log, whichever passes the limit first (a counterexample runs to quiescence: session 20).
    named = [f"madv_dontneed-eager-smp-bfs-0.{ext}" for ext in ("schedule", "msgpack")]
    assert err.count("\n") == 1 and any(str(tmp_path / name) in err for name in named), err
    assert "ulimit -f" in err and "output path" not in err, err
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # no temporary left behind


def test_too_many_open_files_says_which_limit_to_raise():
    """EMFILE (`ulimit -n 6`, the --workers pipes) was told to "choose another output path"."""
    from cli.errors import os_error_text

    text = os_error_text(OSError(errno.EMFILE, os.strerror(errno.EMFILE)))
    assert "ulimit -n" in text and "output path" not in text, text


def test_the_c_locale_without_utf8_mode_prints_escapes_not_an_internal_error():
    """LC_ALL=C with PYTHONUTF8=0: stdout is ASCII with errors="surrogateescape", which the check for "strict"
    missed; `tlbrace scenarios` was an internal error (exit 4) at the first '§'."""
    env = dict(driver_env(), LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    env.pop("PYTHONIOENCODING", None)
    proc = _tlbrace("scenarios", env=env)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert "\\xa7" in proc.stdout  # brief §6, escaped


def test_another_programs_msgpack_is_not_called_an_older_tlbrace_file(capsys, tmp_path):
    """A results.msgpack holding some other program's msgpack map was "a version 1 results file (written by an
    older tlbrace)"."""
    (tmp_path / "results.msgpack").write_bytes(msgpack.packb({"name": "other", "data": [1, 2, 3]}))
    rc, out, err = run_cli(capsys, "report", str(tmp_path))
    assert rc == 2 and not out and err.count("\n") == 1, err
    assert "not a tlbrace results file" in err and "version 1" not in err and "another program" in err, err


def test_an_address_space_limit_prices_the_search(tmp_path):
    """Under `ulimit -v` (RLIMIT_AS) the budget was priced against the machine's free memory: a default budget
    was lowered to what that fits (1.6 million states under a 1.2 GB limit) and the search died of MemoryError or
    a segmentation fault minutes later; a given budget was searched. Now a budget past the limit is refused at
    once, naming it."""
    proc = _tlbrace("explore", "scale_writers", "--param", "writers=6", "--budget", "400000", "--out",
                    str(tmp_path), limit=(resource.RLIMIT_AS, 1 << 30), timeout=30)
    assert proc.returncode == 2, proc.stderr[-500:]
    assert "ulimit -v" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_an_unusable_home_adds_no_matplotlib_warnings(tmp_path):
    """With $HOME gone (a service account, HOME=/nonexistent) matplotlib made a temporary config directory and
    said so in two long warning lines on stderr, under every picture-drawing command (report, analyze
    --timeline, history --png, scale)."""
    from cli.main import main

    assert main(["explore", "madv_dontneed", "--ordering", "eager", "--json", "--out", str(tmp_path)]) == 1
    (tmp_path / "a-file").write_text("")
    env = dict(driver_env(), HOME=str(tmp_path / "a-file" / "home"))  # nothing can be made there
    for key in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        env.pop(key, None)
    proc = _tlbrace("analyze", str(tmp_path / "madv_dontneed-eager-smp-bfs-0.msgpack"), "--timeline",
                    str(tmp_path / "t.png"), env=env)
    assert proc.returncode == 1 and (tmp_path / "t.png").stat().st_size > 0, proc.stderr[-500:]
    assert proc.stderr == "", proc.stderr


def test_fuzz_names_a_junk_ray_address_variable_before_ray(capsys, tmp_path, monkeypatch):
    """stress, run and scale refuse RAY_ADDRESS=junk naming the variable; fuzz --parallel handed it to Ray, which
    said "cannot join the Ray cluster at junk: ValueError: Invalid address format" after starting its client."""
    import cli.cmd_stress

    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    monkeypatch.setattr(cli.cmd_stress, "open_ray", lambda *_a, **_k: pytest.fail("Ray was asked"))
    rc, out, err = run_cli(capsys, "fuzz", "--count", "1", "--parallel", "1", "--out", str(tmp_path))
    assert rc == 2 and err.startswith("tlbrace: error: RAY_ADDRESS 'http://127.0.0.1:8265': expected HOST:PORT"), err


@pytest.mark.parametrize("columns", ["0", "-3", "5"])
def test_a_columns_variable_of_no_width_still_shows_the_tables(capsys, monkeypatch, columns):
    """rich takes COLUMNS for the terminal's width: COLUMNS=0 (some CI runners export it) printed nothing at all
    for `scenarios`, `replay` or `analyze` (exit 0 or 1, every table gone); COLUMNS=5 drew them a character wide."""
    monkeypatch.setenv("COLUMNS", columns)
    rc, out, err = run_cli(capsys, "scenarios")
    assert rc == 0 and not err, err
    assert "madv_dontneed" in out and max(len(line) for line in out.splitlines()) >= 40, out[:300]


def test_a_results_record_keeps_a_log_path_that_is_not_utf8(tmp_path):
    """Under --out café in latin-1 the first failing trial's record (its log path) could not be packed: internal
    error (exit 4), the campaign lost; the path now keeps its bytes, and reads back as it was written."""
    from logs.results_file import FILE_NAME, ResultsWriter, make_header, read_results, trial_record

    out = os.path.join(os.fsencode(tmp_path), b"caf\xe9")
    os.mkdir(out)
    path = os.fsdecode(os.path.join(out, FILE_NAME.encode()))
    log = os.fsdecode(os.path.join(out, b"madv_dontneed-r-trial00000.msgpack"))
    writer = ResultsWriter(path, make_header(run="r", scenario="madv_dontneed", scenario_source="", params={},
                                             config={}, seed=0, trials=2, jitter_us=0.0))
    writer.append(trial_record(trial=0, seed=0, status="violation", invariants=["lost_dirty_data"], detail="",
                               actor=None, steps=5, seconds=0.1, nodes=[], log=log))
    writer.close()
    assert read_results(path).records[0]["log"] == log


def test_ray_is_given_a_command_line_it_can_encode(monkeypatch):
    """Ray names the driver's job by /proc/self/cmdline and hands it to its C++ core as UTF-8: `stress --out café`
    (latin-1) failed in ray.init, "the embedded Ray cluster would not start (UnicodeEncodeError ...); check free
    memory" (exit 3)."""
    import ray._private.utils as ray_utils

    from actors.ray_session import utf8_entrypoint

    monkeypatch.setattr(ray_utils, "get_entrypoint_name", lambda: "tlbrace stress --out /tmp/caf\udce9")
    utf8_entrypoint()
    utf8_entrypoint()  # once wrapped, left as it is
    assert ray_utils.get_entrypoint_name() == "tlbrace stress --out /tmp/caf\\udce9"


def _with_reader_gone(stream: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """``tlbrace ARGV`` whose stdout or stderr (``stream``) is a pipe with no reader left (`| head -1` once head
    has exited, `2>&1 | true`)."""
    read, write = os.pipe()
    os.close(read)
    try:
        other = "stderr" if stream == "stdout" else "stdout"
        return subprocess.run([sys.executable, "-m", "cli.main", *argv], cwd=ROOT, env=driver_env(), text=True,
                              timeout=60, **{stream: write, other: subprocess.PIPE})
    finally:
        os.close(write)


def test_a_reader_that_leaves_does_not_change_the_exit_status(tmp_path):
    """With stdout's reader gone, `scenarios` exited 1 (rich's on_broken_pipe: the status of a violation) and
    `explore ... --format diagram` of a violating scenario exited 0 (print's BrokenPipeError, taken as "not an
    error of ours"); with stderr's, `explore no-such-scenario` exited 1, not 2. Each now exits with its own
    status, its output going nowhere."""
    assert _with_reader_gone("stdout", "scenarios").returncode == 0
    explore = ("explore", "madv_dontneed", "--ordering", "eager", "--out", str(tmp_path))
    assert _with_reader_gone("stdout", *explore, "--format", "diagram").returncode == 1
    assert _with_reader_gone("stdout", *explore).returncode == 1
    assert _with_reader_gone("stderr", "explore", "no-such-scenario").returncode == 2


def test_a_full_standard_output_is_named():
    """`tlbrace scenarios > /dev/full` said "tlbrace: error: No space left on device: free some space and run it
    again", naming nothing: the user looked for a full disk under --out."""
    with open("/dev/full", "w") as full:  # Linux: every write fails with ENOSPC
        proc = subprocess.run([sys.executable, "-m", "cli.main", "scenarios"], cwd=ROOT, env=driver_env(),
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith("tlbrace: error: standard output: No space left on device"), proc.stderr


def test_running_out_of_memory_under_ulimit_v_names_the_limit(capsys, monkeypatch):
    """A MemoryError under `ulimit -v` (analyze --timeline under 700 MB: matplotlib) said "out of memory: ask for
    less, or free memory", sending the user to look for other programs rather than at the limit."""
    import scenarios.loader

    def no_memory(*_args: object, **_kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(scenarios.loader, "load_scenario", no_memory)
    monkeypatch.setattr(resource, "getrlimit", lambda which: (700 << 20, resource.RLIM_INFINITY))
    rc, out, err = run_cli(capsys, "explore", "madv_dontneed")
    assert rc == 3 and not out and "address-space limit of 700 MB (`ulimit -v`)" in err and err.count("\n") == 1, err
