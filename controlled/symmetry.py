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


class Reordered:
    """What one permutation made of each field it renames, for the last part object met there (one each):
    Machine.key hands out the same part objects while they do not change (State.key's ``like``), so most keys
    are permuted by identity checks alone, and the permuted key then holds the same objects too, which the exact
    keys' encoder numbers without hashing them (controlled/_compact_keys.pyx). By identity, holding both: exact."""

    __slots__ = ("state", "oracle")

    def __init__(self) -> None:
        self.state = [[_NOTHING, None] for _ in _STATE_FIELDS]  # per _STATE_FIELDS entry: [part, permuted]
        self.oracle = [[_NOTHING, None] for _ in _ORACLE_FIELDS]


_NOTHING = object()  # what no part is


def permute(key: tuple, p: Permutation, memo: Reordered | None = None) -> tuple:
    """A canonical machine key (Machine.key's layout, values renamed by controlled.canonical, folios as plain
    tuples) with threads and CPUs renamed by ``p`` (``memo``: p's Reordered). On the explorer's hot path (half of
    all states of a two-writer search are permuted): a field in which no moved thread appears is kept as it is,
    which is most of them, since interchangeable threads only store (they send no IPIs and wait for no acks)."""
    state_key, positions, oracle = key
    memo = Reordered() if memo is None else memo
    return (_fields(state_key, p, _STATE_FIELDS, memo.state), tuple([positions[t] for t in p.tid_src]),
            _fields(oracle, p, _ORACLE_FIELDS, memo.oracle))


def _fields(part: tuple, p: Permutation, fields: tuple, memo: list) -> tuple:
    """``part`` with each of ``fields`` ((place, how to permute it)) permuted: a field holding the object it held
    last time is given what it was given then (``memo``)."""
    out = list(part)
    for n in range(len(fields)):
        at = fields[n][0]
        value = part[at]
        seen = memo[n]
        if value is not seen[0]:
            seen[0], seen[1] = value, fields[n][1](value, p)
        out[at] = seen[1]
    return tuple(out)


# The state key: folios, page_cache, disk, ptes, vma, i_mmap, ptl, ppt, mmap_lock, i_mmap_rwsem, tlbs, ipis, acks,
# then the mm's i_size, tlb_flush_pending, tlb_flush_batched, vm_write (no thread or CPU in those four), and the
# inode's i_rwsem (17). Loops, not any() over generators: a compiled loop is cheaper.
def _permute_folios(folios: tuple, p: Permutation) -> tuple:
    tid, moved = p.tid, p.moved
    for f in folios:  # folio tuples: locked (field 4) is a thread id (FREE is never a moved thread)
        if f[4] in moved:
            return tuple(g[:4] + (tid[g[4]],) + g[5:] if g[4] in moved else g for g in folios)
    return folios


def _permute_ptl(ptl: tuple, p: Permutation) -> tuple:
    tid, moved = p.tid, p.moved
    return ptl if moved.isdisjoint(ptl) else tuple(tid[t] if t in moved else t for t in ptl)


def _permute_sem(sem: tuple, p: Permutation) -> tuple:
    """An rw_semaphore's (writer, readers) renamed; its readers are kept sorted (a set)."""
    tid, moved = p.tid, p.moved
    if sem[0] not in moved and moved.isdisjoint(sem[1]):
        return sem
    return (tid[sem[0]] if sem[0] in moved else sem[0], tuple(sorted(tid[r] for r in sem[1])))


def _permute_tlbs(tlbs: tuple, p: Permutation) -> tuple:
    return tuple([tlbs[c] for c in p.cpu_src])


def _permute_ipis(ipis: tuple, p: Permutation) -> tuple:
    """The IPI queues moved to their CPUs' new numbers, and their initiators renamed."""
    tid, moved = p.tid, p.moved
    new_ipis = tuple([ipis[c] for c in p.cpu_src])
    for q in ipis:
        for i in q:
            if i.initiator in moved:
                return tuple(tuple(x._replace(initiator=tid[x.initiator]) for x in queue) for queue in new_ipis)
    return new_ipis


def _permute_acks(acks: tuple, p: Permutation) -> tuple:
    return tuple([acks[t] for t in p.tid_src])


_STATE_FIELDS = ((0, _permute_folios), (6, _permute_ptl), (8, _permute_sem), (9, _permute_sem), (10, _permute_tlbs),
                 (11, _permute_ipis), (12, _permute_acks), (17, _permute_sem))


# The oracle key: delayed rmaps (tid, pfn, batch), covered (tid, cpu, va), stale and readonly (cpu, va, tid), then
# the remembered values (empty: no expectations when symmetric).
def _permute_delayed(delayed: tuple, p: Permutation) -> tuple:
    tid, moved = p.tid, p.moved
    for d in delayed:
        if d[0] in moved:
            return tuple((tid[t], pfn, b) for t, pfn, b in delayed)
    return delayed


def _permute_covered(covered: frozenset, p: Permutation) -> frozenset:
    tid, cpu = p.tid, p.cpu
    return frozenset((tid[t], cpu[c], va) for t, c, va in covered) if covered else covered


def _permute_cpu_va_tid(marks: frozenset, p: Permutation) -> frozenset:
    tid, cpu = p.tid, p.cpu
    return frozenset((cpu[c], va, tid[t]) for c, va, t in marks) if marks else marks


