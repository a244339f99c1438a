"""Scenarios near the loader's size bounds: refused with a clear error past them, built in linear work within
them. Work is counted in unrolled programs (program.flatten calls), never in seconds: per-thread facts used to
walk every thread's program once per thread, so 999 writers of 1,000 stores took minutes to build."""

from __future__ import annotations

from pathlib import Path

import pytest

import kernel_model.boot as boot
import kernel_model.program as program
import scenarios.loader as loader
from kernel_model.config import Config
from kernel_model.program import flatten
from scenarios.loader import ScenarioError, load_scenario

MANY = 200  # threads: enough that per-thread walks of every program (MANY x MANY) would stand out


def counting_flatten(monkeypatch: pytest.MonkeyPatch, *modules: object) -> list[int]:
    """Count program.flatten calls made through each of ``modules`` (each imports it by name)."""
    calls = [0]

    def counted(ops):  # type: ignore[no-untyped-def]
        calls[0] += 1
        return flatten(ops)

    for module in modules:
        monkeypatch.setattr(module, "flatten", counted)
    return calls


def test_contexts_of_many_counted_writers_walk_each_distinct_program_once(monkeypatch: pytest.MonkeyPatch) -> None:
    sc = load_scenario("ladder", {"writers": MANY, "stores": 3})
    calls = counting_flatten(monkeypatch, boot, program)  # boot's reclaim walk, program.remaps' walk
    contexts = boot.thread_contexts(sc, Config())
    assert [k.tid for k in contexts] == list(range(MANY + 2))
    assert [k.cpu for k in contexts] == list(range(MANY + 2))
    # Three distinct programs (the writers share one), each walked once for reclaim and once for remapping.
    assert calls[0] == 2 * 3
    one = boot.thread_context(sc, Config(arch="up"), 5)
    assert (one.tid, one.cpu) == (5, 0)


def test_counter_checks_walk_each_program_a_bounded_number_of_times(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "many_counters.toml"
    path.write_text('[setup]\nwarm_tlb = ["c"]\n[[threads]]\nname = "c"\ncount = %d\n'
                    'program = [{ op = "counter", pages = [0] }]\n'
                    '[[threads]]\nname = "z"\nprogram = [{ op = "madvise_dontneed", pages = [0] }]\n' % MANY)
    calls = counting_flatten(monkeypatch, loader)
    sc = load_scenario(str(path))
    assert len(sc.threads) == MANY + 1
    assert calls[0] <= 2 * (MANY + 1)  # each thread's program: once for the zappers, once for its counters
    # The check still refuses an unbounded counter that only its own thread zaps (after the loop: never).
    path.write_text('[setup]\nwarm_tlb = ["c"]\n[[threads]]\nname = "c"\n'
                    'program = [{ op = "counter", pages = [0] }, { op = "madvise_dontneed", pages = [0] }]\n')
    with pytest.raises(ScenarioError, match="no other thread zaps page 0"):
        load_scenario(str(path))
