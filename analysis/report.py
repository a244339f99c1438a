"""A campaign page: one self-contained HTML file (inline CSS, pictures embedded as base64 PNG, no script, nothing
fetched) that says what a stress or scale run in DIR found.

For each campaign (a ``results.msgpack`` under DIR, as ``tlbrace stress --out`` writes): the summary, the hit
rate with its Wilson 95% interval, counts by invariant, the first failing trial's witness table, race diagram
and timeline picture, the race-window coverage across the logged trials, and links to the logs. For a scale run
(a ``results.csv`` with its PNG plots): the plots. Everything is read from the files: the page can be rebuilt at
any time, and it is judged by the same replay and oracle as ``tlbrace analyze``.
"""

from __future__ import annotations

import base64
import html
import os
import tempfile
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from analysis import coverage as cov
from analysis.analyze import AnalysisError, LogAnalysis, TrialReport, analyze_log, wilson_interval
from analysis.witness import Witness, witnesses_for
from logs.eventlog import LogError
from logs.results_file import FILE_NAME as RESULTS, ResultsContents, ResultsError, read_results
from logs.output_files import replaced_whole
from scenarios.input_files import InputFileError, read_input

SCALE_CSV = "results.csv"
CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0; } td, th { border: 1px solid #ccc; padding: .25em .6em;
vertical-align: top; text-align: left; } th { background: #f2f2f2; } td.n { text-align: right; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: .8em; overflow-x: auto; font-size: 13px; }
.bad { color: #b00; font-weight: bold; } .good { color: #070; font-weight: bold; } .dim { color: #777; }
img { max-width: 100%; border: 1px solid #ddd; } .why { font-style: italic; color: #444; }
"""


@dataclass(slots=True)
class Campaign:
    """One stress campaign as its results file records it."""

    dir: str
    header: dict[str, Any]
    records: list[dict[str, Any]]
    by_invariant: Counter = field(default_factory=Counter)
    by_status: Counter = field(default_factory=Counter)
    damage: str | None = None  # what of the results file could not be read (damaged bytes, a torn tail)

    @property
    def trials(self) -> int:
        return len(self.records)

    @property
    def violating(self) -> list[dict[str, Any]]:
        return sorted((r for r in self.records if r["invariants"]), key=lambda r: r["trial"])

    @property
    def logs(self) -> list[str]:
        return [self._beside(r["log"]) for r in sorted(self.records, key=lambda r: r["trial"])
                if isinstance(r.get("log"), str)]

    def _beside(self, recorded: str) -> str:
        """A trial's log as it sits beside the results file: stress writes it there, but records the path as the
        command named --out (relative to the cwd of that day, or the campaign's old place before a move)."""
        here = os.path.join(self.dir, os.path.basename(recorded))
        return here if os.path.isfile(here) else recorded


def find_campaigns(root: str, unreadable: list[str] | None = None) -> tuple[list[Campaign], list[str]]:
    """The campaigns (results files) and the scale runs (results.csv) under ``root``, in path order. A results
    file that cannot be read raises ResultsError, or, given ``unreadable``, is added to it and skipped (one
    damaged campaign of many no longer hides the others)."""
    campaigns, scales = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if RESULTS in filenames:
            try:
                contents = read_results(os.path.join(dirpath, RESULTS))
            except ResultsError as exc:
                if unreadable is None:
                    raise
                unreadable.append(str(exc))
                continue
            c = Campaign(dirpath, contents.header, contents.records, damage=_damage(contents))
            for r in c.records:
                c.by_status[r["status"]] += 1
                c.by_invariant.update(str(i) for i in r["invariants"])
            campaigns.append(c)
        if SCALE_CSV in filenames:
            scales.append(dirpath)
    return campaigns, scales


def _damage(contents: ResultsContents) -> str | None:
    """What the report's counts leave out: the page said "trials run 3" of a file whose 16 other records sat in
    damaged bytes, without a word (a resume names them; the report did not)."""
    parts = []
    if contents.skipped:
        parts.append(f"damaged bytes {contents.skipped_text()} skipped: the trials recorded there are not counted")
    if contents.torn:
        parts.append(f"its last {contents.torn} bytes are a record cut short (a driver killed while writing it, or "
                     f"a campaign still running)")
    return "; ".join(parts) or None


# A scale run's plots are about 100 KB each; a *.png that is a FIFO hung the report, a link to /dev/zero read
# until memory ran out, a directory ended it (exit 3): only a regular file of at most this size is embedded.
MAX_PLOT_BYTES = 64 << 20


def _png(path: str) -> str:
    return "data:image/png;base64," + base64.b64encode(read_input(path, "plot", MAX_PLOT_BYTES)).decode("ascii")


def _esc(x: object) -> str:
    """Text for the page. A name that is not UTF-8 (its bytes kept as surrogates) is shown with backslash escapes:
    the page's write failed on it, an internal error (exit 4)."""
    return html.escape(str(x).encode("utf-8", "backslashreplace").decode("utf-8"))


def _href(path: str) -> str:
    """A link to a file by its relative path: its bytes percent-encoded. Written raw, a directory named 'a#1' or
    'run?2' linked to 'a' (the rest read as a fragment or a query), and one that is not UTF-8 failed the page."""
    return urllib.parse.quote(os.fsencode(path))


def _table(rows: list[tuple[object, ...]], head: tuple[str, ...] | None = None, numeric: int = 1) -> str:
    out = ["<table>"]
    if head:
        out.append("<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr>")
    for row in rows:
        cells = [f"<td{' class=n' if i >= numeric else ''}>{c if isinstance(c, Raw) else _esc(c)}</td>"
                 for i, c in enumerate(row)]
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out + ["</table>"])


class Raw(str):
    """A table cell that is already HTML."""


def _summary(c: Campaign) -> str:
    h = c.header
    cfg = h.get("config", {})
    k = len(c.violating)
    verdict = (Raw(f"<span class=bad>{k} violating trial(s)</span>") if k
               else Raw("<span class=good>no violation</span>"))
    rows: list[tuple[object, ...]] = [
        ("scenario", h.get("scenario")), ("ordering / arch", f"{cfg.get('ordering')} / {cfg.get('arch')}"),
        ("mutant", cfg.get("mutant") or "none"), ("seed", h.get("seed")),
        ("trials planned", h.get("trials") if h.get("trials") is not None else "unbounded (--duration/--until)"),
        ("trials run", c.trials), ("verdict", verdict),
        ("hit rate (Wilson 95%)", _rate(c)),
        ("hung / crashed / diverged", f"{c.by_status['hung']} / {c.by_status['crashed']} / "
                                      f"{c.by_status['diverged']}"),
        ("trial seconds (sum)", f"{sum(float(r.get('seconds') or 0) for r in c.records):.1f}"),
        ("run", h.get("run")), ("created", h.get("created")),
    ]
    inv = _table(sorted(c.by_invariant.items()), ("invariant", "violating trials")) if c.by_invariant else \
        "<p class=dim>No invariant was violated.</p>"
    return _table(rows, numeric=99) + "<h3>Counts by invariant</h3>" + inv


def _title(c: Campaign) -> str:
    cfg = c.header.get("config", {})
    return f"{c.header.get('scenario')} — {cfg.get('ordering')}/{cfg.get('arch')}" + (
        f", mutant {cfg['mutant']}" if cfg.get("mutant") else "")


def _rate(c: Campaign) -> str:
    k, n = len(c.violating), c.trials
    lo, hi = wilson_interval(k, n)
    return f"{k / n:.2%} [{lo:.2%}, {hi:.2%}]" if n else "-"


def _witness_html(w: Witness) -> str:
    head = ("#",) + tuple(f"{t} (CPU {w.cpu_of[i]})" for i, t in enumerate(w.threads)) + ("why it matters",)
    rows = []
    for r in w.rows:
        cells: list[object] = [""] * len(w.threads)
        if r.tid is not None:
            late = " <span class=bad>(after the violation)</span>" if r.after_violation else ""
            cells[r.tid] = Raw(f"<b>{_esc(r.fn)}</b><br>{_esc(r.action)}{late}")
        why = Raw(f"<b>{_esc(r.action)}</b>") if r.role == "final_state" else Raw(
            f"<span class=why>{_esc(r.why if r.tid is not None else f'{r.fn}: {r.why}')}</span>")
        rows.append(("—" if r.seq is None else r.seq, *cells, why))
    return (f"<p><b>{_esc(w.invariant)}</b> on pfn {_esc(w.pfn)}: {_esc(w.detail)}</p>"
            + _table(rows, head, numeric=99))


def _first_failure(c: Campaign, rel: Any) -> tuple[str, LogAnalysis | None, list[TrialReport]]:
    """The first failing trial's witness, diagram and timeline, and the analyses of every logged trial."""
    from controlled.machine import Machine
    from analysis.analyze import rerun
    from analysis.diagram import render_diagram
    from analysis.timeline import draw_timeline

    analyses: list[LogAnalysis] = []
    unreadable: list[str] = []
    for log in c.logs:
        try:
            analyses.append(analyze_log(log, jobs=1, observe=cov.observe))
        except (LogError, AnalysisError, OSError) as exc:
            unreadable.append(f"<p class=bad>{_esc(log)}: {_esc(exc)}</p>")
    # A log cut short or damaged is judged by the records before the damage; the page says so (it picked a later
    # failing trial as "the first" without a word when the first one's log had lost its end).
    unreadable += [f"<p class=bad>{_esc(a.path)}: {_esc(a.damage)}; judged by the records before it</p>"
                   for a in analyses if a.damage]
    reports = [r for a in analyses for r in a.trials]
    first = next(((a, r) for a in analyses for r in a.trials if r.violating), None)
    if first is None:
        return "".join(unreadable) + "<p class=dim>No failing trial has a log here.</p>", None, reports
    a, r = first
    ws = witnesses_for(r.violations, a.scenario, a.cfg, r.executed)
    events = rerun(a.scenario, a.cfg, r.executed).events
    diagram = render_diagram(a.scenario, Machine(a.scenario, a.cfg).cpu_of, events, r.violations)
    with tempfile.TemporaryDirectory() as tmp:
        png = os.path.join(tmp, "timeline.png")
        draw_timeline(png, a.scenario, a.cfg, events, r.executed, r.violations, ws[0] if ws else None,
                      f"{os.path.basename(a.path)} trial {r.trial}: {', '.join(r.invariants)}")
        picture = _png(png)
    parts = [f"<p>Trial {r.trial} (<a href=\"{_href(rel(a.path))}\">{_esc(os.path.basename(a.path))}</a>), "
             f"judged by replay: {_esc(', '.join(r.invariants))}. Reproduce: <code>tlbrace replay "
             f"{_esc(a.path)}</code></p>",
             "<h4>Race diagram</h4>", f"<pre>{_esc(diagram)}</pre>",
             "<h4>Minimal witness</h4>", *(_witness_html(w) for w in ws),
             "<h4>Timeline</h4>", f"<img alt=\"timeline of trial {r.trial}\" src=\"{picture}\">", *unreadable]
    return "\n".join(parts), a, reports


def _coverage_html(reports: list[TrialReport]) -> str:
    if not reports:
        return "<p class=dim>No logged trial: nothing to measure (tlbrace stress keeps failing trials' logs; " \
               "--keep-passing keeps them all).</p>"
    c = cov.aggregate(r.coverage for r in reports)
    pct = 100.0 * c.observed_orders / c.possible_orders if c.possible_orders else 0.0
    rows = [(p.a, p.b, p.a_first or Raw("<span class=bad>never</span>"),
             p.b_first or Raw("<span class=bad>never</span>"), p.missing) for p in c.pairs]
    return (f"<p>Over the {c.trials} logged trial(s): {c.observed_orders} of {c.possible_orders} cross-CPU orders "
            f"observed ({pct:.0f}%); {c.whole_window} ran the lost write's whole order (rmap removal &lt; mkclean "
            "check &lt; IO snapshot &lt; stale store &lt; flush). Only logged trials count: failing ones, or all "
            "with --keep-passing.</p>"
            + _table(rows, ("event A", "event B", "A before B", "B before A", "one missing"), numeric=2))


def _scale_html(d: str, rel: Any) -> str:
    pngs = sorted(f for f in os.listdir(d) if f.endswith(".png"))
    parts = [f"<p>Scale run in <a href=\"{_href(rel(d))}\">{_esc(d)}</a>: "
             f"<a href=\"{_href(rel(os.path.join(d, SCALE_CSV)))}\">{SCALE_CSV}</a></p>"]
    for f in pngs:
        try:
            src = _png(os.path.join(d, f))
        except InputFileError as exc:
            parts.append(f"<h4>{_esc(f)}</h4><p>not shown: {_esc(exc)}</p>")
            continue
        parts.append(f"<h4>{_esc(f)}</h4><img alt=\"{_esc(f)}\" src=\"{src}\">")
    return "\n".join(parts)


def write_report(root: str, out: str) -> dict[str, Any]:
    """Write the page for the runs under ``root`` to ``out``; returns what it holds (for --json and tests).
    ResultsError when no results file there can be read but one was found; a damaged one among others is named
    on the page and in "unreadable"."""
    unreadable: list[str] = []
    campaigns, scales = find_campaigns(root, unreadable)
    if unreadable and not campaigns and not scales:
        raise ResultsError(unreadable[0])
    if not campaigns and not scales:  # before ``out`` is touched: an empty page replaced the report already there
        raise ResultsError(f"{root}: no results.msgpack (tlbrace stress --out) or results.csv (tlbrace scale) under "
                           "it")
    campaigns.sort(key=lambda c: (not c.violating, c.dir))  # the campaigns that found something first
    base = os.path.dirname(os.path.abspath(out))

    def rel(path: str) -> str:
        return os.path.relpath(os.path.abspath(path), base)

    body = [f"<h1>tlbrace campaign report</h1><p class=dim>{_esc(os.path.abspath(root))}: {len(campaigns)} "
            f"campaign(s), {len(scales)} scale run(s)</p>"]
    body += [f"<p class=bad>unreadable, left out: {_esc(text)}</p>" for text in unreadable]
    if campaigns:
        body.append(_table([(_title(c), c.trials, len(c.violating), _rate(c)) for c in campaigns],
                           ("campaign", "trials", "violating", "hit rate (Wilson 95%)")))
    shown: list[dict[str, Any]] = []
    first_failure: str | None = None
    for c in campaigns:
        h = c.header
        cfg = h.get("config", {})
        name = _title(c)
        failure, analysis, reports = _first_failure(c, rel)
        if analysis is not None and first_failure is None:
            first_failure = analysis.path
        logs = "".join(f"<li><a href=\"{_href(rel(p))}\">{_esc(os.path.basename(p))}</a></li>" for p in c.logs[:50])
        more = f"<p class=dim>... and {len(c.logs) - 50} more in {_esc(c.dir)}</p>" if len(c.logs) > 50 else ""
        damaged = [f"<p class=bad>{_esc(os.path.join(c.dir, RESULTS))}: {_esc(c.damage)}</p>"] if c.damage else []
        body += [f"<h2>{_esc(name)}</h2>", f"<p class=dim>{_esc(c.dir)}</p>", *damaged, _summary(c),
                 "<h3>First failing trial</h3>", failure,
                 "<h3>Race-window coverage</h3>", _coverage_html(reports),
                 "<h3>Logs</h3>", f"<p><a href=\"{_href(rel(os.path.join(c.dir, RESULTS)))}\">{RESULTS}</a> "
                 f"(every trial)</p><ul>{logs}</ul>{more}" if c.logs else
                 f"<p><a href=\"{_href(rel(os.path.join(c.dir, RESULTS)))}\">{RESULTS}</a>; no trial log kept</p>"]
        shown.append({"dir": c.dir, "scenario": h.get("scenario"), "ordering": cfg.get("ordering"),
                      "trials": c.trials, "violating": len(c.violating), "logs": len(c.logs), "damage": c.damage})
    for d in scales:
        body += ["<h2>Scaling</h2>", _scale_html(d, rel)]
    page = ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>tlbrace report</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    os.makedirs(base, exist_ok=True)
    with replaced_whole(out, "report") as tmp, open(tmp, "w", encoding="utf-8") as f:  # an old report stays whole
        f.write(page)
    return {"report": out, "campaigns": shown, "scale_runs": scales, "first_failure": first_failure,
            "unreadable": unreadable}


__all__ = ["ResultsError", "find_campaigns", "write_report"]
