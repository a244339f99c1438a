"""What every subcommand shares with the ``tlbrace`` entry point: the exit statuses and the two errors a
subcommand raises for ``main`` to print as one line (bad input: exit 2; the machine failed: exit 3).

Its own module so that the ``cmd_*`` modules need not import the entry point that imports them (an import
cycle, issue 13), and so that ``python -m`` running the entry point as ``__main__`` still catches the same
classes the subcommands raise.
"""

from __future__ import annotations

import errno

EXIT_OK, EXIT_VIOLATION, EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_INTERNAL = 0, 1, 2, 3, 4


class UsageError(Exception):
    """Bad input that the user can fix: printed as one line, exit status 2, no traceback."""


class EnvironmentFailure(Exception):
    """The machine, not the input, failed (disk full, read-only output, Ray would not start): one line that says
    what to do, exit status 3."""


def os_error_text(exc: OSError, resume_hint: str = "") -> str:
    """One line for an OSError: what failed, where, and what to do."""
    where = f"{exc.filename}: " if exc.filename else ""
    what = exc.strerror or str(exc)
    then = f", then {resume_hint}" if resume_hint else " and run it again"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        todo = "free some space" + then
    elif exc.errno == errno.EFBIG:  # RLIMIT_FSIZE (`ulimit -f`; Python ignores SIGXFSZ) or the file system's own
        todo = "the size limit for files (the shell's `ulimit -f`, or the file system's) was reached: raise it" + then
    elif exc.errno in (errno.EMFILE, errno.ENFILE):  # RLIMIT_NOFILE (`ulimit -n`) or the system's file table
        todo = "raise the limit of open files (`ulimit -n`, to 1024 or more)" + then
    # With a campaign to resume, another --out would start it afresh: its own --out must become writable again.
    elif exc.errno == errno.EROFS:
        todo = f"remount it read-write{then}" if resume_hint else "choose a writable --out / output file"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        todo = f"give back the permission to write there{then}" if resume_hint else \
            "choose an output path you may write"
    else:
        todo = "check the path and the device, or choose another output path" + (
            f"; then {resume_hint}" if resume_hint else "")
    return f"{where}{what}: {todo}"
