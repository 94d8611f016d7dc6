"""Every DVC stage depends on each dicelib file it runs: folder deps cover the stage's whole import closure."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from dicelib.config import ROOT

from .stages import RUNNER, STAGES, notebook_of

PACKAGE = ROOT / "dicelib"


def _module_file(name: str) -> Path | None:
    """Return the source file of dicelib module `name` (a package's __init__), or None outside dicelib."""
    if name != "dicelib" and not name.startswith("dicelib."):
        return None
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(source: str, module: str, is_package: bool) -> set[str]:
    """Return the dicelib modules `source` imports anywhere (function-level imports included)."""
    found = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}  # `from pkg import module`
    return {name for name in found if _module_file(name) is not None}


def closure(sources: list[str]) -> set[Path]:
    """Return every dicelib file reached from code `sources` (each parent package's __init__ included)."""
    todo = set().union(*(_imports(s, "__main__", False) for s in sources))
    seen: set[Path] = set()
    while todo:
        name = todo.pop()
        parts = name.split(".")
        todo |= {".".join(parts[:i]) for i in range(1, len(parts))} - {name}  # importing a.b.c runs a and a.b
        path = _module_file(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        todo |= _imports(path.read_text(), name, path.name == "__init__.py")
    return seen


def _stage_sources(stage: dict) -> list[str]:
    """Return the code a stage runs: the runner and its notebook's code cells, or the `python -m` module."""
    cmd = stage["cmd"]
    notebook = notebook_of(cmd)
    if notebook:
        cells = json.loads((ROOT / notebook).read_text())["cells"]
        return [f"import {RUNNER}"] + ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    module = re.search(r"python -m (dicelib[\w.]*)", cmd)
    assert module, f"cannot tell what stage command runs: {cmd}"
    return [f"import {module.group(1)}"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_cover_every_file_it_runs(name):
    stage = STAGES[name]
    deps = [ROOT / d for d in stage["deps"]]
    files = closure(_stage_sources(stage))
    assert files, f"stage {name} runs no dicelib code?"
    missed = sorted(str(f.relative_to(ROOT)) for f in files if not any(f == d or d in f.parents for d in deps))
    assert not missed, f"stage {name} runs {missed} but its deps do not cover them"


def test_deps_name_folders_not_single_modules_inside_them():
    for name, stage in STAGES.items():
        inside = [d for d in stage["deps"] if d.startswith("dicelib/") and d.count("/") > 1]
        assert not inside, f"stage {name} lists files inside a dicelib subpackage: {inside}; depend on the folder"


def test_closure_follows_relative_and_lazy_imports():
    files = {str(p.relative_to(ROOT)) for p in closure(["from dicelib.text import editing"])}
    assert {"dicelib/text/editing.py", "dicelib/core/api.py", "dicelib/adapters/masked_lm.py",
            "dicelib/__init__.py", "dicelib/errors.py"} <= files
