"""The session directories that dead Ray clusters left in tlbrace's Ray temporary directory, removed.

Every embedded cluster writes a ``session_<date>_<pid>`` directory under TEMP_BASE/ray (actors.ray_session): its
logs, one per worker, and its sockets, 20 MB or more each. Ray never removes one, so on a machine that runs
campaigns and tests all day they added up (90 sessions, 1.8 GB in /tmp, on this project's CI machine in one
afternoon). So each start of an embedded cluster first removes the sessions whose cluster is gone, and keeps the
KEEP_DEAD newest of those for a post-mortem (a crashed campaign's raylet.out).

A session is taken for dead only when all of these say so, and kept otherwise:
  - its name ends in the pid of the process that started its head (Ray: ``session_{date}_{os.getpid()}``), and no
    process of that pid is there (one that is, even an unrelated one that reuses the pid, keeps it);
  - no process on this machine names the session in its command line (a raylet, GCS or worker that outlived its
    driver, as after a SIGKILL, still works in it);
  - nothing in it has changed for LIVE_GRACE_S (a live cluster writes its debug state every few seconds: this
    covers a cluster in another pid namespace that the two checks above cannot see).
A directory is first renamed to ``.removing-<name>-<pid>`` (an atomic claim: of two drivers starting at once, one
removes it) and then removed without following symbolic links (shutil.rmtree's descriptor-based walk); such a
name whose remover died is finished by a later start. Only Linux has the /proc this needs; elsewhere nothing
is removed.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import time
from typing import Final, Iterable

KEEP_DEAD: Final = 3  # the newest dead sessions are kept: their logs explain the last crash
LIVE_GRACE_S: Final = 600.0
_SESSION: Final = re.compile(r"session_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+_(\d+)")
_REMOVING: Final = re.compile(r"\.removing-(session_[0-9_-]+)-(\d+)")
# What a live cluster keeps touching, besides the directories themselves.
_LIVELY: Final = ("logs", "logs/debug_state.txt", "logs/raylet.out", "logs/gcs_server.out")


def remove_dead_sessions(ray_dir: str, now: float | None = None) -> list[str]:
    """Remove the session directories of dead clusters under ``ray_dir`` (all but the KEEP_DEAD newest); the
    names removed. Never raises for what it finds there: a start of Ray must not fail for a leftover."""
    if not os.path.isdir("/proc/self"):
        return []
    try:
        names = os.listdir(ray_dir)
    except OSError:
        return []
    now = time.time() if now is None else now
    unfinished = [name for name in names if _removal_of_dead(name)]
    candidates = [name for name in names if _looks_dead(ray_dir, name, now)]
    if candidates:
        named = _named_in_command_lines(candidates)
        candidates = [name for name in candidates if name not in named]
    doomed = sorted(candidates)[:-KEEP_DEAD] if KEEP_DEAD else sorted(candidates)
    removed = []
    for name in unfinished + doomed:
        if _remove(ray_dir, name):
            removed.append(name)
    return removed


def _looks_dead(ray_dir: str, name: str, now: float) -> bool:
    """A session directory of ours whose head's pid is gone and in which nothing changed for LIVE_GRACE_S."""
    m = _SESSION.fullmatch(name)
    if m is None or _alive(int(m.group(1))):
        return False
    path = os.path.join(ray_dir, name)
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        return False
    for part in ("",) + _LIVELY:
        try:
            changed = os.lstat(os.path.join(path, part)).st_mtime if part else st.st_mtime
        except OSError:
            continue
        if now - changed < LIVE_GRACE_S:
            return False
    return True


def _removal_of_dead(name: str) -> bool:
    """A ``.removing-`` directory whose remover is gone (killed while it removed)."""
    m = _REMOVING.fullmatch(name)
    return m is not None and not _alive(int(m.group(2)))


def _alive(pid: int) -> bool:
    if pid <= 0:
        return True  # no pid a process could have: not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process (or a number no pid can be): kept
    return True


def _named_in_command_lines(names: Iterable[str]) -> set[str]:
    """Which of ``names`` some live process's command line holds (Ray's processes get their session directory,
    or their log directory in it, as arguments)."""
    wanted = {name.encode(): name for name in names}
    found: set[str] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                line = f.read()
        except OSError:
            continue
        found.update(name for key, name in wanted.items() if key in line)
    return found


def _remove(ray_dir: str, name: str) -> bool:
    """Claim ``name`` by renaming it, then remove it; False when another process claimed it first."""
    if name.startswith(".removing-"):
        claimed = os.path.join(ray_dir, name)
    else:
        claimed = os.path.join(ray_dir, f".removing-{name}-{os.getpid()}")
        try:
            os.rename(os.path.join(ray_dir, name), claimed)
        except OSError:
            return False
    shutil.rmtree(claimed, ignore_errors=True)
    return not os.path.lexists(claimed)
