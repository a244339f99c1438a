"""Session 21's red team: non-ASCII digits read as numbers, pipes as inputs, `shrink -o` over a file, a log with
bytes injected inside a record, an absurd --budget, and options that contradict each other. Each test failed
before its fix. None needs Ray."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterator

import msgpack
import pytest
from cli_run import run_cli

STEM = "madv_dontneed-eager-smp-bfs-0"


@pytest.fixture(scope="module")
def found(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding madv_dontneed's eager counterexample, its log and its schedule, as explore writes them."""
    from cli.main import main

    out = tmp_path_factory.mktemp("explore")
    assert main(["explore", "madv_dontneed", "--ordering", "eager", "--json", "--out", str(out)]) == 1
    return out


# --- numbers in digits that are not ASCII --------------------------------------------------------------------------

@pytest.mark.parametrize("argv, needle", [
    (["explore", "madv_dontneed", "--budget", "١٠٠"], "argument --budget: expected an integer in ASCII digits"),
    (["explore", "madv_dontneed", "--budget", "１００"], "argument --budget: expected an integer in ASCII digits"),
    (["explore", "madv_dontneed", "--strategy", "pct", "--depth", "٣"], "argument --depth: expected an integer in "
                                                                         "ASCII digits, got '٣'"),
    (["explore", "madv_dontneed", "--seed", "٧"], "argument --seed: expected an integer in ASCII digits"),
    (["explore", "madv_dontneed", "--param", "passes=١٠"], "--param 'passes=١٠': expected an integer value in "
                                                            "ASCII digits"),
    (["explore", "madv_dontneed", "--gather", "max_gather_batch=٣"], "'٣' is not an integer in ASCII digits"),
    (["explore", "madv_dontneed", "--kernel", "٤.١٣"], "--kernel: kernel '٤.١٣': expected a mainline release"),
    (["explore", "madv_dontneed", "--width", "٨٠"], "argument --width: expected an integer in ASCII digits"),
    (["explore", "madv_dontneed", "--memory-limit", "４G"], "--memory-limit '４G': expected a size"),
    (["history", "madv_dontneed", "--kernels", "٤.١٣", "--no-png"], "--kernels: '٤.١٣' is not a release"),
    (["history", "madv_dontneed", "--budget", "٥", "--no-png"], "argument --budget: expected an integer in ASCII"),
    (["fuzz", "--count", "٣"], "argument --count: expected an integer in ASCII digits"),
    (["fuzz", "--parallel", "٢"], "argument --parallel: expected an integer in ASCII digits"),
    (["scale", "scale_writers", "--cpus", "٣,4"], "argument --cpus: '٣,4': item 1, '٣', is not an integer in ASCII "
                                                  "digits"),
    (["scale", "scale_writers", "--trials", "٣"], "argument --trials: expected an integer in ASCII digits"),
    (["stress", "madv_dontneed", "--trials", "٣"], "argument --trials: expected an integer in ASCII digits"),
    (["stress", "madv_dontneed", "--jitter", "٣"], "argument --jitter: expected a number in ASCII digits"),
    (["stress", "madv_dontneed", "--duration", "٣٠s"], "--duration '٣٠s': expected a duration such as 30s"),
    (["stress", "madv_dontneed", "--address", "127.0.0.1:٦٣٧٩"], "expected HOST:PORT with a port in 1..65535"),
    (["analyze", "LOG", "--trial", "٠"], "argument --trial: expected an integer in ASCII digits"),
    (["analyze", "LOG", "--jobs", "٢"], "argument --jobs: expected an integer in ASCII digits"),
    (["replay", "LOG", "--trial", "٠"], "argument --trial: expected an integer in ASCII digits"),
])
def test_a_number_in_digits_that_are_not_ascii_is_refused(capsys, tmp_path, monkeypatch, found, argv, needle):
    """Python's int() and float() read '٣' (Arabic-Indic) and '３' (full-width) as 3: `--param passes=١٠` ran
    with 10 passes, `--budget １００` searched 100 states, `--kernel ٤.١٣` modelled 4.13, `--duration ٣٠s` ran
    30 s, `scale --cpus ٣` 3 CPUs. No other tool a kernel engineer uses reads them so."""
    import cli.cmd_scale
    import cli.cmd_stress

    monkeypatch.setattr(cli.cmd_scale, "open_ray", lambda *_a, **_k: pytest.fail("the grid was run"))
    monkeypatch.setattr(cli.cmd_stress, "open_ray", lambda *_a, **_k: pytest.fail("the campaign was run"))
    argv = [str(found / f"{STEM}.msgpack") if a == "LOG" else a for a in argv]
    out = [] if argv[0] in ("analyze", "replay") else ["--out", str(tmp_path / "o")]
    rc, stdout, err = run_cli(capsys, *argv, *out)
    assert rc == 2 and needle in err and err.count("tlbrace: error:") == 1, err
    assert not (tmp_path / "o").exists()


