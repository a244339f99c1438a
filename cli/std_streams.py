"""The standard streams of a ``tlbrace`` process, made usable whatever the caller did to them: closed descriptors
are opened on /dev/null, and a reader that leaves (`tlbrace explore X | head -3`, `2>&1 | true`) makes the rest
of the output go nowhere instead of ending the command. The command then finishes its work, writes its files and
exits with its own status.

Before, a reader gone mid-output ended the command by whatever raised first: rich's Console.on_broken_pipe exits
1, the status of a violation (`tlbrace scenarios | true` "found" one), print() raised BrokenPipeError, which
cli.main turned into exit 0 (`explore X --format diagram | head -1` of a violating scenario "found" none), and a
broken stderr turned an error's exit 2 into 1.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO


def usable() -> None:
    """Closed standard descriptors opened on /dev/null; the real stdout and stderr wrapped in ReaderMayLeave
    (streams a caller replaced, e.g. pytest's capture, are left alone)."""
    _open_closed()
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is getattr(sys, f"__{name}__") and not isinstance(stream, ReaderMayLeave):
            setattr(sys, name, ReaderMayLeave(stream))


class ReaderMayLeave:
    """A text stream whose reader may leave: once a write or flush meets EPIPE, its descriptor points at /dev/null
    and writing goes on there (what was buffered included), so nothing raises."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            to_devnull(self._stream.fileno())
            return len(text)
        except OSError as exc:
            raise self._named(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            to_devnull(self._stream.fileno())
            self._stream.flush()
        except OSError as exc:
            raise self._named(exc) from None

    def _named(self, exc: OSError) -> OSError:
        """Another failed write (`tlbrace scenarios > /dev/full`: ENOSPC) says it was this stream's: the error line
        said only "No space left on device", and the user looked for a full disk under --out."""
        if exc.filename is None:
            exc.filename = "standard output" if self._stream.fileno() == 1 else "standard error"
        return exc

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, errors, reconfigure, buffer, ...
        return getattr(self._stream, name)


def say(line: str) -> None:
    """One line on stderr. Its reader may be gone (`tlbrace explore nosuch 2>&1 | true`): the BrokenPipeError
    raised while the error was printed ended the process with exit 1, the status of a violation, in place of
    the error's own; now the line is dropped and the status stands."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        to_devnull(2)


def to_devnull(fd: int) -> None:
    """Point a standard descriptor whose reader left at /dev/null, so that what is still buffered for it (and the
    interpreter's flush at exit) goes nowhere instead of failing again."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    except OSError:
        pass


def _open_closed() -> None:
    """Standard descriptors the caller closed (`tlbrace ... >&-`, `2>&-`, `<&-`, a daemon's job) are opened on
    /dev/null, as if the output had been sent there. A closed one left sys.stdout (or stderr, stdin) None: every
    command ended in a traceback with exit 1, the status of a violation (and `explore nosuch 2>&-` exited 1, not
    2); and the first file tlbrace opened took the free descriptor, so whatever wrote to "stdout" (Ray's C++
    logging writes to descriptors 1 and 2 directly) would have written into a results file or a log."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:  # EBADF: closed
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:  # the lowest free descriptor: fd itself when the ones below it are open
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:  # Python found it closed at startup
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", encoding="utf-8", errors="backslashreplace",
                                    closefd=False, buffering=1 if fd == 2 else -1))
