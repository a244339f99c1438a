"""Starting or joining Ray the way this project must (design.md, "Ray, concretely").

Every rule here was learned on these machines: Ray is kept on loopback by an environment variable that must be set
*before* ``import ray``; the embedded default is ``address="local"`` (a plain ``ray.init()`` can try to join a dead
cluster and hang); joining by address with a mismatched auth mode hangs ~20 s and then fails, so the join runs
under a timeout and becomes one clear line. Nothing here ever runs ``ray stop``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import stat
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Final, Iterator

from logs.one_line import one_line

# Set before any `import ray` in this process (actors/* import ray lazily, inside functions).
RAY_ENV: Final = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keep every Ray process on 127.0.0.1
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_worker_maximum_startup_concurrency": "16",  # silences a warning past 8 actors on 2 cores
}
for _key, _value in RAY_ENV.items():
    os.environ.setdefault(_key, _value)

# Ray's temporary directory is TEMP_BASE/ray, TEMP_BASE a directory of this user's own (temp_dir()). Short: Ray's
# socket paths under it must fit in 107 bytes.
TEMP_BASE: Final = f"/tmp/tlbrace-{os.getuid()}"
OBJECT_STORE_BYTES: Final = 256 * 1024 * 1024
JOIN_TIMEOUT_S: Final = 30.0  # a head that is starting, on a loaded machine, can take many seconds to answer
PROBE_TIMEOUT_S: Final = 3.0  # for the HTTP/2 (gRPC) greeting every Ray GCS answers at once
# HTTP/2's connection preface and an empty SETTINGS frame: a gRPC server (Ray's GCS) answers with SETTINGS.
_H2_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


class RayUnavailable(RuntimeError):
    """The cluster named by --address / RAY_ADDRESS cannot be joined; the message is one line for the user."""


class ClusterLost(RuntimeError):
    """Ray's GCS stopped answering in the middle of a command (killed, its machine gone): the environment failed.
    The message is one line for the user."""


class RayStartFailed(RuntimeError):
    """The embedded local cluster would not start (the machine's fault, not the input's); one line."""


@dataclass(slots=True)
class Session:
    address: str  # "local" for the embedded cluster, else what was joined
    owned: bool  # whether this call initialised Ray here (and so close_session shuts it down / disconnects)


def quiet_init_kwargs() -> dict[str, Any]:
    return dict(include_dashboard=False, log_to_driver=False, logging_level="warning")


def utf8_entrypoint() -> None:
    """Ray names the driver's job by its command line, read from /proc/self/cmdline, and hands that to its C++ core
    as UTF-8: a command line with a path that is not UTF-8 (`--out café` in latin-1) made ray.init raise
    UnicodeEncodeError, reported as "the embedded Ray cluster would not start ... check free memory" (exit 3).
    The name is only shown in Ray's job table: its undecodable bytes are written as backslash escapes there."""
    import ray._private.utils as ray_utils

    original = getattr(ray_utils, "get_entrypoint_name", None)
    if original is None or getattr(original, "utf8_only", False):
        return

    def entrypoint_name() -> str:
        return original().encode("utf-8", "backslashreplace").decode("utf-8")

    entrypoint_name.utf8_only = True  # type: ignore[attr-defined]
    ray_utils.get_entrypoint_name = entrypoint_name


