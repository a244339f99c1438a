"""What a thread may still touch from the step it waits at: its future per position, not per operation.

The reducer (controlled.reducer) asks whether a transition conflicts with what each other thread may still do.
By default that is the footprint of the thread's whole current operation and every one after it
(Footprints.future): a zapper that has cleared its PTEs, flushed and dropped the PTL still "may" clear PTEs and
take the PTL until its madvise returns, so every write fault or writeback step that touches them is interleaved
with the rest of its tlb_finish_mmu. docs/reduction-next.md measured the gain of knowing better (learned, an upper
bound: 0.36-0.60 of the transitions on the ladder).

This module knows better soundly, where it can. A position is (operation, attempt, results so far) and the
kernel path generator is deterministic given its results (controlled.positions), so the steps the attempt may
still take are the tree of positions reached by feeding each step every result it may return (the op table's
``results``: a test's False and True, the one count flush_tlb_others can send, nothing for an acquire). The rest
of the attempt's footprint is the union of those steps' footprints, each taken over every state:
- a step's per-folio objects are named through the pfns its args hold, which are results the position already
  has (no domain here yields a pfn), and a pfn's file index never changes (folios are only appended);
- put_page's footprint is taken as if it dropped the last reference, which covers the other case;
- a completion (a step after which the call may return, or wait_acks) turns the thread's covered translations
  stale: only the thread itself adds to them, by ptep_get_and_clear_full, which is never in such a tree (a PTE
  has no short list of values). So a thread that covers nothing now covers nothing at any step of the tree, and
  its completions touch nothing; one that covers something keeps its operation's footprint.
The future is then that union and the whole operations after the attempt (Footprints.future of the next one).

Where the tree cannot be listed, the position keeps the operation's footprint (sound, as before): a step whose
results are not listed (a PTE, a pfn, a count of mappings, an address list: most of a fault and of a zap before
its flush), an attempt that may retry (the whole operation again), a tree past CAP positions, a path that fails
on a result it can never really get, or a scenario whose reduction is off. What is left is the tail of most
operations: the zapper from its flush to its up_read, a writeback pass after its last folio_mkclean.
"""

from __future__ import annotations

import itertools
from controlled.memo import MISSING, BoundedMemo
from controlled.op_footprints import add_mode
from controlled.positions import Positions, Resolved
from controlled.reduction import Footprints, FutureAt
from kernel_model.ops import RESULTS, UNREAD_RESULTS, Footprint
from kernel_model.state import State
from kernel_model.steps import BLOCKING_OPS, Step

_TOKENS = itertools.count(1)  # PositionFutures' tokens (Resolved.future)
CAP = 128  # positions a tree may hold before the position keeps its operation's footprint
BOUND = 4096  # futures the memo keeps per generation (controlled.memo); a ladder cell meets a few hundred


class PositionFuture:
    """What a thread may touch from a position on: the rest of its attempt (``rest``) and the operations after
    it (``after``). Answers conflicts() as FutureAt does; ``number`` names it in memo keys."""

    __slots__ = ("rest", "after", "number")

    def __init__(self, rest: Footprint, after: FutureAt, number: int) -> None:
        self.rest = rest
        self.after = after
        self.number = number

    def get(self, obj: tuple, default: str | None = None) -> str | None:
        """The mode the future touches ``obj`` in (two different modes combine to "w"), as a Footprint's get."""
        a, b = self.rest.get(obj), self.after.get(obj)
        mode = a if b is None or a == b else b if a is None else "w"
        return default if mode is None else mode

    def conflicts(self, fp: Footprint) -> bool:
        """conflict(fp, the union of rest and after): an object conflicts with the union exactly when it
        conflicts with either (two different modes combine to "w", and fp's mode differs from one of them)."""
        rest = self.rest
        for obj, ma in fp.items():
            mb = rest.get(obj)
            if mb is not None and (ma == "w" or mb == "w" or ma != mb):
                return True
        return self.after.conflicts(fp)


