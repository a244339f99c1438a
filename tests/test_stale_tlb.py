"""stale_tlb_access, and the flush IPI handler in two steps (flush_tlb_func's invalidation, then the csd ack).

Unit tests feed the oracle events by hand; the others explore library scenarios: the ack_before_invalidate
mutant is caught, the kernel's order never trips the invariant (eager included: its stale store lands before
the flush completes), and the reduction keeps every verdict with the split handler.
"""

from __future__ import annotations

import pytest

from controlled.explorer import explore
from controlled.machine import Machine
from controlled.replay import run_schedule
from kernel_model.config import Config
from kernel_model.events import Event
from kernel_model.oracle import Oracle
from kernel_model.state import Pte, State
from scenarios.loader import library_names, load_scenario
from tests.kernel_orderings import kernel_orderings

ZAPPER, WRITER = 1, 0  # thread = CPU in these unit tests


def machine_state(ncpus: int = 2) -> State:
    return State.initial(1, 512, ncpus, ncpus, anon=False, mapped=True, warm_cpus=(WRITER,))


class Feed:
    """An oracle and the events it is shown, numbered in order."""

    def __init__(self, s: State) -> None:
        self.s = s
        self.oracle = Oracle()
        self.seq = 0

    def __call__(self, tid: int, cpu: int, kind: str, op: str, args: tuple, result: object = None) -> list[str]:
        ev = Event(self.seq, tid, cpu, kind, "test", op, args, result)
        self.seq += 1
        return [v.invariant for v in self.oracle.observe(self.s, ev)]

    def clear(self, sync: bool = False) -> None:
        assert self(ZAPPER, ZAPPER, "step", "ptep_get_and_clear_full", (0, sync), Pte(0, True, True, True)) == []

    def store(self) -> list[str]:
        return self(WRITER, WRITER, "step", "store_tlb", (0, 7), "stored")


def test_a_store_through_a_translation_after_its_shootdown_completed_is_stale():
    feed = Feed(machine_state())
    feed.clear()
    assert feed(ZAPPER, ZAPPER, "step", "flush_tlb_local", (0, 1), 0) == []
    assert feed(ZAPPER, WRITER, "ipi", "ipi_ack", (0, 1)) == []  # acked, not invalidated
    assert feed.store() == []  # the shootdown has not completed: the eager kernel's window, not this invariant
    assert feed(ZAPPER, ZAPPER, "step", "wait_acks", (0, 1)) == []
    assert feed.store() == ["stale_tlb_access"]
    assert feed(WRITER, WRITER, "step", "load_tlb", (0,), 7) == ["stale_tlb_access"]
    assert feed(ZAPPER, WRITER, "ipi", "ipi_flush", (0, 1), 1) == []  # the late invalidation
    assert feed.store() == []


def test_the_kernel_order_and_a_refill_are_not_stale():
    feed = Feed(machine_state())
    feed.clear()
    assert feed(ZAPPER, WRITER, "ipi", "ipi_flush", (0, 1), 1) == []
    assert feed(ZAPPER, WRITER, "ipi", "ipi_ack", (0, 1)) == []
    assert feed(ZAPPER, ZAPPER, "step", "flush_tlb_local", (0, 1), 0) == []
    assert feed(ZAPPER, ZAPPER, "step", "wait_acks", (0, 1)) == []
    assert feed.oracle.covered == feed.oracle.stale == frozenset()
    # A translation refilled from a fresh PTE before the shootdown completed is not the one it covered.
    feed.clear()
    assert feed(WRITER, WRITER, "step", "walk_fill", (0, True), True) == []
    assert feed(ZAPPER, ZAPPER, "step", "flush_tlb_local", (0, 1), 0) == []
    assert feed(ZAPPER, ZAPPER, "step", "wait_acks", (0, 1)) == []
    assert feed.store() == []