# --- pipes as inputs ------------------------------------------------------------------------------------------------

@pytest.fixture
def piped() -> Iterator:
    """``piped(data)``: the /dev/fd path of a pipe a thread fills with ``data`` and closes, as bash's `<(cat FILE)`
    gives a command."""
    fds: list[int] = []
    threads: list[threading.Thread] = []

    def make(data: bytes) -> str:
        r, w = os.pipe()
        fds.append(r)

        def feed() -> None:
            with os.fdopen(w, "wb") as f:
                try:
                    f.write(data)
                except BrokenPipeError:
                    pass
        threads.append(threading.Thread(target=feed, daemon=True))
        threads[-1].start()
        return f"/dev/fd/{r}"

    yield make
    for fd in fds:
        os.close(fd)
    for t in threads:
        t.join(5)


def _jsonl(log: Path) -> bytes:
    import json

    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(log.read_bytes())
    return b"".join(json.dumps(rec).encode() + b"\n" for rec in unpacker)


@pytest.mark.parametrize("command, file, needle", [
    ("analyze", "msgpack", "trial 0: VIOLATION lost_dirty_data"),
    ("analyze", "jsonl", "trial 0: VIOLATION lost_dirty_data"),  # read twice: by the streamed reader, then whole
    ("replay", "msgpack", "reproduced"),  # read twice: its first bytes say log or schedule, then whole
    ("replay", "schedule", "reproduced"),
    ("shrink", "schedule", "written to"),
    ("explore", "toml", "lost_dirty_data"),
])
def test_a_pipe_named_as_an_input_is_read(capsys, tmp_path, found, piped, command, file, needle):
    """`tlbrace analyze <(zcat run.msgpack.gz)`, `replay /dev/stdin`: "the log is a FIFO; expected a regular
    file", exit 2. A kernel engineer pipes a compressed or remote log through; each is read once."""
    from scenarios.loader import LIBRARY_DIR

    data = {"msgpack": (found / f"{STEM}.msgpack").read_bytes(), "jsonl": _jsonl(found / f"{STEM}.msgpack"),
            "schedule": (found / f"{STEM}.schedule").read_bytes(),
            "toml": (LIBRARY_DIR / "madv_dontneed.toml").read_bytes()}[file]
    path = piped(data)
    extra = {"shrink": ["-o", str(tmp_path / "s.schedule")],
             "explore": ["--ordering", "eager", "--out", str(tmp_path / "o")]}.get(command, [])
    rc, out, err = run_cli(capsys, command, path, *extra)
    assert rc == 1 and needle in out and "error" not in err, err  # 1: the violation found (or reproduced) again


def test_a_named_fifo_is_waited_for_as_cat_waits(capsys, tmp_path, found):
    """A named FIFO whose writer comes after the command started: its first read found no writer and the end of
    the file ("not a tlbrace log") unless the command waits as `cat` does; a wait of seconds is said on stderr."""
    import time

    from scenarios.input_files import WRITER_NOTE_S

    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)

    def late_writer() -> None:
        time.sleep(WRITER_NOTE_S + 0.5)
        with open(fifo, "wb") as f:
            f.write((found / f"{STEM}.msgpack").read_bytes())
    writer = threading.Thread(target=late_writer, daemon=True)
    writer.start()
    rc, out, err = run_cli(capsys, "analyze", str(fifo))
    writer.join(5)
    assert rc == 1 and "VIOLATION lost_dirty_data" in out, err
    assert err == f"tlbrace: waiting for a writer on {fifo} (a FIFO): Ctrl-C to stop\n"


def test_a_pipe_that_must_be_read_twice_is_refused_saying_so(capsys, tmp_path):
    """A campaign's results file is rewritten on --resume and read again by report: a FIFO in its place is not
    read (it would wait for a writer that never comes), and the message says why a pipe will not do."""
    os.mkfifo(tmp_path / "results.msgpack")
    rc, out, err = run_cli(capsys, "report", str(tmp_path), "-o", str(tmp_path / "r.html"))
    assert rc == 2 and "is a FIFO (a pipe), read only where" in err and "expected a regular file" in err, err


# --- shrink -o over a file -------------------------------------------------------------------------------------------

