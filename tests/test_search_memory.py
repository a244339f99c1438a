"""Bounded resources (issue 12 point 6): the reduction's set-up is linear in the program and the pages, a search
that cannot fit in memory is refused before it allocates, naming the numbers, and a 2,048-page scenario (the loader's limit) runs
in bounded memory or is refused cleanly."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from cli.main import main
from controlled.explorer import explore
from controlled.machine import Machine
from controlled.search_memory import deep_size, estimate
from kernel_model.config import Config
from scenarios.loader import load_scenario

BIG = """
name = "big"
[setup]
pages = 2048
[[threads]]
name = "writer"
program = [{ op = "store", pages = [0] }]
[[threads]]
name = "zapper"
program = [{ op = "madvise_dontneed", pages = [0] }]
[[threads]]
name = "writeback"
program = [{ op = "msync", pages = [0] }]
"""


def peak_of(fn) -> tuple[object, int]:
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def setup_bytes(pages: int) -> int:
    sc = load_scenario("ladder", {"pages": pages, "stores": 1})
    _, peak = peak_of(lambda: Machine(sc, Config(), reduce=True))
    return peak


def test_the_reductions_setup_grows_linearly_with_pages() -> None:
    small, large = setup_bytes(200), setup_bytes(800)
    assert large < 6 * small, (small, large)  # 4x the pages: 16x when it was quadratic


def test_a_search_that_cannot_fit_is_refused_before_it_allocates(capsys: pytest.CaptureFixture[str]) -> None:
    sc = load_scenario("ladder", {"pages": 2000})
    per_state = estimate(sc, Config(), "bfs", 1, False).bytes_per_state
    assert per_state > 2000 * 100  # tuples of a slot per page, raw and canonical
    code, peak = peak_of(lambda: main(["explore", "ladder", "--param", "pages=2000", "--budget", "1000000",
                                       "--memory-limit", "1G"]))
    err = capsys.readouterr().err
    assert code == 2
    assert peak < 50 * per_state  # the estimate only: not a search of a million states
    assert "1,000,000 states" in err and "--budget" in err and "available" in err
    fits = int(err.split("--budget ")[1].split()[0].replace(",", ""))
    assert 0 < fits * per_state <= 1 << 30  # the budget it proposes fits in the limit


def test_the_default_budget_is_lowered_to_what_fits(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # 40M: lowered to about 7,800 states (64M: 23,915, four times the CPU; below about 30M the DFS stack's
    # allowance for 64 pages leaves room for no budget at all, and the search is refused: session 18)
    code = main(["explore", "ladder", "--param", "pages=64", "--strategy", "dfs", "--memory-limit", "40M",
                 "--json", "--out", str(tmp_path)])
    out = capsys.readouterr()
    assert code == 0 and "searching at most" in out.err
    assert '"complete": false' in out.out


def test_the_most_pages_run_in_bounded_memory_or_are_refused(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "big.toml"
    path.write_text(BIG)
    sc = load_scenario(str(path))
    per_state = deep_size(Machine(sc, Config()).key()) * 2
    # Refused cleanly: a budget of 2,000,000 states does not fit in 2 GB.
    code, peak = peak_of(lambda: main(["explore", str(path), "--budget", "2000000", "--memory-limit", "2G"]))
    assert code == 2 and "what fits" in capsys.readouterr().err
    assert peak < 50 * per_state
    # Bounded: a small budget runs, in memory proportional to it.
    result, peak = peak_of(lambda: explore(sc, Config(), "dfs", budget=40))
    assert result.states <= 60
    assert peak < 200 * per_state, (peak, per_state)


def test_the_estimate_covers_what_a_whole_search_holds() -> None:
    """search_memory's constants were measured (bench/memory_per_state.py): the estimate of a dfs with exact keys
    and sleep sets covers the search's real peak, memos, sleep sets and stack included, without pricing it at
    several times what it is."""
    sc = load_scenario("ladder", {"writers": 2, "stores": 1, "passes": 2})
    cfg = Config(ordering="delayed")
    explore(sc, cfg, "dfs", budget=10)  # imports and first allocations: not the search's
    result, peak = peak_of(lambda: explore(sc, cfg, "dfs", budget=1_000_000))
    # 75,253 states since retries are keyed as first attempts (controlled.generator_state; two stores gave 34,646):
    # big enough that the states, not the search's fixed setup, make most of the peak
    assert result.complete and result.states > 50_000
    est = estimate(sc, cfg, "dfs", result.states, False)
    assert peak <= est.bytes <= 3 * peak, (peak, est)
