"""The package's import structure, read from the source with `ast` (nothing is imported).

Three rules, each failure named by file:line:
- layers import downward only: sandbox <- envs, policy <- rollout <- trainer <- the CLI glue (verifarm/) and the
  dashboard; envs and policy know nothing of each other. Below them all, the glue's settings and the CLI's
  shared error and terminal helpers, which every entry point reads and which import nothing of ours;
- no import cycle among the package's modules, counting imports inside functions (they run, only later);
  imports under `if TYPE_CHECKING:` never run, so they count for the layers but not for cycles;
- an import of a `verifarm.*` module inside a function says why it waits, in a `# deferred: <why>` comment on
  the line just above it (a heavy optional dependency, for instance); otherwise it belongs at the top.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "verifarm"

# The parts each part may import besides itself: the layers, downward only. The policy knows neither envs nor
# sandbox (a model samples text); the CLI glue may start the dashboard, the dashboard never the CLI.
MAY_IMPORT = {
    "base": set(),
    "sandbox": {"base"},
    "envs": {"base", "sandbox"},
    "policy": {"base"},
    "rollout": {"base", "sandbox", "envs", "policy"},
    "trainer": {"base", "sandbox", "envs", "policy", "rollout"},
    "dashboard": {"base", "sandbox", "envs", "policy", "rollout", "trainer"},
    "verifarm": {"base", "sandbox", "envs", "policy", "rollout", "trainer", "dashboard"},
}
# Modules of the glue folder that are a part of their own, "base": the settings every entry point resolves (the
# CLI, a worker, the policy server), the redaction of the URLs they hold, and the CLI's error and terminal helpers
# that each part's commands use.
BASE = {"verifarm.settings", "verifarm.redaction", "verifarm.processes", "verifarm.cli_errors", "verifarm.terminal"}
# Scripts on top of everything: they may import any part, but keep the deferred-import rule.
SCRIPT_FOLDERS = ("benchmarks",)
DEFERRED = re.compile(r"#\s*deferred:\s*\S")


@dataclass(frozen=True)
class Import:
    source: str  # importing module, e.g. verifarm.rollout.app
    target: str  # imported module of the package, e.g. verifarm.rollout.campaign
    path: Path
    line: int
    in_function: bool
    type_checking_only: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _load_typecheck_script():
    """`.ci/typecheck.py`, which already reads the package mapping as setuptools does: one reader for both."""
    spec = importlib.util.spec_from_file_location("verifarm_ci_typecheck", ROOT / ".ci" / "typecheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def package_folders() -> dict[str, Path]:
    """Each package pyproject.toml lists -> its folder."""
    return _load_typecheck_script().package_dirs()


def package_modules() -> dict[str, Path]:
    """Every module of the package -> its file."""
    modules = {}
    for package, folder in package_folders().items():
        for path in sorted(folder.glob("*.py")):
            modules[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return modules


def part_of(module: str) -> str:
    """verifarm.rollout.app -> rollout; verifarm.cli -> verifarm (the glue); verifarm.settings -> base."""
    if module in BASE:
        return "base"
    name = module.split(".")[1] if "." in module else PACKAGE
    return name if name in MAY_IMPORT and name != "base" else PACKAGE


class _ImportCollector(ast.NodeVisitor):
    """Each import statement with whether it sits in a function body or under `if TYPE_CHECKING:`."""

    def __init__(self) -> None:
        self.found: list[tuple[ast.Import | ast.ImportFrom, bool, bool]] = []
        self._functions = 0
        self._type_checking = 0

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._functions += 1
        self.generic_visit(node)
        self._functions -= 1

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._function(node)

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        guarded = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        )
        self._type_checking += guarded
        for child in node.body:
            self.visit(child)
        self._type_checking -= guarded
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.append((node, self._functions > 0, self._type_checking > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.found.append((node, self._functions > 0, self._type_checking > 0))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """The package modules `module` imports: `from a.b import c` names a.b.c when that is a module, else a.b."""
    collector = _ImportCollector()
    collector.visit(ast.parse(path.read_text(), str(path)))
    is_package = path.name == "__init__.py"
    found = []
    for node, in_function, type_checking in collector.found:
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        for target in dict.fromkeys(targets):
            # `import verifarm.rollout.app` names a module; an attribute path resolves to its longest module prefix
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != module:
                found.append(Import(module, target, path, node.lineno, in_function, type_checking))
    return found


def script_modules() -> dict[str, Path]:
    return {f"{folder}.{path.stem}": path for folder in SCRIPT_FOLDERS for path in sorted((ROOT / folder).glob("*.py"))}


@pytest.fixture(scope="module")
def modules() -> dict[str, Path]:
    return package_modules()


@pytest.fixture(scope="module")
def package_imports(modules: dict[str, Path]) -> list[Import]:
    return [found for module, path in modules.items() for found in imports_of(module, path, modules)]


def test_the_mapping_is_read(modules: dict[str, Path]) -> None:
    """Guards the other tests against passing on nothing: every part has modules and a rank."""
    parts = {part_of(module) for module in modules}
    assert parts == set(MAY_IMPORT), parts
    assert "verifarm.rollout.app" in modules and "verifarm.sandbox" in modules
    # A sub-package missing from pyproject.toml's list would be neither installed nor checked here.
    listed = set(package_folders().values())
    unlisted = [
        str(init.parent.relative_to(ROOT))
        for folder in listed
        for init in folder.rglob("__init__.py")
        if init.parent not in listed
    ]
    assert not unlisted, f"package folders missing from [tool.setuptools] packages: {unlisted}"


def test_layers_import_downward_only(package_imports: list[Import]) -> None:
    upward = []
    for found in package_imports:
        source, target = part_of(found.source), part_of(found.target)
        if source == target or target in MAY_IMPORT[source]:
            continue
        allowed = ", ".join(sorted(MAY_IMPORT[source])) or "nothing of ours"
        upward.append(f"{found.where}: {found.source} imports {found.target} ({source} may import only {allowed})")
    assert not upward, f"{len(upward)} imports point up or across the layers:\n" + "\n".join(upward)


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(edges.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(components)


def test_find_cycles_finds_each_cycle_once() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"d", "f"}, "f": set(), "g": {"a"}}
    assert find_cycles(edges) == [["a", "b", "c"], ["d", "e"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles(package_imports: list[Import]) -> None:
    runtime = [found for found in package_imports if not found.type_checking_only]
    edges: dict[str, set[str]] = {}
    for found in runtime:
        edges.setdefault(found.source, set()).add(found.target)
    cycles = find_cycles(edges)
    report = []
    for members in cycles:
        inside = set(members)
        report.append(f"cycle of {len(members)} modules: {', '.join(members)}")
        report.extend(
            f"  {found.where}: {found.source} -> {found.target}{' (in a function)' if found.in_function else ''}"
            for found in runtime
            if found.source in inside and found.target in inside
        )
    assert not cycles, f"{len(cycles)} import cycles:\n" + "\n".join(report)


def _line_above_import_block(lines: list[str], line: int) -> str:
    """The first line above `line` (1-based) that is neither an import nor blank: one comment may explain a block
    of deferred imports, which the formatter splits into sections with blank lines."""
    index = line - 2
    while index >= 0 and (not lines[index].strip() or lines[index].strip().startswith(("import ", "from "))):
        index -= 1
    return lines[index].strip() if index >= 0 else ""


def test_imports_inside_functions_say_why(modules: dict[str, Path], package_imports: list[Import]) -> None:
    scripts = script_modules()
    script_imports = [found for module, path in scripts.items() for found in imports_of(module, path, modules)]
    unexplained = []
    for found in package_imports + script_imports:
        if not found.in_function:
            continue
        if not DEFERRED.match(_line_above_import_block(found.path.read_text().splitlines(), found.line)):
            unexplained.append(f"{found.where}: {found.target} imported inside a function")
    unique = list(dict.fromkeys(unexplained))
    assert not unique, (
        f"{len(unique)} imports inside functions without a '# deferred: <why>' comment on the line above "
        "(move them to the top of the module, or say why they wait):\n" + "\n".join(unique)
    )


def test_imports_are_resolved_and_placed(tmp_path: Path) -> None:
    """The reader itself: relative and attribute imports name the module, local and type-only ones are marked."""
    modules = {name: tmp_path / f"{name}.py" for name in ("verifarm.a", "verifarm.a.b", "verifarm.a.c", "verifarm.d")}
    source = tmp_path / "c.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import os\n"
        "from . import b\n"
        "from verifarm.d import something\n"
        "if TYPE_CHECKING:\n"
        "    from verifarm.a.b import Thing\n"
        "def f():\n"
        "    # deferred: heavy\n"
        "    import verifarm.d.attribute\n"
    )
    found = imports_of("verifarm.a.c", source, modules)
    assert [(i.target, i.line, i.in_function, i.type_checking_only) for i in found] == [
        ("verifarm.a.b", 3, False, False),
        ("verifarm.d", 4, False, False),
        ("verifarm.a.b", 6, False, True),
        ("verifarm.d", 9, True, False),
    ]


def test_one_comment_explains_a_block_of_deferred_imports() -> None:
    lines = [
        "def f():",
        "    # deferred: heavy",
        "    import torch",
        "",
        "    from verifarm.a import b",
        "    from verifarm.c import d",
        "    x = 1",
        "    from verifarm.e import f",
    ]
    assert DEFERRED.match(_line_above_import_block(lines, 5))
    assert DEFERRED.match(_line_above_import_block(lines, 6))
    assert not DEFERRED.match(_line_above_import_block(lines, 8))  # code between: the block ended
