"""What a hostile user feeds tlbrace (odd numbers, damaged or moved files, options that do not apply) gets one
clear line and exit status 2, never a traceback, and loses nothing already written. Found by red-teaming every
command's inputs (issue 17); each test failed before its fix. None needs Ray."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from cli_run import run_cli


@pytest.fixture(scope="module")
def counterexample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(schedule file, event log) of madv_dontneed's eager counterexample, as `tlbrace explore` writes them."""
    from cli.main import main

    out = tmp_path_factory.mktemp("explore")
    assert main(["explore", "madv_dontneed", "--ordering", "eager", "--json", "--out", str(out)]) == 1
    return out / "madv_dontneed-eager-smp-bfs-0.schedule", out / "madv_dontneed-eager-smp-bfs-0.msgpack"


@pytest.mark.parametrize("width", ["10001", str(1 << 63), "99999999999999999999999"])
@pytest.mark.parametrize("command", ["explore", "replay", "analyze"])
def test_a_huge_width_is_refused_not_run_out_of_memory(capsys, counterexample, command, width):
    """--width 2**63 ran out of memory (exit 3), --width 10**23 overflowed a C size (exit 4)."""
    schedule, log = counterexample
    target = {"explore": ["madv_dontneed", "--ordering", "eager", "--out", str(schedule.parent)],
              "replay": [str(schedule)], "analyze": [str(log)]}[command]
    rc, _, err = run_cli(capsys, command, *target, "--format", "diagram", "--width", width)
    assert rc == 2 and "--width" in err and "40..10000" in err and "Traceback" not in err


def test_replay_of_a_trial_the_log_lacks_is_an_error(capsys, counterexample):
    """It said "nothing to replay (no failing trial in the log; use --trial ID)" and exit 0."""
    _, log = counterexample
    rc, out, err = run_cli(capsys, "replay", str(log), "--trial", "7")
    assert rc == 2 and "--trial 7" in err and str(log) in err and "its trials: 0" in err, (out, err)
    rc, _, _ = run_cli(capsys, "replay", str(log), "--trial", "0")
    assert rc == 1  # the trial it holds still replays


def test_replay_of_a_schedule_with_trial_is_an_error(capsys, counterexample):
    """A schedule file is one run: --trial was silently ignored and the whole schedule replayed."""
    schedule, _ = counterexample
    rc, out, err = run_cli(capsys, "replay", str(schedule), "--trial", "5")
    assert rc == 2 and "--trial 5" in err and "schedule file" in err and not out


def _campaign(campaign: Path, log: Path, recorded_in: str) -> Path:
    """A stress --out directory of one violating trial whose log sits in it, recorded as ``recorded_in``/name."""
    from kernel_model.config import Config
    from logs.results_file import ResultsWriter, make_header, trial_record
    from scenarios.loader import load_scenario

    campaign.mkdir(parents=True)
    shutil.copy(log, campaign / "madv_dontneed-r-trial00000.msgpack")
    sc = load_scenario("madv_dontneed")
    header = make_header(run="r", scenario=sc.name, scenario_source=sc.source, params=sc.params,
                         config=Config(ordering="eager").to_dict(), seed=0, trials=1, jitter_us=0.0)
    writer = ResultsWriter(str(campaign / "results.msgpack"), header)
    writer.append(trial_record(trial=0, seed=1, status="violation", invariants=["lost_dirty_data"], detail="",
                               actor=None, steps=9, seconds=0.1, nodes=[],
                               log=os.path.join(recorded_in, "madv_dontneed-r-trial00000.msgpack")))
    writer.close()
    return campaign


def test_the_report_of_a_moved_campaign_finds_its_logs_beside_the_results(capsys, tmp_path, counterexample):
    """stress records each failing log's path as --out named it (relative to that day's cwd): after a move, or
    from another cwd, the page said "cannot read the log" and lost the first failing trial's witness."""
    _, log = counterexample
    campaign = _campaign(tmp_path / "moved", log, recorded_in="old-place")
    rc, out, err = run_cli(capsys, "report", str(campaign), "--json")
    assert rc == 0, err
    assert '"first_failure": "' + str(campaign / "madv_dontneed-r-trial00000.msgpack") in out
    assert "cannot read the log" not in (campaign / "report.html").read_text()


