"""The knobs of one run: which kernel (ordering, the fixes it lacks), which machine (arch), which gather sizes,
which mutant.

Variants are configuration, never forks of the code: the kernel paths read a ``Config``; the oracle never does.
"""

from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import Any, Final

from kernel_model import constants
from kernel_model.kernels import MUTANT_ALIASES, SWITCHES
from kernel_model.mutants import REGISTRY

ORDERINGS: Final = ("eager", "delayed")
ARCHES: Final = ("smp", "up", "s390")
DELAYED_BATCHES: Final = ("active", "local+active")

# Deliberately wrong kernels, declared once in kernel_model/mutants.py (what each does wrong, the invariant it
# breaks, the scenario that shows it). MUTANT_BREAKS is used by tests and docs, never by the oracle.
MUTANTS: Final = tuple(m.name for m in REGISTRY)
# A gather size past this is no kernel's (510 and 19 are; a scenario has at most 65536 pages) and would not fit
# the 64-bit msgpack integers schedules, logs and results files hold (a 10**20 was an internal error on writing).
MAX_GATHER_SIZE: Final = 1 << 20
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
    # The fix switches of kernel_model.kernels this kernel lacks (an older kernel); () is the newest kernel. The
    # seed's fix and its follow-up are the ordering and delayed_batches keys, as before the registry.
    without: tuple[str, ...] = ()
    # Reclaim defers its TLB flush (TTU_BATCH_FLUSH, set_tlb_ubc_flush_pending): since 72b252aed506 (v4.3). Not a
    # fix but the feature that opened 3ea277194daa's window; False (kernel_config of a release before 4.3):
    # try_to_unmap_one flushes at once (ptep_clear_flush), as every kernel did before.
    batched_unmap_flush: bool = True
    # munmap detaches the VMAs under mmap_lock write, then downgrades it to read for unmap_region: since
    # dd2283f2605e "mm: mmap: zap pages with read mmap_sem in munmap" (v4.20). False (a release before 4.20): the
    # write lock is held to the end, so no MADV_DONTNEED, fault or other mmap_lock reader overlaps the zap.
    munmap_downgrade: bool = True
    # kswapd writes a dirty file folio only when it has seen it before (PG_reclaim set by an earlier pass):
    # since 4eda48235011 "mm: vmscan: only write dirty pages that the scanner has seen twice" (v4.11). False (a
    # release before 4.11): with PGDAT_DIRTY (modelled as set) kswapd writes it on the first pass
    # (kernel_model.reclaim.may_pageout).
    reclaim_seen_twice: bool = True
    # zap_pte_range forces the TLB flush before pte_unmap_unlock for a dirty file PTE where tlb_delay_rmap is
    # false (UP, s390), as every release from 1cf35d47712d (3.15) to 6.1 did (`force_flush = 1`). 5df397dec7c4
    # (6.2) moved that line inside `if (tlb_delay_rmap(tlb))`, which is constant false on UP and s390: a release
    # from 6.2 (`--kernel`, kernels.kernel_config) has False, and a UP zapper preempted after the unlock leaves
    # its CPU's stale dirty entry to the next task (docs/up-v6.2.md). True by default: the brief's UP mode (§3)
    # is the old order with that flush, whose checker passes. s390 does not need it (its PTE clear flushes).
    zap_dirty_forces_flush: bool = True
    # mprotect runs in an mmu_gather (tlb_gather_mmu .. tlb_finish_mmu in do_mprotect_pkey): since 4a18419f71cd
    # "mm/mprotect: use mmu_gather" (v6.0). Its tlb_finish_mmu then flushes the range whenever another gather of
    # the mm is in flight (mm_tlb_flush_nested), even if mprotect changed no PTE. False (a release before 6.0):
    # change_protection_range flushes only if it changed a PTE (kernel_model.mprotect).
    mprotect_gathers: bool = True

    def __post_init__(self) -> None:
        without = tuple(self.without) if isinstance(self.without, list) else self.without  # a list: from a log
        if not isinstance(without, tuple) or any(w not in SWITCHES for w in without):
            raise ConfigError(f"without: expected a list of fix switches among {', '.join(SWITCHES)}, got "
                              f"{self.without!r}")
        object.__setattr__(self, "without", tuple(sorted(set(without), key=SWITCHES.index)))  # one spelling
        _choice("ordering", self.ordering, ORDERINGS)
        _choice("arch", self.arch, ARCHES)
        _choice("delayed_batches", self.delayed_batches, DELAYED_BATCHES)
        if self.mutant is not None:
            _choice("mutant", self.mutant, MUTANTS)
        for key in ("batched_unmap_flush", "munmap_downgrade", "reclaim_seen_twice", "zap_dirty_forces_flush",
                    "mprotect_gathers"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"{key}: expected true or false, got {getattr(self, key)!r}")
        for key, low in (("max_gather_batch", 1), ("max_gather_batch_count", 0), ("mmu_gather_bundle", 1)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{key}: expected an integer >= {low}, got {value!r}")
            if value > MAX_GATHER_SIZE:
                raise ConfigError(f"{key}: expected an integer <= {MAX_GATHER_SIZE}, got {value!r}")

    @property
    def smp(self) -> bool:
        return self.arch == "smp"

    def has(self, mutant: str) -> bool:
        return self.mutant == mutant

    def fixed(self, fix: str) -> bool:
        """Does this kernel have the fix switch ``fix`` (kernel_model.kernels)? A mutant that is an old name for
        a missing fix (MUTANT_ALIASES) turns it off too."""
        assert fix in SWITCHES, f"{fix!r} is not a fix switch of kernel_model.kernels"
        return fix not in self.without and MUTANT_ALIASES.get(self.mutant or "") != fix

    def to_dict(self) -> dict[str, Any]:
        """As logs, schedule and results files store it (msgpack and JSON give lists back, so a list here)."""
        return {**asdict(self), "without": list(self.without)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown configuration key(s): {', '.join(sorted(unknown))}")
        return cls(**data)


def _choice(key: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
