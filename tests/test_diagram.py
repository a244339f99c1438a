"""Race diagrams (analysis/diagram.py): every library scenario's eager counterexample fits in 80 columns (or
in --width N), names the kernel functions, and shows the steps of the race in the order they took effect."""

from __future__ import annotations

import pytest

from analysis.diagram import render_diagram
from cli.main import main
from controlled.explorer import explore
from controlled.machine import Machine
from controlled.replay import run_schedule
from kernel_model.config import Config
from kernel_model.kernels import REGISTRY, kernel_config, previous_release
from kernel_model.reclaim import TLB_FLUSH_ALL
from scenarios.loader import list_scenarios, load_scenario, load_scenario_text

# The quickest search that finds each scenario's eager counterexample: bfs (the shortest) where it is small, PCT
# sampling where bfs would take a minute. Scenarios without one are proven clean exhaustively.
SEARCH = {"nadav_poc": ("pct", 2000), "scale_writers": ("pct", 2000), "scale_zap": ("pct", 2000)}
# Anonymous pages, a single zapper, or (fault_vs_evict) a fault racing an eviction: nothing for the old order to
# lose; fault_vs_evict shows the fault_without_page_ref mutant, not the patch's race.
CLEAN_WHEN_EAGER = {"anon_pages", "zap_many_pages", "fault_vs_evict"}
# Races the eager order alone does not open (issue 15): each fix switch's scenario runs on the kernel without that
# fix, and breaks this invariant.
OWN_RACE = {"parallel_dontneed": "stale_tlb_access", "mprotect_reclaim": "stale_tlb_access",
            "mremap_truncate": "freed_while_mapped", "up_fast_mode": "freed_while_mapped"}


def eager_counterexample(name: str):  # type: ignore[no-untyped-def]
    # A fix switch's own scenario (kernel_model.kernels) shows its race on the kernel before that fix, which lacks
    # the later fixes too (mremap_writeback's race, 4.8, also needs eb66ae030829's flush of every moved PTE gone).
    without = tuple(sorted({w for f in REGISTRY if f.scenario == name and f.knob is None
                            for w in kernel_config(previous_release(f.release))["without"]}))
    # ... on the machine the fix names (Fix.config): 29eb77825cc7's fast mode was a uniprocessor's alone.
    machine = {key: value for f in REGISTRY if f.scenario == name for key, value in f.config}
    scenario, cfg = load_scenario(name), Config(ordering="eager", without=without, **machine)
    strategy, budget = SEARCH.get(name, ("bfs", 50_000))
    result = explore(scenario, cfg, strategy, budget=budget, seed=0)
    if not result.found:
        return scenario, cfg, result, None
    return scenario, cfg, result, run_schedule(scenario, cfg, result.found[0].schedule)


@pytest.mark.parametrize("name", [n for n, _, _ in list_scenarios()])
def test_every_eager_counterexample_fits_the_width(name: str) -> None:
    """80 columns (the default) and --width 60, from one search per scenario (a width was a case of its own, and
    each searched again: mremap_truncate's bfs is most of this test's time)."""
    scenario, cfg, result, replay = eager_counterexample(name)
    if name in CLEAN_WHEN_EAGER:
        assert result.complete and not result.found
        return
    assert replay is not None and replay.violations, f"{name}: no eager counterexample found"
    for width in (80, 60):
        text = render_diagram(scenario, Machine(scenario, cfg).cpu_of, replay.events, replay.violations, width,
                              title=f"{name}: {replay.violations[0].invariant}")
        lines = text.splitlines()
        assert max(len(line) for line in lines) <= width, (width, text)
        assert all(line.isascii() for line in lines)
        assert replay.violations[0].invariant in text and "ptep_get_and_clear()" in text and "CPU " in lines[2]
        if name not in OWN_RACE:  # the seed's races lose data; the others break the invariant their race breaks
            assert "lost_dirty_data" in text
        else:
            assert OWN_RACE[name] in text


