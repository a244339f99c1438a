"""``rm -rf`` of a stress campaign's --out while it runs: the campaign stops with one line (exit 3) saying where its
records went, and loses none of them (actors/results_rescue.py). Before, the driver kept appending to the deleted
file, recreated --out for the next failing log, printed a results path that was not there and exited 0 or 1: every
recorded trial lost without a word (session 16's red team)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from cli_run import run_cli

from actors.dir_lock import lock_directory
from actors.results_rescue import rescue
from actors.trial import TrialResult
from logs.results_file import FILE_NAME, ResultsDeleted, ResultsWriter, make_header, read_results, trial_record


def _record(trial: int) -> dict:
    return trial_record(trial=trial, seed=trial, status="ok", invariants=[], detail="", actor=None, steps=3,
                        seconds=0.1, nodes=[], log=None)


def _writer(out: Path, records: int) -> ResultsWriter:
    out.mkdir(parents=True, exist_ok=True)
    header = make_header(run="r1", scenario="s", scenario_source="", params={}, config={}, seed=0, trials=100,
                         jitter_us=0.0)
    writer = ResultsWriter(str(out / FILE_NAME), header)
    for t in range(records):
        writer.append(_record(t))
    return writer


def test_the_writer_sees_its_file_deleted_and_keeps_the_record_it_was_given(tmp_path):
    writer = _writer(tmp_path / "out", 3)
    shutil.rmtree(tmp_path / "out")
    with pytest.raises(ResultsDeleted):
        writer.append(_record(3))
    lost = rescue(writer, str(tmp_path / "out"), 4, [], lambda *_: "")
    writer.close()
    assert len(read_results(tmp_path / "out" / FILE_NAME).records) == 4
    assert str(lost).startswith(f"{tmp_path / 'out'}: the campaign's results file was deleted while it ran")
    assert f"written back to {tmp_path / 'out' / FILE_NAME}" in str(lost) and "--resume" in str(lost)


def _failing(trial: int) -> TrialResult:
    return TrialResult(trial, "violation", [], records=[{"type": "note"}], seed=trial)


@pytest.mark.parametrize("taken", ["by a file", "by another campaign"])
def test_records_that_cannot_go_back_to_out_are_saved_in_a_directory_of_their_own(tmp_path, monkeypatch, taken):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the fallback directory lands in the test's own
    out = tmp_path / "parent" / "out"
    writer = _writer(out, 5)
    shutil.rmtree(tmp_path / "parent")
    if taken == "by a file":
        (tmp_path / "parent").write_text("not a directory")  # --out cannot be made again
    else:
        out.mkdir(parents=True)
        lock = lock_directory(str(out))  # a new campaign took the directory meanwhile
    written: list[str] = []
    lost = rescue(writer, str(out), 5, [_failing(2)], lambda where, r: written.append(where) or "")
    writer.close()
    if taken != "by a file":
        lock.release()
        assert not (out / FILE_NAME).exists()  # the other campaign's directory is left alone
    saved = next(tmp_path.glob("tlbrace-recovered-*"))
    assert len(read_results(saved / FILE_NAME).records) == 5 and written == [str(saved)]
    text = str(lost)
    assert f"saved in {saved / FILE_NAME}" in text and f"--out {saved} --resume" in text, text
    assert "and the logs of its 1 failing trials" in text


@pytest.mark.wild
@pytest.mark.usefixtures("ray_session")
def test_rm_rf_of_out_during_stress_stops_it_with_its_records_written_back(capsys, tmp_path, monkeypatch):
    out = tmp_path / "campaign"
    argv = ["stress", "madv_dontneed", "--ordering", "eager", "--trials", "30", "--seed", "5", "--json",
            "--out", str(out)]
    appended = [0]
    append = ResultsWriter.append

    def rm_rf_before_the_sixth(self: ResultsWriter, record: dict) -> None:
        appended[0] += 1
        if appended[0] == 6:
            shutil.rmtree(out)
        append(self, record)

    monkeypatch.setattr(ResultsWriter, "append", rm_rf_before_the_sixth)
    rc, stdout, err = run_cli(capsys, *argv)
    assert rc == 3 and not stdout, (rc, err)
    assert err.count("\n") == 1 and "the campaign's results file was deleted while it ran" in err, err
    assert f"written back to {out / FILE_NAME}: run the same command with --resume" in err, err
    records = read_results(out / FILE_NAME).records
    assert len(records) == 6
    for rec in records:  # the failing trials' logs, deleted with --out, are back
        assert rec["log"] is None or os.path.isfile(rec["log"]), rec

    monkeypatch.setattr(ResultsWriter, "append", append)
    rc, stdout, err = run_cli(capsys, *argv, "--resume")
    assert rc in (0, 1), err
    assert len(read_results(out / FILE_NAME).records) == 30
