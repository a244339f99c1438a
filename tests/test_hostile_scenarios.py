"""Scenario files as a kernel engineer writes them the first time: misspelled op, key, param and thread names,
names too long for the files and columns they become. Each gets one line that names the file and the key, says
what was expected and, for a misspelling, the name it most likely meant. Each test failed before its fix
(session 14's red team). None needs Ray."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_run import run_cli

from scenarios.loader import ScenarioError, load_scenario

THREAD = '[[threads]]\nname = "w"\nprogram = [{ op = "store", pages = [0] }]\n'


def _error(tmp_path: Path, text: str, params: dict[str, int] | None = None) -> str:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(path), params)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message


@pytest.mark.parametrize("text, key, meant", [
    ('[[thread]]\nname = "w"\nprogram = [{ op = "store", pages = [0] }]\n', "thread", "threads"),
    ('[setup]\nmapd = true\n' + THREAD, "setup.mapd", "mapped"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "madvise_dontned" }]\n', "threads[0].program[0].op",
     "madvise_dontneed"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "STORE", pages = [0] }]\n', "threads[0].program[0].op", "store"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "store", page = [0] }]\n', "threads[0].program[0].page", "pages"),
    ('[params]\nstores = 2\n[[threads]]\nname = "w"\nprogram = [{ op = "store", pages = [0], repeat = "store" }]\n',
     "threads[0].program[0].repeat", "stores"),
    ('[config]\nordering = "eagar"\n' + THREAD, "config.ordering", "eager"),
    ('[setup]\nmapped = true\nwarm_tlb = ["writter"]\n[[threads]]\nname = "writer"\n'
     'program = [{ op = "store", pages = [0] }]\n', "setup.warm_tlb[0]", "writer"),
    ('[[threads]]\nname = "writer"\nprogram = [{ op = "store", pages = [0] }]\n[[expect]]\n'
     'kind = "file_holds_last_stor"\nthread = "writer"\npage = 0\n', "expect[0].kind", "file_holds_last_store"),
])
def test_a_misspelled_name_is_answered_with_the_name_it_meant(tmp_path, text, key, meant):
    """Before, the error listed every allowed name and left the reader to spot the typo (an op list of 14)."""
    message = _error(tmp_path, text)
    assert f"{key}:" in message and f"did you mean {meant!r}?" in message, message


def test_a_name_nothing_resembles_gets_no_guess(tmp_path):
    message = _error(tmp_path, '[[threads]]\nname = "w"\nprogram = [{ op = "xyzzy" }]\n')
    assert "xyzzy" in message and "did you mean" not in message and "store" in message, message


def test_a_misspelled_param_override_and_library_name_are_answered(capsys):
    with pytest.raises(ScenarioError, match=r"unknown param 'pases' \(did you mean 'passes'\?\)"):
        load_scenario("madv_dontneed", {"pases": 2})
    rc, _, err = run_cli(capsys, "explore", "madv_dontned")
    assert rc == 2 and "did you mean 'madv_dontneed'?" in err and "Traceback" not in err, err


def test_a_scenario_name_longer_than_file_names_allow_is_refused(tmp_path):
    """A name of 300 characters loaded (the 64-character rule's pattern was shadowed by the thread names' one),
    and `explore --out` ran its whole search before the file named after it could not be created."""
    message = _error(tmp_path, f'name = "{"a" * 300}"\n' + THREAD)
    assert "name:" in message and "at most 64 characters" in message, message


def test_a_scenario_name_with_a_dot_loads_as_documented(tmp_path):
    """The rule says letters, digits, '_', '-' and '.' (not first): 'my.race' was refused with that very rule."""
    path = tmp_path / "mine.toml"
    path.write_text('name = "my.race"\n' + THREAD)
    assert load_scenario(str(path)).name == "my.race"
    path.write_text('name = ".hidden"\n' + THREAD)
    with pytest.raises(ScenarioError, match="name:"):
        load_scenario(str(path))


def test_a_thread_name_is_bounded(tmp_path):
    """A thread name of 5,000 characters loaded and headed every story column, log event and message."""
    message = _error(tmp_path, f'[[threads]]\nname = "{"w" * 5000}"\nprogram = [{{ op = "store", pages = [0] }}]\n')
    assert "threads[0].name:" in message and "at most 64 characters" in message and "5,000 characters" in message
    assert len(message) < 400, message
    path = tmp_path / "ok.toml"
    path.write_text(f'[[threads]]\nname = "{"w" * 64}"\ncount = 2\nprogram = [{{ op = "store", pages = [0] }}]\n')
    assert [t.name for t in load_scenario(str(path)).threads] == ["w" * 64 + "0", "w" * 64 + "1"]


def test_an_error_naming_a_path_with_control_characters_stays_one_line(capsys, tmp_path):
    """A scenario path with a newline split the error over two lines; one with ESC [31m turned the terminal red."""
    path = tmp_path / "evil\nname\x1b[31m\u202e.toml"
    path.write_text('name = "x"\n' + THREAD)
    rc, out, err = run_cli(capsys, "explore", str(path), "--param", "x=1")
    assert rc == 2 and not out
    assert err.count("\n") == 1 and "\x1b" not in err and "\u202e" not in err, repr(err)
    assert "evil\\nname\\x1b[31m\\u202e.toml" in err and "params.x" in err
