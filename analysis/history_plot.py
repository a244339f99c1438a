"""The picture of ``tlbrace history``: a verdict matrix, kernels across, scenarios down, drawn with matplotlib's Agg
backend.

Each cell is coloured by its verdict (violation red, clean green, incomplete grey) and says the shortest
counterexample's length. A scenario that shows a fix's race (kernel_model.kernels names it) is labelled with the
commit, and a black bar marks the first kernel column that has the fix: left of it the race should be reachable,
right of it never.
"""

from __future__ import annotations

from typing import Any

from kernel_model.kernels import REGISTRY, parse_version
from logs.output_files import replaced_whole

VERDICT_COLOURS = {"violation": "#d62728", "clean": "#2ca02c", "incomplete": "#9e9e9e"}


def _label(scenario: str) -> str:
    fixes = [f for f in REGISTRY if f.scenario == scenario]
    return scenario + "".join(f"\n{f.commit} ({f.release})" for f in fixes)


def _fix_column(scenario: str, kernels: list[str]) -> list[int]:
    """For each fix whose scenario this is, the index of the first kernel column that has it (if any)."""
    out = []
    for f in REGISTRY:
        if f.scenario != scenario:
            continue
        landed = [i for i, k in enumerate(kernels) if parse_version(k) >= parse_version(f.release)]
        if landed and landed[0] > 0:
            out.append(landed[0])
    return out


def plot_history(rows: list[Any], kernels: list[str], path: str) -> None:
    """rows: cmd_history.Row objects (scenario, cells in ``kernels`` order)."""
    from analysis.pyplot import pyplot

    plt = pyplot()
    from matplotlib.patches import Patch, Rectangle

    width = max(6.0, 1.2 + 0.9 * len(kernels))
    height = max(2.4, 1.4 + 0.62 * len(rows))
    fig, ax = plt.subplots(figsize=(width, height))
    for y, row in enumerate(rows):
        for x, cell in enumerate(row.cells):
            ax.add_patch(Rectangle((x, y), 1, 1, facecolor=VERDICT_COLOURS[cell.verdict], edgecolor="white",
                                   linewidth=2))
            text = f"{cell.steps} steps" if cell.steps is not None else cell.verdict
            ax.text(x + 0.5, y + 0.5, text, ha="center", va="center", fontsize=7, color="white")
        for x in _fix_column(row.scenario, kernels):
            ax.plot([x, x], [y + 0.04, y + 0.96], color="black", linewidth=3)
    ax.set_xlim(0, len(kernels))
    ax.set_ylim(len(rows), 0)
    ax.set_xticks([i + 0.5 for i in range(len(kernels))], [f"v{k}" for k in kernels])
    ax.set_yticks([i + 0.5 for i in range(len(rows))], [_label(r.scenario) for r in rows], fontsize=7)
    ax.xaxis.tick_top()
    ax.set_xlabel("kernel release (the fixes of kernel_model/kernels.py merged by it)")
    ax.tick_params(length=0)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    legend = [Patch(facecolor=c, label=v) for v, c in VERDICT_COLOURS.items()]
    legend.append(Patch(facecolor="black", label="first kernel with the scenario's fix"))
    ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=4, fontsize=7, frameon=False)
    ax.set_title("tlbrace history: verdict per scenario and kernel (cell: shortest counterexample)", fontsize=9,
                 pad=24)
    fig.tight_layout()
    with replaced_whole(path, "history matrix") as tmp:  # format given: the temporary name's suffix is not .png
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
