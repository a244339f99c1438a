"""tlbrace's signal handlers: SIGTERM taken as a Ctrl-C, and a Ctrl-C held back until a short critical section is
over; none of them outlives a fork.

Python raises KeyboardInterrupt between any two bytecodes. Where two records must change together (a campaign's
counters and its results file), the section runs with SIGINT noted instead of raised; the KeyboardInterrupt is
raised when the section ends, so the caller's ordinary ``except KeyboardInterrupt`` still sees it. Every command
takes SIGTERM as a Ctrl-C (``sigterm_as_interrupt``, around the whole command in cli.main), held back by the same
sections.

A process forked while one of these handlers is installed (analyze's judge pool, fuzz's explorers) does not keep
it: in the child it is the signal's default again (``parent_only``). A handler that only notes a signal, inherited
by an idle multiprocessing worker, turned Pool.terminate's SIGTERM into nothing, and the parent's join waited for
that worker forever (CI: 16 minutes in test_analyze_cache; tests/test_signal_handlers.py).
"""

from __future__ import annotations

import os
import signal
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeVar

Handler = TypeVar("Handler", bound=Callable[[int, "FrameType | None"], Any])

_PARENT_ONLY: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()


def parent_only(handler: Handler) -> Handler:
    """``handler``, marked as the installing process's own: a forked child starts with the default instead."""
    _PARENT_ONLY.add(handler)
    return handler


def _defaults_in_forked_child() -> None:
    """os.fork's after-child hook (multiprocessing's fork context calls os.fork): SIGTERM kills, as in any fresh
    process, and a Ctrl-C is Python's KeyboardInterrupt again. Only the handlers marked parent_only are replaced;
    anyone else's (Ray's, a test's) are the caller's business."""
    defaults = {signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler}
    for signum, default in defaults.items():
        try:
            if signal.getsignal(signum) in _PARENT_ONLY:
                signal.signal(signum, default)
        except (TypeError, ValueError):  # not hashable / not the main thread: leave it
            pass


os.register_at_fork(after_in_child=_defaults_in_forked_child)


@contextmanager
def sigint_deferred() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals (and may install handlers)
        return
    caught: list[int] = []

    @parent_only
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
    """SIGTERM (``kill PID``, ``timeout 8h tlbrace stress``) stops like a Ctrl-C for the duration: a search ends with
    "interrupted", a campaign's running trials are abandoned, the summary printed, the campaign resumable. Without
    it Ray's handler (installed by ray.init) dumped a native stack trace ("*** SIGTERM received ... PC: @ ...") and
    exited 15 with no summary, and explore, history and fuzz died of SIGTERM's default without a word.

    At the end the handler from before comes back only if SIGTERM is still this one's: a handler installed
    meanwhile stays (ray.init's, which the wild commands install once Ray is up, as Ray means it to be)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _term_interrupt)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is _term_interrupt:
            # None: a handler installed outside Python; the default is the closest faithful restore.
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


@parent_only
def _term_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
