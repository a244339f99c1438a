"""Shrinking a failing fuzz scenario: fewest threads, then operations, then pages, keeping the same invariant.

Greedy and deterministic: from the current spec, try each one-step simplification in a fixed order (drop a
thread; drop an operation; inline a loop; drop a page and renumber the rest; repeat or times down to 1; a setup
knob back to its default; a thread out of warm_tlb) and keep the first that the loader accepts and that still
fails with the invariant. Every accepted step makes ``measure`` strictly smaller, so the loop ends. What is left
is 1-minimal for these steps: no single one of them keeps the failure.
"""

from __future__ import annotations

from typing import Callable, Iterator

from fuzz.generate import Spec
from fuzz.ops import OpTable

Ops = tuple[OpTable, ...]


def measure(spec: Spec) -> tuple[int, int, int, int, int]:
    """(threads, operations, pages, extra repeats, setup knobs): what shrinking makes smaller, in that order."""
    extra = sum(_extra(ops) for _, ops in spec.threads)
    return (*spec.size(), extra, len(spec.setup) + len(spec.warm_tlb))


def _extra(ops: Ops) -> int:
    return sum(op.get("repeat", 1) - 1 + op.get("times", 1) - 1 + (_extra(op["body"]) if op["op"] == "loop" else 0)
               for op in ops)


def shrink(spec: Spec, still_fails: Callable[[Spec], bool], max_tries: int = 400) -> Spec:
    """The smallest spec reached from ``spec`` by steps that keep ``still_fails`` true (``spec`` itself fails).
    ``still_fails`` is asked at most ``max_tries`` times (each question is an exploration)."""
    tries = 0
    progress = True
    while progress and tries < max_tries:
        progress = False
        for candidate in candidates(spec):
            if measure(candidate) >= measure(spec):
                continue
            tries += 1
            if still_fails(candidate):
                spec, progress = candidate, True
                break
            if tries >= max_tries:
                break
    return spec


def candidates(spec: Spec) -> Iterator[Spec]:
    """One-step simplifications of ``spec``, biggest first."""
    threads = spec.threads
    if len(threads) > 1:
        for i in range(len(threads)):
            yield spec.with_threads(threads[:i] + threads[i + 1:])
    for i, (name, ops) in enumerate(threads):
        for smaller in _smaller_programs(ops):
            if smaller:
                yield spec.with_threads(threads[:i] + ((name, smaller),) + threads[i + 1:])
    if spec.pages > 1:
        for page in reversed(range(spec.pages)):
            yield _drop_page(spec, page)
    for i, (name, ops) in enumerate(threads):
        for simpler in _fewer_repeats(ops):
            yield spec.with_threads(threads[:i] + ((name, simpler),) + threads[i + 1:])
    for key in spec.setup:
        yield Spec(spec.pages, {k: v for k, v in spec.setup.items() if k != key}, spec.warm_tlb, spec.threads)
    for name in spec.warm_tlb:
        yield Spec(spec.pages, spec.setup, tuple(n for n in spec.warm_tlb if n != name), spec.threads)


def _smaller_programs(ops: Ops) -> Iterator[Ops]:
    """``ops`` with one operation removed (at any depth), or one loop replaced by its body."""
    for j, op in enumerate(ops):
        yield ops[:j] + ops[j + 1:]
        if op["op"] == "loop":
            yield ops[:j] + tuple(op["body"]) + ops[j + 1:]
            for body in _smaller_programs(tuple(op["body"])):
                if body:
                    yield ops[:j] + ({**op, "body": list(body)},) + ops[j + 1:]


def _fewer_repeats(ops: Ops) -> Iterator[Ops]:
    for j, op in enumerate(ops):
        for key in ("repeat", "times"):
            if op.get(key, 1) > 1:
                yield ops[:j] + ({k: v for k, v in op.items() if k != key},) + ops[j + 1:]
        if op["op"] == "loop":
            for body in _fewer_repeats(tuple(op["body"])):
                yield ops[:j] + ({**op, "body": list(body)},) + ops[j + 1:]


def _drop_page(spec: Spec, page: int) -> Spec:
    """``spec`` without ``page``: later pages renumbered down by one, operations left with no page dropped. (A
    contiguous range stays contiguous; "every page" stays every page.)"""
    def renumber(ops: Ops) -> Ops:
        out: list[OpTable] = []
        for op in ops:
            if op["op"] == "loop":
                body = renumber(tuple(op["body"]))
                if body:
                    out.append({**op, "body": list(body)})
                continue
            if "pages" not in op:
                out.append(op)
                continue
            kept = [p - (p > page) for p in op["pages"] if p != page]
            if kept:
                out.append({**op, "pages": kept})
        return tuple(out)

    threads = tuple((name, renumber(ops)) for name, ops in spec.threads)
    threads = tuple((name, ops) for name, ops in threads if ops)
    setup = dict(spec.setup)
    return Spec(spec.pages - 1, setup, spec.warm_tlb, ()).with_threads(threads)