def test_shrink_over_a_file_that_is_no_schedule_is_refused_and_the_file_kept(capsys, tmp_path, found):
    """`shrink x.schedule -o notes.txt` replaced the notes with a schedule, without a word."""
    notes = tmp_path / "notes.txt"
    notes.write_text("what I found on Tuesday\n")
    rc, out, err = run_cli(capsys, "shrink", str(found / f"{STEM}.schedule"), "-o", str(notes))
    assert rc == 2 and f"-o {notes}: exists and holds 24 bytes that are not a schedule file" in err, err
    assert notes.read_text() == "what I found on Tuesday\n"


def test_shrink_says_which_schedule_it_replaced(capsys, tmp_path, found):
    """A schedule replaced, the input itself included (shrinking in place), is said so on stderr; an empty file
    (mktemp's) is written without a note: nothing was in it."""
    schedule = tmp_path / "in.schedule"
    schedule.write_bytes((found / f"{STEM}.schedule").read_bytes())
    other = tmp_path / "other.schedule"
    other.write_bytes(schedule.read_bytes())
    empty = tmp_path / "empty.schedule"
    empty.touch()
    notes = {}
    for target in (empty, other, schedule):
        rc, out, err = run_cli(capsys, "shrink", str(schedule), "-o", str(target), "--json")
        assert rc == 1, err
        notes[target.name] = err
    assert notes["empty.schedule"] == ""
    assert notes["other.schedule"] == f"tlbrace: note: -o {other}: an existing schedule file was replaced by the " \
                                      "shrunk one\n"
    assert "the input schedule was replaced by the shrunk one (shrunk in place)" in notes["in.schedule"]


# --- a log with bytes injected inside a record ----------------------------------------------------------------------

def test_analyze_and_replay_agree_on_a_log_with_zero_bytes_injected(capsys, tmp_path, found):
    """16 zero bytes inside a record: the map still decoded, with the shifted bytes as keys, and the garbage was
    found only at the next record. analyze judged the half-record ("divergence: malformed event record: field
    'kind' is missing", exit 1), replay refused it ("tlbrace: error: ... malformed event record", exit 2), and
    both put the damage after it. Now both drop it, name the byte where it begins, and judge what is before."""
    data = (found / f"{STEM}.msgpack").read_bytes()
    records = msgpack.Unpacker(raw=False, strict_map_key=False)
    records.feed(data)
    starts = []
    for _ in records:
        starts.append(records.tell())
    victim = starts[6]  # the 8th record (an event) begins here
    damaged = tmp_path / "damaged.msgpack"
    damaged.write_bytes(data[:victim + 30] + b"\0" * 16 + data[victim + 30:])
    rc_a, out_a, err_a = run_cli(capsys, "analyze", str(damaged))
    rc_r, out_r, err_r = run_cli(capsys, "replay", str(damaged))
    assert f"garbage at byte {victim}; analysed the records before it" in err_a, err_a
    assert f"garbage at byte {victim}; replaying up to there" in out_r, out_r
    assert "malformed" not in out_a + err_a + out_r + err_r
    assert "no trial_end record" in out_a and "lost this trial's verdict" in out_r
    assert rc_a == rc_r == 0, (err_a, err_r)


def test_shrink_json_is_on_stdout(capsys, tmp_path, found):
    """`tlbrace shrink S -o T --json | jq` read nothing: the document was json.dump'ed on sys.stdout, which is
    stderr while a --json command runs (cli.json_document), so it went to stderr."""
    import json

    rc, out, err = run_cli(capsys, "shrink", str(found / f"{STEM}.schedule"), "-o", str(tmp_path / "s.schedule"),
                           "--json")
    assert rc == 1 and json.loads(out)["after"] >= 1 and "{" not in err, (out, err)


# --- an absurd budget -------------------------------------------------------------------------------------------------

def test_a_budget_past_a_trillion_is_refused_and_sizes_read_as_people_write_them(capsys, tmp_path):
    """`--budget 10000000000000000000000` was priced as given: "needs about 27121132006868.7 TB ... --hash-compact
    (about 2000888343900.4 TB)"."""
    from controlled.search_memory import human

    rc, out, err = run_cli(capsys, "explore", "madv_dontneed", "--budget", "10000000000000000000000", "--out",
                           str(tmp_path))
    assert rc == 2 and "argument --budget: expected at most 1,000,000,000,000 (states or runs), got 1" in err, err
    rc, out, err = run_cli(capsys, "explore", "madv_dontneed", "--budget", "1000000000000", "--memory-limit", "1G",
                           "--out", str(tmp_path))
    assert rc == 2 and " PB (" in err and "TB" in err and "what fits: --budget" in err, err
    assert [human(n) for n in (512, 3 << 40, 5 << 50, 7 << 60, 2 ** 80)] == ["512 B", "3.0 TB", "5.0 PB", "7.0 EB",
                                                                             "1,048,576.0 EB"]


