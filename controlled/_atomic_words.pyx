# cython: language_level=3, boundscheck=False, wraparound=False
"""Atomic operations on 64-bit words in memory that forked processes share (GCC/Clang __atomic builtins).

The compiled half of controlled.shared_words: setup.py builds it the optional way it builds the hot modules
(kernel_model/compiled.py), and controlled.shared_words falls back to a lock when it is missing or stale. Every
operation is sequentially consistent (__ATOMIC_SEQ_CST): the parallel search's termination protocol
(controlled.work_stealing) reasons about the order of one worker's writes against another's reads, and a
fence costs nothing next to a state's expansion (about 20 microseconds).
"""

from libc.stdint cimport int64_t, uint64_t

cdef extern from *:
    """
    #include <stdint.h>
    static inline int tlb_cas_u64(uint64_t *p, uint64_t expected, uint64_t desired) {
        return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    }
    static inline uint64_t tlb_load_u64(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
    static inline void tlb_store_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
    static inline int64_t tlb_add_i64(int64_t *p, int64_t d) { return __atomic_add_fetch(p, d, __ATOMIC_SEQ_CST); }
    """
    int tlb_cas_u64(uint64_t *p, uint64_t expected, uint64_t desired) nogil
    uint64_t tlb_load_u64(uint64_t *p) nogil
    void tlb_store_u64(uint64_t *p, uint64_t v) nogil
    int64_t tlb_add_i64(int64_t *p, int64_t d) nogil

cdef extern from "<sched.h>":
    int sched_yield() nogil


cdef class AtomicWords:
    """The 64-bit words of a writable buffer (an anonymous shared mmap), operated on atomically. Indices are
    not checked beyond ``len``: the Python callers (controlled.shared_words) own the layout."""

    cdef unsigned char[::1] _view  # holds the buffer exported (the mmap cannot be closed under us)
    cdef uint64_t *_words
    cdef Py_ssize_t _n

    def __cinit__(self, buffer):
        self._view = buffer
        self._words = <uint64_t *> &self._view[0]
        self._n = self._view.shape[0] // 8

    def __len__(self):
        return self._n

    def load(self, Py_ssize_t i) -> int:
        self._check(i)
        return tlb_load_u64(&self._words[i])

    def store(self, Py_ssize_t i, uint64_t v) -> None:
        self._check(i)
        tlb_store_u64(&self._words[i], v)

    def cas(self, Py_ssize_t i, uint64_t expected, uint64_t desired) -> bool:
        """Set word ``i`` to ``desired`` if it holds ``expected``; whether it did."""
        self._check(i)
        return tlb_cas_u64(&self._words[i], expected, desired) != 0

    def add(self, Py_ssize_t i, int64_t delta) -> int:
        """Add ``delta`` to word ``i`` (as a signed count); the new value."""
        self._check(i)
        return tlb_add_i64(<int64_t *> &self._words[i], delta)

    def insert(self, Py_ssize_t first, uint64_t mask, int64_t h) -> bool:
        """Insert the fingerprint ``h`` (a Python hash: any signed 64-bit value) into the open-addressing table
        of ``mask + 1`` words that starts at word ``first`` (0 marks a free slot, so fingerprint 0 is stored
        as 1); True if it was not there. Linear probing; a slot is claimed by compare-and-swap from 0, so of two
        processes inserting the same fingerprint exactly one is told it is new."""
        cdef uint64_t f = <uint64_t> h
        cdef uint64_t i, v
        if f == 0:
            f = 1
        if first < 0 or first + <Py_ssize_t> mask >= self._n:
            raise IndexError("table out of the buffer")
        i = f & mask
        while True:
            v = tlb_load_u64(&self._words[first + i])
            if v == f:
                return False
            if v == 0:
                if tlb_cas_u64(&self._words[first + i], 0, f):
                    return True
                continue  # another process claimed this slot first: look at what it wrote
            i = (i + 1) & mask

    def claim(self, Py_ssize_t first, uint64_t mask, int64_t h) -> int:
        """Insert the fingerprint ``h`` into the table of ``mask + 1`` pairs of words (fingerprint, sleep set) that
        starts at word ``first``, as ``insert`` does one word a slot: the word index of its pair, when it was
        not there; ``-1 - index`` when it was (controlled.shared_sleep_sets keeps the sleep set it was reached
        with in the pair's second word)."""
        cdef uint64_t f = <uint64_t> h
        cdef uint64_t i, v
        cdef Py_ssize_t at
        if f == 0:
            f = 1
        if first < 0 or first + 2 * <Py_ssize_t> mask + 1 >= self._n:
            raise IndexError("table out of the buffer")
        i = f & mask
        while True:
            at = first + 2 * <Py_ssize_t> i
            v = tlb_load_u64(&self._words[at])
            if v == f:
                return -1 - at
            if v == 0:
                if tlb_cas_u64(&self._words[at], 0, f):
                    return at
                continue
            i = (i + 1) & mask

    def intersect(self, Py_ssize_t i, uint64_t keep, uint64_t ready) -> int:
        """Wait until word ``i`` holds the bit ``ready`` (its first writer publishes it with that bit), then
        clear in it every bit outside ``keep | ready``, atomically: the value it held (its bits cleared here
        were cleared by this call alone, whatever the other processes do)."""
        cdef uint64_t v
        self._check(i)
        while True:
            v = tlb_load_u64(&self._words[i])
            if not (v & ready):
                sched_yield()  # its first writer claimed the slot and is about to publish it: let it run
                continue
            if (v & ~(keep | ready)) == 0 or tlb_cas_u64(&self._words[i], v, v & (keep | ready)):
                return v

    cdef inline void _check(self, Py_ssize_t i) except *:
        if i < 0 or i >= self._n:
            raise IndexError(i)
