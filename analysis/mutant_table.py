"""Where each deliberately wrong kernel shows: the library scenario and base configuration in which the explorer
catches the mutant, by the invariant it breaks, derived from the mutant registry (kernel_model/mutants.py, where
each mutant is declared once). The base configuration without the mutant is clean. Shared by the explorer's tests
and scripts/wild_mutants.py (the same table under real scheduling). None: not observable (the registry's note
says why)."""

from __future__ import annotations

from typing import Final

from kernel_model.mutants import REGISTRY

MUTANT_TABLE: Final[dict[str, tuple[str, dict[str, object]] | None]] = {
    m.name: (m.scenario, dict(m.config)) if m.scenario is not None else None for m in REGISTRY
}
