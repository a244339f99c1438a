"""The pictures of ``tlbrace scale``: PNG files drawn with matplotlib's Agg backend from the grid's CSV rows.

- ``hit_rate.png``: violations per trial vs CPUs, one line per ordering (and delayed_batches), Wilson 95% error
  bars; one panel per shard count.
- ``throughput.png``: trials/s and steps/s (steady state) vs CPUs.
- ``flushes.png``: mmu_gather TLB flushes per zapped page and forced flushes per zap vs CPUs, one line per
  delayed_batches setting (eager as the reference): c47454823bd4's finding.
- ``waits.png``: PTL wait and flush round trip, p50 and p99, vs CPUs (log scale).
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any
from logs.output_files import replaced_whole

# One colour per configuration, the same in every picture.
COLOURS = {"eager": "tab:red", "delayed/active": "tab:blue", "delayed/local+active": "tab:green"}
MARKERS = ("o", "s", "^", "D", "v", "P")


def _label(row: dict[str, Any]) -> str:
    batches = row["delayed_batches"]
    return row["ordering"] if batches == "-" else f"{row['ordering']}/{batches}"


def _series(rows: list[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Rows grouped by (configuration, shards), each group sorted by CPUs."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(_label(row), row["shards"])].append(row)
    return {k: sorted(v, key=lambda r: r["cpus"]) for k, v in sorted(groups.items())}


def _style(label: str, shards: int, all_shards: list[int]) -> dict[str, Any]:
    """Colour and marker by configuration, line style by shards; configurations with equal values stay visible
    (large hollow eager markers under smaller filled ones)."""
    i = all_shards.index(shards) if shards in all_shards else 0
    name = label if len(all_shards) < 2 else f"{label}, {shards} PTL(s)"
    colour = COLOURS.get(label, "tab:gray")
    size = {"eager": 11, "delayed/active": 7}.get(label, 5)
    return {"color": colour, "marker": MARKERS[i % len(MARKERS)], "markersize": size,
            "markerfacecolor": "none" if label == "eager" else colour,
            "linestyle": ("-", "--", ":", "-.")[i % 4], "label": name}


def _cpu_axis(ax: Any, rows: list[dict[str, Any]]) -> None:
    cpus = sorted({r["cpus"] for r in rows})
    ax.set_xticks(cpus)
    ax.set_xlabel("simulated CPUs (CPU actors)")
    if len(cpus) == 1:
        ax.set_xlim(cpus[0] - 1, cpus[0] + 1)
    ax.grid(True, alpha=0.3)


def _legend(ax: Any, **kwargs: Any) -> None:
    """Outside the plot, right of the last panel: it never hides a point."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, **kwargs)


def _num(value: Any) -> float:
    return float("nan") if value in (None, "") else float(value)


PLOT_NAMES: tuple[str, ...] = ("hit_rate.png", "throughput.png", "flushes.png", "waits.png")


def plot_all(rows: list[dict[str, Any]], out: str, title: str) -> list[str]:
    """Draw every picture into ``out``; returns their paths."""
    from analysis.pyplot import pyplot

    plt = pyplot()

    os.makedirs(out, exist_ok=True)
    shards = sorted({r["shards"] for r in rows})
    paths = []
    for name, draw in zip(PLOT_NAMES, (_hit_rate, _throughput, _flushes, _waits)):
        fig = draw(plt, rows, shards, title)
        path = os.path.join(out, name)
        with replaced_whole(path, "plot") as tmp:  # format given: the temporary name's suffix is not .png
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
        plt.close(fig)
        paths.append(path)
    return paths


