"""Print the house rules of issue 13 and how far the code is from them (CI runs it after the tests).

The rules:
  1. no import cycle, between packages or between modules; an import inside a function counts, since it is a
     dependency all the same (it only runs later);
  2. ``kernel_model`` (the mm model) imports nothing of the project outside itself;
  3. no code block above radon's grade C: cyclomatic complexity at most 20 (grades D, E, F are 21 and up);
  4. no class over 300 lines;
  5. the import rules of docs/architecture.md (its "## Import rules" block: ``package -> what it may import``)
     hold, and the tree is the one they draw: every package they name exists, every package that exists is
     named (a root without that block has no such rules).
It also prints the largest class and the largest function, by lines.

Imports are read with ``ast`` from every module of the project's packages (the directories of ``--root`` that
hold an ``__init__.py``): ``import a.b``, ``from a import b`` (the module ``a.b`` when it exists, else ``a``),
relative imports, and ``importlib.import_module`` with a literal or an f-string whose literal head names
modules (``f"cli.cmd_{name}"`` depends on every ``cli.cmd_*``). A module's package is the package
that contains it (a package's ``__init__`` belongs to that package). Complexity and sizes cover the packages
and the code in ``scripts/`` and ``bench/``; not ``tests/``.

Exit status: 0 (print only), or with ``--strict`` 1 when any rule is broken; 2 on bad usage.

    python scripts/check_structure.py [--root DIR] [--strict]
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

MAX_COMPLEXITY = 20          # radon grade C ends here; D starts at 21
MAX_CLASS_LINES = 300
MODEL_PACKAGE = "kernel_model"
RULES_DOC = Path("docs") / "architecture.md"
RULES_HEADING = "## Import rules"
EXTRA_CODE_DIRS = ("scripts", "bench")  # code that is not a package: complexity and sizes only


# --- the modules -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Module:
    name: str           # dotted, e.g. "cli.main"
    path: Path
    is_package: bool    # an __init__.py

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]


def find_modules(root: Path) -> dict[str, Module]:
    """Every module of every package directly under ``root`` (and their subpackages)."""
    modules: dict[str, Module] = {}
    for top in sorted(p for p in root.iterdir() if (p / "__init__.py").is_file()):
        for path in sorted(top.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            if not all((root / Path(*rel.parts[:i]) / "__init__.py").is_file() for i in range(1, len(rel.parts))):
                continue  # a .py in a directory that is not a package (data, a stray script)
            is_package = rel.name == "__init__"
            parts = rel.parts[:-1] if is_package else rel.parts
            modules[".".join(parts)] = Module(".".join(parts), path, is_package)
    return modules


# --- the imports -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    in_function: bool


def _resolve_from(module: Module, level: int, name: str | None) -> str:
    """The absolute module named by ``from <dots><name> import ...`` inside ``module``."""
    if level == 0:
        return name or ""
    base = module.package.split(".")
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([name] if name else []))


def _dynamic_prefix(call: ast.Call) -> str | None:
    """The module name (or its literal head) given to ``importlib.import_module``/``import_module``."""
    f = call.func
    called = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
    if called != "import_module" or not call.args:
        return None
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value) + "*"
    return None


class _ImportVisitor(ast.NodeVisitor):
    def __init__(self, module: Module, known: dict[str, Module]) -> None:
        self.module, self.known = module, known
        self.found: list[Import] = []
        self._depth = 0  # how many function bodies we are inside

    def _add(self, target: str, node: ast.AST) -> None:
        while target and target not in self.known:
            target = target.rpartition(".")[0]  # `import a.b.func_or_class` → the module a.b
        if target and target != self.module.name:
            self.found.append(Import(self.module.name, target, node.lineno, self._depth > 0))

    def _function(self, node: ast.AST) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _resolve_from(self.module, node.level, node.module)
        for alias in node.names:
            sub = f"{base}.{alias.name}" if base else alias.name
            self._add(sub if sub in self.known else base, node)

    def visit_Call(self, node: ast.Call) -> None:
        prefix = _dynamic_prefix(node)
        if prefix is not None and prefix.endswith("*"):
            for name in self.known:
                if name.startswith(prefix[:-1]):
                    self._add(name, node)
        elif prefix is not None:
            self._add(prefix, node)
        self.generic_visit(node)


def find_imports(modules: dict[str, Module]) -> list[Import]:
    found: list[Import] = []
    for module in modules.values():
        visitor = _ImportVisitor(module, modules)
        visitor.visit(ast.parse(module.path.read_text(), filename=str(module.path)))
        found.extend(dict.fromkeys(visitor.found))  # `from m import a, b` is one dependency
    return found


# --- cycles ----------------------------------------------------------------------------------------------------------
Graph = dict[str, set[str]]


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's algorithm, iterative; only the components with more than one node (a cycle each)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return sorted(out)


def shortest_cycle_through(graph: Graph, start: str, within: set[str]) -> list[str]:
    """The shortest path start → ... → start inside one component (breadth first)."""
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return path[::-1] + [start]
                if child in within and child not in parent:
                    parent[child] = node
                    nxt.append(child)
        frontier = nxt
    return []


def cycles(graph: Graph) -> list[list[str]]:
    """Each component's shortest cycles (one through each member, the same cycle listed once)."""
    listed: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    for component in strongly_connected(graph):
        for node in component:
            cycle = shortest_cycle_through(graph, node, set(component))
            body = cycle[:-1]
            i = body.index(min(body))
            key = tuple(body[i:] + body[:i])
            if key not in seen:
                seen.add(key)
                listed.append(list(key) + [key[0]])
    return listed


