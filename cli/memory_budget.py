"""``--memory-limit`` and the budget check shared by every command that searches (explore, history, fuzz): before
a search allocates anything, its memory is estimated (controlled.search_memory: the initial state's size times the
budget). A budget the user gave that cannot fit is refused (exit 2, saying what would fit); a default budget is
lowered to what fits, with a note, unless not even MIN_BUDGET states fit."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

from cli.errors import UsageError
from kernel_model.config import Config
from kernel_model.program import Scenario
from scenarios.decimal_text import decimal_float

SEARCHES = ("bfs", "dfs")  # the strategies that store their states; random and pct keep a hash per state
# --budget's largest value, states or runs: a trillion states is petabytes stored, a trillion runs decades. A
# larger one was priced as given, "a search of 10,000,000,000,000,000,000,000 states needs about 27121132006868.7
# TB", and passed on as a number past every C integer the search keeps.
MAX_BUDGET = 10**12


def budget_arg(text: str) -> int:
    """An argparse type for --budget: an integer up to MAX_BUDGET (each command refuses one below 1, naming it)."""
    from cli.options import integer

    value = integer(text)
    if value > MAX_BUDGET:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_BUDGET:,} (states or runs), got {text}")
    return value


def add_memory_limit_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--memory-limit", metavar="SIZE", default=None,
                   help="refuse a bfs/dfs search whose estimated memory exceeds this (e.g. 4G, 512M; default: "
                        "what the machine has available)")


def check_memory_limit_applies(args: argparse.Namespace) -> None:
    """--memory-limit prices stored states: with random or pct (runs, each keeping a hash per state) it would be
    ignored, so it is refused rather than silently meaningless."""
    if args.memory_limit is not None and args.strategy not in SEARCHES:
        raise UsageError(f"--memory-limit: only with --strategy bfs or dfs (their stored states are what it "
                         f"limits); --strategy {args.strategy} keeps a hash per state and takes --budget runs")


def fit_budget(scenarios: Iterable[Scenario], cfg: Config, strategy: str, budget: int, *, given: bool,
               memory_limit: str | None, hash_compact: bool, label: str, offers_hash_compact: bool = False,
               at_once: int = 1) -> int:
    """The budget every one of ``scenarios`` can be searched with: ``budget`` if it fits, else, when the budget
    was not ``given``, the largest that fits (noted on stderr). Raises UsageError when a given budget does not fit,
    or a default one cannot be lowered to MIN_BUDGET. Only a command that ``offers_hash_compact`` is told to try
    --hash-compact. ``at_once``: searches running together on this machine, which share its memory (fuzz
    --parallel 8 priced each of its 8 searches against all of it)."""
    from controlled import search_memory

    if strategy not in SEARCHES:
        return budget
    limit, source = (parse_size(memory_limit), "--memory-limit") if memory_limit is not None else (
        search_memory.available_bytes(), "this machine's memory")
    room = address_space_left()
    if room is not None and (limit <= 0 or room < limit):
        limit, source = room, "the address-space limit, `ulimit -v`, less what this process maps"
    if at_once > 1 and limit > 0 and memory_limit is None:  # --memory-limit is a search's own
        limit, source = limit // at_once, f"{source}, shared by {at_once} searches at once"
    ests = [(sc, search_memory.estimate(sc, cfg, strategy, budget, hash_compact)) for sc in scenarios]
    if not ests:
        return budget
    scenario, est = max(ests, key=lambda pair: pair[1].bytes_per_state)
    fits = search_memory.budget_that_fits(est, limit)
    if fits >= budget:
        return budget
    if not given and fits >= search_memory.MIN_BUDGET:
        print(f"tlbrace: note: the default budget of {budget:,} states would need about "
              f"{search_memory.human(est.bytes)}; searching at most {fits:,} states, what fits in memory",
              file=sys.stderr)
        return fits
    try:
        search_memory.check_fits(est, budget, limit, label=f"{label} {scenario.name}",
                                 source=source)
    except search_memory.DoesNotFit as exc:
        text = str(exc)
        raise UsageError(text if offers_hash_compact else text.split("; or --strategy dfs --hash-compact")[0]) \
            from None
    return budget


def address_space_left() -> int | None:
    """Bytes this process may still map under its RLIMIT_AS (`ulimit -v`, `prlimit --as`), at least 1; None
    without such a limit. The machine's free memory alone priced the search: under a 1.2 GB limit the default
    budget was lowered to 1.6 million states "what fits in memory" (17 GB), and the search ended in MemoryError
    (exit 3) or a segmentation fault (exit 139) minutes later."""
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    return max(1, soft - _mapped_bytes())


def _mapped_bytes() -> int:
    """The process's mapped address space (VmSize), which is what RLIMIT_AS bounds; 0 when /proc cannot say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def parse_size(text: str) -> int:
    """'512M', '4G', '1.5T', '1000000' -> bytes."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B")
    number, unit = (t[:-1], t[-1]) if t and t[-1] in units else (t, "")
    try:
        value = decimal_float(number) * units[unit]
    except ValueError:
        raise UsageError(f"--memory-limit {text!r}: expected a size such as 512M, 4G or 1000000") from None
    if not value > 0:  # nan too
        raise UsageError(f"--memory-limit {text!r}: expected a positive size")
    if value == float("inf"):  # inf, 1e400G: int() of it was an internal error
        raise UsageError(f"--memory-limit {text!r}: expected a finite size")
    if value < 1:  # 0.5 was 0 bytes, which the budget check reads as "unknown": no limit at all
        raise UsageError(f"--memory-limit {text!r}: expected a size of at least 1 byte")
    return int(value)
