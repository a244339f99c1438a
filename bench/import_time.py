"""How long does ``tlbrace`` take to start, next to a bare interpreter?

Runs, in the same run and interleaved (so a busy machine slows them alike): ``python -c pass``, ``python -m
tlbrace --help``, ``python -m tlbrace scenarios`` and ``python -m tlbrace mutants``, each REPEAT times, and prints
each one's median wall time as a ratio to the bare interpreter's. Then the modules that cost the most under
``python -X importtime -m tlbrace --help`` (cumulative microseconds, the interpreter's own report), so a heavy
import that crept in at startup is named.

    PYTHONPATH=. python bench/import_time.py [--repeat 7] [--top 12]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "tlbrace --help": ["-m", "tlbrace", "--help"],
    "tlbrace scenarios": ["-m", "tlbrace", "scenarios"],
    "tlbrace mutants": ["-m", "tlbrace", "mutants"],
}


def _run(argv: list[str], *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *extra, *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=True)


def wall_times(repeat: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(repeat):
        for name, argv in COMMANDS.items():
            start = time.perf_counter()
            _run(argv)
            times[name].append(time.perf_counter() - start)
    return times


def heaviest_imports(top: int) -> list[tuple[int, str]]:
    """(cumulative us, module) of the costliest imports of ``tlbrace --help``, top-level packages only."""
    err = _run(COMMANDS["tlbrace --help"], "-X", "importtime").stderr
    rows = []
    for line in err.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        if name.startswith("  "):  # a module imported by another: its cost is in its importer's figure
            continue
        rows.append((int(parts[1]), name.strip()))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    times = wall_times(args.repeat)
    bare = statistics.median(times["python -c pass"])
    for name, runs in times.items():
        median = statistics.median(runs)
        print(f"{name:<20} median {median * 1000:7.0f} ms   {median / bare:5.1f}x python -c pass")
    print(f"\ncostliest imports of `tlbrace --help` (cumulative, -X importtime):")
    for us, name in heaviest_imports(args.top):
        print(f"  {us / 1000:8.1f} ms  {name}")


if __name__ == "__main__":
    main()
