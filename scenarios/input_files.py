"""Reading a file the user named: a regular file or a pipe, only up to a bound, and never blocking on the open.

Every input (scenario TOML, event log, schedule, results file) is opened non-blocking, checked with ``fstat`` on
the open descriptor (not a ``stat`` of the name, which could be swapped in between), and read only if it is a
regular file no larger than the bound for its kind, or a pipe. /dev/zero or another device reads for ever and is
refused.

A pipe (`tlbrace analyze <(zcat run.msgpack.gz)`, `/dev/stdin` fed by `cat`, a named FIFO) is what a kernel
engineer pipes a decompressed or remote file through, and each of its bytes can be read only once. So it is read
to its end (up to the bound: a writer that never stops is refused past it) the first time a command reads it,
and kept: a command that reads its input twice (analyze tries the parallel reader, then the serial one; replay
looks at a file's first bytes to tell a log from a schedule) gets the same bytes the second time. The read waits
for a writer as `cat` does, and Ctrl-C ends the wait. An input that must be opened again by another process or
rewritten in place (a stress campaign's results file on --resume, a scale run's plots) is read only as a
regular file (open_input), which says so.

``-`` names standard input wherever a command reads an input once (a scenario, a log, a schedule: `zcat
run.msgpack.gz | tlbrace analyze -`), as `cat -` does; it is read to its end once and kept, as a pipe is. A
terminal on standard input is refused (the command would wait for typing no one meant), and so is an empty one.
Where a path must be a regular file, or names a directory or an output, ``-`` is refused saying why (``./-``
names a file called '-').
"""

from __future__ import annotations

import io
import os
import select
import stat
import sys
from typing import Final

MAX_SCENARIO_BYTES: Final = 1 << 20  # 1 MiB of TOML: the library's largest file is under 4 KiB
MAX_SCHEDULE_BYTES: Final = 256 << 20  # a schedule is a few bytes per transition
MAX_LOG_BYTES: Final = 4 << 30  # 4 GiB: a million-event log is about 150 MB (bench/bench_analyze.py)
STDIN: Final = "-"  # the name that means standard input, as for cat and tar
WRITER_NOTE_S: Final = 2  # a pipe silent this long gets a line on stderr saying what the command waits for


class InputFileError(ValueError):
    """The named input is not a readable regular file of bounded size; the message names it and why."""


def open_input(path: str, what: str, limit: int) -> int:
    """A descriptor (blocking again) on ``path``, which is a regular file of at most ``limit`` bytes."""
    if path == STDIN:
        raise InputFileError(f"-: standard input cannot be the {what}: it is read once, and this {what} is opened "
                             "again; expected a regular file (save it first: cat > FILE; ./- for a file named '-')")
    fd = _open_nonblocking(path, what)
    try:
        st = os.fstat(fd)
        if stat.S_ISFIFO(st.st_mode):
            raise InputFileError(f"{path}: the {what} is a FIFO (a pipe), read only where the command line names "
                                 "an input read once: expected a regular file (save it first: cat > FILE)")
        if not stat.S_ISREG(st.st_mode):
            raise InputFileError(f"{path}: the {what} is {file_kind(st.st_mode)}; expected a regular file")
        if st.st_size > limit:
            raise InputFileError(f"{path}: the {what} is {st.st_size} bytes; at most {limit} are read")
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_input(path: str | os.PathLike[str], what: str, limit: int, *, pipes: bool = False) -> bytes:
    """The whole of a regular file of at most ``limit`` bytes, or with ``pipes`` of a pipe (InputFileError
    otherwise). Only a file the user named is read from a pipe: a FIFO that a glob or a directory's listing found
    (a campaign's logs, a scale run's plots) would wait for a writer that never comes."""
    path = os.fspath(path)
    if path == STDIN and pipes:
        return read_stdin(what, limit)
    piped = _read_pipe(path, what, limit) if pipes else None
    if piped is not None:
        return piped
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


def read_head(path: str, what: str, limit: int, size: int = 64) -> bytes:
    """The first ``size`` bytes of an input read_input accepts with ``pipes`` (a pipe is read whole, and kept for
    the reader that comes next)."""
    if path == STDIN:
        return read_stdin(what, limit)[:size]
    piped = _read_pipe(path, what, limit)
    if piped is not None:
        return piped[:size]
    fd = open_input(path, what, limit)
    try:
        return os.pread(fd, size, 0)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the {what}: {_reason(exc)}") from None
    finally:
        os.close(fd)


