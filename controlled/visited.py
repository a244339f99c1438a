"""The exhaustive searches' visited set: exact keys in a few dozen bytes each, or 64-bit hashes.

A canonical machine key (Machine.canonical) is a nested tuple of about 40 objects: 1.2-1.6 KB held live per
state. But its parts repeat across states far more than whole states do: the folios, the disk, one thread's
position, one CPU's TLB take a few hundred or thousand values among millions of states. So ``CompactKeys``
stores each state as the vector of its parts' numbers (SPIN's COLLAPSE compression, Holzmann 1997): each part
(an element of the state, positions or oracle tuple) is interned once in a table that numbers parts in order of
first appearance, and the state is the bytes of the part numbers, 4 bytes each. Two states have the same bytes
exactly when they have equal parts, in the same places: the encoding is exact, unlike hash compaction.
Equality of parts is Python's, so two equal frozensets that would iterate in different orders are one part
(a serialisation such as marshal would tell them apart, and count one state twice).

``HashKeys`` keeps only a 64-bit hash of each canonical key (hash compaction, Wolper & Leroy 1993; SPIN's
-DHC): a few bytes less again, at the price that two states whose hashes collide count as one (the bound is
controlled.explorer's collision_bound).

Both can say how many bytes they hold (``bytes_used``), counting every object they keep alive once; the bench
prints it per stored state (bench/bench_explore.py). ``TupleKeys`` is the plain set of canonical keys the
explorer kept before: kept for that comparison only.
"""

from __future__ import annotations

import sys
from array import array
from typing import Callable, Iterable, Protocol

# Part numbers are stored as unsigned 32-bit ints: four billion distinct parts, far beyond any search that fits
# in memory ('I' is 4 bytes on every platform CPython runs on; checked below).
_ID = "I"
assert array(_ID).itemsize == 4


class Keys(Protocol):
    """How a visited set turns a canonical machine key into what it stores (a hashable value)."""

    def encode(self, key: tuple) -> object: ...

    def bytes_used(self, stored: Iterable[object]) -> int: ...


class CompactKeys:
    """Exact keys as bytes: the numbers of a canonical key's parts (see the module docstring)."""

    def __init__(self) -> None:
        self._ids: dict[object, int] = {}

    def encode(self, key: tuple) -> bytes:
        ids = self._ids
        out = array(_ID, [len(part) for part in key])  # the shape: which part numbers belong to which field
        for part in key:
            for item in part:
                n = ids.get(item)
                if n is None:
                    n = ids[item] = len(ids)
                out.append(n)
        return out.tobytes()

    @property
    def parts(self) -> int:
        return len(self._ids)

    def bytes_used(self, stored: Iterable[object]) -> int:
        """The stored keys (the container holding them is counted by the caller) and the table of parts: its
        dict and every object its parts and numbers hold, each once."""
        return sum(map(sys.getsizeof, stored)) + deep_size([self._ids])


class HashKeys:
    """64-bit hashes of canonical keys (hash compaction)."""

    def encode(self, key: tuple) -> int:
        return hash(key)

    def bytes_used(self, stored: Iterable[object]) -> int:
        return sum(map(sys.getsizeof, stored))


class TupleKeys:
    """The canonical keys themselves (what the explorer stored before CompactKeys): for comparison."""

    def encode(self, key: tuple) -> tuple:
        return key

    def bytes_used(self, stored: Iterable[object]) -> int:
        return deep_size(stored)


def keys_for(hash_compact: bool) -> CompactKeys | HashKeys:
    return HashKeys() if hash_compact else CompactKeys()


def encoder(m_canonical: Callable[[tuple], tuple], keys: Keys) -> Callable[[tuple], object]:
    """What the visited set holds for a machine key: ``keys``' encoding of its canonical form."""
    encode = keys.encode
    return lambda key: encode(m_canonical(key))


def adder(seen: set) -> Callable[[object], bool]:
    """A visited set's insert: add to ``seen``, and say whether it was not there."""

    def is_new(stored: object) -> bool:
        if stored in seen:
            return False
        seen.add(stored)
        return True

    return is_new


def deep_size(objects: Iterable[object]) -> int:
    """Bytes of every object reachable from ``objects`` through tuples, frozensets, lists, dicts and named
    tuples, each counted once (shared parts once in all). Small ints, None and booleans are shared by the whole
    interpreter and cost a state nothing: not counted."""
    seen: set[int] = set()
    total = 0
    todo = list(objects)
    while todo:
        obj = todo.pop()
        if obj is None or obj is True or obj is False or id(obj) in seen:
            continue
        if type(obj) is int and -5 <= obj <= 256:  # noqa: E721 - bool is excluded above
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, (tuple, list, frozenset, set)):
            todo.extend(obj)
        elif isinstance(obj, dict):
            todo.extend(obj.keys())
            todo.extend(obj.values())
    return total


def stored_bytes(container: set | dict, keys: Keys) -> int:
    """Bytes a visited set or dict holds: its table, plus what ``keys`` says its stored keys cost (a dict's
    values are not counted: the BFS's parent links are the schedule store, not the visited set)."""
    return sys.getsizeof(container) + keys.bytes_used(container)
