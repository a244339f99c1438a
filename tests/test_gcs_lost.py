"""Ray's GCS killed in the middle of a campaign: exit 3 (the environment failed) with one line that says where the
finished trials are, never Ray's own exit 1 (a violation's status) a minute later. actors.ray_session.GcsWatch
does it; these tests stand a closed port in for the lost GCS, a socket that never answers for a head that
vanished (SIGSTOPped, its machine gone), so no Ray is needed (test_wild_cluster.py stops a real head). (Measured with Ray: a stress
campaign whose gcs_server was SIGKILLed ended in about 13 s with exit 3, its 434 recorded trials intact; before,
after 60 s with exit 1 and Ray's "Failed to connect to GCS within 60 seconds".)"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from actors import ray_session
from actors.ray_session import ClusterLost, GcsWatch

ROOT = Path(__file__).resolve().parent.parent


def _closed_port() -> str:
    """An address nothing listens on: connections to it are refused, as to a killed GCS's."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


# In a child of its own, never in the pytest process: run from a background job, pytest's workers have SIGINT
# ignored, so the watch sent no interrupt and, its grace over, ended the xdist worker with exit 3 (CI, session
# 15: "worker 'gw1' crashed while running" this test, and an earlier run waited for the dead worker for ever).
INTERRUPTED = """
import signal, sys, time
# As an interactive command has it: a background job (CI's runner, `cmd &`) inherits SIGINT ignored, and the
# watch then sends no interrupt and ends the process itself after its grace (the next test).
signal.signal(signal.SIGINT, signal.default_int_handler)
from actors import ray_session
from actors.ray_session import ClusterLost, GcsWatch
watch = GcsWatch("out/results.msgpack", address=sys.argv[1])
try:
    with watch:
        time.sleep(60)  # a campaign waiting for its trials; the watch's interrupt ends the wait
    print("not interrupted")
except KeyboardInterrupt:
    lost = watch.lost()
    print("interrupted", ray_session.gcs_lost(), isinstance(lost, ClusterLost))
    print(lost)
"""