# A pipe's bytes, by its name and inode, once read: its second reader would find it empty.
_PIPED: dict[tuple[str, int, int], bytes] = {}


def _read_pipe(path: str, what: str, limit: int) -> bytes | None:
    """The whole of ``path`` when it is a pipe or FIFO (read now, or earlier by this process); None when it is
    not one (open_input then says what else it is)."""
    fd = _open_nonblocking(path, what)
    try:
        st = os.fstat(fd)
        if not stat.S_ISFIFO(st.st_mode):
            return None
        key = (path, st.st_dev, st.st_ino)
        if key not in _PIPED:
            _PIPED[key] = _drain(fd, path, what, limit)
        return _PIPED[key]
    finally:
        os.close(fd)


def read_stdin(what: str, limit: int) -> bytes:
    """The whole of standard input (``-``), read once and kept: a pipe or FIFO as _drain reads one, a redirected
    file (`< FILE`) from where its offset stands, up to ``limit`` bytes. A terminal is refused, as an empty input
    is (a closed one was opened on /dev/null by cli.std_streams)."""
    key = (STDIN, 0, 0)
    if key in _PIPED:
        return _PIPED[key]
    try:
        st = os.fstat(0)
    except OSError:
        raise InputFileError(f"-: the {what} is to come on standard input, which is closed") from None
    if os.isatty(0):
        raise InputFileError(f"-: the {what} is to come on standard input, which is a terminal: pipe it or "
                             f"redirect it (tlbrace ... - < FILE)")
    if stat.S_ISDIR(st.st_mode):
        raise InputFileError(f"-: standard input is a directory; expected the {what}")
    data = _drain(0, "standard input", what, limit)
    if not data:
        raise InputFileError(f"-: standard input is empty; expected the {what} on it (e.g. cat FILE | tlbrace ... -)")
    _PIPED[key] = data
    return data


def _drain(fd: int, path: str, what: str, limit: int) -> bytes:
    """Everything a pipe's writers send until the last one closes it, waiting as `cat` does (a named FIFO no one
    has opened for writing yet is waited for too: a read would find it at its end at once)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    parts: list[bytes] = []
    got = 0
    if not poller.poll(WRITER_NOTE_S * 1000):  # nothing yet: a command silent for ever looks hung
        print(f"tlbrace: waiting for a writer on {path} (a FIFO): Ctrl-C to stop", file=sys.stderr, flush=True)
    while True:
        poller.poll()
        try:
            chunk = os.read(fd, min(1 << 20, limit + 1 - got))
        except BlockingIOError:
            continue
        except OSError as exc:
            raise InputFileError(f"{path}: cannot read the {what}: {_reason(exc)}") from None
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        got += len(chunk)
        if got > limit:
            raise InputFileError(f"{path}: the {what} (a pipe) sent over {limit} bytes; at most {limit} are read")


def _open_nonblocking(path: str, what: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise InputFileError(f"{path}: cannot read the {what}: {_reason(exc)}") from None


# The first bytes of the compressors a log or schedule is kept under (RFC 1952, xz, zstd, bzip2, LZ4 frames), and
# the command that reads each one back.
_COMPRESSED: Final = ((b"\x1f\x8b", "gzip", "zcat"), (b"\xfd7zXZ\x00", "xz", "xzcat"),
                      (b"\x28\xb5\x2f\xfd", "zstd", "zstdcat"), (b"BZh", "bzip2", "bzcat"),
                      (b"\x04\x22\x4d\x18", "LZ4", "lz4cat"))


def compressed(path: str, data: bytes) -> str | None:
    """"PATH: gzip-compressed: ..." with the pipe that reads it, when ``data`` starts as a compressed file does
    (`tlbrace analyze run.msgpack.gz` said only "not a tlbrace log"); None otherwise."""
    for magic, name, cat in _COMPRESSED:
        if data.startswith(magic):
            return f"{path}: {name}-compressed; expected it decompressed, e.g. piped in as -: {cat} {path} | tlbrace ... -"
    return None


def file_kind(mode: int) -> str:
    """'a directory', 'a FIFO', 'a device', ... for a message (the kind a path's mode says)."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError) and exc.filename is not None and not os.path.isabs(exc.filename):
        try:
            os.getcwd()
        except FileNotFoundError:  # the file may well be there, in the directory deleted under the shell
            return ("the current directory no longer exists (deleted after the shell entered it): cd to an existing "
                    "directory, or give an absolute path")
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return "the name contains a NUL byte" if "null" in str(exc) else str(exc)
