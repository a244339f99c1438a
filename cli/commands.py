"""The subcommands by name, each with its one-line help, and a subparsers action that builds only the ones used.

Building the parser imported every ``cli.cmd_<name>`` (and with them rich, structlog and the search) before any
command ran: `tlbrace --help` took 15 times a bare interpreter's start, `tlbrace mutants` 13 (bench/import_time.py).
Now the top-level parser lists the names and one-line helps from here, and a subcommand's module is imported when
its parser is first looked up: by argparse, for the subcommand the command line names.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterator, Mapping
from typing import Any, Final

SUMMARIES: Final[dict[str, str]] = {
    "scenarios": "list the library scenarios",
    "mutants": "list the mutants: what each breaks and where it shows",
    "explore": "search schedules in the controlled runtime (deterministic)",
    "replay": "replay a schedule file or a wild trial's log in the controlled runtime",
    "shrink": "minimise a failing schedule file",
    "run": "one wild trial on Ray actors; its per-CPU story if it fails",
    "stress": "many wild trials on Ray actors, with a summary",
    "analyze": "judge logged trials by replay; explain and draw violations",
    "scale": "scaling experiments across simulated CPUs: CSV, table and plots",
    "report": "write one self-contained HTML page about the campaigns in DIR",
    "fuzz": "explore random scenarios: the model's differential test",
    "history": "explore a scenario on each kernel release: verdicts, table, PNG",
}


class LazySubcommands(argparse._SubParsersAction):
    """``add_subparsers(action=LazySubcommands)``: every subcommand is listed (SUMMARIES: its one-line help) and
    accepted; its parser is built (``cli.cmd_<name>.add_parser``) the first time it is looked up, which argparse
    does for the subcommand being run, and anyone reading ``choices[name]`` (tests/test_help.py) for theirs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._name_parser_map = self.choices = _Parsers(self)  # type: ignore[assignment]
        self._choices_actions = [self._ChoicesPseudoAction(name, (), text) for name, text in SUMMARIES.items()]

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        """Called by the subcommand's own add_parser: its line in the listing is SUMMARIES'."""
        kwargs.pop("help", None)
        kwargs.setdefault("prog", f"{self._prog_prefix} {name}")
        parser = self._parser_class(**kwargs)
        self._name_parser_map.built[name] = parser  # type: ignore[attr-defined]
        return parser


class _Parsers(Mapping[str, argparse.ArgumentParser]):
    """The subcommands' parsers by name: iterating and ``in`` need only the names; a look-up builds the parser."""

    def __init__(self, action: LazySubcommands) -> None:
        self.action = action
        self.built: dict[str, argparse.ArgumentParser] = {}

    def __getitem__(self, name: str) -> argparse.ArgumentParser:
        if name not in self.built and name in SUMMARIES:
            importlib.import_module(f"cli.cmd_{name}").add_parser(self.action)
        return self.built[name]

    def __contains__(self, name: object) -> bool:
        return name in SUMMARIES

    def __iter__(self) -> Iterator[str]:
        return iter(SUMMARIES)

    def __len__(self) -> int:
        return len(SUMMARIES)
