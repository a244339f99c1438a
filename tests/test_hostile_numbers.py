"""Numbers past any use on the command line: refused at the door (exit 2, one line naming the option and what it
expects), before Ray starts (session 15's red team; the other bounds are in test_hostile_resources.py)."""

from __future__ import annotations

import pytest

from cli_run import run_cli


@pytest.mark.parametrize("duration", ["99999999999999999999h", "9" * 400 + "s", "367d"])
def test_a_duration_past_a_year_is_refused_not_run_for_ever(capsys, tmp_path, monkeypatch, duration):
    """`--duration 99999999999999999999h` started an unbounded campaign (3,087 trials before a kill), and 400
    nines of seconds was float infinity ("infs" in the progress line)."""
    import cli.cmd_stress

    monkeypatch.setattr(cli.cmd_stress, "open_ray", lambda *_a, **_k: pytest.fail("Ray was started"))
    rc, out, err = run_cli(capsys, "stress", "anon_pages", "--duration", duration, "--out", str(tmp_path))
    assert rc == 2 and not out, (rc, err)
    assert err.startswith("tlbrace: error: --duration ") and "at most 366d" in err and err.count("\n") == 1


def test_a_year_is_still_a_duration():
    from actors.stop_rule import parse_duration

    assert parse_duration("366d") == 366 * 86400


@pytest.mark.parametrize("item, expected", [("max_gather_batch=-1", "expected an integer >= 1, got -1"),
                                            ("mmu_gather_bundle=99999999999999999999", "expected an integer <=")])
def test_a_gather_size_out_of_range_names_the_option(capsys, tmp_path, item, expected):
    """`--gather max_gather_batch=-1` said "tlbrace: error: max_gather_batch: expected an integer >= 1, got -1",
    naming no option: the same words as a scenario's [config] table, whose message names its file."""
    rc, out, err = run_cli(capsys, "explore", "madv_dontneed", "--gather", item, "--out", str(tmp_path))
    assert rc == 2 and not out and err.startswith(f"tlbrace: error: --gather '{item}': "), err
    assert expected in err and err.count("\n") == 1, err
