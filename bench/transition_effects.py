"""How many distinct transition effects an exhaustive search meets: what a compiled search core would still have
to ask Python for (issue 17), measured, never asserted.

Issue 17 asks for the largest ladder cell's proof (11.8M states, 29.5M transitions after every reduction) in 18 s,
with the kernel paths kept as Python generators. That is about 1 us a transition; a Python transition costs 9-16
us bare and 30 us with the search around it. So a compiled core could only meet it if it ran the Python model
for few of the transitions, and did the rest from tables: a transition's effect (its writes, the thread's next
position, the events the oracle sees) is a function of the agent, its position and the values its steps read.
If the search meets few distinct (agent, position, values read) among its transitions, a table filled lazily by
the Python model (a decision tree per position: read a field, branch on its value, ...) answers the rest.

This script measures that number. It runs the Python model (TLBRACE_PURE_PYTHON=1, so that it can watch it) with
every state container replaced by one that logs each read (list items, TLB entries, the scalar fields, the
rw_semaphores) while a transition executes, and the oracle's whole ghost state counted as read whenever the
oracle is asked anything (an upper bound: the oracle reads less). Each transition's entry is (the transition,
the agent's position, the reads in order with the values they returned). Each entry's effect (the state writes it made, the positions and
oracle parts it changed, and its violations) is kept, and an entry met again with another effect is counted: a read the
watch missed, which a table would get wrong. The same for the reduced enabled set
(Machine.enabled: the persistent set), whose entry is every thread's position and what the reducer read.
The search is the one tlbrace runs (delayed, dfs, sleep sets, symmetry): the watch changes no count.

Usage: python bench/transition_effects.py [--cell P,W,S,PASSES] ... [--transitions-only]
   (default: 1,2,2,1 and 1,2,1,2; --transitions-only: skip the enabled sets, for the largest cell)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

os.environ["TLBRACE_PURE_PYTHON"] = "1"  # the watch patches classes, which compiled callers would bypass
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from controlled import machine as machine_module  # noqa: E402
from controlled.explorer import explore  # noqa: E402
from kernel_model import boot, state as state_module  # noqa: E402
from kernel_model.config import Config  # noqa: E402
from kernel_model.oracle import Oracle  # noqa: E402
from kernel_model.state import RwSem, State  # noqa: E402
from scenarios.loader import load_scenario  # noqa: E402


class Watch:
    """The reads logged while a transition (or an enabled-set computation) runs, and the writes; None: not
    watching."""

    log: list | None = None
    writes: list | None = None


def _note(*read: Any) -> None:
    if Watch.log is not None:
        Watch.log.append(read)


def _wrote(*write: Any) -> None:
    if Watch.writes is not None:
        Watch.writes.append(write)


class WatchedList(list):
    """A state list (folios, ptes, ...) that logs each item read while watched."""

    __slots__ = ("name",)

    def __getitem__(self, i: Any) -> Any:
        v = list.__getitem__(self, i)
        _note(self.name, i if isinstance(i, int) else repr(i), v if isinstance(i, int) else tuple(v))
        return v

    def __iter__(self) -> Any:
        _note(self.name, "*", tuple(list.__iter__(self)))
        return list.__iter__(self)

    def __setitem__(self, i: Any, v: Any) -> None:
        _wrote(self.name, i, v)
        list.__setitem__(self, i, v)


class WatchedTlb(dict):
    """A CPU's TLB (virtual page -> entry) that logs each lookup while watched."""

    __slots__ = ("cpu",)

    def __getitem__(self, va: Any) -> Any:
        v = dict.__getitem__(self, va)
        _note("tlb", self.cpu, va, v)
        return v

    def get(self, va: Any, default: Any = None) -> Any:
        v = dict.get(self, va, default)
        _note("tlb", self.cpu, va, v)
        return v

    def __contains__(self, va: Any) -> bool:
        v = dict.__contains__(self, va)
        _note("tlb", self.cpu, va, dict.get(self, va))
        return v

    def pop(self, va: Any, *default: Any) -> Any:
        _note("tlb", self.cpu, va, dict.get(self, va))
        _wrote("tlb", self.cpu, va, None)
        return dict.pop(self, va, *default)

    def __setitem__(self, va: Any, v: Any) -> None:
        _wrote("tlb", self.cpu, va, v)
        dict.__setitem__(self, va, v)

    def __delitem__(self, va: Any) -> None:
        _wrote("tlb", self.cpu, va, None)
        dict.__delitem__(self, va)

    def __iter__(self) -> Any:
        _note("tlb", self.cpu, "*", tuple(sorted(dict.items(self))))
        return dict.__iter__(self)

    def items(self) -> Any:
        _note("tlb", self.cpu, "*", tuple(sorted(dict.items(self))))
        return dict.items(self)

    def values(self) -> Any:
        _note("tlb", self.cpu, "*", tuple(sorted(dict.items(self))))
        return dict.values(self)


