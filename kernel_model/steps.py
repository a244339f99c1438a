"""The vocabulary between kernel paths and the runtimes that drive them (sans-I/O).

A kernel path is a generator. It yields a ``Step`` (one atomic action on shared state or on its CPU's TLB) and
receives the action's result; or it yields a ``Note`` (a record of something the path did to its own local
state, such as the mmu_gather on its stack) and receives ``None``. Whoever runs the generator decides when each
step happens and where the state lives: the controlled machine applies steps to one in-process ``State``, the
Ray CPU actor applies TLB steps itself and sends the rest to the page-table actor.

A step is a scheduling point; a note is not (it touches nothing another CPU can see).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Generator

from kernel_model import ops


@dataclass(frozen=True, slots=True)
class Step:
    fn: str  # the kernel function that performs the action, e.g. "zap_pte_range"
    op: str  # the atomic action, e.g. "ptep_get_and_clear_full"
    args: tuple = ()


@dataclass(frozen=True, slots=True)
class Note:
    fn: str
    op: str
    args: tuple = ()


Path = Generator["Step | Note", Any, Any]

# Where each action runs, whether it waits, whether it starts a shootdown: views of the op table
# (kernel_model.ops), derived there once at import. Every op is declared in that table.
CPU_OPS: Final = ops.CPU_OPS  # on the thread's CPU and its TLB
# Actions that wait: enabled only when they can proceed. The waiting CPU keeps servicing flush IPIs.
BLOCKING_OPS: Final = ops.BLOCKING_OPS
# The initiator of a TLB shootdown: queue flush_tlb_func on every other CPU in mm_cpumask.
IPI_OPS: Final = ops.IPI_OPS
_KIND: Final = ops.KIND


def kind_of(op: str) -> str:
    """"cpu", "block", "ipi", or "pt" (a page-table-actor op on ``PageTableOps``)."""
    return _KIND.get(op, "pt")
