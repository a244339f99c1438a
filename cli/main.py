"""The ``tlbrace`` command line: one entry point, subcommands that share option names.

Each subcommand lives in its own module ``cli.cmd_<name>`` exposing ``add_parser(subparsers)`` and
``run(args) -> int``, and is named with its one-line help in cli/commands.py (only the module of the subcommand
being run is imported). Exit status: 0 no violation, 1 violation found, 2 bad input or usage, 3 the environment
failed (disk full, read-only output, Ray would not start: one line saying what to do; a stress campaign is left
resumable), 4 an internal error (a bug: please report it). Every error is one line on stderr; ``--verbose`` (given
anywhere) adds the traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback

from actors.sigint import parent_only, sigterm_as_interrupt
from cli import std_streams
from cli.commands import SUMMARIES, LazySubcommands
from cli.errors import (EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_INTERNAL, EXIT_OK, EnvironmentFailure, UsageError,
                        os_error_text)
from cli.help_format import DefaultsFormatter
from cli.json_document import stdout_kept_for_the_document
from logs.one_line import one_line

SUBCOMMANDS = tuple(SUMMARIES)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> None:  # argparse exits 2 too; keep its one-line message
        try:
            self.print_usage(sys.stderr)
        except (OSError, ValueError):
            pass  # stderr's reader is gone: say() below sends it to /dev/null
        std_streams.say(f"tlbrace: error: {message}")
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser; a subcommand's module is imported when its parser is first used
    (cli.commands.LazySubcommands)."""
    parser = _Parser(prog="tlbrace", description=__doc__.splitlines()[0])
    parser.add_subparsers(dest="command", required=True, parser_class=_Parser, action=LazySubcommands)
    return parser


def main(argv: list[str] | None = None) -> int:
    std_streams.usable()
    try:
        return _main(argv)
    except KeyboardInterrupt:  # a Ctrl-C while the parser is built (it imports the subcommand's module)
        std_streams.say("tlbrace: interrupted")
        return 130


def calm_shutdown() -> None:
    """Called by the ``tlbrace`` command once its work is done and its result printed, before the interpreter
    shuts down (Ray's atexit ray.shutdown, the joins of non-daemon threads: a second or two). A Ctrl-C or SIGTERM
    then raised KeyboardInterrupt (or Ray's SystemExit) inside an atexit callback, printed as a traceback under
    a result already given. Now the first one is noted and the shutdown finishes, stopping what tlbrace started,
    with the command's own exit status (its work is complete); a second one exits at once."""
    # The command's output is complete: what is printed while the interpreter shuts down (Ray prints its
    # cluster's error messages on sys.stdout, cli.json_document) must not trail a JSON document or a table.
    try:
        sys.stdout.flush()
    except (OSError, ValueError):  # its reader left (`| true`): the interpreter's own last flush must not fail too
        std_streams.to_devnull(1)
    sys.stdout = sys.stderr
    if threading.current_thread() is not threading.main_thread():
        return
    seen: list[int] = []

    @parent_only  # a process forked during the shutdown (none is meant to be) dies of SIGTERM as usual
    def note(signum: int, frame: object) -> None:
        if seen:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(128 + signum)
        seen.append(signum)
        try:
            print("tlbrace: finishing the shutdown (stopping what it started); interrupt again to exit at once",
                  file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001 - stderr closed, or this interrupted a write to it: say nothing
            pass

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, note)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    _printable_everywhere()
    _usable_columns()
    verbose = "--verbose" in argv
    parser = build_parser()
    args = parser.parse_args([a for a in argv if a != "--verbose"] if not _takes_verbose(argv) else argv)
    try:
        # SIGTERM (`timeout 1h tlbrace explore`, `kill PID`) stops every command as a Ctrl-C does: one line, exit
        # 130, output files never left half-written; explore, history and fuzz died of it without a word.
        # With --json, stdout is the document's alone (cli.json_document: Ray prints its cluster's errors there).
        with sigterm_as_interrupt(), stdout_kept_for_the_document(bool(getattr(args, "json", False))):
            return int(args.func(args))
    except _bad_input_errors() as exc:  # an except clause's expression is evaluated only when something is raised
        std_streams.say(f"tlbrace: error: {one_line(str(exc))}")
        return EXIT_BAD_INPUT
    except _environment_errors() as exc:
        _traceback(verbose)
        from actors.ray_session import saying_lost  # imported already: _environment_errors imports it

        with saying_lost():  # once: a lost cluster's watch may be about to end the process saying it
            std_streams.say(f"tlbrace: error: {one_line(str(exc))}")
        return EXIT_ENVIRONMENT
    except KeyboardInterrupt:
        std_streams.say("tlbrace: interrupted")
        return 130
    except BrokenPipeError:  # e.g. `tlbrace scenarios --json | head`: the reader left; not an error of ours
        std_streams.to_devnull(1)
        return EXIT_OK
    except (OSError, MemoryError) as exc:  # the machine failed: a file that cannot be written, no memory
        _traceback(verbose)
        text = os_error_text(exc) if isinstance(exc, OSError) else _out_of_memory_text()
        std_streams.say(f"tlbrace: error: {one_line(text)}")
        return EXIT_ENVIRONMENT
    except Exception as exc:  # noqa: BLE001 - a bug: one line (and the traceback with --verbose), never exit 1
        _traceback(verbose)
        text = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        std_streams.say(f"tlbrace: internal error: {one_line(text)} (a bug; --verbose prints the traceback)")
        return EXIT_INTERNAL


