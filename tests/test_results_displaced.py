"""A stress campaign's results file taken from its path while the campaign runs, other than by deletion: its --out
renamed (``mv out out.old``), or the file itself renamed; and a symbolic link planted at the name the writer
creates its file under (``results.msgpack.new``). Session 16's red team left both: a rename was not seen (the
driver went on appending into the moved directory, wrote its failing logs into a fresh --out and printed a
results path that did not exist), and the planted link had the header and every record written into the file it
pointed at. None of these tests needs Ray."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from actors.dir_lock import lock_directory
from actors.results_rescue import rescue
from logs.results_file import FILE_NAME, ResultsDeleted, ResultsWriter, make_header, read_results, trial_record


def _record(trial: int) -> dict:
    return trial_record(trial=trial, seed=trial, status="ok", invariants=[], detail="", actor=None, steps=3,
                        seconds=0.1, nodes=[], log=None)


def _header() -> dict:
    return make_header(run="r1", scenario="s", scenario_source="", params={}, config={}, seed=0, trials=100,
                       jitter_us=0.0)


def _writer(out: Path, records: int) -> ResultsWriter:
    out.mkdir(parents=True, exist_ok=True)
    writer = ResultsWriter(str(out / FILE_NAME), _header())
    for t in range(records):
        writer.append(_record(t))
    return writer


@pytest.mark.parametrize("moved", ["the directory", "the file"])
def test_a_renamed_results_file_stops_the_campaign_and_its_records_go_back_to_out(tmp_path, moved):
    out = tmp_path / "out"
    writer = _writer(out, 3)
    lock = lock_directory(str(out))  # the campaign's own lock, held while it runs (and so during the rescue)
    if moved == "the directory":
        os.rename(out, tmp_path / "out.old")
        where = tmp_path / "out.old" / FILE_NAME
    else:
        os.rename(out / FILE_NAME, out / "kept.msgpack")
        where = out / "kept.msgpack"
    with pytest.raises(ResultsDeleted):
        writer.append(_record(3))
    assert writer.displaced() is not None
    lost = rescue(writer, str(out), 4, [], lambda *_: "", held=lock)
    writer.close()
    lock.release()
    assert len(read_results(out / FILE_NAME).records) == 4  # written back where --resume looks
    assert len(read_results(where).records) == 4  # and the moved file is left as it was
    text = str(lost)
    assert text.startswith(f"{out}: the campaign's results file was moved to {where} while it ran"), text
    assert f"written back to {out / FILE_NAME}: run the same command with --resume" in text, text


def test_a_results_file_left_in_place_is_not_displaced(tmp_path):
    writer = _writer(tmp_path / "out", 2)
    writer.append(_record(2))
    assert writer.displaced() is None and not writer.unlinked()
    writer.close()


def test_a_symlink_planted_at_the_temporary_name_is_never_followed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    (out / f"{FILE_NAME}.new").symlink_to(victim)
    writer = ResultsWriter(str(out / FILE_NAME), _header())
    writer.append(_record(0))
    writer.close()
    assert victim.read_bytes() == b"precious"
    assert not (out / FILE_NAME).is_symlink() and len(read_results(out / FILE_NAME).records) == 1


def test_a_symlink_planted_at_the_write_back_name_is_never_followed(tmp_path):
    writer = _writer(tmp_path / "out", 2)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    target = tmp_path / "back"
    target.mkdir()
    (target / f"{FILE_NAME}.new").symlink_to(victim)
    writer.copy_to(str(target / FILE_NAME))
    writer.close()
    assert victim.read_bytes() == b"precious" and len(read_results(target / FILE_NAME).records) == 2


@pytest.mark.parametrize("run", ["/../../moved", "../x", "a/b", "..", "\x00", "ok" * 40])
def test_an_old_results_file_is_kept_beside_it_whatever_its_header_says(tmp_path, run):
    """A fresh campaign in an --out that holds a results file keeps that file aside, named after the run id in its
    header. A header's run id of "/../../moved" (with a directory "results-" planted in --out) had the file moved
    out of --out, to where the header said: a header must never choose a path."""
    from actors.campaign import _move_aside

    out = tmp_path / "a" / "out"
    (out / "results-").mkdir(parents=True)
    header = _header() | {"run": run}
    ResultsWriter(str(out / FILE_NAME), header).close()
    aside = Path(_move_aside(str(out / FILE_NAME)))
    assert aside.parent == out and aside.name.startswith("results-") and aside.suffix == ".msgpack", aside
    assert read_results(aside).header["run"] == run and not (out / FILE_NAME).exists()


def test_a_results_file_of_the_largest_scenario_file_reads_back(tmp_path):
    """A scenario file may be 1 MiB (comments count); the results header carries its text, and a header frame
    longer than a trial record's limit (1 MiB) was read as damage: `stress` wrote a results file that its own
    --resume and `report` refused ("its header is damaged at byte 0")."""
    from scenarios.input_files import MAX_SCENARIO_BYTES

    header = _header() | {"scenario_source": "#" * MAX_SCENARIO_BYTES}
    writer = ResultsWriter(str(tmp_path / FILE_NAME), header)
    writer.append(_record(0))
    writer.close()
    contents = read_results(tmp_path / FILE_NAME)
    assert len(contents.header["scenario_source"]) == MAX_SCENARIO_BYTES and len(contents.records) == 1


# A Ctrl-C (or SIGTERM, which every command takes as one) while a deleted results file's records are being saved:
# they live only in the writer's open descriptor, so an interrupt there lost them all. In a child of its own: the
# SIGINT is real.
INTERRUPTED_RESCUE = """
import os, shutil, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from actors import campaign
from logs.results_file import FILE_NAME, ResultsWriter, make_header, read_results, trial_record
out = sys.argv[1]
os.makedirs(out)
writer = ResultsWriter(os.path.join(out, FILE_NAME), make_header(run="r1", scenario="s", scenario_source="",
                       params={}, config={}, seed=0, trials=9, jitter_us=0.0))
for t in range(3):
    writer.append(trial_record(trial=t, seed=t, status="ok", invariants=[], detail="", actor=None, steps=1,
                               seconds=0.1, nodes=[], log=None))
shutil.rmtree(out)
copy_to = ResultsWriter.copy_to
def ctrl_c_then_copy(self, path):
    os.kill(os.getpid(), signal.SIGINT)
    copy_to(self, path)
ResultsWriter.copy_to = ctrl_c_then_copy
result = campaign.CampaignResult("s", None, "r1", trials=3)
try:
    campaign._close_writer(writer, result, None, None, campaign.CampaignOptions(out=out), None)
except KeyboardInterrupt:
    print("interrupted")
except campaign.ResultsLost as exc:
    print("lost:", exc)
print(len(read_results(os.path.join(out, FILE_NAME)).records) if os.path.exists(os.path.join(out, FILE_NAME))
      else "no results")
"""


def test_a_ctrl_c_while_a_deleted_results_file_is_saved_loses_nothing(tmp_path):
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", INTERRUPTED_RESCUE, str(tmp_path / "out")],
                           cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    first, count = child.stdout.strip().splitlines()
    assert first.startswith("lost: ") and "written back to" in first, first
    assert count == "3"
