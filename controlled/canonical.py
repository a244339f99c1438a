"""Canonical machine keys for exhaustive search: one key per class of states with the same futures and verdicts.

Store values are opaque to the model: no path branches on them, and the oracle compares them for equality only,
and only within one file page: a page-cache folio's contents against its disk block
(kernel_model.oracle: lost_dirty_data), against its own IO snapshot (writeback in flight with these very
contents), and a file page's final contents against the value an expectation remembers. So the values are
renamed page by page, in order of first appearance within each file page (its folios' data and snapshots, its
disk block, the remembered values), and a value nothing can compare any more is dropped: an anonymous folio's
contents (no disk block, no page cache), a freed folio's, a snapshot outside writeback (only writeback reads it).

Why per page, not one naming for all: a counter's locked increment writes the word's contents + 1, which may
equal a value another page happens to hold. Named together, two states that differ only there would be told
apart, and which of them a search meets first would decide the end states it counts (fuzz seed 11, scenario
182, kernel 3.14: a counter on the old anonymous page and one on the page mmap(MAP_FIXED) put there counted 3
end states with `--merge-chains`, 2 without). Within one page an increment cannot meet an older value: the
page's disk block and snapshot hold its own earlier contents, which a counter only ever passes from below after
a fresh store (values (tid + 1) * 1000 + pc + 1) set it back, a thousand increments later: further than any
search runs.

Interchangeable writers are then put in the order that represents their orbit (controlled.symmetry).

Dead state: a key part that nothing reads again only splits states. What the key holds was surveyed for it
(session 21), each part against its readers:
- a freed folio's data: dropped here (above). Its other fields stay: write_cache_pages locks and rechecks
  (folio_test_mapping: in_page_cache) a folio that ftruncate freed, and a path holding a stale pfn (a mutant's)
  reads its flags; no library scenario has two states that differ only there (measured: nadav_poc,
  mremap_truncate, parallel_dontneed, anon_pages, fault_vs_evict);
- an IO snapshot outside writeback: dropped here; only end_page_writeback reads it;
- the oracle's marks of a CPU that holds no translation for the address: never recorded (Oracle._cover), so
  every mark of covered, stale and readonly names an entry the access check can still meet;
- Oracle.delayed and Oracle.last: read by the PTL release, tlb_flush_rmaps' walk and the quiescent expectations;
- a finished thread's position holds no results (Positions.resolve), and a retried attempt starts from none;
- (session 22) a position's results are the history its generator is rebuilt from, and part of it is dead. A
  search's machine keys a retried attempt as the first attempt it repeats (its retry flag is read only before
  the first step): a writer's store retried after a TLB miss and walk is its first store again, and about half
  the ladder's states went (Positions._representative; the state is read from the generator's frames,
  controlled.generator_state, on the paths' plain Python twin, controlled.source_paths). Histories that differ
  in results the path never reads again (a writeback pass at its second page) can be merged too, by the first
  history met in their class (generator_state.DEAD_RESULTS, off: the choice depends on the search order, so
  parallel workers would key one state twice; about 8% more on two-page cells);
- a CPU whose threads have all finished: its TLB entries still matter (freed_while_mapped reads every CPU's
  entries for a freed frame, a flush IPI drops them, a PTE clear covers them), but not their writable and dirty
  bits, nor the oracle's stale and readonly marks on it (only that CPU's accesses read them). Measured (session
  22): no ladder state differs there (cells 2, 1, 1, 1 delayed and 1, 2, 1, 2 eager: 0 keys changed), since a
  finished writer's entry is always writable and dirty (its last store went through it): not built;
- a PTE's young bit: pte_same compares whole PTEs and page_mkclean_one copies it.
"""

from __future__ import annotations

from typing import Callable

from controlled import symmetry
from controlled.memo import MISSING, BoundedMemo
from kernel_model.program import Scenario
from kernel_model.state import Folio

