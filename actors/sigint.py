"""Ctrl-C in a campaign: hold it back across a short critical section, and never lose it.

Python raises KeyboardInterrupt between any two bytecodes. Where two records must change together (a campaign's
counters and its results file), the section runs with SIGINT noted instead of raised; the KeyboardInterrupt is
raised when the section ends, so the caller's ordinary ``except KeyboardInterrupt`` still sees it.

A library may swallow a SIGINT: Ray defers SIGINT while it submits a task (ray._private.utils.DeferSigint) and
drops it if an exception is in flight when it is done. ``sigint_watched`` sees every SIGINT anyway, through
the signal wakeup fd, to which CPython's C-level handler writes the signal number whatever Python-level handler
is installed.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def sigint_deferred() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals (and may install handlers)
        return
    caught: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        # None: a handler installed outside Python; Python's own is the closest faithful restore.
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        if caught:
            raise KeyboardInterrupt


@contextmanager
def sigint_watched() -> Iterator[Callable[[], None]]:
    """Yield ``check()``, to call once per turn of a loop: it raises KeyboardInterrupt when a SIGINT arrived
    and, one turn later, has still not been raised (a handler swallowed it). One turn of grace, because the
    wakeup byte is written before the Python-level handler runs; by the next turn that handler has run (and
    raised, unless something swallowed it), so a Ctrl-C is never raised twice. Main thread only (elsewhere
    check does nothing); the wakeup fd in place before is restored at the end."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    seen = False

    def check() -> None:
        nonlocal seen
        if seen:
            raise KeyboardInterrupt  # seen a turn ago and not raised since: it was swallowed
        try:
            seen = signal.SIGINT in os.read(read_end, 4096)
        except BlockingIOError:
            pass

    try:
        yield check
    finally:
        signal.set_wakeup_fd(previous)
        os.close(read_end)
        os.close(write_end)
