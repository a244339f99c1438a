"""Hostile things standing where tlbrace writes (issue 17, red team 12): a name under --out taken by a FIFO or a
device is refused with one line naming it (exit 2), never replaced, never waited on. None needs Ray."""

from __future__ import annotations

import os
import stat

import pytest
from cli_run import run_cli

from logs.eventlog import EventLogWriter, read_log
from logs.output_files import OutputFileError

STEM = "madv_dontneed-eager-smp-bfs-0"


@pytest.mark.parametrize("name", [f"{STEM}.schedule", f"{STEM}.msgpack"])
def test_a_fifo_where_explore_writes_a_counterexample_is_refused_not_replaced(capsys, tmp_path, name):
    """write_schedule renamed its copy over a FIFO named like the schedule (replacing it); the log's name was
    removed whatever it was."""
    fifo = tmp_path / name
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a regression that writes the FIFO fails, not hangs
    try:
        rc, _, err = run_cli(capsys, "explore", "madv_dontneed", "--ordering", "eager", "--out", str(tmp_path))
    finally:
        os.close(reader)
    assert rc == 2, err
    assert f"{fifo}: the " in err and "it is a FIFO; expected a regular file or nothing" in err, err
    assert fifo.is_fifo()  # still there, still a FIFO


def test_an_event_log_over_a_fifo_is_refused(tmp_path):
    fifo = tmp_path / "trial.msgpack"
    os.mkfifo(fifo)
    with pytest.raises(OutputFileError, match="event log would go there, but it is a FIFO"):
        EventLogWriter(fifo, {"type": "header"})
    assert fifo.is_fifo()


def test_a_symlink_to_a_regular_file_is_still_written(capsys, tmp_path):
    elsewhere = tmp_path / "elsewhere.schedule"
    elsewhere.write_bytes(b"old")
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{STEM}.schedule").symlink_to(elsewhere)
    rc, _, err = run_cli(capsys, "explore", "madv_dontneed", "--ordering", "eager", "--out", str(out))
    assert rc == 1, err
    written = out / f"{STEM}.schedule"
    assert written.is_file() and not written.is_symlink() and elsewhere.read_bytes() == b"old"
    rc, _, err = run_cli(capsys, "replay", str(written))
    assert rc == 1, err


