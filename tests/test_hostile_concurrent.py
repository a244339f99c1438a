"""Two things at once: a reader while a writer writes, two writers in one place (session 15's red team). Each
test failed before its fix; what was already sound (two stress drivers in one --out: actors/dir_lock.py; two
explores into one --out: logs/output_files.replaced_whole) is covered elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from actors.campaign import CampaignOptions, CampaignResult, _account, write_trial_log
from actors.trial import TrialResult
from analysis.analyze import analyze_log
from kernel_model.config import Config
from kernel_model.events import Violation
from scenarios.loader import load_scenario

SCENARIO, CFG = load_scenario("madv_dontneed"), Config(ordering="eager")


def _failing_trial(trial: int, records: int) -> TrialResult:
    """A failing trial with enough records that its log is more than one write buffer."""
    recs = [{"type": "note", "trial": trial, "cpu": 0, "lamport": i, "text": "x" * 200} for i in range(records)]
    return TrialResult(trial, "violation", [Violation("lost_dirty_data", "")], records=recs, seed=trial)


def _read_after_each_record(monkeypatch, path: Path, look: list) -> None:
    """Every record the campaign's log writer writes is flushed at once (the worst case for a reader), and then
    what a reader would find at ``path`` is noted in ``look``: None (nothing there), or the log's damage and the
    trials it holds."""
    import actors.campaign as campaign

    class Watched(campaign.EventLogWriter):
        def write(self, record: dict) -> None:
            super().write(record)
            self._stream.flush()
            if path.exists():
                analysis = analyze_log(path)
                look.append((analysis.damage, tuple(t.trial for t in analysis.trials)))
            else:
                look.append(None)

    monkeypatch.setattr(campaign, "EventLogWriter", Watched)


def test_a_reader_never_sees_a_trial_log_half_written(tmp_path: Path, monkeypatch):
    """The campaign wrote a failing trial's log in place: `tlbrace analyze` or `report` of the directory while
    the campaign ran read it cut short ("no trial_end record", the events before the cut judged), and a driver
    killed mid-write left it so for good. Now the log is written beside its name and renamed over it once whole:
    a reader at any moment finds no log or the whole one."""
    path = tmp_path / f"{SCENARIO.name}-r-trial00000.msgpack"
    look: list = []
    _read_after_each_record(monkeypatch, path, look)
    write_trial_log(str(tmp_path), "r", SCENARIO, CFG, _failing_trial(0, 100))
    assert set(look) == {None}, "a reader could see the log before it was whole"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    analysis = analyze_log(path)
    assert analysis.damage is None and [t.trial for t in analysis.trials] == [0]


def test_a_trial_run_again_after_a_resume_replaces_its_log_whole(tmp_path: Path, monkeypatch):
    """The old log was removed first and the new one written in its place: a reader in between found nothing, or
    half of the new one. Now the old log stays whole until the new one replaces it."""
    path = Path(write_trial_log(str(tmp_path), "r", SCENARIO, CFG, _failing_trial(0, 3)))
    look: list = []
    _read_after_each_record(monkeypatch, path, look)
    write_trial_log(str(tmp_path), "r", SCENARIO, CFG, _failing_trial(0, 50))
    assert set(look) == {(None, (0,))}, look[:3]  # the old log, whole, until the new one took its place
    assert analyze_log(path).damage is None and len(os.listdir(tmp_path)) == 1


def test_a_crash_while_the_log_is_written_leaves_no_log_cut_short(tmp_path: Path, monkeypatch):
    import actors.campaign as campaign

    class Dies(campaign.EventLogWriter):
        def write(self, record: dict) -> None:
            if record.get("type") == "trial_end":
                raise OSError(28, "No space left on device")
            super().write(record)

    monkeypatch.setattr(campaign, "EventLogWriter", Dies)
    opts = CampaignOptions(out=str(tmp_path))
    result = CampaignResult(SCENARIO.name, CFG, "r")
    try:
        _account(result, _failing_trial(0, 20), SCENARIO, CFG, opts)
    except OSError:
        pass  # the campaign reports a full disk (exit 3, resumable): tests/test_faults.py
    assert os.listdir(tmp_path) == []  # neither a log cut short nor a temporary file


def test_a_resume_removes_the_log_a_killed_driver_was_writing(tmp_path: Path):
    from actors.campaign import _remove_unrecorded_logs

    half = tmp_path / f"{SCENARIO.name}-r-trial00007.msgpack.k3j2x1.tmp"
    half.write_bytes(b"\x85")
    other = tmp_path / f"{SCENARIO.name}-otherrun-trial00007.msgpack.a.tmp"  # another run's: not this resume's
    other.write_bytes(b"")
    _remove_unrecorded_logs(str(tmp_path), SCENARIO.name, "r", recorded=set())
    assert not half.exists() and other.exists()


def test_a_scale_table_that_cannot_be_written_whole_leaves_the_old_one(tmp_path: Path, monkeypatch):
    """write_csv truncated results.csv and wrote it in place: a failure in the middle (a full disk) lost the
    previous run's table, and a report reading it meanwhile got half of it."""
    import csv

    from actors.scale import write_csv

    path = tmp_path / "results.csv"
    write_csv(str(path), [{"cpus": 2}])
    before = path.read_bytes()

    def full_disk(self, row):  # noqa: ANN001 - csv.DictWriter.writerow's signature
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(csv.DictWriter, "writerow", full_disk)
    try:
        write_csv(str(path), [{"cpus": 4}])
    except OSError:
        pass
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["results.csv"]