@pytest.mark.parametrize("make", ["fifo", "directory"])
@pytest.mark.parametrize("command", ["shrink", "report", "perfetto", "timeline", "png"])
def test_an_output_file_that_is_a_fifo_or_a_directory_is_refused_before_any_work(capsys, tmp_path, counterexample,
                                                                                   command, make):
    """shrink wrote its schedule aside and renamed it over -o: `shrink X -o /dev/null` run as root replaced the
    null device with a regular file, and -o FIFO replaced the FIFO. report -o DIR failed after the work (exit 3,
    "Is a directory")."""
    schedule, log = counterexample
    target = tmp_path / "target.png"
    if make == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    argv = {"shrink": ["shrink", str(schedule), "-o", str(target)],
            "report": ["report", str(tmp_path), "-o", str(target)],
            "perfetto": ["analyze", str(log), "--perfetto", str(target)],
            "timeline": ["analyze", str(log), "--timeline", str(target)],
            "png": ["history", "madv_dontneed", "--kernels", "6.1", "--png", str(target)]}[command]
    # A reader held open, so that a regression that writes the FIFO fails this test instead of hanging it.
    reader = os.open(target, os.O_RDONLY | os.O_NONBLOCK) if make == "fifo" else None
    try:
        rc, out, err = run_cli(capsys, *argv)
    finally:
        if reader is not None:
            os.close(reader)
    kind = "a FIFO" if make == "fifo" else "a directory"
    assert rc == 2 and str(target) in err and f"is {kind}" in err and "Traceback" not in err, err
    assert (target.is_fifo() if make == "fifo" else target.is_dir())  # still what it was
    assert not out


@pytest.mark.parametrize("argv", [["analyze", "LOG", "--perfetto", ""], ["analyze", "LOG", "--timeline", ""],
                                  ["report", "DIR", "-o", ""], ["history", "madv_dontneed", "--png", ""]])
def test_an_empty_output_path_is_refused_not_ignored(capsys, tmp_path, counterexample, argv):
    """`--perfetto ''` wrote nothing and said nothing; `report -o ''` wrote DIR/report.html."""
    _, log = counterexample
    argv = [str(log) if a == "LOG" else str(tmp_path) if a == "DIR" else a for a in argv]
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2 and "'': expected a file path" in err
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize("command", ["explore", "history"])
def test_an_out_dir_under_a_file_is_refused_before_the_search(capsys, tmp_path, command):
    """explore --out FILE/sub searched to the end, then failed to write what it found (exit 3)."""
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    argv = {"explore": ["explore", "madv_dontneed", "--ordering", "eager"],
            "history": ["history", "madv_dontneed", "--kernels", "6.1"]}[command]
    rc, out, err = run_cli(capsys, *argv, "--out", str(a_file / "sub"))
    assert rc == 2 and f"{a_file} is a file" in err and "Traceback" not in err
    assert "lost_dirty_data" not in out  # refused before the search ran


def test_a_scenario_file_with_a_byte_order_mark_loads(capsys, tmp_path):
    """Notepad's UTF-8 starts with a BOM: it was refused as "invalid TOML: Invalid statement (at line 1, column
    1)", a message that points at nothing the user can see."""
    from scenarios.loader import LIBRARY_DIR

    with_bom = tmp_path / "bom.toml"
    with_bom.write_bytes(b"\xef\xbb\xbf" + (LIBRARY_DIR / "madv_dontneed.toml").read_bytes())
    rc, _, err = run_cli(capsys, "explore", str(with_bom), "--ordering", "eager", "--json", "--out",
                         str(tmp_path / "out"))
    assert rc == 1, err


