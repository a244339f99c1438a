"""Reading a file the user named: only a regular file, only up to a bound, and never blocking on the open.

A FIFO would hang ``open`` (until a writer comes) and ``read`` (until it leaves); /dev/zero or another device
reads for ever. So every input (scenario TOML, event log, schedule, results file) is opened non-blocking, checked
with ``fstat`` on the open descriptor (not a ``stat`` of the name, which could be swapped in between), and read
only if it is a regular file no larger than the bound for its kind.
"""

from __future__ import annotations

import io
import os
import stat
from typing import Final

MAX_SCENARIO_BYTES: Final = 1 << 20  # 1 MiB of TOML: the library's largest file is under 4 KiB
MAX_SCHEDULE_BYTES: Final = 256 << 20  # a schedule is a few bytes per transition
MAX_LOG_BYTES: Final = 4 << 30  # 4 GiB: a million-event log is about 150 MB (bench/bench_analyze.py)


class InputFileError(ValueError):
    """The named input is not a readable regular file of bounded size; the message names it and why."""


def open_input(path: str, what: str, limit: int) -> int:
    """A descriptor (blocking again) on ``path``, which is a regular file of at most ``limit`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise InputFileError(f"{path}: cannot read the {what}: {_reason(exc)}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputFileError(f"{path}: the {what} is {file_kind(st.st_mode)}; expected a regular file")
        if st.st_size > limit:
            raise InputFileError(f"{path}: the {what} is {st.st_size} bytes; at most {limit} are read")
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_input(path: str | os.PathLike[str], what: str, limit: int) -> bytes:
    """The whole of a regular file of at most ``limit`` bytes (InputFileError otherwise)."""
    path = os.fspath(path)
    fd = open_input(path, what, limit)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = _read_at_most(f, os.fstat(fd).st_size, limit + 1)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the {what}: {_reason(exc)}") from None
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew after the check
        raise InputFileError(f"{path}: the {what} is over {limit} bytes; at most {limit} are read")
    return data


def _read_at_most(f: io.BufferedReader, size: int, most: int) -> bytes:
    """Up to ``most`` bytes of a file ``size`` bytes long when it was opened. ``read(most)`` allocates ``most``
    bytes before it reads one: under `ulimit -v 3000000` every log and results file (``most`` = 4 GiB) was "out
    of memory under this process's address-space limit", a 3 KB log included. A file that grew since is read on
    in bounded chunks, up to ``most``."""
    parts = [f.read(min(size + 1, most))]
    got = len(parts[0])
    while got > size and got < most:
        chunk = f.read(min(1 << 20, most - got))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts) if len(parts) > 1 else parts[0]


def check_input(path: str | os.PathLike[str], what: str, limit: int) -> None:
    """The same checks as read_input, for a reader that opens the file itself afterwards."""
    os.close(open_input(os.fspath(path), what, limit))


def file_kind(mode: int) -> str:
    """'a directory', 'a FIFO', 'a device', ... for a message (the kind a path's mode says)."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return "the name contains a NUL byte" if "null" in str(exc) else str(exc)
