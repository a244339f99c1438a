"""Ray's GCS killed in the middle of a campaign: exit 3 (the environment failed) with one line that says where the
finished trials are, never Ray's own exit 1 (a violation's status) a minute later. actors.ray_session.GcsWatch
does it; these tests stand a closed port in for the lost GCS, a socket that never answers for a head that
vanished (SIGSTOPped, its machine gone), so no Ray is needed (test_wild_cluster.py stops a real head). (Measured with Ray: a stress
campaign whose gcs_server was SIGKILLed ended in about 13 s with exit 3, its 434 recorded trials intact; before,
after 60 s with exit 1 and Ray's "Failed to connect to GCS within 60 seconds".)"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from actors import ray_session
from actors.ray_session import GcsWatch

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


# A stand-in GCS in a process of its own: it answers HTTP/2's greeting with a SETTINGS frame after argv[1] seconds
# (0: at once; more: an overloaded machine's GCS), or with argv[2] == "never-accepts", accepts nothing at all.
FAKE_GCS = """
import socket, sys, threading, time
delay = float(sys.argv[1])
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(0 if sys.argv[2:] == ["never-accepts"] else 16)
print(server.getsockname()[1], flush=True)
def answer(conn):
    with conn:
        time.sleep(delay)
        conn.sendall(b"\\x00\\x00\\x00\\x04\\x00\\x00\\x00\\x00\\x00")
        conn.recv(64)
while sys.argv[2:] != ["never-accepts"]:
    conn, _ = server.accept()
    threading.Thread(target=answer, args=(conn,), daemon=True).start()
time.sleep(600)
"""


@contextlib.contextmanager
def _fake_gcs(delay: float, *extra: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """The fake GCS's address and process (stopped by its PID when the block ends)."""
    child = subprocess.Popen([sys.executable, "-c", FAKE_GCS, str(delay), *extra], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        yield f"127.0.0.1:{int(child.stdout.readline())}", child
    finally:
        os.kill(child.pid, signal.SIGKILL)  # SIGKILL ends a stopped process too
        child.wait()


@contextlib.contextmanager
def _silent_head(kind: str) -> Iterator[str]:
    """The address of a head that vanished without closing anything, its process SIGSTOPped: "stopped" accepts
    connections (the kernel does, for a stopped GCS) and never answers; "unreachable" lets no connection through at
    all (its accept queue is full, so the kernel drops the SYN, as a machine that is gone or cut off leaves it
    unanswered). The process is stopped as a vanished head's is: a running process that does not answer is an
    overloaded GCS, which the watch leaves alone (test_an_overloaded_gcs_that_is_alive_is_left_alone)."""
    with _fake_gcs(0, *(["never-accepts"] if kind == "unreachable" else [])) as (address, child), \
            contextlib.ExitStack() as held:
        if kind == "unreachable":
            host, port = address.split(":")
            for _ in range(2):  # the queue of listen(0) holds one; a second SYN goes unanswered
                filler = held.enter_context(socket.socket())
                filler.setblocking(False)
                filler.connect_ex((host, int(port)))
            time.sleep(0.2)
        os.kill(child.pid, signal.SIGSTOP)
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
    assert "has not answered for 2 s (its process is stopped)" in text, text
    assert "out/results.msgpack" in text and "--resume" in text


# The watch in a child of its own for ``argv[2]`` seconds; "not interrupted" when it let the campaign be.
PATIENT = SILENT.replace("time.sleep(60)", "time.sleep(float(sys.argv[2]))")
REMOTE = PATIENT.replace("from actors import ray_session\n", "from actors import ray_session, gcs_liveness\n"
                         "gcs_liveness.gcs_process_state = lambda address: None  # as a remote head: no /proc to ask\n"
                         ).replace("GCS_SILENT_S = 2.0", "GCS_SILENT_S = 5.0")


@pytest.mark.parametrize("where", ["local", "remote"])
def test_an_overloaded_gcs_that_is_alive_is_left_alone(where):
    """A GCS whose answers come later than a greeting waited (3.5-4 s here; 20 s and more on a badly overloaded
    machine): before, its silence alone made it lost, and a healthy campaign stopped with exit 3. A local one's
    process state (running, not stopped) now says it is alive; for a head on another machine (no process to look
    at) a greeting waits until the silence would count, so a late answer is an answer, and the silence that counts
    grows with the slowest answer seen."""
    delay, script, patience = (4.0, PATIENT, "10") if where == "local" else (3.5, REMOTE, "12")
    with _fake_gcs(delay) as (address, _child):
        child = subprocess.run([sys.executable, "-c", script, address, patience], cwd=ROOT, capture_output=True,
                               text=True, timeout=120)
    assert child.returncode == 0, (child.returncode, child.stderr[-2000:])
    assert child.stdout.strip() == "not interrupted", child.stdout


def test_a_remote_head_that_stops_answering_is_still_lost():
    with _silent_head("stopped") as address:
        child = subprocess.run([sys.executable, "-c", REMOTE, address, "60"], cwd=ROOT, capture_output=True,
                               text=True, timeout=120)
    assert child.returncode == 0, (child.returncode, child.stderr[-2000:])
    first, text = child.stdout.splitlines()
    assert first == "interrupted True True"
    assert "has not answered for 5 s (its machine stopped or cut off" in text, text


def test_the_process_state_of_a_local_gcs_is_read_from_proc():
    from actors.gcs_liveness import gcs_process_state

    with _fake_gcs(0) as (address, child):
        assert gcs_process_state(address) == "running"
        os.kill(child.pid, signal.SIGSTOP)
        assert gcs_process_state(address) == "stopped"
    assert gcs_process_state(_closed_port()) is None


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
# place does not, even to a Ctrl-C): the watch syncs the results and ends the process itself, exit 3, one line,
# even when the results path holds a newline.
STUCK = """
import signal, sys, time
from actors.ray_session import GcsWatch
signal.signal(signal.SIGINT, lambda *_: None)  # the interrupt changes nothing
synced = []
with GcsWatch("OUT\\nX/results.msgpack", lambda: print("synced", flush=True), address=sys.argv[1]):
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
    assert "OUT\\nX/results.msgpack" in lines[0]  # a newline in the results path is shown, not obeyed (logs.one_line)


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


# A campaign that starts on a GCS already lost (a scale grid's head stopped between two cells): ray.nodes(), its
# first question, waited for ever in C++ (deaf to signals, as this stand-in is) with no watch yet running.
BEFORE_THE_FIRST_TRIAL = """
import functools, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
import ray
from actors import campaign, ray_session
ray_session.GCS_SILENT_S = 2.0
campaign.GcsWatch = functools.partial(ray_session.GcsWatch, address=sys.argv[1])
def nodes():
    while True:
        try:
            time.sleep(1)
        except KeyboardInterrupt:
            pass
ray.nodes = nodes
from kernel_model.config import Config
from scenarios.loader import load_scenario
try:
    campaign.run_campaign(load_scenario("madv_dontneed"), Config(ordering="delayed"), campaign.CampaignOptions(trials=2))
except ray_session.ClusterLost as exc:
    print("lost:", exc)
"""


def test_a_campaign_that_starts_on_a_lost_gcs_ends_with_the_line():
    with _silent_head("stopped") as address:
        child = subprocess.run([sys.executable, "-c", BEFORE_THE_FIRST_TRIAL, address], cwd=ROOT,
                               capture_output=True, text=True, timeout=90)
    assert child.returncode == 0, (child.returncode, child.stderr[-2000:])
    assert child.stdout.startswith(f"lost: Ray's GCS at {address} has not answered"), child.stdout
