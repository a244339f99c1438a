"""Scaling experiments: a grid of wild campaigns (CPUs x PTE-table shards x ordering x delayed_batches) and the
metrics of each cell, computed from the trials' own event records.

How the axes map onto a scenario (``knobs_of``):

- **cpus** is the number of simulated CPUs, i.e. of CPU actors, i.e. of scenario threads (one CPU each under
  arch=smp). A scenario may have one thread group whose ``count`` is a param (scale_writers: ``count =
  "writers"``); that param is set to ``cpus - (the other threads)``, so scale_writers runs ``writers = cpus - 2``
  (plus the zapper and the writeback CPU) and needs ``cpus >= 3``. A scenario without such a group runs only at
  its own thread count (zap_many_pages: 1).
- **shards** is the number of PTE tables, i.e. of split PTLs: the scenario's ``setup.ptes_per_table`` param is
  set to ``pages / shards`` (pages must divide evenly). A scenario whose ptes_per_table is not a param runs only
  at its own table count.
- **eager** never delays an rmap removal, so ``delayed_batches`` changes nothing there: a grid has one eager cell
  per (cpus, shards), shown with delayed_batches ``-``, and one delayed cell per delayed_batches value.

Each cell is one ``run_campaign``; the metrics come from every trial's event records (see ``zap_counts`` and
``CellStats.row``), which the campaign hands to its ``on_trial`` hook before it drops a passing trial's records.
"""

from __future__ import annotations

import math
import os
import time
import tomllib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Final, Iterable

from actors.campaign import CampaignOptions, CampaignResult, run_campaign
from actors.trial import TrialResult
from kernel_model.config import Config
from kernel_model.program import Scenario
from logs.output_files import replaced_whole

NOT_DELAYED: Final = "-"  # delayed_batches of an eager cell (it never delays an rmap removal)

# The CSV's columns, in order (one row per cell).
CSV_COLUMNS: Final = (
    "cpus", "shards", "ordering", "delayed_batches", "trials", "violations", "hit_rate", "hit_rate_lo",
    "hit_rate_hi", "trials_per_s", "steps_per_s", "ipis_per_zap", "tlb_flushes_per_zapped_page",
    "forced_flushes_per_zap", "ptl_wait_p50_us", "ptl_wait_p99_us", "flush_rtt_p50_us", "flush_rtt_p99_us",
    "hung", "crashed", "diverged", "zaps", "pages_zapped", "steps", "seconds", "nodes",
)


class GridError(ValueError):
    """An axis value the scenario cannot take; the message says why, in one line."""


# --- the axes ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Cell:
    cpus: int
    shards: int
    ordering: str
    delayed_batches: str  # NOT_DELAYED for eager

    @property
    def label(self) -> str:
        batches = "" if self.delayed_batches == NOT_DELAYED else f"/{self.delayed_batches}"
        return f"{self.ordering}{batches}"


@dataclass(frozen=True, slots=True)
class Knobs:
    """Which params of a scenario the grid's axes set."""

    threads: int  # at the scenario's own params
    cpu_param: str | None  # the param counting one thread group, if any
    fixed_threads: int  # threads that are not in that group
    shard_param: str | None  # the param setup.ptes_per_table names, if any
    pages: int
    tables: int  # at the scenario's own params

    def params_for(self, cpus: int, shards: int) -> dict[str, int]:
        """The params that give ``cpus`` CPU actors and ``shards`` PTE tables (GridError if none can)."""
        params: dict[str, int] = {}
        if self.cpu_param is None:
            if cpus != self.threads:
                raise GridError(f"cpus {cpus}: this scenario has a fixed {self.threads} thread(s) (no thread count "
                                f"param), so only --cpus {self.threads}")
        else:
            group = cpus - self.fixed_threads
            if group < 1:
                raise GridError(f"cpus {cpus}: expected at least {self.fixed_threads + 1} ({self.fixed_threads} "
                                f"fixed thread(s) and at least one of {self.cpu_param})")
            params[self.cpu_param] = group
        if self.shard_param is None:
            if shards != self.tables:
                raise GridError(f"shards {shards}: setup.ptes_per_table is not a param of this scenario, so only "
                                f"--shards {self.tables}")
        elif shards < 1 or self.pages % shards:
            raise GridError(f"shards {shards}: expected a divisor of the scenario's {self.pages} pages")
        else:
            params[self.shard_param] = self.pages // shards
        return params


