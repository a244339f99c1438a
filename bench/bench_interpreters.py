"""How fast each Python interpreter on this machine runs the model as pure Python, printed (never asserted).

The same search, the model run as pure Python (TLBRACE_PURE_PYTHON=1, so no compiled module decides the
result), in one fresh process per interpreter, the interpreters taking turns, best of ``--rounds``; each printed
as a ratio to the interpreter this script runs on. Session 21 found Debian's /usr/bin/python3.11 (PGO, LTO,
libpython linked into the executable) at 0.83x pyenv's 3.11.7 (a shared libpython without either) here, and the
search at 0.84x the instructions a state (cachegrind); yet with the hot modules compiled, the search took 4-15%
more CPU on Debian's build, so scripts/setup.sh keeps the python3 first on PATH. Compare both ways before
choosing another interpreter.

Usage: python bench/bench_interpreters.py [--rounds N] [--python PATH ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The ladder's small cell, exhaustive DFS of the patched order: the search every ladder row runs, 18,802 states.
WORKLOAD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from controlled.explorer import explore
from kernel_model.config import Config
from scenarios.loader import load_scenario
sc = load_scenario("ladder", {"pages": 1, "writers": 2, "stores": 1, "passes": 1})
t = time.perf_counter()
r = explore(sc, Config(ordering="delayed"), "dfs")
print(r.states, time.perf_counter() - t)
"""


def candidates(extra: list[str]) -> list[str]:
    """This interpreter, then the distribution's and PATH's python3 and any given, each once (by real path)."""
    found = [sys.executable, "/usr/bin/python3", shutil.which("python3") or "", *extra]
    out, seen = [], set()
    for path in found:
        if not path or not os.path.exists(path):
            continue
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            out.append(path)
    return out


def run_once(python: str) -> tuple[int, float] | None:
    env = {**os.environ, "TLBRACE_PURE_PYTHON": "1", "PYTHONHASHSEED": "0"}
    done = subprocess.run([python, "-c", WORKLOAD, ROOT], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return None  # older than 3.11, or missing a module the model imports
    states, seconds = done.stdout.split()
    return int(states), float(seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--python", action="append", default=[], help="another interpreter to compare")
    args = ap.parse_args()
    pythons = candidates(args.python)
    best: dict[str, float] = {}
    states: dict[str, int] = {}
    print(f"load average {os.getloadavg()[0]:.2f}; {args.rounds} rounds, interpreters taking turns")
    for _ in range(args.rounds):
        for python in pythons:
            got = run_once(python)
            if got is not None:
                states[python] = got[0]
                best[python] = min(best.get(python, float("inf")), got[1])
    base = best.get(pythons[0])
    for python in pythons:
        if python not in best:
            print(f"{python:40} could not run the model")
            continue
        ratio = f"{best[python] / base:.2f}x" if base else "-"
        version = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True,
                                 text=True).stdout.strip()
        print(f"{python:40} {version:8} {states[python]} states, best {best[python]:.2f} s: {ratio} this interpreter's")


if __name__ == "__main__":
    main()