def test_a_fifo_at_the_old_temporary_name_is_left_alone(capsys, tmp_path):
    """write_schedule wrote every schedule through '<name>.tmp': a FIFO there made open() wait for a reader for
    ever, and two writers of one name truncated each other's copy. The copy's name is now unique (mkstemp)."""
    fifo = tmp_path / f"{STEM}.schedule.tmp"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        rc, _, err = run_cli(capsys, "explore", "madv_dontneed", "--ordering", "eager", "--out", str(tmp_path))
    finally:
        os.close(reader)
    assert rc == 1, err
    assert fifo.is_fifo() and (tmp_path / f"{STEM}.schedule").is_file()
    assert oct((tmp_path / f"{STEM}.schedule").stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") and p != fifo]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_two_explores_into_one_out_leave_one_whole_log_each_time(tmp_path):
    """Two `explore` of one scenario into one --out at once: each removed the log if it existed, then appended;
    when both found it absent, the second appended its trial to the first's log (no header of its own), and
    the shared '.tmp' name made one of them fail after its search. Each now renames a whole file of its own."""
    import subprocess
    import sys

    argv = [sys.executable, "-m", "cli.main", "explore", "madv_dontneed", "--ordering", "eager", "--all",
            "--budget", "3000", "--out", str(tmp_path)]
    env = {**os.environ, "TLBRACE_PURE_PYTHON": os.environ.get("TLBRACE_PURE_PYTHON", "")}
    procs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(3)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    assert all(rc == 1 for rc, _ in results), results
    logs = sorted(tmp_path.glob("*.msgpack"))
    assert logs and not list(tmp_path.glob("*.tmp"))
    for log in logs:
        contents = read_log(log)
        ends = [r for r in contents.records if r.get("type") == "trial_end"]
        assert len(ends) == 1 and contents.damage is None, (log, len(ends), contents.damage)


@pytest.mark.parametrize("name", ["results.csv", "waits.png"])
def test_a_fifo_where_scale_writes_is_refused_before_ray_starts(capsys, tmp_path, monkeypatch, name):
    """scale ran its whole grid, then opened a FIFO named results.csv for writing and waited for a reader for ever
    (the rows never written; found with a 100 s timeout)."""
    import cli.cmd_scale

    def no_ray(*_args: object) -> None:
        raise AssertionError("Ray was started although an output name is a FIFO")

    monkeypatch.setattr(cli.cmd_scale, "open_ray", no_ray)
    fifo = tmp_path / name
    os.mkfifo(fifo)
    rc, _, err = run_cli(capsys, "scale", "scale_writers", "--cpus", "3", "--trials", "1", "--ordering", "eager",
                         "--out", str(tmp_path))
    assert rc == 2 and f"{fifo}: the scale run's {name} would go there, but it is a FIFO" in err, err
    assert fifo.is_fifo()


@pytest.mark.parametrize("make", ["fifo", "device"])
def test_a_new_campaign_refuses_a_results_name_that_is_no_file(capsys, tmp_path, monkeypatch, make):
    """A fresh `stress` into an --out whose results.msgpack was a FIFO (or a symlink to /dev/zero) renamed it aside
    and said "the previous campaign's results were kept as results-<time>.msgpack"."""
    import cli.cmd_stress

    def no_ray(*_args: object) -> None:
        raise AssertionError("Ray was started although results.msgpack is no file")

    monkeypatch.setattr(cli.cmd_stress, "open_ray", no_ray)
    target = tmp_path / "results.msgpack"
    if make == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to("/dev/zero")  # a link we made; the device itself is never touched
    rc, _, err = run_cli(capsys, "stress", "madv_dontneed", "--trials", "1", "--out", str(tmp_path))
    kind = "a FIFO" if make == "fifo" else "a device"
    assert rc == 2 and f"{target}: the campaign's results file would go there, but it is {kind}" in err, err
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["results.msgpack"]


@pytest.mark.parametrize("link", ["looping", "dangling"])
@pytest.mark.parametrize("under", [False, True])
@pytest.mark.parametrize("command", ["explore", "fuzz", "history"])
def test_an_out_dir_through_a_broken_symlink_is_refused_before_the_search(capsys, tmp_path, link, under, command):
    """--out a looping or dangling symlink (or a path under one) passed the door; explore searched to the end,
    then failed to make the directory (exit 3, 'File exists' / 'Too many levels of symbolic links')."""
    broken = tmp_path / "out"
    broken.symlink_to(broken if link == "looping" else tmp_path / "gone" / "dir")
    out = broken / "sub" if under else broken
    argv = {"explore": ["explore", "madv_dontneed", "--ordering", "eager"], "fuzz": ["fuzz", "--count", "1"],
            "history": ["history", "madv_dontneed", "--kernels", "6.1"]}[command]
    rc, stdout, err = run_cli(capsys, *argv, "--out", str(out))
    assert rc == 2 and f"--out {out}: {broken} is a symbolic link that leads nowhere" in err, err
    assert not stdout


def test_a_trial_log_name_taken_by_a_fifo_or_directory_skips_that_log_and_the_campaign_goes_on(tmp_path):
    """A directory at one trial's log name stopped a stress campaign (exit 3, no summary); a FIFO there was deleted
    and replaced; a dangling symlink had the log created where it pointed. Now the FIFO and the directory stay, that
    trial is counted and reported with the path, and the next trials' logs are written."""
    from actors.campaign import CampaignOptions, CampaignResult, _account, _remove_unrecorded_logs
    from actors.trial import TrialResult
    from kernel_model.config import Config
    from kernel_model.events import Violation
    from scenarios.loader import load_scenario

    sc, cfg = load_scenario("madv_dontneed"), Config(ordering="eager")
    opts = CampaignOptions(out=str(tmp_path))
    name = lambda t: tmp_path / f"madv_dontneed-r-trial{t:05d}.msgpack"  # noqa: E731
    os.mkfifo(name(1))
    name(2).mkdir()
    name(3).symlink_to(tmp_path / "elsewhere")
    _remove_unrecorded_logs(str(tmp_path), sc.name, "r", recorded=set())  # a resume leaves them alone too
    result = CampaignResult(sc.name, cfg, "r")
    for t in range(5):
        r = TrialResult(t, "violation", [Violation("lost_dirty_data", "")], seed=t)
        _account(result, r, sc, cfg, opts)
    assert result.trials == 5 and result.violations == 5
    assert stat.S_ISFIFO(os.lstat(name(1)).st_mode) and name(2).is_dir()
    assert [line.split(":")[0] for line in result.unwritten_logs] == ["trial 1", "trial 2"]
    assert f"{name(1)}" in result.unwritten_logs[0] and "a FIFO" in result.unwritten_logs[0]
    assert "a directory" in result.unwritten_logs[1] and result.summary()["unwritten_logs"] == result.unwritten_logs
    assert not (tmp_path / "elsewhere").exists() and name(3).is_file() and not name(3).is_symlink()
    assert result.failing_logs == [str(name(t)) for t in (0, 3, 4)]


@pytest.mark.parametrize("command", [["explore", "madv_dontneed"], ["fuzz", "--count", "1"],
                                     ["stress", "anon_pages", "--trials", "1"]])
def test_an_out_where_nothing_can_be_created_is_refused_before_the_work(capsys, monkeypatch, command):
    """A read-only or pseudo file system under --out (a read-only cwd with the default tlbrace-out, /proc) passed
    the door: the search ran to its end and then could not write what it found (exit 3 after all the work)."""
    import cli.cmd_explore

    monkeypatch.setattr(cli.cmd_explore, "explore", lambda *a, **k: pytest.fail("the search ran"))
    monkeypatch.chdir("/proc")  # nothing can be made there, even by root: the default --out tlbrace-out
    rc, out, err = run_cli(capsys, *command)
    assert rc == 3 and "--out tlbrace-out" in err and "nothing can be created in /proc" in err, err
    assert len(err.strip().splitlines()) == 1 and not out


def test_a_deleted_current_directory_is_named(capsys, tmp_path, monkeypatch):
    """A cwd deleted under the shell: "error: No such file or directory" named no path nor cause."""
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    rc, _, err = run_cli(capsys, "explore", "madv_dontneed")
    assert rc == 3 and "the current directory no longer exists" in err and "--out tlbrace-out" in err, err


@pytest.mark.parametrize("make", [lambda tmp: str(tmp / ("x" * 300)),  # one name past NAME_MAX (255)
                                  lambda tmp: str(tmp / "/".join(["d" * 200] * 25))])  # past PATH_MAX (4096)
def test_an_out_whose_name_is_too_long_is_refused_before_the_search(capsys, tmp_path, monkeypatch, make):
    """"File name too long" came from the first makedirs, after the whole search (exit 3)."""
    import cli.cmd_explore

    monkeypatch.setattr(cli.cmd_explore, "explore", lambda *a, **k: pytest.fail("the search ran"))
    rc, _, err = run_cli(capsys, "explore", "madv_dontneed", "--out", make(tmp_path))
    assert rc == 2 and ("this file system allows 255" in err or "PATH_MAX" in err), err
    assert len(err) < 400 and list(tmp_path.iterdir()) == []  # the path is shortened in the message


@pytest.mark.parametrize("argv", [["analyze", "LOG", "--timeline", "NAME.png"],
                                  ["analyze", "LOG", "--perfetto", "NAME.json"], ["shrink", "SCHEDULE", "-o", "NAME"],
                                  ["report", "DIR", "-o", "NAME.html"]])
def test_an_output_file_name_that_cannot_be_written_whole_is_refused_at_the_door(capsys, tmp_path, argv):
    """A 250-byte name is under NAME_MAX, but the file is written as NAME.XXXXXXXX.tmp first: the command did its
    work, then failed with "File name too long" (exit 3)."""
    from cli.main import main

    assert main(["explore", "madv_dontneed", "--ordering", "eager", "--json", "--out", str(tmp_path)]) == 1
    capsys.readouterr()
    name = str(tmp_path / ("x" * 246))
    subst = {"LOG": str(tmp_path / f"{STEM}.msgpack"), "SCHEDULE": str(tmp_path / f"{STEM}.schedule"),
             "DIR": str(tmp_path), "NAME": name}
    rc, _, err = run_cli(capsys, *[subst.get(a, a.replace("NAME", name)) for a in argv])
    assert rc == 2 and "this file system allows 255" in err and "plus 13 characters" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{STEM}.msgpack", f"{STEM}.schedule"]


@pytest.mark.parametrize("argv, victim", [
    (["analyze", "LOG", "--perfetto", "LOG"], "LOG"),
    (["report", "DIR", "-o", "RESULTS"], "RESULTS"),
    (["shrink", "SCHEDULE", "-o", "LOG"], "LOG"),
])
def test_an_output_over_tlbrace_data_is_refused_and_the_data_kept(capsys, tmp_path, argv, victim):
    """`analyze L --perfetto L` replaced the log it read with trace JSON, `report D -o D/results.msgpack` the
    campaign's results file with HTML (no report nor --resume after), `shrink S -o L` a log with a schedule."""
    from cli.main import main
    from logs.results_file import ResultsWriter, make_header
    from scenarios.loader import load_scenario

    assert main(["explore", "madv_dontneed", "--ordering", "eager", "--json", "--out", str(tmp_path)]) == 1
    sc = load_scenario("madv_dontneed")
    ResultsWriter(str(tmp_path / "results.msgpack"), make_header(
        run="r", scenario=sc.name, scenario_source=sc.source, params=sc.params, config={}, seed=0, trials=1,
        jitter_us=0.0)).close()
    capsys.readouterr()
    paths = {"LOG": tmp_path / f"{STEM}.msgpack", "SCHEDULE": tmp_path / f"{STEM}.schedule", "DIR": tmp_path,
             "RESULTS": tmp_path / "results.msgpack"}
    before = paths[victim].read_bytes()
    rc, _, err = run_cli(capsys, *[str(paths.get(a, a)) for a in argv])
    assert rc == 2 and "writing there would destroy it" in err and str(paths[victim]) in err, err
    assert paths[victim].read_bytes() == before


def test_shrink_may_still_rewrite_a_schedule_in_place(capsys, tmp_path):
    from cli.main import main

    assert main(["explore", "madv_dontneed", "--ordering", "eager", "--json", "--out", str(tmp_path)]) == 1
    schedule = str(tmp_path / f"{STEM}.schedule")
    rc, out, err = run_cli(capsys, "shrink", schedule, "-o", schedule)
    assert rc == 1 and "written to" in out, err  # 1: the shrunk schedule still violates


def test_a_scale_plot_that_is_no_file_is_named_in_the_report_not_read(capsys, tmp_path):
    """report embeds every *.png of a scale run: a FIFO there hung it for ever, a link to /dev/zero read until memory
    ran out, a directory ended it with exit 3 ("choose another output path", about an input)."""
    import threading

    (tmp_path / "results.csv").write_text("cpus,shards\n")
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    (tmp_path / "good.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    result: list[tuple[int, str, str]] = []
    worker = threading.Thread(target=lambda: result.append(
        run_cli(capsys, "report", str(tmp_path), "-o", str(tmp_path / "page.html"))), daemon=True)
    worker.start()
    worker.join(60)
    if worker.is_alive():  # free the thread blocked on the FIFO so that the test process can end
        with open(tmp_path / "fifo.png", "wb"):
            pass
        pytest.fail("report hung on a FIFO named *.png")
    rc, _, err = result[0]
    page = (tmp_path / "page.html").read_text()
    assert rc == 0, err
    for name, kind in (("fifo", "a FIFO"), ("dir", "a directory"), ("zero", "a device")):
        assert f"{tmp_path / name}.png: the plot is {kind}" in page
    assert "data:image/png;base64,iVBORw0KGgo" in page  # the real plot is still embedded


def test_a_scale_out_deleted_while_the_grid_runs_still_gets_the_grid_table(capsys, tmp_path, monkeypatch):
    """rm -rf of scale's --out while the grid ran (its logs, its lock): at the end, writing results.csv beside a
    directory that was gone failed (exit 3), and the whole grid's measurements were lost. --out is made again for
    the table and the plots, as it is for the failing trials' logs."""
    import shutil

    import cli.cmd_scale

    out = tmp_path / "grid"

    def grid_losing_its_out(_name, _cells, _make, _opts, grid, *, quiet):
        shutil.rmtree(out)
        grid.rows.append({"cpus": 3, "shards": 1, "ordering": "eager", "delayed_batches": "-", "trials": 2,
                          "violations": 0, "hit_rate": 0.0, "hit_rate_lo": 0.0, "hit_rate_hi": 0.8})
        return grid

    monkeypatch.setattr(cli.cmd_scale, "open_ray", lambda *_a, **_k: None)
    monkeypatch.setattr(cli.cmd_scale, "close_ray", lambda *_a, **_k: None)
    monkeypatch.setattr(cli.cmd_scale, "_with_progress", grid_losing_its_out)
    monkeypatch.setattr("analysis.scale_plots.plot_all", lambda *_a, **_k: [])
    rc, _stdout, err = run_cli(capsys, "scale", "scale_writers", "--cpus", "3", "--ordering", "eager", "--trials",
                               "2", "--json", "--out", str(out))
    assert rc == 0, err
    assert (out / "results.csv").read_text().splitlines()[1].startswith("3,1,eager,-,2,0,")


@pytest.mark.parametrize("name", [b"run#1?b", b"caf\xe9"])
def test_a_campaign_directory_with_an_odd_name_gets_a_report_whose_links_work(capsys, tmp_path, name):
    """The report's links were its paths written raw: a campaign in 'run#1?b' linked to 'run' (the rest read as a
    fragment), and a directory name that is not UTF-8 (latin-1 'café') ended the report in an internal error
    (exit 4) when the page was written."""
    from urllib.parse import unquote_to_bytes, urlsplit

    from logs.results_file import FILE_NAME, ResultsWriter, make_header, trial_record

    campaign = os.path.join(os.fsencode(tmp_path), name)
    os.mkdir(campaign)
    header = make_header(run="r", scenario="madv_dontneed", scenario_source="", params={},
                         config={"ordering": "eager", "arch": "smp"}, seed=0, trials=2, jitter_us=0.0)
    writer = ResultsWriter(os.fsdecode(os.path.join(campaign, FILE_NAME.encode())), header)
    writer.append(trial_record(trial=0, seed=0, status="ok", invariants=[], detail="", actor=None, steps=5,
                               seconds=0.1, nodes=[], log=None))
    writer.close()
    rc, _, err = run_cli(capsys, "report", str(tmp_path))
    assert rc == 0, err
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    links = [part.split('"', 1)[0] for part in page.split('href="')[1:]]
    # What a browser opens: the link's path, percent-decoded (a '#' starts a fragment, a '?' a query).
    assert links and all(os.path.exists(os.path.join(os.fsencode(tmp_path), unquote_to_bytes(urlsplit(link).path)))
                         for link in links), links
