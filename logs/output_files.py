"""Writing a file under ``--out`` whose name the tool chose (a schedule, a fuzz scenario, a counterexample log):
only a regular file (or nothing) may stand at that name. The command line's own paths are checked at the door
(cli.options); these names exist only once something is found, so they are checked when written. A schedule is
written aside and renamed over its name, which would replace a FIFO or a device standing there; ``open`` for
writing a FIFO waits for a reader for ever."""

from __future__ import annotations

import os
import stat

from scenarios.input_files import file_kind


class OutputFileError(ValueError):
    """An output name is taken by something that is not a regular file; the message names it (exit 2)."""


def check_output_file(path: str | os.PathLike[str], what: str) -> None:
    """Raise OutputFileError unless ``path`` is absent or (through any symlink) a regular file."""
    path = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError:
        return  # e.g. a dangling or looping symlink: the write itself says what is wrong
    if not stat.S_ISREG(mode):
        raise OutputFileError(f"{path}: the {what} would go there, but it is {file_kind(mode)}; expected a "
                              "regular file or nothing (move it, or choose another --out)")
