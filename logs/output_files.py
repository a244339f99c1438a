"""Writing a file under ``--out`` whose name the tool chose (a schedule, a fuzz scenario, a counterexample log):
only a regular file (or nothing) may stand at that name, and the file appears whole or not at all. The command line's own paths are checked at the door
(cli.options); these names exist only once something is found, so they are checked when written. A schedule is
written aside and renamed over its name, which would replace a FIFO or a device standing there; ``open`` for
writing a FIFO waits for a reader for ever."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

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


def foreign_kind(path: str | os.PathLike[str]) -> str | None:
    """What stands at ``path`` if a file tlbrace rewrites there may not replace it ('a FIFO', 'a device', 'a
    directory', ...); None for nothing, a regular file or a symbolic link (the link itself is replaced, so a
    dangling one never has the file created where it points)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        return None
    return file_kind(mode)


@contextmanager
def replaced_whole(path: str | os.PathLike[str], what: str) -> Iterator[str]:
    """A fresh, empty temporary file beside ``path`` to write; renamed over ``path`` when the block succeeds,
    removed when it fails. Its name is unique (mkstemp, O_EXCL): two commands writing one --out at once (two
    explores of one scenario) each rename a whole file of their own; with one shared '.tmp' name they truncated
    each other's copy, and the second rename found nothing (exit 3 after the search). A crash leaves the old
    file or the new one, never half of one."""
    path = os.fspath(path)
    check_output_file(path, what)
    try:
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp",
                                   dir=os.path.dirname(path) or ".")
    except OSError as exc:
        # The temporary name is tlbrace's own: on a read-only --out the line named "report.html.5erbxy2n.tmp",
        # a file the user never asked for and cannot find.
        exc.filename = path
        raise
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # what open() would have created (mkstemp's is 0600)
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.filename in (None, tmp):
            # A failed write or fsync (disk full, a file size limit) names no file: the error line said only "File
            # too large", and the user could not tell which of the outputs it was.
            exc.filename = path
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
