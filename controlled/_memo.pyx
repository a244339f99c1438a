# cython: language_level=3, boundscheck=False, wraparound=False, auto_pickle=False
"""The compiled controlled.memo classes (BoundedMemo, Interner, Numbering): the same dict subclasses, as cdef
classes.

A dict subclass written in Python (compiled by Cython or not) gets CPython's generic ``slot_mp_subscript``: every
``memo[key]``, hit or miss, then calls ``dict.__getitem__`` as a method (about 135 more instructions a lookup,
callgrind, Python 3.11). A cdef class that subclasses dict inherits dict's own subscript, so a hit is a plain dict
lookup, and only a miss runs ``__missing__``. The rules are controlled.memo's (its docstring); setup.py builds
this module the optional way (controlled/compiled_only.py), controlled.memo falls back to its Python classes
when it is missing or stale, and tests/test_memo.py runs both.
"""

MISSING = object()  # what memo[key] gives for a key it does not hold (controlled.memo.MISSING when this is built)


cdef class BoundedMemo(dict):
    """controlled.memo's BoundedMemo: at most 2 x ``bound`` answers, in two generations."""

    cdef public Py_ssize_t bound
    cdef public dict old
    cdef public Py_ssize_t misses  # lookups answered by neither generation
    cdef public Py_ssize_t turns  # times the current generation became the old one

    def __init__(self, Py_ssize_t bound) -> None:
        if bound < 1:
            raise ValueError(f"a memo's bound must be at least 1, not {bound}")
        self.bound = bound
        self.old = {}
        self.misses = 0
        self.turns = 0

    def __missing__(self, key):
        answer = self.old.get(key, MISSING)
        if answer is MISSING:
            self.misses += 1
        else:
            self.put(key, answer)
        return answer

    cpdef put(self, key, answer):
        if len(self) >= self.bound:
            self.old = dict(self)
            self.clear()
            self.turns += 1
        self[key] = answer

    def forget(self) -> None:
        """Drop both generations."""
        self.clear()
        self.old = {}

    def held(self) -> int:
        """Answers held, in both generations (an answer in both counts twice: it is stored twice)."""
        return len(self) + len(self.old)


cdef class Interner(dict):
    """controlled.memo's Interner: one shared copy of each equal immutable value, for at most ``bound`` values."""

    cdef public Py_ssize_t bound

    def __init__(self, Py_ssize_t bound) -> None:
        self.bound = bound

    def __missing__(self, value):
        if len(self) >= self.bound:
            self.clear()
        self[value] = value
        return value


cdef class Numbering(dict):
    """controlled.memo's Numbering: a number for each distinct part, in order of first appearance."""

    def __missing__(self, part):
        n = len(self)
        self[part] = n
        return n
