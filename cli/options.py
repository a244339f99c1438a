"""Command-line options that several subcommands share, and how they become a Scenario and a Config.

The configuration of a run is the scenario file's ``[config]`` table, overridden by what the command line says.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any, Callable, Collection, Final, TypeVar

from kernel_model.config import ARCHES, DELAYED_BATCHES, MUTANTS, ORDERINGS, Config, ConfigError
from kernel_model.kernels import NEWEST, KernelError, kernel_config
from kernel_model.program import Scenario
from scenarios.decimal_text import decimal_float, decimal_int

_D = Config()  # the model's defaults, as --help states them


def add_scenario_options(p: argparse.ArgumentParser, *, scenario_arg: bool = True) -> None:
    if scenario_arg:
        p.add_argument("scenario", metavar="SCENARIO", help="a library scenario name or the path of a TOML file")
    p.add_argument("--param", action="append", default=[], metavar="NAME=INT",
                   help="override a scenario parameter (repeatable), e.g. --param pages=2 (default: the "
                        "scenario's own values; `tlbrace scenarios` lists them)")
    add_kernel_option(p)
    p.add_argument("--ordering", choices=ORDERINGS, help="eager (v6.1: rmap removed before the flush) or "
                   f"delayed (the patch) (default: the scenario's [config] ordering, else {_D.ordering})")
    p.add_argument("--arch", choices=ARCHES,
                   help=f"smp, up or s390 (default: the scenario's [config] arch, else {_D.arch})")
    p.add_argument("--mutant", choices=MUTANTS, metavar="M", help="run a deliberately wrong kernel; `tlbrace mutants` says what "
                   "each does (default: none, the real kernel)")
    p.add_argument("--delayed-batches", choices=DELAYED_BATCHES,
                   help="where delayed rmaps may sit: active (the seed patch) or local+active (c47454823bd4) "
                        f"(default: the scenario's [config], else {_D.delayed_batches})")
    p.add_argument("--gather", action="append", default=[], metavar="FIELD=INT",
                   help="mmu_gather size override: mmu_gather_bundle, max_gather_batch, max_gather_batch_count "
                        f"(default: the kernel's, {_D.mmu_gather_bundle}, {_D.max_gather_batch} and "
                        f"{_D.max_gather_batch_count})")


def add_kernel_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernel", metavar="VERSION",
                   help="model a mainline release: the fixes of kernel_model/kernels.py merged by it (e.g. 3.14, "
                        f"4.12, 6.1, 6.2, latest = {NEWEST}); --ordering, --delayed-batches and --mutant given too "
                        "override what the version says (default: the scenario's [config], else the newest kernel)")


# Seeds are written into schedules, logs and results files as msgpack integers (64-bit signed).
SEED_MIN: Final = -(1 << 63)
SEED_MAX: Final = (1 << 63) - 1


def integer(text: str) -> int:
    """An argparse type: a decimal integer in ASCII digits (``type=int`` took '٣' and '３' as 3)."""
    try:
        return decimal_int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in ASCII digits, got {text!r}") from None


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: an integer in lo..hi (the message gives the range)."""
    def parse(text: str) -> int:
        value = integer(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer in {lo}..{hi}, got {text}")
        return value
    parse.__name__ = "integer"
    return parse


seed_arg = int_in(SEED_MIN, SEED_MAX)

T = TypeVar("T")


def comma_list(text: str, item: Callable[[str], T], expected: str) -> list[T]:
    """The items of a comma-separated list option (--cpus, --kernels, --using...), each made by ``item`` (which
    raises ValueError with why it refuses one), in the order given. An empty item (``3,,4``, a trailing comma) or
    one given twice (``4,4``; ``4.12,4.12.0``) is refused, naming it: ``--cpus 3,,4`` ran as 3,4 and ``4,4`` as 4
    without a word, so the typo in what was meant (3,5,4? 4,8?) went unseen. ValueError says what is wrong and
    ``expected``."""
    parts = [t.strip() for t in text.split(",")]
    out: list[T] = []
    for n, part in enumerate(parts, 1):
        where = f"{text!r}: item {n}" if len(parts) > 1 else ""
        if not part:
            raise ValueError(f"{where or repr(text)} is empty; expected {expected}")
        shown = f"{where}, {part!r}," if where else repr(part)
        try:
            value = item(part)
        except ValueError as exc:
            raise ValueError(f"{shown} {exc}; expected {expected}") from None
        if value in out:
            raise ValueError(f"{shown} is given twice (as item {out.index(value) + 1}); expected {expected}, each "
                             "once")
        out.append(value)
    return out


def positive_int(text: str) -> int:
    """A comma_list item: a decimal integer >= 1."""
    try:
        value = decimal_int(text)
    except ValueError:
        raise ValueError("is not an integer in ASCII digits") from None
    if value < 1:
        raise ValueError("is not positive")
    return value


def one_of(allowed: Collection[str]) -> Callable[[str], str]:
    """A comma_list item: one of ``allowed``."""
    def check(text: str) -> str:
        if text not in allowed:
            raise ValueError("is not one of them")
        return text
    return check


def list_arg(item: Callable[[str], T], expected: str) -> Callable[[str], list[T]]:
    """An argparse type: comma_list (argparse puts the option's name before the message)."""
    def parse(text: str) -> list[T]:
        try:
            return comma_list(text, item, expected)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = "list"
    return parse


def float_in(lo: float, hi: float, *, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in lo..hi (nan and inf are refused)."""
    def parse(text: str) -> float:
        try:
            value = decimal_float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number in ASCII digits, got {text!r}") from None
        if not math.isfinite(value) or value < lo or value > hi or (low_open and value == lo):
            raise argparse.ArgumentTypeError(f"expected a finite number {'>' if low_open else '>='} {lo:g} and "
                                             f"<= {hi:g}, got {text}")
        return value
    parse.__name__ = "number"
    return parse


def check_out_dir(out: str, flag: str = "--out") -> None:
    """An output directory named on the command line, checked before any work: not empty, not a file, and not
    under a file (else the search or campaign ran to its end and then could not write what it found)."""
    from cli.errors import UsageError

    if not out:
        raise UsageError(f"{flag} '': expected a directory path")
    if "\0" in out:
        raise UsageError(f"{flag} {out!r}: a path cannot contain a NUL byte")
    if out == "-":  # cat's standard input or output: not a directory named '-' made without a word
        raise UsageError(f"{flag} -: expected a directory path; its files cannot go to standard output "
                         "(./- names a directory called '-')")
    _check_cwd(out, flag)
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"{flag} {out}: is {_kind_of(out)}, expected a directory")
    broken = _broken_link(out)
    if broken is not None:  # makedirs fails on it only when something is found, after the search
        raise UsageError(f"{flag} {out}: {broken} is a symbolic link that leads nowhere (dangling or looping), "
                         "expected a directory (or a path under one)")
    existing = nearest_existing(out)
    if not os.path.isdir(existing):
        raise UsageError(f"{flag} {out}: {existing} is a file, expected a directory (or a path under one)")
    _check_name_lengths(out, existing, flag)
    _check_creatable(out, existing, flag)


# Room left under --out for the names tlbrace writes there (a fuzz subdirectory, then a file name of a scenario's
# name of up to 64 characters with its configuration and suffix): one more name at most NAME_MAX long.
_ROOM_UNDER_OUT: Final = 256


def _check_name_lengths(out: str, existing: str, flag: str) -> None:
    """Each name --out would create fits the file system's NAME_MAX, and the whole path leaves room under
    PATH_MAX for the files written in it: a longer one failed with "File name too long" once the search or
    campaign had ended (exit 3 after all the work)."""
    from cli.errors import UsageError

    name_max, path_max = _pathconf(existing, "PC_NAME_MAX", 255), _pathconf(existing, "PC_PATH_MAX", 4096)
    shown = _shortened(out)
    for part in os.path.relpath(os.path.abspath(out), existing).split(os.sep):
        if len(os.fsencode(part)) > name_max:
            raise UsageError(f"{flag} {shown}: a directory name of {len(os.fsencode(part)):,} bytes; this file "
                             f"system allows {name_max}")
    length = len(os.fsencode(os.path.abspath(out)))
    if length + _ROOM_UNDER_OUT > path_max:
        raise UsageError(f"{flag} {shown}: a path of {length:,} bytes (absolute) leaves no room under PATH_MAX = "
                         f"{path_max} for the files written in it: expected at most {path_max - _ROOM_UNDER_OUT}")


# The file is written under a temporary name beside it first (logs.output_files.replaced_whole: NAME.XXXXXXXX.tmp).
_TEMPORARY_SUFFIX: Final = len(".XXXXXXXX.tmp")


def _check_file_name_length(path: str, parent: str, flag: str) -> None:
    """An output file's name (and the temporary name it is written under first) fits NAME_MAX, and its path
    PATH_MAX: a longer one failed with "File name too long" once the work was done (exit 3)."""
    from cli.errors import UsageError

    name_max, path_max = _pathconf(parent, "PC_NAME_MAX", 255), _pathconf(parent, "PC_PATH_MAX", 4096)
    shown = _shortened(path)
    name = len(os.fsencode(os.path.basename(path)))
    if name + _TEMPORARY_SUFFIX > name_max:
        raise UsageError(f"{flag} {shown}: a file name of {name:,} bytes; this file system allows {name_max}, and "
                         f"the file is first written under its name plus {_TEMPORARY_SUFFIX} characters")
    length = len(os.fsencode(os.path.abspath(path))) + _TEMPORARY_SUFFIX
    if length > path_max:
        raise UsageError(f"{flag} {shown}: a path of {length:,} bytes (absolute, with the temporary suffix); "
                         f"PATH_MAX is {path_max}")


def _shortened(path: str) -> str:
    """A path for a one-line message: a very long one by its two ends and its length."""
    return path if len(path) <= 80 else f"{path[:40]}...{path[-30:]} ({len(path):,} characters)"


def _pathconf(path: str, name: str, default: int) -> int:
    try:
        value = os.pathconf(path, name)
    except (OSError, ValueError):
        return default
    return value if value > 0 else default


def _check_creatable(out: str, existing: str, flag: str, what: str = "--out") -> None:
    """Something can be created in ``existing`` (``out`` or its closest existing ancestor): a read-only or
    pseudo file system (/proc), or a directory without write permission, was found only when the search or
    campaign had ended and had something to write (exit 3 after all the work). A probe directory is made and
    removed: permission bits alone do not say it (root, read-only mounts, /proc)."""
    import tempfile

    from cli.errors import EnvironmentFailure

    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tlbrace-probe-", dir=existing))
    except OSError as exc:
        raise EnvironmentFailure(f"{flag} {out}: nothing can be created in {existing} ({exc.strerror or exc}): "
                                 f"choose a writable {what}") from None


SCHEDULE_KIND: Final = "a schedule file"
RESULTS_KIND: Final = "a stress campaign's results file"


def check_out_file(path: str, flag: str, suffixes: tuple[str, ...] = (), may_replace: str | None = None) -> None:
    """An output file named on the command line, checked before any work: not a directory, in a directory that
    exists, with one of ``suffixes`` if given; if it exists, a regular file (a schedule is written aside and
    renamed over its name, which would replace a device such as /dev/null; writing a FIFO waits for a reader)
    that holds no tlbrace data other than ``may_replace`` (shrink may rewrite a schedule in place)."""
    from cli.errors import UsageError

    if not path or "\0" in path:
        raise UsageError(f"{flag} {path!r}: expected a file path")
    if path == "-":  # `shrink S -o -` wrote a file named '-' where the user meant standard output
        raise UsageError(f"{flag} -: expected a file path; tlbrace writes this file whole, never to standard output "
                         "(./- names a file called '-')")
    _check_cwd(path, flag)  # `analyze L --timeline t.png` in a deleted directory: "No such file or directory"
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path}: is a directory, expected a file path")
    if os.path.exists(path) and not os.path.isfile(path):
        raise UsageError(f"{flag} {path}: is {_kind_of(path)}, expected a regular file path")
    data = tlbrace_data_kind(path)
    if data is not None and data != may_replace:  # `analyze L --perfetto L`, `report D -o D/results.msgpack`
        raise UsageError(f"{flag} {path}: is {data}; writing there would destroy it: expected another file name")
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        what = "is not a directory" if os.path.exists(parent) else "does not exist"
        raise UsageError(f"{flag} {path}: the directory {parent} {what}")
    if suffixes and not path.lower().endswith(suffixes):
        raise UsageError(f"{flag} {path}: expected a file name ending in {' or '.join(suffixes)}")
    _check_file_name_length(path, parent, flag)
    # A read-only directory was found only at the write, after the work: `shrink -o` after its delta debugging,
    # `history --png` after every search, `analyze --timeline` after judging every trial (exit 3 each time).
    _check_creatable(path, parent, flag, "place for it")


def _check_cwd(path: str, flag: str) -> None:
    """A relative path needs a current directory: one deleted under the shell made every path check fail with a
    bare "No such file or directory" that named nothing."""
    from cli.errors import EnvironmentFailure

    if not os.path.isabs(path):
        try:
            os.getcwd()
        except FileNotFoundError:
            raise EnvironmentFailure(f"{flag} {path}: the current directory no longer exists (deleted after the "
                                     "shell entered it): cd to an existing directory, or give an absolute path") \
                from None


def tlbrace_data_kind(path: str) -> str | None:
    """What tlbrace data a regular file at ``path`` holds, by its first bytes ("an event log", ...), else None."""
    from logs.results_file import MAGIC

    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None  # the write says what is wrong
    if head.startswith(MAGIC) or b"tlbrace-results" in head:
        return RESULTS_KIND
    if b"tlbrace-log" in head:
        return EVENT_LOG_KIND
    return SCHEDULE_KIND if b"tlbrace-schedule" in head else None


EVENT_LOG_KIND: Final = "an event log"
SCENARIO_KIND: Final = "a scenario"
# What to do with each kind of file, for a command that was given the wrong one.
_TAKEN_BY: Final = {SCHEDULE_KIND: "replay or shrink it (tlbrace replay FILE)",
                    EVENT_LOG_KIND: "analyze or replay it (tlbrace analyze FILE)",
                    RESULTS_KIND: "report its campaign (tlbrace report DIR), or analyze the failing trials' logs "
                                  "beside it"}


def other_kind(path: str, wanted: str) -> str | None:
    """"PATH: is an event log, not a schedule file: analyze or replay it ..." when ``path`` holds another kind of
    tlbrace data than ``wanted`` (a schedule file given to `shrink` was "not one msgpack document", an event log
    given to `explore` "not UTF-8 text"); None otherwise."""
    kind = tlbrace_data_kind(path)
    if kind is None or kind == wanted:
        return None
    return f"{path}: is {kind}, not {wanted}: {_TAKEN_BY[kind]}"


def _kind_of(path: str) -> str:
    from scenarios.input_files import file_kind

    return "a file" if os.path.isfile(path) else file_kind(os.stat(path).st_mode)


def _broken_link(path: str) -> str | None:
    """``path`` or its closest ancestor that is a symbolic link to nothing, if it is one (None otherwise)."""
    at = os.path.abspath(path)
    while not os.path.exists(at):
        if os.path.lexists(at):
            return at
        at = os.path.dirname(at)
    return None


def nearest_existing(path: str) -> str:
    """``path`` itself if it exists, else its closest ancestor that does."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    return existing


def add_output_options(p: argparse.ArgumentParser, *, default_out: str = "tlbrace-out") -> None:
    p.add_argument("--seed", type=seed_arg, default=0,
                   help="seed of every random choice (default 0; a 64-bit signed integer)")
    p.add_argument("--json", action="store_true", help="print one machine-readable JSON object on stdout")
    p.add_argument("--out", default=default_out, metavar="DIR", help="where files go")


# --width: narrower cannot hold a CPU column's kernel names; wider is a typo (rich pads every line to the width, so
# --width 2**63 ran out of memory, and a still larger one overflowed a C size).
MIN_WIDTH: Final = 40
MAX_WIDTH: Final = 10_000


def add_view_options(p: argparse.ArgumentParser) -> None:
    """How a counterexample is printed: ``explore``, ``replay`` and ``analyze``."""
    p.add_argument("--format", choices=("table", "diagram"), default="table",
                   help="table: per-CPU tables (story, witness); diagram: the race as CPU columns in plain ASCII, "
                        "as kernel commit messages draw it, for a mail")
    p.add_argument("--width", type=int_in(MIN_WIDTH, MAX_WIDTH), default=None, metavar="N",
                   help=f"fit the output in N columns, {MIN_WIDTH} to {MAX_WIDTH} (default: the terminal's width; 80 "
                        "when not a terminal, and for diagrams)")


def console_for(args: argparse.Namespace, *, stderr: bool = False) -> Any:
    """A rich Console as wide as --width, else as the terminal (rich: $COLUMNS, else 80 off a terminal); tables
    wrap their cells to fit."""
    from rich.console import Console

    from cli.errors import UsageError

    width = getattr(args, "width", None)
    if width is not None and not MIN_WIDTH <= width <= MAX_WIDTH:
        raise UsageError(f"--width: expected {MIN_WIDTH} to {MAX_WIDTH} columns, got {width}")
    return Console(stderr=stderr, width=width)


def diagram_width(args: argparse.Namespace) -> int:
    width = getattr(args, "width", None)
    return width if width is not None else 80


def load(args: argparse.Namespace) -> tuple[Scenario, Config]:
    from cli.errors import UsageError
    from scenarios.loader import ScenarioError, load_scenario, parse_params

    try:
        scenario = load_scenario(args.scenario, parse_params(args.param))
    except ScenarioError:
        wrong = other_kind(args.scenario, SCENARIO_KIND)
        if wrong is not None:
            raise UsageError(wrong) from None
        raise
    return scenario, config_from_args(args, scenario.config)


def config_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None) -> Config:
    """``base`` (a scenario's [config] table) overridden by --kernel's fixes, then by the command line's other
    configuration options: an explicit --ordering or --delayed-batches with --kernel is a kernel with that one
    fix backported or reverted (``--kernel 6.2 --delayed-batches active`` is the seed patch without its
    follow-up c47454823bd4)."""
    from cli.errors import UsageError

    overrides: dict[str, Any] = kernel_overrides(getattr(args, "kernel", None))
    for key in ("ordering", "arch", "mutant", "delayed_batches"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    gathered: set[str] = set()
    for item in getattr(args, "gather", []):
        name, sep, value = item.partition("=")
        if not sep or name not in ("mmu_gather_bundle", "max_gather_batch", "max_gather_batch_count"):
            raise UsageError(f"--gather {item!r}: expected mmu_gather_bundle|max_gather_batch|"
                             "max_gather_batch_count=INT")
        if name in gathered:  # the last one won without a word, where --param refuses a name given twice
            raise UsageError(f"--gather {item!r}: {name} is given twice")
        gathered.add(name)
        try:
            overrides[name] = decimal_int(value)
        except ValueError:
            raise UsageError(f"--gather {item!r}: {value!r} is not an integer in ASCII digits") from None
        try:  # its range, by the model's own check: "max_gather_batch: expected ..." named no option
            Config.from_dict({name: overrides[name]})
        except ConfigError as exc:
            raise UsageError(f"--gather {item!r}: {exc}") from None
    return Config.from_dict({**(base or {}), **overrides})


def kernel_overrides(version: str | None) -> dict[str, Any]:
    """--kernel VERSION as configuration overrides ({} without it); an unknown version is a usage error."""
    from cli.errors import UsageError

    if version is None:
        return {}
    try:
        return kernel_config(version)
    except KernelError as exc:
        raise UsageError(f"--kernel: {exc}") from None
