"""Writer symmetry for exhaustive search: interchangeable threads, and one representative per orbit of states.

Two threads are interchangeable when they run the same program of plain stores, from CPUs set up alike (both
with a warm TLB or both without). Swapping them (and their CPUs) maps every run onto another run with the same
verdicts: nothing in the model or the oracle looks at a thread's identity except to tell owners apart, and a
store's value, which does depend on the thread, is renamed away by controlled.canonical. So exhaustive search may
keep one state of each orbit: a size-ladder cell with two writers has about half the states.

Only store programs qualify: a load feeds the value it read into the thread's position, which the renaming does
not reach, so a swapped state would not be a state the machine can be in. Other threads stay where they are.

The representative (Symmetry.representative) orders each group's threads by a signature, ties broken by the
smallest hash of the permuted key. Symmetric states get the same representative unless two different keys of
the orbit tie on both (then an orbit is stored twice: less reduction, never a wrong merge, since every
candidate is a genuine permutation of the state).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations, product

from kernel_model.program import Scenario
from kernel_model.state import FREE

# Groups of more than this many interchangeable threads keep their order (n! keys per state would cost more
# than the states saved).
MAX_GROUP = 3


@dataclass(frozen=True, slots=True)
class Permutation:
    tid: tuple[int, ...]  # old thread id -> new thread id
    cpu: tuple[int, ...]  # old CPU -> new CPU
    # Derived, for permute's hot path: the threads that move, and for each new thread id / CPU the old one.
    moved: frozenset[int] = frozenset()
    tid_src: tuple[int, ...] = ()
    cpu_src: tuple[int, ...] = ()

    @classmethod
    def of(cls, tid: tuple[int, ...], cpu: tuple[int, ...]) -> "Permutation":
        return cls(tid, cpu, frozenset(t for t, new in enumerate(tid) if new != t),
                   tuple(tid.index(t) for t in range(len(tid))), tuple(cpu.index(c) for c in range(len(cpu))))


def interchangeable_groups(scenario: Scenario, cpu_of: list[int], warm_cpus: set[int]) -> list[list[int]]:
    by_program: dict[tuple, list[int]] = {}
    for tid, thread in enumerate(scenario.threads):
        if not thread.ops or any(op.kind != "store" for op in thread.ops):
            continue
        by_program.setdefault((thread.ops, cpu_of[tid] in warm_cpus), []).append(tid)
    return [g for g in by_program.values() if 2 <= len(g) <= MAX_GROUP]


def symmetries(groups: list[list[int]], cpu_of: list[int], ncpus: int) -> list[Permutation]:
    """Every non-identity permutation of the groups' threads, with the CPU permutation it induces. Threads that
    share a CPU (arch=up) keep it; a permutation whose CPUs cannot be renamed consistently is left out."""
    nthreads = len(cpu_of)
    out: list[Permutation] = []
    for images in product(*(permutations(g) for g in groups)):
        tid = list(range(nthreads))
        for group, image in zip(groups, images):
            for old, new in zip(group, image):
                tid[old] = new
        cpu: dict[int, int] = {}
        for old in range(nthreads):
            cpu.setdefault(cpu_of[old], cpu_of[tid[old]])
        # The CPU renaming must be a function that agrees with every thread's CPU, and a permutation.
        consistent = all(cpu[cpu_of[t]] == cpu_of[tid[t]] for t in range(nthreads))
        cpus = tuple(cpu.get(c, c) for c in range(ncpus))
        if consistent and sorted(cpus) == list(range(ncpus)) and tid != list(range(nthreads)):
            out.append(Permutation.of(tuple(tid), cpus))
    return out


def permute(key: tuple, p: Permutation) -> tuple:
    """A canonical machine key (Machine.key's layout, values renamed by controlled.canonical, folios as plain
    tuples) with threads and CPUs renamed by ``p``. On the explorer's hot path (half of all states of a two-writer
    search are permuted): a field in which no moved thread appears is kept as it is, which is most of them, since
    interchangeable threads only store (they send no IPIs and wait for no acks)."""
    state_key, positions, oracle = key
    return (_permute_state(state_key, p), tuple([positions[t] for t in p.tid_src]), _permute_oracle(oracle, p))


def _permute_state(state_key: tuple, p: Permutation) -> tuple:
    (folios, page_cache, disk, ptes, vma, i_mmap, ptl, ppt, mmap_lock, i_mmap_rwsem, tlbs, ipis, acks,
     *mm) = state_key  # mm: i_size, tlb_flush_pending, tlb_flush_batched, vm_write (no thread or CPU in them)
    tid, moved = p.tid, p.moved
    # Folio tuples: locked (field 4) is a thread id (FREE is never a moved thread).
    if any(f[4] in moved for f in folios):
        folios = tuple(f[:4] + (tid[f[4]],) + f[5:] if f[4] in moved else f for f in folios)
    if not moved.isdisjoint(ptl):
        ptl = tuple(tid[t] if t in moved else t for t in ptl)
    sems = [_permute_sem(sem, p) for sem in (mmap_lock, i_mmap_rwsem)]
    new_tlbs = tuple([tlbs[c] for c in p.cpu_src])
    new_ipis = tuple([ipis[c] for c in p.cpu_src])
    if any(i.initiator in moved for q in new_ipis for i in q):
        new_ipis = tuple(tuple(i._replace(initiator=tid[i.initiator]) for i in q) for q in new_ipis)
    new_acks = tuple([acks[t] for t in p.tid_src])
    return (folios, page_cache, disk, ptes, vma, i_mmap, ptl, ppt, sems[0], sems[1], new_tlbs, new_ipis, new_acks,
            *mm)


def _permute_sem(sem: tuple, p: Permutation) -> tuple:
    """An rw_semaphore's (writer, readers) renamed; its readers are kept sorted (a set)."""
    tid, moved = p.tid, p.moved
    if sem[0] not in moved and moved.isdisjoint(sem[1]):
        return sem
    return (tid[sem[0]] if sem[0] in moved else sem[0], tuple(sorted(tid[r] for r in sem[1])))


