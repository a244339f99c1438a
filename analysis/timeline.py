"""A picture of one judged trial: who held which lock when, where the flush IPIs went, and what the violated
page's PG_dirty and mapcount did meanwhile.

One lane per thread (with its CPU); PTL holds (spin_lock..spin_unlock) and folio-lock holds as bars; each flush
IPI as an arrow from the initiator's send to the target's flush_tlb_func, and its ack as a dashed arrow back to
the initiator's wait_acks; the witness events starred and named. Below, the page's PG_dirty, mapcount and
"memory differs from disk" over time, read from the machine state after every transition of the replay (not
inferred from the events). The x axis is the global event order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from analysis.analyze import rerun
from analysis.pyplot import pyplot
from analysis.witness import Witness
from controlled.machine import Machine, Transition
from kernel_model.config import Config
from kernel_model.events import Event, Violation
from kernel_model.program import Scenario
from logs.output_files import replaced_whole

plt = pyplot()  # files only, never a display


@dataclass(frozen=True, slots=True)
class PageSample:
    seq: int  # the global order after which the sample was taken
    dirty: bool
    mapcount: int
    differs: bool  # the page's memory differs from the disk
    in_tlb: bool  # some CPU's TLB still maps it


def page_track(scenario: Scenario, cfg: Config, executed: list[Transition],
               pfn: int | None) -> tuple[list[PageSample], list[int]]:
    """The page's state after every transition, and each thread's CPU (as the machine placed them)."""
    samples: list[PageSample] = []
    first_seq = [0]  # the seq of the first event the next transition emits: where its effect shows

    def sample(m: Machine, i: int) -> None:
        s = m.state
        at, first_seq[0] = (-1 if i < 0 else first_seq[0]), m.seq
        if pfn is None or pfn >= len(s.folios):
            return
        f = s.folios[pfn]
        differs = (not f.anon) and f.index < len(s.disk) and f.data != s.disk[f.index]
        samples.append(PageSample(at, f.dirty, f.mapcount, differs, bool(s.tlbs_mapping(pfn))))

    m = rerun(scenario, cfg, executed, after=sample)
    return samples, list(m.cpu_of)


def _holds(events: list[Event], take: str, release: str) -> list[tuple[int, int, int, str]]:
    """(tid, start seq, end seq, label) per hold; one still held at the end runs to the last event."""
    out, open_ = [], {}
    last = events[-1].seq if events else 0
    for e in events:
        if e.kind != "step":
            continue
        if e.op == take:
            open_[(e.tid, e.args[0])] = e.seq
        elif e.op == release and (e.tid, e.args[0]) in open_:
            out.append((e.tid, open_.pop((e.tid, e.args[0])), e.seq, str(e.args[0])))
    out.extend((tid, start, last, str(lock)) for (tid, lock), start in open_.items())
    return out


def draw_timeline(path: str | os.PathLike[str], scenario: Scenario, cfg: Config, events: list[Event],
                  executed: list[Transition], violations: list[Violation], witness: Witness | None,
                  title: str) -> None:
    threads = [t.name for t in scenario.threads]
    n = len(threads)
    pfn = next((v.pfn for v in violations if v.pfn is not None), None)
    samples, cpu_of = page_track(scenario, cfg, executed, pfn)
    last = events[-1].seq if events else 1
    width = min(30.0, max(12.0, last * 0.16))
    fig, axes = plt.subplots(5, 1, figsize=(width, 10.5), sharex=True,
                             gridspec_kw={"height_ratios": [n * 1.3, 0.55, 0.8, 0.55, 0.55], "hspace": 0.14})
    lanes = axes[0]
    y = {tid: n - 1 - tid for tid in range(n)}  # first thread on top

    lane_of_cpu = {c: tid for tid, c in reversed(list(enumerate(cpu_of)))}
    for tid in range(n):
        lanes.axhline(y[tid], color="0.85", lw=0.8, zorder=0)
    _draw_holds(lanes, events, y)
    steps = [e for e in events if e.kind == "step"]
    lanes.scatter([e.seq for e in steps], [y[e.tid] for e in steps], marker="|", s=60, color="0.35", zorder=2)
    _draw_ipis(lanes, events, y, lane_of_cpu)
    _draw_witness(lanes, events, witness, y, lane_of_cpu)
    _draw_violations(axes, violations, last, n)
    lanes.set_yticks([y[t] for t in range(n)], [f"{threads[t]}\nCPU {cpu_of[t]}" for t in range(n)])
    lanes.set_ylim(-0.8, n - 0.2)
    lanes.set_title(title, loc="left", fontsize=11)
    _lane_legend(lanes)
    _draw_page_tracks(axes[1:], samples, last, pfn)
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    with replaced_whole(path, "timeline") as tmp:  # format given: the temporary name's suffix is .tmp
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=fmt)
    plt.close(fig)


def _draw_holds(lanes, events: list[Event], y: dict[int, int]) -> None:
    """PTL holds as wide orange bars, folio-lock holds as narrow blue ones, each labelled."""
    for tid, start, end, lock in _holds(events, "spin_lock", "spin_unlock"):
        lanes.broken_barh([(start, max(end - start, 0.6))], (y[tid] - 0.32, 0.64), color="tab:orange", alpha=0.55,
                          zorder=1)
        lanes.text(start + 0.2, y[tid] + 0.2, f"PTL {lock}", fontsize=7, color="saddlebrown", va="bottom")
    for tid, start, end, pfn_ in _holds(events, "folio_lock", "folio_unlock"):
        lanes.broken_barh([(start, max(end - start, 0.6))], (y[tid] - 0.14, 0.28), color="tab:blue", alpha=0.35,
                          zorder=1)
        lanes.text(start + 0.2, y[tid] - 0.36, f"folio lock {pfn_}", fontsize=7, color="navy", va="top")


def _draw_violations(axes, violations: list[Violation], last: int, n: int) -> None:
    """A red line through every panel at the end, and the invariant's name on the lanes."""
    for v in violations:
        for ax in axes:
            ax.axvline(last, color="red", ls="--", lw=1.2)
        axes[0].text(last - 0.3, n - 0.35, v.invariant, color="red", fontsize=9, fontweight="bold", va="bottom",
                     ha="right")


