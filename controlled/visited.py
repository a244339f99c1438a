"""The exhaustive searches' visited set: exact keys in a few dozen bytes each, or 64-bit hashes.

A canonical machine key (Machine.canonical) is a nested tuple of about 40 objects: 1.2-1.6 KB held live per
state. But its parts repeat across states far more than whole states do: the folios, the disk, one thread's
position, one CPU's TLB take a few hundred or thousand values among millions of states. So ``CompactKeys``
stores each state as the vector of its parts' numbers (SPIN's COLLAPSE compression, Holzmann 1997): each part
(an element of the state, positions or oracle tuple) is interned once in its field's table (the folios, thread
2's position, ...), which numbers that field's values in order of first appearance, and the state is the bytes
of the part numbers. Each field takes few values (on ladder pages=1 writers=2 stores=2, at most 167 among
125,298 states; pages=2 writers=2 stores=1, 2,131 for the folios and at most 169 for the others among 825,827),
so the numbers are written in a prefix code: one byte below 255, three bytes (255, then 16 bits) below 65,535,
seven beyond (255, 65,535, then 32 bits). A key of 29 numbers, one of them escaped, is then 31 bytes, the most
a 64-byte Python bytes object holds. Two states have the same bytes exactly when they have equal parts, in the
same places: the encoding is exact, unlike hash compaction (a part's number never changes, so a state always
encodes the same way; the code is prefix-free, so the bytes give back the numbers; the shape, the count of
parts in each of the key's three tuples written first, says which numbers belong to which field).
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
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterable, Protocol

from controlled.compiled_only import fresh_extension
from controlled.memo import Numbering  # a number for each distinct part, by first appearance (compiled if built)

# The prefix code of part numbers (see the module docstring): four billion distinct values of one field at most,
# far beyond any search that fits in memory.
_ESCAPE = 0xFF
_ESCAPE2 = 0xFFFF
_MOST = 0xFFFF_FFFF


class Keys(Protocol):
    """How a visited set turns a canonical machine key into what it stores (a hashable value)."""

    def encode(self, key: tuple) -> object: ...

    def bytes_used(self, stored: Iterable[object]) -> int: ...


class CompactKeys:
    """Exact keys as bytes: the numbers of a canonical key's parts (see the module docstring). ``compiled``: encode
    with controlled/_compact_keys.pyx when its build is fresh (the same bytes and tables as the Python encode,
    faster); the Python encode runs otherwise."""

    def __init__(self, compiled: bool = True) -> None:
        self._tables: list[Numbering] = []  # per field (a part's place in the flattened key)
        module = compiled_module() if compiled else None
        if module is not None:  # instance attributes: the visited set's hot path calls them directly
            made = module.Encoder(self._tables, Numbering)
            self.encode = made.encode  # type: ignore[method-assign]
            # encode(permute(key, p)) without the permuted key, for a plan of p (encoder below).
            self.encode_permuted, self.plan = made.encode_permuted, module.Plan
        self.compiled = module is not None

    def encode(self, key: tuple) -> bytes:
        items = [item for part in key for item in part]
        tables = self._tables
        if len(tables) < len(items):
            tables.extend([Numbering() for _ in range(len(items) - len(tables))])
        out = [len(part) for part in key]  # the shape: which part numbers belong to which field
        out += [table[item] for table, item in zip(tables, items)]
        return prefix_code(out)

    @property
    def parts(self) -> int:
        return sum(map(len, self._tables))

    def bytes_used(self, stored: Iterable[object]) -> int:
        """The stored keys (the container holding them is counted by the caller) and the tables of parts: their
        dicts and every object their parts and numbers hold, each once."""
        return sum(map(sys.getsizeof, stored)) + deep_size([self._tables])


def compiled_encoder() -> type | None:
    """The compiled encoder (controlled/_compact_keys.pyx's Encoder), if its build is fresh and not turned off."""
    module = compiled_module()
    return None if module is None else module.Encoder


def compiled_module() -> ModuleType | None:
    """controlled/_compact_keys.pyx's build, if fresh and not turned off."""
    return fresh_extension("controlled._compact_keys", Path(__file__).with_name("_compact_keys.pyx"),
                           "exact keys are encoded in Python (slower)")


def prefix_code(numbers: list[int]) -> bytes:
    """Numbers (0 to 2**32 - 1) in the prefix code of the module docstring: one byte each below 255."""
    if max(numbers, default=0) < _ESCAPE:
        return bytes(numbers)
    out = bytearray()
    for n in numbers:
        if n < _ESCAPE:
            out.append(n)
        else:
            out += _escaped(n)
    return bytes(out)


def _escaped(n: int) -> bytes:
    """A number of 255 or more in the prefix code: 255 and 16 bits, or 255, 65,535 and 32 bits."""
    if n < _ESCAPE2:
        return bytes((_ESCAPE,)) + n.to_bytes(2, "little")
    if n > _MOST:
        raise OverflowError(f"a field of the state took more than {_MOST:,} values")
    return bytes((_ESCAPE, 0xFF, 0xFF)) + n.to_bytes(4, "little")


def numbers(encoded: bytes) -> list[int]:
    """The numbers a compact key was written from (the shape, then one per part): prefix_code read back (tests
    check with it that the encoding loses nothing)."""
    out: list[int] = []
    at = 0
    while at < len(encoded):
        n = encoded[at]
        at += 1
        if n == _ESCAPE:
            n = int.from_bytes(encoded[at:at + 2], "little")
            at += 2
            if n == _ESCAPE2:
                n = int.from_bytes(encoded[at:at + 4], "little")
                at += 4
        out.append(n)
    return out


class HashKeys:
    """64-bit hashes of canonical keys (hash compaction). ``compiled``: hash with controlled/_compact_keys.pyx's
    Hasher when its build is fresh (hash(key) bit for bit, from the parts' hashes it remembers, and the
    representative's permutation applied without building the permuted key: see encoder)."""

    def __init__(self, compiled: bool = True) -> None:
        module = compiled_module() if compiled else None
        if module is not None:  # instance attributes, as CompactKeys'
            made = module.Hasher()
            self.encode = made.hash  # type: ignore[method-assign]
            self.encode_permuted, self.plan = made.hash_permuted, module.Plan
        self.compiled = module is not None

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
    """What the visited set holds for a machine key: ``keys``' encoding of its canonical form. With the compiled
    encoder, and ``m_canonical`` a machine's canonical (its canonicaliser), the canonicaliser hands the
    representative's permutation to the encoder, which writes the permuted key's bytes without building it."""
    permuted = getattr(keys, "encode_permuted", None)
    canonicaliser = getattr(getattr(m_canonical, "__self__", None), "canonicaliser", None)
    if permuted is not None and canonicaliser is not None:
        return canonicaliser.encoder(keys.encode, permuted, keys.plan)  # type: ignore[attr-defined]
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
