"""What an exhaustive search will need in memory, estimated before it starts, and what fits.

A search keeps every state it has visited (its canonical key, or a 64-bit hash of it with hash compaction) and
the states waiting to be expanded (their full keys: BFS's frontier, DFS's stack). A key holds a few tuples of
one slot per page (folios, page cache, disk, PTEs, VMAs, i_mmap links) and the renamed folios of its canonical
form, so a state costs about a fixed amount per page: a ladder with 10,000 pages needs megabytes per state, and
a budget of millions of states cannot fit. ``estimate`` measures the initial state's keys (the same objects a
search stores) and scales by the budget, without running a step; ``check_fits`` refuses what the machine's
available memory cannot hold, saying which budget or how many pages would fit.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from kernel_model.config import Config
from kernel_model.program import Scenario

# Per visited state besides its key: the dict or set slot, BFS's parent link (a tuple of the parent's key and
# the transition), Python object headers. Measured on the ladder with tracemalloc: 100-300 bytes.
OVERHEAD_PER_STATE = 300
HASH_PER_STATE = 100  # a visited entry with hash compaction: the int and its set slot
USABLE_FRACTION = 0.8  # leave room for the interpreter, the memos and everything else running
MIN_BUDGET = 1_000  # a search smaller than this says too little to be worth running


@dataclass(frozen=True, slots=True)
class Estimate:
    bytes_per_state: int  # what one more visited state costs
    bytes: int  # for the whole budget
    pages: int

    @property
    def bytes_per_page_state(self) -> float:
        return self.bytes_per_state / max(1, self.pages)


def estimate(scenario: Scenario, cfg: Config, strategy: str, budget: int, hash_compact: bool) -> Estimate:
    """The memory a ``strategy`` search of ``budget`` states will use, at most (bfs/dfs; sampling keeps only a
    hash per state)."""
    from controlled.machine import Machine

    m = Machine(scenario, cfg)  # no reduction: its footprints are not needed to size a state
    key = m.key()
    canonical = m.canonical(key)
    both = deep_size((key, canonical))
    if strategy not in ("bfs", "dfs"):
        per_state = HASH_PER_STATE
    elif hash_compact:
        # Visited: a hash. Waiting: full keys; BFS's frontier can hold a large share of the states, DFS's
        # stack only the siblings along one path.
        per_state = HASH_PER_STATE + (deep_size(key) if strategy == "bfs" else 0)
    else:
        per_state = OVERHEAD_PER_STATE + (both if strategy == "bfs" else deep_size(canonical))
    return Estimate(per_state, per_state * budget, scenario.setup.pages)


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
    return int(available * USABLE_FRACTION) // est.bytes_per_state


def check_fits(est: Estimate, budget: int, available: int, *, label: str) -> None:
    """Raise DoesNotFit, saying which budget or how many pages would fit, when ``budget`` states do not."""
    usable = int(available * USABLE_FRACTION)
    if available <= 0 or est.bytes <= usable:
        return
    budget_fits = budget_that_fits(est, available)
    pages_fit = int(usable / budget / est.bytes_per_page_state) if budget else 0
    advice = [f"--budget {budget_fits:,}" if budget_fits >= 1 else "no budget at this size"]
    if 1 <= pages_fit < est.pages:
        advice.append(f"about {pages_fit:,} page{'s' if pages_fit > 1 else ''} with this budget")
    raise DoesNotFit(
        f"{label}: a search of {budget:,} states needs about {human(est.bytes)} ({human(est.bytes_per_state)} a "
        f"state for {est.pages:,} pages), but {human(usable)} of this machine's {human(available)} available "
        f"memory is usable; what fits: {' or '.join(advice)}"
        + (f"; or --strategy dfs --hash-compact (a hash per visited state: about {human(budget * HASH_PER_STATE)})"
           if est.bytes_per_state > 4 * HASH_PER_STATE else ""))


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