def test_a_second_scale_run_in_the_same_out_is_refused(capsys, tmp_path, monkeypatch):
    """Two scale runs in one --out both wrote results.csv and the plots: the later run's rows replaced the
    earlier one's (its JSON still named the file). scale now holds the directory's lock, as stress does."""
    import cli.cmd_scale
    from actors.dir_lock import lock_directory

    def no_ray(*_args: object) -> None:
        raise AssertionError("Ray was started although another run holds --out")

    monkeypatch.setattr(cli.cmd_scale, "open_ray", no_ray)
    held = lock_directory(str(tmp_path))  # the other run
    try:
        rc, _, err = run_cli(capsys, "scale", "scale_writers", "--cpus", "3", "--trials", "1", "--ordering",
                             "eager", "--out", str(tmp_path))
    finally:
        held.release()
    assert rc == 2 and f"pid {os.getpid()}" in err and "another tlbrace campaign" in err, err
    assert not (tmp_path / "results.csv").exists()


def test_one_unreadable_log_does_not_hide_the_others(capsys, tmp_path, counterexample):
    """`analyze OUT/*.msgpack` with one empty log (a driver killed just after creating it) printed only the error
    and nothing of the other logs. Now each unreadable log is named, the others are analysed, and the exit
    status still says bad input was given."""
    import json

    _, log = counterexample
    empty = tmp_path / "empty.msgpack"
    empty.write_bytes(b"")
    rc, out, err = run_cli(capsys, "analyze", str(empty), str(log), "--json", "--jobs", "1")
    assert rc == 2 and str(empty) in err and "analysing the other logs" in err and "Traceback" not in err
    analysed = json.loads(out)["logs"]
    assert [a["path"] for a in analysed] == [str(log)]
    assert analysed[0]["trials"][0]["verdict"] == "violation"
    rc, out, err = run_cli(capsys, "analyze", str(empty), "--jobs", "1")
    assert rc == 2 and not out  # nothing readable: the error alone


@pytest.mark.parametrize("where", ["--gather", "[config]"])
def test_a_gather_size_past_any_kernel_is_refused_not_an_internal_error(capsys, tmp_path, where):
    """--gather max_gather_batch=10**20 (or the same in a scenario's [config]) was accepted, searched, and then
    failed to be written as a msgpack integer: internal error (exit 4)."""
    from scenarios.loader import LIBRARY_DIR

    argv = ["explore", "madv_dontneed", "--ordering", "eager", "--out", str(tmp_path / "out")]
    if where == "--gather":
        argv += ["--gather", "max_gather_batch=100000000000000000000"]
    else:
        scenario = tmp_path / "big.toml"
        text = (LIBRARY_DIR / "madv_dontneed.toml").read_text()
        scenario.write_text(text + "\n[config]\nmax_gather_batch = 100000000000000000000\n"
                            if "[config]" not in text else
                            text.replace("[config]", "[config]\nmax_gather_batch = 100000000000000000000", 1))
        argv[1] = str(scenario)
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2 and "max_gather_batch: expected an integer <= 1048576" in err and "Traceback" not in err, err


@pytest.mark.parametrize("how", ["toml", "--param"])
def test_an_unused_param_too_large_for_a_file_is_refused(capsys, tmp_path, how):
    """A [params] value that no field uses was bounded by nothing: 10**20 searched, then failed to be written
    into the schedule's header as a msgpack integer (internal error, exit 4)."""
    from scenarios.loader import LIBRARY_DIR

    text = (LIBRARY_DIR / "madv_dontneed.toml").read_text()
    assert "\n[params]\n" in text
    value = "100000000000000000000" if how == "toml" else "1"
    scenario = tmp_path / "unused.toml"
    scenario.write_text(text.replace("\n[params]\n", f"\n[params]\nunused = {value}\n", 1))
    extra = ["--param", "unused=100000000000000000000"] if how == "--param" else []
    rc, _, err = run_cli(capsys, "explore", str(scenario), "--ordering", "eager", "--out", str(tmp_path / "out"),
                         *extra)
    assert rc == 2 and "params.unused: expected an integer <= 9223372036854775807" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("size, needle", [("inf", "expected a finite size"), ("1e400G", "expected a finite size"),
                                          ("nanG", "expected a positive size"),
                                          ("", "expected a size such as 512M")])
