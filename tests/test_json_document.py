"""With --json, stdout holds the JSON document alone (cli.json_document): Ray's driver prints its cluster's error
messages on sys.stdout from a thread of its own (ray._private.worker.listen_error_messages), and one that came
during a command, or while the interpreter shut down after it, made the document unreadable."""

from __future__ import annotations

import io
import json
import signal
import sys

import pytest

import cli.cmd_scenarios
from cli.main import calm_shutdown, main


def _ray_prints_a_cluster_error(which: str) -> None:
    """What Ray's listen_error_messages does with a message from the GCS: print it on sys.stdout. (Ray drops a
    message it printed a moment ago, so each test's is its own.)"""
    from ray._private.worker import print_to_stdstream

    print_to_stdstream({"lines": [f"A worker died or was killed while executing a task ({which})"],
                        "pid": "raylet", "is_err": False}, ignore_prefix=False)


def test_a_message_ray_prints_during_a_json_command_goes_to_stderr(monkeypatch, capsys):
    real = cli.cmd_scenarios.list_scenarios

    def listed_while_ray_speaks():
        _ray_prints_a_cluster_error("during")
        print("and any other word of the command")
        return real()

    monkeypatch.setattr(cli.cmd_scenarios, "list_scenarios", listed_while_ray_speaks)
    assert main(["scenarios", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "madv_dontneed" in {s["name"] for s in json.loads(out)}  # the document alone: it parses
    assert "A worker died" in err and "any other word" in err
    assert sys.stdout is not sys.stderr  # given back after the command
    assert main(["scenarios"]) == 0 and "madv_dontneed" in capsys.readouterr().out  # without --json: stdout


def test_after_the_command_what_ray_prints_while_shutting_down_goes_to_stderr(monkeypatch):
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        print('{"trials": 6}')
        calm_shutdown()
        _ray_prints_a_cluster_error("after")
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    assert json.loads(out.getvalue()) == {"trials": 6}
    assert "A worker died" in err.getvalue()


@pytest.mark.parametrize("argv", [["mutants", "--json"], ["scenarios", "--json"]])
def test_each_json_document_is_one_line_or_one_indented_document_and_a_newline(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n") and json.loads(out)
