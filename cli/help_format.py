"""How tlbrace's --help reads: every option says its default. Only argparse is imported (the top-level parser
uses it before any subcommand is chosen)."""

from __future__ import annotations

import argparse


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that says every option's default: "(default: X)" is appended to an option's help unless the help
    already says its default in words (options whose default is None must: "the scenario's [config]", ...);
    a flag's default is "off"."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if not action.option_strings or "default" in text or action.default is argparse.SUPPRESS:
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return f"{text} (default: {'on' if action.default else 'off'})"
        if action.default is None or action.default == []:
            return text  # nothing to show: the help must say it (tests/test_help.py checks every option)
        return f"{text} (default: %(default)s)"


class RawDescriptionDefaultsFormatter(DefaultsFormatter, argparse.RawDescriptionHelpFormatter):
    """DefaultsFormatter for a subcommand whose description is laid out by hand."""