def _bad_input_errors() -> tuple[type[Exception], ...]:
    """The errors that mean bad input (exit 2). Their modules are imported once one is raised: at every start
    they cost more than `tlbrace mutants` itself (bench/import_time.py)."""
    from kernel_model.config import ConfigError
    from logs.output_files import OutputFileError
    from scenarios.loader import ScenarioError

    return UsageError, ScenarioError, ConfigError, OutputFileError


def _environment_errors() -> tuple[type[Exception], ...]:
    """The errors that mean the environment failed (exit 3): a lost Ray cluster included, in any wild command."""
    from actors.ray_session import ClusterLost

    return EnvironmentFailure, ClusterLost


def _out_of_memory_text() -> str:
    """What a MemoryError means here: under an address-space limit (`ulimit -v`) it is most likely that limit, not
    the machine's memory, that ran out ("free memory" sent the user to look for other programs)."""
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        return (f"out of memory under this process's address-space limit of {soft >> 20:,} MB (`ulimit -v`): "
                "raise it, or ask for less")
    return "out of memory: ask for less, or free memory"


def _printable_everywhere() -> None:
    """Output goes to terminals and pipes of any encoding: with PYTHONIOENCODING=ascii (or latin-1) the first '—'
    or '▶' of a story or table was a UnicodeEncodeError (exit 4, after the search). A character the stream cannot
    encode is written as its backslash escape instead. In the C or POSIX locale without UTF-8 mode (LC_ALL=C with
    PYTHONUTF8=0, as some cron jobs and containers run) Python's stdout is ASCII with errors="surrogateescape",
    which escapes only undecodable bytes: `tlbrace scenarios` died there on the first '§' (exit 4)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", None) in ("strict", "surrogateescape"):
            reconfigure(errors="backslashreplace")


def _usable_columns() -> None:
    """COLUMNS, which rich takes for the terminal's width, within what --width accepts. COLUMNS=0 (some CI
    runners export it) made every table and story vanish (`tlbrace scenarios` printed nothing, exit 0); 5 drew
    them a character wide; junk is ignored, as rich ignores it."""
    text = os.environ.get("COLUMNS")
    if text is None:
        return
    from cli.options import MAX_WIDTH, MIN_WIDTH

    try:
        columns = int(text)
    except ValueError:
        columns = 0
    if columns < 1:
        del os.environ["COLUMNS"]  # no width at all: the terminal's own, else 80
    elif not MIN_WIDTH <= columns <= MAX_WIDTH:
        os.environ["COLUMNS"] = str(min(max(columns, MIN_WIDTH), MAX_WIDTH))


# The subcommands with a --verbose of their own (Ray's logs; fuzz's line per scenario); elsewhere it only asks for
# tracebacks. fuzz and scale had one that was taken out of argv before parsing: accepted, and ignored.
OWN_VERBOSE = ("stress", "run", "scale", "fuzz")


def _takes_verbose(argv: list[str]) -> bool:
    return next((a for a in argv if a in SUBCOMMANDS), None) in OWN_VERBOSE


def _traceback(verbose: bool) -> None:
    if verbose:
        traceback.print_exc()


if __name__ == "__main__":
    status = main()
    calm_shutdown()
    sys.exit(status)
