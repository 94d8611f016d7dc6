"""Notebooks stay thin and stripped, and the pipeline passes only parameters they declare."""

from __future__ import annotations

import ast
import re
import subprocess

import nbformat
import pytest

from dicelib.config import ROOT

from .stages import NOTEBOOK_STAGES, notebook_of

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_thin_and_stripped(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert any("parameters" in c.metadata.get("tags", []) for c in code), "no cell tagged 'parameters'"
    for cell in code:
        assert not cell.get("outputs") and cell.get("execution_count") is None, "commit notebooks stripped of outputs"
        tree = ast.parse(cell.source)
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))]
        assert not defs, f"notebooks hold no function or class definitions; move them into dicelib: {cell.source[:80]!r}"


def _declared_parameters(path):
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    return {t.id for n in ast.parse(cell.source).body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}


def test_pipeline_passes_only_declared_notebook_parameters():
    for name, stage in NOTEBOOK_STAGES.items():
        cmd, notebook = stage["cmd"], notebook_of(stage["cmd"])
        passed = set(re.findall(r"-p\s+(\w+)\s", cmd)) | set(re.findall(r'-y\s+"(\w+):', cmd))
        declared = _declared_parameters(ROOT / notebook)
        assert passed <= declared, f"stage {name} passes undeclared parameters {sorted(passed - declared)}"
        assert notebook in stage["deps"], f"stage {name} must depend on its notebook"
    assert len(NOTEBOOK_STAGES) >= 6, "every notebook stage runs through python -m dicelib.io notebook"


def test_dvc_pipeline_graph_resolves():
    out = subprocess.run(["dvc", "repro", "--dry", "--force"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "mutual-information" in out.stdout