def test_the_patchs_race_reads_like_a_commit_message() -> None:
    scenario, cfg, _, replay = eager_counterexample("madv_dontneed")
    text = render_diagram(scenario, Machine(scenario, cfg).cpu_of, replay.events, replay.violations)
    lines = text.splitlines()
    header = lines[0].split()
    assert header[:2] == ["CPU", "0"] and "(zapper)" in lines[0] and "(writeback)" in lines[0]

    def at(words: str) -> tuple[int, int]:
        """(row, column) of the first line holding these words."""
        row = next(i for i, line in enumerate(lines) if words in line)
        return row, lines[row].index(words)

    order = ["madvise(MADV_DONTNEED)", "ptep_get_and_clear()", "page_remove_rmap()", "folio_mkclean()",
             "!folio_mapped()", "PG_dirty 1 -> 0", "IO submitted", "via STALE TLB", "too late"]
    rows = [at(w)[0] for w in order]
    assert rows == sorted(rows), list(zip(order, rows))  # the race, in the order it happened
    zap_col, wb_col, writer_col = at("zap_pte_range()")[1], at("folio_mkclean()")[1], at("user store")[1]
    assert writer_col == 0 < zap_col < wb_col  # each CPU in its own column
    assert at("page_remove_rmap()")[1] == at("spin_lock(PTL 0)")[1] == zap_col + 4  # "==> " steps


def test_the_patched_order_removes_the_rmap_after_the_flush() -> None:
    """No violation to draw with the patch, but a diagram of any run shows the delayed removal after the flush."""
    scenario, cfg = load_scenario("madv_dontneed"), Config(ordering="delayed")
    replay = run_schedule(scenario, cfg, [])  # the lowest enabled transition first, to the end
    text = render_diagram(scenario, Machine(scenario, cfg).cpu_of, replay.events, replay.violations)
    lines = text.splitlines()
    flush = next(i for i, line in enumerate(lines) if "flush_tlb_others()" in line)
    rmap = next(i for i, line in enumerate(lines) if "page_remove_rmap()" in line)
    assert flush < rmap and "delay_rmap" in text and not replay.violations


def test_format_diagram_on_the_command_line(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    assert main(["explore", "madv_dontneed", "--ordering", "eager", "--format", "diagram",
                 "--out", str(tmp_path)]) == 1
    explored = capsys.readouterr().out
    schedule = next(tmp_path.glob("*.schedule"))
    assert main(["replay", str(schedule), "--format", "diagram", "--width", "72"]) == 1
    replayed = capsys.readouterr().out
    assert main(["analyze", str(next(tmp_path.glob("*.msgpack"))), "--format", "diagram"]) == 1
    analyzed = capsys.readouterr().out
    for text, width in ((explored, 80), (replayed, 72), (analyzed, 80)):
        diagram = text[:text.index("lost_dirty_data: file page")]
        assert "via STALE TLB" in diagram and max(map(len, diagram.splitlines())) <= width
    with pytest.raises(SystemExit) as refused:  # argparse refuses it, before any output
        main(["replay", str(schedule), "--width", "12"])
    assert refused.value.code == 2


# fuzz seed 2180, scenario 11 (SMP 6.18, session 21): reclaim's activate window (docs/reclaim.md), whose run holds
# try_to_unmap_flush's TLB_FLUSH_ALL IPIs before the lost store.
ACTIVATE_WINDOW = """
name = "fuzz-2180-11"
[setup]
pages = 1
mapped = true
warm_tlb = ["t1", "t2"]
[[threads]]
name = "t0"
program = [{ op = "mmap", pages = [0], offset = 0 }]
[[threads]]
name = "t1"
program = [{ op = "reclaim", pages = [0] }]
[[threads]]
name = "t2"
program = [{ op = "msync", pages = [0] }, { op = "store", pages = [0] }]
"""


def test_a_full_flush_in_the_run_does_not_stall_the_diagram() -> None:
    """`replay --format diagram` of this fuzz counterexample ran for minutes: the stale-entry tracker walked every
    address of each flush's range, and reclaim's full flushes end at TLB_FLUSH_ALL (2**30). It now looks only at
    the addresses whose PTE was cleared; the store through kswapd's deferred entry is still drawn stale, and the
    IPI that reaches its CPU after it too late."""
    scenario = load_scenario_text(ACTIVATE_WINDOW, name="fuzz-2180-11")
    cfg = Config(**kernel_config("6.18"))
    result = explore(scenario, cfg, "dfs", budget=10_000)
    replay = run_schedule(scenario, cfg, result.found[0].schedule)
    assert any(e.kind == "ipi" and e.args[1] >= TLB_FLUSH_ALL for e in replay.events)
    text = render_diagram(scenario, Machine(scenario, cfg).cpu_of, replay.events, replay.violations)
    assert "[via STALE TLB entry]" in text and "too late" in text
