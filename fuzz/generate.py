"""Random scenarios for ``tlbrace fuzz``: drawn as a spec, written as library-format TOML, loaded by the loader.

A scenario is drawn from its own seed, derived from (campaign seed, index) alone, so scenario i is the same
whether a campaign runs serially, on Ray, or resumes in the middle. The spec is what the shrinker edits; its TOML
text is what a user could have written, and it is loaded through ``scenarios.loader`` exactly as a user's file
is, so the fuzzer never explores a scenario the command line would refuse.

Shape (the issue's): 2-4 threads, 1-3 pages, programs of 1-3 operations drawn from every op
(``fuzz.ops``), file or anonymous memory, and the setup's knobs: mapped, dirty, warm_tlb,
write_notify, ptes_per_table.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace
from typing import Any

from fuzz.ops import ZAP_KINDS, OpTable, Where, draw_op
from kernel_model.program import Scenario

MIN_THREADS, MAX_THREADS = 2, 4
MIN_PAGES, MAX_PAGES = 1, 3
OPS_WEIGHTS = (5, 3, 2)  # chances of 1, 2 and 3 operations per thread (before loops and repeats): short
# programs keep most state spaces within a bounded search, and three short threads are what a race needs
PTES_PER_TABLE_CHOICES = (1, 2)  # besides the default 512: pages on different PTE tables (split PTLs)


@dataclass(frozen=True, slots=True)
class Spec:
    """A scenario as the fuzzer draws and shrinks it: the [setup] table and each thread's program."""

    pages: int
    setup: dict[str, Any] = field(default_factory=dict)  # [setup] keys other than pages and warm_tlb
    warm_tlb: tuple[str, ...] = ()
    threads: tuple[tuple[str, tuple[OpTable, ...]], ...] = ()

    @property
    def ops(self) -> int:
        """Operations written, loop bodies included: what the shrinker makes fewer."""
        return sum(_count_ops(ops) for _, ops in self.threads)

    def size(self) -> tuple[int, int, int]:
        """(threads, operations, pages): smaller is simpler, in that order."""
        return (len(self.threads), self.ops, self.pages)

    def with_threads(self, threads: tuple[tuple[str, tuple[OpTable, ...]], ...]) -> "Spec":
        names = {n for n, _ in threads}
        return replace(self, threads=threads, warm_tlb=tuple(n for n in self.warm_tlb if n in names))


def _count_ops(ops: tuple[OpTable, ...] | list[OpTable]) -> int:
    return sum(1 + (_count_ops(op["body"]) if op["op"] == "loop" else 0) for op in ops)


def scenario_seed(seed: int, index: int) -> int:
    """Scenario ``index``'s own seed: independent of every other scenario's (63 bits)."""
    digest = hashlib.sha256(f"tlbrace-fuzz:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def scenario_name(seed: int, index: int) -> str:
    return f"fuzz-{seed}-{index}"


def generate(seed: int, index: int) -> Spec:
    """Scenario ``index`` of the campaign ``seed``."""
    rng = random.Random(scenario_seed(seed, index))
    pages = rng.randint(MIN_PAGES, MAX_PAGES)
    nthreads = rng.randint(MIN_THREADS, MAX_THREADS)
    anon = rng.random() < 0.25
    mapped = rng.random() < 0.75
    setup: dict[str, Any] = {"mapped": mapped}
    if anon:
        setup["anon"] = True
    if rng.random() < 0.25:
        setup["dirty"] = False
    if not anon and rng.random() < 0.25:
        setup["write_notify"] = False
    if pages > 1 and rng.random() < 0.3:
        setup["ptes_per_table"] = rng.choice(PTES_PER_TABLE_CHOICES)
    names = [f"t{i}" for i in range(nthreads)]
    warm = tuple(n for n in names if mapped and rng.random() < 0.6)
    programs: list[list[OpTable]] = []
    for name in names:
        where = Where(pages, anon, mapped, name in warm, 0)
        nops = rng.choices(range(1, len(OPS_WEIGHTS) + 1), OPS_WEIGHTS)[0]
        programs.append([draw_op(rng, where) for _ in range(nops)])
    _end_counters(rng, programs, pages)
    return Spec(pages, setup, warm, tuple((n, tuple(p)) for n, p in zip(names, programs)))


def _end_counters(rng: random.Random, programs: list[list[OpTable]], pages: int) -> None:
    """A counter runs until a zap's flush takes its translation away, so the loader asks for another thread
    that zaps its page: give one to a random other thread when none does (a counter no one stops is a scenario
    the loader refuses, not a finding)."""
    for tid, program in enumerate(programs):
        for page in sorted({op["pages"][0] for op in _walk(program) if op["op"] == "counter"}):
            others = [u for u in range(len(programs)) if u != tid]
            if not any(_zaps(op, page, pages) for u in others for op in _walk(programs[u])):
                programs[rng.choice(others)].append({"op": rng.choice(ZAP_KINDS), "pages": [page]})


def uses(spec: Spec, kinds: frozenset[str]) -> bool:
    """Does some thread's program (loop bodies included) use one of these operations?"""
    return any(op["op"] in kinds for _, ops in spec.threads for op in _walk(ops))


def kinds_of(spec: Spec) -> frozenset[str]:
    """The operation kinds some thread's program uses (loop bodies included)."""
    return frozenset(op["op"] for _, ops in spec.threads for op in _walk(ops))


def _walk(ops: list[OpTable] | tuple[OpTable, ...]) -> list[OpTable]:
    out: list[OpTable] = []
    for op in ops:
        out.append(op)
        if op["op"] == "loop":
            out.extend(_walk(op["body"]))
    return out


def _zaps(op: OpTable, page: int, pages: int) -> bool:
    return op["op"] in ZAP_KINDS and page in op.get("pages", range(pages))


# --- TOML -------------------------------------------------------------------------------------------------


def to_toml(spec: Spec, name: str, description: str = "") -> str:
    """The scenario file for ``spec`` in the library's format (scenarios/loader.py)."""
    lines = [f"name = {_value(name)}"]
    if description:
        lines.append(f"description = {_value(description)}")
    lines += ["", "[setup]", f"pages = {spec.pages}"]
    lines += [f"{k} = {_value(v)}" for k, v in spec.setup.items()]
    if spec.warm_tlb:
        lines.append(f"warm_tlb = {_value(list(spec.warm_tlb))}")
    for tname, ops in spec.threads:
        lines += ["", "[[threads]]", f"name = {_value(tname)}", f"program = {_value(list(ops))}"]
    return "\n".join(lines) + "\n"


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML form for {v!r}")


def load_spec(spec: Spec, name: str, description: str = "") -> tuple[Scenario, str]:
    """The scenario a user would get from ``spec``'s file, and that file's text. A spec the loader refuses
    raises its ScenarioError (a ValueError naming the key)."""
    text = to_toml(spec, name, description)
    return scenario_from_text(text, name), text


def scenario_from_text(text: str, name: str) -> Scenario:
    """A scenario file's text through the loader, as if it were the file ``name``.toml."""
    from logs.schedule_file import scenario_from_source

    return scenario_from_source(name, text, {})
