"""A suspended kernel path generator's state as a value: what its future behaviour depends on, and nothing else.

A thread's position is (operation, attempt, results so far) (controlled.positions): the history its generator is
rebuilt from. Two histories often leave the generator in the same state: a writeback pass at its second page has
forgotten whether the first was clean, dirty or truncated, save for its count of pages written; a zapper past its
flush no longer reads the PTEs it cleared. Such positions are different key values for one thing, and every
state holding one is searched again for each (SPIN's dead-variable reduction, applied to the generator's frames).

What a suspended generator does next, for every sequence of results it is then sent, is a function of:
- each frame of its ``yield from`` chain: its code, where it stopped (``f_lasti``), the values of the locals it
  may still read (liveness over the code's bytecode, below), and its value stack (loop iterators with their
  position, the sub-generator it delegates to, operands of an expression the yield is inside);
- what those values reach: plain values (None, bools, ints, strings, tuples and named tuples, frozen
  dataclasses, frozensets) compared by type and value; mutable containers (lists, dicts, dataclasses such as
  the mmu_gather) by their contents, with aliasing kept (an object met again is named by its first sighting,
  so two locals holding one list are told from two equal lists); an iterator by its ``__reduce__`` (its
  sequence and index); a nested generator by its own state;
- and what is the same at every position of the thread: the code's globals and constants (the kernel paths read
  no mutable global: the positions memo already rests on that), the thread's Kctx (frozen) and Config.
The state is what the generator does once resumed: the step it waits at is not in it (its arguments were computed
before the yield, and a local read only there is dead after it), so a position is its step and its state together
(controlled.positions). ``state_of`` returns the state as a hashable value, or None wherever it meets anything else
(an object of another kind, an exception being handled, a frame layout it cannot read): such a position keeps its
own history as its key, as before. So two positions at equal steps with equal states are sent the same results and
yield the same steps and notes, with the same arguments, for ever after: equal behaviour, which is what the visited
set needs of one key value.

Liveness is computed conservatively, per code object: a local is live at an offset when some path of the
control-flow graph from there (every jump target, fall-through and exception handler a bytecode may reach) loads
it before storing it. Every opcode that names a local other than STORE_FAST counts as a load; cell and free
variables are always live. Too many live locals only keeps positions apart; none is ever missed.

This reads CPython's frames: ``gi_frame.f_locals``, and the generator's referents (gc.get_referents: its code,
name, frame, locals dict, function and code, then its non-empty local slots in order, then the value stack),
checked item by item against the locals, so any other layout gives None. Only CPython 3.11 is read (the project's
interpreter); elsewhere ``state_of`` is None throughout and positions stay histories.
"""

from __future__ import annotations

import dataclasses
import dis
import gc
import sys
import types
from typing import Any

from controlled import source_paths

SUPPORTED = sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 11)
# Merge positions whose histories differ in results the path never reads again (Positions._representative's
# classes), not only retries. Off: the representative is the first history met, so two processes (parallel
# workers) that meet a class's histories in different orders key one state twice: sound, but the workers' counts
# then differ from one process's, which the parallel search promises equal (its --no-sleep-sets counts). Measured
# gain on top of the retries: 2% of the states on one-page ladder cells, 9% on 2, 2, 1, 1, and 35% on the largest
# cell, 2, 2, 1, 2 (4,055,589 to 2,640,337 states on two workers, docs/reduction-next.md section 3).
DEAD_RESULTS = False

_PLAIN = (type(None), bool, int, str, float, bytes)
_UNCONDITIONAL = frozenset({"JUMP_FORWARD", "JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT", "JUMP_ABSOLUTE"})
_ENDS = frozenset({"RETURN_VALUE", "RAISE_VARARGS", "RERAISE"})
_JUMPS = frozenset(dis.hasjrel) | frozenset(dis.hasjabs)
_LOCAL_OPS = frozenset(dis.haslocal)
_LIVE: dict[types.CodeType, dict[int, frozenset[str]] | None] = {}  # code -> offset -> live locals after it