def module_graph(imports: Iterable[Import]) -> Graph:
    graph: Graph = {}
    for imp in imports:
        graph.setdefault(imp.source, set()).add(imp.target)
        graph.setdefault(imp.target, set())
    return graph


def package_graph(imports: Iterable[Import], modules: dict[str, Module]) -> Graph:
    graph: Graph = {}
    for imp in imports:
        a, b = modules[imp.source].package, modules[imp.target].package
        graph.setdefault(a, set())
        graph.setdefault(b, set())
        if a != b:
            graph[a].add(b)
    return graph


# --- complexity and sizes --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Block:
    name: str
    path: str
    line: int
    lines: int
    complexity: int = 0

    @property
    def grade(self) -> str:
        from radon.complexity import cc_rank

        return cc_rank(self.complexity)


def code_files(root: Path, modules: dict[str, Module]) -> list[Path]:
    extra = [p for d in EXTRA_CODE_DIRS if (root / d).is_dir() for p in sorted((root / d).rglob("*.py"))]
    return sorted({m.path for m in modules.values()} | set(extra))


def complexity_blocks(root: Path, files: list[Path]) -> list[Block]:
    """radon's blocks (functions, methods, closures), as ``radon cc`` grades them."""
    try:
        from radon.complexity import cc_visit
    except ImportError:
        sys.exit("check_structure: radon is not installed (it is in the test extras: bash scripts/setup.sh)")

    def flatten(blocks: Iterable) -> Iterator:
        for b in blocks:
            yield b
            yield from flatten(getattr(b, "closures", ()))

    out = []
    for path in files:
        for b in flatten(cc_visit(path.read_text())):
            out.append(Block(b.fullname, str(path.relative_to(root)), b.lineno, b.endline - b.lineno + 1,
                             b.complexity))
    return out


def sized_definitions(root: Path, files: list[Path]) -> tuple[list[Block], list[Block]]:
    """Every class and every function (methods and nested ones too), with its length in lines."""
    classes: list[Block] = []
    functions: list[Block] = []

    def walk(node: ast.AST, prefix: str, path: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                block = Block(name, path, child.lineno, (child.end_lineno or child.lineno) - child.lineno + 1)
                (classes if isinstance(child, ast.ClassDef) else functions).append(block)
                walk(child, name + ".", path)
            else:
                walk(child, prefix, path)

    for path in files:
        walk(ast.parse(path.read_text()), "", str(path.relative_to(root)))
    return classes, functions


# --- the report ------------------------------------------------------------------------------------------------------
Section = tuple[list[str], bool]  # the lines to print, and whether the section's rule is broken


def cycle_sections(imports: list[Import], modules: dict[str, Module]) -> list[Section]:
    out: list[Section] = []
    for level, graph in (("package", package_graph(imports, modules)), ("module", module_graph(imports))):
        found = cycles(graph)
        lines = [f"import cycles at {level} level: {len(found)} (in {len(strongly_connected(graph))} strongly "
                 f"connected group(s))"]
        out.append((lines + [f"  {' -> '.join(c)}" for c in found], bool(found)))
    late = sum(1 for i in imports if i.in_function)
    out.append(([f"  ({len(imports)} project-internal imports read, {late} of them inside functions)"], False))
    return out


def model_section(imports: list[Import]) -> Section:
    def inside(name: str) -> bool:
        return name == MODEL_PACKAGE or name.startswith(MODEL_PACKAGE + ".")

    outside = [i for i in imports if inside(i.source) and not inside(i.target)]
    lines = [f"{MODEL_PACKAGE} imports from outside itself: {len(outside)}"]
    lines += [f"  {i.source}:{i.line} imports {i.target}{' (inside a function)' if i.in_function else ''}"
              for i in outside]
    return lines, bool(outside)


def read_import_rules(root: Path) -> dict[str, set[str]] | None:
    """The first fenced block after the "## Import rules" heading of docs/architecture.md: one line per package,
    ``name -> a, b`` (or ``-> nothing``), a trailing ``(...)`` being a comment. None without such a block."""
    try:
        text = (root / RULES_DOC).read_text()
    except OSError:
        return None
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(RULES_HEADING)), None)
    if start is None:
        return None
    fences = [i for i in range(start + 1, len(lines)) if lines[i].startswith("```")][:2]
    if len(fences) < 2:
        return None
    rules: dict[str, set[str]] = {}
    for line in lines[fences[0] + 1:fences[1]]:
        if "->" not in line:
            continue
        name, _, targets = line.partition("->")
        targets = targets.split("(")[0].strip()
        rules[name.strip()] = set() if targets in ("", "nothing") else {t.strip() for t in targets.split(",")}
    return rules


