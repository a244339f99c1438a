"""Pause Python's cycle collector while a big, acyclic working set grows: a log decoded and judged, or the
visited states of an exhaustive search (about 1.8x faster search on the ladder: every full collection would
rescan millions of live state tuples only to find them alive).

Reading a whole log (read_log) creates millions of dicts and lists that all stay alive until the analysis ends.
The cycle collector is triggered by allocations and scans every live container each time its oldest generation
runs, so its cost grows with the log: on a million-event log it took about 5 of the 7 seconds read_log spent.
(Judging as the log is decoded keeps few records alive, and gains less.) The records hold no reference cycles
(msgpack builds plain trees), so pausing it loses nothing; it runs again afterwards and collects whatever
cycles the analysis made.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    nothing_frozen = gc.get_freeze_count() == 0
    gc.disable()
    try:
        yield
    finally:
        if nothing_frozen:
            # Everything allocated during the pause sits in the youngest generation, and the first collection
            # after it would scan all of it (1.4 s for a million-event log's records) only to find them alive.
            # freeze() + unfreeze() moves it into the oldest generation without a scan: a later full collection
            # still finds any cycle there. (Skipped if someone else froze objects: unfreeze would thaw theirs.)
            gc.freeze()
            gc.unfreeze()
        if was_enabled:
            gc.enable()
