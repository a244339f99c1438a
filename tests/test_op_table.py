"""The op table (kernel_model.ops) is the one declaration of every atomic op: every op a kernel path can yield
is in it, every property it declares is read by some consumer, and the views the runtimes use are derived from it
(no second hand-kept list)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import random
import re
from pathlib import Path

import pytest

from actors import cpu as cpu_actor
from controlled import machine, positions, reduction
from controlled.machine import Machine
from kernel_model import ops, oracle, steps
from kernel_model.atomic import PageTableOps
from kernel_model.config import MUTANTS, Config
from kernel_model.tlb import PageTableAccess
from scenarios.loader import library_names, load_scenario

ROOT = Path(__file__).resolve().parent.parent


def _yielded_in_source() -> set[str]:
    """The op of every ``Step(fn, op, ...)`` the kernel paths construct (each must be a literal)."""
    found: set[str] = set()
    for path in (ROOT / "kernel_model").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Step":
                op = node.args[1] if len(node.args) > 1 else None
                assert isinstance(op, ast.Constant) and isinstance(op.value, str), \
                    f"{path.name}:{node.lineno}: a Step whose op is not a literal: the table check cannot see it"
                found.add(op.value)
    return found


def test_every_op_a_path_yields_is_declared() -> None:
    yielded = _yielded_in_source()
    assert len(yielded) > 30  # the scan found the paths
    # The flush IPI handler's halves are Steps too (kernel_model.tlb.flush_ipi_handler), run as "ipi" events.
    handler = {n for n, spec in ops.OPS.items() if spec.event == "ipi"}
    assert yielded <= ops.STEP_OPS | handler, sorted(yielded - ops.STEP_OPS - handler)
    assert ops.STEP_OPS <= yielded, f"declared, never yielded: {sorted(ops.STEP_OPS - yielded)}"


def test_every_page_table_action_is_declared() -> None:
    """PageTableOps' actions (not the can_<op> tests, nor the walk and page accesses the CPU ops make through
    tlb.PageTableAccess) are the table's "pt" and "block" ops (wait_acks blocks on the CPU's IPI count)."""
    helpers = {n for n in vars(PageTableAccess) if not n.startswith("_")}
    actions = {n for n in dir(PageTableOps) if not n.startswith(("_", "can_"))} - helpers
    declared = {n for n, s in ops.OPS.items() if s.kind in ("pt", "block")} - {"wait_acks"}
    assert actions == declared
    for op in ops.BLOCKING_OPS - {"wait_acks"}:
        assert hasattr(PageTableOps, "can_" + op), op


@pytest.mark.parametrize("name", library_names())
def test_every_op_a_run_takes_is_declared(name: str) -> None:
    """Random schedules of each library scenario, any ordering and mutant: every step and IPI event is an op of
    the table, of the kind the table says."""
    sc = load_scenario(name)
    rng = random.Random(13)
    seen: set[tuple[str, str]] = set()
    for _ in range(10):
        cfg = Config.from_dict({**sc.config, "ordering": rng.choice(["eager", "delayed"]),
                                "mutant": rng.choice([None, *MUTANTS])})
        m = Machine(sc, cfg, record=True)
        for _ in range(300):
            enabled = m.enabled()
            if m.run_ends(enabled):
                break
            m.execute(rng.choice(enabled))
        seen |= {(e.kind, e.op) for e in m.events if e.kind != "note"}
    assert seen
    for kind, op in seen:
        assert op in ops.OPS and ops.OPS[op].event == kind, (kind, op)


def test_the_runtimes_read_views_of_the_table() -> None:
    # Equal, not identical: a compiled module may hold its own copy of a constant it imported.
    assert steps.CPU_OPS == ops.CPU_OPS and steps.BLOCKING_OPS == ops.BLOCKING_OPS and steps.IPI_OPS == ops.IPI_OPS
    assert cpu_actor.PIPELINED_OPS == ops.PIPELINED_OPS
    assert machine._UNREAD_RESULTS == ops.UNREAD_RESULTS
    assert positions.CONTEXT_OPS == ops.CONTEXT_OPS and oracle.MAY_END_COVERING_CALL == ops.MAY_END_COVERING_CALL
    assert reduction.FOOTPRINTS == ops.FOOTPRINTS
    for kind in ("step", "ipi"):
        assert oracle.OBSERVED_OPS[kind] == ops.observed_ops(kind, tlb=False)
        assert oracle.TLB_OPS[kind] == ops.observed_ops(kind, tlb=True)
    for op, spec in ops.OPS.items():
        if spec.event == "step":
            assert steps.kind_of(op) == spec.kind
    views = (ops.CPU_OPS, ops.BLOCKING_OPS, ops.IPI_OPS, ops.PIPELINED_OPS, ops.UNREAD_RESULTS, ops.CONTEXT_OPS,
             ops.MAY_END_COVERING_CALL, oracle.OBSERVED_OPS["step"], oracle.TLB_OPS["step"], oracle.TLB_OPS["ipi"])
    assert all(views)


def test_every_declared_property_is_read() -> None:
    """Each field of OpSpec and Format sets some entry apart (not every entry has the default), and is read
    outside its declaration: by ops.py's derived views or by a consumer module."""
    consumers = "".join((ROOT / p).read_text() for p in ("analysis/story.py", "analysis/diagram.py"))
    derived = (ROOT / "kernel_model/ops.py").read_text().split("# Views derived once")[1]
    derived += inspect.getsource(ops.Format)  # Format.name and Format.call read short and args for the renderers
    for cls, entries in ((ops.OpSpec, list(ops.OPS.values())), (ops.Format, [s.fmt for s in ops.OPS.values()])):
        for f in dataclasses.fields(cls):
            values = {repr(getattr(e, f.name)) for e in entries}
            assert len(values) > 1, f"{cls.__name__}.{f.name} is the same for every op: it declares nothing"
            if f.name in ("name", "fmt"):
                continue  # the key, and the format itself (its fields are checked next)
            read = re.search(rf"\.{f.name}\b", derived + consumers)
            assert read, f"{cls.__name__}.{f.name}: nothing reads it"


