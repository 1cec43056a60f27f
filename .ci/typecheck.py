#!/usr/bin/env python3
"""Type-check the `verifarm` package with mypy, its modules under their real names.

The package maps top-level folders (sandbox/, envs/, ...) onto `verifarm.*` through setuptools' package-dir,
which mypy cannot read: run on the folders, it would name `sandbox/backend.py` `sandbox.backend` and every
`from verifarm.sandbox import ...` would become an unchecked Any. So this builds the installed layout as a tree
of symbolic links (build/typecheck/verifarm/...), runs `mypy -p verifarm` on it with the settings of
pyproject.toml, and prints each finding under its path in the repository.

    python3 .ci/typecheck.py          # extra arguments go to mypy, e.g. --no-incremental
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: mypy depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"


def package_dirs() -> dict[str, Path]:
    """Each package pyproject.toml lists -> its folder, by the longest prefix package-dir maps (as setuptools)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = config["package-dir"]
    folders = {}
    for package in config["packages"]:
        parts = package.split(".")
        cut = next((cut for cut in range(len(parts), 0, -1) if ".".join(parts[:cut]) in mapped), 0)
        base = ROOT / mapped[".".join(parts[:cut])] if cut else ROOT
        folders[package] = base.joinpath(*parts[cut:])
    return folders


def build_tree(packages: dict[str, Path]) -> dict[Path, Path]:
    """Link every package's .py files into TREE under their module paths; returns tree folder -> real folder."""
    shutil.rmtree(TREE, ignore_errors=True)  # afresh, so a module since removed or renamed is not checked
    folders = {}
    for package, source in packages.items():
        target = TREE.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for module in source.glob("*.py"):
            (target / module.name).symlink_to(module)
        folders[target] = source
    return folders


def main() -> int:
    folders = build_tree(package_dirs())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            "-p",
            "verifarm",
            *sys.argv[1:],
        ],
        cwd=TREE,
        capture_output=True,
        text=True,
    )
    # mypy names files by their place in the tree; name them by their place in the repository instead.
    by_tree_path = {
        os.path.relpath(tree, TREE) + os.sep: os.path.relpath(real, ROOT) + os.sep for tree, real in folders.items()
    }
    pattern = re.compile(
        "^(?:" + "|".join(re.escape(path) for path in sorted(by_tree_path, key=len, reverse=True)) + ")"
    )
    for line in result.stdout.splitlines():
        print(pattern.sub(lambda match: by_tree_path[match.group(0)], line, count=1))
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