def test_a_lost_gcs_interrupts_the_main_thread_and_is_named():
    child = subprocess.run([sys.executable, "-c", INTERRUPTED, _closed_port()], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
    assert child.returncode == 0, (child.returncode, child.stderr[-2000:])
    first, text = child.stdout.splitlines()
    assert first == "interrupted True True"
    assert "is gone" in text and "out/results.msgpack" in text and "--resume" in text


@contextlib.contextmanager
def _silent_head(kind: str) -> Iterator[str]:
    """The address of a head that vanished without closing anything: "stopped" accepts connections (the kernel
    does, for a SIGSTOPped GCS) and never answers; "unreachable" lets no connection through at all (its accept
    queue is full, so the kernel drops the SYN, as a machine that is gone or cut off leaves it unanswered)."""
    with socket.socket() as server, contextlib.ExitStack() as held:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        address = "127.0.0.1:%d" % server.getsockname()[1]
        if kind == "unreachable":
            for _ in range(2):  # the queue of listen(0) holds one; a second SYN goes unanswered
                filler = held.enter_context(socket.socket())
                filler.setblocking(False)
                filler.connect_ex(server.getsockname())
            time.sleep(0.2)
        yield address


SILENT = INTERRUPTED.replace("from actors import ray_session\n", "from actors import ray_session\n"
                             "ray_session.GCS_SILENT_S = 2.0  # the test's patience, not a user's\n")


@pytest.mark.parametrize("kind", ["stopped", "unreachable"])
def test_a_head_that_stops_answering_interrupts_the_main_thread_and_is_named(kind):
    """Before, only a refused connection counted: a `ray start` head SIGSTOPped in the middle of `tlbrace stress
    --address` left the driver waiting for more than 150 s (killed then), exit status and message Ray's."""
    with _silent_head(kind) as address:
        child = subprocess.run([sys.executable, "-c", SILENT, address], cwd=ROOT, capture_output=True, text=True,
                               timeout=120)
    assert child.returncode == 0, (child.returncode, child.stderr[-2000:])
    first, text = child.stdout.splitlines()
    assert first == "interrupted True True"
    assert "has not answered for 2 s" in text and "out/results.msgpack" in text and "--resume" in text


def test_a_greeting_tells_an_answering_gcs_from_a_silent_or_closed_one():
    with socket.socket() as server:  # a gRPC server answers HTTP/2's preface with its SETTINGS frame at once
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        address = "127.0.0.1:%d" % server.getsockname()[1]

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
                conn.recv(64)

        threading.Thread(target=answer, daemon=True).start()
        assert ray_session._greet(address) == "answers"
    assert ray_session._greet(_closed_port()) == "refused"
    with _silent_head("stopped") as address:
        assert ray_session._greet(address) == "silent"


def test_a_gcs_that_answers_is_left_alone():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        host, port = server.getsockname()
        with GcsWatch(address=f"{host}:{port}"):
            time.sleep(ray_session.GCS_CHECK_S * (ray_session.GCS_REFUSALS + 1))
    assert not ray_session.gcs_lost()


# A main thread that does not give way to the interrupt (as a ray.get waiting for an actor the lost GCS was to
# place does not, even to a Ctrl-C): the watch syncs the results and ends the process itself, exit 3, one line.
STUCK = """
import signal, sys, time
from actors.ray_session import GcsWatch
signal.signal(signal.SIGINT, lambda *_: None)  # the interrupt changes nothing
synced = []
with GcsWatch("OUT/results.msgpack", lambda: print("synced", flush=True), address=sys.argv[1]):
    while True:
        time.sleep(1)
"""


def test_a_main_thread_that_does_not_give_way_still_ends_with_exit_3(monkeypatch):
    child = subprocess.run([sys.executable, "-c", STUCK, _closed_port()], cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
    assert child.returncode == 3, (child.returncode, child.stderr)
    assert child.stdout.strip() == "synced"  # the finished trials' records are on disk first
    lines = child.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tlbrace: error: Ray's GCS at") and "--resume" in lines[0]


def test_the_command_maps_a_lost_cluster_to_exit_3(capsys, monkeypatch):
    import cli.cmd_mutants
    from cli.main import main

    def lost(_args: object) -> int:
        raise GcsWatch("r.msgpack", address="127.0.0.1:1").lost()

    monkeypatch.setattr(cli.cmd_mutants, "run", lost)
    assert main(["mutants"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("tlbrace: error: Ray's GCS at 127.0.0.1:1 is gone") and err.count("\n") == 1


def test_a_single_trial_whose_gcs_is_lost_exits_3(capsys, monkeypatch):
    """`tlbrace run` too: its trial's wait is interrupted as a campaign's is (the watch's SIGINT stands in)."""
    import actors.trial
    import cli.cmd_run
    from cli.main import main

    def trial_on_a_lost_cluster(*_a: object, **_k: object) -> None:
        monkeypatch.setattr(ray_session, "_gcs_lost", True)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.cmd_run, "open_ray", lambda *_a, **_k: None)
    monkeypatch.setattr(cli.cmd_run, "close_ray", lambda *_a, **_k: None)
    monkeypatch.setattr(actors.trial, "run_one", trial_on_a_lost_cluster)
    assert main(["run", "anon_pages"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("tlbrace: error: Ray's GCS at") and "is gone" in err and err.count("\n") == 1


def test_a_fuzz_campaign_on_a_lost_cluster_exits_3_not_as_interrupted(capsys, monkeypatch, tmp_path):
    """`fuzz --parallel/--address` had no watch, so a lost cluster ended it as it ended stress before GcsWatch
    (Ray's own exit 1 after a minute; no end at all for a head that stopped answering). With the watch, its
    interrupt must read as the lost cluster (exit 3), not as a Ctrl-C (exit 130, "interrupted")."""
    import cli.cmd_stress
    import fuzz.run
    from cli.main import main

    def chunks_on_a_lost_cluster(*_a: object, **_k: object) -> None:  # the watch's SIGINT stands in
        monkeypatch.setattr(ray_session, "_gcs_lost", True)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.cmd_stress, "open_ray", lambda *_a, **_k: None)
    monkeypatch.setattr(cli.cmd_stress, "close_ray", lambda *_a, **_k: None)
    monkeypatch.setattr(fuzz.run, "run_ray", chunks_on_a_lost_cluster)
    import ray  # imported only: this test starts no Ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2})
    assert main(["fuzz", "--count", "2", "--parallel", "2", "--out", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("tlbrace: error: Ray's GCS at") and err.count("\n") == 1, err