class WatchedSem(RwSem):
    """An rw_semaphore whose holders are logged when read while watched."""

    __slots__ = ("name",)

    def __getattribute__(self, attr: str) -> Any:
        if attr in ("writer", "readers"):
            _note(object.__getattribute__(self, "name"), attr, object.__getattribute__(self, attr))
        return object.__getattribute__(self, attr)

    def __setattr__(self, attr: str, v: Any) -> None:
        if attr != "name" and Watch.writes is not None:  # not while watched() builds it
            _wrote(object.__getattribute__(self, "name"), attr, v)
        object.__setattr__(self, attr, v)


_LISTS = ("folios", "page_cache", "disk", "ptes", "vma", "i_mmap", "ptl", "ipis", "acks_pending", "vm_write")
_SCALARS = frozenset({"i_size", "tlb_flush_pending", "tlb_flush_batched", "ptes_per_table"})


class WatchedState(State):
    """A State whose scalar fields are logged when read while watched (its containers log themselves)."""

    __slots__ = ()

    def __getattribute__(self, attr: str) -> Any:
        v = object.__getattribute__(self, attr)
        if attr in _SCALARS:
            _note(attr, v)
        return v

    def __setattr__(self, attr: str, v: Any) -> None:
        _wrote(attr, v)
        object.__setattr__(self, attr, v)


def watched(s: State) -> WatchedState:
    """``s`` with every container replaced by a watched one (the same values)."""
    lists = {}
    for name in _LISTS:
        w = WatchedList(getattr(s, name))
        w.name = name
        lists[name] = w
    tlbs = []
    for cpu, t in enumerate(s.tlbs):
        w = WatchedTlb(t)
        w.cpu = cpu
        tlbs.append(w)
    sems = []
    for name in ("mmap_lock", "i_mmap_rwsem", "i_rwsem"):
        old = getattr(s, name)
        sem = WatchedSem(old.writer, old.readers)
        sem.name = name
        sems.append(sem)
    return WatchedState(lists["folios"], lists["page_cache"], lists["disk"], lists["ptes"], lists["vma"],
                        lists["i_mmap"], lists["ptl"], s.ptes_per_table, sems[0], sems[1], tlbs, lists["ipis"],
                        lists["acks_pending"], s.i_size, s.tlb_flush_pending, s.tlb_flush_batched,
                        lists["vm_write"], sems[2])


def _rewatch(m: Any) -> None:
    """The model may replace a container (a TLB dict, a list) rather than change it: watch the new one too."""
    s = m.state
    if type(s) is not WatchedState or any(type(getattr(s, n)) is not WatchedList for n in _LISTS) \
            or any(type(t) is not WatchedTlb for t in s.tlbs) \
            or any(type(sem) is not WatchedSem for sem in (s.mmap_lock, s.i_mmap_rwsem, s.i_rwsem)):
        m.state = watched(s)
        m.pt.s = m.state


PROGRESS_EVERY = 1_000_000  # transitions between two progress lines (stderr)


class Tally:
    """Distinct entries met, against the calls made; with effects, whether each entry always had the same one."""

    def __init__(self) -> None:
        self.calls = 0
        self.distinct: dict = {}  # entry -> its effect
        # Entries kept without an effect (the enabled sets) are kept as 64-bit hashes: on the largest ladder cell
        # they are nearly all distinct, millions of read logs of a kilobyte or more each. Two entries whose hashes
        # collide count once: among 10 million, about 3 in a million chances of one such pair.
        self.hashed: set[int] = set()
        self.positions: set = set()  # distinct (agent, position): the decision trees' roots
        self.differing = 0  # entries met again with another effect: a read the watch did not see

    @property
    def count(self) -> int:
        return len(self.distinct) + len(self.hashed)

    def add(self, root: tuple, reads: list, effect: object = None) -> None:
        self.calls += 1
        if self.calls % PROGRESS_EVERY == 0 and effect is not None:  # how the table grows along a long search
            print(f"    ... {self.calls:,} transitions, {self.count:,} distinct", file=sys.stderr, flush=True)
        self.positions.add(root)
        entry = (root, tuple(reads))
        if effect is None:
            self.hashed.add(hash(entry))
            return
        known = self.distinct.setdefault(entry, effect)
        if known != effect:
            self.differing += 1


