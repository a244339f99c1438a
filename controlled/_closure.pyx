# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled controlled.closure.Closure: the same closure over C words, for up to 64 agents.

setup.py builds it the optional way it builds the hot modules (kernel_model/compiled.py); controlled.closure
falls back to its Python Closure when it is missing or stale (and the reducer uses that one past 64 agents);
tests/test_closure_compiled.py checks that both give the same members on every closure of real searches. The
rules, and what each argument holds, are in controlled.closure's docstring.
"""

from libc.stdint cimport uint64_t

cdef enum:
    MOST = 64  # agents in a word


cdef extern from *:
    int __builtin_ctzll(unsigned long long) nogil


cdef inline int _low(uint64_t x) nogil:
    """The lowest set bit's number (x is not 0)."""
    return __builtin_ctzll(x)


cdef class Closure:
    cdef int nthreads
    cdef int nagents
    cdef uint64_t unknown, moves, threads, queued
    cdef uint64_t defs[MOST]
    cdef uint64_t conds[MOST]
    cdef long counts[MOST]
    cdef uint64_t inval[MOST]
    cdef uint64_t sends[MOST]
    cdef int cpu_of[MOST]

    def __init__(self, int nthreads, cpu_of, list defs, list conds, list counts, unknown, moves, threads,
                 list inval, list sends, queued):
        cdef Py_ssize_t i, n = len(defs)
        if n > MOST or len(conds) != n or len(counts) != n or len(cpu_of) != nthreads or nthreads > n:
            raise ValueError(f"a closure of {n} agents ({nthreads} threads) does not fit a word")
        self.nthreads = nthreads
        self.nagents = <int> n
        for i in range(n):
            self.defs[i] = defs[i]
            self.conds[i] = conds[i]
            self.counts[i] = counts[i]
        for i in range(nthreads):
            self.cpu_of[i] = cpu_of[i]
            self.inval[i] = inval[i]
            self.sends[i] = sends[i]
        self.unknown = unknown
        self.moves = moves
        self.threads = threads
        self.queued = queued

    cpdef object close(self, int seed, long bound):
        """The members' bit set of the closure grown from agent ``seed``, 0 when none closes."""
        cdef uint64_t members = (<uint64_t> 1) << seed
        cdef uint64_t rest, low, low_t, definite, conditional, kept, outside, others, joining
        cdef long count
        cdef int a, cpu, n = self.nthreads
        while True:
            if members & self.unknown:
                return 0
            count = 0
            definite = 0
            conditional = 0
            rest = members
            while rest:
                a = _low(rest)
                rest &= rest - 1
                count += self.counts[a]
                definite |= self.defs[a]
                conditional |= self.conds[a]
            if count >= bound:
                return 0
            definite &= ~members
            outside = self.threads & ~members
            kept = 0
            rest = conditional & ~members
            while rest:
                a = _low(rest)
                low = (<uint64_t> 1) << a
                rest &= rest - 1
                if a < n:  # a thread: may someone outside flush its CPU's TLB?
                    cpu = self.cpu_of[a]
                    if (self.queued >> cpu) & 1 and not ((members >> (n + cpu)) & 1):
                        kept |= low
                        continue
                    others = outside & ~low
                    while others:
                        if (self.inval[_low(others)] >> cpu) & 1:
                            kept |= low
                            break
                        others &= others - 1
                else:  # a CPU with nothing queued: may someone outside still IPI it?
                    cpu = a - n
                    others = outside
                    while others:
                        if (self.sends[_low(others)] >> cpu) & 1:
                            kept |= low
                            break
                        others &= others - 1
            if not definite and not kept:
                return members
            if definite & ~self.moves:
                return 0
            joining = definite if definite else kept & self.moves
            if not joining:
                return 0
            members |= joining
