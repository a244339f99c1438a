"""[[expect]]: end-of-run checks a scenario states, judged by the oracle as expect_failed (both runtimes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlled.explorer import explore
from kernel_model.config import Config
from kernel_model.program import Expect
from scenarios.loader import ScenarioError, load_scenario

# The patch's race with the PoC's read-back stated: after the final sync the file holds the counter's last
# increment. Nothing in it says which interleaving to take.
RACE = """
name = "race_read_back"
[setup]
pages = 1
mapped = true
warm_tlb = ["writer"]
[[threads]]
name = "writer"
program = [{ op = "counter", pages = [0] }]
[[threads]]
name = "zapper"
program = [{ op = "madvise_dontneed", pages = [0] }]
[[threads]]
name = "writeback"
program = [{ op = "msync" }]
[[expect]]
kind = "file_holds_last_store"
thread = "writer"
page = 0
"""

# Two writers to one page, then a sync: the file holds whichever stored last, so an expectation about one of
# them fails in some runs with no data lost at all.
TWO_WRITERS = """
name = "two_writers"
[setup]
pages = 1
[[threads]]
name = "a"
program = [{ op = "store", pages = [0] }]
[[threads]]
name = "b"
program = [{ op = "store", pages = [0] }]
[[threads]]
name = "sync"
program = [{ op = "msync" }]
[[expect]]
kind = "file_holds_last_store"
thread = "a"
page = 0
"""


def scenario(tmp_path: Path, text: str, name: str = "x.toml"):
    path = tmp_path / name
    path.write_text(text)
    return load_scenario(str(path))


def invariants(result) -> set[str]:
    return {i for f in result.found for i in f.invariants}


@pytest.mark.parametrize("ordering, arch", [("delayed", "smp"), ("delayed", "up"), ("delayed", "s390"),
                                            ("eager", "up"), ("eager", "s390")])
def test_the_read_back_holds_with_the_patch_and_without_remote_tlbs(tmp_path, ordering, arch):
    sc = scenario(tmp_path, RACE)
    assert sc.expect == (Expect("file_holds_last_store", "writer", 0),)
    r = explore(sc, Config(ordering=ordering, arch=arch), stop_at_first=False)
    assert r.complete and not r.found, [f.violations for f in r.found]


def test_the_read_back_fails_with_the_eager_order(tmp_path):
    sc = scenario(tmp_path, RACE)
    r = explore(sc, Config(ordering="eager"), stop_at_first=False)
    assert r.complete and "expect_failed" in invariants(r)
    detail = next(v.detail for f in r.found for v in f.violations if v.invariant == "expect_failed")
    assert "writer's last store left" in detail


def test_an_expectation_fails_on_its_own_and_holds_in_other_runs(tmp_path):
    sc = scenario(tmp_path, TWO_WRITERS)
    r = explore(sc, Config(), stop_at_first=False)
    assert r.complete and invariants(r) == {"expect_failed"}
    assert r.schedules > 0  # the runs where a stored last (or the sync came between) end without a violation


def test_an_expectation_turns_writer_symmetry_off(tmp_path):
    sc = scenario(tmp_path, TWO_WRITERS)
    plain = load_scenario(str(_without_expect(tmp_path, TWO_WRITERS)))
    assert explore(plain, Config()).states < explore(sc, Config(), stop_at_first=False).states


def _without_expect(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plain.toml"
    path.write_text(text.split("[[expect]]")[0])
    return path


def test_the_wild_verdict_replays_with_the_expectation(tmp_path):
    """actors.verdict judges a wild trial by replaying its events in a Machine built from the scenario, so the
    expectation travels with the scenario (over the wire too)."""
    from actors.codec import scenario_from_wire, scenario_to_wire

    sc = scenario(tmp_path, RACE)
    assert scenario_from_wire(scenario_to_wire(sc)).expect == sc.expect


@pytest.mark.parametrize("entry, key, needle", [
    ('kind = "file_holds"\nthread = "writer"\npage = 0', "expect[0].kind", "file_holds_last_store"),
    ('kind = "file_holds_last_store"\nthread = "nobody"\npage = 0', "expect[0].thread", "writer, zapper"),
    ('kind = "file_holds_last_store"\nthread = "writer"\npage = 1', "expect[0].page", "<= 0"),
    ('kind = "file_holds_last_store"\nthread = "writer"', "expect[0].page", "missing"),
    ('kind = "file_holds_last_store"\nthread = "writer"\npage = 0\nvalue = 3', "expect[0].value", "unknown key"),
    # A thread that never stores to the page: the check could never fail (it used to pass every run, vacuously).
    ('kind = "file_holds_last_store"\nthread = "zapper"\npage = 0', "expect[0].page", "never stores to page 0"),
])
def test_bad_expectations_name_file_key_and_what_was_expected(tmp_path, entry, key, needle):
    text = RACE.split("[[expect]]")[0] + "[[expect]]\n" + entry + "\n"
    with pytest.raises(ScenarioError) as err:
        scenario(tmp_path, text, "bad.toml")
    assert err.value.key == key and "bad.toml" in str(err.value) and needle in str(err.value)


def test_an_anonymous_scenario_has_no_file_to_expect_from(tmp_path):
    text = RACE.replace("mapped = true", "mapped = true\nanon = true").replace(
        '[[threads]]\nname = "writeback"\nprogram = [{ op = "msync" }]\n', "")
    with pytest.raises(ScenarioError, match="needs a file"):
        scenario(tmp_path, text)


def test_the_cli_refuses_a_bad_expectation_with_exit_2(tmp_path, capsys):
    from cli.main import main

    path = tmp_path / "bad.toml"
    path.write_text(RACE.replace('thread = "writer"', 'thread = 3'))
    assert main(["explore", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "expect[0].thread" in err and "Traceback" not in err