def _permute_oracle(oracle: tuple, p: Permutation) -> tuple:
    tid, moved = p.tid, p.moved
    transits, delayed, covered, stale, readonly, last = oracle  # last: empty (no expectations when symmetric)
    if any(t in moved for t, _ in transits) or any(d[0] in moved for d in delayed):
        transits = frozenset((tid[t], pfn) for t, pfn in transits)
        delayed = tuple((tid[t], pfn, b) for t, pfn, b in delayed)
    if covered or stale:  # (tid, cpu, va) and (cpu, va, tid): both name threads and CPUs
        cpu = p.cpu
        covered = frozenset((tid[t], cpu[c], va) for t, c, va in covered)
        stale = frozenset((cpu[c], va, tid[t]) for c, va, t in stale)
    if readonly:  # (cpu, va, tid), as stale
        readonly = frozenset((p.cpu[c], va, tid[t]) for c, va, t in readonly)
    return (transits, delayed, covered, stale, readonly, last)


class Symmetry:
    """The orbit representative of a canonical key: each group's threads put in ascending order of a cheap
    signature (position, TLB), so that most states need no permuted key at all; ties (threads in the same place)
    are broken by the smallest hash of the whole permuted key. Symmetric states get the same representative:
    signatures travel with their threads, so the same permutations come out minimal."""

    def __init__(self, perms: list[Permutation], groups: list[list[int]], cpu_of: list[int]) -> None:
        self.perms = perms
        self.cpu_of = cpu_of
        self.members = sorted(t for g in groups for t in g)
        self._member_cpus = [(t, cpu_of[t]) for t in self.members]
        # For each permutation: which member (by its index in self.members) lands in each member slot.
        self.sources = [tuple(self.members.index(p.tid.index(slot)) for slot in self.members) for p in perms]

        self.last: Permutation | None = None  # the permutation the last representative applied (None: identity)

    def __bool__(self) -> bool:
        return bool(self.perms)

    def representative(self, key: tuple) -> tuple:
        best, self.last = self._representative(key)
        return best

    def _representative(self, key: tuple) -> tuple[tuple, Permutation | None]:
        positions, tlbs = key[1], key[0][10]
        sig = [hash((positions[t], tlbs[c])) for t, c in self._member_cpus]
        best_vec = sig
        tied: list[Permutation | None] = [None]  # None: the identity
        for p, sources in zip(self.perms, self.sources):
            vec = [sig[i] for i in sources]
            if vec < best_vec:
                best_vec, tied = vec, [p]
            elif vec == best_vec:
                tied.append(p)
        if len(tied) == 1:
            return (key if tied[0] is None else permute(key, tied[0])), tied[0]
        best, best_hash, best_p = None, 0, None
        for p in tied:
            other = key if p is None else permute(key, p)
            h = hash(other)
            if best is None or h < best_hash:
                best, best_hash, best_p = other, h, p
        return best, best_p  # type: ignore[return-value]


def symmetry_of(scenario: Scenario, cpu_of: list[int], ncpus: int, warm_cpus: set[int]) -> Symmetry:
    groups = interchangeable_groups(scenario, cpu_of, warm_cpus)
    return Symmetry(symmetries(groups, cpu_of, ncpus), groups, cpu_of)
