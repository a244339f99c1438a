"""Issue 13's package move: every module into the tree of docs/architecture.md, every reference rewritten.

Run once by the lead on the merged tree, from a clean checkout (commit first), then commit the result:

    python scripts/restructure.py            # moves (git mv) and rewrites; prints what it did
    python scripts/restructure.py --dry-run  # prints what it would do, changes nothing

What it does, in this order:
  1. ``git mv`` each module to its home (MOVES below, then the rules for modules it has no entry for: a
     ``scenarios/cmd_*.py`` goes to ``cli/``). A ``.py`` it has no home for is printed and left where it is.
  2. Creates the new packages' ``__init__.py`` (``git add``) and states the old ones' new roles.
  3. Rewrites every reference to a moved module in the tracked text files (Python, shell, Markdown, TOML):
     ``import a.b``, ``from a.b import c``, ``from a import b`` where b is a module (split per new package,
     aliased when the module was renamed), imports inside functions, dotted names in strings (monkeypatch
     targets, ``python -m`` lines, ``importlib`` names and f-string heads such as ``scenarios.cmd_{name}``),
     and paths (``kernel_model/machine.py``).
  4. The build: HOT_MODULES in kernel_model/compiled.py names each moved hot module by its dotted name (the
     compiled-module guard stays in kernel_model, which every package imports first), setup.py's CODE lists
     every package, .gitignore ignores the build products of every package that has hot modules, and the
     stale build products of moved modules (``kernel_model/machine.*.so``, ``.c``) are deleted.
Deterministic (sorted walks, one fixed table) and idempotent: a second run finds nothing to move or rewrite and
says so. Exit status 0, or 1 when a step failed (a move whose target exists, a file that does not parse).
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent

# Old module (dotted) -> new module (dotted). Modules not listed stay where they are; a module listed here that
# does not exist (yet, or any more) is skipped.
_CONTROLLED = ("machine", "positions", "reducer", "canonical", "reduction", "symmetry", "explorer", "depth_first",
               "parallel_search", "visited", "sleep_sets", "replay", "replay_memo", "linearize", "gc_pause",
               "search_memory")
_ANALYSIS = ("analyze", "witness", "coverage", "story", "diagram", "timeline", "perfetto", "scale_plots",
             "mutant_table", "report", "history_plot")
MOVES: dict[str, str] = {
    **{f"kernel_model.{m}": f"controlled.{m}" for m in _CONTROLLED},
    "actors.results_file": "logs.results_file",
    "scenarios.eventlog": "logs.eventlog",
    "scenarios.schedule_file": "logs.schedule_file",
    "scenarios.controlled_log": "logs.controlled_log",
    "scenarios.log_header": "logs.header",
    **{f"scenarios.{m}": f"analysis.{m}" for m in _ANALYSIS},
    "scenarios.fuzz": "fuzz.generate",
    "scenarios.fuzz_ops": "fuzz.ops",
    "scenarios.fuzz_run": "fuzz.run",
    "scenarios.fuzz_shrink": "fuzz.shrink",
    "scenarios.cli": "cli.main",
    "scenarios.cli_errors": "cli.errors",
    "scenarios.options": "cli.options",
}
# The modules that stay, named so that a module nobody placed is noticed (printed) rather than left silently.
STAYS = {
    "kernel_model": ("__init__", "atomic", "boot", "compiled", "config", "constants", "context", "events", "memory",
                     "mmu_gather", "mutants", "oracle", "program", "rmap", "state", "steps", "syscalls", "tlb",
                     "writeback", "ops", "wait_for", "kernels", "mprotect", "mremap", "reclaim", "truncate"),
    "actors": ("__init__", "campaign", "codec", "cpu", "cpu_ipi", "cpu_link", "cpu_up", "dir_lock",
               "fault_injection", "fuzzy_sync", "jitter", "lamport", "page_table", "ray_session", "scale", "sigint",
               "stop_rule", "topology", "trial", "verdict"),
    "scenarios": ("__init__", "loader", "input_files"),
}
RULES = ((re.compile(r"^scenarios\.(cmd_\w+)$"), r"cli.\1"),)  # modules MOVES does not name
# Names a module imports from another that now live elsewhere: a subcommand written against the old entry point
# (``from scenarios.cli import UsageError``) imports them from cli.errors, so cli.main imports no cmd_* that
# imports it back (a cycle).
SYMBOL_HOMES = {"scenarios.cli": (frozenset({"UsageError", "EnvironmentFailure", "os_error_text", "EXIT_OK",
                                             "EXIT_VIOLATION", "EXIT_BAD_INPUT", "EXIT_ENVIRONMENT",
                                             "EXIT_INTERNAL"}), "scenarios.cli_errors")}
# Name heads that f-strings and globs complete (importlib.import_module(f"scenarios.cmd_{name}")).
PREFIXES = {"scenarios.cmd_": "cli.cmd_"}

NEW_PACKAGES = {
    "controlled": "The controlled runtime and the search: one in-process machine whose every transition a scheduler "
                  "chooses,\nits reduction and canonical keys, the explorer (bfs, dfs, random, pct), the parallel "
                  "search, replay and\nlinearization of wild records. No Ray, no I/O but the search's own files.",
    "logs": "File formats: event logs (msgpack / JSONL), schedule files, results files, controlled-run logs, and "
            "a log\nheader back to its scenario and configuration.",
    "analysis": "Judging and showing runs: logs judged by replay, witnesses, coverage, per-CPU stories, race "
                "diagrams,\ntimeline pictures, Perfetto traces, scaling plots, the mutant table and the campaign "
                "page.",
    "fuzz": "``tlbrace fuzz``, the model's own differential test: random scenarios drawn as specs, written as TOML, "
            "explored\nwith a bounded search, shrunk when they fail.",
    "cli": "The ``tlbrace`` command line: ``cli.main`` (the entry point), one ``cmd_<name>`` module per "
           "subcommand,\nthe shared options and the exit statuses and errors (``cli.errors``).",
}
# controlled's hot modules are compiled; the guard that keeps a stale build from running lives in kernel_model
# (kernel_model/compiled.py) and is installed when kernel_model is first imported: controlled imports it first.
INIT_CODE = {"controlled": "\nimport kernel_model  # noqa: F401  (installs the compiled-module guard before any "
                           "module here is imported)\n"}
NEW_DOCSTRINGS = {
    "scenarios": "tlbrace workloads: the scenario library (library/*.toml) and its loader.",
}
PROJECT_PACKAGES = {"kernel_model", "controlled", "scenarios", "logs", "actors", "analysis", "fuzz", "cli", "tlbrace"}
TEXT_SUFFIXES = (".py", ".sh", ".md", ".toml", ".txt", ".cfg", ".ini", ".yml", ".yaml")
EXTRA_TEXT_FILES = (".gitignore",)
BUILD_SUFFIXES = (".c", ".so", ".pyd", ".html")


@dataclass
class Plan:
    moves: dict[str, str]        # old module -> new module, for the modules that exist
    homeless: list[str]          # .py files of the old packages with no entry and no rule


def module_of(path: Path) -> str:
    return ".".join(path.with_suffix("").parts)


def path_of(module: str) -> Path:
    return Path(*module.split(".")).with_suffix(".py")


def tracked(root: Path) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, check=True, capture_output=True).stdout
    return sorted(Path(p) for p in out.decode().split("\0") if p)


def home_of(module: str) -> str | None:
    """Where a module of the old packages goes: its new name, itself (it stays), or None (nobody said)."""
    if module in MOVES:
        return MOVES[module]
    package, _, name = module.partition(".")
    if name in STAYS.get(package, ()):
        return module
    for pattern, target in RULES:
        if pattern.match(module):
            return pattern.sub(target, module)
    return None


def plan(root: Path) -> Plan:
    moves: dict[str, str] = {}
    homeless: list[str] = []
    files = [p for p in tracked(root) if p.suffix == ".py"]
    names = {module_of(p) for p in files}
    # scenarios/library holds data only; a subpackage of an old package would be named here first.
    for path in (p for p in files if p.parts[0] in STAYS and len(p.parts) == 2):
        module = module_of(path)
        home = home_of(module)
        if home is None:
            homeless.append(str(path))
        elif home != module:
            moves[module] = home
    # Modules moved by an earlier run: their references may still need rewriting (a file merged in later).
    for old, new in MOVES.items():
        if old not in names and new in names:
            moves.setdefault(old, new)
    for new in sorted(n for n in names if re.match(r"^cli\.cmd_\w+$", n)):
        moves.setdefault(f"scenarios.{new.partition('.')[2]}", new)
    clash = sorted(set(moves.values()) & set(moves))
    if clash:
        raise SystemExit(f"restructure: a new module name is also an old one: {clash}")
    return Plan(dict(sorted(moves.items())), homeless)


# --- 1. moving -------------------------------------------------------------------------------------------------------
def git(root: Path, *args: str, dry: bool) -> None:
    if dry:
        return
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def move_files(root: Path, moves: dict[str, str], dry: bool) -> tuple[list[str], int]:
    done: list[str] = []
    failed = 0
    for old, new in moves.items():
        src, dst = path_of(old), path_of(new)
        if not (root / src).exists():
            continue  # moved already
        if (root / dst).exists():
            print(f"restructure: cannot move {src}: {dst} exists", file=sys.stderr)
            failed += 1
            continue
        if not dry:
            (root / dst).parent.mkdir(parents=True, exist_ok=True)
        git(root, "mv", str(src), str(dst), dry=dry)
        done.append(f"{src} -> {dst}")
    return done, failed


def create_packages(root: Path, dry: bool) -> list[str]:
    done = []
    for package, doc in NEW_PACKAGES.items():
        init = root / package / "__init__.py"
        if init.exists():
            continue
        if not dry:
            init.parent.mkdir(exist_ok=True)
            init.write_text(f'"""{doc}\n"""\n{INIT_CODE.get(package, "")}')
        git(root, "add", str(init.relative_to(root)), dry=dry)
        done.append(f"created {package}/__init__.py")
    for package, doc in NEW_DOCSTRINGS.items():
        init = root / package / "__init__.py"
        text = init.read_text()
        tree = ast.parse(text)
        first = tree.body[0] if tree.body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and first.value.value != doc:
            lines = text.splitlines(keepends=True)
            new = "".join(lines[:first.lineno - 1]) + f'"""{doc}"""\n' + "".join(lines[first.end_lineno:])
            if not dry:
                init.write_text(new)
            done.append(f"{package}/__init__.py: docstring now says its one role")
    return done


# --- 3. rewriting references -----------------------------------------------------------------------------------------
def _dotted_patterns(moves: dict[str, str]) -> list[tuple[re.Pattern[str], str]]:
    """Longest names first, so that a.b.c is rewritten before a.b could claim it."""
    out = []
    for old in sorted(moves, key=lambda m: (-len(m), m)):
        new = moves[old]
        dotted = re.escape(old)
        out.append((re.compile(rf"(?:(?<![\w.])|(?<=_lib\.)){dotted}(?!\w)"), new))
        slashed = re.escape(str(path_of(old)))
        out.append((re.compile(rf"(?<![\w/.]){slashed}"), str(path_of(new))))
    for old, new in PREFIXES.items():
        out.append((re.compile(rf"(?<![\w.]){re.escape(old)}(?=[{{*<])"), new))
        out.append((re.compile(rf"(?<![\w/.]){re.escape(old.replace('.', '/'))}(?=[{{*<])"), new.replace(".", "/")))
    return out


def _source_of(module: str, alias: ast.alias, moves: dict[str, str]) -> tuple[str, str, str | None]:
    """Where ``from module import alias`` finds the name after the move: (module, name, asname)."""
    old = f"{module}.{alias.name}"
    if old in moves:  # a module imported from its package
        package, _, name = moves[old].rpartition(".")
        return package, name, alias.asname or (alias.name if name != alias.name else None)
    for holder, (names, home) in SYMBOL_HOMES.items():
        if module in (holder, moves.get(holder)) and alias.name in names:
            return moves.get(home, home), alias.name, alias.asname
    return module, alias.name, alias.asname


def rewrite_from_imports(text: str, moves: dict[str, str]) -> str:
    """``from pkg import a, b`` where a or b moved (or a name now lives in another module, SYMBOL_HOMES): one
    statement per module the names now come from."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return text
    lines = text.splitlines(keepends=True)
    nodes = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module
             and any(_source_of(n.module, a, moves)[0] != n.module for a in n.names)]
    for node in sorted(nodes, key=lambda n: -n.lineno):
        first, last = lines[node.lineno - 1], lines[node.end_lineno - 1]  # type: ignore[operator]
        if first[:node.col_offset].strip() or last[node.end_col_offset:].strip()[:1] not in ("", "#"):
            print(f"restructure: left a compound import statement alone (line {node.lineno})", file=sys.stderr)
            continue
        groups: dict[str, list[str]] = {}
        for alias in node.names:
            package, name, asname = _source_of(node.module, alias, moves)  # type: ignore[arg-type]
            groups.setdefault(package, []).append(f"{name} as {asname}" if asname else name)
        indent = " " * node.col_offset
        comment = last[node.end_col_offset:].rstrip("\n").strip()  # type: ignore[index]
        new = [f"{indent}from {package} import {', '.join(names)}" for package, names in groups.items()]
        if comment:
            new[0] += f"  {comment}"
        lines[node.lineno - 1:node.end_lineno] = [line + "\n" for line in new]
    return "".join(lines)


