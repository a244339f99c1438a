"""The orderings that are different kernels on an arch: shared by the tests that search every kernel once."""

from __future__ import annotations

from kernel_model.config import ORDERINGS


def kernel_orderings(arch: str) -> tuple[str, ...]:
    """The orderings that are different kernels on ``arch``. tlb_delay_rmap() is constant false on UP and s390
    (asm-generic/tlb.h; Kctx.tlb_delay_rmap_possible is the model's only reader of the ordering): there the
    delayed kernel is the eager one, one state graph (the same states, transitions and end states on every
    library scenario, session 18), searched once. tests/test_sleep_sets.py's
    test_eager_and_delayed_are_one_kernel_off_smp keeps it true."""
    return ORDERINGS if arch == "smp" else ("eager",)
