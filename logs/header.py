"""A log's or schedule's header back to the run it describes: the scenario (from the TOML text it carries) and
the configuration. Shared by the log readers (analysis) and the schedule files, so that neither imports the
other (issue 13).
"""

from __future__ import annotations

from typing import Any

from kernel_model.config import Config
from kernel_model.program import Scenario
from scenarios import loader


class AnalysisError(ValueError):
    """The log is readable but cannot be analysed (its scenario cannot be rebuilt): bad input, exit 2."""


def scenario_from_header(header: dict[str, Any]) -> Scenario:
    """Rebuild the Scenario from the TOML text the header carries (or, lacking it, from the library by name)."""
    params = {str(k): int(v) for k, v in (header.get("params") or {}).items()}
    source = header.get("scenario_source") or ""
    name = str(header.get("scenario") or "scenario")
    try:
        if not source:
            # A header never makes tlbrace open a path: without the scenario's text, only a library name will do.
            if name not in loader.library_names():
                raise AnalysisError(f"the header carries no scenario_source, and {name[:80]!r} is not a library "
                                    f"scenario (a header never names a file to open)")
            return loader.load_scenario(name, params)
        return loader.load_scenario_text(source, params, name=name)
    except ValueError as exc:  # ScenarioError is a ValueError
        raise AnalysisError(f"cannot rebuild scenario {name!r} from the log header: {exc}") from None


def config_from_header(header: dict[str, Any]) -> Config:
    """Only to rebuild the machine the logged steps replay on; the verdict never consults it."""
    try:
        return Config.from_dict(dict(header.get("config") or {}))
    except (ValueError, TypeError) as exc:
        raise AnalysisError(f"the log header's config is not usable: {exc}") from None
