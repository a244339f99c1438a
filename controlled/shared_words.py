"""64-bit words that forked processes share, with atomic operations, and the parallel search's visited table.

``shared_words(n)`` maps ``n`` zeroed 64-bit words (an anonymous MAP_SHARED mmap, so children forked after it
see and write the same memory) and operates on them with compare-and-swap, atomic add, load and store:

- compiled (controlled/_atomic_words.pyx, GCC __atomic builtins), built by setup.py the optional way it builds
  the hot modules, and used only when its build matches its source (the same digest record,
  kernel_model/compiled.py's BUILD_RECORD; ``TLBRACE_PURE_PYTHON=1`` turns it off, as it does theirs);
- or in Python under one lock (a multiprocessing.Lock, made before the fork so that every child shares it):
  the same results, a few times slower, so that the package runs without a compiler.

``SharedVisited`` is the visited set of controlled.parallel_search: an open-addressing table of 64-bit
fingerprints (hash compaction, as ``--hash-compact``) in shared words. Its insert claims a free slot by
compare-and-swap, so each fingerprint is told new to exactly one process: the workers' insert counts add up to
the number of distinct fingerprints, which is the state count of a one-process search with hash compaction.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Any, Protocol

from controlled.compiled_only import built_digest, fresh_extension

_MASK = (1 << 64) - 1
MAX_LOAD = 0.7  # past this fill of the visited table, linear probing slows down: the search stops as incomplete
MIN_TABLE = 1 << 16  # slots: 512 KiB
MAX_TABLE = 1 << 27  # slots (1 GiB): room for 94 million states
_SOURCE = Path(__file__).with_name("_atomic_words.pyx")
_MODULE = "controlled._atomic_words"


class Words(Protocol):
    """Atomic operations on shared 64-bit words (both implementations)."""

    def __len__(self) -> int: ...

    def load(self, i: int) -> int: ...

    def store(self, i: int, v: int) -> None: ...

    def cas(self, i: int, expected: int, desired: int) -> bool: ...

    def add(self, i: int, delta: int) -> int: ...

    def insert(self, first: int, mask: int, h: int) -> bool: ...

    def claim(self, first: int, mask: int, h: int) -> int: ...

    def intersect(self, i: int, keep: int, ready: int) -> int: ...


class LockedWords:
    """The Python fallback: every read-modify-write under one lock shared by the forked processes (a plain load
    or store of an aligned word is atomic on its own; the lock orders it against the others' updates)."""

    def __init__(self, buffer: mmap.mmap, lock: Any) -> None:
        self._words = memoryview(buffer).cast("Q")
        self._lock = lock

    def __len__(self) -> int:
        return len(self._words)

    def load(self, i: int) -> int:
        return self._words[i]

    def store(self, i: int, v: int) -> None:
        with self._lock:
            self._words[i] = v & _MASK

    def cas(self, i: int, expected: int, desired: int) -> bool:
        with self._lock:
            if self._words[i] != expected:
                return False
            self._words[i] = desired & _MASK
            return True

    def add(self, i: int, delta: int) -> int:
        with self._lock:
            v = (self._words[i] + delta) & _MASK
            self._words[i] = v
        return v - (1 << 64) if v >> 63 else v  # as a signed count, as the compiled add returns it

    def insert(self, first: int, mask: int, h: int) -> bool:
        f = (h & _MASK) or 1  # 0 marks a free slot
        words = self._words
        if first < 0 or first + mask >= len(words):
            raise IndexError("table out of the buffer")
        i = f & mask
        while True:
            v = words[first + i]
            if v == f:
                return False
            if v == 0:
                with self._lock:
                    if words[first + i] == 0:
                        words[first + i] = f
                        return True
                continue  # another process claimed this slot first: look at what it wrote
            i = (i + 1) & mask

    def claim(self, first: int, mask: int, h: int) -> int:
        f = (h & _MASK) or 1
        words = self._words
        if first < 0 or first + 2 * mask + 1 >= len(words):
            raise IndexError("table out of the buffer")
        i = f & mask
        while True:
            at = first + 2 * i
            v = words[at]
            if v == f:
                return -1 - at
            if v == 0:
                with self._lock:
                    if words[at] == 0:
                        words[at] = f
                        return at
                continue
            i = (i + 1) & mask

    def intersect(self, i: int, keep: int, ready: int) -> int:
        while True:
            with self._lock:
                v = self._words[i]
                if v & ready:
                    self._words[i] = v & (keep | ready)
                    return v
            os.sched_yield()  # its first writer claimed the slot and is about to publish it


def compiled_words() -> type | None:
    """The compiled AtomicWords class, if it is built from the source on disk and not turned off."""
    module = fresh_extension(_MODULE, _SOURCE, "the parallel search's shared table runs under a lock (slower)",
                             lambda: _built_digest())
    return None if module is None else module.AtomicWords


def _built_digest() -> str | None:
    return built_digest(_MODULE)


def shared_words(n: int, compiled: bool = True) -> Words:
    """``n`` zeroed shared words (compiled atomics when available and ``compiled``, else the locked
    fallback). Make them before forking: the children share the mapping, and the fallback's lock."""
    buffer = mmap.mmap(-1, 8 * n)  # anonymous and MAP_SHARED: zero pages, allocated when first touched
    cls = compiled_words() if compiled else None
    if cls is not None:
        return cls(buffer)
    import multiprocessing

    return LockedWords(buffer, multiprocessing.get_context("fork").Lock())


class SharedVisited:
    """A set of 64-bit fingerprints in shared words, with an exact insert (see the module docstring).

    One table sized for the whole budget: each of its pages costs a zero-fill fault the first time an insert
    lands on it (about 0.1 s per 100k pages, a 400 MiB table), paid once the search runs that big. A table that
    grows in generations would fault fewer pages early, but a worker still inserting into the old generation
    after another moved on can count a state twice, and no ordering of the two checks fixes that without a
    lock: the exact count is worth more."""

    def __init__(self, capacity: int, compiled: bool = True, pairs: bool = False) -> None:
        """``pairs``: each slot is two words, the fingerprint and the sleep set its state was reached with
        (controlled.shared_sleep_sets); its inserts are then ``claim``, not ``insert``."""
        self.size = self.size_for(capacity)
        self.mask = self.size - 1
        self.limit = int(self.size * MAX_LOAD)  # fingerprints it takes before probing slows down
        self.pairs = pairs
        self.words = shared_words(self.size * (2 if pairs else 1), compiled)

    @property
    def compiled(self) -> bool:
        return not isinstance(self.words, LockedWords)

    @staticmethod
    def size_for(capacity: int) -> int:
        """Slots (a power of two, MIN_TABLE..MAX_TABLE) for ``capacity`` fingerprints at MAX_LOAD."""
        wanted = int(capacity / MAX_LOAD) + 1
        return min(MAX_TABLE, 1 << max(MIN_TABLE.bit_length() - 1, (wanted - 1).bit_length()))

    @classmethod
    def limit_for(cls, capacity: int) -> int:
        return int(cls.size_for(capacity) * MAX_LOAD)

    def insert(self, h: int) -> bool:
        """Add fingerprint ``h`` (a Python hash); True if no process had added it. (0 is stored as 1: the two
        count as one, a collision like any other.)"""
        assert not self.pairs, "a table of pairs takes claim()"
        return self.words.insert(0, self.mask, h)

    def claim(self, h: int) -> int:
        """Add fingerprint ``h`` to a table of pairs: the word index of its pair if no process had added it, else
        ``-1 - index`` (AtomicWords.claim)."""
        return self.words.claim(0, self.mask, h)
