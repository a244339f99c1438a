"""Hold a Ctrl-C back until a short critical section is over.

Python raises KeyboardInterrupt between any two bytecodes. Where two records must change together (a campaign's
counters and its results file), the section runs with SIGINT noted instead of raised; the KeyboardInterrupt is
raised when the section ends, so the caller's ordinary ``except KeyboardInterrupt`` still sees it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
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