# Page slots Canonicaliser._renamed holds at most, in its two generations (controlled.memo): 32,768 entries a
# generation for one page, fewer for more (each entry holds its folios and disk renamed, one slot per page: about
# 350 bytes with one page, 150 more per page). Ladder cells meet a few hundred distinct (folios, disk).
_RENAMED_SLOTS = 65_536
_RENAMED_MIN = 64  # entries a generation, whatever the page count
assert Folio._fields[:7] == ("index", "anon", "data", "dirty", "locked", "writeback", "wb_data")  # spliced below
assert Folio._fields[9] == "freed"


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
        self._representative = self.symmetry.representative if self.symmetry else None  # None: no symmetry
        # The last (folios, disk, remembered values) renamed, by identity: Machine.key hands out the same part
        # objects while they do not change (State.key's ``like``), so most keys skip hashing them for the memo.
        self._last: tuple = (None, None, None, None)

    def canonical(self, key: tuple) -> tuple:
        """``key`` (Machine.key's layout) with the page contents renamed in order of first appearance (data,
        snapshot, disk), and interchangeable writers put in the order that represents their orbit."""
        key = self._renamed_key(key)
        return key if self._representative is None else self._representative(key)

    def encoder(self, encode: Callable[[tuple], bytes], encode_permuted: Callable[[tuple, object], bytes],
                plan: Callable[[list, symmetry.Permutation], object]) -> Callable[[tuple], bytes]:
        """``encode(canonical(key))`` for a machine key, with the representative's permutation applied by
        ``encode_permuted(key, plan(fields, p))`` instead of building the permuted key (the compiled encoder,
        controlled/_compact_keys.pyx: the same bytes, without the permuted key's tuples)."""
        renamed, choice = self._renamed_key, self.symmetry.choice
        if not self.symmetry:
            return lambda key: encode(renamed(key))
        plans: dict[int, object] = {}  # id of a permutation (Symmetry holds them) -> its plan

        def encoded(key: tuple) -> bytes:
            best, pending = choice(renamed(key))
            if pending is None:
                return encode(best)
            made = plans.get(id(pending))
            if made is None:
                made = plans[id(pending)] = plan(symmetry.plan_fields(pending, (len(best[0]), len(best[1]),
                                                                                len(best[2]))), pending)
            return encode_permuted(best, made)

        return encoded

    def _renamed_key(self, key: tuple) -> tuple:
        """``key`` with the page contents renamed, threads where they are."""
        state_key, positions, oracle_key = key
        folios, disk, last = state_key[0], state_key[2], oracle_key[-1]
        seen = self._last
        if folios is seen[0] and disk is seen[1] and last is seen[2]:
            renamed = seen[3]
        else:
            memo = (folios, disk, last) if last else (folios, disk)
            renamed = self._renamed[memo]
            if renamed is MISSING:
                renamed = _rename_values(folios, disk, last)
                self._renamed.put(memo, renamed)
            self._last = (folios, disk, last, renamed)
        if last:  # the values the oracle remembers for expectations are renamed with the pages'
            oracle_key = oracle_key[:-1] + (renamed[2],)
        # Renamed folios, renamed disk, then the page cache (disk and page cache swap places: the order is the
        # visited set's, kept as it was). The renamed folios and disk are the memo's own tuples, the same objects
        # for the same pages: the exact keys' encoder numbers them without hashing them again
        # (controlled/_compact_keys.pyx).
        return ((renamed[0], renamed[1], state_key[1]) + state_key[3:], positions, oracle_key)


def _rename_values(folios: tuple, disk: tuple, last: tuple = ()) -> tuple:
    """Folios and disk with store values renamed page by page in order of first appearance (each file page's
    folios' data and snapshots in pfn order, then its disk block), the values nothing compares dropped (0: an
    anonymous or freed folio's data; -1: a snapshot outside writeback); with ``last`` (the oracle's remembered
    (file index, value) per expectation), that too, in its page's names (an anonymous page's value dropped)."""
    pages: dict[int, dict[int, int]] = {}  # file index -> its values' names

    def name(index: int, value: int) -> int:
        names = pages.get(index)
        if names is None:
            names = pages[index] = {}
        return names.setdefault(value, len(names))

    # Plain tuples spliced by field position (Folio: index = 0, anon = 1, data = 2, ..., writeback = 5,
    # wb_data = 6, ..., freed = 9): a canonical key only has to compare and hash, and _replace is the slow part
    # of this hot path.
    out = []
    for f in folios:
        if f[1] or f[9]:  # anonymous or freed: its contents go nowhere a check looks
            out.append(f[:2] + (0,) + f[3:6] + (-1,) + f[7:])
        else:
            out.append(f[:2] + (name(f[0], f[2]),) + f[3:6] + ((name(f[0], f[6]) if f[5] else -1),) + f[7:])
    renamed_disk = tuple(name(i, v) for i, v in enumerate(disk))
    if not last:
        return tuple(out), renamed_disk
    return tuple(out), renamed_disk, tuple(None if x is None else (x[0], name(x[0], x[1]) if x[0] >= 0 else 0)
                                           for x in last)