def effect_of(writes: list, before: tuple, after: tuple, violations: list) -> tuple:
    """What a transition did, as a table would hold it: the state writes it made in order (a write of the value
    already there included: the same step always makes it), each thread position and oracle part that changed,
    and the violations it made."""
    (_, p0, o0), (_, p1, o1) = before, after
    moved = tuple((t, b) for t, (a, b) in enumerate(zip(p0, p1)) if a != b)
    oracle = tuple((i, b) for i, (a, b) in enumerate(zip(o0, o1)) if a != b)
    return tuple(writes), moved, oracle, tuple(sorted(repr(v) for v in violations))


def install(executes: Tally, enableds: Tally | None) -> None:
    """Patch the machine (this process only) so that every transition and enabled-set computation is tallied."""
    machine_cls = machine_module.Machine
    execute, enabled, restore = machine_cls.execute, machine_cls.enabled, machine_cls.restore
    initial_state = boot.initial_state
    observe, quiescent, wants, covering = Oracle.observe, Oracle.quiescent, Oracle.wants, Oracle.covering

    def oracle_read(method: Any) -> Any:
        def read(self: Oracle, *args: Any) -> Any:
            _note("oracle", self.key())  # the whole ghost state, as an upper bound on what it reads
            return method(self, *args)

        return read

    Oracle.observe, Oracle.quiescent = oracle_read(observe), oracle_read(quiescent)
    Oracle.wants, Oracle.covering = oracle_read(wants), oracle_read(covering)

    def watched_execute(self: Any, tr: Any) -> Any:
        _rewatch(self)
        agent = self.pos[tr[1]].at if tr[0] == "t" else ()
        block = len(self.pos[tr[1]].block) if tr[0] == "t" else 0
        before = self.key()
        Watch.log, Watch.writes = [], []
        violations = execute(self, tr)
        reads, writes, Watch.log, Watch.writes = Watch.log, Watch.writes, None, None
        executes.add((tuple(tr), agent, block), reads, effect_of(writes, before, self.key(), violations))
        return violations

    def watched_enabled(self: Any) -> Any:
        _rewatch(self)
        Watch.log = []
        try:
            return enabled(self)
        finally:
            reads, Watch.log = Watch.log, None
            enableds.add(tuple((p.at, len(p.block)) for p in self.pos), reads)

    def watched_restore(self: Any, key: tuple) -> None:
        restore(self, key)
        _rewatch(self)

    machine_cls.execute, machine_cls.restore = watched_execute, watched_restore
    if enableds is not None:
        machine_cls.enabled = watched_enabled
    boot.initial_state = lambda scenario, cfg: watched(initial_state(scenario, cfg))
    assert state_module.State is State


def measure(cell: tuple[int, int, int, int], transitions_only: bool = False) -> None:
    pages, writers, stores, passes = cell
    executes, enableds = Tally(), (None if transitions_only else Tally())
    install(executes, enableds)
    sc = load_scenario("ladder", {"pages": pages, "writers": writers, "stores": stores, "passes": passes})
    t0 = time.process_time()
    r = explore(sc, Config(ordering="delayed"), "dfs", budget=50_000_000)
    cpu = time.process_time() - t0
    print(f"ladder {pages},{writers},{stores},{passes} delayed dfs: {r.states:,} states, {r.transitions:,} "
          f"transitions, complete={r.complete} ({cpu:.0f} s of CPU, watched, pure Python)")
    for what, t in (("transitions executed", executes), ("enabled sets (persistent sets) computed", enableds)):
        if t is None:
            continue
        print(f"  {what}: {t.calls:,}; distinct (agent, position, values read): {t.count:,} "
              f"({t.count / max(1, t.calls):.4f} of them); distinct (agent, position): {len(t.positions):,}")
    print(f"  transitions whose entry had been met with another effect: {executes.differing:,} (0: the reads "
          "decide the effect, as a table needs)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cell", action="append", default=None,
                    help="ladder cell as pages,writers,stores,passes (repeatable; default 1,2,2,1 and 1,2,1,2)")
    ap.add_argument("--transitions-only", action="store_true",
                    help="watch transitions only, not the enabled sets (faster: for the largest cell)")
    args = ap.parse_args()
    cells = args.cell or ["1,2,2,1", "1,2,1,2"]
    for cell in cells:
        # One process per cell: the patches and the memos are per process.
        if len(cells) > 1:
            os.spawnv(os.P_WAIT, sys.executable, [sys.executable, os.path.abspath(__file__), "--cell", cell]
                      + (["--transitions-only"] if args.transitions_only else []))
        else:
            measure(tuple(int(x) for x in cell.split(",")), args.transitions_only)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
