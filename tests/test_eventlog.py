"""The log format: header, structlog-built events, trial_end; both encodings; damage; refusal of non-logs."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from logs.eventlog import (EventLogWriter, LogError, event_logger, iter_trials, make_header, plain,
                                read_log)


def header() -> dict:
    return make_header(run="r", runtime="controlled", scenario="s", scenario_source="", params={"n": 1},
                       config={"ordering": "eager"})


def write(path: Path, fmt: str = "msgpack") -> None:
    with EventLogWriter(path, header(), fmt) as w:
        for trial in (2, 1):
            log = event_logger(w, run="r", trial=trial, actor="machine")
            log.info("ptep_get_and_clear_full", tid=1, cpu=1, kind="step", fn="zap_pte_range", args=(0, False),
                     result=(0, True, True, True), seq=0, lamport=0, gseq=0)
            w.write({"type": "trial_end", "run": "r", "trial": trial, "status": "ok", "violations": []})


@pytest.mark.parametrize("fmt", ["msgpack", "jsonl"])
def test_round_trip(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"log.{fmt}"
    write(path, fmt)
    c = read_log(path)
    assert c.damage is None and c.header["schema"] == "tlbrace-log" and c.header["params"] == {"n": 1}
    ev = c.records[0]
    assert ev == {"type": "event", "run": "r", "trial": 2, "actor": "machine", "tid": 1, "cpu": 1, "kind": "step",
                  "fn": "zap_pte_range", "args": [0, False], "result": [0, True, True, True], "seq": 0,
                  "lamport": 0, "gseq": 0, "op": "ptep_get_and_clear_full"}
    trials = list(iter_trials(c))
    assert [t for t, _, _ in trials] == [1, 2]
    assert all(len(events) == 1 and end["status"] == "ok" for _, events, end in trials)


def test_plain_types() -> None:
    assert plain({1: (1, frozenset({3, 2}))}) == {"1": [1, [2, 3]]}


@pytest.mark.parametrize("fmt", ["msgpack", "jsonl"])
def test_damage_is_located(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "log"
    write(path, fmt)
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    c = read_log(path)
    assert c.damage is not None and c.damage.startswith("truncated record at byte")
    assert len(c.records) == 3
    path.write_bytes(data + b"\xc1garbage\n")
    c = read_log(path)
    assert c.damage == f"garbage at byte {len(data)}" and len(c.records) == 4


def test_not_a_log(tmp_path: Path) -> None:
    path = tmp_path / "x"
    for content in (b"", b"hello", msgpack.packb([1, 2]), msgpack.packb({"schema": "other"}), b"{\"a\": 1}\n"):
        path.write_bytes(content)
        with pytest.raises(LogError, match="not a tlbrace log"):
            read_log(path)
    path.write_bytes(msgpack.packb({"schema": "tlbrace-log", "version": 2}))
    with pytest.raises(LogError, match="version 2"):
        read_log(path)
