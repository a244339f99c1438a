"""A campaign whose results file was deleted while it ran (``rm -rf`` of its --out, or of the file), or moved away
(``mv`` of its --out or of the file): its records are saved and the campaign stops, with one line saying where they
went.

What a user expects: nothing finished is lost, and the campaign can go on. Before, the driver went on appending to
the deleted file (an open descriptor keeps a file's data alive until it is closed), recreated --out for the next
failing trial's log, printed "results: OUT/results.msgpack", a file that was not there, and exited 0 or 1: every
recorded trial was lost without a word. Now, as soon as the writer sees the file deleted (ResultsWriter.unlinked,
checked after every record), the campaign stops; the deleted file's bytes, still readable through the descriptor,
are written back to OUT/results.msgpack (OUT made again and locked again: the old lock file went with it), with
the logs of the failing trials this driver ran (held in memory until the campaign ends), so that the same command
with --resume goes on. If OUT cannot be made again, or another campaign has taken it meanwhile, they go to a new
directory of their own under the system's temporary directory, named in the line; resuming there works the same.
A moved file is handled the same way (ResultsWriter.displaced): the campaign stops and its records are written back
to --out, where --resume looks; the moved copy is left as it is, and the line names it. (Following the move instead
would leave the command's own --out without its results, and its next failing log in a directory made again.)
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable

from actors.dir_lock import LOCK_NAME, DirectoryBusy, DirLock, lock_directory
from actors.trial import TrialResult
from logs.results_file import FILE_NAME, ResultsWriter


class ResultsLost(RuntimeError):
    """The results file was deleted under the campaign; the message (one line) says where its records were saved,
    or that they could not be."""


def rescue(writer: ResultsWriter, out: str, trials: int, failures: list[TrialResult],
           write_log: Callable[[str, TrialResult], str], held: DirLock | None = None) -> ResultsLost:
    """Save what the deleted or moved results file holds (``trials`` records) and the logs of ``failures`` that are
    gone (``write_log(directory, trial)`` writes one); returns the error the campaign ends with. ``held``: the
    campaign's own lock, still held (a file renamed inside --out leaves it there: locking again would refuse)."""
    how = writer.displaced() or "deleted"
    what = (f"{out}: the campaign's results file was {how} while it ran"
            f"{' (rm of --out?)' if how == 'deleted' else ''}; the campaign stopped")
    where, why = _save_in(out, writer, held)
    if where is None:
        try:
            where = tempfile.mkdtemp(prefix="tlbrace-recovered-")
            writer.copy_to(os.path.join(where, FILE_NAME))
        except OSError as exc:
            return ResultsLost(f"{what}; its {trials} recorded trials could not be saved anywhere "
                               f"({exc.strerror or exc}{why})")
    logs = _write_missing_logs(where, failures, write_log)
    saved_logs = f" and the logs of its {logs} failing trials" if logs else ""
    if where == out:
        return ResultsLost(f"{what}; its {trials} recorded trials{saved_logs} were written back to "
                           f"{os.path.join(out, FILE_NAME)}: run the same command with --resume to go on")
    return ResultsLost(f"{what}; its {trials} recorded trials{saved_logs} were saved in {where}/{FILE_NAME} "
                       f"(not in --out{why}): go on with the same command and --out {where} --resume")


def _save_in(out: str, writer: ResultsWriter, held: DirLock | None) -> tuple[str, str] | tuple[None, str]:
    """The records written back to ``out`` (made again, and locked while they are written); else why not."""
    try:
        os.makedirs(out, exist_ok=True)
        lock = DirLock(held.path, -1) if _holds(held, out) else lock_directory(out)
    except DirectoryBusy:
        return None, ": another campaign has taken it"
    except OSError as exc:
        return None, f": {exc.strerror or exc}"
    try:
        writer.copy_to(os.path.join(out, FILE_NAME))
        return out, ""
    except FileExistsError:
        return None, f": a new {FILE_NAME} is there"
    except OSError as exc:
        return None, f": {exc.strerror or exc}"
    finally:
        lock.release()


def _holds(held: DirLock | None, out: str) -> bool:
    """Whether ``held`` is the lock of ``out`` as it is now (the same lock file, not one of a directory made
    again)."""
    if held is None or held.fd < 0:
        return False
    try:
        return os.path.samestat(os.fstat(held.fd), os.stat(os.path.join(out, LOCK_NAME)))
    except OSError:
        return False


def _write_missing_logs(where: str, failures: list[TrialResult],
                        write_log: Callable[[str, TrialResult], str]) -> int:
    """The failing trials' logs that went with --out, written again from the records this driver holds (a trial an
    earlier driver ran, counted on --resume, holds none: its log is lost)."""
    written = 0
    for r in failures:
        if not r.records:
            continue
        try:
            write_log(where, r)
            written += 1
        except (OSError, ValueError):
            pass  # its record is saved; only this log is missing
    return written