def _lane_legend(lanes) -> None:
    lanes.plot([], [], color="tab:orange", lw=6, alpha=0.55, label="PTL held")
    lanes.plot([], [], color="tab:blue", lw=4, alpha=0.35, label="folio lock held")
    lanes.plot([], [], color="tab:purple", lw=1.2, label="flush IPI")
    lanes.plot([], [], color="tab:purple", lw=1.0, ls=":", label="ack")
    lanes.scatter([], [], marker="*", s=120, color="crimson", label="witness event")
    lanes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)


def _draw_page_tracks(axes, samples: list[PageSample], last: int, pfn: int | None) -> None:
    """The violated page's PG_dirty, mapcount, page-vs-disk and TLB presence, one panel each."""
    dirty_ax, map_ax, diff_ax, tlb_ax = axes
    xs = [s.seq for s in samples]
    _track(dirty_ax, xs, [int(s.dirty) for s in samples], "PG_dirty", "tab:green", last)
    _track(map_ax, xs, [s.mapcount for s in samples], "mapcount", "tab:brown", last)
    _track(diff_ax, xs, [int(s.differs) for s in samples], "page ≠ disk", "tab:red", last)
    _track(tlb_ax, xs, [int(s.in_tlb) for s in samples], "some TLB\nmaps it", "tab:purple", last)
    tlb_ax.set_xlabel("global event order (seq)")
    if pfn is not None:
        dirty_ax.set_title(f"pfn {pfn}, state after each transition", loc="left", fontsize=9)


def _draw_ipis(ax, events: list[Event], y: dict[int, int], lane_of_cpu: dict[int, int]) -> None:
    pending: dict[int, int] = {}  # initiator -> seq of its latest flush_tlb_others
    delivered: dict[int, list[Event]] = {}
    for e in events:
        if e.kind == "step" and e.op == "flush_tlb_others":
            pending[e.tid] = e.seq
            delivered[e.tid] = []
        elif e.op == "ipi_flush" and e.tid in pending:  # the invalidation; the ack is its own event
            target = lane_of_cpu.get(e.cpu, e.tid)
            ax.annotate("", xy=(e.seq, y[target]), xytext=(pending[e.tid], y[e.tid]),
                        arrowprops={"arrowstyle": "->", "color": "tab:purple", "lw": 1.2}, zorder=3)
            delivered[e.tid].append(e)
        elif e.kind == "step" and e.op == "wait_acks" and delivered.get(e.tid):
            for d in delivered.pop(e.tid):
                target = lane_of_cpu.get(d.cpu, d.tid)
                ax.annotate("", xy=(e.seq, y[e.tid]), xytext=(d.seq, y[target]),
                            arrowprops={"arrowstyle": "->", "color": "tab:purple", "lw": 1.0, "ls": ":"}, zorder=3)


def _draw_witness(ax, events: list[Event], witness: Witness | None, y: dict[int, int],
                  lane_of_cpu: dict[int, int]) -> None:
    if witness is None:
        return
    by_seq = {e.seq: e for e in events}
    roles = {r.role: r.seq for r in witness.rows if r.seq is not None}
    opens, closes = roles.get("rmap_removal", roles.get("pte_clear")), roles.get("late_flush")
    if opens is not None and closes is not None:
        ax.axvspan(opens, closes, color="red", alpha=0.06, zorder=0)
        ax.text((opens + closes) / 2, -0.7, "race window: rmap says unmapped, a stale TLB entry still writes",
                color="red", fontsize=8, ha="center", va="bottom")
    key = []
    for i, row in enumerate((r for r in witness.rows if r.seq in by_seq), start=1):
        e = by_seq[row.seq]
        lane = y[lane_of_cpu.get(e.cpu, e.tid)] if e.kind == "ipi" else y[e.tid]
        ax.scatter([e.seq], [lane], marker="*", s=170, color="crimson", zorder=4)
        # Numbers, not labels, on the lanes: neighbouring events are one tick apart and labels would overprint.
        ax.annotate(str(i), (e.seq, lane), xytext=(0, 9), textcoords="offset points", fontsize=8,
                    fontweight="bold", color="crimson", ha="center", va="bottom", zorder=5)
        key.append(f"{i}  {row.fn}: {row.role.replace('_', ' ')}")
    ax.text(1.01, 0.45, "witness\n" + "\n".join(key), transform=ax.transAxes, fontsize=8, va="top",
            color="crimson", family="monospace")


def _track(ax, xs: list[int], ys: list[int], label: str, color: str, last: int,
           extra: tuple[list[int], str, str] | None = None) -> None:
    if xs:
        ax.step(xs, ys, where="post", color=color, lw=1.8, label=label)
        if extra is not None:
            ax.step(xs, [v * 0.5 for v in extra[0]], where="post", color=extra[2], lw=1.2, ls="--",
                    label=f"{extra[1]} (0.5 = yes)")
    ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    top = max(ys + [1])
    ax.set_ylim(min(ys + [0]) - 0.3, top + 0.3)
    ax.set_yticks(range(min(ys + [0]), top + 1))
    ax.set_xlim(-1, last + 2)
    ax.grid(axis="x", color="0.92")
    if extra is not None:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
