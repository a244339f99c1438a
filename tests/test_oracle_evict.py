"""The oracle's judgement of an evicted folio (invalidate_mapping_pages dropped it from the page cache): its
contents may differ from the disk only where they are no file data any more, past i_size (ftruncate discards
them), as oracle._in_file says for every other check."""

from __future__ import annotations

import pytest

from kernel_model.events import Event
from kernel_model.oracle import Oracle
from kernel_model.state import State


def _evicted(i_size: int) -> list[str]:
    """Violations of evicting file page 1, which holds data the disk does not, with the file ``i_size`` pages."""
    s = State.initial(2, 512, 1, 1, anon=False, mapped=False, warm_cpus=(), dirty=False, write_notify=False)
    s.folios[1] = s.folios[1]._replace(data=7, in_page_cache=False, freed=True, refcount=0)
    s.i_size = i_size
    ev = Event(0, 0, 0, "step", "invalidate_mapping_pages", "evict_folio", (1,), 1)
    return [v.invariant for v in Oracle(()).observe(s, ev)]


@pytest.mark.parametrize("i_size, lost", [(2, True), (1, False), (0, False)])
def test_an_evicted_page_loses_data_only_below_i_size(i_size, lost):
    assert ("lost_dirty_data" in _evicted(i_size)) is lost
