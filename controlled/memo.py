"""Bounded memos for the search: caches that forget, so that what a search keeps grows with the states it stores.

The explorer's memos (the reducer's persistent sets and relations, the sleep sets' independence, ...) answer
questions whose answer is a function of the key: forgetting one only costs recomputing it, and the search
finds the same states, transitions and verdicts (tests/test_memo.py runs searches with tiny bounds against the
default ones). Unbounded, they grew with the transitions run, not with the states stored: on ladder pages=1
writers=2 stores=2 they held about 300 bytes per stored state, more than the visited set itself.

``BoundedMemo`` keeps two generations (the "2Q"/generational idea, cheaper than an LRU's bookkeeping): answers
go into the current one; when it holds ``bound`` answers it becomes the old one and the previous old one is
dropped; an answer found in the old generation moves back into the current one. What the search keeps asking
survives the turn, what it stopped asking goes. A hit in the current generation is a plain dict lookup
(``memo[key]``: BoundedMemo is a dict); only a miss runs Python code (``__missing__``).

``Interner`` shares equal immutable parts of memo keys and answers (the same tuple built afresh on every call
would otherwise be kept once per key). It may forget at any time: equality, not identity, decides a lookup.
What it gives back is equal to what it was given, not always of the same type (Python's equality merges 1,
1.0 and True, and a named tuple with a plain one): share only key parts, or answers whose equal values are all
built alike.

``Numbering`` numbers distinct parts by first appearance (the compact visited keys' tables, the reducer's key
parts).

controlled/_memo.pyx is the same three classes as cdef classes: a dict subclass written in Python gets CPython's
generic subscript slot, which calls ``dict.__getitem__`` as a method on every lookup, and a cdef class inherits
dict's own (about 135 instructions less a lookup). The names below are the compiled ones when that build is
fresh (controlled/compiled_only.py), the Python ones otherwise; tests/test_memo.py checks both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controlled.compiled_only import fresh_extension

_COMPILED = fresh_extension("controlled._memo", Path(__file__).with_name("_memo.pyx"),
                            "the memos run in Python (slower)")
MISSING: Any = object() if _COMPILED is None else _COMPILED.MISSING  # what memo[key] gives for a key it lacks


class BoundedMemo(dict):
    """A memo of at most 2 x ``bound`` answers (see the module docstring). ``memo[key]`` is the answer or
    MISSING; ``put(key, answer)`` records one."""

    __slots__ = ("bound", "old", "misses", "turns")

    def __init__(self, bound: int) -> None:
        super().__init__()
        if bound < 1:
            raise ValueError(f"a memo's bound must be at least 1, not {bound}")
        self.bound = bound
        self.old: dict = {}
        self.misses = 0  # lookups answered by neither generation (for reports and tests)
        self.turns = 0  # times the current generation became the old one

    def __missing__(self, key: Any) -> Any:
        answer = self.old.get(key, MISSING)
        if answer is MISSING:
            self.misses += 1
        else:
            self.put(key, answer)
        return answer

    def put(self, key: Any, answer: Any) -> None:
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


class Interner(dict):
    """One shared copy of each equal immutable value: ``share[value]`` is the copy, for at most ``bound``
    distinct values (then it starts again: what was shared stays shared, later copies share a new one). A value
    met before is a plain dict lookup; only a new one runs Python code (``__missing__``)."""

    __slots__ = ("bound",)

    def __init__(self, bound: int) -> None:
        super().__init__()
        self.bound = bound

    def __missing__(self, value: Any) -> Any:
        if len(self) >= self.bound:
            self.clear()
        self[value] = value
        return value


class Numbering(dict):
    """A number for each distinct part, in order of first appearance: ``numbering[part]`` (a part met before is
    a plain dict lookup)."""

    __slots__ = ()

    def __missing__(self, part: object) -> int:
        n = self[part] = len(self)
        return n


PyBoundedMemo, PyInterner, PyNumbering = BoundedMemo, Interner, Numbering  # the Python ones, for the tests
if _COMPILED is not None:
    BoundedMemo, Interner, Numbering = (_COMPILED.BoundedMemo, _COMPILED.Interner,  # type: ignore[misc]
                                        _COMPILED.Numbering)
