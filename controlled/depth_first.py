"""The depth-first engine of the exhaustive search, and what a search returns.

``depth_first`` expands a stack of states; ``explorer._dfs`` runs it in this process and
``parallel_search`` in forked workers that share a visited set. Both import it from here, so that the
front door (``explorer.explore``, which picks the strategy and may start the workers) is the only module that
imports ``parallel_search`` (no import cycle, issue 13).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

from controlled.machine import Machine, Transition
from controlled.sleep_sets import NOTHING, SleepSets
from controlled.visited import Keys, adder, encoder, keys_for, stored_bytes
from kernel_model.events import Violation


@dataclass(slots=True)
class Found:
    violations: list[Violation]
    schedule: list[Transition]

    @property
    def invariants(self) -> list[str]:
        return sorted({v.invariant for v in self.violations})


@dataclass(slots=True)
class ExploreResult:
    strategy: str
    complete: bool  # the whole (reduced) state space was explored
    states: int
    schedules: int  # executions run to their end (sampling) or terminal states reached (exhaustive)
    transitions: int
    seconds: float
    found: list[Found] = field(default_factory=list)
    collision_bound: float = 0.0  # hash compaction: an upper bound on the chance that two states were merged
    stored_bytes: int = 0  # exhaustive, when asked (measure_memory): bytes the visited set holds, all included
    workers: int = 1  # processes that searched: --workers N forks only a search still running after 0.3 s
    merged: int = 0  # states run through without being stored (depth_first's statement merging)
    sleep_sets: bool = False  # the search pruned with sleep sets (controlled.sleep_sets)
    sleep_sets_off: str = ""  # why a dfs that was to prune with sleep sets could not ("": it did, or was not to)

    @property
    def bytes_per_state(self) -> float:
        return self.stored_bytes / self.states if self.states else 0.0


# (state key, depth, the transition into it, its sleep set, and None to explore it, or the transitions to
# explore from it again: those a revisit found awake, controlled.sleep_sets)
StackEntry = tuple[tuple, int, "Transition | None", frozenset, "tuple | None"]
TICK_EVERY = 1024  # new states between two calls of depth_first's tick


def root_entry(m: Machine) -> StackEntry:
    """The stack entry of the state ``m`` is in, as the first of a search."""
    return (m.key(), 0, None, NOTHING, None)


def depth_first(m: Machine, canon: Callable[[tuple], object], is_new: Callable[[object], bool],
                stack: list[StackEntry], path: list[Transition], result: ExploreResult, stop_at_first: bool,
                tick: Callable[[], bool], tick_every: int = TICK_EVERY, sleep: SleepSets | None = None,
                merge: bool = False) -> bool:
    """Expand the states on ``stack`` depth first until it is empty (True), or ``tick()`` returns False, or a
    violation stops the search (False). ``tick`` is called between two expansions once ``tick_every`` new states
    have been found since the last call, so that the stack then holds only unexpanded states, each a child of a
    state on the schedule ``path`` (the schedule to the last state expanded): its schedule is
    ``path[:depth - 1] + [transition into it]``. ``is_new(canonical)`` adds a state to the visited set and says
    whether it was new. Counts go into ``result``. ``sleep``: prune with sleep sets (controlled.sleep_sets).
    ``merge``: run through states with a single transition to try without storing them (_merge_chain).

    The schedule to the state being expanded is the path down the stack, so no state keeps a parent (with hash
    compaction a visited state costs its hash alone). Children are pushed in order and the last one pushed is
    expanded next: when it was the last one executed, the machine is already in it and is not restored (a third
    of all restores, and every one along a chain of single transitions). ``tick`` may take entries from the
    bottom of the stack (parallel_search gives them to another worker)."""
    in_place = False  # the machine is in the state on top of the stack
    fresh = 0
    while stack:
        if fresh >= tick_every:
            fresh = 0
            if not tick():
                return False
        key, depth, into, asleep, again = stack.pop()
        if depth:
            del path[depth - 1:]
            path.append(into)  # type: ignore[arg-type]
        if not in_place:
            m.restore(key)
        in_place = False
        todo = _to_try(m, asleep, again, sleep)
        if merge and todo is not None and len(todo) == 1:
            chain = _merge_chain(m, key, canon, is_new, path, result, asleep, todo, sleep)
            if chain.found and stop_at_first:
                return False
            if chain.stored:
                fresh += 1
            if chain.end is None:
                continue
            key, asleep, todo = chain.end
            depth = len(path)
        if todo is None:
            hang = end_of_run(m, result)
            if hang is not None:
                result.found.append(Found([hang], list(path)))
                if stop_at_first:
                    return False
            continue
        pushed = _expand(m, canon, is_new, stack, path, result, key, depth, asleep, todo, sleep, stop_at_first)
        if pushed is None:
            return False
        fresh += pushed[0]
        in_place = pushed[1]
    return True


def _expand(m: Machine, canon: Callable[[tuple], object], is_new: Callable[[object], bool], stack: list[StackEntry],
            path: list[Transition], result: ExploreResult, key: tuple, depth: int, asleep: frozenset,
            todo: list[Transition], sleep: SleepSets | None, stop_at_first: bool) -> tuple[int, bool] | None:
    """Run each of ``todo`` from the state ``key`` (which ``m`` is in, at ``depth`` on ``path``) and push the
    children to explore: how many were new, and whether the machine is in the one on top of the stack. None: a
    violation stops the search."""
    child_asleep = None if sleep is None else sleep.child_sleep_sets(asleep, todo)
    last = len(todo) - 1
    fresh, in_place = 0, False
    for n, tr, new, violations in children(m, key, todo, result):
        cnew = canon(new)
        new_state = is_new(cnew)
        revisit = None
        if child_asleep is not None:
            revisit = sleep.visit(cnew, new_state, child_asleep[n])  # type: ignore[union-attr]
        if violations:
            result.found.append(Found(violations, path + [tr]))
            if stop_at_first:
                return None
            continue
        if new_state:
            stack.append((new, depth + 1, tr, NOTHING if child_asleep is None else child_asleep[n], None))
            in_place = n == last
            fresh += 1
        elif revisit is not None:
            stack.append((new, depth + 1, tr, revisit[1], revisit[0]))
            in_place = n == last
    return fresh, in_place


# A run of single transitions longer than this stores the state it reaches, as a branching state would be: a run
# can then not go round a cycle for ever (none is known: every path step moves a thread on, and the counter
# loops, which could go round, are never merged). Far longer than any run of a library scenario (a few dozen).
CHAIN_LIMIT = 4096


@dataclass(slots=True)
class Chain:
    """What _merge_chain did: the state to expand where it stopped (its key, sleep set and transitions to try,
    None when there is nothing more to do from it), whether that state was newly stored, and whether a violation
    was found on the way (already in the result)."""

    end: tuple[tuple, frozenset, "list[Transition] | None"] | None
    stored: bool = False
    found: bool = False


def _merge_chain(m: Machine, key: tuple, canon: Callable[[tuple], object], is_new: Callable[[object], bool],
                 path: list[Transition], result: ExploreResult, asleep: frozenset, todo: list[Transition],
                 sleep: SleepSets | None) -> Chain:
    """Statement merging (SPIN's, Holzmann 1999, here decided per state): from the state ``m`` is in (``key``),
    whose only transition to try is ``todo[0]``, run on while each state reached has a single transition to try
    and it is the same agent's, without storing those states (or canonicalising them: most of a stored state's
    cost). The state where the run stops, one with several transitions to try or none, another agent's turn, a
    counter writer's turn or CHAIN_LIMIT, is stored and judged as a child would be: new, it is expanded;
    visited, only what sleep sets say woke up is explored again.

    Why one agent's run: a state passed through unstored is run through again each time it is reached, and a
    state reached when another agent takes over is one that other interleavings reach too; a thread's run of
    steps that nobody else's can interleave with (the persistent set chose it alone) is reached through that
    run only. Ladder pages=2 writers=2 stores=1: 802,533 states stored and 1,164,904 transitions without
    merging, 483,075 and 1,377,617 merging one agent's runs (5% more CPU); merging any run of single
    transitions stored 43% fewer states but ran 43% more transitions (13% more CPU).

    Sound because nothing is pruned: an unstored state reached again is run through again, with the sleep set
    it arrives with, which is the stateless search (Godefroid 1996, ch. 5) for that state. The persistent sets
    and the cycle proviso depend on the state only, not on the stack (controlled.reducer), so a state's
    transitions to try are the same whether it is stored or not."""
    steps = 0
    agent = todo[0][:2]
    while todo is not None and len(todo) == 1 and steps < CHAIN_LIMIT and not m.is_counter_increment(todo[0]) \
            and todo[0][:2] == agent:
        tr = todo[0]
        if sleep is not None and asleep:
            asleep = sleep.child_sleep_sets(asleep, todo)[0]
        if steps:
            result.merged += 1  # the state just left: passed through, not stored
        violations = m.execute(tr)
        result.transitions += 1
        path.append(tr)
        steps += 1
        if violations:
            result.found.append(Found(violations, list(path)))
            return Chain(None, found=True)
        todo = _to_try(m, asleep, None, sleep)
    if not steps:
        return Chain((key, asleep, todo))
    key = m.key()
    ckey = canon(key)
    new = is_new(ckey)
    revisit = None if sleep is None else sleep.visit(ckey, new, asleep)
    if new:
        return Chain((key, asleep, todo), stored=True)
    if revisit is None:
        return Chain(None)
    again, asleep = revisit
    return Chain((key, asleep, _to_try(m, asleep, again, sleep)))


def _to_try(m: Machine, asleep: frozenset, again: tuple | None, sleep: SleepSets | None) -> list[Transition] | None:
    """The transitions to try from the state ``m`` is in (None: the run ends there): the reduced enabled set, or
    on a revisit (``again``) those of ``again`` enabled; less those asleep."""
    if again is None:
        todo = m.enabled()
        if m.run_ends(todo):
            return None
    else:  # a revisit: what was asleep when it was first reached and is awake now
        enabled = m.enabled_all()
        todo = [tr for tr in again if tr in enabled]
    if sleep is not None and asleep:
        awake = [tr for tr in todo if tr not in asleep]
        sleep.slept += len(todo) - len(awake)
        return awake
    return todo


def dfs_holding(m: Machine, keys: Keys) -> tuple[ExploreResult, int]:
    """A complete DFS from the state ``m`` is in, its visited set holding ``keys``' encoding (to compare
    encodings): the result, and the bytes the visited set holds."""
    canon = encoder(m.canonical, keys)
    seen = {canon(m.key())}
    result = ExploreResult("dfs", False, 0, 0, 0, 0.0)
    result.complete = depth_first(m, canon, adder(seen), [root_entry(m)], [], result, False, lambda: True)
    result.states = len(seen)
    return result, stored_bytes(seen, keys)


def end_of_run(m: Machine, result: ExploreResult) -> Violation | None:
    """Count a run that ended in the state ``m`` is in; the hang it ends in, if unfinished."""
    result.schedules += 1
    return None if m.finished() else m.hang_report()


def children(m: Machine, key: tuple, enabled: list[Transition],
              result: ExploreResult) -> Iterator[tuple[int, Transition, tuple, list[Violation]]]:
    """Run each of ``enabled`` from the state ``key`` (which ``m`` is in): its number, itself, the state it
    leads to and the violations it makes."""
    for n, tr in enumerate(enabled):
        if n:
            m.restore(key)  # the first transition runs on the state enabled() was computed on
        violations = m.execute(tr)
        result.transitions += 1
        yield n, tr, m.key(), violations


def canonical_form(m: Machine, hash_compact: bool) -> Callable[[tuple], object]:
    """What the visited set holds for a machine key: its canonical form, encoded exactly or as a 64-bit hash."""
    return encoder(m.canonical, keys_for(hash_compact))