_ORACLE_FIELDS = ((0, _permute_delayed), (1, _permute_covered), (2, _permute_cpu_va_tid), (3, _permute_cpu_va_tid))


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
        # Two interchangeable threads (the two writers of most scenarios): their (thread, CPU) and the swap, for
        # _representative's shortcut.
        self._pair = ((*self._member_cpus[0], *self._member_cpus[1], perms[0])
                      if len(self.members) == 2 and len(perms) == 1 else None)

        self.last: Permutation | None = None  # the permutation the last representative applied (None: identity)
        self._reordered = [Reordered() for _ in perms]  # each permutation's (permute's memo)
        self._index = {id(p): n for n, p in enumerate(perms)}  # a permutation's place in perms (they live as long)
        # Per member: the last (position, TLB) parts whose signature was taken, and it (by identity: see Reordered).
        self._signed = [(None, None, 0) for _ in self.members]

    def __bool__(self) -> bool:
        return bool(self.perms)

    def representative(self, key: tuple) -> tuple:
        best, pending = self.choice(key)
        return best if pending is None else self.permuted(best, pending)

    def choice(self, key: tuple) -> tuple[tuple, Permutation | None]:
        """The representative of ``key``'s orbit as (a key, the permutation still to apply to it, or None), for a
        caller that applies it without building the permuted key (controlled/_compact_keys.pyx: encode_permuted);
        sets ``last``, the permutation the representative applies."""
        best, pending, self.last = self._choose(key)
        return best, pending

    def permuted(self, key: tuple, p: Permutation) -> tuple:
        return permute(key, p, self._reordered[self._index[id(p)]])

    def _representative(self, key: tuple) -> tuple[tuple, Permutation | None]:
        best, pending, applied = self._choose(key)
        return (best if pending is None else self.permuted(best, pending)), applied

    def _choose(self, key: tuple) -> tuple[tuple, Permutation | None, Permutation | None]:
        """(a key, the permutation still to apply to it, the permutation the representative applies): the key and
        the permutation the signatures pick, or on a tie the permuted key the hashes pick, with nothing to apply."""
        positions, tlbs = key[1], key[0][10]
        if self._pair is not None:
            # Two threads a < b: the swap's signature vector (b's, a's) is below the identity's (a's, b's) exactly
            # when b's signature is below a's; equal signatures are a tie, which the general path breaks.
            a, cpu_a, b, cpu_b, swap = self._pair
            pos_a, tlb_a, pos_b, tlb_b = positions[a], tlbs[cpu_a], positions[b], tlbs[cpu_b]
            last_a, last_b = self._signed  # (by identity, without a call when both parts are as last time)
            sig_a = last_a[2] if pos_a is last_a[0] and tlb_a is last_a[1] else self._signature(0, pos_a, tlb_a)
            sig_b = last_b[2] if pos_b is last_b[0] and tlb_b is last_b[1] else self._signature(1, pos_b, tlb_b)
            if sig_a < sig_b:
                return key, None, None
            if sig_b < sig_a:
                return key, swap, swap
        return self._general_choice(key, positions, tlbs)

    def _signature(self, member: int, position: tuple, tlb: tuple) -> int:
        """The hash of a member's (position, TLB): hashed again only when either part is another object."""
        last = self._signed[member]
        if position is last[0] and tlb is last[1]:
            return last[2]
        sig = hash((position, tlb))
        self._signed[member] = (position, tlb, sig)
        return sig

    def _general(self, key: tuple, positions: tuple, tlbs: tuple) -> tuple[tuple, Permutation | None]:
        """_representative for any groups: the signature vector of each permutation, and on a tie the hashes."""
        best, pending, applied = self._general_choice(key, positions, tlbs)
        return (best if pending is None else self.permuted(best, pending)), applied

    def _general_choice(self, key: tuple, positions: tuple,
                        tlbs: tuple) -> tuple[tuple, Permutation | None, Permutation | None]:
        """_choose for any groups."""
        sig = [self._signature(i, positions[t], tlbs[c]) for i, (t, c) in enumerate(self._member_cpus)]
        best_vec = sig
        tied: list[Permutation | None] = [None]  # None: the identity
        for p, sources in zip(self.perms, self.sources):
            vec = [sig[i] for i in sources]
            if vec < best_vec:
                best_vec, tied = vec, [p]
            elif vec == best_vec:
                tied.append(p)
        if len(tied) == 1:
            return key, tied[0], tied[0]
        best, best_hash, best_p = None, 0, None
        for p in tied:
            other = key if p is None else self.permuted(key, p)
            h = hash(other)
            if best is None or h < best_hash:
                best, best_hash, best_p = other, h, p
        return best, None, best_p  # type: ignore[return-value]


def plan_fields(p: Permutation, shape: tuple[int, int, int]) -> list[tuple[int, int, object]]:
    """What ``permute(key, p)`` makes of each field of a key with ``shape`` (its state, positions and oracle
    tuples' lengths), for the compiled encoder (controlled/_compact_keys.pyx: Plan): per field of the permuted
    key, (the part of ``key`` it is taken from, its place there, the function that permutes it or None)."""
    state = dict(_STATE_FIELDS)
    oracle = dict(_ORACLE_FIELDS)
    return ([(0, i, state.get(i)) for i in range(shape[0])] + [(1, p.tid_src[t], None) for t in range(shape[1])]
            + [(2, i, oracle.get(i)) for i in range(shape[2])])


def symmetry_of(scenario: Scenario, cpu_of: list[int], ncpus: int, warm_cpus: set[int]) -> Symmetry:
    groups = interchangeable_groups(scenario, cpu_of, warm_cpus)
    return Symmetry(symmetries(groups, cpu_of, ncpus), groups, cpu_of)
