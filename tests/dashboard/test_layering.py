"""The dashboard sits on top: only the CLI imports it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sandbox", "envs", "policy", "rollout", "trainer", "verifarm", "dashboard")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_nothing_below_the_cli_imports_the_dashboard():
    importers = sorted(
        str(path.relative_to(ROOT))
        for package in PACKAGES
        if package != "dashboard"
        for path in (ROOT / package).rglob("*.py")
        if any(name.startswith("verifarm.dashboard") for name in imported_modules(path))
    )
    assert importers == ["verifarm/cli.py"]
