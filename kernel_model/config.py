"""The knobs of one run: which kernel (ordering), which machine (arch), which gather sizes, which mutant.

Variants are configuration, never forks of the code: the kernel paths read a ``Config``; the oracle never does.
"""

from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import Any, Final

from kernel_model import constants
from kernel_model.mutants import REGISTRY

ORDERINGS: Final = ("eager", "delayed")
ARCHES: Final = ("smp", "up", "s390")
DELAYED_BATCHES: Final = ("active", "local+active")

# Deliberately wrong kernels, declared once in kernel_model/mutants.py (what each does wrong, the invariant it
# breaks, the scenario that shows it). MUTANT_BREAKS is used by tests and docs, never by the oracle.
MUTANTS: Final = tuple(m.name for m in REGISTRY)
MUTANT_BREAKS: Final = {m.name: m.breaks for m in REGISTRY}


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
    # Fixes of issue 15's races 3 and 4 (True: the kernel has it; both are in every kernel since 4.20):
    # eb66ae030829 (v4.20, CVE-2018-18281): move_ptes flushes the old range's TLB before dropping the PTLs.
    mremap_flush_under_ptl: bool = True
    # 3ea277194daa (v4.13): reclaim's deferred flush is recorded in mm->tlb_flush_batched, and mprotect,
    # zap and mremap flush it (flush_tlb_batched_pending) under the PTL before relying on the PTEs they see.
    flush_tlb_batched_pending: bool = True

    def __post_init__(self) -> None:
        _choice("ordering", self.ordering, ORDERINGS)
        _choice("arch", self.arch, ARCHES)
        _choice("delayed_batches", self.delayed_batches, DELAYED_BATCHES)
        if self.mutant is not None:
            _choice("mutant", self.mutant, MUTANTS)
        for key in ("mremap_flush_under_ptl", "flush_tlb_batched_pending"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"{key}: expected true or false, got {getattr(self, key)!r}")
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
