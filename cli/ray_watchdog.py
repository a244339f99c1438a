"""A watchdog over the embedded Ray cluster's processes, for a driver that dies without shutting Ray down.

Ray shares the fate of the GCS and the raylet with the driver that started them (PR_SET_PDEATHSIG): a SIGKILLed
driver takes them along at once. Not so the raylet's own children: its dashboard and runtime-env agents and its
workers outlived a SIGKILLed ``tlbrace stress`` by 30 to 60 s (an agent that finds its raylet gone first tries to
report that to the GCS, which is gone too, and waits out the GCS client's reconnect timeout), holding memory and
CPU on a machine the user may be about to run the same command on again with ``--resume``.

So a wild command that starts the embedded cluster also starts this watchdog: a small Python child, in a session
of its own (a Ctrl-C or a hang-up of the terminal's job does not reach it), that reads a pipe from the driver.
While the pipe is open it notes, every WATCH_INTERVAL_S, each process below the driver that was not there when it
started (by PID and start time: those are what the driver started since, Ray's among them). When the pipe ends
without the word the driver says on a normal shutdown, the driver is dead: the watchdog SIGKILLs every noted
process still alive with the same start time (nothing else: no process group, no name, no ``ray stop``; the GCS
and raylet they served are gone, so there is nothing to stop gracefully), and exits.

Linux only (/proc); elsewhere, or when the child cannot start, the command runs without it, as before.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from typing import Final

WATCH_INTERVAL_S: Final = 0.5
READY_TIMEOUT_S: Final = 10.0  # a loaded 2-core machine can take seconds to start a Python
STOP: Final = b"stop\n"  # what a driver that shut Ray down itself writes before closing the pipe

# The watchdog's program: stdlib only, so that it starts in tens of milliseconds and imports nothing of ours.
_PROGRAM: Final = r"""
import os, select, signal, sys
driver, interval, me = int(sys.argv[1]), float(sys.argv[2]), os.getpid()

def table():
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            out[int(entry)] = (int(fields[1]), fields[19], fields[0])
    return out

def below(procs):
    children = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, [driver]
    while todo:
        for child in children.get(todo.pop(), []):
            if child != me and child not in found:
                found[child] = procs[child][1]
                todo.append(child)
    return found

signal.signal(signal.SIGINT, signal.SIG_IGN)
there_before = set(below(table()).items())
os.write(1, b"r")
os.close(1)
noted = {}
words = b""
while True:
    ready, _, _ = select.select([0], [], [], interval)
    if ready:
        chunk = os.read(0, 64)
        if not chunk:
            break
        words += chunk
        continue
    procs = table()
    noted = {pid: start for pid, start in noted.items() if pid in procs and procs[pid][1] == start}
    noted.update((pid, start) for pid, start in below(procs).items() if (pid, start) not in there_before)
if b"stop" in words:
    sys.exit(0)
procs = table()
for pid, start in noted.items():
    if pid in procs and procs[pid][1] == start and procs[pid][2] != b"Z":
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
"""


class Watchdog:
    """The running watchdog of this driver: ``stop()`` once Ray was shut down (or never started), ``stop(False)``
    when that shutdown failed (the watchdog then stops what it noted, as if the driver had died)."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        self.child = child

    def stop(self, clean: bool = True) -> None:
        stdin = self.child.stdin
        if stdin is None or stdin.closed:
            return
        try:
            if clean:
                stdin.write(STOP)
            stdin.close()
        except OSError:
            pass
        try:
            self.child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.child.kill()  # our own child, by its PID
            self.child.wait()


def start() -> Watchdog | None:
    """A watchdog over the processes this driver starts from now on (call it before ray.init)."""
    if not sys.platform.startswith("linux") or not os.path.isdir("/proc/self"):
        return None
    try:
        child = subprocess.Popen([sys.executable, "-c", _PROGRAM, str(os.getpid()), str(WATCH_INTERVAL_S)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
    except OSError:
        return None
    watchdog = Watchdog(child)
    assert child.stdout is not None
    # It says "r" once it knows which processes were there before it: only what starts after that is noted.
    ready, _, _ = select.select([child.stdout], [], [], READY_TIMEOUT_S)
    if not ready or child.stdout.read(1) != b"r":
        watchdog.stop()
        return None
    child.stdout.close()
    return watchdog


_BY_SESSION: dict[int, Watchdog] = {}  # id(session) -> its watchdog (a Session has slots, no room for one)


def attach(session: object, watchdog: Watchdog | None) -> None:
    if watchdog is not None:
        _BY_SESSION[id(session)] = watchdog


def detach(session: object, clean: bool) -> None:
    watchdog = _BY_SESSION.pop(id(session), None)
    if watchdog is not None:
        watchdog.stop(clean)