def temp_dir() -> str:
    """TEMP_BASE/ray, made if need be, TEMP_BASE checked to be this user's own directory that no one else may enter
    (RayStartFailed otherwise). It was one fixed /tmp/tlbrace-ray for every user: Ray makes its temporary directory
    world-writable (chmod 0777, through a symbolic link too), so another user who made /tmp/tlbrace-ray first, as a
    link to one of your directories, had Ray open that directory to everyone, and could read every session's logs
    and reach its sockets. Two runs of one user share TEMP_BASE/ray: each Ray session has a directory of its own."""
    try:
        os.mkdir(TEMP_BASE, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise RayStartFailed(f"{TEMP_BASE}: cannot make Ray's temporary directory ({exc.strerror or exc}); free "
                             f"/tmp or make it writable") from None
    st = os.lstat(TEMP_BASE)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        what = ("a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a directory" if not stat.S_ISDIR(st.st_mode)
                else f"owned by uid {st.st_uid}" if st.st_uid != os.getuid() else f"mode {st.st_mode & 0o777:o}")
        raise RayStartFailed(f"{TEMP_BASE}: Ray's temporary directory must be a directory of your own that only you "
                             f"may use (mode 700), and this is {what}: remove it (someone else may have made it) "
                             f"and run the command again")
    return os.path.join(TEMP_BASE, "ray")


def start_local(num_cpus: int | None = None, *, quiet: bool = False) -> Session:
    """The embedded default: a fresh local cluster owned by this process. ``quiet``: what Ray's C++ core writes
    to the process's stderr while it starts goes to TEMP_BASE/start-stderr.log (a GCS that would not start, under
    `ulimit -f 12`, put three lines of its retries on the terminal before tlbrace's own line)."""
    import ray

    if ray.is_initialized():
        return Session("local", False)
    check_address_space()
    check_process_limit()
    tmp = temp_dir()
    from actors.ray_leftovers import remove_dead_sessions

    remove_dead_sessions(tmp)  # Ray never removes a session's directory: dead clusters' logs filled /tmp
    utf8_entrypoint()
    try:
        with _start_deadline(START_TIMEOUT_S), _stderr_aside(quiet, "start-stderr.log"):
            ray.init(address="local", object_store_memory=OBJECT_STORE_BYTES, _temp_dir=tmp,
                     num_cpus=num_cpus, **quiet_init_kwargs())
    except Exception as exc:  # noqa: BLE001 - whatever Ray raises, it is one line for the user
        text = " ".join(str(exc).split())[:300]
        raise RayStartFailed(f"the embedded Ray cluster would not start ({type(exc).__name__}: {text}); check "
                             f"free memory, /dev/shm, {TEMP_BASE}{_file_size_limit()}, or join a running cluster "
                             f"with --address" + (f" (Ray's own messages: {TEMP_BASE}/start-stderr.log)" if quiet
                                                  else "")) from None
    return Session("local", True)


def _file_size_limit() -> str:
    """`ulimit -f`, named when it is set: Ray's processes inherit it, and a GCS that cannot write its log dies."""
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    return "" if soft == resource.RLIM_INFINITY else f" and the size limit for files (`ulimit -f`: {soft:,} bytes)"


# Every Ray process (driver, GCS, raylet, each worker: they inherit the limit) maps about 1.6 GB of address space
# (a worker's VmSize, Ray 2.60; its resident size is ~85 MB). Under `ulimit -v` below that, ray.init aborted in
# C++ (SIGABRT, exit 134, a page of Ray's stack traces: 1 GB) or waited for ever for workers that could not start,
# deaf to Ctrl-C and SIGTERM (1.2 and 1.5 GB); 1.6 GB started. The bound leaves room above what was measured.
RAY_MIN_ADDRESS_SPACE: Final = 2 << 30
START_TIMEOUT_S: Final = 180.0  # ray.init takes ~2 s here, tens of seconds on a machine under heavy load


def check_address_space() -> None:
    """RayStartFailed, before Ray is asked, under an address-space limit no Ray process can start in."""
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY and soft < RAY_MIN_ADDRESS_SPACE:
        raise RayStartFailed(f"the embedded Ray cluster cannot start under an address-space limit of "
                             f"{soft >> 20:,} MB (`ulimit -v`): every Ray process maps about 1.6 GB and inherits the "
                             f"limit; raise it to {RAY_MIN_ADDRESS_SPACE >> 20:,} MB or more (`ulimit -v unlimited`), "
                             f"or join a cluster started without it with --address")


INTERRUPT_GRACE_S: Final = 2.0  # after a Ctrl-C, for a ray.init that is about to return to end the usual way


# Processes and threads (tasks: what `ulimit -u` counts, for all of the user's processes together) that the
# embedded cluster starts, measured (Ray 2.60, 2 cores): about 200 for the cluster itself with its driver's
# threads, about 17 more for each actor (a worker process with its gRPC and core-worker threads).
RAY_BASE_TASKS: Final = 256
RAY_TASKS_PER_ACTOR: Final = 24


def check_process_limit(actors: int = 0) -> None:
    """RayStartFailed, before Ray is asked, when the user's process limit (`ulimit -u`, RLIMIT_NPROC: every task
    of the user counts, threads included) leaves no room for the embedded cluster and ``actors`` actors. Under
    `ulimit -u` too low, a thread or a worker that Ray cannot start aborts its process in C++ ("Resource
    temporarily unavailable", a page of stack traces) or leaves ray.init waiting. The kernel does not apply the
    limit to root."""
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NPROC)
    if soft == resource.RLIM_INFINITY or _exempt_from_process_limit():
        return
    running = tasks_of_user()
    need = RAY_BASE_TASKS + RAY_TASKS_PER_ACTOR * actors
    if running + need <= soft:
        return
    actors_text = f" and {actors} actors" if actors else ""
    raise RayStartFailed(f"the limit of processes (`ulimit -u`) is {soft:,}: you run {running:,} processes and "
                         f"threads already, and the embedded Ray cluster{actors_text} needs about {need:,} more; "
                         f"raise it (`ulimit -u {max(4096, 2 * (running + need))}`), use a smaller --parallel, or "
                         f"join a running cluster with --address")


