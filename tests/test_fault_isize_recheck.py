"""filemap_fault rechecks i_size under the folio lock (session 22).

mm/filemap.c, from 2.6 to 6.x: after the folio is found, locked and still in the mapping, "We must recheck i_size
under page lock": ``max_idx = DIV_ROUND_UP(i_size_read(inode), PAGE_SIZE); if (unlikely(index >= max_idx)) {
folio_unlock(folio); folio_put(folio); return VM_FAULT_SIGBUS; }``. Before session 22 the model checked i_size only
at the lookup (filemap_get_folio), so a fault that looked the folio up before an ftruncate's i_size_write and locked
it after (truncate_inode_pages had not reached it yet) mapped a page past the file's end, and the store through it
landed; the kernel's fault returns SIGBUS there. The tests of the interleaving fail on that model."""

from __future__ import annotations

import random

import pytest

from controlled.explorer import explore
from controlled.machine import Machine
from kernel_model.config import Config
from kernel_model.program import Op, Scenario, Setup, Thread

from tests.test_paths import solo, steps


def _store_vs_truncate(kind: str = "store") -> Scenario:
    """Page 0 is in the page cache and unmapped; a writer faults it in while a truncator shrinks the file to 0."""
    return Scenario("store_vs_truncate", "", Setup(pages=1, mapped=False),
                    (Thread("writer", (Op(kind, (0,)),)), Thread("truncator", (Op("ftruncate", (0,)),))))


def _mapped_past_eof(events: list) -> bool:
    """Did the writer's fault lock the folio (filemap_fault) after i_size_write(0) and still map it?"""
    shrunk = next((e.seq for e in events if e.op == "i_size_write" and e.args[0] == 0), None)
    if shrunk is None:
        return False
    locked = [e.seq for e in events if e.fn == "filemap_fault" and e.op == "folio_lock" and e.seq > shrunk]
    return any(e.fn == "finish_fault" and e.op == "set_pte_at" and e.seq > locked[0] for e in events) if locked \
        else False


@pytest.mark.parametrize("arch", ["smp", "up"])
@pytest.mark.parametrize("kind", ["store", "load"])
def test_no_fault_maps_a_folio_it_locked_after_the_file_shrank(kind: str, arch: str) -> None:
    sc = _store_vs_truncate(kind)
    cfg = Config(arch=arch)
    rng = random.Random(2202)
    saw_sigbus = False
    for _ in range(300):
        m = Machine(sc, cfg, record=True)
        while True:
            enabled = m.enabled_all()
            if m.run_ends(enabled) or m.execute(rng.choice(enabled)):
                break
        assert not _mapped_past_eof(m.events), [(e.fn, e.op, e.args) for e in m.events if e.kind == "step"]
        saw_sigbus |= any(e.op == "i_size_read" and e.result is False for e in m.events)
    assert saw_sigbus  # the recheck's window is reachable, and it answers SIGBUS


def test_the_recheck_is_left_out_without_ftruncate() -> None:
    """i_size never moves without an ftruncate: no extra step, the library's state spaces stay as they were."""
    s = steps(solo(Op("store", (0,)), setup=Setup(pages=1, mapped=False)))
    assert ("filemap_fault", "folio_lock") in s and ("filemap_fault", "i_size_read") not in s


def test_a_fault_before_the_truncation_still_maps() -> None:
    """With ftruncate in the scenario but the file still whole, the recheck passes and the fault maps."""
    sc = Scenario("fault_then_truncate", "", Setup(pages=1, mapped=False),
                  (Thread("t", (Op("store", (0,)), Op("ftruncate", (0,)))),))
    from controlled.replay import run_schedule

    r = run_schedule(sc, Config(), [], record=True)
    s = [(e.fn, e.op, e.result) for e in r.events if e.kind == "step"]
    assert ("filemap_fault", "i_size_read", True) in s
    assert s.index(("filemap_fault", "i_size_read", True)) < next(
        i for i, x in enumerate(s) if x[:2] == ("finish_fault", "set_pte_at"))
    assert not r.violations


@pytest.mark.parametrize("ordering", ["eager", "delayed"])
def test_store_vs_truncate_verdicts_stay_clean(ordering: str) -> None:
    r = explore(_store_vs_truncate(), Config(ordering=ordering), "dfs", stop_at_first=False, budget=100_000)
    assert r.complete and not r.found


@pytest.mark.parametrize("arch", ["smp", "up"])
@pytest.mark.parametrize("kind", ["store", "load"])
def test_the_reduction_agrees_with_the_full_search(kind: str, arch: str) -> None:
    """The new step's footprint (i_size read) keeps the reduced searches' verdicts and end states those of the
    full search (fuzz.reduction_check, as `tlbrace fuzz --check-reduction` runs it)."""
    from fuzz.reduction_check import AGREE, reduction_mismatch

    assert reduction_mismatch(_store_vs_truncate(kind), Config(arch=arch), 20_000) == AGREE
