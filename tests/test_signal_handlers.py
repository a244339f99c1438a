"""tlbrace's signal handlers (actors/sigint.py, cli.main.calm_shutdown): one SIGTERM-as-Ctrl-C for every command,
which gives a handler installed meanwhile its place; and none of them survives into a forked process, where a
handler that only notes SIGTERM kept an idle multiprocessing worker alive through Pool.terminate (CI hung 16
minutes in test_analyze_cache). No test here asserts a duration: the timeouts are hang guards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from actors.sigint import sigint_deferred, sigterm_as_interrupt

ROOT = Path(__file__).resolve().parent.parent
HANG_GUARD_S = 120


def test_sigterm_as_interrupt_gives_back_the_handler_from_before():
    before = signal.getsignal(signal.SIGTERM)
    with sigterm_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) is not before
        with sigterm_as_interrupt():  # nested (the command's, then a campaign's): the outer one still holds
            pass
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs between two bytecodes here
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_as_interrupt_leaves_a_handler_installed_meanwhile():
    """ray.init installs Ray's SIGTERM handler inside the command: Ray means it to stay once the command ends."""

    def rays(signum: int, frame: Any) -> None:
        pass

    before = signal.getsignal(signal.SIGTERM)
    try:
        with sigterm_as_interrupt():
            signal.signal(signal.SIGTERM, rays)
        assert signal.getsignal(signal.SIGTERM) is rays
    finally:
        signal.signal(signal.SIGTERM, before)


def test_every_command_takes_sigterm_as_the_one_interrupt_that_critical_sections_hold_back(monkeypatch, capsys):
    """cli.main had a SIGTERM handler of its own, which sigint_deferred did not recognise: a SIGTERM in a
    critical section outside a campaign raised at once instead of waiting for the section's end."""
    import cli.cmd_mutants
    from cli.main import main

    order: list[str] = []

    def command(args: Any) -> int:
        with sigint_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            order.append("section finished")
        order.append("not reached")
        return 0

    monkeypatch.setattr(cli.cmd_mutants, "run", command)
    assert main(["mutants"]) == 130
    assert order == ["section finished"]
    assert capsys.readouterr().err.strip() == "tlbrace: interrupted"


# A process that installs one of tlbrace's handlers, forks a Pool as analysis.analyze.analyze_streamed does (no
# initializer here: the handlers themselves must not survive the fork), has every worker busy, and terminates it.
POOL_CHILD = """
import multiprocessing, signal, sys
from actors import sigint
import cli.main

ctx = multiprocessing.get_context("fork")
started = ctx.Semaphore(0)
never = ctx.Event()

def busy(_: int) -> None:
    started.release()
    never.wait()

which = sys.argv[1]
sections = []  # entered and kept (a context manager nobody refers to is closed at once, its handler restored)
if which == "calm_shutdown":
    cli.main.calm_shutdown()
if which in ("sigterm_as_interrupt", "sigint_deferred"):
    sections.append(sigint.sigterm_as_interrupt())
if which == "sigint_deferred":
    sections.append(sigint.sigint_deferred())
for section in sections:
    section.__enter__()
pool = ctx.Pool(2)
pool.map_async(busy, range(2))
for _ in range(2):
    assert started.acquire(timeout=60), "the workers never started"
pool.terminate()
pool.join()
print("joined", file=sys.__stdout__, flush=True)  # calm_shutdown sends sys.stdout to stderr: the command is over
"""


@pytest.mark.parametrize("handler", ["none", "calm_shutdown", "sigterm_as_interrupt", "sigint_deferred"])
def test_a_pool_forked_under_each_handler_is_terminated(handler):
    """Before: with calm_shutdown's or sigint_deferred's handler (each notes a SIGTERM and returns), the workers
    took Pool.terminate's SIGTERM as a note and went on waiting; the join never returned."""
    child = subprocess.Popen([sys.executable, "-c", POOL_CHILD, handler], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = child.communicate(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)  # its own session: the child and the workers it forked
        child.communicate()
        pytest.fail(f"Pool.terminate hung with {handler}'s handler inherited by the workers")
    assert child.returncode == 0 and out.strip() == "joined", (child.returncode, err[-2000:])
    assert "Traceback" not in err and "finishing the shutdown" not in err, err  # the workers died quietly


# Forked from a fresh interpreter, never from the pytest worker itself: a worker that has run the wild tests is a
# Ray driver, and forking a process with Ray's gRPC threads running can kill it (CI, session 15: an xdist worker
# went "node down" after the Ray group, and the run then waited for it for ever).
FORK_CHILD = """
import os, signal, sys, time
from actors.sigint import sigterm_as_interrupt

pid = os.fork()
if pid == 0:
    status = 1
    try:
        with sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    except KeyboardInterrupt:
        status = 0
    finally:
        os._exit(status)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), flush=True)
"""


def test_a_handler_installed_in_a_forked_child_works_there():
    """parent_only is about inheritance: a forked process that installs the handler itself has it."""
    child = subprocess.run([sys.executable, "-c", FORK_CHILD], cwd=ROOT, capture_output=True, text=True,
                           timeout=HANG_GUARD_S)
    assert child.returncode == 0 and child.stdout.strip() == "0", (child.returncode, child.stderr[-2000:])