def _exempt_from_process_limit() -> bool:
    return os.getuid() == 0


def tasks_of_user() -> int:
    """The tasks (threads of every process) whose real user is this process's: what RLIMIT_NPROC counts. 0 where
    /proc cannot say."""
    uid, count = str(os.getuid()), 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as f:
                status = f.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [uid]:
            count += int(fields.get("Threads", "1").strip() or 1)
    return count


@contextlib.contextmanager
def _start_deadline(seconds: float) -> Iterator[None]:
    """ray.init that has not returned after ``seconds`` ends the process with one line and exit 3; a Ctrl-C or
    SIGTERM meanwhile, unless ray.init returns within INTERRUPT_GRACE_S, ends it with "interrupted" and exit 130.
    What ray.init started is stopped by the driver's death (PR_SET_PDEATHSIG, and cli/ray_watchdog.py for the
    rest). A ray.init stuck in Ray's C++ core (its raylet waiting for workers that cannot start) takes neither
    Ctrl-C nor SIGTERM, which the command holds back until ray.init returns
    (actors.sigint.signals_held_through_ray_init): a Ctrl-C there waited out the whole deadline, 180 s. Python's
    C-level signal handler writes each signal's number to the wakeup descriptor at once, whatever the main thread
    is doing, so the guard thread hears it there."""
    done = threading.Event()
    wakeup = _signal_pipe()
    # The line goes to the terminal: fd 2 itself is Ray's log while ray.init runs (_stderr_aside), where the
    # deadline's line went unseen.
    try:
        terminal = os.dup(2)
    except OSError:  # closed (`2>&-`): nowhere to say it
        terminal = -1

    def guard() -> None:
        deadline = time.monotonic() + seconds
        while not done.is_set() and (left := deadline - time.monotonic()) > 0:
            if wakeup is None:
                done.wait(left)
            elif _heard_interrupt(wakeup, left) and not done.wait(INTERRUPT_GRACE_S):
                _end_start(terminal, "tlbrace: interrupted while the embedded Ray cluster was starting (what it "
                           "started is stopped)", 130)
        if not done.is_set():
            _end_start(terminal, f"tlbrace: error: the embedded Ray cluster did not start within {seconds:.0f} s; "
                       f"check free memory, /dev/shm, the process limits (`ulimit -a`) and {TEMP_BASE}, or join a "
                       f"running cluster with --address", 3)  # EXIT_ENVIRONMENT (cli.errors: actors may not import it)

    thread = threading.Thread(target=guard, name="tlbrace-ray-start", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        _close_signal_pipe(wakeup, thread)
        if terminal >= 0:
            os.close(terminal)


@contextlib.contextmanager
def _interrupt_heard(line: str, worker: threading.Thread) -> Iterator[Callable[[float], None]]:
    """``heard(wait)``: waits up to ``wait`` seconds for a SIGINT or SIGTERM; on one, unless ``worker`` (the thread
    in ray.init) ends within INTERRUPT_GRACE_S, ends the process with ``line`` on the terminal and exit 130. For a
    main thread waiting on a join while the command holds those signals back until Ray is up: a Ctrl-C there
    waited out the join's 30 s."""
    wakeup = _signal_pipe()
    try:
        terminal = os.dup(2)
    except OSError:  # closed (`2>&-`): nowhere to say it
        terminal = -1

    def heard(wait: float) -> None:
        if wakeup is None:
            time.sleep(wait)
        elif _heard_interrupt(wakeup, wait):
            worker.join(INTERRUPT_GRACE_S)
            if worker.is_alive():
                _end_start(terminal, line, 130)  # the joining thread cannot be stopped; the process can

    try:
        yield heard
    finally:
        _close_signal_pipe(wakeup, None)
        if terminal >= 0:
            os.close(terminal)


def _end_start(terminal: int, line: str, status: int) -> None:
    try:
        sys.stderr.flush()
        os.write(terminal, one_line(line).encode(errors="backslashreplace") + b"\n")
    except (OSError, ValueError, AttributeError):
        pass
    os._exit(status)


@dataclass(slots=True)
class _SignalPipe:
    read: int
    write: int
    previous: int  # the wakeup descriptor it replaced (-1: none)


def _signal_pipe() -> _SignalPipe | None:
    """A pipe made Python's signal wakeup descriptor (only the main thread may set one; None elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    read, write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    except (ValueError, OSError):
        os.close(read)
        os.close(write)
        return None
    return _SignalPipe(read, write, previous)


def _heard_interrupt(pipe: _SignalPipe, wait: float) -> bool:
    """Whether a SIGINT or SIGTERM arrived (waits up to ``wait`` seconds for one, or for the zero byte that says
    ray.init has returned)."""
    ready, _, _ = select.select([pipe.read], [], [], wait)
    got = os.read(pipe.read, 64) if ready else b""
    return any(n in (signal.SIGINT, signal.SIGTERM) for n in got)


def _close_signal_pipe(pipe: _SignalPipe | None, guard: threading.Thread | None) -> None:
    """The previous wakeup descriptor back, once the guard has stopped reading the pipe (woken by a zero byte,
    which is no signal: closing a descriptor another thread waits on could hand its number to another file). The
    signals heard stay noted by the Python handlers, which run them once ray.init has returned (the command then
    stops as a Ctrl-C does)."""
    if guard is not None:
        if pipe is not None:
            try:
                os.write(pipe.write, b"\0")
            except OSError:  # full of signal numbers: the guard wakes all the same
                pass
        guard.join()  # without a pipe it waits on ``done``, which is set
    if pipe is None:
        return
    try:
        current = signal.set_wakeup_fd(pipe.previous)
        if current not in (pipe.write, -1):  # set by ray.init meanwhile: it stays
            signal.set_wakeup_fd(current)
    except (ValueError, OSError):
        signal.set_wakeup_fd(-1)
    os.close(pipe.write)
    os.close(pipe.read)


def join(address: str, timeout_s: float = JOIN_TIMEOUT_S, *, quiet: bool = True) -> Session:
    """Join an existing cluster. ``ray.init`` runs in a thread so that an unreachable head or an auth mismatch
    (which Ray 2.60 reports only after ~20 s, or never) becomes a RayUnavailable within ``timeout_s``. ``quiet``:
    what Ray's C++ core writes to the process's stderr while joining (up to 20 lines of retries against a port
    that is not Ray's) goes to TEMP_BASE/join-stderr.log instead."""
    import ray

    if ray.is_initialized():
        return Session(address, False)
    probe(address)
    utf8_entrypoint()
    outcome: dict[str, BaseException | None] = {}

    def attempt() -> None:
        # Joining from a thread makes Ray warn that it cannot set its SIGTERM handler: expected, and noise.
        logging.getLogger("ray._private.worker").setLevel(logging.ERROR)
        try:
            ray.init(address=address, **quiet_init_kwargs())
            outcome["error"] = None
        except BaseException as exc:  # noqa: BLE001 - reported to the user as one line below
            outcome["error"] = exc

    worker = threading.Thread(target=attempt, name="ray-join", daemon=True)
    with _interrupt_heard(f"tlbrace: interrupted while joining the Ray cluster at {address}", worker) as heard, \
            _stderr_aside(quiet, "join-stderr.log"):
        worker.start()
        deadline = time.monotonic() + timeout_s
        while worker.is_alive() and (left := deadline - time.monotonic()) > 0:
            heard(min(left, 0.1))
            worker.join(0.0)
        failed = worker.is_alive() or outcome.get("error") is not None
    if failed and quiet:
        _silence_stderr_for_good()  # Ray's C++ core goes on complaining from its own threads until exit
    if worker.is_alive():
        raise RayUnavailable(f"cannot join the Ray cluster at {address}: no answer within {timeout_s:.0f} s "
                             f"(is it running, and does RAY_AUTH_MODE match the head's?)")
    error = outcome.get("error")
    if error is not None:
        text = " ".join(str(error).split())[:300]
        hint = " (auth mismatch: set RAY_AUTH_MODE like the head's)" if "auth" in text.lower() else ""
        raise RayUnavailable(f"cannot join the Ray cluster at {address}: {type(error).__name__}: {text}{hint}")
    return Session(address, True)


def probe(address: str) -> None:
    """A head that is not there at all, or a port that is not a Ray head, fails at once (ray.init would wait out
    its own long retries); "auto", "local" and ray:// addresses are left to ray.init. Needs no ``import ray``."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in host:
        return  # "auto", ray:// client addresses...: let ray.init judge
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # [::1]:6379: an IPv6 literal, not a name to look up
    try:
        conn = socket.create_connection((host or "127.0.0.1", int(port)), timeout=5)
    except socket.gaierror as exc:
        raise RayUnavailable(f"cannot join the Ray cluster at {address}: cannot resolve {host!r} "
                             f"({exc.strerror or exc})") from None
    except OSError as exc:
        raise RayUnavailable(f"cannot join the Ray cluster at {address}: {exc.strerror or exc}") from None
    with conn:
        if not _speaks_grpc(conn):
            raise RayUnavailable(f"cannot join the Ray cluster at {address}: something listens there, but it is not "
                                 f"a Ray head (no gRPC answer within {PROBE_TIMEOUT_S:.0f} s)")


def _speaks_grpc(conn: socket.socket) -> bool:
    """Whether the server answers HTTP/2's greeting as a gRPC server does (its own SETTINGS frame first). A port
    that is not Ray's stays silent or answers otherwise, and Ray's join would retry against it for ~20 s with
    its C++ core's warnings on the terminal."""
    conn.settimeout(PROBE_TIMEOUT_S)
    try:
        conn.sendall(_H2_PREFACE)
        head = b""
        while len(head) < 9:
            chunk = conn.recv(9 - len(head))
            if not chunk:
                return False
            head += chunk
    except OSError:  # timeout, reset
        return False
    return head[3] == 0x04  # frame type SETTINGS


class _stderr_aside:
    """File descriptor 2 pointed at a log file for the duration (Ray's C++ logging writes to it directly, so
    Python's sys.stderr cannot catch it)."""

    def __init__(self, active: bool, name: str) -> None:
        self.active, self.name = active, name
        self.saved = -1

    def __enter__(self) -> "_stderr_aside":
        if self.active:
            try:
                log = os.open(os.path.join(os.path.dirname(temp_dir()), self.name),
                              os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            except (OSError, RayStartFailed):
                log = os.open(os.devnull, os.O_WRONLY)
            sys.stderr.flush()
            self.saved = os.dup(2)
            os.dup2(log, 2)
            os.close(log)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved >= 0:
            os.dup2(self.saved, 2)
            os.close(self.saved)


def _silence_stderr_for_good() -> None:
    """After a failed join or start Ray's threads keep writing to fd 2 until the process ends: Python's own stderr moves to
    a copy of the terminal's descriptor, and fd 2 goes to /dev/null."""
    sys.stderr.flush()
    sys.stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                           errors="backslashreplace")
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)


def open_session(address: str | None = None, num_cpus: int | None = None, *, quiet: bool = True) -> Session:
    """``--address`` (or RAY_ADDRESS) joins that cluster; nothing starts the embedded local one."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address != "local":
        return join(address, quiet=quiet)
    return start_local(num_cpus, quiet=quiet)


def close_session(session: Session) -> bool:
    """Shut down (or disconnect from) what open_session opened. False when Ray's GCS was lost: the shutdown
    still runs (a few seconds; without it the interpreter's exit crashed in Ray's core, SIGSEGV), but what the
    cluster started is left for the watchdog to stop (cli/ray_watchdog.py)."""
    import ray

    if session.owned and ray.is_initialized():
        ray.shutdown()  # for a joined cluster this only disconnects the driver
    return not _gcs_lost


# --- Ray's GCS lost in the middle of a command ------------------------------------------------------------------
# With its GCS killed, Ray's driver retried for 60 s, blocked in a ray.get, and then ended the process itself from a
# C++ thread: exit 1 (the status of a violation) with one line of Ray's own log and no word of tlbrace's. A
# campaign now has a thread greet the GCS (HTTP/2's preface, as probe() does) every GCS_CHECK_S. The GCS is lost
# once it has refused GCS_REFUSALS connections in a row (killed: its port is closed), or once it has answered no
# greeting for GCS_SILENT_S (a head that vanished without closing anything: its machine stopped or cut off, or its
# processes SIGSTOPped; the kernel still accepts connections for a stopped process, or they time out, and
# neither is ever refused). The thread then interrupts the main thread as a Ctrl-C would; where the main thread
# gives way (ray.wait), the campaign turns that interrupt into ClusterLost, records what it has and the command
# ends with exit 3. A ray.get waiting for an actor that the lost GCS was to place does not give way, even to a
# Ctrl-C, and leaving Ray (ray.shutdown) can wait on a silent GCS too: so the thread's grace, GCS_GRACE_S, runs
# until the process has ended, and once it is over the thread has the results file synced, says the same line
# (unless the command already said it) and ends the process with exit 3 (the watchdog, cli/ray_watchdog.py,
# stops what the cluster had started).
#
# Silence alone is not enough (session 17): on a badly overloaded machine a healthy GCS answered nothing for 20 s and
# the watch stopped the campaign. So a greeting now waits for its answer until the silence would count (a late
# answer is an answer); the silence that counts grows with the slowest answer seen (GCS_SLOW_FACTOR times it, up to
# GCS_SILENT_MAX_S); and a GCS listening on this machine whose process is there and not stopped is never lost by
# silence short of GCS_ALIVE_SILENT_S (actors.gcs_liveness reads its state in /proc: a SIGSTOPped head is "T").
GCS_CHECK_S: Final = 1.0
GCS_REFUSALS: Final = 3  # in a row: one refusal can be a GCS busy accepting under load
# No answer at all for this long: a GCS on a loaded 2-core machine answers a greeting within a second; Ray itself
# gives up at 60 s, and this plus the grace ends the command well before.
GCS_SILENT_S: Final = 20.0
GCS_SLOW_FACTOR: Final = 4.0  # the silence that counts, in slowest answers seen: an answer 4x slower is not usual
GCS_SILENT_MAX_S: Final = 45.0  # the scaled silence's bound: with the grace, still before Ray's own end at 60 s
# A local GCS process alive and running, yet silent this long, is taken as hung (deadlocked, or a machine that
# cannot run it at all): past Ray's 60 s, since Ray's own channel to a live process does not time out.
GCS_ALIVE_SILENT_S: Final = 180.0
GCS_ANSWER_S: Final = 3.0  # at least, for one greeting's answer (and for its connection)
GCS_GRACE_S: Final = 10.0  # for the main thread to stop the campaign itself; Ray's own end comes at 60 s
_gcs_lost = False
_said = threading.Event()  # the command has printed the lost-cluster line (the watch must not say it again)
_saying = threading.Lock()  # the line is said once: by the command, or by the watch as it ends the process


def gcs_lost() -> bool:
    """Whether a GcsWatch of this process has found the GCS gone."""
    return _gcs_lost


@contextlib.contextmanager
def saying_lost() -> Iterator[None]:
    """``with saying_lost(): print(line)``: the command tells the user (cli.main, on ClusterLost); a watch whose
    grace runs out meanwhile or later ends the process without a second line."""
    with _saying:
        yield
        _said.set()


class GcsWatch:
    """``with GcsWatch(...):``: a thread looks whether the connected cluster's GCS still answers.
    ``results``: the campaign's results file, for the message; ``sync``: makes its records durable."""

    def __init__(self, results: str | None = None, sync: Callable[[], None] | None = None, *,
                 address: str | None = None, note: str | None = None) -> None:
        if address is None:
            import ray

            address = ray.get_runtime_context().gcs_address if ray.is_initialized() else None
        self.address, self.results, self.sync = address, results, sync
        self.note = note  # what else ``sync`` saved, for the line (a scale grid: where its finished rows are)
        self.silent = 0.0  # lost by silence: for how long (seconds) nothing answered; 0.0: lost by refusals
        self.slowest = 0.0  # the slowest answer to a greeting so far (seconds)
        self.process: str | None = None  # what /proc said of a silent local GCS's process, for the message
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="tlbrace-gcs-watch", daemon=True)

    def __enter__(self) -> "GcsWatch":
        global _gcs_lost
        _gcs_lost = False
        _said.clear()
        if self.address is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not _gcs_lost:
            self.done.set()  # a lost cluster's grace goes on: leaving Ray can wait on a silent GCS as well

    def lost(self) -> ClusterLost:
        then = (f": the campaign stopped; the trials it finished are recorded in {self.results}; run the same "
                f"command with --resume to go on") if self.results else ""
        why = f"its process is {self.process}" if self.process else \
            "its machine stopped or cut off, or its processes stopped"
        what = (f"has not answered for {self.silent:.0f} s ({why})" if self.silent
                else "is gone (killed, or its machine stopped)")
        return ClusterLost(f"Ray's GCS at {self.address} {what}{then}{f'; {self.note}' if self.note else ''}")

    def _watch(self) -> None:
        global _gcs_lost
        import signal

        assert self.address is not None
        refused, silent_since = 0, None
        while True:
            if self.done.wait(GCS_CHECK_S):
                return
            began = time.monotonic()
            counts = self.silence_that_counts()
            answer = _greet(self.address, max(GCS_ANSWER_S, counts - (began - (silent_since or began))))
            refused = refused + 1 if answer == "refused" else 0
            if answer == "answers":
                self.slowest = max(self.slowest, time.monotonic() - began)
            silent_since = (silent_since or began) if answer == "silent" else None
            if refused >= GCS_REFUSALS:
                break
            if silent_since is not None and self._silence_is_loss(time.monotonic() - silent_since, counts):
                self.silent = counts
                break
        _gcs_lost = True
        # A real SIGINT to the main thread, as a Ctrl-C: _thread.interrupt_main only notes one, which a main thread
        # asleep in a system call does not see until the call returns.
        if callable(signal.getsignal(signal.SIGINT)):  # ignored (a background job's): the grace runs out below
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        if not self.done.wait(GCS_GRACE_S):
            self._end_process()

    def silence_that_counts(self) -> float:
        """How long a GCS may answer nothing before it is lost (unless its process says otherwise): GCS_SILENT_S,
        or more for a GCS that has been answering slowly."""
        return min(GCS_SILENT_MAX_S, max(GCS_SILENT_S, GCS_SLOW_FACTOR * self.slowest))

    def _silence_is_loss(self, silent: float, counts: float) -> bool:
        """A local GCS whose process is there and running is overloaded, not lost, until GCS_ALIVE_SILENT_S."""
        if silent < counts:
            return False
        from actors.gcs_liveness import gcs_process_state

        assert self.address is not None
        state = gcs_process_state(self.address)
        if state == "running" and silent < GCS_ALIVE_SILENT_S:
            return False
        self.process = state
        return True

    def _end_process(self) -> None:
        try:
            if self.sync is not None:
                self.sync()
        except (OSError, ValueError):
            pass  # a torn or unsynced tail: --resume cuts it and runs those trials again
        with _saying:
            try:
                if not _said.is_set():
                    print(f"tlbrace: error: {one_line(str(self.lost()))}", file=sys.stderr, flush=True)
                sys.stdout.flush()
            except (OSError, ValueError):
                pass
            os._exit(3)  # EXIT_ENVIRONMENT (cli.errors; actors may not import cli)