def sort_project_imports(text: str, project: set[str]) -> str:
    """Each run of adjacent top-level imports of the project's packages, sorted by module name (as the code
    base writes them), so that a renamed module's import sits where a reader looks for it."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return text
    lines = text.splitlines(keepends=True)

    def key(n: ast.stmt) -> str:
        return n.module or "" if isinstance(n, ast.ImportFrom) else n.names[0].name  # type: ignore[attr-defined]

    def ours(n: ast.stmt) -> bool:
        return (isinstance(n, ast.ImportFrom) and n.level == 0 and (n.module or "").split(".")[0] in project
                or isinstance(n, ast.Import) and len(n.names) == 1 and n.names[0].name.split(".")[0] in project)

    runs: list[list[ast.stmt]] = []
    for node in tree.body:
        if ours(node) and runs and runs[-1] and runs[-1][-1].end_lineno + 1 == node.lineno:  # type: ignore[operator]
            runs[-1].append(node)
        else:
            runs.append([node] if ours(node) else [])
    for run in reversed([r for r in runs if len(r) > 1]):
        start, end = run[0].lineno - 1, run[-1].end_lineno
        units = ["".join(lines[n.lineno - 1:n.end_lineno]) for n in run]
        ordered = [u for _, u in sorted(zip((key(n) for n in run), units), key=lambda pair: pair[0])]
        lines[start:end] = ordered
    return "".join(lines)


def rewrite_text(text: str, path: Path, moves: dict[str, str], patterns: list) -> str:
    new = rewrite_from_imports(text, moves) if path.suffix == ".py" else text
    for pattern, replacement in patterns:
        new = pattern.sub(replacement, new)
    if path.suffix == ".py" and new != text:
        new = sort_project_imports(new, PROJECT_PACKAGES)
    return new


def rewrite_files(root: Path, moves: dict[str, str], dry: bool) -> list[str]:
    patterns = _dotted_patterns(moves)
    changed = []
    for rel in tracked(root):
        if rel.suffix not in TEXT_SUFFIXES and rel.name not in EXTRA_TEXT_FILES:
            continue
        if rel.parts[0] == "scenarios" and rel.parts[1:2] == ("library",) or rel == Path("scripts/restructure.py"):
            continue  # scenario data; this script's own table
        path = root / rel
        if not path.is_file():
            continue
        text = path.read_text()
        new = rewrite_text(text, rel, moves, patterns)
        if new != text:
            changed.append(str(rel))
            if not dry:
                path.write_text(new)
    return changed


# --- 4. the build ----------------------------------------------------------------------------------------------------
def replace_assignment(path: Path, name: str, rewrite: Callable[[str], str], dry: bool) -> bool | None:
    """Rewrite the text of the top-level ``name = ...`` statement of ``path``: whether it changed (None: there is
    no such statement)."""
    text = path.read_text()
    node = next((n for n in ast.parse(text).body if isinstance(n, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id == name for t in n.targets)), None)
    if node is None:
        print(f"restructure: {path.name} has no {name}", file=sys.stderr)
        return None
    lines = text.splitlines(keepends=True)
    old = "".join(lines[node.lineno - 1:node.end_lineno])
    new = rewrite(old)
    if new == old:
        return False
    if not dry:
        path.write_text("".join(lines[:node.lineno - 1]) + new + "".join(lines[node.end_lineno:]))
    return True


def wrapped(head: str, items: list[str], tail: str, indent: str, width: int = 115) -> str:
    """``head`` + the items, comma-separated, in lines of at most ``width`` characters, + ``tail``."""
    lines, row = [], head
    for item in items:
        if len(row) + len(item) + 2 > width:
            lines.append(row.rstrip())
            row = indent
        row += item + ", "
    return "\n".join(lines + [row.rstrip(", ") + tail]) + "\n"


def rewrite_hot_modules(root: Path, moves: dict[str, str], dry: bool) -> list[str]:
    """kernel_model/compiled.py's HOT_MODULES: a bare name is a kernel_model module; a moved one gets its
    dotted name."""
    def qualify(span: str) -> str:
        names = [moves.get(f"kernel_model.{n}", n) for n in re.findall(r'"([\w.]+)"', span)]
        return wrapped("HOT_MODULES = (", [f'"{n}"' for n in names], ")", "               ")

    if replace_assignment(root / "kernel_model" / "compiled.py", "HOT_MODULES", qualify, dry):
        return ["kernel_model/compiled.py: HOT_MODULES name the moved hot modules by their dotted names"]
    return []


def packages(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if (p / "__init__.py").is_file() and p.name != "tlbrace")


def rewrite_setup(root: Path, dry: bool) -> list[str]:
    """setup.py's CODE: every package of the tree, and the scenario library's data directory."""
    # In a dry run the new packages do not exist yet.
    names = sorted(set(packages(root)) | (set(NEW_PACKAGES) if dry else set())) + ["scenarios.library"]
    entries = [f'"{n}": "{n.replace(".", "/")}"' for n in names]
    if replace_assignment(root / "setup.py", "CODE", lambda _: wrapped("CODE = {", entries, "}", "        "), dry):
        return [f"setup.py: CODE lists {', '.join(names)}"]
    return []


def hot_packages(root: Path, moves: dict[str, str]) -> list[str]:
    text = (root / "kernel_model" / "compiled.py").read_text()
    match = re.search(r"HOT_MODULES\s*=\s*\(([^)]*)\)", text)
    found = {"kernel_model"}
    for name in re.findall(r'"([\w.]+)"', match.group(1) if match else ""):
        name = moves.get(f"kernel_model.{name}", name)
        if "." in name:
            found.add(name.rpartition(".")[0])
    return sorted(found)


def rewrite_gitignore(root: Path, moves: dict[str, str], dry: bool) -> list[str]:
    path = root / ".gitignore"
    lines = path.read_text().splitlines()
    wanted = [f"{p}/*.{s}" for p in hot_packages(root, moves) for s in ("c", "so")]
    missing = [w for w in wanted if w not in lines]
    if not missing:
        return []
    if not dry:
        path.write_text("\n".join(lines + missing) + "\n")
    return [f".gitignore: {', '.join(missing)}"]


def remove_stale_builds(root: Path, moves: dict[str, str], dry: bool) -> list[str]:
    """The build products of a moved module, left at its old place, would still import under its old name."""
    gone = []
    for old in moves:
        src = root / path_of(old)
        for product in sorted(src.parent.glob(f"{src.stem}.*")) if src.parent.is_dir() else ():
            if product.suffix in BUILD_SUFFIXES and product.name.split(".")[0] == src.stem:
                gone.append(str(product.relative_to(root)))
                if not dry:
                    product.unlink()
    return gone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to restructure (default: this one)")
    parser.add_argument("--dry-run", action="store_true", help="print what would change; change nothing")
    args = parser.parse_args(argv)
    root, dry = args.root.resolve(), args.dry_run
    if not (root / "kernel_model" / "compiled.py").is_file():
        print(f"restructure: error: --root {root}: not a tlbrace checkout", file=sys.stderr)
        return 2
    p = plan(root)
    moved, failed = move_files(root, p.moves, dry)
    steps = {
        "moved": moved,
        "packages": create_packages(root, dry),
        "rewrote references in": rewrite_files(root, p.moves, dry),
        "build": (rewrite_hot_modules(root, p.moves, dry) + rewrite_setup(root, dry)
                  + rewrite_gitignore(root, p.moves, dry)),
        "deleted stale build products": remove_stale_builds(root, p.moves, dry),
    }
    verb = "would change" if dry else "changed"
    for title, items in steps.items():
        print(f"restructure: {title}: {len(items)}")
        for item in items:
            print(f"  {item}")
    for path in p.homeless:
        print(f"restructure: no entry for {path}: left in {Path(path).parts[0]}/ (if that is not its home, add it "
              f"to MOVES, else to STAYS, and run again)")
    total = sum(len(v) for v in steps.values())
    print(f"restructure: {total} {'changes' if total != 1 else 'change'} ({verb}); "
          f"{len(p.homeless)} module(s) without an entry; {failed} failure(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