def test_two_fuzz_campaigns_of_one_seed_on_two_kernels_keep_their_own_shrunk_scenario(tmp_path: Path):
    """Each wrote its shrunk scenario as fuzz-SEED-INDEX.toml: the second (at once or later) replaced the first's,
    whose report and schedule then went with a scenario file that was not theirs."""
    from cli.cmd_fuzz import _ViolationFiles
    from fuzz.generate import generate, scenario_name, to_toml
    from fuzz.run import Outcome

    name = scenario_name(3, 0)
    text = to_toml(generate(3, 0), name)
    files = {}
    for kernel in ("4.8", "6.1"):
        shrunk = Outcome(0, name, text + f"# shrunk on {kernel}\n", invariants=["lost_dirty_data"], schedule=[],
                         original_size=(3, 6, 2), size=(2, 3, 1))
        writer = _ViolationFiles(str(tmp_path), Config(ordering="eager"), kernel, 3, "dfs")
        writer.write(shrunk)
        files[kernel] = writer.entries[0]["scenario_file"]
    assert files["4.8"] != files["6.1"]
    for kernel, path in files.items():
        assert Path(path).read_text().endswith(f"# shrunk on {kernel}\n")


def test_a_resume_through_a_symlinked_results_file_is_refused_before_ray(capsys, tmp_path: Path, monkeypatch):
    """B/results.msgpack -> A/results.msgpack, and a campaign running in A under A's lock: `stress --resume --out
    B` took B's lock and appended to A's file at the same time as A's driver."""
    import cli.cmd_stress
    from actors.campaign import prepare_results
    from cli_run import run_cli

    a, b = tmp_path / "a", tmp_path / "b"
    b.mkdir()
    scenario, cfg = load_scenario("anon_pages"), Config()
    prepared = prepare_results(scenario, cfg, CampaignOptions(out=str(a), trials=5, results=True))
    assert prepared is not None
    from logs.results_file import ResultsWriter

    ResultsWriter(prepared.path, prepared.header).close()  # A's results file, A still locked by its driver
    (b / "results.msgpack").symlink_to(a / "results.msgpack")
    monkeypatch.setattr(cli.cmd_stress, "open_ray", lambda *_a, **_k: pytest.fail("Ray was started"))
    rc, out, err = run_cli(capsys, "stress", "anon_pages", "--trials", "5", "--resume", "--out", str(b))
    prepared.release()
    assert rc == 2 and not out and err.count("\n") == 1, (rc, err)
    assert "is a symbolic link to" in err and f"--out {a}" in err


@pytest.mark.parametrize("make", ["symlink", "directory", "fifo"])
def test_a_lock_file_name_taken_by_something_else_is_refused_and_left_alone(capsys, tmp_path: Path, monkeypatch,
                                                                            make):
    """The lock file was opened following a symbolic link: DIR/.tlbrace.lock -> a file of the user's had that file
    truncated and overwritten with the driver's pid. A directory there was exit 3 (as if the disk had failed)."""
    import cli.cmd_stress
    from cli_run import run_cli

    out, precious = tmp_path / "out", tmp_path / "precious.txt"
    out.mkdir()
    precious.write_text("precious data\n")
    lock = out / ".tlbrace.lock"
    {"symlink": lambda: lock.symlink_to(precious), "directory": lock.mkdir, "fifo": lambda: os.mkfifo(lock)}[make]()
    monkeypatch.setattr(cli.cmd_stress, "open_ray", lambda *_a, **_k: pytest.fail("Ray was started"))
    rc, stdout, err = run_cli(capsys, "stress", "anon_pages", "--trials", "1", "--out", str(out))
    assert rc == 2 and not stdout and err.count("\n") == 1, (rc, err)
    assert f"{lock}: is " in err and "expected tlbrace's lock file" in err
    assert precious.read_text() == "precious data\n" and os.path.lexists(lock)