def giving_way(call: Callable[[], Any]) -> Any:
    """``call()`` (a Ray call that asks the GCS and would wait for ever on one that is lost, as ``ray.nodes()`` does
    in C++, deaf to signals) run in a thread of its own, so that the main thread, waiting for it here, takes a
    watch's interrupt: a scale grid whose head stopped between two cells waited in ``ray.nodes()`` for ever."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="tlbrace-gcs-call", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.5)  # a lock wait with a timeout: a SIGINT's KeyboardInterrupt comes through it
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _greet(address: str, wait: float = GCS_ANSWER_S) -> str:
    """"answers", "refused" or "silent": whether the GCS answers HTTP/2's greeting within ``wait`` seconds. Only a
    refused connection or a greeting left unanswered counts against it; an error of this machine's (no file
    descriptors) says nothing."""
    host, _, port = address.rpartition(":")
    try:
        conn = socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=GCS_ANSWER_S)
    except ConnectionRefusedError:
        return "refused"
    except (TimeoutError, socket.timeout):
        return "silent"  # the SYN unanswered: a machine gone or cut off
    except (OSError, ValueError):
        return "answers"
    with conn:
        conn.settimeout(wait)
        try:
            conn.sendall(_H2_PREFACE)
            return "answers" if conn.recv(1) else "silent"
        except ConnectionRefusedError:
            return "refused"
        except (TimeoutError, socket.timeout):
            return "silent"
        except OSError:
            return "answers"  # reset: something is alive there
