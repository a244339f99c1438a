"""The visited-key path (Machine.canonical, controlled.symmetry, controlled.visited) keeps what the searches find.

The path was made cheaper (session 16: the compiled encoder, the two-writer shortcut of the orbit
representative, permutations without generators); a search must still visit exactly the states, run the
transitions and find the counterexamples it did before. These are the counts of `tlbrace explore ... --strategy
dfs` recorded on main before that change (commit 025db45), with exact keys and with --hash-compact: a wrong merge
of two states, or a representative chosen differently, changes them.

A change of the model changes them too, and then they are recorded again from the model's own branch, before
it meets a change of the key path: session 16's write_cache_pages order (PG_dirty tested before PG_writeback)
took ladder's and mkclean_first's from 16,352 states / 23,682 transitions and 8,022 / 11,523 to 16,393 / 23,725
and 7,982 / 11,483, and writable_clean's from 4,770 / 6,765 to 4,752 / 6,747 (the same counterexample): the same
on the branch that changed the model alone (author16) and on the merge. Session 17's wp_page_shared reference
(do_wp_page's folio_get under the PTL and put_page at its end: two more steps in every write-protect fault, which
these scenarios take after msync write-protected the page) took them to 17,523 / 25,431 (ladder, delayed), 8,432 /
12,128 (mkclean_first), 1,813 / 2,068 (ladder, eager) and 4,829 / 6,835 (writable_clean), the same
counterexamples, recorded on author17's branch alone. Session 18's filemap_page_mkwrite recheck (1b39294:
do_page_mkwrite's folio_test_mapping, one more step in every write-protect fault) took them to 18,802 / 27,005
(ladder, delayed), 8,855 / 12,789 (mkclean_first), 1,977 / 2,254 (ladder, eager) and 4,877 / 6,900
(writable_clean), the same counterexamples; recorded on author18b's branch, where the counts are the same before
and after its own changes (mprotect's gather, a freeing fault's footprint: measured both ways). Session 21's
oracle covers only the CPUs that hold a translation when a PTE is cleared (Oracle._cover: a mark of another CPU
was never read) took them to 18,401 / 26,052 (ladder, delayed), 7,389 / 10,371 (mkclean_first), 1,830 / 2,067
(ladder, eager) and 2,652 / 3,361 (writable_clean), the same counterexamples, recorded on dead21's branch, which
changed no key path. Session 22's positions (a retried attempt keyed as the first attempt it repeats:
Positions._representative) took them to 9,181 / 12,987 (ladder, delayed), 5,640 / 7,935 (mkclean_first), 1,502 /
1,722 (ladder, eager) and 2,467 / 3,151 (writable_clean), the same counterexamples (the same schedules' digests),
recorded on dead22's branch, which changed no key path.
"""

from __future__ import annotations

import hashlib

import pytest

from controlled.explorer import explore
from kernel_model.config import Config
from scenarios.loader import load_scenario

# (scenario, params, ordering, arch) -> (states, transitions, schedules, [(invariants, schedule length, digest of
# the schedule's repr)]), the dfs's first counterexample only (explore's default).
RECORDED = [
    (("ladder", {"pages": 1, "writers": 2, "stores": 1, "passes": 1}, "delayed", "smp"), (9181, 12987, 6, [])),
    (("mkclean_first", None, "delayed", "smp"), (5640, 7935, 5, [])),
    (("ladder", None, "eager", "smp"), (1502, 1722, 4, [(["lost_dirty_data"], 28, "104826a172b1")])),
    (("writable_clean", None, "eager", "smp"), (2467, 3151, 5, [(["lost_dirty_data"], 28, "766dd67a9abe")])),
]


@pytest.mark.parametrize("hash_compact", [False, True], ids=["exact", "hash-compact"])
@pytest.mark.parametrize("case, expected", RECORDED, ids=[f"{c[0][0]}-{c[0][2]}" for c in RECORDED])
def test_the_search_finds_what_it_found_before(case, expected, hash_compact):
    name, params, ordering, arch = case
    scenario = load_scenario(name, params)
    cfg = Config(**{**scenario.config, "ordering": ordering, "arch": arch})
    r = explore(scenario, cfg, "dfs", budget=20_000, hash_compact=hash_compact)
    found = [(f.invariants, len(f.schedule), hashlib.sha1(repr(f.schedule).encode()).hexdigest()[:12])
             for f in r.found]
    assert (r.states, r.transitions, r.schedules, found) == expected