def _hit_rate(plt: Any, rows: list[dict[str, Any]], shards: list[int], title: str) -> Any:
    fig, axes = plt.subplots(1, len(shards), figsize=(6.4 * len(shards), 4.6), squeeze=False, sharey=True)
    labels = sorted({_label(r) for r in rows})
    top = max([_num(r["hit_rate_hi"]) for r in rows] + [0.05])
    cpus = [r["cpus"] for r in rows]
    step = 0.015 * max(max(cpus) - min(cpus), 2)  # keep error bars of equal CPU counts apart
    for ax, s in zip(axes[0], shards):
        for j, label in enumerate(labels):
            group = sorted((r for r in rows if r["shards"] == s and _label(r) == label), key=lambda r: r["cpus"])
            if not group:
                continue
            offset = (j - (len(labels) - 1) / 2) * step
            x = [r["cpus"] + offset for r in group]
            y = [_num(r["hit_rate"]) for r in group]
            err = [[v - _num(r["hit_rate_lo"]) for v, r in zip(y, group)],
                   [_num(r["hit_rate_hi"]) - v for v, r in zip(y, group)]]
            ax.errorbar(x, y, yerr=err, capsize=4, color=COLOURS.get(label, "tab:gray"), marker="o", label=label)
        ax.set_title(f"{s} PTE table(s) (PTLs)")
        ax.set_ylim(-0.02, min(1.0, top * 1.15))
        _cpu_axis(ax, rows)
    axes[0][0].set_ylabel("hit rate: trials with a violation\n(Wilson 95% interval)")
    _legend(axes[0][-1])
    fig.suptitle(f"{title}: race hit rate vs CPUs")
    return fig


def _lines(axes: list[Any], rows: list[dict[str, Any]], shards: list[int], columns: list[str]) -> None:
    for (label, s), group in _series(rows).items():
        style = _style(label, s, shards)
        for ax, column in zip(axes, columns):
            ax.plot([r["cpus"] for r in group], [_num(r[column]) for r in group], **style)


def _throughput(plt: Any, rows: list[dict[str, Any]], shards: list[int], title: str) -> Any:
    fig, axes = plt.subplots(1, 2, figsize=(12.8, 4.6))
    _lines(list(axes), rows, shards, ["trials_per_s", "steps_per_s"])
    for ax, what in zip(axes, ("trials per second", "steps per second")):
        ax.set_ylabel(f"{what} (steady state)")
        ax.set_ylim(bottom=0)
        _cpu_axis(ax, rows)
    _legend(axes[-1])
    fig.suptitle(f"{title}: emulator throughput vs CPUs")
    return fig


def _flushes(plt: Any, rows: list[dict[str, Any]], shards: list[int], title: str) -> Any:
    fig, axes = plt.subplots(1, 2, figsize=(12.8, 4.6))
    _lines(list(axes), rows, shards, ["tlb_flushes_per_zapped_page", "forced_flushes_per_zap"])
    axes[0].set_ylabel("mmu_gather TLB flushes per zapped page")
    axes[1].set_ylabel("forced flushes (zap_pte_range) per zap")
    for ax in axes:
        ax.set_ylim(bottom=0)
        _cpu_axis(ax, rows)
    _legend(axes[-1])
    fig.suptitle(f"{title}: TLB flushes by delayed_batches (active = 6.2-rc seed patch, local+active = "
                 "c47454823bd4)")
    return fig


def _waits(plt: Any, rows: list[dict[str, Any]], shards: list[int], title: str) -> Any:
    fig, axes = plt.subplots(1, 2, figsize=(12.8, 4.6))
    for (label, s), group in _series(rows).items():
        style = _style(label, s, shards)
        for ax, metric in zip(axes, ("ptl_wait", "flush_rtt")):
            x = [r["cpus"] for r in group]
            ax.plot(x, [_num(r[f"{metric}_p50_us"]) / 1000 for r in group], **style)
            ax.plot(x, [_num(r[f"{metric}_p99_us"]) / 1000 for r in group], **{**style, "label": None,
                                                                                "alpha": 0.45, "linestyle": ":"})
    axes[0].set_ylabel("PTL wait (spin_lock request to grant), ms")
    axes[1].set_ylabel("flush round trip (wait_acks), ms")
    from matplotlib.ticker import FuncFormatter

    for ax in axes:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        _cpu_axis(ax, rows)
    _legend(axes[-1], title="solid p50, faint dotted p99")
    fig.suptitle(f"{title}: wall-clock waits vs CPUs (each includes Ray message latency)")
    return fig