# --- a full disk when explore writes what it found ----------------------------------------------------------------

@pytest.mark.parametrize("json_out", [False, True])
def test_a_counterexample_that_cannot_be_written_is_still_printed(capsys, tmp_path, monkeypatch, json_out):
    """On a full disk, explore ended at the first write with "No space left on device" (exit 3): the search had
    run, maybe for hours, and its counterexample was neither saved nor shown. Now its story is printed with its
    schedule (and --json carries the schedule), then the same one-line error, exit 3."""
    import errno

    import cli.cmd_explore

    def full(path: str, *_a: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", path)
    monkeypatch.setattr(cli.cmd_explore, "write_schedule", full)
    rc, out, err = run_cli(capsys, "explore", "madv_dontneed", "--ordering", "eager", "--out", str(tmp_path),
                           *(["--json"] if json_out else []))
    assert rc == 3 and f"{tmp_path / STEM}.schedule: No space left on device: free some space" in err, err
    if json_out:
        import json

        found = json.loads(out)["violations"][0]
        assert found["schedule_file"] is None and len(found["schedule"]) == found["steps"] == 28
    else:
        assert "not saved" in out and "its schedule, 28 transitions" in out and "lost_dirty_data" in out, out


# --- options that contradict each other -------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, needle", [
    (["explore", "madv_dontneed", "--strategy", "bfs", "--depth", "7"], "--depth: only with --strategy pct"),
    (["explore", "madv_dontneed", "--depth", "5"], "--depth: only with --strategy pct"),  # dfs is the default
    (["explore", "madv_dontneed", "--strategy", "random", "--hash-compact"], "--hash-compact: only with --strategy "
                                                                              "bfs or dfs"),
    (["explore", "madv_dontneed", "--strategy", "pct", "--no-reduce"], "--no-reduce: only with --strategy bfs or "
                                                                        "dfs"),
    (["explore", "madv_dontneed", "--strategy", "bfs", "--no-sleep-sets"], "--no-sleep-sets: only with --strategy "
                                                                            "dfs"),
    (["fuzz", "--strategy", "pct", "--memory-limit", "1G", "--count", "1"], "--memory-limit: only with --strategy "
                                                                            "bfs or dfs, or --check-reduction"),
    (["history", "madv_dontneed", "--no-png", "--png", "PNG"], "--png PNG and --no-png: expected one of them"),
])
def test_options_that_contradict_each_other_are_refused(capsys, tmp_path, argv, needle):
    """Each was run as if the option had not been given: `explore --strategy bfs --depth 7` searched as bfs does,
    `--strategy random --hash-compact` sampled as random does, `fuzz --strategy pct --memory-limit 1G` limited
    nothing (explore refuses it), `history --no-png --png m.png` wrote no m.png. The run was not the one asked
    for, and nothing said so."""
    png = str(tmp_path / "m.png")
    rc, out, err = run_cli(capsys, *[png if a == "PNG" else a for a in argv], "--out", str(tmp_path / "o"))
    assert rc == 2 and needle.replace("PNG", png) in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists() and not os.path.exists(png)


def test_pct_still_takes_its_depth(capsys, tmp_path):
    rc, out, err = run_cli(capsys, "explore", "madv_dontneed", "--strategy", "pct", "--depth", "2", "--budget", "5",
                           "--json", "--out", str(tmp_path))
    assert rc == 0 and '"strategy": "pct"' in out, err


# --- numbers a trial cannot have, in a results file -------------------------------------------------------------------

@pytest.mark.parametrize("record, needle", [
    ({"seconds": float("nan")}, "'seconds': expected a number of seconds in 0..31,622,400, got nan"),
    ({"seconds": float("inf")}, "'seconds': expected a number of seconds in 0..31,622,400, got inf"),
    ({"seconds": -5.0}, "'seconds': expected a number of seconds in 0..31,622,400, got -5.0"),
    ({"seconds": 1e308}, "'seconds': expected a number of seconds in 0..31,622,400, got 1e+308"),
    ({"steps": -3}, "'steps': expected an integer >= 0, got -3"),
])
def test_a_results_record_with_an_impossible_number_is_named(capsys, tmp_path, record, needle):
    """The report summed them: "trial seconds (sum)" was nan, inf, -5.0, or a number of 300 digits (exit 0)."""
    from test_hostile_damage import _crafted_results

    results = _crafted_results(tmp_path / "campaign", **record)
    rc, out, err = run_cli(capsys, "report", str(tmp_path / "campaign"))
    assert rc == 2 and f"{results}: record at byte" in err and f"trial 0: {needle}" in err, err
    assert err.count("\n") == 1