def test_a_call_that_returns_without_flushing_leaves_its_translations_stale():
    feed = Feed(machine_state())
    feed.clear()
    assert feed(ZAPPER, ZAPPER, "note", "end", (None,)) == []
    assert feed.store() == ["stale_tlb_access"]
    # A fault drops the entry: the retried access goes through a fresh translation.
    assert feed(WRITER, WRITER, "step", "store_tlb", (0, 8), "fault") == []
    # The zapper's own CPU never cached the translation: the clear covered nothing there (Oracle._cover).
    assert feed.oracle.stale == frozenset()


def test_a_clear_covers_only_the_cpus_that_hold_a_translation():
    """A CPU without an entry for the address gets a fresh one from its next walk: the clear has nothing of it to
    cover, so whether it dropped its entry before or after the clear leaves the same ghost state."""
    feed = Feed(machine_state(ncpus=3))
    feed.clear()
    assert feed.oracle.covered == {(ZAPPER, WRITER, 0)}
    after = Feed(machine_state(ncpus=3))
    after.s.tlbs[WRITER].clear()  # the writer's CPU flushed before the clear
    after.clear()
    assert after.oracle.covered == frozenset()
    assert after(ZAPPER, ZAPPER, "note", "end", (None,)) == [] and after.oracle.stale == frozenset()


def test_an_out_of_range_flush_completes_nothing_and_s390s_ipte_covers_nothing():
    feed = Feed(machine_state())
    feed.clear()
    assert feed(ZAPPER, ZAPPER, "step", "wait_acks", (1, 2)) == []  # a flush of another page
    assert feed.store() == []
    feed = Feed(machine_state())
    feed.clear(sync=True)  # IPTE: every TLB loses the translation in the same step
    assert feed.oracle.covered == frozenset()


def test_the_machine_builds_tlb_events_only_while_the_oracle_needs_them():
    s = machine_state()
    feed = Feed(s)
    assert not feed.oracle.wants(s, WRITER, "store_tlb", (0, 7))
    feed.clear()
    assert feed.oracle.wants(s, WRITER, "store_tlb", (0, 7))
    s.folios[0] = s.folios[0]._replace(freed=True)
    assert Oracle().wants(s, WRITER, "store_tlb", (0, 7))


def test_a_store_into_a_freed_frame_is_freed_while_mapped():
    s = machine_state()
    s.folios[0] = s.folios[0]._replace(freed=True)
    feed = Feed(s)
    assert feed.store() == ["freed_while_mapped"]
    assert feed(WRITER, WRITER, "step", "load_tlb", (0,), 7) == ["freed_while_mapped"]


# --- the controlled machine ----------------------------------------------------------------------------------
def cfg_for(name: str, **over: object) -> tuple:
    sc = load_scenario(name)
    return sc, Config.from_dict({**sc.config, **over})


def test_ack_before_invalidate_lets_the_writer_store_through_its_translation():
    sc, cfg = cfg_for("madv_dontneed", mutant="ack_before_invalidate")
    r = explore(sc, cfg)
    assert r.found and r.found[0].invariants == ["stale_tlb_access"]
    run = run_schedule(sc, cfg, r.found[0].schedule, complete=False)
    ops = [e.op for e in run.events if e.kind in ("ipi", "step")]
    writer = sc.thread_index("writer")
    ack = next(i for i, e in enumerate(run.events) if e.op == "ipi_ack" and e.cpu == writer)
    wait = next(i for i, e in enumerate(run.events) if e.op == "wait_acks")
    assert ack < wait < len(run.events) - 1 and ops[-1] == "store_tlb"
    assert not any(e.op == "ipi_flush" and e.cpu == writer for e in run.events)  # still not invalidated