def test_a_memory_limit_that_is_no_size_is_refused(capsys, tmp_path, size, needle):
    """--memory-limit inf / 1e400G / nanG were internal errors (int() of inf or nan); '' was ignored."""
    rc, _, err = run_cli(capsys, "explore", "madv_dontneed", "--memory-limit", size, "--out", str(tmp_path))
    assert rc == 2 and f"--memory-limit {size!r}: {needle}" in err and "Traceback" not in err, err


def test_one_damaged_campaign_does_not_hide_the_others_from_the_report(capsys, tmp_path, counterexample):
    """`report ROOT` with one damaged results.msgpack among several campaigns wrote no page at all (exit 2). Now
    the page holds the readable campaigns and names the damaged file; the exit status still says bad input."""
    import json

    _, log = counterexample
    _campaign(tmp_path / "good", log, recorded_in=str(tmp_path / "good"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.msgpack").write_bytes(b"garbage")
    rc, out, err = run_cli(capsys, "report", str(tmp_path), "--json")
    assert rc == 2 and str(tmp_path / "bad" / "results.msgpack") in err and "Traceback" not in err
    made = json.loads(out)
    assert [c["dir"] for c in made["campaigns"]] == [str(tmp_path / "good")] and made["first_failure"]
    assert "unreadable, left out" in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize("trial", ["-1", "100000000000000000000"])
def test_run_refuses_a_trial_id_no_log_can_hold_before_ray_starts(capsys, monkeypatch, trial):
    """run --trial 10**20 started Ray and ran the trial; a failing one could not be written to its log (a msgpack
    integer): internal error. It is refused at the door now, as --trial -1 was."""
    import cli.cmd_run

    def no_ray(*_args: object) -> None:
        raise AssertionError("Ray was started for a trial id that is refused")

    monkeypatch.setattr(cli.cmd_run, "open_ray", no_ray)
    rc, _, err = run_cli(capsys, "run", "anon_pages", "--trial", trial)
    assert rc == 2 and "--trial" in err and "Traceback" not in err, err


@pytest.mark.parametrize("command", ["analyze", "replay"])
@pytest.mark.parametrize("key, value, needle", [
    ("config", {"ordering": "sideways"}, "the log header's config is not usable"),
    ("scenario_source", "name = 'x'\n[[threads]]\nname = 'w'\nprogram = [{ op = 'fly' }]\n",
     "cannot rebuild scenario"),
])
def test_a_log_whose_header_cannot_be_used_is_named(capsys, tmp_path, counterexample, command, key, value, needle):
    """A log from another version (a config value or an op this one lacks): the error did not name the log, so
    `analyze a.msgpack b.msgpack ...` said 'the log header's config is not usable' without saying which."""
    import msgpack

    _, log = counterexample
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(log.read_bytes())
    header, *rest = list(unpacker)
    damaged = tmp_path / "other-version.msgpack"
    damaged.write_bytes(b"".join(msgpack.packb(r, use_bin_type=True) for r in [{**header, key: value}, *rest]))
    rc, _, err = run_cli(capsys, command, str(damaged))
    assert rc == 2 and f"{damaged}: {needle}" in err and "Traceback" not in err, err


def test_a_report_that_cannot_be_written_leaves_the_old_one_whole(capsys, tmp_path, counterexample, monkeypatch):
    """On a full disk (seen on a 32 KiB tmpfs) `report -o`, `--perfetto`, `--timeline` and history's PNG truncated
    the file first and left it empty: the previous report was lost. Each is now renamed into place whole."""
    import errno
    import io

    _, log = counterexample
    _campaign(tmp_path / "c", log, recorded_in=str(tmp_path / "c"))
    page = tmp_path / "report.html"
    page.write_text("the old report")

    class FullDisk(io.StringIO):
        def write(self, _text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    import builtins
    real_open = builtins.open

    def full_open(file, mode="r", *args, **kwargs):
        if "w" in mode and str(file).startswith(str(tmp_path)):
            real_open(file, mode, *args, **kwargs).close()  # the open itself truncates, as on a full disk
            return FullDisk()
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full_open)
    rc, _, err = run_cli(capsys, "report", str(tmp_path), "-o", str(page))
    monkeypatch.undo()
    assert rc == 3 and "No space left on device" in err, err
    assert page.read_text() == "the old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "report.html"]  # no temporary copy left


def test_a_ctrl_c_while_the_command_line_is_parsed_is_one_line(capsys, monkeypatch):
    """Building the parser imports every subcommand (about half a second): a Ctrl-C then printed a KeyboardInterrupt
    traceback of 16 to 56 lines instead of "tlbrace: interrupted" (exit 130)."""
    import cli.main

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.main, "build_parser", interrupted)
    rc, out, err = run_cli(capsys, "explore", "madv_dontneed")
    assert rc == 130 and err == "tlbrace: interrupted\n" and not out


def test_a_resume_with_nothing_to_resume_says_so(capsys, tmp_path, monkeypatch):
    """`stress --resume --out typo` silently started a new campaign: the user believed the old one continued."""
    import cli.cmd_stress

    def no_ray(*_a, **_k):
        raise KeyboardInterrupt  # stop where Ray would start: what was said before is what the test reads

    monkeypatch.setattr(cli.cmd_stress, "open_ray", no_ray)
    rc, _, err = run_cli(capsys, "stress", "madv_dontneed", "--resume", "--trials", "2", "--out", str(tmp_path / "typo"))
    assert rc == 130 and f"--resume: there is no {tmp_path / 'typo' / 'results.msgpack'} to continue" in err, err


def test_stress_names_an_out_with_a_newline_in_one_line(capsys, tmp_path, monkeypatch):
    """Its notes and warnings printed --out as it was: a newline in it split "--resume: there is no ... to continue"
    over two lines, the second not starting with "tlbrace:"."""
    import cli.cmd_stress

    def no_ray(*_a, **_k):
        raise KeyboardInterrupt  # stop where Ray would start

    monkeypatch.setattr(cli.cmd_stress, "open_ray", no_ray)
    out = tmp_path / "new\nline"
    rc, _, err = run_cli(capsys, "stress", "madv_dontneed", "--resume", "--trials", "2", "--out", str(out))
    assert rc == 130 and "new\\nline" in err, err
    assert all(line.startswith("tlbrace: ") for line in err.splitlines()), err


def test_a_log_path_with_brackets_is_printed_not_read_as_markup(capsys, tmp_path, counterexample):
    """analyze printed each log's path through rich markup: a directory "d[" made "d[/]x.msgpack", a closing tag
    with nothing to close, an internal error (exit 4)."""
    _, log = counterexample
    (tmp_path / "d[").mkdir()
    odd = tmp_path / "d[" / "]x.msgpack"
    shutil.copy(log, odd)
    rc, out, err = run_cli(capsys, "analyze", str(odd), "--width", "400")
    assert rc == 1 and f"{odd}: scenario madv_dontneed" in out, err


def test_analyze_names_odd_paths_in_its_notes_warnings_and_errors_as_one_line(capsys, tmp_path, counterexample):
    """The same for the lines analyze writes about a path besides its table: a results file under "d[" (its note:
    internal error, exit 4), a torn log there (its warning), and a log whose name holds a newline (its error, split
    over two lines)."""
    _, log = counterexample
    odd = tmp_path / "d["
    odd.mkdir()
    results = odd / "]results.msgpack"
    results.write_bytes(b"\xc1tlr")  # recognised by its magic as a results file, so skipped with a note
    torn = odd / "]torn.msgpack"
    torn.write_bytes(Path(log).read_bytes()[:-7])
    rc, _out, err = run_cli(capsys, "analyze", str(results), str(torn), "--width", "400")
    flat = err.replace("\n", "")  # rich wraps the lines at the terminal's width
    assert rc in (0, 1) and f"note: {results} is a stress campaign's results file" in flat, err
    assert f"warning: {torn}:" in flat, err
    broken = tmp_path / "new\nline.msgpack"
    broken.write_bytes(b"not a log")
    rc, _out, err = run_cli(capsys, "analyze", str(broken))
    assert rc == 2 and err.count("\n") == 1 and "new\\nline.msgpack" in err, err


def test_a_description_with_markup_and_an_escape_is_shown_as_written(capsys, tmp_path):
    """A scenario's description was the story's caption as rich markup ("[/]": internal error, "[link=...]": a
    hyperlink) with its control characters sent raw to the terminal (an ESC sequence can retitle or clear it)."""
    from pathlib import Path

    library = Path(__file__).resolve().parent.parent / "scenarios" / "library" / "madv_dontneed.toml"
    text = library.read_text().replace('name = "madv_dontneed"', 'name = "odd"')
    lines = [ln if not ln.startswith("description =") else 'description = "[bold]b[/] [/] \\u001b]0;x\\u0007"'
             for ln in text.splitlines()]
    path = tmp_path / "odd.toml"
    path.write_text("\n".join(lines) + "\n")
    rc, out, err = run_cli(capsys, "explore", str(path), "--ordering", "eager", "--out", str(tmp_path), "--width", "200")
    assert rc == 1, err
    assert "[bold]b[/] [/] \\x1b]0;x\\x07" in out and "\x1b" not in out


def test_an_ascii_only_stdout_gets_escapes_not_an_internal_error(monkeypatch, counterexample):
    """With PYTHONIOENCODING=ascii (or latin-1) the first '—' or '▶' of a table or story was a UnicodeEncodeError:
    exit 4 after the work, the output cut short."""
    import io
    import sys

    from cli.main import main

    _, log = counterexample
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(io.BytesIO(), encoding="ascii"))
    assert main(["analyze", str(log), "--width", "120"]) == 1
    out.flush()
    assert b"\\u2014" in out.buffer.getvalue()  # "lost_dirty_data — ..." with its dash escaped


