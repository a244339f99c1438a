"""The wild runtime's pieces without Ray: wire format, page-table actor logic, Lamport timeline, jitter."""

from __future__ import annotations

import os
import signal
import time

import pytest

from actors.codec import BUSY, ERROR, OK, QUEUED, STALE, pack, pack_spec, unpack, unpack_spec
from actors.jitter import Jitter
from actors.lamport import Timeline
from actors.page_table import EPOCH, PLAIN, QUEUE, TRY, WALK, PageTableCore
from actors.sigint import sigint_deferred
from actors.topology import Topology
from kernel_model.config import Config
from kernel_model.program import Op, Scenario, Setup, Thread


def madv(**setup: object) -> Scenario:
    setup = {"pages": 1, "warm_tlb": ("writer",), **setup}
    return Scenario("madv_dontneed", "", Setup(**setup),  # type: ignore[arg-type]
                    (Thread("writer", (Op("store", (0,), 2),)), Thread("zapper", (Op("madvise_dontneed", (0,)),)),
                     Thread("writeback", (Op("msync", (0,)),))))


class Caller:
    """A CPU's side of the protocol, by hand: numbered messages with (base, delta)."""

    def __init__(self, core: PageTableCore, cpu: int, trial: int = 0) -> None:
        self.core, self.cpu, self.trial, self.seq = core, cpu, trial, 0

    def send(self, op: str, args: list, mode: str = PLAIN, extra: object = None, base: int = 0, delta: int = 0):
        msg = pack([self.trial, self.cpu, self.seq, base, delta, op, args, mode, extra])
        self.seq += 1
        reply, grants = self.core.handle(msg)
        return unpack(reply), [(c, unpack(g)) for c, g in grants]


def test_scenario_and_config_round_trip_through_msgpack() -> None:
    s = madv(pages=2, ptes_per_table=1)
    s = Scenario(s.name, "d", s.setup, s.threads + (Thread("l", (Op("loop", (), 2, (Op("store", (1,)),)),)),),
                 {"ordering": "eager"}, {"stores": 2}, "src")
    cfg = Config(ordering="eager", arch="s390", mutant="double_ptl")
    assert unpack_spec(pack_spec(s, cfg)) == (s, cfg)


def test_blocking_step_is_queued_as_data_and_granted_in_global_order() -> None:
    core = PageTableCore(pack_spec(madv(), Config(ordering="eager")))
    zapper, writeback = Caller(core, 1), Caller(core, 2)
    reply, _ = zapper.send("spin_lock", [0, 1], QUEUE)
    assert reply[0] == OK and reply[3] == 1  # gseq 1
    reply, _ = writeback.send("spin_lock", [0, 2], QUEUE, base=10)
    assert reply == [QUEUED]  # the actor did not block: it answers at once
    reply, grants = zapper.send("spin_unlock", [0, 1])
    assert reply[0] == OK and reply[3] == 2
    (cpu, grant), = grants
    assert cpu == 2 and grant[:3] == [0, 0, None]  # trial 0, writeback's message 0, result None
    assert grant[4] == 3 and grant[3] > 10  # applied right after the unlock, stamped after the waiter's clock
    assert core.state.ptl[0] == 2


def test_try_mode_answers_busy_without_an_event() -> None:
    core = PageTableCore(pack_spec(madv(), Config(arch="up")))
    a, b = Caller(core, 0), Caller(core, 0)
    a.send("folio_lock", [0, 2], TRY)
    b.seq = a.seq
    reply, _ = b.send("folio_lock", [0, 0], TRY)
    assert reply[0] == BUSY and "held by writeback" in reply[1] and core.gseq == 1


def test_stamp_counts_local_events_behind_pipelined_messages() -> None:
    core = PageTableCore(pack_spec(madv(), Config()))
    c = Caller(core, 0)
    r1, _ = c.send("write_page", [0, 5])  # pipelined: the CPU does not know its stamp yet
    r2, _ = c.send("read_page", [0], delta=3)  # three local events happened in between
    assert r2[2] == r1[2] + 3 + 1


def test_s390_sync_clear_makes_filled_entries_stale() -> None:
    core = PageTableCore(pack_spec(madv(), Config(arch="s390")))
    writer, zapper = Caller(core, 0), Caller(core, 1)
    reply, _ = writer.send("walk", [0, True], WALK)
    pte, epoch = reply[1]
    assert pte[0] == 0 and epoch == 0
    zapper.send("ptep_get_and_clear_full", [0, True])
    reply, _ = writer.send("write_page", [0, 7], EPOCH, [0, epoch])
    assert reply[0] == STALE and core.state.folios[0].data == 1  # the store did not land


def test_a_lock_misuse_is_an_error_reply() -> None:
    core = PageTableCore(pack_spec(madv(), Config()))
    reply, _ = Caller(core, 0).send("spin_unlock", [0, 0])
    assert reply[0] == ERROR and "LockMisuse" in reply[1]


def test_first_message_of_a_new_trial_resets_the_tables() -> None:
    core = PageTableCore(pack_spec(madv(), Config()))
    Caller(core, 0, trial=0).send("write_page", [0, 9])
    assert core.state.folios[0].data == 9
    Caller(core, 0, trial=1).send("read_page", [0])
    assert core.trial == 1 and core.state.folios[0].data == 1


def test_timeline_fills_local_clocks_after_stamped_ones() -> None:
    tl = Timeline(run="r", trial=0, actor="cpu0")
    tl.local(0, 0, "note", "store", "begin", [])
    tl.stamped(0, 0, "step", "user_store", "store_tlb", [0, 1], "stored", 7, 1)
    tl.local(0, 0, "note", "store", "end", [])
    assert [r["lamport"] for r in tl.records] == [1, 7, 8]
    assert tl.pt_clock() == (8, 0)
    assert tl.merged(1, 0, "ipi", "flush_tlb_func", "ipi_flush", [0, 1], 1, received=20) == 21


def test_topology_up_shares_cpu0() -> None:
    assert Topology.of(madv(), Config(arch="up")).cpu_of == (0, 0, 0)
    assert Topology.of(madv(), Config(arch="smp")).threads_on(2) == (2,)


def test_jitter_is_reproducible_from_its_seed() -> None:
    a = [Jitter(1.0, 7, 3, 1, 1).rng.random() for _ in range(3)]
    b = [Jitter(1.0, 7, 3, 1, 1).rng.random() for _ in range(3)]
    assert a == b and Jitter(1.0, 7, 4, 1, 1).rng.random() != a[0]
    assert Jitter(0, 7, 3, 1, 1).pause_before("store_tlb") == 0


def test_a_ctrl_c_inside_a_deferred_section_is_raised_when_it_ends() -> None:
    finished = []
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs between bytecodes here; it must not raise yet
            finished.append("section")
    assert finished == ["section"]
    assert signal.getsignal(signal.SIGINT) is before  # the handler from before the section is back
