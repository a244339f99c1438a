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