def test_an_integer_too_long_for_python_is_invalid_toml_not_an_internal_error(capsys, tmp_path):
    """An integer of 5,001 digits passes TOML's grammar but not Python's str-to-int limit: it was
    `internal error: ValueError: Exceeds the limit (4300 digits)` (exit 4)."""
    big = tmp_path / "big.toml"
    big.write_text('[setup]\npages = 1' + "0" * 5000 + '\n[[threads]]\nname = "w"\n'
                   'program = [{ op = "store", pages = [0] }]\n')
    rc, _, err = run_cli(capsys, "explore", str(big), "--out", str(tmp_path / "out"))
    assert rc == 2 and "big.toml: invalid TOML: an integer has more than" in err, err


def test_history_prints_a_description_as_written_not_as_markup(capsys, tmp_path):
    """A description holding rich markup (`[/]`) was `internal error: MarkupError` (exit 4) in history's table."""
    import re

    from scenarios.loader import LIBRARY_DIR

    text = (LIBRARY_DIR / "madv_dontneed.toml").read_text()
    text = re.sub(r'^name = .*$', 'name = "mk"', text, count=1, flags=re.M)
    text = re.sub(r'^description = .*$', 'description = "[bold red]X[/] [/]"', text, count=1, flags=re.M)
    (tmp_path / "mk.toml").write_text(text)
    rc, out, err = run_cli(capsys, "history", str(tmp_path / "mk.toml"), "--kernels", "6.1", "--budget", "100",
                           "--no-png", "--out", str(tmp_path / "out"))
    assert rc in (0, 1), err
    assert "[bold red]X[/] [/]" in out.replace("\\", "")