def top_package(module: str) -> str:
    return module.split(".")[0]


def rules_section(root: Path, imports: list[Import], modules: dict[str, Module]) -> Section:
    rules = read_import_rules(root)
    if rules is None:
        return [f"import rules: none ({RULES_DOC} has no '{RULES_HEADING}' block)"], False
    present = {top_package(m) for m in modules}
    missing, unnamed = sorted(set(rules) - present), sorted(present - set(rules))
    against: dict[tuple[str, str], list[Import]] = {}
    for imp in imports:
        a, b = top_package(imp.source), top_package(imp.target)
        if a != b and a in rules and b not in rules[a]:
            against.setdefault((a, b), []).append(imp)
    lines = [f"import rules ({RULES_DOC}): {len(rules)} packages; missing: {len(missing)}"
             + (f" ({', '.join(missing)})" if missing else "")
             + f"; not in the rules: {len(unnamed)}" + (f" ({', '.join(unnamed)})" if unnamed else ""),
             f"imports against the rules: {sum(len(v) for v in against.values())}"]
    for (a, b), found in sorted(against.items()):
        allowed = ", ".join(sorted(rules[a])) or "nothing"
        lines.append(f"  {a} -> {b}: {len(found)} (a {a} module may import {allowed}), e.g. "
                     + "; ".join(f"{i.source}:{i.line} imports {i.target}" for i in found[:3]))
    return lines, bool(missing or unnamed or against)


def complexity_section(root: Path, files: list[Path]) -> Section:
    blocks = complexity_blocks(root, files)
    bad = sorted((b for b in blocks if b.complexity > MAX_COMPLEXITY), key=lambda b: (-b.complexity, b.path))
    lines = [f"blocks graded D-F (cyclomatic complexity > {MAX_COMPLEXITY}): {len(bad)} of {len(blocks)}"]
    return lines + [f"  {b.grade} {b.complexity:3d}  {b.name}  ({b.path}:{b.line})" for b in bad], bool(bad)


def size_section(root: Path, files: list[Path]) -> Section:
    classes, functions = sized_definitions(root, files)
    lines = []
    for kind, defs in (("class", classes), ("function", functions)):
        if defs:
            big = max(defs, key=lambda b: b.lines)
            lines.append(f"largest {kind}: {big.name}, {big.lines} lines ({big.path}:{big.line})")
    large = sorted((c for c in classes if c.lines > MAX_CLASS_LINES), key=lambda c: -c.lines)
    lines.append(f"classes over {MAX_CLASS_LINES} lines: {len(large)}")
    return lines + [f"  {c.name}, {c.lines} lines ({c.path}:{c.line})" for c in large], bool(large)


def report(root: Path) -> tuple[list[str], int]:
    """The lines to print and how many rules are broken."""
    modules = find_modules(root)
    imports = find_imports(modules)
    files = code_files(root, modules)
    tops = {m.path.relative_to(root).parts[0] for m in modules.values()}
    sections = [([f"structure of {root.resolve()}: {len(modules)} modules in {len(tops)} top-level packages"],
                 False)]
    sections += cycle_sections(imports, modules)
    sections += [model_section(imports), rules_section(root, imports, modules), complexity_section(root, files),
                 size_section(root, files)]
    lines = [line for section, _ in sections for line in section]
    broken = sum(bad for _, bad in sections)
    lines.append(f"rules broken: {broken} of 6 (package cycles, module cycles, {MODEL_PACKAGE}'s imports, "
                 f"import rules and tree, complexity, class size)")
    return lines, broken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the project's root directory (default: this checkout)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any rule is broken")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"check_structure: error: --root {args.root}: not a directory", file=sys.stderr)
        return 2
    lines, broken = report(args.root)
    print("\n".join(lines))
    return 1 if args.strict and broken else 0


if __name__ == "__main__":
    sys.exit(main())
