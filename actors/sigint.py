"""Hold a Ctrl-C back until a short critical section is over.

Python raises KeyboardInterrupt between any two bytecodes. Where two records must change together (a campaign's
counters and its results file), the section runs with SIGINT noted instead of raised; the KeyboardInterrupt is
raised when the section ends, so the caller's ordinary ``except KeyboardInterrupt`` still sees it. A campaign also
takes SIGTERM as a Ctrl-C (``sigterm_as_interrupt``), held back by the same sections.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


@contextmanager
def sigint_deferred() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals (and may install handlers)
        return
    caught: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)

    previous = signal.signal(signal.SIGINT, note)
    # Inside sigterm_as_interrupt a SIGTERM is a Ctrl-C too, and is held back the same way (any other SIGTERM
    # handler, Ray's native one included, is left alone).
    term = signal.getsignal(signal.SIGTERM) is _term_interrupt
    if term:
        signal.signal(signal.SIGTERM, note)
    try:
        yield
    finally:
        # None: a handler installed outside Python; Python's own is the closest faithful restore.
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        if term:
            signal.signal(signal.SIGTERM, _term_interrupt)
        if caught:
            raise KeyboardInterrupt


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill PID``, ``timeout 8h tlbrace stress``) stops like a Ctrl-C for the duration: the running
    trials are abandoned, the summary printed, the campaign resumable. Without it Ray's handler (installed by
    ray.init) dumped a native stack trace ("*** SIGTERM received ... PC: @ ...") and exited 15 with no summary."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    previous = signal.signal(signal.SIGTERM, _term_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextmanager
def signals_held_through_ray_init() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until ray.init has returned, then stop the command as a Ctrl-C (the caller shuts
    the half-started session down). ray.init installs its own SIGTERM handler first thing (``sys.exit(15)`` via
    ``ray._private.utils.set_sigterm_handler``): a SIGTERM during the rest of it exited 15 in mid-start with no
    message and left the cluster's DashboardAgent and RuntimeEnvAgent running, orphaned. That handler is held back
    for the duration and installed once ray.init is done, as Ray meant it to be."""
    import ray._private.utils as ray_utils

    wanted: list[Any] = []
    original = ray_utils.set_sigterm_handler
    ray_utils.set_sigterm_handler = wanted.append
    try:
        with sigterm_as_interrupt():
            with sigint_deferred():
                yield
    finally:
        ray_utils.set_sigterm_handler = original
        if wanted and threading.current_thread() is threading.main_thread():
            original(wanted[-1])


def _term_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