def test_pipelined_ops_return_nothing_and_never_block() -> None:
    for op in ops.PIPELINED_OPS:
        spec = ops.OPS[op]
        assert spec.kind == "pt" and not spec.result_read, op


def test_the_footprint_table_covers_every_step_op() -> None:
    missing = {op for op in ops.STEP_OPS if op not in ops.FOOTPRINTS}
    assert not missing, sorted(missing)


def test_every_op_has_a_story_line() -> None:
    """Every step and IPI op, with arguments of its shape, is written by its format (no renderer falls back)."""
    from kernel_model.events import Event
    from analysis.story import describe

    sc = load_scenario("madv_dontneed")
    cfg = Config.from_dict({**sc.config, "ordering": "eager"})
    m = Machine(sc, cfg, record=True)
    rng = random.Random(3)
    while not m.run_ends(enabled := m.enabled()):
        m.execute(rng.choice(enabled))
    names = [t.name for t in sc.threads]
    for e in m.events:
        line = describe(e, names)
        if e.kind != "note" and ops.OPS[e.op].fmt.story:
            assert line is not None and line.startswith(f"{e.fn}: ") and e.op in line, line
    assert isinstance(describe(Event(0, 0, 0, "step", "f", "pte_none", (0,), True), names), str)


def test_every_user_operation_has_one_kernel_path() -> None:
    """program.OP_KINDS (what a scenario may write) and syscalls.KERNEL_PATHS (what runs it) name the same
    operations; ``loop`` is the loader's, flattened before any path runs."""
    from kernel_model.program import OP_KINDS
    from kernel_model.syscalls import KERNEL_PATHS

    assert set(KERNEL_PATHS) == set(OP_KINDS) - {"loop"}
