"""scripts/check_structure.py can fail: on a small synthetic project with a planted import cycle (closed by an
import inside a function), a planted grade-D function and a kernel_model that imports from outside itself, it
reports each of them and ``--strict`` exits 1; on the same project without them it reports none and exits 0."""

from __future__ import annotations

import runpy
import textwrap
from pathlib import Path

CHECKER = runpy.run_path(str(Path(__file__).resolve().parent.parent / "scripts" / "check_structure.py"))


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def branchy(name: str, branches: int) -> str:
    """A function of cyclomatic complexity ``branches + 1``."""
    body = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(branches))
    return f"def {name}(x):\n{body}    return -1\n"


CLEAN = {
    "kernel_model/__init__.py": "",
    "kernel_model/paths.py": "from kernel_model import state\n",
    "kernel_model/state.py": "X = 1\n",
    "app/__init__.py": "",
    "app/cli.py": "from app import cmd_go\nfrom kernel_model.paths import state\n",
    "app/cmd_go.py": "import kernel_model.state\n",
    "app/small.py": branchy("fine", 19),
}


def run(root: Path, *args: str) -> tuple[int, str]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = CHECKER["main"](["--root", str(root), *args])
    return code, out.getvalue()


def test_a_clean_project_breaks_no_rule(tmp_path):
    write(tmp_path, CLEAN)
    code, out = run(tmp_path, "--strict")
    assert code == 0, out
    assert "import cycles at module level: 0" in out
    assert "kernel_model imports from outside itself: 0" in out
    assert "blocks graded D-F (cyclomatic complexity > 20): 0" in out
    assert "rules broken: 0" in out


def test_planted_cycle_complexity_and_outside_import_are_each_reported(tmp_path):
    write(tmp_path, {
        **CLEAN,
        # cmd_go imports cli only inside a function: still a cycle cli -> cmd_go -> cli
        "app/cmd_go.py": "import kernel_model.state\n\ndef run():\n    from app.cli import main\n    return main\n",
        "app/small.py": branchy("too_branchy", 22),
        # the model reaching out of its package, through a relative-looking absolute import
        "kernel_model/oracle.py": "from app.small import too_branchy\n",
        "other/__init__.py": "",
        "other/a.py": "from . import b\n",
        "other/b.py": "import importlib\n\ndef load():\n    return importlib.import_module('app.cli')\n",
    })
    code, out = run(tmp_path)
    assert code == 0  # print only by default
    assert "app.cli -> app.cmd_go -> app.cli" in out
    assert "import cycles at package level: 1" in out  # kernel_model -> app -> kernel_model
    assert "app -> kernel_model -> app" in out
    assert "kernel_model.oracle:1 imports app.small" in out
    assert "D  23  too_branchy  (app/small.py:1)" in out
    assert run(tmp_path, "--strict")[0] == 1


def test_a_class_over_300_lines_is_reported(tmp_path):
    methods = "".join(f"    def m{i}(self):\n        return {i}\n\n" for i in range(110))
    write(tmp_path, {**CLEAN, "app/big.py": f"class Big:\n{methods}"})
    code, out = run(tmp_path, "--strict")
    assert code == 1
    assert "classes over 300 lines: 1" in out
    assert "Big, 330 lines (app/big.py:1)" in out
    assert "largest class: Big" in out


def test_a_cycle_through_import_module_with_an_f_string_is_found(tmp_path):
    write(tmp_path, {
        **CLEAN,
        "app/cli.py": "import importlib\n\ndef load(name):\n    return importlib.import_module(f'app.cmd_{name}')\n",
        "app/cmd_go.py": "from app.cli import load\n",
    })
    code, out = run(tmp_path, "--strict")
    assert code == 1
    assert "app.cli -> app.cmd_go -> app.cli" in out


RULES_DOC = """\
    # The house

    ## Import rules

    ```
    kernel_model  -> nothing of the project
    app           -> kernel_model        (the app drives the model)
    ```
    """


def test_the_import_rules_of_the_architecture_page_hold_on_a_clean_project(tmp_path):
    write(tmp_path, {**CLEAN, "docs/architecture.md": RULES_DOC})
    code, out = run(tmp_path, "--strict")
    assert code == 0, out
    assert "import rules (docs/architecture.md): 2 packages; missing: 0; not in the rules: 0" in out
    assert "imports against the rules: 0" in out


def test_an_import_against_the_rules_and_a_tree_unlike_theirs_are_reported(tmp_path):
    ghost = RULES_DOC.replace("(the app drives the model)\n", "(the app drives the model)\n    ghost -> kernel_model\n")
    write(tmp_path, {
        **CLEAN,
        "docs/architecture.md": ghost,       # names a package that does not exist
        "other/__init__.py": "",             # a package the rules do not name
        "app/bad.py": "from other import a\n",  # app may import kernel_model only
        "other/a.py": "X = 1\n",
    })
    code, out = run(tmp_path, "--strict")
    assert code == 1
    assert "missing: 1 (ghost); not in the rules: 1 (other)" in out
    assert "imports against the rules: 1" in out
    assert "app -> other: 1 (a app module may import kernel_model), e.g. app.bad:1 imports other.a" in out
