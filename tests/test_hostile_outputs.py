"""Hostile things standing where tlbrace writes (issue 17, red team 12): a name under --out taken by a FIFO or a
device is refused with one line naming it (exit 2), never replaced, never waited on. None needs Ray."""

from __future__ import annotations

import os

import pytest
from cli_run import run_cli

from logs.eventlog import EventLogWriter
from logs.output_files import OutputFileError

STEM = "madv_dontneed-eager-smp-bfs-0"


@pytest.mark.parametrize("name", [f"{STEM}.schedule", f"{STEM}.schedule.tmp", f"{STEM}.msgpack"])
def test_a_fifo_where_explore_writes_a_counterexample_is_refused_not_replaced(capsys, tmp_path, name):
    """write_schedule renamed its copy over a FIFO named like the schedule (replacing it), and a FIFO at the
    '.tmp' name made open() wait for a reader for ever; the log's name was removed whatever it was."""
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
