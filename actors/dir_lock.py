"""A campaign directory belongs to one driver: an exclusive ``flock`` on ``DIR/.tlbrace.lock`` for the whole run.

Two drivers appending to one results file from their own offsets lose each other's records, and a fresh run that
moves the old results aside could rename a file another driver is writing. So the driver takes the lock before it
reads or writes anything in the directory, and holds it until it has closed its files. The kernel drops a flock
when its holder dies (SIGKILL included), so a lock is never stale. The lock file holds the holder's pid, for the
message a second driver gets; it is never deleted (deleting it would let two drivers lock two different files).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from dataclasses import dataclass
from typing import Final

LOCK_NAME: Final = ".tlbrace.lock"
PID_WAIT_S: Final = 1.0  # how long a refused driver waits for the holder's pid to appear in the lock file


class DirectoryBusy(RuntimeError):
    """Another live driver holds the directory; the message names its pid."""


@dataclass(slots=True)
class DirLock:
    path: str
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = -1


class NotALockFile(DirectoryBusy):
    """Something other than a regular file holds the lock file's name; the message names it and what to do."""


def lock_directory(directory: str) -> DirLock:
    """Lock ``directory`` (which exists) for this process, or raise DirectoryBusy at once (never waits).

    The lock file is opened without following a symbolic link and used only if it is a regular file: through a
    symbolic link to a file of the user's, the driver truncated that file and wrote its pid into it; a directory
    there was an OSError (exit 3, as if the disk had failed)."""
    path = os.path.join(directory, LOCK_NAME)
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.EISDIR):
            raise
        raise NotALockFile(f"{path}: is {'a symbolic link' if exc.errno == errno.ELOOP else 'a directory'}; "
                           f"expected tlbrace's lock file (a regular file): move it away") from None
    try:
        kind = os.fstat(fd).st_mode
        if not stat.S_ISREG(kind):
            raise NotALockFile(f"{path}: is not a regular file; expected tlbrace's lock file: move it away")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder_pid(fd)
        os.close(fd)
        who = f"pid {holder}" if holder else "another process"
        raise DirectoryBusy(f"{directory}: another tlbrace campaign ({who}) is running in this directory; wait "
                            f"for it to end, or use another --out") from None
    except BaseException:
        os.close(fd)
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # the lock holds without the pid (a full disk): the message then says "another process"
    return DirLock(path, fd)


def _holder_pid(fd: int) -> int | None:
    """The holder writes its pid just after it takes the lock: a driver that lost the race by microseconds may
    look before that write, so it looks again for a moment (tests/test_faults.py starts two drivers at once)."""
    deadline = time.monotonic() + PID_WAIT_S
    while (pid := _read_pid(fd)) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return pid


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
