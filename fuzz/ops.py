"""The fuzzer's operation generators: one entry per op the scenario loader accepts, keyed by op name.

Each entry draws one operation as a scenario file writes it (a TOML inline table: ``{"op": "store", "pages":
[0]}``), or None when the op does not fit where it would go (a file op in anonymous memory, a counter on a
thread whose TLB does not start warm). A new op is one entry here; ``tests/test_fuzz.py`` checks that every op
of ``kernel_model.program.OP_KINDS`` has one, so an op the fuzzer cannot draw is a failing test, not a silent
gap. The loader stays the judge of what is valid: the fuzzer loads every scenario it writes through it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Final

OpTable = dict[str, Any]  # one operation as a scenario file writes it


@dataclass(frozen=True, slots=True)
class Where:
    """What an op generator may look at: the scenario's shape and the thread it writes for."""

    pages: int
    anon: bool
    mapped: bool
    warm: bool  # this thread's CPU starts with a TLB entry per page (setup.warm_tlb)
    depth: int  # loop nesting of the op being drawn (0: top level of a program)


@dataclass(frozen=True, slots=True)
class OpGen:
    make: Callable[[random.Random, Where], OpTable | None]
    weight: float = 1.0  # relative chance of being drawn


MAX_LOOP_DEPTH: Final = 1  # loops of loops only multiply the state space; one level already covers "again"


def _one_page(rng: random.Random, w: Where) -> list[int]:
    return [rng.randrange(w.pages)]


def _some_pages(rng: random.Random, w: Where) -> list[int]:
    """One page, or several in any order (a store to several pages is one store per page, in that order)."""
    if w.pages == 1 or rng.random() < 0.6:
        return _one_page(rng, w)
    return rng.sample(range(w.pages), rng.randint(2, w.pages))


def _range(rng: random.Random, w: Where) -> list[int] | None:
    """A zap's one address range: contiguous ascending pages, or None for "every page" (the key omitted)."""
    if rng.random() < 0.4:
        return None
    first = rng.randrange(w.pages)
    return list(range(first, rng.randint(first + 1, w.pages)))


def _distinct(rng: random.Random, w: Where) -> list[int] | None:
    if rng.random() < 0.5:
        return None
    return sorted(rng.sample(range(w.pages), rng.randint(1, w.pages)))


def _with_pages(op: str, pages: list[int] | None, repeat: int = 1) -> OpTable:
    out: OpTable = {"op": op}
    if pages is not None:
        out["pages"] = pages
    if repeat != 1:
        out["repeat"] = repeat
    return out


def _repeat(rng: random.Random) -> int:
    return 1 if rng.random() < 0.8 else 2


def _store(rng: random.Random, w: Where) -> OpTable:
    return _with_pages("store", _some_pages(rng, w), _repeat(rng))


def _load(rng: random.Random, w: Where) -> OpTable:
    return _with_pages("load", _some_pages(rng, w), _repeat(rng))


def _counter(rng: random.Random, w: Where) -> OpTable | None:
    """Nadav Amit's PoC writer. Without refault it counts only through a translation its CPU starts with, and
    only at the top level (in a loop it would do nothing after the first pass: the loader refuses that); with
    refault it faults the page back in and carries on. The fuzzer always bounds it (max): an unbounded counter
    ends only when another thread's zap flushes its translation for good, and a generated program that refills
    it (a store on the same CPU, a zap that came first) is an endless user loop, which the machine reports as a
    hang: a finding about the program, not the kernel."""
    refault = w.depth > 0 or not w.warm or rng.random() < 0.4
    op = _with_pages("counter", _one_page(rng, w))
    if refault:
        op["refault"] = True
    op["max"] = rng.randint(1, 3)
    return op


def _zap(op: str) -> Callable[[random.Random, Where], OpTable]:
    return lambda rng, w: _with_pages(op, _range(rng, w))


def _mapping(op: str) -> Callable[[random.Random, Where], OpTable]:
    """mmap (always) and mmap_fixed (half the time) say what the range maps: another file range (offset) or
    anonymous memory; mmap_fixed otherwise maps the same file range again. An anonymous setup has no file."""
    def make(rng: random.Random, w: Where) -> OpTable:
        pages = _range(rng, w)
        out = _with_pages(op, pages)
        if op == "mmap" or rng.random() < 0.5:
            if w.anon or rng.random() < 0.4:
                out["anon"] = True
            else:
                out["offset"] = rng.randint(0, w.pages - (w.pages if pages is None else len(pages)))
        return out
    return make


def _file_op(op: str) -> Callable[[random.Random, Where], OpTable | None]:
    # msync and fadvise(DONTNEED) need the backing file that anonymous memory does not have.
    return lambda rng, w: None if w.anon else _with_pages(op, _distinct(rng, w), _repeat(rng))


def _mremap(rng: random.Random, w: Where) -> OpTable | None:
    """mremap of one page, or of a short range, to a destination range apart from it (file mappings only)."""
    if w.anon or w.pages < 2:
        return None
    length = 1 if w.pages < 4 or rng.random() < 0.7 else 2
    starts = list(range(w.pages - length + 1))
    src = rng.choice(starts)
    dests = [d for d in starts if d + length <= src or d >= src + length]
    if not dests:
        return None
    return {"op": "mremap", "pages": list(range(src, src + length)), "to": rng.choice(dests)}


def _ftruncate(rng: random.Random, w: Where) -> OpTable | None:
    """ftruncate to a page boundary: every page from there to the end leaves the file (omitted: to 0)."""
    if w.anon:
        return None
    if rng.random() < 0.4:
        return {"op": "ftruncate"}
    return {"op": "ftruncate", "pages": list(range(rng.randrange(w.pages), w.pages))}


def _loop(rng: random.Random, w: Where) -> OpTable | None:
    if w.depth >= MAX_LOOP_DEPTH:
        return None
    inner = Where(w.pages, w.anon, w.mapped, w.warm, w.depth + 1)
    body = [op for op in (draw_op(rng, inner) for _ in range(rng.randint(1, 2)))]
    return {"op": "loop", "times": rng.randint(1, 2), "body": body}


OP_GENERATORS: Final[dict[str, OpGen]] = {
    "store": OpGen(_store, 3.0),
    "load": OpGen(_load, 1.0),
    "counter": OpGen(_counter, 1.5),
    "madvise_dontneed": OpGen(_zap("madvise_dontneed"), 1.5),
    "munmap": OpGen(_zap("munmap"), 0.7),
    "mmap_fixed": OpGen(_mapping("mmap_fixed"), 0.7),
    "mmap": OpGen(_mapping("mmap"), 0.7),
    "msync": OpGen(_file_op("msync"), 2.0),
    "evict": OpGen(_file_op("evict"), 0.7),
    "mremap": OpGen(_mremap, 0.5),
    "ftruncate": OpGen(_ftruncate, 0.4),
    "mprotect": OpGen(_zap("mprotect"), 0.6),
    "reclaim": OpGen(_file_op("reclaim"), 0.6),
    "loop": OpGen(_loop, 0.4),
}

ZAP_KINDS: Final = ("madvise_dontneed", "munmap", "mmap_fixed")  # what ends a counter (its flush)


def draw_op(rng: random.Random, w: Where) -> OpTable:
    """One operation, drawn by weight among the generators that fit ``w`` (store always does)."""
    names = list(OP_GENERATORS)
    weights = [OP_GENERATORS[n].weight for n in names]
    while True:
        name = rng.choices(names, weights)[0]
        op = OP_GENERATORS[name].make(rng, w)
        if op is not None:
            return op
