"""The knobs of one run: which kernel (ordering), which machine (arch), which gather sizes, which mutant.

Variants are configuration, never forks of the code: the kernel paths read a ``Config``; the oracle never does.
"""

from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import Any, Final

from kernel_model import constants

ORDERINGS: Final = ("eager", "delayed")
ARCHES: Final = ("smp", "up", "s390")
DELAYED_BATCHES: Final = ("active", "local+active")

# Deliberately wrong kernels. Each exists to prove that the oracle catches what it claims to catch;
# MUTANT_BREAKS names the invariant each one is expected to trip (used by tests and docs, never by the oracle).
MUTANTS: Final = (
    "free_before_flush",  # tlb_flush_mmu_free runs before tlb_flush_mmu_tlbonly
    "flush_after_unlock",  # pre-1cf35d47712d: the forced flush happens after pte_unmap_unlock
    "delayed_rmap_after_unlock",  # Linus's first version: delayed rmaps removed after dropping the PTL
    "no_set_page_dirty",  # zap forgets to move the PTE dirty bit into PG_dirty
    "delayed_in_any_batch",  # tlb_next_batch ignores delayed_rmap and starts new batches
    "skip_tlb_flush_rmaps",  # the delayed rmap removal never happens
    "mkclean_ignores_result",  # folio_clear_dirty_for_io drops folio_mkclean's result
    "no_folio_lock_in_fault",  # the shared-file fault paths dirty the page without the folio lock
    "double_ptl",  # zap takes the PTL a second time (self-deadlock)
    "no_ipi_while_spinning",  # a CPU spinning on a PTL or waiting for acks does not service flush IPIs
    "fault_without_page_ref",  # the file fault drops its folio reference before the PTE is set
)
MUTANT_BREAKS: Final = {
    "free_before_flush": "freed_while_mapped",
    "flush_after_unlock": "lost_dirty_data",
    "delayed_rmap_after_unlock": "delayed_rmap_after_unlock",
    "no_set_page_dirty": "lost_dirty_data",
    "delayed_in_any_batch": "delayed_outside_active_batch",
    "skip_tlb_flush_rmaps": "delayed_rmap_after_unlock",
    "mkclean_ignores_result": "lost_dirty_data",
    "no_folio_lock_in_fault": "lost_dirty_data",
    "double_ptl": "hang",
    "no_ipi_while_spinning": "hang",
    "fault_without_page_ref": "freed_while_mapped",
}


class ConfigError(ValueError):
    """A configuration value is not one the model knows; the message names the key and the choices."""


@dataclass(frozen=True, slots=True)
class Config:
    ordering: str = "delayed"
    arch: str = "smp"
    delayed_batches: str = "active"
    max_gather_batch: int = constants.MAX_GATHER_BATCH
    max_gather_batch_count: int = constants.MAX_GATHER_BATCH_COUNT
    mmu_gather_bundle: int = constants.MMU_GATHER_BUNDLE
    mutant: str | None = None

    def __post_init__(self) -> None:
        _choice("ordering", self.ordering, ORDERINGS)
        _choice("arch", self.arch, ARCHES)
        _choice("delayed_batches", self.delayed_batches, DELAYED_BATCHES)
        if self.mutant is not None:
            _choice("mutant", self.mutant, MUTANTS)
        for key, low in (("max_gather_batch", 1), ("max_gather_batch_count", 0), ("mmu_gather_bundle", 1)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{key}: expected an integer >= {low}, got {value!r}")

    @property
    def smp(self) -> bool:
        return self.arch == "smp"

    def has(self, mutant: str) -> bool:
        return self.mutant == mutant

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown configuration key(s): {', '.join(sorted(unknown))}")
        return cls(**data)


def _choice(key: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
