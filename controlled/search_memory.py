"""What an exhaustive search will need in memory, estimated before it starts, and what fits.

A search keeps every state it has visited and the states waiting to be expanded (BFS's frontier, DFS's stack).
What it stores per visited state is priced as stored (controlled.visited):
- exact keys: the numbers of the canonical key's parts (CompactKeys: a few dozen numbers of a byte or three,
  whatever the page count), its slot in the visited set, and its share of the tables of parts (a new state
  usually brings a new part or two, tuples of one slot per page), of the sleep sets (dfs) and of the search's
  memos (bounded, controlled.memo: a share that shrinks as the search grows, priced here at a small cell's);
- hash compaction: a 64-bit hash and its slot.
BFS's frontier holds full keys (a share of all states may wait there: priced for each); DFS's stack holds full
keys only along one path and its siblings (a fixed allowance). ``estimate`` encodes the initial state as the
search would and scales by the budget, without running a step; ``check_fits`` refuses what the machine's
available memory cannot hold, saying which budget or how many pages would fit.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from kernel_model.config import Config
from kernel_model.program import Scenario

# Per visited state with exact keys, besides its encoded key: its visited-set slot and its share of the tables
# of parts. Measured with tracemalloc on ladder pages=1 writers=2 stores=2 passes=1 (dfs with sleep sets,
# 125,298 states; bench/memory_per_state.py --traced, and by line with TLBRACE_PURE_PYTHON=1): 214 bytes a state
# at the peak (533 before the memos were bounded, issue 17), 64 of them the encoded key, 34 its slot and share
# of the parts, 42 the sleep sets, 58 the memos (42 the persistent-set memo's 46,617 keys and their dict, which
# holds at most 2 x 65,536), 16 the DFS stack and the rest at the peak. RSS growth: 215 a state; on pages=2
# writers=2 stores=1 (825,827 states), 208.
EXACT_SLOT_PER_STATE = 40
# Per visited state, whatever the encoding: its share of the sleep sets, of the memos and of the DFS stack
# (above: 116; bounded memos cost a larger search less a state). With hash compaction, ladder pages=2 writers=2
# stores=1 grew 190 bytes a state (RSS).
SEARCH_PER_STATE = 120
NEW_PART_SLOTS = 2  # per-page slots of the new parts a state adds to the table (8 bytes each), per page
# BFS: the parent link each visited state keeps (a tuple of the parent's entry and the transition).
PARENT_PER_STATE = 64
HASH_PER_STATE = 100  # a visited entry with hash compaction: the int and its set slot
DFS_STACK_ENTRIES = 4096  # keys on a DFS stack at once, at most (a path and its siblings; an allowance)
USABLE_FRACTION = 0.8  # leave room for the interpreter, the memos and everything else running
MIN_BUDGET = 1_000  # a search smaller than this says too little to be worth running


@dataclass(frozen=True, slots=True)
class Estimate:
    bytes_per_state: int  # what one more visited state costs
    bytes: int  # for the whole budget, the fixed part included
    pages: int
    fixed: int = 0  # what does not grow with the states (DFS's stack)

    @property
    def bytes_per_page_state(self) -> float:
        return self.bytes_per_state / max(1, self.pages)


def estimate(scenario: Scenario, cfg: Config, strategy: str, budget: int, hash_compact: bool) -> Estimate:
    """The memory a ``strategy`` search of ``budget`` states will use, at most (bfs/dfs; sampling keeps only a
    hash per state)."""
    from controlled.machine import Machine
    from controlled.visited import CompactKeys

    m = Machine(scenario, cfg)  # no reduction: its footprints are not needed to size a state
    key = m.key()
    pages = scenario.setup.pages
    fixed = 0
    if strategy not in ("bfs", "dfs"):
        per_state = HASH_PER_STATE
    else:
        per_state = SEARCH_PER_STATE + (HASH_PER_STATE if hash_compact else
                                         sys.getsizeof(CompactKeys().encode(m.canonical(key)))
                                         + EXACT_SLOT_PER_STATE + 8 * NEW_PART_SLOTS * pages)
        if strategy == "bfs":  # the frontier: full keys, for a share of the states as large as all of them
            per_state += deep_size(key) + PARENT_PER_STATE
        else:
            fixed = DFS_STACK_ENTRIES * own_size(key)
    return Estimate(per_state, per_state * budget + fixed, pages, fixed)


def own_size(key: tuple) -> int:
    """Bytes a key on DFS's stack holds of its own: its tuples down to the state's fields (one slot per page
    each). The folios, PTEs and TLB entries in them are shared with the keys around it: a step replaces one or
    two."""
    return sys.getsizeof(key) + sum(sys.getsizeof(part) + sum(map(sys.getsizeof, part)) for part in key)


def deep_size(obj: object) -> int:
    """Bytes of the containers reachable from ``obj``, each counted once (ints, bools, None and strings are
    shared by every state, so they are left out)."""
    seen: set[int] = set()
    total = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or not isinstance(o, (tuple, list, dict, set, frozenset)):
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        stack.extend(o.items() if isinstance(o, dict) else o)
    return total


def available_bytes() -> int:
    """Memory this process may still use: MemAvailable, or the cgroup's limit less its usage if lower."""
    best = _meminfo("MemAvailable") or 0
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            best = min(best, int(limit) - used) if best else int(limit) - used
    except (OSError, ValueError):
        pass
    return best


def _meminfo(field: str) -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class DoesNotFit(ValueError):
    """The search cannot fit in memory; the message says what would."""


def budget_that_fits(est: Estimate, available: int) -> int:
    """The most states whose search fits in ``available`` bytes (any number when it is unknown: 0)."""
    if available <= 0:
        return sys.maxsize
    return max(0, int(available * USABLE_FRACTION) - est.fixed) // est.bytes_per_state


def check_fits(est: Estimate, budget: int, available: int, *, label: str,
               source: str = "this machine's memory") -> None:
    """Raise DoesNotFit, saying which budget or how many pages would fit, when ``budget`` states do not;
    ``source``: where ``available`` comes from, as the message names it."""
    usable = int(available * USABLE_FRACTION)
    if available <= 0 or est.bytes <= usable:
        return
    budget_fits = budget_that_fits(est, available)
    hashed = HASH_PER_STATE + SEARCH_PER_STATE  # what a state costs a dfs with hash compaction
    pages_fit = int(max(0, usable - est.fixed) / budget / est.bytes_per_page_state) if budget else 0
    advice = [f"--budget {budget_fits:,}" if budget_fits >= 1 else "no budget at this size"]
    if 1 <= pages_fit < est.pages:
        advice.append(f"about {pages_fit:,} page{'s' if pages_fit > 1 else ''} with this budget")
    raise DoesNotFit(
        f"{label}: a search of {budget:,} states needs about {human(est.bytes)} ({human(est.bytes_per_state)} a "
        f"state for {est.pages:,} page{'s' if est.pages != 1 else ''}), but {human(usable)} of the {human(available)} "
        f"available ({source}) is usable; "
        f"what fits: {' or '.join(advice)}"
        + (f"; or --strategy dfs --hash-compact (a hash per visited state: about {human(budget * hashed)})"
           if est.bytes_per_state > 2 * hashed else ""))


def human(n: float) -> str:
    """Bytes for a message, up to exabytes: with TB the last unit, a budget of 10**22 states was "27121132006868.7
    TB"."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} EB"
