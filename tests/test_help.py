"""Help that answers: every option of every subcommand says its default in --help, and `tlbrace mutants` lists
each mutant of the one registry with what it does wrong, what it breaks and where it shows."""

from __future__ import annotations

import argparse
import json

import pytest

from analysis.mutant_table import MUTANT_TABLE
from cli.main import build_parser, main
from kernel_model.config import MUTANT_BREAKS, MUTANTS
from kernel_model.mutants import REGISTRY
from kernel_model.oracle import INVARIANTS
from scenarios.loader import list_scenarios


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", sorted(subparsers()))
def test_every_option_says_its_default(command: str) -> None:
    sub = subparsers()[command]
    text = sub.format_help()
    missing = []
    for action in sub._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        shown = sub._get_formatter()._get_help_string(action) or ""
        if "default" not in shown:
            missing.append(action.option_strings[0])
    assert not missing, f"tlbrace {command}: no default in the help of {', '.join(missing)}"
    assert "default" in text


def test_help_names_the_model_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["explore", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "else delayed)" in out and "else smp)" in out and "(default: tlbrace-out)" in out


def test_the_registry_is_the_only_declaration() -> None:
    assert MUTANTS == tuple(m.name for m in REGISTRY) and len(set(MUTANTS)) == len(MUTANTS)
    assert MUTANT_BREAKS == {m.name: m.breaks for m in REGISTRY}
    assert set(MUTANT_TABLE) == set(MUTANTS)
    library = {name for name, _, _ in list_scenarios()}
    for m in REGISTRY:
        assert m.breaks in INVARIANTS, m
        assert m.description and "\n" not in m.description
        assert (m.scenario in library) if m.scenario is not None else m.note, m


def test_mutants_command_lists_each_with_what_it_breaks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mutants", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listed] == list(MUTANTS)
    assert all(m["description"] and m["breaks"] == MUTANT_BREAKS[m["name"]] for m in listed)
    assert main(["mutants"]) == 0
    out = capsys.readouterr().out
    for m in REGISTRY:
        assert m.name in out
    from kernel_model.mutants import BY_NAME
    from cli.cmd_mutants import shown_by

    assert shown_by(BY_NAME["flush_after_unlock"]) == "madv_dontneed --ordering eager --arch up"
    assert shown_by(BY_NAME["free_before_flush"]) == ("anon_pages --gather mmu_gather_bundle=1 "
                                                      "--gather max_gather_batch_count=0")