class _Unknown(Exception):
    """A value or frame the state cannot be read from: the position keeps its history."""


def state_at(ctx: Any, op: Any, index: int, npages: int, first: bool, results: tuple, step: Any) -> tuple | None:
    """The state of thread ``ctx``'s attempt at operation ``op`` (number ``index``; ``first``: not a retry) after
    ``results``, where it waits to do ``step``: read from the paths' plain Python twin (controlled.source_paths)
    replayed on those results, since a compiled generator shows no frame. None where it cannot be read, or the
    twin does not stand at ``step``."""
    if not SUPPORTED:
        return None
    with source_paths.installed():
        gen = source_paths.op_attempt()(ctx, op, index, npages, first)
        try:
            item = gen.send(None)
            for r in results:
                item = gen.send(r)
        except Exception:  # noqa: BLE001 - StopIteration or a path failing: no state, never a wrong one
            return None
        if type(item) is not type(step) or item != step:
            return None
        return state_of(gen)


def state_of(gen: Any) -> tuple | None:
    """The state of suspended generator ``gen`` (module docstring), or None where it cannot be read."""
    if not SUPPORTED:
        return None
    try:
        return _Reader().generator(gen)
    except _Unknown:
        return None


class _Reader:
    """One reading: mutable objects are numbered in order of first sighting, so aliasing is part of the value."""

    def __init__(self) -> None:
        self.seen: dict[int, int] = {}
        self.keep: list[Any] = []  # keeps the objects numbered alive, so that no id is reused meanwhile

    def generator(self, gen: Any) -> tuple:
        if type(gen) is not types.GeneratorType:
            raise _Unknown  # a compiled (Cython) generator shows no frame: see state_at
        frame = gen.gi_frame
        if frame is None or gen.gi_running:
            return ("done",)  # returned: it yields nothing more (a finished sub-generator never is one)
        code = gen.gi_code
        live = _live_after(code)
        if live is None:
            raise _Unknown
        lasti = frame.f_lasti
        names = live.get(lasti)
        if names is None:
            raise _Unknown
        local_values = frame.f_locals
        stack = _stack_of(gen, frame, code, local_values)
        return (code, lasti,
                tuple((name, self.value(local_values[name]) if name in local_values else "unbound")
                      for name in sorted(names)),
                tuple(self.value(v) for v in stack))

    def value(self, v: Any) -> Any:
        """``v`` as part of a state: by type and contents (module docstring); _Unknown for any other kind."""
        t = type(v)
        if t in _PLAIN:
            return (t, v)
        if t is tuple or (isinstance(v, tuple) and hasattr(t, "_fields")):
            return (t, tuple(self.value(x) for x in v))
        if t is frozenset:
            return (t, frozenset(self.value(x) for x in v))
        if isinstance(v, (types.FunctionType, types.BuiltinFunctionType, types.CodeType, type)):
            return ("id", v)  # the same object at every position of the thread
        if dataclasses.is_dataclass(v):
            params = getattr(t, "__dataclass_params__", None)
            if params is not None and params.frozen:
                return (t, self._fields(v))
        return self._mutable(v, t)

    def _mutable(self, v: Any, t: type) -> Any:
        if isinstance(v, types.GeneratorType):
            return self._once(v, lambda: ("gen",) + self.generator(v))
        if dataclasses.is_dataclass(v):
            return self._once(v, lambda: (t, self._fields(v)))
        if t is list:
            return self._once(v, lambda: (t, tuple(self.value(x) for x in v)))
        if t is dict:
            return self._once(v, lambda: (t, tuple((self.value(a), self.value(b)) for a, b in v.items())))
        if t.__name__.endswith("iterator") and t.__module__ == "builtins":
            return self._once(v, lambda: (t, self.value(v.__reduce__())))
        raise _Unknown

    def _fields(self, v: Any) -> tuple:
        return tuple(self.value(getattr(v, f.name)) for f in dataclasses.fields(v))

    def _once(self, v: Any, read: Any) -> Any:
        """A mutable object: its contents the first time, its number after (aliasing is state)."""
        number = self.seen.get(id(v))
        if number is not None:
            return ("ref", number)
        self.seen[id(v)] = len(self.seen)
        self.keep.append(v)
        return ("obj", len(self.seen) - 1, read())