def test_each_ipi_is_two_transitions_in_the_kernels_order():
    sc, cfg = cfg_for("madv_dontneed")
    m = Machine(sc, cfg, record=True)
    while not m.quiescent():
        m.execute(min(m.enabled_all(), key=lambda tr: (m.is_counter_increment(tr), tr)))
    by_cpu: dict[int, list[str]] = {}
    for e in m.events:
        if e.kind == "ipi":
            by_cpu.setdefault(e.cpu, []).append(e.op)
    assert by_cpu and all(ops == ["ipi_flush", "ipi_ack"] * (len(ops) // 2) for ops in by_cpu.values())


SMALL = [n for n in library_names() if n not in ("nadav_poc", "scale_writers", "scale_zap")]
# Operations that never set a PTE's dirty bit: a load's fault maps the page clean, mremap moves a PTE as it is,
# ftruncate only clears PTEs.
CLEAN_OPS = frozenset({"load", "mremap", "ftruncate"})


def orderings(name: str, arch: str) -> tuple[str, ...]:
    """The orderings that make different kernels of ``name`` on ``arch``. The ordering acts only where a zap on
    SMP meets a dirty file PTE (tests/kernel_orderings.py): off SMP, and in a scenario whose
    pages start clean and whose threads only load, move and truncate, the eager and the delayed kernel are one
    state graph (mremap_truncate: 107,793 states and 221,013 transitions on SMP either way, session 18),
    searched once here, not twice."""
    sc = load_scenario(name)
    ops = [op for t in sc.threads for top in t.ops for op in (top, *top.body)]
    if sc.setup.dirty or any(op.kind not in CLEAN_OPS for op in ops):
        return kernel_orderings(arch)
    return ("eager",)


NO_STALE_CELLS = [(name, ordering, arch) for arch in ("smp", "up", "s390") for ordering in ("eager", "delayed")
                  for name in SMALL if ordering in orderings(name, arch)]


@pytest.mark.parametrize("name, ordering, arch", NO_STALE_CELLS, ids=[f"{a}-{o}-{n}" for n, o, a in NO_STALE_CELLS])
def test_no_kernel_order_ever_accesses_a_stale_translation(name, ordering, arch):
    """The whole state space, past the first violation: eager may lose data, but its stale store lands before
    the flush that covers it completes, so it is never a stale_tlb_access. dfs with sleep sets, which keep every
    verdict (tests/test_sleep_sets.py): a quarter less CPU than bfs on mremap_truncate, the largest here."""
    sc, cfg = cfg_for(name, ordering=ordering, arch=arch)
    r = explore(sc, cfg, "dfs", stop_at_first=False)
    assert r.complete
    assert "stale_tlb_access" not in {i for f in r.found for i in f.invariants}


# mkclean_first with one msync pass, not the library's two: its folio_mkclean still write-protects the PTE with
# ptep_clear_flush (a second flusher whose IPIs take the split handler, besides the zap's), the writer's store
# still reaches do_wp_page when it falls between that write-protect and the zap, and the mutant is still caught
# (stale_tlb_access, 5 end states either way). The second pass only writes back what the wp fault re-dirtied: it
# multiplied the state space by 5.7 (691,557 states in the full search against 121,297; 145 s of CPU against 23).
@pytest.mark.parametrize("name, over, params", [
    ("madv_dontneed", {"mutant": "ack_before_invalidate"}, None),
    ("munmap", {"mutant": "ack_before_invalidate"}, None),
    ("mkclean_first", {"mutant": "ack_before_invalidate"}, {"passes": 1}),
    ("madv_dontneed", {"mutant": "ack_before_invalidate", "arch": "s390"}, None)])
@pytest.mark.slow  # each a full and a reduced search to the end: about 20 s of CPU for mkclean_first
def test_the_reduction_keeps_every_verdict_of_the_split_handler(name, over, params):
    sc = load_scenario(name, params)
    cfg = Config.from_dict({**sc.config, **over})
    full = explore(sc, cfg, "bfs", reduce=False, stop_at_first=False)
    reduced = explore(sc, cfg, "bfs", reduce=True, stop_at_first=False)
    assert full.complete and reduced.complete
    assert {i for f in full.found for i in f.invariants} == {i for f in reduced.found for i in f.invariants}
    assert reduced.schedules == full.schedules
