"""Canonical machine keys for exhaustive search: one key per class of states with the same futures and verdicts.

Store values are opaque to the model: no path branches on them and the oracle only compares them for equality,
and every later store writes a value no page holds yet. Two states that differ only by a renaming of values
therefore have the same futures and the same verdicts, and exhaustive search may visit one of them. A snapshot
outside writeback is stale (only writeback reads it) and is dropped. Interchangeable writers are then put in the
order that represents their orbit (controlled.symmetry).
"""

from __future__ import annotations

from controlled import symmetry
from controlled.memo import MISSING, BoundedMemo
from kernel_model.program import Scenario
from kernel_model.state import Folio

# Page slots Canonicaliser._renamed holds at most, in its two generations (controlled.memo): 32,768 entries a
# generation for one page, fewer for more (each entry holds its folios and disk renamed, one slot per page: about
# 350 bytes with one page, 150 more per page). Ladder cells meet a few hundred distinct (folios, disk).
_RENAMED_SLOTS = 65_536
_RENAMED_MIN = 64  # entries a generation, whatever the page count
assert Folio._fields[2:7] == ("data", "dirty", "locked", "writeback", "wb_data")  # _rename_values splices these


class Canonicaliser:
    def __init__(self, scenario: Scenario, cpu_of: list[int], ncpus: int, warm_cpus: set[int],
                 symmetric: bool) -> None:
        """``symmetric``: keep one state per orbit of interchangeable writers. An expectation names a thread:
        its writers are no longer interchangeable."""
        self.symmetry = (symmetry.symmetry_of(scenario, cpu_of, ncpus, warm_cpus)
                         if symmetric and not scenario.expect else symmetry.Symmetry([], [], cpu_of))
        # The renaming of store values, by (folios, disk): far fewer combinations than states. Bounded in page
        # slots, not entries: each entry holds tuples of one slot per page, so 1,000 entries of a 10,000-page
        # scenario would alone hold a gigabyte.
        self._renamed = BoundedMemo(max(_RENAMED_MIN, _RENAMED_SLOTS // 2 // max(1, scenario.setup.pages)))

    def canonical(self, key: tuple) -> tuple:
        """``key`` (Machine.key's layout) with the page contents renamed in order of first appearance (data,
        snapshot, disk), and interchangeable writers put in the order that represents their orbit."""
        state_key, positions, oracle_key = key
        folios, page_cache, disk, *rest = state_key
        last = oracle_key[-1]
        memo = (folios, disk, last) if last else (folios, disk)
        renamed = self._renamed[memo]
        if renamed is MISSING:
            renamed = _rename_values(folios, disk, last)
            self._renamed.put(memo, renamed)
        if last:  # the values the oracle remembers for expectations are renamed with the pages'
            *renamed, last = renamed
            oracle_key = oracle_key[:-1] + (last,)
        key = ((*renamed, page_cache, *rest), positions, oracle_key)
        return self.symmetry.representative(key) if self.symmetry else key


def _rename_values(folios: tuple, disk: tuple, last: tuple = ()) -> tuple:
    """Folios and disk with store values renamed in order of first appearance (data, snapshot, disk), and a
    snapshot outside writeback dropped; with ``last`` (the oracle's remembered (file index, value) per
    expectation), that too, renamed after them."""
    names: dict[int, int] = {}
    name = names.setdefault
    # Plain tuples spliced by field position (Folio: ..., data = 2, ..., writeback = 5, wb_data = 6, ...):
    # a canonical key only has to compare and hash, and _replace is the slow part of this hot path.
    folios = tuple(f[:2] + (name(f[2], len(names)),) + f[3:6]
                   + ((name(f[6], len(names)) if f[5] else -1),) + f[7:] for f in folios)
    disk = tuple(name(v, len(names)) for v in disk)
    if not last:
        return folios, disk
    return folios, disk, tuple(None if x is None else (x[0], name(x[1], len(names))) for x in last)