class PositionFutures:
    """Futures per position of one machine's threads, memoised on (thread, position); a thread that covers a
    translation now is not asked about (its future stays its operation's)."""

    def __init__(self, footprints: Footprints, positions: Positions) -> None:
        self.footprints = footprints
        self.positions = positions
        self._memo = BoundedMemo(BOUND)
        self._numbers = 0
        # Names this object in the futures it caches on positions (Resolved.future): positions are shared by the
        # machines of a scenario (controlled.positions), and a future's number means something only here.
        self._token = next(_TOKENS)

    @property
    def token(self) -> int:
        """What names this object in the futures it caches on positions (Resolved.future: (token, future, its
        number)); the reducer reads those caches itself, as of_state does."""
        return self._token

    def of_state(self, pos: list[Resolved], s: State, covered: frozenset,
                 numbers: list[int]) -> list[PositionFuture | None]:
        """Each thread's future from its position in state ``s``, or None where it stays its operation's;
        ``covered``: the oracle's covered translations, (thread, cpu, page). Appends to ``numbers`` which future
        each thread has, as memo keys hold it: its number, 0 for its operation's. The reducer, which asks this in
        every state, runs it inlined (controlled.reducer's _threads_key), taking a future cached on the position
        (future() puts it there, with its number) without a call or a hash."""
        covering = {c[0] for c in covered} if covered else ()
        out = [self.future(tid, p, tid not in covering, s) for tid, p in enumerate(pos)]
        numbers.extend([0 if future is None else future.number for future in out])
        return out

    def future(self, tid: int, p: Resolved, covers_nothing: bool, s: State) -> PositionFuture | None:
        """Thread ``tid``'s future from position ``p`` in state ``s``; None where it must stay its operation's
        (Footprints.future). ``covers_nothing``: the oracle holds no covered translation of ``tid``. The answer
        does not depend on ``s`` (see the module docstring): it is memoised on the position."""
        if not covers_nothing or p.step is None:
            return None
        key = (tid, p.at)
        hit = self._memo[key]
        if hit is MISSING:
            rest = self._rest_of_attempt(tid, p, [f.index for f in s.folios])
            if rest is None:
                hit = None
            else:
                self._numbers += 1
                hit = PositionFuture(rest, self.footprints.future(tid, p.pc[0] + 1), self._numbers)
            self._memo.put(key, hit)
        p.future = (self._token, hit, 0 if hit is None else hit.number)
        return hit

    def _rest_of_attempt(self, tid: int, start: Resolved, index_of: list[int]) -> Footprint | None:
        """The union of the footprints of every step the attempt at ``start`` may take from there (see the
        module docstring), or None where it cannot be listed."""
        fps = self.footprints
        if fps.opaque:
            return None
        pc = start.pc
        out: Footprint = {("preempt",): "r"} if fps.up else {}
        todo = [start]
        seen = 0
        while todo:
            node = todo.pop()
            if node.crossed and node is not start:  # not node.pc != pc: a merged position may carry the other
                # attempt's retry flag (Positions._representative)
                if node.pc[0] != pc[0] + 1:
                    return None  # a retry: the whole operation again
                continue  # the attempt returned: the next operation is in ``after``
            if node.step is None:
                continue
            seen += 1
            if seen > CAP:
                return None
            step = node.step
            try:
                fp = fps.step_footprint(tid, step, index_of, _LAST_REFERENCE)  # type: ignore[arg-type]
            except (AttributeError, IndexError, KeyError):
                return None  # a footprint that reads more of the state than the stand-in holds
            if fp is None:
                return None
            for obj, mode in fp.items():
                add_mode(out, obj, mode)
            results = self._results(step)
            if results is None:
                return None
            for result in results:
                try:
                    todo.append(self.positions.resolve(tid, node.pc, node.results + (result,)))
                except Exception:  # noqa: BLE001 - a path that fails on a result it never really gets
                    return None
        return out

    def _results(self, step: Step) -> tuple | None:
        """What the path is fed after ``step``, over every result it may return; None when the op table does
        not list them."""
        op = step.op
        if op in UNREAD_RESULTS or op in BLOCKING_OPS:
            return (None,)
        results = RESULTS.get(op)
        return None if results is None else results(self.footprints, step.args)


class _AnyFolio:
    refcount = 1  # put_page then frees: its footprint covers the one that does not


class _Folios:
    def __getitem__(self, pfn: int) -> _AnyFolio:
        return _AnyFolio()


class _LastReference:
    """A stand-in state for footprints taken over every state: every folio holds its last reference. Anything
    else a footprint reads raises AttributeError, and the position keeps its operation's footprint."""

    folios = _Folios()


_LAST_REFERENCE = _LastReference()