def _stack_of(gen: Any, frame: Any, code: types.CodeType, local_values: dict) -> list[Any]:
    """The value stack of suspended ``gen`` (CPython 3.11's traversal order; anything else raises _Unknown)."""
    refs = gc.get_referents(gen)
    head = [code, gen.__name__, gen.__qualname__, frame, None, None, code]
    if len(refs) < len(head) or refs[0] is not code or refs[3] is not frame or refs[6] is not code \
            or not isinstance(refs[4], dict) or not isinstance(refs[5], types.FunctionType):
        raise _Unknown
    if code.co_cellvars or code.co_freevars:
        raise _Unknown  # cell slots hold cell objects, not the values f_locals shows
    slots = [local_values[name] for name in code.co_varnames if name in local_values]
    rest = refs[len(head):]
    if len(rest) < len(slots) or any(a is not b for a, b in zip(rest, slots)):
        raise _Unknown
    stack = rest[len(slots):]
    if any(isinstance(v, BaseException) for v in stack):
        raise _Unknown  # suspended inside an exception handler, or an exception on the stack
    return stack


def _live_after(code: types.CodeType) -> dict[int, frozenset[str]] | None:
    """Offset of each instruction -> the locals live after it (read on some path before being written)."""
    if code in _LIVE:
        return _LIVE[code]
    try:
        out = _liveness(code)
    except Exception:  # noqa: BLE001 - bytecode this reader does not know: no state, never a wrong one
        out = None
    _LIVE[code] = out
    return out


def _liveness(code: types.CodeType) -> dict[int, frozenset[str]]:
    instrs = [i for i in dis.get_instructions(code) if i.opname != "CACHE"]
    succ = _successors(code, instrs)
    uses = [frozenset([ins.argval]) if ins.opcode in _LOCAL_OPS and ins.opname != "STORE_FAST" else frozenset()
            for ins in instrs]
    kills = [frozenset([ins.argval]) if ins.opname == "STORE_FAST" else frozenset() for ins in instrs]
    live_in: list[frozenset[str]] = [frozenset()] * len(instrs)
    changed = True
    while changed:  # the least fixpoint of live_in = uses | (live_out - kills), backwards
        changed = False
        for n in range(len(instrs) - 1, -1, -1):
            new = uses[n] | (frozenset().union(*(live_in[m] for m in succ[n])) - kills[n])
            if new != live_in[n]:
                live_in[n] = new
                changed = True
    always = frozenset(code.co_cellvars) | frozenset(code.co_freevars)
    return {ins.offset: frozenset().union(*(live_in[m] for m in succ[n])) | always for n, ins in enumerate(instrs)}


def _successors(code: types.CodeType, instrs: list[dis.Instruction]) -> list[list[int]]:
    """Each instruction's successors (indexes): fall-through, jump target, and every exception handler whose
    range holds it (the end taken inclusive: an extra edge only adds liveness)."""
    at = {ins.offset: n for n, ins in enumerate(instrs)}
    handlers = [(e.start, e.end, at[e.target]) for e in dis._parse_exception_table(code)]  # type: ignore[attr-defined]
    out: list[list[int]] = []
    for n, ins in enumerate(instrs):
        nexts = [n + 1] if ins.opname not in _ENDS and ins.opname not in _UNCONDITIONAL and n + 1 < len(instrs) else []
        if ins.opcode in _JUMPS:
            nexts.append(at[ins.argval])  # KeyError for a target it cannot place: no liveness, no state
        nexts.extend(target for start, end, target in handlers if start <= ins.offset <= end)
        out.append(nexts)
    return out
