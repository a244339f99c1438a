"""Which field of a logged event record is wrong, said in words, for a record the replay could not use.

Replay reads an event record's ``kind``, ``tid``, ``cpu`` and its sort key (``lamport``, ``actor``, ``seq``;
logs/eventlog.py documents them). A damaged or hand-edited record made `tlbrace analyze` say "malformed event
record (missing or bad field '<' not supported between instances of 'str' and 'int')" or "replay crashed:
TypeError: list indices must be integers or slices, not float", naming no field; a thread number of -1 was
taken, by Python's indexing, for the last thread, and reported only as a step that returned something else. The
check runs only once a trial's replay has failed or diverged: an intact log pays nothing for it.
"""

from __future__ import annotations

from typing import Any, Iterable

KINDS = ("step", "ipi", "note")


MAX_DEPTH = 32  # lists and maps within each other in a record's args or result: the logs written here are 2 deep


def nested_deeper(value: Any, limit: int) -> bool:
    """Whether ``value`` holds lists or maps more than ``limit`` deep; iterative (a 990-deep result made the
    replay's comparison a RecursionError, an internal error of analyze and replay)."""
    level = [value] if isinstance(value, (list, dict)) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [v for x in level for v in (x.values() if isinstance(x, dict) else x) if isinstance(v, (list, dict))]
    return False


def too_deep(entries: Any) -> str | None:
    """The first value of the map ``entries`` nested past MAX_DEPTH, as "'name' is nested more than 32 deep" (a
    header's config, a results record), checked before any message shows a value: the repr of a 990-deep one was
    RecursionError; None when there is none (or ``entries`` is no map)."""
    for name, value in entries.items() if isinstance(entries, dict) else ():
        if nested_deeper(value, MAX_DEPTH):
            return f"{''.join(c if c.isprintable() else '?' for c in str(name)[:60])!r} is nested more than " \
                   f"{MAX_DEPTH} deep"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def field_problem(rec: Any, nthreads: int, ncpus: int) -> str | None:
    """What is wrong with one event record, naming its field and what was expected; None when it is usable."""
    if not isinstance(rec, dict):
        return f"expected a map, got {rec!r:.40}"
    kind = rec.get("kind")
    if "kind" not in rec:
        return f"field 'kind' is missing ({', '.join(KINDS[:-1])} or {KINDS[-1]})"
    if kind not in KINDS:
        return f"field 'kind': expected {', '.join(KINDS[:-1])} or {KINDS[-1]}, got {kind!r:.40}"
    for key in ("lamport", "seq"):  # sort keys: any integer sorts (a test's jitter note has seq -1)
        value = rec.get(key, 0)
        if not _is_int(value):
            return f"field {key!r}: expected an integer, got {value!r:.40}"
    if not isinstance(rec.get("actor", ""), str):
        return f"field 'actor': expected a string, got {rec.get('actor')!r:.40}"
    for key in ("args", "result"):
        if nested_deeper(rec.get(key), MAX_DEPTH):
            return f"field {key!r}: nested more than {MAX_DEPTH} deep (a step's arguments and result are a few levels)"
    if kind == "note":
        return None
    # An IPI's tid is its initiator's thread, its cpu the CPU running the handler.
    wanted = [("tid", nthreads, "thread")] + ([("cpu", ncpus, "CPU")] if kind == "ipi" else [])
    for key, count, what in wanted:
        value = rec.get(key)
        if not _is_int(value) or not 0 <= value < count:
            return (f"field {key!r}: expected a {what} number in 0..{count - 1} (the scenario has {count}), got "
                    f"{value!r:.40}" if key in rec else f"field {key!r} is missing (a {what} number)")
    return None


def first_field_problem(records: Iterable[Any], nthreads: int, ncpus: int) -> str | None:
    """The first unusable record of a trial's records, as "event N (op X): field ...: expected ..."; N counts the
    trial's event records in the order the log holds them, from 1."""
    for n, rec in enumerate(records, 1):
        problem = field_problem(rec, nthreads, ncpus)
        if problem is not None:
            op = rec.get("op") if isinstance(rec, dict) else None
            return f"event {n}" + (f" (op {op!r:.40})" if op is not None else "") + f": {problem}"
    return None