def knobs_of(scenario: Scenario) -> Knobs:
    """Read the scenario's TOML for the thread count param and the ptes_per_table param."""
    doc = tomllib.loads(scenario.source) if scenario.source else {}
    counted = [t["count"] for t in doc.get("threads", []) if isinstance(t.get("count"), str)]
    if len(counted) > 1:
        raise GridError(f"{scenario.name}: several thread groups have a count param ({', '.join(counted)}); "
                        "tlbrace scale needs at most one")
    cpu_param = counted[0] if counted else None
    threads = len(scenario.threads)
    fixed = threads - scenario.params[cpu_param] if cpu_param else threads
    ppt = doc.get("setup", {}).get("ptes_per_table")
    setup = scenario.setup
    return Knobs(threads, cpu_param, fixed, ppt if isinstance(ppt, str) else None, setup.pages,
                 -(-setup.pages // setup.ptes_per_table))


def plan_cells(cpus: Iterable[int], shards: Iterable[int], orderings: Iterable[str],
               delayed_batches: Iterable[str]) -> list[Cell]:
    """Every cell, configuration-major (each configuration's cells by shards, then CPUs ascending)."""
    configs: list[tuple[str, str]] = []
    for ordering in orderings:
        for batches in ([NOT_DELAYED] if ordering == "eager" else delayed_batches):
            if (ordering, batches) not in configs:
                configs.append((ordering, batches))
    return [Cell(c, s, o, b) for o, b in configs for s in sorted(set(shards)) for c in sorted(set(cpus))]


# --- metrics from one trial's event records --------------------------------------------------------------------
@dataclass(slots=True)
class ZapCounts:
    """What one trial's records say about its zaps, flushes and waits."""

    # mmu_gathers started (tlb_gather_mmu "init" notes): one per madvise/munmap/mmap_fixed zap (and per mprotect
    # from v6.0, Config.mprotect_gathers, though it zaps nothing: the scale workloads run none)
    zaps: int = 0
    pages_zapped: int = 0  # present PTEs cleared by zap_pte_range (ptep_get_and_clear_full that returned a PTE)
    tlb_flushes: int = 0  # mmu_gather TLB flushes: flush_tlb_mm_range calls from tlb_flush_mmu_tlbonly
    forced_flushes: int = 0  # "force_flush" notes of zap_pte_range (a dirty page, or a full batch)
    ipis: int = 0  # flush IPIs those mmu_gather flushes sent (the results of their flush_tlb_others steps)
    ptl_wait_ns: list[int] = field(default_factory=list)  # wait_ns of every spin_lock (PTL) step
    flush_rtt_ns: list[int] = field(default_factory=list)  # wait_ns of every wait_acks step

    def add(self, other: "ZapCounts") -> None:
        for name in ("zaps", "pages_zapped", "tlb_flushes", "forced_flushes", "ipis"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.ptl_wait_ns.extend(other.ptl_wait_ns)
        self.flush_rtt_ns.extend(other.flush_rtt_ns)


def zap_counts(records: Iterable[dict[str, Any]]) -> ZapCounts:
    """Count from event records (wild ones, or ``as_records`` of a controlled run's events)."""
    c = ZapCounts()
    for r in records:
        op, fn, kind = r["op"], r["fn"], r["kind"]
        if kind == "note":
            if op == "init" and fn == "tlb_gather_mmu":
                c.zaps += 1
            elif op == "force_flush" and fn == "zap_pte_range":
                c.forced_flushes += 1
            continue
        if kind != "step":
            continue
        if op == "ptep_get_and_clear_full" and fn == "zap_pte_range" and r["result"] is not None:
            c.pages_zapped += 1
        elif op == "flush_tlb_others" and fn == "tlb_flush_mmu_tlbonly":
            c.tlb_flushes += 1
            c.ipis += int(r["result"] or 0)
        elif op == "spin_lock" and "wait_ns" in r:
            c.ptl_wait_ns.append(r["wait_ns"])
        elif op == "wait_acks" and "wait_ns" in r:
            c.flush_rtt_ns.append(r["wait_ns"])
    return c


def as_records(events: Iterable[Any]) -> list[dict[str, Any]]:
    """``kernel_model.events.Event``s (a controlled run) in the record form ``zap_counts`` reads."""
    return [{"kind": e.kind, "fn": e.fn, "op": e.op, "args": e.args, "result": e.result} for e in events]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for k successes in n trials (95% for z = 1.96); (0, 1) when n = 0."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def percentile_us(samples_ns: list[int], q: float) -> float | None:
    """Nearest-rank percentile, in microseconds; None without samples."""
    if not samples_ns:
        return None
    ordered = sorted(samples_ns)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)] / 1000


@dataclass(slots=True)
class CellStats:
    """One cell's trials as they finish."""

    counts: ZapCounts = field(default_factory=ZapCounts)
    finished: list[tuple[float, int]] = field(default_factory=list)  # (monotonic time, steps) per trial

    def add(self, r: TrialResult, now: float) -> None:
        self.counts.add(zap_counts(r.records))
        self.finished.append((now, r.steps))

    def throughput(self, seconds: float) -> tuple[float, float]:
        """(trials/s, steps/s) in steady state: from the first trial's end to the last's, so that actor
        start-up is left out; over the whole campaign when fewer than 3 trials ended."""
        done = self.finished
        if len(done) >= 3 and done[-1][0] > done[0][0]:
            span = done[-1][0] - done[0][0]
            return (len(done) - 1) / span, sum(s for _, s in done[1:]) / span
        span = max(seconds, 1e-9)
        return len(done) / span, sum(s for _, s in done) / span

    def row(self, cell: Cell, result: CampaignResult) -> dict[str, Any]:
        """The cell's CSV row. How each metric is computed:

        - violations: trials in which the oracle found a violated invariant (CampaignResult.violations);
          hit_rate = violations / trials, hit_rate_lo/hi its Wilson 95% interval;
        - trials_per_s, steps_per_s: steady state (``throughput``); seconds: the whole cell, start-up included;
        - ipis_per_zap: flush IPIs sent by mmu_gather flushes / zaps;
        - tlb_flushes_per_zapped_page: mmu_gather TLB flushes / present PTEs zapped;
        - forced_flushes_per_zap: zap_pte_range "force_flush" notes / zaps;
        - ptl_wait_p50/p99_us: wall clock from asking for a PTL (spin_lock) to getting it, one Ray round trip
          to the page-table actor included (CPU actors' ``wait_ns``);
        - flush_rtt_p50/p99_us: wall clock from starting to wait for flush acks to the last ack (``wait_ns`` of
          wait_acks: every shootdown with at least one target, zaps' and folio_mkclean's);
        - nodes: distinct Ray nodes that ran the cell's actors."""
        c = self.counts
        n = result.trials
        lo, hi = wilson(result.violations, n)
        trials_per_s, steps_per_s = self.throughput(result.seconds)
        nodes = {node for ns in result.nodes_by_trial.values() for node in ns}
        values: dict[str, Any] = {
            "cpus": cell.cpus, "shards": cell.shards, "ordering": cell.ordering,
            "delayed_batches": cell.delayed_batches, "trials": n, "violations": result.violations,
            "hit_rate": result.violations / n if n else 0.0, "hit_rate_lo": lo, "hit_rate_hi": hi,
            "trials_per_s": trials_per_s, "steps_per_s": steps_per_s,
            "ipis_per_zap": _ratio(c.ipis, c.zaps), "tlb_flushes_per_zapped_page": _ratio(c.tlb_flushes, c.pages_zapped),
            "forced_flushes_per_zap": _ratio(c.forced_flushes, c.zaps),
            "ptl_wait_p50_us": percentile_us(c.ptl_wait_ns, 50), "ptl_wait_p99_us": percentile_us(c.ptl_wait_ns, 99),
            "flush_rtt_p50_us": percentile_us(c.flush_rtt_ns, 50),
            "flush_rtt_p99_us": percentile_us(c.flush_rtt_ns, 99),
            "hung": result.by_status["hung"], "crashed": result.by_status["crashed"],
            "diverged": result.by_status["diverged"], "zaps": c.zaps, "pages_zapped": c.pages_zapped,
            "steps": result.steps, "seconds": result.seconds, "nodes": len(nodes),
        }
        return {k: _rounded(v) for k, v in values.items()}


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _rounded(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


# --- the grid ----------------------------------------------------------------------------------------------------
MakeCell = Callable[[Cell], tuple[Scenario, Config]]


@dataclass(slots=True)
class GridResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    failing_logs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False  # Ctrl-C or SIGTERM: the rows are the cells that ran, the last one in part

    @property
    def violations(self) -> int:
        return sum(row["violations"] for row in self.rows)


def run_grid(cells: list[Cell], make: MakeCell, opts: CampaignOptions,
             on_trial: Callable[[Cell, TrialResult, CampaignResult], None] | None = None,
             on_cell: Callable[[Cell], None] | None = None, grid: GridResult | None = None) -> GridResult:
    """One campaign per cell (on whatever Ray cluster is initialised), in order; one row per cell, added to
    ``grid`` (the caller's, so that the finished rows are there when a lost cluster ends the grid)."""
    grid = grid if grid is not None else GridResult()
    started = time.monotonic()
    for number, cell in enumerate(cells):
        scenario, cfg = make(cell)
        stats = CellStats()
        if on_cell is not None:
            on_cell(cell)

        def hook(r: TrialResult, so_far: CampaignResult, cell: Cell = cell, stats: CellStats = stats) -> None:
            stats.add(r, time.monotonic())
            if on_trial is not None:
                on_trial(cell, r, so_far)

        # Each cell's trials get their own seeds (jitter), so that cells are independent samples.
        result = run_campaign(scenario, cfg, replace(opts, seed=opts.seed + 1_000_003 * number), hook)
        grid.rows.append(stats.row(cell, result))
        grid.failing_logs.extend(result.failing_logs)
        if result.interrupted:  # the campaign took the Ctrl-C (or SIGTERM); the grid ends with it, not one cell
            grid.interrupted = True
            break
    grid.seconds = time.monotonic() - started
    return grid


def write_csv(path: str, rows: list[dict[str, Any]]) -> None:
    """The grid's table, renamed over ``path`` once whole: written in place, a run that failed while writing it
    (a full disk, a kill) left the previous run's table cut short, and a `tlbrace report` reading the directory
    meanwhile read half a table."""
    import csv

    # --out deleted while the grid ran (its lock and logs with it): the measurements still get a directory, as the
    # failing trials' logs do; before, the whole grid's rows were lost with exit 3.
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with replaced_whole(path, "scale table") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in CSV_COLUMNS})
